"""The grants table. Kept apart from ``permissions.models`` (plain values) so that the node
agent, which uses the values, never loads SQLAlchemy."""

from __future__ import annotations

from sqlalchemy import Boolean, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from squads.storage.db import Base


class GrantRecord(Base):
    """A grant stored in the database (per-node overrides made by admins)."""

    __tablename__ = "grants"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    body: Mapped[str] = mapped_column(Text)  # GrantSpec as JSON
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[str] = mapped_column(String(40))
    created_by: Mapped[str | None] = mapped_column(String(200))
