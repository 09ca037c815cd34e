"""Reading the audit log: one record as plain data, the JSONL export, search pages and follow-ups."""

from __future__ import annotations

import json
from collections.abc import Iterable
from contextlib import suppress
from dataclasses import dataclass
from typing import Any, TextIO

from sqlalchemy import Connection, Table, or_, select
from sqlalchemy.orm import Session, defer

from squads.audit.models import AuditRecord

_TABLE: Table = AuditRecord.__table__  # type: ignore[assignment]


def _stream(source: Session | Connection, stmt: Any, batch: int) -> Iterable[Any]:
    # yield_per streams (a server-side cursor on PostgreSQL) instead of
    # materialising the whole log.
    result = source.execute(stmt.execution_options(yield_per=batch))
    try:
        yield from result
    finally:
        result.close()


def record_as_dict(record: Any) -> dict[str, Any]:
    """All columns of a record (ORM object or row), argv as a list, details as an object."""
    get = record._mapping.get if hasattr(record, "_mapping") else lambda name: getattr(record, name)
    out = {col.name: get(col.name) for col in _TABLE.columns}
    for name in ("argv", "details"):
        if out[name] is not None:
            # A row edited behind our back may hold junk; export it as is
            # rather than stop, and let verify name it.
            with suppress(ValueError):
                out[name] = json.loads(out[name])
    return out


def export_jsonl(session: Session | Connection, out: TextIO, *, since_seq: int = 0) -> int:
    """Write one JSON object per record with ``seq > since_seq``; returns the count.

    ASCII-only JSON, so a terminal or a non-UTF-8 pipe can receive it safely.
    """
    count = 0
    stmt = select(_TABLE).where(_TABLE.c.seq > since_seq).order_by(_TABLE.c.seq)
    for row in _stream(session, stmt, 1000):
        out.write(json.dumps(record_as_dict(row), ensure_ascii=True) + "\n")
        count += 1
    return count


_LIKE_ESCAPE = "/"  # not "\": backslashes in literals differ between SQLite and PostgreSQL


def like_escape(text: str) -> str:
    """``text`` for a LIKE pattern with ``ESCAPE '/'``: ``%``, ``_`` and ``/`` match only themselves."""
    return text.replace("/", "//").replace("%", "/%").replace("_", "/_")


@dataclass(frozen=True)
class AuditQuery:
    """Filters for :func:`search_records`: every one given must hold.

    The named columns match exactly; ``text`` is a case-insensitive substring of
    the argv, the rule or the reason, taken literally (``%`` and ``_`` are not wildcards)."""

    kind: str | None = None
    actor: str | None = None
    squad: str | None = None
    agent: str | None = None
    node: str | None = None
    decision: str | None = None
    conversation_id: str | None = None
    text: str | None = None

    def conditions(self) -> list[Any]:
        """The WHERE clauses (bound parameters, never spliced text)."""
        clauses: list[Any] = [
            _TABLE.c[name] == value
            for name in ("kind", "actor", "squad", "agent", "node", "decision", "conversation_id")
            if (value := getattr(self, name))
        ]
        if self.text:
            # argv is stored as JSON, where " \ and control characters are escaped: look for both spellings.
            spellings = {self.text, json.dumps(self.text, ensure_ascii=False)[1:-1]}
            patterns = [f"%{like_escape(s)}%" for s in spellings]
            columns = [_TABLE.c.argv, _TABLE.c.rule, _TABLE.c.reason]
            clauses.append(or_(*(c.ilike(p, escape=_LIKE_ESCAPE) for c in columns for p in patterns)))
        return clauses


@dataclass(frozen=True)
class AuditPage:
    """A page of records, newest first, and the ``before`` cursors around it.

    ``older`` is None on the last page. ``newer`` is None when nothing is newer;
    ``newer == 0`` means the newer page is the first one (no cursor)."""

    records: list[AuditRecord]
    older: int | None
    newer: int | None


def search_records(session: Session, query: AuditQuery, *, before: int | None = None, limit: int = 50) -> AuditPage:
    """Records matching ``query`` with ``seq < before``, newest first, at most ``limit``.

    Outputs are not loaded (a page of a thousand-line outputs would be megabytes); open
    one record with ``session.get`` for everything."""
    where = query.conditions()
    stmt = (
        select(AuditRecord).options(defer(AuditRecord.stdout), defer(AuditRecord.stderr))
        .where(*where, *([AuditRecord.seq < before] if before is not None else []))
        .order_by(AuditRecord.seq.desc()).limit(limit + 1)
    )
    records = list(session.scalars(stmt))
    older = records[limit - 1].seq if len(records) > limit else None
    newer = None
    if before is not None:
        ahead = list(session.scalars(
            select(AuditRecord.seq).where(*where, AuditRecord.seq >= before).order_by(AuditRecord.seq).limit(limit)
        ))
        if ahead:
            newer = ahead[-1] + 1 if len(ahead) == limit and _any_after(session, where, ahead[-1]) else 0
    return AuditPage(records[:limit], older, newer)


def _any_after(session: Session, where: list[Any], seq: int) -> bool:
    return session.scalar(select(AuditRecord.seq).where(*where, AuditRecord.seq > seq).limit(1)) is not None


def followups(session: Session, seq: int) -> list[int]:
    """The records that refer to record ``seq`` (its execution, approval or end), oldest first."""
    return list(session.scalars(select(AuditRecord.seq).where(AuditRecord.ref_seq == seq).order_by(AuditRecord.seq)))
