"""Opening the product database: connect, migrate to head, hand out sessions."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, event
from sqlalchemy.orm import Session, sessionmaker

from squads.audit import keys
from squads.storage.db import make_engine, make_session_factory, normalise_url

MIGRATIONS = Path(__file__).parent / "migrations"


def alembic_config(url: str) -> Config:
    """An Alembic config pointing at the packaged migrations."""
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    # '%' would be read as interpolation by configparser.
    cfg.set_main_option("sqlalchemy.url", normalise_url(url).replace("%", "%%"))
    return cfg


def upgrade(engine: Engine, *, audit_key: bytes | None = None) -> None:
    """Apply every pending migration on ``engine``.

    ``audit_key`` (default: this process's) is for the migration that keys the
    audit chain: it seals the records written before with one keyed record."""
    cfg = alembic_config(engine.url.render_as_string(hide_password=False))
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        cfg.attributes[keys.SESSION_KEY] = audit_key or keys.process_key()
        command.upgrade(cfg, "head")


@dataclass(frozen=True)
class Database:
    """An engine and its session factories.

    ``sessions`` are for anything that writes. ``readers`` are for reads only:
    on SQLite they do not take the writer lock (on PostgreSQL they are the same)."""

    engine: Engine
    sessions: sessionmaker[Session]
    readers: sessionmaker[Session]


def _carry_key(engine: Engine, key: bytes) -> None:
    # Core connections (verify accepts one) find the key in connection.info, sessions in session.info.
    @event.listens_for(engine, "connect")
    def _on_connect(_dbapi_conn: Any, record: Any) -> None:
        record.info[keys.SESSION_KEY] = key


def open_database(*, url: str, migrate: bool = True, audit_key: bytes | None = None) -> Database:
    """Connect to ``url`` and bring its schema to the latest migration.

    ``audit_key`` keys the audit chain (default: from this process's settings,
    ``squads.audit.keys``); every session and connection of the database carries it."""
    key = audit_key or keys.process_key()
    engine = make_engine(url)
    _carry_key(engine, key)
    if migrate:
        upgrade(engine, audit_key=key)
    sessions = make_session_factory(engine)
    sessions.configure(info={keys.SESSION_KEY: key})
    if engine.dialect.name == "sqlite":
        reader_engine = make_engine(url, readonly=True)
        _carry_key(reader_engine, key)
        readers = make_session_factory(reader_engine)
        readers.configure(info={keys.SESSION_KEY: key})
    else:
        readers = sessions
    return Database(engine=engine, sessions=sessions, readers=readers)
