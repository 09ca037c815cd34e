"""Loading squad bundles and the default grants they ship."""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from pathlib import Path

from pydantic import ValidationError

from permissions.models import GrantSpec
from squads.grants import BUILTIN_BUNDLES, BundleError, agent_grant, bundle_folders
from squads.grants import read_yaml as _read_yaml
from squads.models import SquadSpec

__all__ = ["BUILTIN_BUNDLES", "BundleError", "check_analyzers", "default_grants", "load_bundle", "load_squads"]


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
        squad = SquadSpec.model_validate(data)
    except ValidationError as exc:
        raise BundleError(f"squad bundle {folder}: {exc}") from exc
    check_analyzers(folder, squad)
    return squad


def _where(folder: Path, name: str) -> Path:
    # The file an entry came from: its own file when the bundle has one, else squad.yaml.
    return folder / name if (folder / name).exists() else folder / "squad.yaml"


def check_analyzers(folder: Path, squad: SquadSpec) -> None:
    """Every analyzer a tool or a runbook step names exists.

    A typo fails when the bundle loads, naming the file and the entry (and the closest
    known name), instead of at run time with a ``KeyError``."""
    from squads.brain.analyzers import registry  # the analyzers, only when a bundle is checked

    known = set(registry())

    def unknown(name: str) -> str:
        close = difflib.get_close_matches(name, known, n=1)
        return f"unknown analyzer {name!r}" + (f"; did you mean {close[0]!r}?" if close else "")

    for tool in squad.tools:
        if tool.analyze is not None and tool.analyze not in known:
            raise BundleError(f"{_where(folder, 'tools.yaml')}: tool {tool.name}: {unknown(tool.analyze)}")
    for runbook in squad.runbooks:
        steps = [*runbook.steps, *(s for offer in runbook.offers for s in offer.steps)]
        for number, step in enumerate(steps, start=1):
            if step.analyze is not None and step.analyze not in known:
                raise BundleError(f"{_where(folder, 'runbooks.yaml')}: runbook {runbook.name}, step {number} "
                                  f"({step.tool}): {unknown(step.analyze)}")


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
