"""``squads user``: local accounts and their roles."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from typing import Annotated

import typer
from sqlalchemy.orm import Session
from rich.console import Console
from rich.table import Column, Table

from squads.context import load_context
from squads.storage.db import session_scope
from squads.accounts.models import Role, User
from squads.accounts.service import AccountError, create_user, list_users, reset_password, set_disabled, set_role

app = typer.Typer(help="Local accounts: create, list, change roles, disable, reset passwords.", no_args_is_help=True)
RoleArg = Annotated[Role, typer.Option(help="viewer, engineer, approver or admin.", case_sensitive=False)]


def _fail(exc: Exception) -> typer.Exit:
    typer.echo(f"error: {exc}", err=True)
    return typer.Exit(2)


@app.command("create")
def create_command(
    username: Annotated[str, typer.Argument(help="Lowercase letters, digits, '.', '_', '-'.")],
    role: RoleArg = Role.ENGINEER,
    password_stdin: Annotated[bool, typer.Option(help="Read the password from standard input.")] = False,
    actor: Annotated[str, typer.Option(help="Who creates it (recorded in the audit log).")] = "cli",
) -> None:
    """Create an account. Without --password-stdin a random password is printed once and must be changed."""
    context = load_context()
    generated = not password_stdin
    password = sys.stdin.readline().rstrip("\n") if password_stdin else None
    try:
        with session_scope(context.db.sessions) as session:
            if password is None:
                import secrets

                password = secrets.token_urlsafe(12)
            create_user(session, username=username, password=password, role=role, actor=actor, must_change=generated)
    except AccountError as exc:
        raise _fail(exc) from None
    typer.echo(f"user {username} ({role.value}) created")
    if generated:
        typer.echo(f"one-time password (shown once; it must be changed at first sign-in): {password}")


@app.command("list")
def list_command(as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """Every account with its role and state (never a password hash)."""
    context = load_context()
    with context.db.readers() as session:
        rows = [_row(u) for u in list_users(session)]
    if as_json:
        typer.echo(json.dumps(rows))
        return
    # The username is what people type into the other `squads user` commands: never cut or wrapped.
    table = Table(Column("user", no_wrap=True, min_width=max((len(str(r["username"])) for r in rows), default=4)),
                  "role", "state", "created", "password changed")
    for r in rows:
        state = "disabled" if r["disabled"] else ("must change password" if r["must_change_password"] else "active")
        table.add_row(str(r["username"]), str(r["role"]), state, str(r["created_at"]), str(r["password_changed_at"] or "-"))
    Console().print(table)


def _row(user: User) -> dict[str, object]:
    return {"username": user.username, "role": user.role, "disabled": user.disabled,
            "must_change_password": user.must_change_password, "created_at": user.created_at,
            "password_changed_at": user.password_changed_at}


@app.command("role")
def role_command(username: str, role: Annotated[Role, typer.Argument(case_sensitive=False)],
                 actor: Annotated[str, typer.Option()] = "cli") -> None:
    """Change a user's role (the last admin keeps theirs)."""
    _apply(lambda s: set_role(s, username=username, role=role, actor=actor), f"{username} is now {role.value}")


@app.command("disable")
def disable_command(username: str, actor: Annotated[str, typer.Option()] = "cli") -> None:
    """Disable an account; its browser sessions end at once."""
    _apply(lambda s: set_disabled(s, username=username, disabled=True, actor=actor), f"{username} disabled")


@app.command("enable")
def enable_command(username: str, actor: Annotated[str, typer.Option()] = "cli") -> None:
    """Enable a disabled account."""
    _apply(lambda s: set_disabled(s, username=username, disabled=False, actor=actor), f"{username} enabled")


@app.command("reset-password")
def reset_command(username: str, actor: Annotated[str, typer.Option()] = "cli") -> None:
    """A new one-time password (printed once) that must be changed at next sign-in."""
    context = load_context()
    try:
        with session_scope(context.db.sessions) as session:
            password = reset_password(session, username=username, actor=actor)
    except AccountError as exc:
        raise _fail(exc) from None
    typer.echo(f"one-time password for {username} (shown once; it must be changed at next sign-in): {password}")


def _apply(change: Callable[[Session], object], done: str) -> None:
    context = load_context()
    try:
        with session_scope(context.db.sessions) as session:
            change(session)
    except AccountError as exc:
        raise _fail(exc) from None
    typer.echo(done)
