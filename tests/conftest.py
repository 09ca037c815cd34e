"""Shared fixtures: every database test runs on SQLite and on the real PostgreSQL."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from squads.storage.service import Database, open_database

# The machine's PostgreSQL (trust auth); `make test` starts it when it is down.
PG_ADMIN_DSN = os.environ.get("SQUADS_TEST_PG_DSN", "postgresql://postgres@127.0.0.1:5432/postgres")
# One audit key for the test process and the CLIs and servers it starts (which inherit the
# environment), so no test writes a key file into the real data directory. Key files
# themselves are tested in tests/test_audit_keys.py.
os.environ.setdefault("SQUADS_AUDIT_KEY", "5e" * 32)


@pytest.fixture(scope="session")
def pg_server() -> str:
    """The admin DSN of a reachable PostgreSQL; fails loudly rather than skipping."""
    try:
        with psycopg.connect(PG_ADMIN_DSN, connect_timeout=5):
            pass
    except psycopg.OperationalError as exc:  # pragma: no cover - environment problem
        pytest.fail(f"PostgreSQL at {PG_ADMIN_DSN} is not reachable ({exc}); run `make test`, which starts it")
    return PG_ADMIN_DSN


@pytest.fixture(scope="session")
def pg_database(pg_server: str) -> Iterator[str]:
    """A throwaway PostgreSQL database for this test session, dropped afterwards."""
    name = f"squads_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(pg_server, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    base = pg_server.rsplit("/", 1)[0]
    yield f"{base}/{name}"
    with psycopg.connect(pg_server, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh, empty database URL on each backend."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'squads.sqlite3'}"
        return
    server = request.getfixturevalue("pg_server")
    name = f"squads_t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(server, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    base = server.rsplit("/", 1)[0]
    yield f"{base}/{name}"
    with psycopg.connect(server, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def db(db_url: str) -> Iterator[Database]:
    """An open, migrated database on each backend."""
    database = open_database(url=db_url)
    yield database
    database.engine.dispose()
