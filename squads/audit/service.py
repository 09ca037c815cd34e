"""Writing, reading and verifying the hash-chained audit log.

Each record stores the SHA-256 of the previous record (``prev_hash``) and of
its own canonical JSON form (``hash``), and ``seq`` is assigned explicitly as
head + 1, so an altered, removed or inserted record breaks the chain at a
place :func:`verify` can name. ``mac`` is an HMAC of the same bytes under the
audit key (:mod:`squads.audit.keys`), which the database never holds, so a rewrite
rehashed by someone without the key is caught too. Writes take the chain head under a lock
(``pg_advisory_xact_lock`` on PostgreSQL, ``BEGIN IMMEDIATE`` on SQLite) so
concurrent writers never fork it.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from contextlib import suppress
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Literal, TextIO

from sqlalchemy import Connection, Table, and_, exists, insert, or_, select, text
from sqlalchemy.orm import Session, aliased, defer, make_transient_to_detached, sessionmaker

from squads.audit import keys
from squads.audit.keys import canonical_json
from squads.audit.models import GENESIS_HASH, HASHED_FIELDS, AuditRecord, RecordKind
# verify lives in squads.audit.verify; callers keep importing it from here.
from squads.audit.verify import RECORD_PURPOSE, Anchor, VerifyReport, verify  # noqa: F401
from transcripts.redact import redact

if TYPE_CHECKING:
    from permissions.models import Decision
    from tools.executors.base import ExecResult

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
_CLOSING_KINDS = (RecordKind.EXECUTION_FINISHED.value, RecordKind.EXECUTION_INTERRUPTED.value)
# Printable to Python but invisible or look-alike on a terminal.
_INVISIBLE = frozenset("\u034f\u115f\u1160\u17b4\u17b5\u2800\u3164\uffa0")


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


def _lock_chain(conn: Connection) -> None:
    # SQLite needs nothing here: the engine opens every transaction with
    # BEGIN IMMEDIATE, which already holds the single writer lock.
    if conn.dialect.name == "postgresql":
        conn.execute(_LOCK, {"key": _PG_APPEND_LOCK})


def _head(conn: Connection) -> tuple[int, str]:
    row = conn.execute(_HEAD).first()
    return (0, GENESIS_HASH) if row is None else (row[0], row[1])


_HEAD_KEY = "audit_head"


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
    _lock_chain(conn)
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


def _scrub(argv: Sequence[str], details: Mapping[str, Any] | None = None) -> tuple[list[str], dict[str, Any]]:
    """argv with secrets redacted (the log is permanent); the raw argv's SHA-256 proves what it was."""
    clean = [redact(arg)[0] for arg in argv]
    extra = dict(details or {})
    if clean != list(argv):
        extra["argv_sha256"] = hashlib.sha256(canonical_json(list(argv))).hexdigest()
        if "exec_argv" in extra:
            extra["exec_argv"] = [redact(str(arg))[0] for arg in extra["exec_argv"]]
    return clean, extra


def record_decision(
    session: Session,
    *,
    decision: Decision,
    actor: str | None,
    squad: str | None,
    conversation_id: str | None = None,
    incident_id: str | None = None,
) -> AuditRecord:
    """Record a policy decision (allow, deny or needs_approval) and its reason."""
    verdict = decision.verdict
    argv, details = _scrub(decision.argv, {"grant": decision.grant, "program_path": decision.program_path})
    return append(
        session,
        kind=RecordKind.DECISION,
        actor=actor,
        squad=squad,
        agent=decision.agent,
        node=decision.node,
        argv=argv,
        decision=str(getattr(verdict, "value", verdict)),
        rule=decision.rule,
        reason=redact(decision.reason)[0],
        conversation_id=conversation_id,
        incident_id=incident_id,
        details=details,
    )


def _context_of(record: AuditRecord) -> dict[str, Any]:
    # Follow-up records repeat who/where/what so each line reads on its own.
    return {
        "actor": record.actor,
        "squad": record.squad,
        "agent": record.agent,
        "node": record.node,
        "argv": None if record.argv is None else json.loads(record.argv),
        "conversation_id": record.conversation_id,
        "incident_id": record.incident_id,
    }


def _get(session: Session, seq: int, kind: RecordKind) -> AuditRecord:
    record = session.get(AuditRecord, seq)
    if record is None or record.kind != kind.value:
        raise LookupError(f"record {seq} is not a {kind.value} record")
    return record


def record_approval(
    session: Session, *, decision_seq: int, approver: str, approved: bool, reason: str | None = None
) -> AuditRecord:
    """Record who approved (or rejected) a decision that needed approval.

    Refuses a decision that was a denial, one already resolved (so a command is
    approved, and run, at most once) and an approval by the person who asked."""
    held = _get(session, decision_seq, RecordKind.DECISION)
    if held.decision == "deny":
        raise ValueError(f"record {decision_seq} is a denial; there is nothing to approve")
    resolved = session.scalar(
        select(AuditRecord.seq).where(
            AuditRecord.kind == RecordKind.APPROVAL_RESOLVED.value, AuditRecord.ref_seq == decision_seq
        )
    )
    if resolved is not None:
        raise ValueError(f"decision {decision_seq} was already resolved (record {resolved})")
    if approved and held.actor and held.actor == approver:
        raise ValueError(f"{approver} asked for this command and cannot approve it; another approver must")
    return append(
        session,
        kind=RecordKind.APPROVAL_RESOLVED,
        **{**_context_of(held), "actor": approver},
        decision="approved" if approved else "rejected",
        rule=held.rule,
        reason=reason,
        ref_seq=decision_seq,
        details={"requested_by": held.actor},
    )


def record_started(
    session: Session,
    *,
    argv: Sequence[str],
    node: str | None,
    timeout_s: float,
    agent: str | None = None,
    actor: str | None = None,
    squad: str | None = None,
    decision_seq: int | None = None,
    conversation_id: str | None = None,
    incident_id: str | None = None,
    details: Mapping[str, Any] | None = None,
) -> AuditRecord:
    """Record that an execution is starting; commit it before running the command.

    ``timeout_s`` goes into ``details`` so :func:`sweep_interrupted` knows when
    a missing finished record means the executor died.
    """
    clean, scrubbed = _scrub(argv, details)
    return append(
        session,
        kind=RecordKind.EXECUTION_STARTED,
        actor=actor,
        squad=squad,
        agent=agent,
        node=node,
        argv=clean,
        conversation_id=conversation_id,
        incident_id=incident_id,
        ref_seq=decision_seq,
        details={**scrubbed, "timeout_s": float(timeout_s)},
    )


def record_finished(session: Session, *, started: AuditRecord, result: ExecResult) -> AuditRecord:
    """Record how an execution ended (an ``ExecResult`` or anything shaped like it)."""
    return append(
        session,
        kind=RecordKind.EXECUTION_FINISHED,
        **_context_of(started),
        ref_seq=started.seq,
        exit_code=result.exit_code,
        duration_ms=result.duration_ms,
        output_sha256=result.output_sha256 or None,
        stdout=result.stdout,
        stderr=result.stderr,
        truncated=result.truncated,
        details={
            "timed_out": bool(getattr(result, "timed_out", False)),
            "stdout_truncated": bool(getattr(result, "stdout_truncated", False)),
            "stderr_truncated": bool(getattr(result, "stderr_truncated", False)),
            **dict(getattr(result, "meta", None) or {}),
        },
    )


def record_interrupted(
    session: Session, *, started_seq: int, reason: str, details: Mapping[str, Any] | None = None
) -> AuditRecord:
    """Record that an execution will never report its end (crash, kill, lost node).

    ``details`` says more where it is known, e.g. ``{"ran": False}`` when the
    executor is certain the command never started (the node was offline)."""
    started = _get(session, started_seq, RecordKind.EXECUTION_STARTED)
    return append(
        session,
        kind=RecordKind.EXECUTION_INTERRUPTED,
        **_context_of(started),
        reason=reason,
        ref_seq=started_seq,
        details=dict(details or {}),
    )


def record_node_decision(
    session: Session, *, started_seq: int, verdict: str, rule: str, reason: str
) -> AuditRecord:
    """Record the node's own policy decision on a command the control plane allowed.

    The node agent decides again before it runs anything; when it refuses, this
    record stands beside the control plane's decision so both are on file."""
    started = _get(session, started_seq, RecordKind.EXECUTION_STARTED)
    return append(
        session,
        kind=RecordKind.DECISION,
        **_context_of(started),
        decision=verdict,
        rule=rule,
        reason=redact(reason)[0],
        ref_seq=started_seq,
        details={"source": "node", "node_policy": True},
    )


def open_executions(session: Session) -> list[AuditRecord]:
    """Started records that no finished or interrupted record refers to yet."""
    closer = aliased(AuditRecord)
    closed = exists().where(and_(closer.ref_seq == AuditRecord.seq, closer.kind.in_(_CLOSING_KINDS)))
    stmt = (
        select(AuditRecord)
        .where(AuditRecord.kind == RecordKind.EXECUTION_STARTED.value, ~closed)
        .order_by(AuditRecord.seq)
    )
    return list(session.scalars(stmt))


def sweep_interrupted(
    session: Session,
    *,
    now: datetime | None = None,
    grace_s: float = 60,
    default_timeout_s: float = 30.0,
) -> list[AuditRecord]:
    """Mark every execution overdue by its timeout plus ``grace_s`` as interrupted.

    ``now`` defaults to the current time (a naive ``now`` is taken as UTC).
    Returns the interrupted records appended (the caller commits).
    """
    now = now or datetime.now(UTC)
    if now.tzinfo is None:
        now = now.replace(tzinfo=UTC)
    # Take the append lock before looking, so a finished record being written
    # concurrently cannot also get an interrupted one.
    _lock_chain(session.connection())
    swept = []
    for started in open_executions(session):
        timeout = json.loads(started.details or "{}").get("timeout_s", default_timeout_s)
        deadline = datetime.fromisoformat(started.ts) + timedelta(seconds=float(timeout) + grace_s)
        if now > deadline:
            reason = (
                f"no finished record {float(timeout):g}s (+{grace_s:g}s grace) after the start; "
                "the executor crashed, was killed or lost the node"
            )
            swept.append(record_interrupted(session, started_seq=started.seq, reason=reason))
    return swept


def execution_state(session: Session, seq: int) -> Literal["running", "finished", "interrupted"]:
    """What became of execution ``seq``: a finished record wins over an interrupted one."""
    _get(session, seq, RecordKind.EXECUTION_STARTED)
    kinds = set(
        session.scalars(
            select(AuditRecord.kind).where(AuditRecord.ref_seq == seq, AuditRecord.kind.in_(_CLOSING_KINDS))
        )
    )
    if RecordKind.EXECUTION_FINISHED.value in kinds:
        return "finished"
    return "interrupted" if kinds else "running"


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


def _escape(ch: str) -> str:
    if ch.isprintable() and ch not in _INVISIBLE:
        return ch
    code = ord(ch)
    if code > 0xFFFF:  # JSON spells astral characters as a surrogate pair
        code -= 0x10000
        return f"\\u{0xD800 + (code >> 10):04x}\\u{0xDC00 + (code & 0x3FF):04x}"
    return f"\\u{code:04x}"


def display_text(value: str) -> str:
    """``value`` with control, bidi, zero-width and other invisible characters as ``\\uXXXX``."""
    if value.isprintable() and _INVISIBLE.isdisjoint(value):
        return value
    return "".join(_escape(ch) for ch in value)


def display_lines(text: str) -> str:
    """Multi-line ``text`` for a terminal or a Markdown block: tabs as spaces, and on each line every
    control, escape and invisible character as ``\\uXXXX`` (a ``\\r`` or an ANSI sequence from
    command output can neither end a block, move the cursor nor hide what was printed above it)."""
    return "\n".join(display_text(line.replace("\t", "    ")) for line in text.split("\n"))


def display_argv(argv: Sequence[str]) -> str:
    """A JSON array for humans in which nothing can spoof the terminal.

    Control, bidi, zero-width and other invisible characters are escaped as
    ``\\uXXXX``; the result still parses back to ``argv`` as JSON.
    """
    quoted = ('"' + display_text(a.replace("\\", "\\\\").replace('"', '\\"')) + '"' for a in argv)
    return "[" + ", ".join(quoted) + "]"


# -- reading the log for people (the web pages) ---------------------------------------------

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
