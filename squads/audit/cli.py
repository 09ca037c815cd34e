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

from squads.audit import chain, queries
from squads.audit.anchor import read_checkpoints, write_checkpoint
from squads.audit.keys import settings_key
from squads.audit.verify import Anchor
from squads.audit.verify import verify as verify_chain
from squads.settings.env import get_settings
from squads.storage.service import Database, open_database
from squads.textsafety import display
from transcripts.integrity import verify_transcripts

app = typer.Typer(
    help="The tamper-evident audit log: verify its hash chain, anchor its head, export it.",
    no_args_is_help=True,
)


@contextmanager
def _database() -> Iterator[Database]:
    settings = get_settings()
    database = open_database(url=settings.effective_database_url, audit_key=settings_key(settings))
    try:
        yield database
    finally:
        database.engine.dispose()


def _anchors(path: Path | None, *, key: bytes) -> tuple[list[Anchor], list[str], str | None]:
    """Anchors from the checkpoint file, lines that are not valid checkpoints, and a note for a person."""
    explicit = path is not None
    path = path or get_settings().effective_audit_checkpoint_file
    if not path.exists():
        if explicit:
            raise typer.BadParameter(f"{path} does not exist", param_hint="'--checkpoints'")
        return [], [], f"no checkpoint file at {path}: records removed from the end are found only with --expect-head"
    found = read_checkpoints(path, key=key)
    return found.anchors, found.problems, None


@app.command()
def verify(
    expect_head: Annotated[
        str | None,
        typer.Option(help="A head hash anchored earlier; it must still be in the chain."),
    ] = None,
    checkpoints: Annotated[
        Path | None,
        typer.Option(help="Signed checkpoint file to compare with [default: SQUADS_AUDIT_CHECKPOINT_FILE]."),
    ] = None,
    use_checkpoints: Annotated[
        bool, typer.Option("--use-checkpoints/--no-checkpoints", help="Compare with the checkpoint file.")
    ] = True,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
) -> None:
    """Recompute the chain, its MACs and the transcripts' ties to it; exit 1 and say what is broken if anything is."""
    key = settings_key(get_settings())
    anchors, bad_lines, note = _anchors(checkpoints, key=key) if use_checkpoints else ([], [], None)
    with _database() as database, database.sessions() as session:
        report = verify_chain(session, expect_head=expect_head, anchors=anchors, key=key)
        transcripts = verify_transcripts(session, key=key)
    ok = report.ok and transcripts.ok and not bad_lines
    if as_json:
        typer.echo(json.dumps({**dataclasses.asdict(report), "ok": ok, "chain_ok": report.ok,
                               "checkpoint_problems": bad_lines, "transcripts": dataclasses.asdict(transcripts)}))
        raise typer.Exit(0 if ok else 1)
    if report.ok:
        sealed = f" ({report.sealed_records} from before the key, sealed)" if report.sealed_records else ""
        typer.echo(f"OK: {report.records_checked} records verified{sealed}; head {report.head_seq} {report.head_hash}; "
                   f"{report.anchors_checked} checkpoints hold")  # fmt: skip
    else:
        # Stored hashes are printed; escape them in case the table was filled with junk.
        typer.echo(f"BROKEN at record {report.first_broken_seq}: {display.display_text(report.problem or '')}")
        typer.echo(f"last intact record: {report.head_seq} {display.display_text(report.head_hash)}")
    for problem in bad_lines:
        typer.echo(f"BROKEN checkpoint: {display.display_text(problem)}")
    if transcripts.ok:
        typer.echo(f"OK: {transcripts.events_checked} transcript events verified "
                   f"({transcripts.tool_outputs_checked} tool outputs match their audit records)")  # fmt: skip
    else:
        for problem in transcripts.problems:
            typer.echo(f"BROKEN transcript: {display.display_text(problem)}")
        if transcripts.more_problems:
            typer.echo(f"... and {transcripts.more_problems} more transcript problems")
    if note:
        typer.echo(f"note: {note}")
    raise typer.Exit(0 if ok else 1)


@app.command()
def checkpoint() -> None:
    """Append a signed checkpoint of the head to SQUADS_AUDIT_CHECKPOINT_FILE (squads serve does it on a timer)."""
    settings = get_settings()
    with _database() as database:
        line = write_checkpoint(
            database.sessions, key=settings_key(settings), path=settings.effective_audit_checkpoint_file,
            to_syslog=settings.audit_checkpoint_syslog,
        )
    typer.echo(f"checkpoint {line['seq']} {line['head_hash']} appended to {settings.effective_audit_checkpoint_file}")


@app.command()
def head(as_json: Annotated[bool, typer.Option("--json", help="Print as JSON.")] = False) -> None:
    """Print the newest record as "<seq> <hash>", to anchor where the log's writers cannot reach."""
    with _database() as database, database.sessions() as session:
        seq, digest = chain.head(session)
    digest = display.display_text(digest)
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
            queries.export_jsonl(session, sys.stdout, since_seq=since_seq)
        else:
            with output.open("w", encoding="utf-8") as out:
                count = queries.export_jsonl(session, out, since_seq=since_seq)
            typer.echo(f"exported {count} records to {output}", err=True)
