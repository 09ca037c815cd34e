"""``squads token``: API tokens for automation (shown once, stored as hashes)."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from squads.accounts.api_tokens import TokenError, create_api_token, list_api_tokens, resolve_token_ref, revoke_api_token
from squads.context import load_context
from squads.storage.db import session_scope

app = typer.Typer(help="API tokens for /api/: create (shown once), list, revoke.", no_args_is_help=True)


@app.command("create")
def create_command(
    name: Annotated[str, typer.Argument(help="What the token is for (e.g. 'ci deploy').")],
    actor: Annotated[str, typer.Option(help="Who creates it.")] = "cli",
    user: Annotated[str | None, typer.Option(
        help="Make it this user's personal token (it acts with their role); without, a server token acting as admin.",
    )] = None,
) -> None:
    """Create a token; it is printed once."""
    from squads.accounts.service import AccountError, find_user

    context = load_context()
    try:
        with session_scope(context.db.sessions) as session:
            user_id = find_user(session, user).id if user else None
            issued = create_api_token(session, name=name, actor=actor, user_id=user_id)
    except (TokenError, AccountError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    typer.echo(f"token {issued.name} (shown once, stored only as a hash): {issued.token}")


@app.command("list")
def list_command() -> None:
    """Tokens with their state (never their secrets)."""
    context = load_context()
    with context.db.sessions() as session:
        rows = [{"id": t.id, "name": t.name, "revoked": t.revoked, "last_used": t.last_used} for t in list_api_tokens(session)]
    typer.echo(json.dumps(rows, indent=2))


@app.command("revoke")
def revoke_command(token: Annotated[str, typer.Argument(help="Token id or name.")]) -> None:
    """Revoke a token: it never authenticates again."""
    context = load_context()
    try:
        with session_scope(context.db.sessions) as session:
            name = revoke_api_token(session, ref=resolve_token_ref(session, token)).name
    except TokenError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    typer.echo(f"token {name} revoked")
