"""Where grants come from: squads' shipped defaults and site YAML (stored grants: ``permissions.store``)."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from pathlib import Path

import yaml
from pydantic import ValidationError

from squads.settings.yaml_loader import safe_load
from permissions.engine import PolicyEngine, compile_grant
from permissions.models import GrantSpec
from permissions.programs import ProgramSpec, load_programs
from permissions.rules import RuleError


GRANT_NAME_MAX = 200  # the width of grants.name


class GrantError(ValueError):
    """A grant is invalid; the message names the grant and the problem."""


def parse_grants(data: object, *, source: str, programs: Mapping[str, ProgramSpec] | None = None) -> list[GrantSpec]:
    """Validate a ``{grants: [...]}`` document and compile every rule once.

    ``programs`` are the known programs (shipped plus the site's); shipped only by default."""
    known = dict(programs) if programs is not None else load_programs()
    if not isinstance(data, dict) or not isinstance(data.get("grants", []), list):
        raise GrantError(f"{source}: expected a mapping with a 'grants' list")
    grants: list[GrantSpec] = []
    for i, raw in enumerate(data.get("grants", [])):
        try:
            spec = GrantSpec.model_validate(raw)
            compile_grant(spec, known)
        except (ValidationError, RuleError) as exc:
            raise GrantError(f"{source}, grant #{i + 1}: {exc}") from exc
        grants.append(spec)
    return grants


def load_site_grants(config_dir: Path, *, programs: Mapping[str, ProgramSpec] | None = None) -> list[GrantSpec]:
    """Every grant in ``<config_dir>/grants/*.yaml``, in file-name order."""
    folder = config_dir / "grants"
    grants: list[GrantSpec] = []
    if folder.is_dir():
        for path in sorted(folder.glob("*.y*ml")):
            try:
                data = safe_load(path.read_text())
            except yaml.YAMLError as exc:
                raise GrantError(f"{path}: not valid YAML: {exc}") from exc
            grants.extend(parse_grants(data, source=str(path), programs=programs))
    return grants


def build_engine(
    *,
    defaults: Iterable[GrantSpec],
    site: Iterable[GrantSpec] = (),
    resolve_path: Callable[[str], str] | None = None,
    programs: Mapping[str, ProgramSpec] | None = None,
) -> PolicyEngine:
    """The engine for the squads' defaults plus site overrides (and site programs, if any)."""
    return PolicyEngine(
        defaults=list(defaults), grants=list(site), resolve_path=resolve_path,
        programs=dict(programs) if programs is not None else None,
    )
