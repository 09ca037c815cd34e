"""Audit log throughput: committed appends per second and the time to verify 100k records.

Usage: ``python benchmarks/audit_bench.py [--json] [--records N] [--verify-records N]``

Each timed append is its own committed transaction, as in production. The
verify figure is measured on a real chain written through ``append`` (one
transaction per 1,000 records). Figures are printed, never asserted; the
targets are >= 2,000 records/s on SQLite and <= 5 s to verify 100,000 records.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import psycopg
from rich.console import Console
from rich.table import Table

from squads.audit import chain
from squads.audit.models import RecordKind
from squads.audit.verify import VerifyReport, verify
from squads.storage.service import Database, open_database

PG_ADMIN_DSN = os.environ.get("SQUADS_TEST_PG_DSN", "postgresql://postgres@127.0.0.1:5432/postgres")
TARGET_APPENDS_PER_S = 2000
TARGET_VERIFY_S = 5.0


def _fields(i: int) -> dict[str, Any]:
    # A realistic finished-execution record: a short command and a few KB of output.
    return {
        "kind": RecordKind.EXECUTION_FINISHED,
        "actor": "alice",
        "squad": "linux",
        "agent": "linux/triage",
        "node": f"web-{i % 7}",
        "argv": ["/usr/bin/journalctl", "-u", "nginx", "-n", "200", "--no-pager"],
        "conversation_id": "c-bench",
        "exit_code": 0,
        "duration_ms": 42,
        "output_sha256": "ab" * 32,
        "stdout": f"line {i}: GET /health 200\n" * 80,
        "stderr": "",
        "truncated": False,
        "ref_seq": i,
    }


@contextmanager
def _sqlite() -> Iterator[Database]:
    with tempfile.TemporaryDirectory() as folder:
        database = open_database(url=f"sqlite:///{folder}/bench.sqlite3")
        try:
            yield database
        finally:
            database.engine.dispose()


@contextmanager
def _postgres() -> Iterator[Database]:
    name = f"squads_bench_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(PG_ADMIN_DSN, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    database = open_database(url=f"{PG_ADMIN_DSN.rsplit('/', 1)[0]}/{name}")
    try:
        yield database
    finally:
        database.engine.dispose()
        with psycopg.connect(PG_ADMIN_DSN, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def appends_per_second(database: Database, count: int) -> float:
    """Committed single-record transactions per second."""
    started = time.perf_counter()
    for i in range(count):
        chain.append_committed(database.sessions, **_fields(i))
    return count / (time.perf_counter() - started)


def fill(database: Database, count: int, batch: int = 1000) -> float:
    """Write ``count`` chained records, ``batch`` per transaction; returns records/s."""
    started = time.perf_counter()
    for first in range(0, count, batch):
        with database.sessions() as session, session.begin():
            for i in range(first, min(first + batch, count)):
                chain.append(session, **_fields(i))
            session.expunge_all()  # keep the identity map from growing across a batch
    return count / (time.perf_counter() - started)


def verify_seconds(database: Database) -> tuple[float, VerifyReport]:
    """Wall time of a full verify and its report."""
    with database.sessions() as session:
        started = time.perf_counter()
        report = verify(session)
        return time.perf_counter() - started, report


def run(records: int, verify_records: int) -> dict[str, object]:
    """Run every measurement and return the figures."""
    figures: dict[str, object] = {"append_records": records, "verify_records": verify_records}
    with _sqlite() as database:
        figures["sqlite_records_per_s"] = round(appends_per_second(database, records), 1)
    with _postgres() as database:
        figures["postgres_records_per_s"] = round(appends_per_second(database, records), 1)
    with _sqlite() as database:
        figures["sqlite_batched_fill_records_per_s"] = round(fill(database, verify_records), 1)
        elapsed, report = verify_seconds(database)
        figures["verify_100k_s"] = round(elapsed, 3)
        figures["verify_ok"] = report.ok and report.records_checked == verify_records
    return figures


def _print_table(figures: dict[str, object]) -> None:
    table = Table(title="Audit log benchmark")
    for column in ("measure", "value", "target"):
        table.add_column(column)
    table.add_row(f"SQLite committed appends ({figures['append_records']})",
                  f"{figures['sqlite_records_per_s']:,} records/s", f">= {TARGET_APPENDS_PER_S:,}/s")  # fmt: skip
    table.add_row(f"PostgreSQL committed appends ({figures['append_records']})",
                  f"{figures['postgres_records_per_s']:,} records/s", "")  # fmt: skip
    table.add_row("SQLite batched fill (1,000 per transaction)",
                  f"{figures['sqlite_batched_fill_records_per_s']:,} records/s", "")  # fmt: skip
    table.add_row(f"SQLite verify of {figures['verify_records']:,} records",
                  f"{figures['verify_100k_s']} s (ok={figures['verify_ok']})", f"<= {TARGET_VERIFY_S} s")  # fmt: skip
    Console().print(table)


def main() -> None:
    """Parse arguments, measure, print."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    parser.add_argument("--records", type=int, default=3000, help="committed appends per backend")
    parser.add_argument("--verify-records", type=int, default=100_000, help="chain length to verify")
    args = parser.parse_args()
    figures = run(args.records, args.verify_records)
    if args.json:
        print(json.dumps(figures))
    else:
        _print_table(figures)


if __name__ == "__main__":
    main()
