"""``squads policy``: check what the permission layer decides."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from squads.nodes.service import NodeNotFound, get_node
from permissions.engine import PolicyEngine
from permissions.models import Decision, NodeContext, Verdict

app = typer.Typer(help="Inspect the permission layer.", no_args_is_help=True)
console = Console()
# Without --node the shipped defaults are checked against an anonymous node.
DEFAULT_NODE = NodeContext.of("(any node)")
_RANK = {Verdict.ALLOW: 2, Verdict.NEEDS_APPROVAL: 1, Verdict.DENY: 0}


def _fail(message: str) -> typer.Exit:
    console.print(f"[red]error:[/red] {message}")
    return typer.Exit(2)


def _decide_for(engine: PolicyEngine, agents: list[str], node: NodeContext, argv: list[str]) -> Decision:
    """The most permissive decision among ``agents`` (first agent on ties)."""
    best: Decision | None = None
    for agent in agents:
        decision = engine.decide(agent=agent, node=node, argv=argv)
        if best is None or _RANK[decision.verdict] > _RANK[best.verdict]:
            best = decision
    assert best is not None
    return best


def _as_json(decision: Decision) -> str:
    return json.dumps(decision.as_dict() | {"decision": decision.verdict.value}, ensure_ascii=False)


@app.command("check")
def check(
    argv: Annotated[list[str] | None, typer.Argument(help="The command, after '--'.")] = None,
    agent: Annotated[str | None, typer.Option(help="squad/agent, e.g. k8s/pod-diagnostics")] = None,
    squad: Annotated[str | None, typer.Option(help="Check every agent of the squad; report the most permissive.")] = None,
    node: Annotated[str | None, typer.Option(help="A configured node; without it the shipped defaults apply.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
    batch: Annotated[Path | None, typer.Option(help="Read one JSON argv array per line; print one JSON object per line.")] = None,
) -> None:
    """Show the decision and its reason for a command: ``squads policy check --agent k8s/pod-diagnostics -- kubectl get pods -n prod``."""
    from squads.context import load_context

    ctx = load_context()
    if (agent is None) == (squad is None):
        raise _fail("give exactly one of --agent squad/agent or --squad name")
    if agent is not None:
        if agent not in ctx.agent_ids():
            raise _fail(f"unknown agent {agent!r}; agents: {', '.join(ctx.agent_ids())}")
        agents = [agent]
    else:
        if squad not in ctx.squads:
            raise _fail(f"unknown squad {squad!r}; squads: {', '.join(ctx.squads)}")
        agents = [ctx.squads[squad].agent_id(a) for a in ctx.squads[squad].agents]
    if node is None:
        engine, target = ctx.engine(with_site=False), DEFAULT_NODE
    else:
        try:
            target = get_node(ctx.nodes, node).context()
        except NodeNotFound as exc:
            raise _fail(str(exc)) from None
        engine = ctx.engine()
    if batch is not None:
        if argv:
            raise _fail("give either --batch FILE or a command after '--', not both")
        _run_batch(engine, agents, target, batch)
        return
    if not argv:
        raise _fail("no command given; put it after '--', e.g. -- kubectl get pods -n prod")
    decision = _decide_for(engine, agents, target, argv)
    if as_json:
        typer.echo(_as_json(decision))
    else:
        colour = {"allow": "green", "deny": "red", "needs_approval": "yellow"}[decision.verdict.value]
        console.print(f"[bold {colour}]{decision.verdict.value}[/]  ({decision.agent} on {decision.node})")
        console.print(decision.reason, markup=False, highlight=False)
    raise typer.Exit(0 if decision.verdict is Verdict.ALLOW else 1)


def _run_batch(engine: PolicyEngine, agents: list[str], node: NodeContext, path: Path) -> None:
    try:
        lines = path.read_text().splitlines()
    except OSError as exc:
        raise _fail(f"cannot read {path}: {exc.strerror}") from None
    for number, line in enumerate(lines, start=1):
        try:
            argv = json.loads(line)
            if not isinstance(argv, list) or not all(isinstance(a, str) for a in argv):
                raise ValueError("not a JSON array of strings")
        except ValueError as exc:
            typer.echo(json.dumps({"decision": "deny", "reason": f"line {number}: {exc}", "agent": None,
                                   "rule": "input:invalid", "line": number}))
            continue
        typer.echo(_as_json(_decide_for(engine, agents, node, argv)))
