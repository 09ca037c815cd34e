"""``squads approval``: held commands in the terminal, for approvers (list, approve, deny).

Who approves: ``--as USER``, a local account with the approver or admin role; without it,
the account named like the operating-system user running the command. The control plane's
shell is trusted the way ``squads user`` and server tokens trust it; the account named is
what the audit log records, and the requester can never approve their own request.
"""

from __future__ import annotations

import getpass
import json
import shlex
from datetime import UTC, datetime
from typing import Annotated

import typer
from rich.console import Console

from squads.accounts.service import AccountError
from squads.approvals import ApprovalLookupError, approver_account, find_pending, pending_approvals
from squads.context import load_context

app = typer.Typer(help="Held commands: list them, approve or deny one (approvers).", no_args_is_help=True)
AsUser = Annotated[
    str | None,
    typer.Option("--as", help="The approving account (approver or admin); default: the account named like your OS user."),
]
Reason = Annotated[str | None, typer.Option(help="Why (recorded in the audit log).")]


def _fail(message: str) -> typer.Exit:
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(2)


@app.command("list")
def list_command(as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """Every held command still waiting, newest first: id, conversation, node, command, who asked."""
    context = load_context()
    with context.db.readers() as session:
        pending = pending_approvals(session, now=datetime.now(UTC), ttl_s=context.settings.approval_ttl_s)
    if as_json:
        keys = ("id", "conversation", "squad", "node", "agent", "argv", "reason", "requested_by", "requested_at",
                "expires_at")
        typer.echo(json.dumps([{k: a.get(k) for k in keys} for a in pending], indent=2))
        return
    if not pending:
        typer.echo("no held commands are waiting")
        return
    for a in pending:
        # One request per paragraph: a command is never cut to fit a column.
        typer.echo(f"{a['id']}  {shlex.join(a.get('argv', []))}")
        typer.echo(f"    on {a.get('node', '')} ({a.get('squad', '')}), asked by {a.get('requested_by') or 'unknown'} "
                   f"at {str(a.get('requested_at', ''))[:19]}, expires {str(a.get('expires_at', ''))[:19]}; "
                   f"conversation {a['conversation']}")
    typer.echo("approve one with `squads approval approve ID`, or deny it with `squads approval deny ID`")


def _resolve(approval_id: str, *, as_user: str | None, approved: bool, reason: str | None) -> None:
    # Imported here: only resolving needs the runtime and the terminal's event printer.
    from squads.chat import render_event
    from squads.runtime import ApprovalError, Conversation
    from transcripts import service as transcripts

    context = load_context()
    username = as_user or getpass.getuser()
    with context.db.readers() as session:
        try:
            approver = approver_account(session, username).username
        except AccountError as exc:
            hint = "" if as_user else " (name the approving account with --as USER)"
            raise _fail(f"{exc}{hint}") from None
        try:
            approval = find_pending(session, approval_id, now=datetime.now(UTC), ttl_s=context.settings.approval_ttl_s)
        except ApprovalLookupError as exc:
            raise _fail(str(exc)) from None
        cid = approval["conversation"]
        squad_name = transcripts.get_conversation(session, cid).squad
        allowed = transcripts.load_state(session, cid).get("nodes")
    config = context.runtime_config()
    if allowed:
        config.nodes = {n: c for n, c in config.nodes.items() if n in allowed}
    if approval["node"] not in config.nodes:
        raise _fail(f"node {approval['node']!r} is not one this process can reach (an agent's node connects to "
                    "`squads serve`, a scenario's node is simulated): approve it on the web at /approvals")
    squad = context.squads.get(squad_name)
    if squad is None:
        raise _fail(f"squad {squad_name} is no longer installed")
    conversation = Conversation(config=config, squad=squad, conversation_id=cid, actor=approver)
    console = Console()
    try:
        for event in conversation.resolve_approval(approval_id, approver=approver, approved=approved, reason=reason):
            render_event(console, event)
    except ApprovalError as exc:
        raise _fail(str(exc)) from None
    typer.echo(f"{'approved' if approved else 'denied'} by {approver}; recorded in the audit log "
               f"(conversation {cid})")


@app.command("approve")
def approve_command(
    approval_id: Annotated[str, typer.Argument(metavar="ID", help="The request's id, as `squads approval list` shows it.")],
    as_user: AsUser = None,
    reason: Reason = None,
) -> None:
    """Approve a held command: it is decided again, then runs on its node, with you as the actor."""
    _resolve(approval_id, as_user=as_user, approved=True, reason=reason)


@app.command("deny")
def deny_command(
    approval_id: Annotated[str, typer.Argument(metavar="ID", help="The request's id, as `squads approval list` shows it.")],
    as_user: AsUser = None,
    reason: Reason = None,
) -> None:
    """Deny a held command: it never runs, and the denial is final."""
    _resolve(approval_id, as_user=as_user, approved=False, reason=reason)
