"""``squads node``: register the nodes whose agents connect out, rotate their tokens, revoke them."""

from __future__ import annotations

import json
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Column, Table
from rich.text import Text

from squads.textsafety.display import display_text
from squads.node_agent.install import install_command
from squads.nodes.service import (
    IssuedToken,
    connection_state,
    NodeNotFound,
    NodeRegistryError,
    create_node,
    list_registered,
    resolve_node_ref,
    revoke_node,
    rotate_token,
)
from squads.context import load_context
from squads.storage.db import session_scope

app = typer.Typer(help="Registered nodes: create (token shown once), list, rotate, revoke.", no_args_is_help=True)


def _labels(values: list[str]) -> dict[str, str]:
    labels: dict[str, str] = {}
    for value in values:
        key, sep, val = value.partition("=")
        if not sep or not key:
            typer.echo(f"error: --label {value!r}: write key=value (e.g. --label env=production)", err=True)
            raise typer.Exit(2)
        labels[key] = val
    return labels


def _issued(token: IssuedToken, *, as_json: bool, server: str) -> None:
    command = install_command(server=server, node_id=token.node_id, node_name=token.name, token=token.token)
    if as_json:
        typer.echo(json.dumps({"node_id": token.node_id, "name": token.name, "token": token.token,
                               "install_command": command}))
        return
    typer.echo(f"node {token.name}: id {token.node_id}")
    typer.echo(f"token (shown once, stored only as a hash): {token.token}")
    typer.echo("On the node (with Squads installed), this installs and starts the agent as a systemd service:")
    typer.echo(f"  {command}")
    typer.echo(f"(the control plane's address is SQUADS_PUBLIC_URL={server}; set it if agents reach it elsewhere)")


@app.command("create")
def create_command(
    name: Annotated[str, typer.Argument(help="The node's name (lowercase letters, digits, '.', '_', '-').")],
    label: Annotated[list[str] | None, typer.Option("--label", "-l", help="key=value, repeatable.")] = None,
    actor: Annotated[str, typer.Option(help="Who registers it (recorded in the audit log).")] = "cli",
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Register a node; prints its id and token once."""
    context = load_context()
    try:
        with session_scope(context.db.sessions) as session:
            issued = create_node(session, name=name, labels=_labels(label or []), actor=actor)
    except (NodeRegistryError, ValueError) as exc:
        typer.echo(f"error: {' '.join(str(exc).split())}", err=True)
        raise typer.Exit(2) from None
    _issued(issued, as_json=as_json, server=context.settings.public_url)


@app.command("list")
def list_command(as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """Registered nodes with their state (never their tokens)."""
    context = load_context()
    with context.db.sessions() as session:
        rows = [
            {"id": r.id, "name": r.name, "labels": json.loads(r.labels), "state": connection_state(r),
             "revoked": r.revoked, "last_seen": r.last_seen, "connected_since": r.connected_since,
             "connected_from": r.connected_from, "agent_version": r.agent_version,
             "token_generation": r.token_generation, "facts": json.loads(r.facts or "{}")}
            for r in list_registered(session)
        ]
    if as_json:
        typer.echo(json.dumps(rows))
        return
    # Names and ids are what people type into `rotate` and `revoke`: never cut or wrapped.
    table = Table(*(Column(key, no_wrap=True, min_width=max((len(r[key]) for r in rows), default=2)) for key in ("name", "id")),
                  "labels", "state", "last seen", "agent", "os")
    for r in rows:
        labels = ", ".join(f"{k}={v}" for k, v in r["labels"].items())
        table.add_row(Text(r["name"]), r["id"], Text(display_text(labels)), r["state"], r["last_seen"] or "never",
                      Text(display_text(r["agent_version"] or "-")), Text(display_text(str(r["facts"].get("os", "")))))
    Console().print(table)


@app.command("rotate")
def rotate_command(
    node: Annotated[str, typer.Argument(help="Node name or id.")],
    actor: Annotated[str, typer.Option(help="Who rotates it (recorded in the audit log).")] = "cli",
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """A new token for the node; the old one stops working at once."""
    context = load_context()
    try:
        with session_scope(context.db.sessions) as session:
            issued = rotate_token(session, ref=resolve_node_ref(session, node), actor=actor)
    except (NodeRegistryError, NodeNotFound) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    _issued(issued, as_json=as_json, server=context.settings.public_url)


@app.command("revoke")
def revoke_command(
    node: Annotated[str, typer.Argument(help="Node name or id.")],
    actor: Annotated[str, typer.Option(help="Who revokes it (recorded in the audit log).")] = "cli",
) -> None:
    """Revoke the node: its token never authenticates again."""
    context = load_context()
    try:
        with session_scope(context.db.sessions) as session:
            record = revoke_node(session, ref=resolve_node_ref(session, node), actor=actor)
            name = record.name
    except NodeNotFound as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    typer.echo(f"node {name} revoked")
