"""Tamper evidence for transcripts: every event is MACed under the audit key and tied to its audit record.

Triggers refuse UPDATE and DELETE on ``conversation_events``, but whoever can
write the database can drop them. So each event stores ``mac``, an HMAC under
the audit key (:mod:`squads.audit.keys`) over all its columns, and an event that
refers to an audit record stores that record's hash (``audit_hash``). A tool
output must also say what its ``execution_finished`` record says (exit code,
stdout, stderr), and that record is itself protected by the keyed chain.
:func:`verify_transcripts` checks all of it; ``squads audit verify`` runs it.
"""

from __future__ import annotations

import hmac
import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Connection, select
from sqlalchemy.orm import Session

from squads.audit import keys
from squads.audit.models import AuditRecord, RecordKind
from squads.audit.chain import stored_text
from transcripts.models import EventKind, EventRecord

EVENT_PURPOSE = "transcript-event"
MAX_PROBLEMS = 20
_OUTPUT_FIELDS = ("exit_code", "stdout", "stderr")


def event_mac(
    key: bytes, *, conversation_id: str, seq: int, turn: int, kind: str, at: str,
    audit_seq: int | None, audit_hash: str | None, data: str,
) -> str:
    """The MAC of one stored event (``data`` is the stored JSON text)."""
    fields = {"conversation_id": conversation_id, "seq": seq, "turn": turn, "kind": kind, "at": at,
              "audit_seq": audit_seq, "audit_hash": audit_hash, "data": data}  # fmt: skip
    return keys.mac(key, EVENT_PURPOSE, keys.canonical_json(fields))


def audit_hash_of(session: Session | Connection, audit_seq: int | None) -> str | None:
    """The hash of audit record ``audit_seq`` (None when there is none)."""
    if audit_seq is None:
        return None
    return session.execute(select(AuditRecord.hash).where(AuditRecord.seq == audit_seq)).scalar()


@dataclass(frozen=True)
class TranscriptReport:
    """What :func:`verify_transcripts` found: ``problems`` holds at most ``MAX_PROBLEMS`` sentences."""

    ok: bool
    events_checked: int
    tool_outputs_checked: int
    problems: list[str] = field(default_factory=list)
    more_problems: int = 0


def _output_mismatch(data: str, record: Any) -> str | None:
    try:
        output = json.loads(data)
    except ValueError:
        return "its data is not JSON"
    if record.kind != RecordKind.EXECUTION_FINISHED.value:
        return f"audit record {record.seq} is a {record.kind} record, not execution_finished"
    for name in _OUTPUT_FIELDS:
        mine = output.get(name) if isinstance(output, dict) else None
        if isinstance(mine, str):
            mine = stored_text(mine)
        if mine != getattr(record, name):
            return f"its {name} differs from audit record {record.seq}'s"
    return None


def _check(event: EventRecord, record: AuditRecord | None, key: bytes) -> str | None:
    where = f"conversation {event.conversation_id} event {event.seq} ({event.kind})"
    is_output = event.kind == EventKind.TOOL_OUTPUT.value
    mac = event_mac(key, conversation_id=event.conversation_id, seq=event.seq, turn=event.turn,
                    kind=event.kind, at=event.at, audit_seq=event.audit_seq, audit_hash=event.audit_hash,
                    data=event.data)  # fmt: skip
    if event.mac is None or not hmac.compare_digest(mac, event.mac):
        return f"{where}: MAC does not match under this audit key (altered after it was written)"
    if event.audit_seq is not None and record is None:
        return f"{where}: its audit record {event.audit_seq} does not exist"
    if record is not None and record.hash != event.audit_hash:
        return f"{where}: tied to audit record {event.audit_seq} by hash {event.audit_hash}, " \
               f"but that record's hash is {record.hash}"  # fmt: skip
    if is_output and record is None:
        return f"{where}: a tool output that no audit record vouches for"
    if is_output and record is not None and (mismatch := _output_mismatch(event.data, record)):
        return f"{where}: {mismatch} (the transcript was edited)"
    return None


def _problems(rows: Iterable[Any], key: bytes) -> Iterable[tuple[bool, list[str]]]:
    """(was it a tool output, its problems) for each event, in order."""
    conversation, expected = None, 1
    for event, record in rows:
        found = []
        if event.conversation_id != conversation:
            conversation, expected = event.conversation_id, 1
        if event.seq != expected:
            found.append(f"conversation {event.conversation_id}: events {expected}-{event.seq - 1} are missing")
        expected = event.seq + 1
        if problem := _check(event, record, key):
            found.append(problem)
        yield event.kind == EventKind.TOOL_OUTPUT.value, found


def verify_transcripts(session: Session, *, key: bytes | None = None) -> TranscriptReport:
    """Check every event's MAC, that no event is missing from the middle of a conversation,
    that each event tied to an audit record still matches that record's hash, and that each
    tool output says what its execution_finished record says."""
    key = key or keys.session_key(session)
    stmt = (
        select(EventRecord, AuditRecord)
        .outerjoin(AuditRecord, AuditRecord.seq == EventRecord.audit_seq)
        .order_by(EventRecord.conversation_id, EventRecord.seq)
        .execution_options(yield_per=1000)
    )
    events = outputs = extra = 0
    problems: list[str] = []
    for is_output, found in _problems(session.execute(stmt), key):
        events += 1
        outputs += is_output
        for problem in found:
            if len(problems) < MAX_PROBLEMS:
                problems.append(problem)
            else:
                extra += 1
    return TranscriptReport(not problems, events, outputs, problems, extra)
