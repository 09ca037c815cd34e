"""One YAML loader for every file the product reads (bundles, grants, nodes, scenarios)."""

from __future__ import annotations

from typing import Any

import yaml

# libyaml's loader is ~10x faster than the pure-Python one and just as safe; it
# is present in PyYAML's wheels, the fallback keeps a source build working.
_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def safe_load(text: str) -> Any:
    """Parse YAML with the safe loader (no arbitrary objects)."""
    return yaml.load(text, Loader=_LOADER)  # noqa: S506 - a SafeLoader
