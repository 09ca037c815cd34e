"""Where the tests find the project's shared material (``../shared`` beside the checkout)."""

from __future__ import annotations

import os
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def shared_dir() -> Path:
    """``$SQUADS_SHARED_DIR``, else ``../shared`` beside the checkout, else the workplace's copy."""
    for candidate in (os.environ.get("SQUADS_SHARED_DIR"), REPO.parent / "shared", "/work/shared"):
        if candidate and Path(candidate, "scenarios", "public").is_dir():
            return Path(candidate)
    raise FileNotFoundError("../shared/scenarios/public is missing; set SQUADS_SHARED_DIR to the shared folder")


PUBLIC_SCENARIOS = shared_dir() / "scenarios" / "public"
