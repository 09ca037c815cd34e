"""The nodes table. Apart from ``squads.nodes.models`` (node configuration, plain values),
which the node agent uses and which therefore must not load SQLAlchemy."""

from __future__ import annotations

from sqlalchemy import Boolean, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from squads.storage.db import Base


class NodeRecord(Base):
    """A node whose agent connects to this control plane. Its token is stored only as a hash."""

    __tablename__ = "nodes"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    labels: Mapped[str] = mapped_column(Text, default="{}")
    token_sha256: Mapped[str] = mapped_column(String(64))
    token_generation: Mapped[int] = mapped_column(Integer, default=1)
    created_at: Mapped[str] = mapped_column(String(40))
    created_by: Mapped[str | None] = mapped_column(String(200))
    revoked: Mapped[bool] = mapped_column(Boolean, default=False)
    last_seen: Mapped[str | None] = mapped_column(String(40))
    # Written by the control plane's hub (batched); None while no agent is connected.
    connected_since: Mapped[str | None] = mapped_column(String(40))
    connected_from: Mapped[str | None] = mapped_column(String(100))
    agent_version: Mapped[str | None] = mapped_column(String(64))
    facts: Mapped[str] = mapped_column(Text, default="{}")
