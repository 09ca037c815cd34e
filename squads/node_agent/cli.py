"""``squads agent``: run the node agent, or install it as a systemd service."""

from __future__ import annotations

import logging
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

if TYPE_CHECKING:
    from squads.node_agent.service import Agent

# The agent's modules are imported inside the commands: `squads agent --help` and the
# installer's checks start fast, and only a running agent loads websockets and the engine.

app = typer.Typer(help="The node agent: connects out to the control plane and runs what both policies allow.",
                  invoke_without_command=True)


def _fail(message: str) -> typer.Exit:
    from squads.node_agent.service import EXIT_CONFIG

    typer.echo(f"error: {message}", err=True)
    return typer.Exit(EXIT_CONFIG)


@app.callback()
def agent_command(
    ctx: typer.Context,
    server: Annotated[str | None, typer.Option(help="The control plane's URL, e.g. https://squads.example.com")] = None,
    node_id: Annotated[str | None, typer.Option(help="The id `squads node create` printed.")] = None,
    node_name: Annotated[str | None, typer.Option(
        help="The name the node is registered under; a control plane that says otherwise is refused.")] = None,
    token_file: Annotated[Path | None, typer.Option(help="File holding the node token (mode 600).")] = None,
    policy: Annotated[Path | None, typer.Option(help="This node's own policy (YAML); read-only defaults without.")] = None,
    ca_file: Annotated[Path | None, typer.Option(help="Trust only this CA for the control plane's certificate.")] = None,
    max_timeout: Annotated[float, typer.Option(help="Longest any command may run here, in seconds.")] = 300.0,
    max_output: Annotated[int, typer.Option(help="Most output bytes kept per stream of a command.")] = 4 * 1024 * 1024,
    verbose: Annotated[bool, typer.Option("--verbose", "-v")] = False,
) -> None:
    """Run the agent (give --server, --node-id and --token-file)."""
    if ctx.invoked_subcommand is not None:
        return
    import asyncio

    from squads.node_agent.policy import PolicyError, load_policy
    from squads.node_agent.service import (
        Agent, AgentConfigError, AgentOptions, AgentStopped, agent_url, check_node_name, read_token, tls_context,
    )

    if not (server and node_id and token_file):
        raise _fail("give --server, --node-id and --token-file (or `squads agent install --help`)")
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(message)s")
    for noisy in ("websockets", "asyncio"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    try:
        url = agent_url(server)
        if node_name is None:
            logging.getLogger("squads.agent").warning(
                "no --node-name: this agent takes its name from the control plane's first welcome; "
                "give --node-name (squads agent install writes it) so a control plane cannot pick another node's grants")
        options = AgentOptions(
            url=url, node_id=node_id, token=read_token(token_file), policy=load_policy(policy),
            node_name=check_node_name(node_name) if node_name is not None else None,
            ssl_context=tls_context(ca_file) if url.startswith("wss:") else None,
            max_timeout_s=max_timeout, max_output=max_output,
        )
    except (AgentConfigError, PolicyError) as exc:
        raise _fail(str(exc)) from None
    try:
        asyncio.run(_run(Agent(options)))
    except AgentStopped as exc:
        raise _fail(f"stopping: {exc}") from None


async def _run(agent: Agent) -> None:
    import asyncio
    import signal

    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, lambda: asyncio.ensure_future(agent.stop()))
    await agent.run()


@app.command("install")
def install(
    server: Annotated[str, typer.Option(help="The control plane's URL (https://...).")],
    node_id: Annotated[str, typer.Option(help="The id `squads node create` printed.")],
    node_name: Annotated[str, typer.Option(help="The name the node is registered under (squads node list).")],
    token_stdin: Annotated[bool, typer.Option(help="Read the node token from standard input.")] = False,
    token_file: Annotated[Path | None, typer.Option(help="Or copy it from this file.")] = None,
    user: Annotated[str | None, typer.Option(help="Run as this existing user instead of a systemd DynamicUser.")] = None,
    policy: Annotated[Path | None, typer.Option(help="This node's own policy file.")] = None,
    ca_file: Annotated[Path | None, typer.Option(help="CA of the control plane's certificate.")] = None,
    root: Annotated[Path, typer.Option(help="Write under this folder instead of / (for images and tests).")] = Path("/"),
    enable: Annotated[bool, typer.Option(help="Then run systemctl daemon-reload and enable --now.")] = False,
    print_command: Annotated[bool, typer.Option(help="Only print the one-line install command.")] = False,
) -> None:
    """Write /etc/squads/node-token and the systemd unit; print what to run next."""
    from squads.node_agent.install import TOKEN_PATH, install_command, squads_executable, unit_text, write_files
    from squads.node_agent.policy import PolicyError, load_policy
    from squads.node_agent.service import AgentConfigError, agent_url, check_node_name, check_token, read_token

    try:
        if token_stdin == (token_file is not None):
            raise AgentConfigError("give the token with exactly one of --token-stdin or --token-file")
        token = (check_token(sys.stdin.readline().strip(), where="standard input") if token_stdin
                 else read_token(token_file))  # type: ignore[arg-type]
        agent_url(server)  # plain http off loopback is refused here too, not only when the agent starts
        check_node_name(node_name)
        if print_command:
            typer.echo(install_command(server=server, node_id=node_id, node_name=node_name, token=token))
            return
        unit = unit_text(server=server, node_id=node_id, node_name=node_name, executable=squads_executable(),
                         user=user, policy=policy, ca_file=ca_file)
        if policy is not None:
            load_policy(policy)  # refuse a broken policy now, not when the service starts
    except (AgentConfigError, PolicyError) as exc:
        raise _fail(str(exc)) from None
    token_path, unit_path = write_files(root=root, unit=unit, token=token, token_path=TOKEN_PATH)
    typer.echo(f"wrote {token_path} (mode 600) and {unit_path}")
    if enable:
        for argv in (["systemctl", "daemon-reload"], ["systemctl", "enable", "--now", unit_path.name]):
            if subprocess.run(argv, check=False).returncode != 0:
                raise _fail(f"{' '.join(argv)} failed; fix it and run it again")
        typer.echo("the agent is running: journalctl -u squads-agent -f")
    else:
        typer.echo("next: systemctl daemon-reload && systemctl enable --now squads-agent")
