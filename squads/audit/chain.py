"""Appending to the hash-chained audit log, and its head.

Each record stores the SHA-256 of the previous record (``prev_hash``) and of
its own canonical JSON form (``hash``), and ``seq`` is assigned explicitly as
head + 1, so an altered, removed or inserted record breaks the chain at a
place :func:`squads.audit.verify.verify` can name. ``mac`` is an HMAC of the same bytes under the
audit key (:mod:`squads.audit.keys`), which the database never holds, so a rewrite
rehashed by someone without the key is caught too. Writes take the chain head under a lock
(``pg_advisory_xact_lock`` on PostgreSQL, ``BEGIN IMMEDIATE`` on SQLite) so
concurrent writers never fork it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, Table, insert, select, text
from sqlalchemy.orm import Session, make_transient_to_detached, sessionmaker

from squads.audit import keys
from squads.audit.keys import canonical_json
from squads.audit.models import GENESIS_HASH, HASHED_FIELDS, AuditRecord, RecordKind
from squads.audit.verify import RECORD_PURPOSE

# Any fixed bigint works; it only has to be the same in every process that
# appends, and unlikely to collide with another application's advisory lock.
_PG_APPEND_LOCK = 0x5A_0AD5_A0D1_7106
_NUL_SIGN = "\u2400"  # ␀: PostgreSQL text cannot hold NUL
_TABLE: Table = AuditRecord.__table__  # type: ignore[assignment]
_TEXT_FIELDS = (
    "actor", "squad", "agent", "node", "decision", "rule", "reason",
    "conversation_id", "incident_id", "output_sha256", "stdout", "stderr",
)  # fmt: skip
# Built once: append is the hot path, and statement construction is a
# measurable part of it.
_HEAD = select(_TABLE.c.seq, _TABLE.c.hash).order_by(_TABLE.c.seq.desc()).limit(1)
_INSERT = insert(_TABLE)
_LOCK = text("SELECT pg_advisory_xact_lock(:key)")
_HEAD_KEY = "audit_head"


def record_hash(fields: Mapping[str, Any]) -> str:
    """SHA-256 (hex) over the canonical JSON of a record's hashed fields."""
    return hashlib.sha256(canonical_json({name: fields[name] for name in HASHED_FIELDS})).hexdigest()


def record_mac(key: bytes, fields: Mapping[str, Any]) -> str:
    """HMAC-SHA256 (hex) under the audit key over the same canonical bytes as :func:`record_hash`."""
    return keys.mac(key, RECORD_PURPOSE, canonical_json({name: fields[name] for name in HASHED_FIELDS}))


def _clean(value: str) -> str:
    # Stored text must be valid on both backends: NUL is visibly replaced,
    # lone surrogates (undecodable bytes smuggled through) become U+FFFD.
    value = value.replace("\x00", _NUL_SIGN)
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        value = value.encode("utf-16", "surrogatepass").decode("utf-16", "replace")
    return value


def stored_text(value: str) -> str:
    """``value`` as the log stores text: NUL shown as ␀, undecodable characters as U+FFFD."""
    return _clean(value)


def _clean_json(value: Any) -> Any:
    if isinstance(value, str):
        return _clean(value)
    if isinstance(value, Mapping):
        return {_clean(str(k)): _clean_json(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean_json(v) for v in value]
    return value


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds")


def lock_chain(conn: Connection) -> None:
    """Hold the append lock until the transaction ends, so no other writer appends meanwhile."""
    # SQLite needs nothing here: the engine opens every transaction with
    # BEGIN IMMEDIATE, which already holds the single writer lock.
    if conn.dialect.name == "postgresql":
        conn.execute(_LOCK, {"key": _PG_APPEND_LOCK})


def _head(conn: Connection) -> tuple[int, str]:
    row = conn.execute(_HEAD).first()
    return (0, GENESIS_HASH) if row is None else (row[0], row[1])


def _locked_head(session: Session, conn: Connection) -> tuple[int, str]:
    """The head to append after, with the append lock held for the rest of the transaction.

    The lock is held until the transaction ends, so after this transaction's own
    first append the head is known without asking again: a fan-out appending
    three thousand records pays for one lookup, not three thousand. Inside a
    savepoint nothing is remembered, because rolling it back would drop records."""
    remembered = session.info.get(_HEAD_KEY)
    if session.in_nested_transaction():
        session.info.pop(_HEAD_KEY, None)
    elif remembered is not None and remembered[0] is session.get_transaction():
        return remembered[1], remembered[2]
    lock_chain(conn)
    return _head(conn)


def head(session: Session | Connection) -> tuple[int, str]:
    """The last record's ``(seq, hash)``; ``(0, GENESIS_HASH)`` when the log is empty."""
    return _head(session.connection() if isinstance(session, Session) else session)


def _session_key(session: Session) -> bytes:
    key = session.info.get(keys.SESSION_KEY)
    return key if isinstance(key, bytes) else keys.process_key()


def append(
    session: Session,
    *,
    kind: RecordKind | str,
    actor: str | None = None,
    squad: str | None = None,
    agent: str | None = None,
    node: str | None = None,
    argv: Sequence[str] | None = None,
    decision: str | None = None,
    rule: str | None = None,
    reason: str | None = None,
    conversation_id: str | None = None,
    incident_id: str | None = None,
    ref_seq: int | None = None,
    exit_code: int | None = None,
    duration_ms: int | None = None,
    output_sha256: str | None = None,
    stdout: str | None = None,
    stderr: str | None = None,
    truncated: bool | None = None,
    details: Mapping[str, Any] | None = None,
) -> AuditRecord:
    """Append one record after the current head, inside the caller's transaction.

    The row is flushed, not committed: the caller commits (or rolls back, in
    which case the record never existed). ``argv`` is stored as a canonical
    JSON array and ``details`` as a canonical JSON object; NUL in any text is
    stored as U+2400 (␀).
    """
    if argv is not None and (isinstance(argv, str) or not all(isinstance(a, str) for a in argv)):
        raise TypeError("argv must be a sequence of str, never a shell string")
    values: dict[str, Any] = {
        "kind": RecordKind(kind).value,
        "actor": actor, "squad": squad, "agent": agent, "node": node,
        "decision": decision, "rule": rule, "reason": reason,
        "conversation_id": conversation_id, "incident_id": incident_id,
        "output_sha256": output_sha256, "stdout": stdout, "stderr": stderr,
    }  # fmt: skip
    for name in _TEXT_FIELDS:
        if values[name] is not None:
            values[name] = _clean(str(values[name]))
    values.update(
        argv=None if argv is None else canonical_json(_clean_json(list(argv))).decode(),
        details=None if details is None else canonical_json(_clean_json(dict(details))).decode(),
        ref_seq=None if ref_seq is None else int(ref_seq),
        exit_code=None if exit_code is None else int(exit_code),
        duration_ms=None if duration_ms is None else int(duration_ms),
        truncated=None if truncated is None else bool(truncated),
    )
    conn = session.connection()
    seq, prev_hash = _locked_head(session, conn)
    values.update(seq=seq + 1, ts=_now(), prev_hash=prev_hash)
    canonical = canonical_json({name: values[name] for name in HASHED_FIELDS})
    values["hash"] = hashlib.sha256(canonical).hexdigest()
    values["mac"] = keys.mac(_session_key(session), RECORD_PURPOSE, canonical)
    # A Core insert skips the unit of work; the record is then attached as if
    # loaded, so callers get an ordinary persistent AuditRecord.
    conn.execute(_INSERT, values)
    if not session.in_nested_transaction():
        session.info[_HEAD_KEY] = (session.get_transaction(), seq + 1, values["hash"])
    record = AuditRecord(**values)
    make_transient_to_detached(record)
    session.add(record)
    return record


def append_committed(sessions: sessionmaker[Session], **fields: Any) -> AuditRecord:
    """Append one record in its own transaction and commit it."""
    with sessions() as session, session.begin():
        record = append(session, **fields)
        # Detached before commit, so it stays readable whatever expire_on_commit says.
        session.expunge(record)
    return record
