"""The audit table and the record schema.

Records are append-only (database triggers refuse UPDATE and DELETE) and each
carries the SHA-256 of the previous record, so that any change made behind the
application's back breaks the chain that ``squads audit verify`` recomputes.
Timestamps are stored as ISO strings and durations as integers so that the
canonical form hashes identically on SQLite and PostgreSQL.
"""

from __future__ import annotations

from enum import StrEnum

from sqlalchemy import Boolean, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from squads.storage.db import Base

GENESIS_HASH = "0" * 64


class RecordKind(StrEnum):
    """What a record is about."""

    DECISION = "decision"
    EXECUTION_STARTED = "execution_started"
    EXECUTION_FINISHED = "execution_finished"
    EXECUTION_INTERRUPTED = "execution_interrupted"
    APPROVAL_RESOLVED = "approval_resolved"
    NODE_ADMIN = "node_admin"  # a node registered, its token rotated, or revoked
    USER_ADMIN = "user_admin"  # a user created, their role changed, disabled, or their password reset
    SIGN_IN = "sign_in"  # a sign-in, successful or not, and sign-outs
    GRANT_ADMIN = "grant_admin"  # a stored grant created, replaced or disabled
    CHAIN_KEYED = "chain_keyed"  # the first keyed record: its MAC vouches for the unkeyed records before it


class AuditRecord(Base):
    """One immutable line of the audit log."""

    __tablename__ = "audit_records"

    seq: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    ts: Mapped[str] = mapped_column(String(40), index=True)
    kind: Mapped[str] = mapped_column(String(32), index=True)
    actor: Mapped[str | None] = mapped_column(String(200))
    squad: Mapped[str | None] = mapped_column(String(100))
    agent: Mapped[str | None] = mapped_column(String(200))
    node: Mapped[str | None] = mapped_column(String(200), index=True)
    argv: Mapped[str | None] = mapped_column(Text)  # JSON array
    decision: Mapped[str | None] = mapped_column(String(32))
    rule: Mapped[str | None] = mapped_column(Text)
    reason: Mapped[str | None] = mapped_column(Text)
    conversation_id: Mapped[str | None] = mapped_column(String(64), index=True)
    incident_id: Mapped[str | None] = mapped_column(String(64), index=True)
    ref_seq: Mapped[int | None] = mapped_column(Integer, index=True)
    exit_code: Mapped[int | None] = mapped_column(Integer)
    duration_ms: Mapped[int | None] = mapped_column(Integer)
    output_sha256: Mapped[str | None] = mapped_column(String(64))
    stdout: Mapped[str | None] = mapped_column(Text)
    stderr: Mapped[str | None] = mapped_column(Text)
    truncated: Mapped[bool | None] = mapped_column(Boolean)
    details: Mapped[str | None] = mapped_column(Text)  # JSON object
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64), unique=True)
    # HMAC-SHA256 of the same canonical bytes under the audit key (squads/audit/keys.py); NULL only on
    # records written before the chain was keyed.
    mac: Mapped[str | None] = mapped_column(String(64))


# Every column but ``hash`` and ``mac`` goes into the hash (and the MAC), in this order-independent set.
HASHED_FIELDS: tuple[str, ...] = tuple(
    c.name for c in AuditRecord.__table__.columns if c.name not in ("hash", "mac")
)
