"""Users, their roles, and browser sessions (stored server-side, only as hashes)."""

from __future__ import annotations

from enum import StrEnum

from sqlalchemy import Boolean, Float, ForeignKey, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from squads.storage.db import Base


class Role(StrEnum):
    """What a user may do; each role can do everything the ones before it can."""

    VIEWER = "viewer"  # read: nodes, squads, grants, transcripts, audit
    ENGINEER = "engineer"  # chat with squads; runs what the grants allow
    APPROVER = "approver"  # approves held commands (never their own)
    ADMIN = "admin"  # users, nodes, grants

    @property
    def rank(self) -> int:
        return list(Role).index(self)

    def allows(self, needed: Role) -> bool:
        """Whether this role includes ``needed``."""
        return self.rank >= needed.rank


class User(Base):
    """A local account. The password is kept only as an argon2id hash."""

    __tablename__ = "users"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    username: Mapped[str] = mapped_column(String(64), unique=True)
    password_hash: Mapped[str] = mapped_column(String(255))
    role: Mapped[str] = mapped_column(String(16))
    must_change_password: Mapped[bool] = mapped_column(Boolean, default=False)
    disabled: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[str] = mapped_column(String(40))
    created_by: Mapped[str | None] = mapped_column(String(200))
    password_changed_at: Mapped[str | None] = mapped_column(String(40))


class WebSession(Base):
    """A signed-in browser. The cookie holds ``<id>.<secret>``; only the secret's SHA-256 is stored."""

    __tablename__ = "web_sessions"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    secret_sha256: Mapped[str] = mapped_column(String(64))
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    csrf_token: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[str] = mapped_column(String(40))
    expires_at: Mapped[str] = mapped_column(String(40))
    user_agent: Mapped[str | None] = mapped_column(String(200))


class SignInCounter(Base):
    """Sign-in attempts counted against one key (an account, an address, or both) in a fixed window.

    Rows are locked while an attempt is counted, so concurrent guesses cannot all
    pass the check (see ``squads/accounts/ratelimit.py``)."""

    __tablename__ = "signin_counters"

    key: Mapped[str] = mapped_column(String(200), primary_key=True)
    window_start: Mapped[float] = mapped_column(Float, index=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
