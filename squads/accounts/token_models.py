"""API tokens: made with the CLI (or by a user for themselves), stored as hashes."""

from __future__ import annotations

from sqlalchemy import Boolean, ForeignKey, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

import squads.accounts.models  # noqa: F401  (registers the users table that user_id refers to, for any importer)
from squads.storage.db import Base


class ApiToken(Base):
    """A token for automation. Only the SHA-256 of its secret part is stored."""

    __tablename__ = "api_tokens"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    secret_sha256: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[str] = mapped_column(String(40))
    created_by: Mapped[str | None] = mapped_column(String(200))
    revoked: Mapped[bool] = mapped_column(Boolean, default=False)
    last_used: Mapped[str | None] = mapped_column(String(40))
    # A personal token acts as its user, with the user's role; one without a user is a
    # server token made on the control plane's own shell, and acts as an admin.
    user_id: Mapped[int | None] = mapped_column(Integer, ForeignKey("users.id", ondelete="CASCADE"))
