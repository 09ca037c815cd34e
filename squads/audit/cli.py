"""``squads audit``: verify the hash chain, print its head, export the log."""

from __future__ import annotations

import dataclasses
import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import typer

from squads.audit import service
from squads.settings.env import get_settings
from squads.storage.service import Database, open_database

app = typer.Typer(
    help="The tamper-evident audit log: verify its hash chain, anchor its head, export it.",
    no_args_is_help=True,
)


@contextmanager
def _database() -> Iterator[Database]:
    database = open_database(url=get_settings().effective_database_url)
    try:
        yield database
    finally:
        database.engine.dispose()


@app.command()
def verify(
    expect_head: Annotated[
        str | None,
        typer.Option(help="A head hash anchored earlier; it must still be in the chain."),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
) -> None:
    """Recompute the chain; exit 1 and name the first broken record if it does not hold."""
    with _database() as database, database.sessions() as session:
        report = service.verify(session, expect_head=expect_head)
    if as_json:
        typer.echo(json.dumps(dataclasses.asdict(report)))
    elif report.ok:
        typer.echo(f"OK: {report.records_checked} records verified; head {report.head_seq} {report.head_hash}")
    else:
        # Stored hashes are printed; escape them in case the table was filled with junk.
        typer.echo(f"BROKEN at record {report.first_broken_seq}: {service.display_text(report.problem or '')}")
        typer.echo(f"last intact record: {report.head_seq} {service.display_text(report.head_hash)}")
    raise typer.Exit(0 if report.ok else 1)


@app.command()
def head(as_json: Annotated[bool, typer.Option("--json", help="Print as JSON.")] = False) -> None:
    """Print the newest record as "<seq> <hash>", to anchor where the log's writers cannot reach."""
    with _database() as database, database.sessions() as session:
        seq, digest = service.head(session)
    digest = service.display_text(digest)
    typer.echo(json.dumps({"seq": seq, "hash": digest}) if as_json else f"{seq} {digest}")


@app.command()
def export(
    fmt: Annotated[str, typer.Option("--format", help="Output format; only 'jsonl' is supported.")] = "jsonl",
    output: Annotated[Path | None, typer.Option(help="Write here instead of standard output.")] = None,
    since_seq: Annotated[int, typer.Option(help="Only records after this seq.")] = 0,
) -> None:
    """Export the records, one JSON object per line, oldest first."""
    if fmt != "jsonl":
        raise typer.BadParameter(f"{fmt!r} is not supported; use 'jsonl'", param_hint="'--format'")
    with _database() as database, database.sessions() as session:
        if output is None:
            service.export_jsonl(session, sys.stdout, since_seq=since_seq)
        else:
            with output.open("w", encoding="utf-8") as out:
                count = service.export_jsonl(session, out, since_seq=since_seq)
            typer.echo(f"exported {count} records to {output}", err=True)
