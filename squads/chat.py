"""``squads chat``: talk to a squad in the terminal, events streamed as they happen."""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markdown import Markdown
from rich.markup import escape
from rich.panel import Panel
from rich.text import Text

from squads.textsafety.display import display_lines

from tools.executors.scenario import ScenarioError, load_scenario
from squads.evals.runner import scenario_config
from permissions.models import Verdict
from squads.nodes.models import LOCAL_NODE, LOCAL_NODE_OFF
from squads.context import LAB, load_context
from squads.models import SquadSpec
from squads.runtime import Conversation, RuntimeConfig
from squads.service import load_squads
from squads.settings.env import get_settings
from transcripts.models import Event, EventKind

FOLD_LINES = 8
STYLE = {Verdict.ALLOW.value: "green", Verdict.NEEDS_APPROVAL.value: "yellow", Verdict.DENY.value: "red"}


# Text from commands or users as the terminal should see it (escape sequences shown, not run).
safe = display_lines


def render_event(console: Console, event: Event, *, full_output: bool = False) -> None:
    """Print one event: messages as Markdown, commands with their decision, outputs folded.

    Everything that came from a user or a command is printed as plain Text, never as markup."""
    data = event.data
    if event.kind is EventKind.ASSISTANT_MESSAGE:
        body = Markdown(safe(event.text), hyperlinks=False)
        console.print(Panel(body, title="squad", title_align="left", border_style="cyan"))
    elif event.kind is EventKind.TOOL_CALL:
        line = Text("$ ", style="bold").append(safe(shlex.join(data["argv"])), style="bold")
        line.append(f"  {safe(data['agent'])} @ {safe(data['node'])}", style="dim")
        console.print(line)
    elif event.kind is EventKind.DECISION:
        verdict = str(data.get("decision"))
        line = Text("  ").append(verdict, style=STYLE.get(verdict, "white"))
        console.print(line.append(": ").append(safe(str(data.get("reason"))), style="dim"))
    elif event.kind is EventKind.TOOL_OUTPUT:
        text = "\n".join(p for p in (data.get("stdout", ""), data.get("stderr", "")) if p).rstrip()
        lines = text.splitlines()
        shown = lines if full_output else lines[:FOLD_LINES]
        for raw in shown:
            console.print(Text("  │ " + safe(raw), style="dim"))
        more = f", {len(lines) - len(shown)} more lines folded" if len(lines) > len(shown) else ""
        console.print(Text(f"  └ exit {data.get('exit_code')}, {data.get('duration_ms')} ms{more}", style="dim"))
    elif event.kind is EventKind.APPROVAL_REQUESTED:
        request = safe(str(data.get("id")))
        console.print(Text(f"  held for approval (request {request}): not run; an approver runs it with "
                           f"`squads approval approve {request}` or on the web at /approvals", style="yellow"))
    elif event.kind is EventKind.ERROR:
        console.print(Text("error: ", style="red").append(safe(event.text)))


def _scenario_config(path: Path, squads: dict[str, SquadSpec]) -> tuple[RuntimeConfig, str, str]:
    """Simulated nodes answer from the scenario's fixtures; the policy is the shipped defaults.

    The conversation and its audit records go to the product's own database,
    like the demo's lab nodes: the node names say they are simulated, and the
    conversation can be resumed and exported like any other."""
    scenario = load_scenario(path)
    config, _ = scenario_config(scenario, squads=squads, sessions=load_context().db.sessions)
    return config, scenario.squad, scenario.first_node




def chat_command(
    squad: Annotated[str | None, typer.Option(help="The squad to talk to (k8s, webserver, database, security).")] = None,
    node: Annotated[str | None, typer.Option(help="The node its commands run on.")] = None,
    scenario: Annotated[
        Path | None, typer.Option(help="Chat against a scenario's simulated nodes (recorded outputs).")
    ] = None,
    lab: Annotated[
        bool, typer.Option("--lab", help="Chat with the bundled lab: the seed's payment-service incident.")
    ] = False,
    resume: Annotated[str | None, typer.Option("--resume", help="Continue a stored conversation by id.")] = None,
    message: Annotated[
        list[str] | None, typer.Option("--message", "-m", help="Send these messages and exit (repeatable).")
    ] = None,
    full_output: Annotated[bool, typer.Option(help="Show command outputs unfolded.")] = False,
    actor: Annotated[str, typer.Option(help="Who is chatting (recorded in the audit log).")] = "terminal",
) -> None:
    """Talk to a squad. Commands, decisions and outputs stream as they happen."""
    console = Console()
    if lab:
        scenario = LAB / "k8s-payment-service.yaml"
        console.print(
            "[dim]Lab: a simulated Kubernetes cluster with the seed incident. Try: "
            "\"My application pod is in a CrashLoopBackOff state. Can you check the logs?\", then "
            "\"Pod: payment-service-7d9f8b-xyz, Namespace: production\", then \"yes\".[/]"
        )
    squads = load_squads([get_settings().effective_config_dir / "squads"]) if scenario else load_context().squads
    try:
        if scenario is not None:
            config, scenario_squad, first = _scenario_config(scenario, squads)
            squad, node = squad or scenario_squad, node or first
        else:
            config = load_context().runtime_config()
    except (ScenarioError, ValueError) as exc:
        console.print(f"[red]error:[/] {escape(str(exc))}")
        raise typer.Exit(2) from None
    if resume is None and (squad is None or squad not in squads):
        console.print(f"[red]error:[/] choose a squad with --squad: {', '.join(sorted(squads))}")
        raise typer.Exit(2)
    if resume is None and (node is None or node not in config.nodes):
        known = ", ".join(sorted(config.nodes)) or "none"
        why = LOCAL_NODE_OFF if node == LOCAL_NODE else f"choose a node with --node: {known}"
        console.print(f"[red]error:[/] {escape(why)}")
        raise typer.Exit(2)
    if resume is not None:
        from transcripts.service import ConversationNotFound, get_conversation

        with config.sessions() as session:
            try:
                squad = get_conversation(session, resume).squad
            except ConversationNotFound as exc:
                console.print(f"[red]error:[/] {escape(str(exc))}")
                raise typer.Exit(2) from None
        conversation = Conversation(config=config, squad=squads[squad], conversation_id=resume, actor=actor)
    else:
        assert squad is not None and node is not None
        conversation = Conversation.start(config=config, squad=squads[squad], node=node, actor=actor)
    console.print(f"[dim]{escape(squads[squad].title)} on {escape(conversation.node)}; conversation {conversation.id}. "
                  "Ctrl-D or /quit to leave.[/]")
    inputs = iter(message) if message else None
    while True:
        try:
            text = next(inputs) if inputs is not None else console.input("[bold cyan]you>[/] ")
        except (EOFError, StopIteration, KeyboardInterrupt):
            break
        if text.strip() in ("/quit", "/exit"):
            break
        if not text.strip():
            continue
        if inputs is not None:
            console.print(Text("you> ", style="bold cyan").append(safe(text)))
        for event in conversation.handle(text):
            render_event(console, event, full_output=full_output)
    console.print(f"[dim]conversation {conversation.id} saved; `squads transcript export {conversation.id}`[/]")
