"""Conversations and their ordered event streams (the transcript)."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import ForeignKey, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from squads.storage.db import Base


class EventKind(StrEnum):
    """Every kind of event a conversation turn can produce, in the order they usually appear."""

    USER_MESSAGE = "user_message"
    ASSISTANT_MESSAGE = "assistant_message"
    TOOL_CALL = "tool_call"
    DECISION = "decision"
    TOOL_OUTPUT = "tool_output"
    APPROVAL_REQUESTED = "approval_requested"
    APPROVAL_RESOLVED = "approval_resolved"
    ERROR = "error"
    TURN_COMPLETE = "turn_complete"


class Event(BaseModel):
    """One event of a conversation: what every front end renders and every export writes."""

    model_config = ConfigDict(frozen=True)

    kind: EventKind
    turn: int
    seq: int = 0
    at: datetime
    data: dict[str, Any] = Field(default_factory=dict)
    audit_seq: int | None = None

    @property
    def text(self) -> str:
        """The message text of a user or assistant message ("" for other kinds)."""
        return str(self.data.get("text", ""))


class ConversationRecord(Base):
    """A conversation with one squad: its state is a JSON document the runtime owns."""

    __tablename__ = "conversations"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    squad: Mapped[str] = mapped_column(String(100))
    node: Mapped[str] = mapped_column(String(200))
    actor: Mapped[str | None] = mapped_column(String(200))
    title: Mapped[str] = mapped_column(String(300), default="")
    created_at: Mapped[str] = mapped_column(String(40))
    updated_at: Mapped[str] = mapped_column(String(40))
    turns: Mapped[int] = mapped_column(Integer, default=0)
    state: Mapped[str] = mapped_column(Text, default="{}")


class EventRecord(Base):
    """One stored event; ``seq`` orders events within their conversation."""

    __tablename__ = "conversation_events"
    __table_args__ = (UniqueConstraint("conversation_id", "seq"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    conversation_id: Mapped[str] = mapped_column(String(64), ForeignKey("conversations.id"), index=True)
    seq: Mapped[int] = mapped_column(Integer)
    turn: Mapped[int] = mapped_column(Integer)
    kind: Mapped[str] = mapped_column(String(32))
    at: Mapped[str] = mapped_column(String(40))
    audit_seq: Mapped[int | None] = mapped_column(Integer)
    data: Mapped[str] = mapped_column(Text)
    # The hash of the audit record at ``audit_seq``, and an HMAC of the whole event under the audit key
    # (transcripts/integrity.py): an edit made behind the application's back shows in `squads audit verify`.
    audit_hash: Mapped[str | None] = mapped_column(String(64))
    mac: Mapped[str | None] = mapped_column(String(64))
