"""Where grants come from: squads' shipped defaults, site YAML, the database."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime
from pathlib import Path

import yaml
from pydantic import ValidationError
from sqlalchemy import select
from sqlalchemy.orm import Session

from squads.settings.yaml_loader import safe_load
from permissions.engine import PolicyEngine, compile_grant
from permissions.models import GrantRecord, GrantSpec
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


def stored_grants(session: Session) -> list[GrantSpec]:
    """Enabled grants stored in the database."""
    rows = session.scalars(select(GrantRecord).where(GrantRecord.enabled.is_(True)).order_by(GrantRecord.id))
    return [GrantSpec.model_validate_json(row.body) for row in rows]


def grant_records(session: Session) -> list[GrantRecord]:
    """Every stored grant, enabled or not, in the order they were first saved."""
    return list(session.scalars(select(GrantRecord).order_by(GrantRecord.id)))


def _audit(session: Session, *, action: str, row: GrantRecord, actor: str | None) -> None:
    # Imported here: the node agent loads this module for parse_grants and keeps no audit log.
    from squads.audit.models import RecordKind
    from squads.audit.service import append

    # The body's digest proves which version was saved without copying rule text into the log.
    append(session, kind=RecordKind.GRANT_ADMIN, actor=actor, details={
        "action": action, "grant": row.name, "body_sha256": hashlib.sha256(row.body.encode()).hexdigest()})


def save_grant(
    session: Session, *, spec: GrantSpec, actor: str | None, programs: Mapping[str, ProgramSpec] | None = None
) -> GrantRecord:
    """Validate and store (or replace, and re-enable) a grant by name. Audited.

    ``programs`` are the known programs (shipped plus the site's); shipped only by default."""
    if not spec.name.strip() or len(spec.name) > GRANT_NAME_MAX:
        raise GrantError(f"a grant name is 1 to {GRANT_NAME_MAX} characters")
    compile_grant(spec, dict(programs) if programs is not None else load_programs())
    row = session.scalar(select(GrantRecord).where(GrantRecord.name == spec.name))
    body = json.dumps(spec.model_dump(mode="json"), sort_keys=True)
    now = datetime.now(UTC).isoformat()
    if row is None:
        row = GrantRecord(name=spec.name, body=body, enabled=True, created_at=now, created_by=actor)
        session.add(row)
        action = "created"
    else:
        action = "replaced" if row.enabled else "re-enabled"
        row.body, row.enabled, row.created_at, row.created_by = body, True, now, actor
    session.flush()
    _audit(session, action=action, row=row, actor=actor)
    return row


def disable_grant(session: Session, *, name: str, actor: str | None) -> GrantRecord:
    """Stop applying the stored grant ``name`` (kept, so saving it again re-enables it). Audited."""
    row = session.scalar(select(GrantRecord).where(GrantRecord.name == name))
    if row is None:
        raise GrantError(f"no stored grant is named {name!r}")
    if row.enabled:
        row.enabled = False
        session.flush()
        _audit(session, action="disabled", row=row, actor=actor)
    return row


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
