"""``squads scenario export``: a stored conversation as a scenario file (FORMAT.md)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated

import typer

from squads.context import load_context
from squads.evals.export import to_scenario
from transcripts import service

app = typer.Typer(help="Scenarios from real conversations: export one as a regression test.", no_args_is_help=True)
NAME = re.compile(r"^[a-z0-9]+(-[a-z0-9]+)*$")


@app.command("export")
def export_command(
    conversation: Annotated[str, typer.Argument(help="The conversation id, or a unique prefix of it.")],
    output: Annotated[Path | None, typer.Option("--output", "-o", help="Write here instead of stdout.")] = None,
    name: Annotated[str | None, typer.Option(help="The scenario's name (kebab-case); default: from its title.")] = None,
) -> None:
    """Turn a conversation into a scenario: its recorded outputs become fixtures, its messages turns."""
    if name is not None and not NAME.match(name):
        typer.echo(f"error: --name {name!r}: use lowercase letters and digits joined by '-', e.g. nginx-502-db", err=True)
        raise typer.Exit(2)
    from squads.brain.service import redact  # the redaction the transcripts use, wherever it lives

    context = load_context()
    configured = context.runtime_config().nodes
    with context.db.readers() as session:
        try:
            record = service.resolve_conversation(session, conversation)
        except service.ConversationNotFound as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(2) from None
        events = service.load_events(session, record.id)
        labels = {n: dict(c.labels) for n, c in configured.items()}
        text = to_scenario(record, events, name=name, labels=labels, redact=lambda t: redact(t)[0])
    if output is None:
        typer.echo(text, nl=False)
    else:
        output.write_text(text)
        typer.echo(f"wrote {output}; fill in the expectations marked TODO, then `squads eval {output}`")
