"""Grants stored in the database: saved and disabled by admins, every change audited.

Apart from ``permissions.service`` (parsing and site YAML), which the node agent uses and
which therefore must not reach the database or the audit log."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from datetime import UTC, datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from permissions.engine import compile_grant
from permissions.models import GrantSpec
from permissions.programs import ProgramSpec, load_programs
from permissions.service import GRANT_NAME_MAX, GrantError
from permissions.tables import GrantRecord
from squads.audit.models import RecordKind
from squads.audit.chain import append


def stored_grants(session: Session) -> list[GrantSpec]:
    """Enabled grants stored in the database."""
    rows = session.scalars(select(GrantRecord).where(GrantRecord.enabled.is_(True)).order_by(GrantRecord.id))
    return [GrantSpec.model_validate_json(row.body) for row in rows]


def grant_records(session: Session) -> list[GrantRecord]:
    """Every stored grant, enabled or not, in the order they were first saved."""
    return list(session.scalars(select(GrantRecord).order_by(GrantRecord.id)))


def _audit(session: Session, *, action: str, row: GrantRecord, actor: str | None) -> None:
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
