"""The ``squads`` command: one entry point that mounts each domain's commands."""

from __future__ import annotations

import typer

from squads.node_agent.cli import app as agent_app
from squads.audit.cli import app as audit_app
from squads.accounts.token_cli import app as token_app
from chat_server.cli import serve_command
from chat_server.demo import demo_command
from squads.evals.cli import eval_command
from squads.nodes.cli import app as node_app
from squads.chat import chat_command
from transcripts.cli import app as transcript_app
from squads.accounts.cli import app as user_app
from permissions.cli import app as policy_app
from tools.cli import run

app = typer.Typer(
    help="Squads: a self-hosted AI on-call engineer. Every command passes the permission layer and lands in the audit log.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
app.add_typer(policy_app, name="policy")
app.add_typer(audit_app, name="audit")
app.command("run")(run)
app.command("eval")(eval_command)
app.command("chat")(chat_command)
app.add_typer(transcript_app, name="transcript")
app.add_typer(node_app, name="node")
app.add_typer(token_app, name="token")
app.command("serve")(serve_command)
app.command("demo")(demo_command)
app.add_typer(agent_app, name="agent")
app.add_typer(user_app, name="user")


def main() -> None:
    """Console-script entry point."""
    app()
