"""``squads run``: one command through the policy, the audit log and an executor."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.console import Console

from squads.nodes.models import LOCAL_NODE
from squads.nodes.service import NodeNotFound, get_node
from permissions.models import Verdict
from tools.execution import ExecutionRequest, execute
from tools.executors.base import NotRun
from tools.executors.local import LocalExecutor

console = Console()


def run(
    argv: Annotated[list[str], typer.Argument(help="The command, after '--'.")],
    agent: Annotated[str, typer.Option(help="squad/agent whose grants apply")],
    node: Annotated[str, typer.Option(help="Node to run on (only 'local' runs here)")] = LOCAL_NODE,
    actor: Annotated[str | None, typer.Option(help="Who is asking (defaults to $USER)")] = None,
    timeout: Annotated[float | None, typer.Option(help="Seconds before the command is killed")] = None,
) -> None:
    """Run one command through the policy and the local executor, and print its audit record ids."""
    import getpass

    from squads.context import load_context

    ctx = load_context()
    if agent not in ctx.agent_ids():
        console.print(f"[red]error:[/red] unknown agent {agent!r}; agents: {', '.join(ctx.agent_ids())}")
        raise typer.Exit(2)
    try:
        node_cfg = get_node(ctx.nodes, node)
    except NodeNotFound as exc:
        console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from None
    if node_cfg.name != LOCAL_NODE:
        console.print(f"[red]error:[/red] node {node} is remote; remote nodes are reached through their agent")
        raise typer.Exit(2)
    settings = ctx.settings
    try:
        request = ExecutionRequest(
            agent=agent, argv=argv, actor=actor or getpass.getuser(), squad=agent.split("/")[0],
            timeout=timeout or settings.default_timeout_s, max_output=settings.max_output_bytes,
        )
        outcome = execute(request=request, sessions=ctx.db.sessions, engine=ctx.engine(),
                          executor=LocalExecutor(env_passthrough=node_cfg.env_passthrough), node=node_cfg.context())
    except NotRun as exc:  # e.g. a path argument that is a link: refused, and recorded as not run
        console.print("[red]not run:[/red] ", end="")
        console.print(str(exc), markup=False, highlight=False)
        raise typer.Exit(1) from None
    decision = outcome.decision
    if decision.verdict is not Verdict.ALLOW:
        colour = "red" if decision.verdict is Verdict.DENY else "yellow"
        console.print(f"[bold {colour}]{decision.verdict.value}[/]: ", end="")
        console.print(decision.reason, markup=False, highlight=False)
        console.print(f"audit record {outcome.decision_seq}")
        raise typer.Exit(1 if decision.verdict is Verdict.DENY else 3)
    result = outcome.result
    assert result is not None
    typer.echo(result.stdout, nl=False)
    if result.stderr:
        typer.echo(result.stderr, err=True, nl=False)
    console.print(
        f"[dim]exit {result.exit_code} in {result.duration_ms} ms"
        f"{' (timed out)' if result.timed_out else ''}{' (output truncated)' if result.truncated else ''}; "
        f"audit records {outcome.decision_seq} (decision), {outcome.started_seq} (started), {outcome.finished_seq} (finished)[/dim]",
        highlight=False,
    )
    raise typer.Exit(result.exit_code if result.exit_code >= 0 else 1)
