"""The nodes pages: the list with live state, register (token shown once), rotate, revoke; roles and CSRF."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from squads.audit.models import AuditRecord, RecordKind
from squads.nodes.hub import NodeState
from squads.nodes.tables import NodeRecord
from squads.context import AppContext
from squads.storage.db import session_scope
from tests.web import as_user, site_with_users, web_client
from squads.accounts.models import Role

TOKEN = re.compile(r"sqn_[A-Za-z0-9_-]{20,}")


@pytest.fixture
def context(tmp_path: Path) -> AppContext:
    return site_with_users(tmp_path, {"vera": Role.VIEWER, "eddie": Role.ENGINEER, "ada": Role.ADMIN})


@pytest.fixture
def client(context: AppContext) -> Iterator[TestClient]:
    with web_client(context) as test_client:
        yield test_client


def register(client: TestClient, token: str, name: str = "web-7", labels: str = "env=prod\nrole=web") -> str:
    page = client.post("/nodes", data={"csrf_token": token, "name": name, "labels": labels})
    assert page.status_code == 200, page.text
    found = TOKEN.search(page.text)
    assert found, page.text
    return found.group(0)


def test_viewers_see_the_nodes_but_cannot_change_them(client: TestClient) -> None:
    token = as_user(client, "ada")
    register(client, token)
    for name in ("vera", "eddie"):
        token = as_user(client, name)
        page = client.get("/nodes")
        assert page.status_code == 200
        assert "web-7" in page.text and "env=prod" in page.text and "local" in page.text
        assert 'action="/nodes"' not in page.text and "/rotate" not in page.text  # no admin forms
        for path in ("/nodes", "/nodes/web-7/rotate", "/nodes/web-7/revoke"):
            refused = client.post(path, data={"csrf_token": token, "name": "web-8"})
            assert refused.status_code == 403, (name, path)
            assert "needs the admin role" in refused.text


def test_state_changes_need_the_csrf_token(client: TestClient) -> None:
    token = as_user(client, "ada")
    register(client, token)
    for path in ("/nodes", "/nodes/web-7/rotate", "/nodes/web-7/revoke"):
        assert client.post(path, data={"name": "web-8"}).status_code == 403
        assert client.post(path, data={"name": "web-8", "csrf_token": "forged"}).status_code == 403
    assert "web-8" not in client.get("/nodes").text


def test_the_token_is_shown_once_and_never_listed(client: TestClient, context: AppContext) -> None:
    token = as_user(client, "ada")
    page = client.post("/nodes", data={"csrf_token": token, "name": "web-7", "labels": "env=prod\n\nrole=web\n"})
    assert page.status_code == 200 and page.headers["cache-control"] == "no-store"
    secret = TOKEN.search(page.text)
    assert secret and "squads agent install" in page.text and "shown only on this page" in page.text
    listed = client.get("/nodes")
    assert secret.group(0) not in listed.text and TOKEN.search(listed.text) is None
    assert "env=prod" in listed.text and "role=web" in listed.text and "offline" in listed.text
    with context.db.sessions() as session:
        record = session.scalar(select(NodeRecord).where(NodeRecord.name == "web-7"))
        assert record is not None and json.loads(record.labels) == {"env": "prod", "role": "web"}
        audit = session.scalars(select(AuditRecord).where(AuditRecord.kind == RecordKind.NODE_ADMIN.value)).all()
        assert [(r.actor, json.loads(r.details or "{}")["action"]) for r in audit] == [("ada", "created")]
        assert all(secret.group(0) not in (r.details or "") for r in audit)


def test_rotate_shows_a_new_token_once_and_disconnects_the_agent(
    client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    token = as_user(client, "ada")
    first = register(client, token)
    hub = client.app.state.hub  # type: ignore[attr-defined]
    kicked: list[tuple[str, str]] = []
    monkeypatch.setattr(hub, "kick_blocking", lambda name, reason: kicked.append((name, reason)))
    page = client.post("/nodes/web-7/rotate", data={"csrf_token": token})
    assert page.status_code == 200 and page.headers["cache-control"] == "no-store"
    second = TOKEN.search(page.text)
    assert second and second.group(0) != first and "rotated" in page.text
    assert kicked == [("web-7", "this node's token was rotated")]
    listed = client.get("/nodes").text
    assert first not in listed and second.group(0) not in listed
    missing = client.post("/nodes/nope/rotate", data={"csrf_token": token})
    assert missing.status_code == 404 and "no registered node" in missing.text


def test_revoke_redirects_with_a_notice_and_cuts_the_agent_off(
    client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    token = as_user(client, "ada")
    register(client, token)
    hub = client.app.state.hub  # type: ignore[attr-defined]
    kicked: list[str] = []
    monkeypatch.setattr(hub, "kick_blocking", lambda name, reason: kicked.append(name))
    done = client.post("/nodes/web-7/revoke", data={"csrf_token": token})
    assert done.status_code == 303 and done.headers["location"] == "/nodes?revoked=web-7"
    assert kicked == ["web-7"]
    page = client.get(done.headers["location"])
    assert "Node web-7 is revoked" in page.text and 'badge revoked' in page.text
    assert "/nodes/web-7/rotate" not in page.text  # nothing left to manage
    again = client.post("/nodes/web-7/rotate", data={"csrf_token": token})
    assert again.status_code == 409 and "is revoked" in again.text
    # A crafted link cannot make the page announce a revocation that did not happen.
    register(client, token, name="web-8")
    for fake in ("web-8", "nobody"):
        assert "is revoked" not in client.get(f"/nodes?revoked={fake}").text


@pytest.mark.parametrize(("name", "labels", "message"), [
    ("Bad Name", "env=prod", "is not allowed"),
    ("web-9", "env", "write key=value"),
    ("web-9", "env=prod\nenv=dev", "given twice"),
    ("web-9", "env=pr od", "keys and values are letters"),
])
def test_a_bad_request_keeps_what_the_admin_typed(client: TestClient, name: str, labels: str, message: str) -> None:
    token = as_user(client, "ada")
    page = client.post("/nodes", data={"csrf_token": token, "name": name, "labels": labels})
    assert page.status_code == 400 and message in page.text
    assert f'value="{name}"' in page.text and f">{labels}</textarea>" in page.text
    assert TOKEN.search(page.text) is None


def test_a_duplicate_name_is_refused_and_the_first_token_stays_valid(client: TestClient) -> None:
    token = as_user(client, "ada")
    register(client, token)
    page = client.post("/nodes", data={"csrf_token": token, "name": "web-7", "labels": "a=b"})
    assert page.status_code == 400 and "already exists" in page.text and TOKEN.search(page.text) is None
    assert "a=b</textarea>" in page.text


def test_live_state_facts_and_labels_are_shown_escaped(
    client: TestClient, context: AppContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    token = as_user(client, "ada")
    register(client, token)
    with session_scope(context.db.sessions) as session:  # as if stored by an older, laxer version
        record = session.scalar(select(NodeRecord).where(NodeRecord.name == "web-7"))
        assert record is not None
        record.labels = json.dumps({"note": "<img src=x onerror=alert(1)>"})
    facts = {"hostname": "<script>alert(1)</script>", "os": "Debian\u202e12", "programs": {"df": "/usr/bin/df"}}
    hub = client.app.state.hub  # type: ignore[attr-defined]
    monkeypatch.setattr(hub, "state", lambda name: NodeState(True, "2030-01-01T00:00:00+00:00", None, "10.0.0.7", 0,
                                                               "0.1.0</td>", facts))
    page = client.get("/nodes").text
    assert "<script>alert(1)</script>" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "<img src=x" not in page and "&lt;img src=x onerror=alert(1)&gt;" in page
    assert "0.1.0&lt;/td&gt;" in page and "Debian\\u202e12" in page  # a bidi override is shown, not obeyed
    assert "badge online" in page and "1 registered, 1 online now" in page
    assert re.search(r"<td>1</td>", page)  # one program found on the node


def test_pages_fit_a_phone_without_scripts(client: TestClient) -> None:
    token = as_user(client, "ada")
    register(client, token)
    page = client.get("/nodes").text
    assert '<div class="scroll">' in page and "<script" not in page
    css = client.get("/static/app.css").text
    assert ".scroll { overflow-x: auto" in css
