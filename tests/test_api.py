"""The control plane's JSON API: every /api route needs a token; node registration over HTTP."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from squads.accounts.api_tokens import create_api_token, revoke_api_token
from chat_server.app import create_app
from squads.settings.env import Settings
from squads.context import AppContext
from squads.storage.db import session_scope


@pytest.fixture
def context(tmp_path: Path) -> AppContext:
    return AppContext(settings=Settings(data_dir=tmp_path, config_dir=tmp_path / "config"))


@pytest.fixture
def client(context: AppContext) -> Iterator[TestClient]:
    with TestClient(create_app(context)) as test_client:
        yield test_client


@pytest.fixture
def token(context: AppContext) -> str:
    with session_scope(context.db.sessions) as session:
        return create_api_token(session, name="tests", actor="pytest").token


def test_health_needs_no_token(client: TestClient) -> None:
    assert client.get("/healthz").json() == {"ok": True}


def test_every_api_route_refuses_a_request_without_a_valid_token(client: TestClient, context: AppContext) -> None:
    # The OpenAPI schema lists every route the app serves, however routers are mounted.
    spec = create_app(context).openapi()["paths"]
    routes = [(path.replace("{ref}", "web-1"), method.upper())
              for path, ops in spec.items() if path.startswith("/api") for method in ops]
    assert len(routes) >= 4
    wrong = [{}, {"Authorization": "Bearer sqa_" + "0" * 32 + ".nope-nope-nope-nope-nope"},
             {"Authorization": "Basic YWRtaW46YWRtaW4="}]
    for path, method in routes:
        for headers in wrong:
            response = client.request(method, path, headers=headers, json={"name": "x"})
            assert response.status_code == 401, (method, path, headers, response.text)
            assert response.headers.get("www-authenticate") == "Bearer"


def test_register_list_rotate_revoke_over_http(client: TestClient, token: str) -> None:
    auth = {"Authorization": f"Bearer {token}"}
    created = client.post("/api/nodes", json={"name": "web-7", "labels": {"env": "prod"}}, headers=auth)
    assert created.status_code == 201, created.text
    issued = created.json()
    assert issued["token"].startswith("sqn_")
    listed = client.get("/api/nodes", headers=auth)
    assert [n["name"] for n in listed.json()] == ["web-7"] and issued["token"] not in listed.text
    rotated = client.post("/api/nodes/web-7/rotate", headers=auth).json()
    assert rotated["token"] != issued["token"]
    assert client.post("/api/nodes/web-7/revoke", headers=auth).json()["revoked"] is True
    assert client.post("/api/nodes/web-7/rotate", headers=auth).status_code == 409
    assert client.post("/api/nodes/nope/revoke", headers=auth).status_code == 404
    bad = client.post("/api/nodes", json={"name": "Bad Name"}, headers=auth)
    assert bad.status_code == 400 and "not allowed" in bad.json()["detail"]


def test_a_revoked_token_stops_working(client: TestClient, context: AppContext, token: str) -> None:
    auth = {"Authorization": f"Bearer {token}"}
    assert client.get("/api/nodes", headers=auth).status_code == 200
    with session_scope(context.db.sessions) as session:
        revoke_api_token(session, ref="tests")
    assert client.get("/api/nodes", headers=auth).status_code == 401


def test_squads_serve_answers_health_on_a_real_port(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import os
    import socket
    import subprocess
    import sys
    import time

    import httpx

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = {**os.environ, "SQUADS_DATA_DIR": str(tmp_path)}
    squads = Path(sys.executable).with_name("squads")
    server = subprocess.Popen([str(squads), "serve", "--port", str(port)], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                response = httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1)
                break
            except httpx.TransportError:
                assert server.poll() is None, server.stdout.read().decode() if server.stdout else "server exited"
                assert time.monotonic() < deadline, "squads serve did not answer within 30 s"
                time.sleep(0.2)
        assert response.status_code == 200 and response.json() == {"ok": True}
        assert httpx.get(f"http://127.0.0.1:{port}/api/nodes", timeout=2).status_code == 401
    finally:
        server.terminate()
        server.wait(timeout=10)
    output = server.stdout.read().decode() if server.stdout else ""
    assert output.count("First start: created user 'admin'") == 1, output
    password = output.split("one-time password", 1)[1].split()[0]
    from squads.accounts.service import sign_in

    context = AppContext(settings=Settings(data_dir=tmp_path))
    assert sign_in(context.db.sessions, username="admin", password=password, peer="test").user.must_change_password
    # A second start finds the admin and prints no password.
    from chat_server.cli import announce_first_admin

    announce_first_admin(context)
    assert "First start" not in capsys.readouterr().err
