"""A squad conversation on a registered node: the runtime reaches it through RemoteExecutor.

The control plane runs in this process (uvicorn on a loopback port), the agent is a
real ``squads agent`` process with its read-only defaults, and the conversation is
the same ``Conversation`` every front end uses. Policy and audit happen before
dispatch, and the node decides again.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import uvicorn
from sqlalchemy import select

from squads.audit.models import AuditRecord
from chat_server.app import create_app
from chat_server.cli import uvicorn_options
from squads.settings.env import Settings
from squads.nodes.hub import Hub
from squads.nodes.remote import RemoteExecutor
from squads.nodes.service import create_node
from squads.context import AppContext
from squads.runtime import Conversation
from squads.storage.db import session_scope
from tests.agent_harness import free_port, wait_for
from transcripts.models import EventKind


@pytest.fixture
def plane(tmp_path: Path) -> Iterator[tuple[AppContext, Hub]]:
    """A control plane in this process with one agent (web-1) connected."""
    context = AppContext(settings=Settings(data_dir=tmp_path, config_dir=tmp_path / "config"))
    with session_scope(context.db.sessions) as session:
        issued = create_node(session, name="web-1", labels={"role": "web"}, actor="pytest")
    token = tmp_path / "token"
    token.write_text(issued.token)
    token.chmod(0o600)
    app = create_app(context)
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", **uvicorn_options()))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    squads = Path(sys.executable).with_name("squads")
    agent = subprocess.Popen(
        [str(squads), "agent", "--server", f"http://127.0.0.1:{port}", "--node-id", issued.node_id,
         "--token-file", str(token)],
        env={**os.environ, "SQUADS_DATA_DIR": str(tmp_path / "agent-side")},
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )
    hub: Hub = app.state.hub
    try:
        wait_for("web-1 online", lambda: hub.online("web-1") or None)
        yield context, hub
    finally:
        agent.terminate()
        agent.wait(timeout=10)
        server.should_exit = True
        thread.join(timeout=10)


def test_a_conversation_runs_its_tools_on_the_node_through_the_agent(plane: tuple[AppContext, Hub]) -> None:
    context, hub = plane
    config = context.runtime_config(hub=hub)
    assert isinstance(config.executor(config.nodes["web-1"]), RemoteExecutor)
    conversation = Conversation.start(config=config, squad=context.squads["webserver"], node="web-1", actor="alice")
    started = time.monotonic()
    events = list(conversation.handle("is the disk full on web-1?"))
    outputs = [e for e in events if e.kind is EventKind.TOOL_OUTPUT]
    assert outputs, [(e.kind, e.text) for e in events]
    assert any("Filesystem" in str(e.data.get("stdout", "")) for e in outputs)
    assert time.monotonic() - started < 30
    with context.db.sessions() as session:
        finished = list(session.scalars(select(AuditRecord).where(AuditRecord.kind == "execution_finished")))
    assert finished and {r.node for r in finished} == {"web-1"} and {r.actor for r in finished} == {"alice"}
    details = json.loads(finished[0].details)
    assert details["via"] == "agent" and details["node_rule"], details


def test_a_state_change_is_held_then_refused_by_the_read_only_node(plane: tuple[AppContext, Hub]) -> None:
    context, hub = plane
    config = context.runtime_config(hub=hub)
    conversation = Conversation.start(config=config, squad=context.squads["webserver"], node="web-1", actor="alice")
    held = [e for e in conversation.handle("restart nginx on web-1") if e.kind is EventKind.APPROVAL_REQUESTED]
    assert held, "restarting must be held for approval"
    events = list(conversation.resolve_approval(held[0].data["id"], approver="bob", approved=True))
    errors = [e.text for e in events if e.kind is EventKind.ERROR]
    # The control plane approved it; the node's read-only policy still refuses it, and says so.
    assert errors and "web-1 refused `systemctl restart nginx`" in errors[0] and "its own policy" in errors[0]
    with context.db.sessions() as session:
        decisions = list(session.scalars(select(AuditRecord).where(AuditRecord.kind == "decision")))
        node_decisions = [r for r in decisions if json.loads(r.details or "{}").get("source") == "node"]
    assert len(node_decisions) == 1 and node_decisions[0].decision == "deny"
