"""The squads' shipped default grants, derived from the bundles' YAML alone.

The node agent takes its defaults from here: it reads each bundle's ``squad.yaml``
(agents), ``tools.yaml`` and ``grants.yaml`` and nothing else, so it loads no squad
model, runbook, analyzer or brain. The control plane builds the same grants from its
loaded squads with ``agent_grant``, so both sides agree (a test compares them).
"""

from __future__ import annotations

import stat
from collections.abc import Iterable, Sequence
from pathlib import Path

import yaml
from pydantic import ValidationError

from permissions.models import GrantSpec
from squads.settings.yaml_loader import safe_load
from tools.models import Effect, ToolSpec
from tools.service import rule_text

BUILTIN_BUNDLES = Path(__file__).parent / "bundles"


class BundleError(ValueError):
    """A bundle failed to load; the message names the file and the problem."""


def read_yaml(path: Path) -> dict:
    """A bundle file's top-level mapping, or a BundleError naming the file."""
    try:
        data = safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise BundleError(f"{path}: not valid YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise BundleError(f"{path}: expected a mapping at the top level")
    return data


def check_private(folder: Path) -> None:
    """Refuse a site bundle that anyone but its owner could change.

    A site bundle's tools become default grants and its analyzers run in the control plane, so
    its folder, every file and folder in it, and the directory that holds it must not be group-
    or world-writable. Raises BundleError naming the path and the fix."""
    for path in [folder.parent, folder, *sorted(folder.rglob("*"))]:
        mode = path.stat().st_mode
        if mode & (stat.S_IWGRP | stat.S_IWOTH):
            who = "world" if mode & stat.S_IWOTH else "group"
            raise BundleError(
                f"{path}: refusing to load the site bundle {folder.name}: {path} is {who}-writable "
                f"(mode {stat.S_IMODE(mode):o}), and a bundle's tools and analyzers act for the control plane; "
                f"make the config directory writable by its owner only (chmod go-w {path})"
            )


def bundle_folders(roots: Iterable[Path]) -> list[Path]:
    """Every folder holding a ``squad.yaml`` directly under each root, roots in order, names sorted.

    Folders outside the shipped ``squads/bundles/`` are site bundles and must pass ``check_private``."""
    folders: list[Path] = []
    for root in roots:
        if root.is_dir():
            found = sorted(p for p in root.iterdir() if (p / "squad.yaml").is_file())
            if root.resolve() != BUILTIN_BUNDLES.resolve():
                for folder in found:
                    check_private(folder)
            folders.extend(found)
    return folders


def agent_grant(squad: str, agent: str, tools: Sequence[ToolSpec]) -> GrantSpec:
    """An agent's shipped grant from its tools: read-only ones allowed, state changes held for approval."""
    agent_id = f"{squad}/{agent}"
    return GrantSpec(
        name=agent_id,
        description=f"Shipped default grant of {agent_id}, from its tools",
        agents=[agent_id],
        allow=[rule_text(t) for t in tools if t.effect is Effect.ALLOW],
        approve=[rule_text(t) for t in tools if t.effect is Effect.NEEDS_APPROVAL],
    )


def _bundle_grants(folder: Path) -> tuple[str, list[GrantSpec]]:
    squad = read_yaml(folder / "squad.yaml")
    name, agents = squad.get("name"), squad.get("agents")
    if not isinstance(name, str) or not isinstance(agents, dict):
        raise BundleError(f"{folder / 'squad.yaml'}: needs a 'name' and an 'agents' mapping")
    tools_file, grants_file = folder / "tools.yaml", folder / "grants.yaml"
    try:
        tools = [ToolSpec.model_validate(t) for t in (read_yaml(tools_file).get("tools") or [])] \
            if tools_file.exists() else []
    except ValidationError as exc:
        raise BundleError(f"{tools_file}: {exc}") from exc
    try:
        extra = [GrantSpec.model_validate(g) for g in (read_yaml(grants_file).get("grants") or [])] \
            if grants_file.exists() else []
    except ValidationError as exc:
        raise BundleError(f"{grants_file}: {exc}") from exc
    grants = [agent_grant(name, agent, [t for t in tools if t.agent == agent]) for agent in agents]
    return name, [*grants, *extra]


def default_grants_from_yaml(roots: Iterable[Path] = (BUILTIN_BUNDLES,)) -> list[GrantSpec]:
    """The default grants of every bundle under ``roots``; a later bundle replaces one of the same name."""
    by_squad: dict[str, list[GrantSpec]] = {}
    for folder in bundle_folders(roots):
        name, grants = _bundle_grants(folder)
        by_squad[name] = grants
    return [grant for grants in by_squad.values() for grant in grants]
