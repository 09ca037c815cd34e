"""The ``squads`` command: one entry point that mounts each domain's commands.

Sub-commands are imported when they run, not when ``squads`` starts: the agent must not
load the web framework, and ``squads --help`` must not load the whole product. The table
below names each command's module and its one-line help (``squads --help`` shows it without
importing anything); a test checks that each line matches the command's own help.
"""

from __future__ import annotations

import importlib
import sys
from dataclasses import dataclass
from typing import Any

import typer
from typer.core import TyperCommand, TyperGroup

# Typer's click classes: recent Typer vendors click, so neither ``click`` nor ``isinstance``
# against the click distribution's classes may be used here.
Command = Any
Context = Any


@dataclass(frozen=True)
class Entry:
    """Where a sub-command lives: ``module:attribute``, a Typer app or a command function."""

    target: str
    help: str
    group: bool  # a Typer app with its own sub-commands, or a single command function


COMMANDS: dict[str, Entry] = {
    "run": Entry("tools.cli:run", "Run one command through the policy and the local executor, and print its audit "
                 "record ids.", group=False),
    "eval": Entry("squads.evals.cli:eval_command", "Run scenarios (../shared/scenarios/FORMAT.md) through the real "
                  "runtime, policy and audit log.", group=False),
    "chat": Entry("squads.chat:chat_command", "Talk to a squad. Commands, decisions and outputs stream as they "
                  "happen.", group=False),
    "serve": Entry("chat_server.cli:serve_command", "Run the control plane on the embedded defaults (SQLite) unless "
                   "SQUADS_DATABASE_URL says otherwise.", group=False),
    "demo": Entry("chat_server.demo:demo_command", "Start the control plane, the lab nodes and an agent for this "
                  "machine; print where to go.", group=False),
    "policy": Entry("permissions.cli:app", "Inspect the permission layer.", group=True),
    "audit": Entry("squads.audit.cli:app", "The tamper-evident audit log: verify its hash chain, anchor its head, "
                   "export it.", group=True),
    "transcript": Entry("transcripts.cli:app", "Conversation transcripts: list, show and export (Markdown or JSON).",
                        group=True),
    "node": Entry("squads.nodes.cli:app", "Registered nodes: create (token shown once), list, rotate, revoke.",
                  group=True),
    "token": Entry("squads.accounts.token_cli:app", "API tokens for /api/: create (shown once), list, revoke.",
                   group=True),
    "agent": Entry("squads.node_agent.cli:app", "The node agent: connects out to the control plane and runs what "
                   "both policies allow.", group=True),
    "approval": Entry("squads.approval_cli:app", "Held commands: list them, approve or deny one (approvers).",
                      group=True),
    "scenario": Entry("squads.evals.scenario_cli:app", "Scenarios from real conversations: export one as a "
                      "regression test.", group=True),
    "user": Entry("squads.accounts.cli:app", "Local accounts: create, list, change roles, disable, reset passwords.",
                  group=True),
}


def load_command(name: str) -> Command:
    """Import sub-command ``name`` and turn it into the click command Typer would have mounted."""
    entry = COMMANDS[name]
    module, _, attribute = entry.target.partition(":")
    target = getattr(importlib.import_module(module), attribute)
    holder = typer.Typer()
    if entry.group:
        # Mounted exactly as add_typer would: a group even when the app has one command.
        holder.add_typer(target, name=name)
    else:
        holder.command(name)(target)
    root = typer.main.get_command(holder)
    commands = getattr(root, "commands", None)
    return commands[name] if commands else root


class LazyGroup(TyperGroup):
    """Lists sub-commands from ``COMMANDS`` and imports one only when it is invoked."""

    def list_commands(self, ctx: Context) -> list[str]:
        return list(COMMANDS)

    def get_command(self, ctx: Context, cmd_name: str) -> Command | None:
        # What help and completion see: the name and the line of help, nothing imported.
        entry = COMMANDS.get(cmd_name)
        return TyperCommand(cmd_name, help=entry.help) if entry else None

    def resolve_command(
        self, ctx: Context, args: list[str]
    ) -> tuple[str | None, Command | None, list[str]]:
        name, command, rest = super().resolve_command(ctx, args)
        return name, (load_command(name) if name in COMMANDS else command), rest


app = typer.Typer(
    cls=LazyGroup,
    help="Squads: a self-hosted AI on-call engineer. Every command passes the permission layer and lands in the audit log.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)


@app.callback()
def _root() -> None:
    # A callback makes Typer build a group even though no command is registered here.
    pass


def main() -> None:
    """Console-script entry point."""
    try:
        app()
    except Exception as exc:
        # Only on the error path: start-up stays light.
        from squads.audit.keys import AuditKeyError
        from squads.grants import BundleError

        if isinstance(exc, AuditKeyError):
            # A configuration problem, not a crash: say what is wrong and how to fix it, no traceback.
            print(f"error: {exc}", file=sys.stderr)
            raise SystemExit(78) from None
        if isinstance(exc, BundleError):
            # A broken site bundle is a configuration error: its file and entry, no traceback.
            print(f"error: {exc}", file=sys.stderr)
            raise SystemExit(2) from None
        raise
