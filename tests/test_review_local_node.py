"""An attacker's review of the node `local` (issue 10 §2): ways back to the control-plane host when it is off,
and state changes on a read-only `local`."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from squads.accounts.api_tokens import create_api_token
from chat_server.app import create_app
from squads.settings.env import Settings
from squads.nodes.tables import NodeRecord
from squads.nodes.service import NodeRegistryError, create_node, registered_configs
from permissions.models import GrantSpec, Verdict
from permissions.store import save_grant
from squads.context import AppContext
from squads.storage.db import session_scope

ENGINEER = "webserver/service-health"


def context_for(tmp_path: Path, local_node: str, nodes_yaml: str = "nodes:\n  - name: web-1\n") -> AppContext:
    config = tmp_path / "config"
    config.mkdir(parents=True, exist_ok=True)
    (config / "nodes.yaml").write_text(nodes_yaml)
    return AppContext(settings=Settings(data_dir=tmp_path, config_dir=config, local_node=local_node),  # type: ignore[arg-type]
                      serving=True)


def test_a_nodes_yaml_entry_for_local_does_not_bring_it_back_when_off(tmp_path: Path) -> None:
    yaml_with_local = "nodes:\n  - name: local\n    labels: {role: web}\n  - name: web-1\n"
    assert "local" not in context_for(tmp_path / "off", "off", yaml_with_local).nodes
    on = context_for(tmp_path / "ro", "read-only", yaml_with_local).nodes
    assert on["local"].labels == {"role": "web"}  # when on, the entry still configures it


def test_an_agent_cannot_register_as_local(tmp_path: Path) -> None:
    context = context_for(tmp_path, "off")
    with session_scope(context.db.sessions) as session, pytest.raises(NodeRegistryError, match="reserved"):
        create_node(session, name="local", labels={}, actor="pytest")


def test_a_registered_local_written_into_the_database_is_not_a_node(tmp_path: Path) -> None:
    """Registered before the name was reserved, or by someone who can write the database."""
    context = context_for(tmp_path, "off")
    with session_scope(context.db.sessions) as session:
        create_node(session, name="web-2", labels={}, actor="pytest")
        session.add(NodeRecord(id=uuid.uuid4().hex, name="local", labels=json.dumps({}), token_sha256="0" * 64,
                               token_generation=1, created_at="2026-01-01T00:00:00+00:00", revoked=False))
    with context.db.sessions() as session:
        assert set(registered_configs(session)) == {"web-2"}
    with session_scope(context.db.sessions) as session:
        token = create_api_token(session, name="tests", actor="pytest").token
    with TestClient(create_app(context)) as client:
        response = client.post("/api/run", json={"agent": ENGINEER, "argv": ["df", "-h"], "nodes": ["local"]},
                               headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 404 and "SQUADS_LOCAL_NODE" in response.text


def test_read_only_denies_approval_rules_of_stored_grants_even_ones_that_replace_the_defaults(tmp_path: Path) -> None:
    context = context_for(tmp_path, "read-only")
    stored = GrantSpec(name="ops", agents=[ENGINEER], replace_defaults=True,
                       allow=["df -h"], approve=["systemctl stop {enum:nginx}"])
    with session_scope(context.db.sessions) as session:
        save_grant(session, spec=stored, actor="pytest")
    engine = context.current_engine()
    local, web = context.nodes["local"].context(), context.nodes["web-1"].context()
    for argv in (["systemctl", "stop", "nginx"], ["systemctl", "stop", "nginx.service"]):
        refused = engine.decide(agent=ENGINEER, node=local, argv=argv)
        assert refused.verdict is Verdict.DENY and "SQUADS_LOCAL_NODE=read-only (covers ops)" in refused.reason
        assert engine.decide(agent=ENGINEER, node=web, argv=argv).verdict is Verdict.NEEDS_APPROVAL
    # the shipped approval rules, replaced for this agent, are still denied on local
    assert engine.decide(agent=ENGINEER, node=local, argv=["systemctl", "restart", "nginx"]).verdict is Verdict.DENY
    assert engine.decide(agent=ENGINEER, node=local, argv=["df", "-h"]).verdict is Verdict.ALLOW
