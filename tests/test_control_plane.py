"""The control plane's side of the agent link, without agent processes: the run API on a
configured node, the hub's bookkeeping, connection state for the CLI, and site programs."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from squads.node_agent.protocol import Facts, Hello
from squads.audit.models import AuditRecord
from squads.accounts.token_models import ApiToken
from squads.accounts.api_tokens import authenticate_token, create_api_token
from chat_server.app import create_app
from squads.settings.env import Settings
from squads.nodes.hub import Hub, Link
from squads.nodes.tables import NodeRecord
from squads.nodes.service import connection_state, create_node
from squads.context import AppContext
from squads.storage.db import session_scope
from squads.storage.service import Database
from tools.executors.base import NotRun


@pytest.fixture
def context(tmp_path: Path) -> AppContext:
    config = tmp_path / "config"
    (config / "programs").mkdir(parents=True)
    (config / "grants").mkdir()
    (config / "programs" / "site.yaml").write_text(
        'programs:\n  "true": {path: /usr/bin/true, subcommand_required: false, positionals: none}\n'
    )
    (config / "grants" / "site.yaml").write_text(
        'grants:\n  - {name: site-true, agents: [webserver/service-health], allow: ["true"]}\n'
    )
    return AppContext(settings=Settings(data_dir=tmp_path, config_dir=config))


@pytest.fixture
def client(context: AppContext) -> Iterator[TestClient]:
    with TestClient(create_app(context)) as test_client:
        yield test_client


@pytest.fixture
def auth(context: AppContext) -> dict[str, str]:
    with session_scope(context.db.sessions) as session:
        return {"Authorization": f"Bearer {create_api_token(session, name='tests', actor='pytest').token}"}


def _run(client: TestClient, auth: dict[str, str], **body: object) -> list[dict[str, object]]:
    response = client.post("/api/run", json={"agent": "webserver/service-health", **body}, headers=auth)
    assert response.status_code == 200, response.text
    result: list[dict[str, object]] = response.json()
    return result


def test_run_on_a_configured_node_goes_through_policy_and_audit(
    client: TestClient, auth: dict[str, str], context: AppContext
) -> None:
    (result,) = _run(client, auth, argv=["true"], nodes=["local"])
    assert result["decision"] == "allow" and "site-true" in str(result["reason"])
    assert result["ran"] is True and result["exit_code"] == 0
    with context.db.sessions() as session:
        kinds = [r.kind for r in session.scalars(select(AuditRecord).order_by(AuditRecord.seq))]
        actors = {r.actor for r in session.scalars(select(AuditRecord).where(AuditRecord.kind == "decision"))}
    assert kinds[-3:] == ["decision", "execution_started", "execution_finished"]
    assert actors == {"token:tests"}


def test_run_answers_refusals_per_node_and_runs_nothing_held(client: TestClient, auth: dict[str, str]) -> None:
    (denied,) = _run(client, auth, argv=["cat", "/etc/shadow"], nodes=["local"])
    assert denied["decision"] == "deny" and denied["ran"] is False
    (held,) = _run(client, auth, argv=["systemctl", "restart", "nginx"], nodes=["local"])
    assert held["decision"] == "needs_approval" and held["ran"] is False and held["exit_code"] is None


def test_run_refuses_bad_requests_with_a_reason(client: TestClient, auth: dict[str, str]) -> None:
    def post(body: dict[str, object]) -> tuple[int, str]:
        response = client.post("/api/run", json=body, headers=auth)
        return response.status_code, response.text

    assert post({"agent": "nobody/x", "argv": ["true"], "nodes": ["local"]})[0] == 400
    code, text = post({"agent": "webserver/service-health", "argv": ["true"], "nodes": ["ghost"]})
    assert code == 404 and "ghost" in text
    code, text = post({"agent": "webserver/service-health", "argv": ["true"], "labels": {"role": "none"}})
    assert code == 400 and "name at least one node" in text
    assert post({"agent": "webserver/service-health", "argv": [], "nodes": ["local"]})[0] == 422


def test_registered_offline_node_fails_at_once_and_nothing_is_queued(
    client: TestClient, auth: dict[str, str], context: AppContext
) -> None:
    created = client.post("/api/nodes", json={"name": "web-9", "labels": {"role": "web"}}, headers=auth).json()
    assert created["install_command"].startswith("printf '%s' ") and created["token"] in created["install_command"]
    assert "--token-stdin" in created["install_command"] and created["node_id"] in created["install_command"]
    (result,) = _run(client, auth, argv=["true"], labels={"role": "web"})
    assert result["node"] == "web-9" and result["ran"] is False
    assert "offline" in str(result["error"]) and "nothing was run or queued" in str(result["error"])
    with context.db.sessions() as session:
        last = session.scalars(select(AuditRecord).order_by(AuditRecord.seq.desc())).first()
    assert last is not None and last.kind == "execution_interrupted" and json.loads(last.details)["ran"] is False
    assert client.get("/api/nodes/summary", headers=auth).json() == {"registered": 1, "revoked": 0, "online": 0}


def test_the_api_token_is_stamped_at_most_once_a_minute(context: AppContext) -> None:
    with session_scope(context.db.sessions) as session:
        token = create_api_token(session, name="stamp", actor="pytest").token
    with session_scope(context.db.sessions) as session:
        first = authenticate_token(session, token).last_used
    with session_scope(context.db.sessions) as session:
        assert authenticate_token(session, token).last_used == first
        record = session.scalar(select(ApiToken).where(ApiToken.name == "stamp"))
        assert record is not None
        record.last_used = (datetime.now(UTC) - timedelta(minutes=2)).isoformat()
    with session_scope(context.db.sessions) as session:
        assert authenticate_token(session, token).last_used != first


def test_connection_state_for_other_processes(db: Database) -> None:
    with session_scope(db.sessions) as session:
        create_node(session, name="web-1", labels={}, actor="t")
        record = session.scalar(select(NodeRecord))
        assert record is not None
        now = datetime.now(UTC)
        assert connection_state(record) == "offline"
        record.connected_since, record.last_seen = now.isoformat(), now.isoformat()
        assert connection_state(record, now=now) == "online"
        assert connection_state(record, now=now + timedelta(minutes=10)).startswith("unknown")
        record.revoked = True
        assert connection_state(record, now=now) == "revoked"


def test_hub_records_connection_and_clears_it_when_the_agent_leaves(db: Database) -> None:
    with session_scope(db.sessions) as session:
        issued = create_node(session, name="web-1", labels={}, actor="t")

    async def scenario() -> None:
        hub = Hub(sessions=db.sessions, housekeeping_s=3600)
        await hub.start()
        closed: list[int] = []

        async def send(_text: str) -> None:
            return None

        async def close(code: int, _reason: str) -> None:
            closed.append(code)

        link = Link(node_id=issued.node_id, name="web-1", generation=1, send_text=send, close=close, peer="10.0.0.7:5")
        facts = Facts(hostname="web-1.example", os="Debian", programs={"df": "/usr/bin/df"})
        await hub.attach(link, Hello(protocol=1, version="9.9", facts=facts))
        assert hub.online("web-1") and hub.state("web-1").version == "9.9"
        hub.flush()
        with db.sessions() as session:
            row = session.get(NodeRecord, issued.node_id)
            assert row is not None and row.connected_from == "10.0.0.7:5" and row.agent_version == "9.9"
            assert json.loads(row.facts)["hostname"] == "web-1.example" and connection_state(row) == "online"
        hub.detach(link, "test")
        with pytest.raises(NotRun, match="offline"):
            await hub.run(node="web-1", argv=["true"], agent="a/b", timeout=1, max_output=10, request_id="a" * 32)
        hub.flush()
        with db.sessions() as session:
            row = session.get(NodeRecord, issued.node_id)
            assert row is not None and row.connected_since is None and connection_state(row) == "offline"
        await hub.stop()

    asyncio.run(scenario())


def test_site_programs_reach_the_engine_but_cannot_redefine_shipped_ones(context: AppContext, tmp_path: Path) -> None:
    from permissions.models import NodeContext, Verdict

    decision = context.current_engine().decide(agent="webserver/service-health", node=NodeContext.of("local"),
                                               argv=["true"])
    assert decision.verdict is Verdict.ALLOW and decision.program_path == "/usr/bin/true"
    (tmp_path / "config" / "programs" / "zz.yaml").write_text("programs:\n  kubectl: {path: /tmp/kubectl}\n")
    fresh = AppContext(settings=context.settings)
    with pytest.raises(ValueError, match="shipped with Squads and cannot be redefined"):
        _ = fresh.programs


def test_the_hub_authenticates_from_memory_and_defers_to_the_database_when_unsure(db: Database) -> None:
    from squads.nodes.service import find_node, revoke_node, rotate_token

    with session_scope(db.sessions) as session:
        first = create_node(session, name="web-1", labels={"role": "web"}, actor="t")
    hub = Hub(sessions=db.sessions, readers=db.readers)
    hub.reload_credentials()
    known = hub.authenticate(first.node_id, first.token)
    assert known is not None and known.name == "web-1" and known.labels == {"role": "web"}
    assert hub.authenticate(first.node_id, first.token + "x") is None
    assert hub.authenticate("0" * 32, first.token) is None
    with session_scope(db.sessions) as session:
        second = create_node(session, name="web-2", labels={}, actor="t")
        rotated = rotate_token(session, ref="web-1", actor="t")
    # Registered and rotated elsewhere: memory cannot tell, so the caller asks the database.
    assert hub.authenticate(second.node_id, second.token) is None
    assert hub.authenticate(first.node_id, rotated.token) is None
    hub.reload_credentials()
    assert hub.authenticate(first.node_id, rotated.token) is not None
    assert hub.authenticate(first.node_id, first.token) is None
    with session_scope(db.sessions) as session:
        hub.remember(revoke_node(session, ref="web-2", actor="t"))
        assert hub.authenticate(second.node_id, second.token) is None
        assert find_node(session, "web-2").revoked
