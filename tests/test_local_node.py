"""The node `local` (the control-plane host): off by default for squads serve, read-only in the demo."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from typer.testing import CliRunner

from squads.accounts.api_tokens import create_api_token
from chat_server.app import create_app
from squads.settings.env import Settings, get_settings
from squads.nodes.models import LOCAL_NODE_OFF
from squads.nodes.service import NodeNotFound, get_node
from permissions.models import Verdict
from squads.cli import app
from squads.context import AppContext
from squads.storage.db import session_scope
from tests.web import as_user, site_with_users, web_client
from squads.accounts.models import Role

ENGINEER = "webserver/service-health"


def context_for(tmp_path: Path, *, serving: bool, local_node: str | None = None) -> AppContext:
    config = tmp_path / "config"
    config.mkdir(parents=True, exist_ok=True)
    (config / "nodes.yaml").write_text("nodes:\n  - name: web-1\n")
    return AppContext(settings=Settings(data_dir=tmp_path, config_dir=config, local_node=local_node),  # type: ignore[arg-type]
                      serving=serving)


@pytest.mark.parametrize("serving, setting, present", [
    (True, None, False), (True, "off", False), (True, "read-only", True), (True, "on", True),
    (False, None, True), (False, "off", False),
])
def test_local_is_off_for_a_server_unless_turned_on(tmp_path: Path, serving: bool, setting: str | None,
                                                    present: bool) -> None:
    context = context_for(tmp_path, serving=serving, local_node=setting)
    assert ("local" in context.nodes) is present
    assert "web-1" in context.nodes  # configured nodes are not affected
    if not present:
        with pytest.raises(NodeNotFound) as info:
            get_node(context.nodes, "local")
        assert str(info.value) == LOCAL_NODE_OFF and "SQUADS_LOCAL_NODE=read-only" in str(info.value)


def test_a_bad_setting_is_refused_naming_the_values(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SQUADS_LOCAL_NODE", "yes")
    with pytest.raises(ValueError, match="'off', 'read-only' or 'on'"):
        Settings()


def test_read_only_refuses_what_would_need_approval_on_local_only(tmp_path: Path) -> None:
    context = context_for(tmp_path, serving=True, local_node="read-only")
    engine = context.engine()
    local, web = context.nodes["local"].context(), context.nodes["web-1"].context()
    restart = ["systemctl", "restart", "nginx"]
    refused = engine.decide(agent=ENGINEER, node=local, argv=restart)
    assert refused.verdict is Verdict.DENY and "SQUADS_LOCAL_NODE=read-only" in refused.reason
    assert engine.decide(agent=ENGINEER, node=web, argv=restart).verdict is Verdict.NEEDS_APPROVAL
    assert engine.decide(agent=ENGINEER, node=local, argv=["df", "-h"]).verdict is Verdict.ALLOW
    on = context_for(tmp_path / "on", serving=True, local_node="on").engine()
    assert on.decide(agent=ENGINEER, node=local, argv=restart).verdict is Verdict.NEEDS_APPROVAL


@pytest.fixture
def api(tmp_path: Path) -> Iterator[tuple[TestClient, dict[str, str]]]:
    context = context_for(tmp_path, serving=True)
    with session_scope(context.db.sessions) as session:
        token = create_api_token(session, name="tests", actor="pytest").token
    with TestClient(create_app(context)) as client:
        yield client, {"Authorization": f"Bearer {token}"}


def test_the_api_names_the_setting_when_local_is_off(api: tuple[TestClient, dict[str, str]]) -> None:
    client, auth = api
    response = client.post("/api/run", json={"agent": ENGINEER, "argv": ["df", "-h"], "nodes": ["local"]}, headers=auth)
    assert response.status_code == 404 and "SQUADS_LOCAL_NODE" in response.text
    ran = client.post("/api/run", json={"agent": ENGINEER, "argv": ["df", "-h"], "nodes": ["web-1"]}, headers=auth)
    assert ran.status_code == 200, ran.text


def test_the_web_chat_offers_no_local_and_says_why_when_it_is_named(tmp_path: Path) -> None:
    context = site_with_users(tmp_path, {"eddie": Role.ENGINEER})
    context.serving = True
    with web_client(context) as client:
        csrf = as_user(client, "eddie")
        assert 'value="local"' not in client.get("/chat").text
        response = client.post("/chat", data={"csrf_token": csrf, "squad": "webserver", "nodes": ["local"],
                                              "message": "is the disk full?"})
        assert response.status_code == 400 and "SQUADS_LOCAL_NODE" in response.text


def test_squads_chat_says_local_is_off(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SQUADS_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("SQUADS_LOCAL_NODE", "off")
    get_settings.cache_clear()
    try:
        result = CliRunner().invoke(app, ["chat", "--squad", "webserver", "--node", "local", "-m", "hello"])
    finally:
        get_settings.cache_clear()
    assert result.exit_code == 2 and "SQUADS_LOCAL_NODE=read-only" in " ".join(result.stdout.split())
