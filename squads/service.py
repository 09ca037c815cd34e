"""Loading squad bundles and the default grants they ship.

A bundle is one folder: its YAML (``squad.yaml``, ``tools.yaml``, ``grants.yaml``,
``runbooks.yaml``, ``slots.yaml``) and its Python (``analyzers.py`` or ``analyzers/``, and the
parsers those import). Bundles are discovered: every folder with a ``squad.yaml`` under
``squads/bundles/`` and under the site's ``$SQUADS_CONFIG_DIR/squads/``.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from pydantic import TypeAdapter, ValidationError

from permissions.models import GrantSpec
from squads.brain.extract import compile_slots
from squads.brain.models import SlotSpec
from squads.bundle_check import check_analyzers, check_references, check_signatures, where
from squads.bundle_code import load_analyzers
from squads.grants import BUILTIN_BUNDLES, BundleError, agent_grant, bundle_folders
from squads.grants import read_yaml as _read_yaml
from squads.models import SquadSpec

SLOTS = TypeAdapter(dict[str, SlotSpec | str])
# The files of a bundle besides squad.yaml, and the top-level keys each may hold.
FILES = (("tools", ("tools",)), ("grants", ("grants",)), ("runbooks", ("runbooks", "actions")), ("slots", ("slots",)))

__all__ = ["BUILTIN_BUNDLES", "BundleError", "check_analyzers", "default_grants", "load_bundle", "load_squads"]


def load_bundle(folder: Path) -> SquadSpec:
    """Load ``squad.yaml`` plus optional ``tools.yaml``, ``grants.yaml``, ``runbooks.yaml`` and
    ``slots.yaml``, import the bundle's analyzers, and check the YAML against them (``squads.bundle_check``)."""
    data = _read_yaml(folder / "squad.yaml")
    for extra, keys in FILES:
        path = folder / f"{extra}.yaml"
        if path.exists():
            content = _read_yaml(path)
            unknown = set(content) - set(keys)
            if unknown:
                raise BundleError(f"{path}: unknown top-level key(s) {sorted(unknown)}; expected {list(keys)}")
            for key in keys:
                data[key] = content.get(key) or ([] if key != "slots" else {})
    try:
        # Checked on their own first, so that a broken slot names slots.yaml rather than the bundle.
        data["slots"] = SLOTS.validate_python(data.get("slots") or {})
        compile_slots(data["slots"])
    except (ValidationError, ValueError) as exc:
        raise BundleError(f"{where(folder, 'slots.yaml')}: {exc}") from None
    try:
        squad = SquadSpec.model_validate(data)
    except ValidationError as exc:
        raise BundleError(f"squad bundle {folder}: {exc}") from exc
    registry = load_analyzers(folder)
    check_analyzers(folder, squad, registry)
    check_references(folder, squad, registry)
    check_signatures(folder, squad)
    return squad.with_analyzers(registry)


def load_squads(extra_dirs: Iterable[Path] = ()) -> dict[str, SquadSpec]:
    """The built-in squads, then any bundles under ``extra_dirs`` (which may replace them)."""
    squads: dict[str, SquadSpec] = {}
    for folder in bundle_folders((BUILTIN_BUNDLES, *extra_dirs)):
        squad = load_bundle(folder)
        squads[squad.name] = squad
    return squads


def default_grants(squads: Iterable[SquadSpec]) -> list[GrantSpec]:
    """One grant per agent from its tools (read-only allowed, state changes
    held for approval), plus each squad's extra grants."""
    grants: list[GrantSpec] = []
    for squad in squads:
        grants.extend(agent_grant(squad.name, agent, [t for t in squad.tools if t.agent == agent]) for agent in squad.agents)
        grants.extend(squad.grants)
    return grants
