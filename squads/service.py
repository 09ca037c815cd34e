"""Loading squad bundles and the default grants they ship."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import yaml
from pydantic import ValidationError

from squads.settings.yaml_loader import safe_load
from permissions.models import GrantSpec
from squads.models import SquadSpec
from tools.models import Effect
from tools.service import rule_text

BUILTIN_BUNDLES = Path(__file__).parent / "bundles"


class BundleError(ValueError):
    """A bundle failed to load; the message names the file and the problem."""


def _read_yaml(path: Path) -> dict:
    try:
        data = safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise BundleError(f"{path}: not valid YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise BundleError(f"{path}: expected a mapping at the top level")
    return data


def load_bundle(folder: Path) -> SquadSpec:
    """Load ``squad.yaml`` plus optional ``tools.yaml``, ``grants.yaml`` and ``runbooks.yaml``."""
    data = _read_yaml(folder / "squad.yaml")
    for extra, keys in (("tools", ("tools",)), ("grants", ("grants",)), ("runbooks", ("runbooks", "actions"))):
        path = folder / f"{extra}.yaml"
        if path.exists():
            content = _read_yaml(path)
            unknown = set(content) - set(keys)
            if unknown:
                raise BundleError(f"{path}: unknown top-level key(s) {sorted(unknown)}; expected {list(keys)}")
            for key in keys:
                data[key] = content.get(key, [])
    try:
        return SquadSpec.model_validate(data)
    except ValidationError as exc:
        raise BundleError(f"squad bundle {folder}: {exc}") from exc


def load_squads(extra_dirs: Iterable[Path] = ()) -> dict[str, SquadSpec]:
    """The built-in squads, then any bundles under ``extra_dirs`` (which may replace them)."""
    squads: dict[str, SquadSpec] = {}
    for root in (BUILTIN_BUNDLES, *extra_dirs):
        if not root.is_dir():
            continue
        for folder in sorted(p for p in root.iterdir() if (p / "squad.yaml").is_file()):
            squad = load_bundle(folder)
            squads[squad.name] = squad
    return squads


def default_grants(squads: Iterable[SquadSpec]) -> list[GrantSpec]:
    """One grant per agent from its tools (read-only allowed, state changes
    held for approval), plus each squad's extra grants."""
    grants: list[GrantSpec] = []
    for squad in squads:
        for agent in squad.agents:
            tools = [t for t in squad.tools if t.agent == agent]
            grants.append(
                GrantSpec(
                    name=squad.agent_id(agent),
                    description=f"Shipped default grant of {squad.agent_id(agent)}, from its tools",
                    agents=[squad.agent_id(agent)],
                    allow=[rule_text(t) for t in tools if t.effect is Effect.ALLOW],
                    approve=[rule_text(t) for t in tools if t.effect is Effect.NEEDS_APPROVAL],
                )
            )
        grants.extend(squad.grants)
    return grants
