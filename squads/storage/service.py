"""Opening the product database: connect, migrate to head, hand out sessions."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from squads.storage.db import make_engine, make_session_factory, normalise_url

MIGRATIONS = Path(__file__).parent / "migrations"


def alembic_config(url: str) -> Config:
    """An Alembic config pointing at the packaged migrations."""
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    # '%' would be read as interpolation by configparser.
    cfg.set_main_option("sqlalchemy.url", normalise_url(url).replace("%", "%%"))
    return cfg


def upgrade(engine: Engine) -> None:
    """Apply every pending migration on ``engine``."""
    cfg = alembic_config(engine.url.render_as_string(hide_password=False))
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "head")


@dataclass(frozen=True)
class Database:
    """An engine and its session factories.

    ``sessions`` are for anything that writes. ``readers`` are for reads only:
    on SQLite they do not take the writer lock (on PostgreSQL they are the same)."""

    engine: Engine
    sessions: sessionmaker[Session]
    readers: sessionmaker[Session]


def open_database(*, url: str, migrate: bool = True) -> Database:
    """Connect to ``url`` and bring its schema to the latest migration."""
    engine = make_engine(url)
    if migrate:
        upgrade(engine)
    sessions = make_session_factory(engine)
    readers = make_session_factory(make_engine(url, readonly=True)) if engine.dialect.name == "sqlite" else sessions
    return Database(engine=engine, sessions=sessions, readers=readers)
