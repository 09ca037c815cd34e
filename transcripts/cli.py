"""``squads transcript``: list, show and export conversations."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Column, Table
from rich.text import Text

from squads.textsafety.display import display_text

from squads.context import load_context
from transcripts import service
from transcripts.export import to_json, to_markdown

app = typer.Typer(help="Conversation transcripts: list, show and export (Markdown or JSON).", no_args_is_help=True)


class Format(StrEnum):
    MARKDOWN = "md"
    JSON = "json"


@app.command("list")
def list_command(limit: Annotated[int, typer.Option(min=1, max=1000)] = 20) -> None:
    """The most recent conversations."""
    context = load_context()
    with context.db.sessions() as session:
        records = service.list_conversations(session, limit=limit)
    # An id is what people copy into `export`: never cut or wrapped; the title gives way instead.
    id_column = Column("id", no_wrap=True, min_width=max((len(r.id) for r in records), default=2))
    table = Table(id_column, "updated", "squad", "node", "turns", "title")
    for r in records:
        # Titles are what users typed: plain Text, with control characters shown, never markup.
        table.add_row(r.id, r.updated_at[:19], r.squad, r.node, str(r.turns), Text(display_text(r.title[:60])))
    Console().print(table)


@app.command("export")
def export_command(
    conversation_id: Annotated[str, typer.Argument(help="The conversation id (see `squads transcript list`).")],
    fmt: Annotated[Format, typer.Option("--format", "-f")] = Format.MARKDOWN,
    output: Annotated[Path | None, typer.Option("--output", "-o", help="Write here instead of stdout.")] = None,
) -> None:
    """Export one conversation as Markdown or JSON."""
    context = load_context()
    with context.db.sessions() as session:
        try:
            record = service.resolve_conversation(session, conversation_id)
        except service.ConversationNotFound as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(2) from None
        events = service.load_events(session, record.id)
        text = to_markdown(record, events) if fmt is Format.MARKDOWN else to_json(record, events)
    if output is None:
        typer.echo(text, nl=False)
    else:
        output.write_text(text)
        typer.echo(f"wrote {output}")
