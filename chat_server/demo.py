"""``squads demo``: the product on its embedded defaults, ready to try in a browser.

It starts the control plane on SQLite, the bundled simulated lab nodes
(including the seed's payment-service CrashLoopBackOff incident) and a real
agent for this machine (read-only defaults), then prints the URL and the admin
login. The demo keeps its own database under ``<data dir>/demo`` so trying it
never touches a real installation's data.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Annotated

import httpx
import typer
import uvicorn

from chat_server.app import create_app
from chat_server.cli import uvicorn_options
from squads.settings.env import Settings, get_settings
from squads.nodes.service import NodeNotFound, create_node, find_node, rotate_token
from squads.context import AppContext
from squads.storage.db import session_scope
from squads.accounts.models import Role
from squads.accounts.service import AccountError, create_user, reset_password

THIS_MACHINE = "this-machine"


def _admin_password(context: AppContext) -> str:
    """A fresh one-time password for ``admin`` (the demo database only), created on first start."""
    with session_scope(context.db.sessions) as session:
        try:
            return reset_password(session, username="admin", actor="squads demo")
        except AccountError:
            import secrets

            password = secrets.token_urlsafe(12)
            create_user(session, username="admin", password=password, role=Role.ADMIN, actor="squads demo",
                        must_change=True)
            return password


def _this_machine_token(context: AppContext, folder: Path) -> tuple[str, Path]:
    """Register (or re-key) this machine as a node; its token goes to a private file."""
    with session_scope(context.db.sessions) as session:
        try:
            find_node(session, THIS_MACHINE)
            issued = rotate_token(session, ref=THIS_MACHINE, actor="squads demo")
        except NodeNotFound:
            issued = create_node(session, name=THIS_MACHINE, labels={"demo": "true"}, actor="squads demo")
    token_file = folder / "this-machine.token"
    token_file.touch(mode=0o600, exist_ok=True)
    token_file.chmod(0o600)
    token_file.write_text(issued.token)
    return issued.node_id, token_file


def _start_agent(url: str, node_id: str, token_file: Path, log_file: Path) -> subprocess.Popen[bytes]:
    """The real agent for this machine, as a child process, once the control plane answers."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                break
        except httpx.TransportError:
            time.sleep(0.2)
    squads = Path(sys.executable).with_name("squads")
    with log_file.open("ab") as log:
        return subprocess.Popen([str(squads), "agent", "--server", url, "--node-id", node_id,
                                 "--node-name", THIS_MACHINE, "--token-file", str(token_file)], stdout=log, stderr=log)


def demo_command(
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535)] = 8700,
) -> None:
    """Start the control plane, the lab nodes and an agent for this machine; print where to go."""
    base = get_settings()
    folder = base.data_dir / "demo"
    folder.mkdir(parents=True, exist_ok=True)
    os.environ["SQUADS_LAB"] = "true"
    settings = Settings(data_dir=folder, config_dir=base.config_dir or folder / "config", lab=True, local_node="read-only",
                        public_url=f"http://{host}:{port}")
    context = AppContext(settings=settings, serving=True)
    password = _admin_password(context)
    node_id, token_file = _this_machine_token(context, folder)
    url = f"http://{'127.0.0.1' if host in ('0.0.0.0', '::') else host}:{port}"
    agents: list[subprocess.Popen[bytes]] = []
    threading.Thread(target=lambda: agents.append(_start_agent(url, node_id, token_file, folder / "agent.log")),
                     daemon=True).start()
    lab = ", ".join(sorted(context.lab_nodes))
    typer.echo(
        f"\nSquads demo: open {url}/\n\n  sign in as   admin\n  password     {password}   (one-time: you choose"
        f" your own at first sign-in)\n\n  nodes        {THIS_MACHINE} (this machine, through a real agent, read-only)"
        f"\n               local (the control plane's own host, read-only)"
        f"\n               {lab} (simulated lab)\n\n  Try the seed incident: Chat → k8s squad → k8s-cluster-east →"
        " \"My application pod is in a CrashLoopBackOff state. Can you check the logs?\"\n"
        f"  Data: {folder} · Stop with Ctrl-C.\n", err=True,
    )
    # uvicorn re-raises the signal that stopped it once it has shut down; with the default
    # SIGTERM action that would end this process before it stops the agent it started.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        uvicorn.run(create_app(context), host=host, port=port, log_level="warning", **uvicorn_options())
    finally:
        for agent in agents:
            agent.terminate()
            try:
                agent.wait(timeout=10)
            except subprocess.TimeoutExpired:
                agent.kill()
