"""Storing conversations and their events, and exporting them.

Every event passes through secret redaction before it is stored, so a
transcript (and anything rendered from it) never holds a private key, a token
or a password that a command happened to print.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import and_, func, select
from sqlalchemy.orm import Session

from squads.audit import keys
from transcripts.integrity import audit_hash_of, event_mac
from squads.storage.lookup import AmbiguousId, id_by_prefix
from transcripts.models import ConversationRecord, Event, EventKind, EventRecord
from squads.textsafety.redact import redact, redact_value


class ConversationNotFound(LookupError):
    """No conversation has that id."""


def _now() -> datetime:
    return datetime.now(UTC)


def create_conversation(session: Session, *, squad: str, node: str, actor: str | None, title: str = "") -> str:
    """A new, empty conversation; returns its id."""
    now = _now().isoformat()
    conversation_id = uuid.uuid4().hex
    session.add(
        ConversationRecord(
            id=conversation_id, squad=squad, node=node, actor=actor, title=redact(title)[0][:300],
            created_at=now, updated_at=now, turns=0, state="{}",
        )
    )
    return conversation_id


def get_conversation(session: Session, conversation_id: str) -> ConversationRecord:
    """The conversation, or ``ConversationNotFound`` naming the id."""
    record = session.get(ConversationRecord, conversation_id)
    if record is None:
        raise ConversationNotFound(f"no conversation {conversation_id!r}; `squads transcript list` shows the ids")
    return record


def resolve_conversation(session: Session, ref: str) -> ConversationRecord:
    """The conversation whose id is ``ref`` or starts with it (at least 4 characters), for people typing ids.

    ``ConversationNotFound`` says whether no id or several ids match, listing them."""
    try:
        conversation_id = id_by_prefix(session, ConversationRecord.id, ref, what="conversation")
    except AmbiguousId as exc:
        raise ConversationNotFound(str(exc)) from None
    return get_conversation(session, conversation_id or ref)


def list_conversations(session: Session, *, limit: int = 50) -> list[ConversationRecord]:
    """The most recently updated conversations first."""
    stmt = select(ConversationRecord).order_by(ConversationRecord.updated_at.desc()).limit(limit)
    return list(session.scalars(stmt))


def load_state(session: Session, conversation_id: str) -> dict[str, Any]:
    """The runtime's saved state of a conversation."""
    return dict(json.loads(get_conversation(session, conversation_id).state))


def save_state(session: Session, conversation_id: str, state: dict[str, Any], *, turns: int, title: str | None = None) -> None:
    """Replace the conversation's state after a turn."""
    record = get_conversation(session, conversation_id)
    record.state = json.dumps(redact_value(state), sort_keys=True)
    record.turns = turns
    record.updated_at = _now().isoformat()
    if title and not record.title:
        record.title = redact(title)[0][:300]


def last_seq(session: Session, conversation_id: str) -> int:
    """The seq of the conversation's last event (0 when it has none)."""
    last = session.scalar(select(func.max(EventRecord.seq)).where(EventRecord.conversation_id == conversation_id))
    return int(last or 0)


def append_event(
    session: Session, *, conversation_id: str, kind: EventKind, turn: int,
    data: dict[str, Any], audit_seq: int | None = None, seq: int | None = None, redacted: bool = False,
) -> Event:
    """Store one event (secrets redacted) at the end of the conversation.

    ``seq`` may be given by a caller appending several events in one
    transaction (``last_seq`` + 1, + 2, ...); the unique (conversation, seq)
    constraint still refuses two writers racing for the same place. ``redacted`` says the caller
    already redacted ``data`` (command output, redacted once on its way from the executor).
    The event is tied to audit record ``audit_seq`` by its hash and MACed (transcripts/integrity.py)."""
    clean = data if redacted else redact_value(data)
    assert isinstance(clean, dict)
    position = seq if seq is not None else last_seq(session, conversation_id) + 1
    event = Event(kind=kind, turn=turn, seq=position, at=_now(), data=clean, audit_seq=audit_seq)
    stored: dict[str, Any] = {
        "conversation_id": conversation_id, "seq": event.seq, "turn": turn, "kind": kind.value,
        "at": event.at.isoformat(), "audit_seq": audit_seq, "data": json.dumps(clean, sort_keys=True),
        "audit_hash": audit_hash_of(session, audit_seq),
    }  # fmt: skip
    session.add(EventRecord(**stored, mac=event_mac(keys.session_key(session), **stored)))
    return event


def load_events(session: Session, conversation_id: str) -> list[Event]:
    """Every event of the conversation, in order."""
    get_conversation(session, conversation_id)
    stmt = select(EventRecord).where(EventRecord.conversation_id == conversation_id).order_by(EventRecord.seq)
    return [
        Event(
            kind=EventKind(r.kind), turn=r.turn, seq=r.seq, at=datetime.fromisoformat(r.at),
            data=json.loads(r.data), audit_seq=r.audit_seq,
        )
        for r in session.scalars(stmt)
    ]


@dataclass(frozen=True)
class ConversationSummary:
    """One line of a conversation list: the conversation, its event count and what it is about."""

    record: ConversationRecord
    events: int
    title: str  # the stored title, else the first user message's first line ("" when neither)


def find_conversations(
    session: Session, *, squad: str | None = None, node: str | None = None, actor: str | None = None,
    offset: int = 0, limit: int = 50,
) -> list[ConversationSummary]:
    """Conversations matching every given filter (exact values), most recently updated first.

    Three queries whatever ``limit`` is: the page, its event counts, and the
    first user message of those without a title (a first turn that never completed)."""
    stmt = select(ConversationRecord)
    for column, value in ((ConversationRecord.squad, squad), (ConversationRecord.node, node),
                          (ConversationRecord.actor, actor)):
        if value:
            stmt = stmt.where(column == value)
    stmt = stmt.order_by(ConversationRecord.updated_at.desc(), ConversationRecord.id).offset(offset).limit(limit)
    records = list(session.scalars(stmt))
    ids = [r.id for r in records]
    counted = (
        select(EventRecord.conversation_id, func.count())
        .where(EventRecord.conversation_id.in_(ids)).group_by(EventRecord.conversation_id)
    )
    counts: dict[str, int] = {cid: int(n) for cid, n in session.execute(counted)} if ids else {}
    untitled = [r.id for r in records if not r.title]
    firsts = _first_messages(session, untitled) if untitled else {}
    return [ConversationSummary(r, counts.get(r.id, 0), r.title or firsts.get(r.id, "")) for r in records]


def _first_messages(session: Session, ids: list[str]) -> dict[str, str]:
    first = (
        select(EventRecord.conversation_id, func.min(EventRecord.seq).label("seq"))
        .where(EventRecord.conversation_id.in_(ids), EventRecord.kind == EventKind.USER_MESSAGE.value)
        .group_by(EventRecord.conversation_id).subquery()
    )
    rows = session.execute(
        select(EventRecord.conversation_id, EventRecord.data)
        .join(first, and_(EventRecord.conversation_id == first.c.conversation_id, EventRecord.seq == first.c.seq))
    )
    out = {}
    for conversation_id, data in rows:
        text = str(json.loads(data).get("text", "")).strip()
        out[conversation_id] = text.splitlines()[0][:300] if text else ""
    return out
