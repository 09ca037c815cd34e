"""The squads and grants pages: tools, effective grants, admin edits (validated, audited), checking a command."""

from __future__ import annotations

import json
from collections.abc import Iterator
from html import unescape
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from squads.audit.models import AuditRecord, RecordKind
from squads.audit.verify import verify
from chat_server.pages_squads import argv_text
from permissions.models import GrantSpec
from permissions.service import GrantError
from permissions.store import disable_grant, grant_records, save_grant, stored_grants
from squads.context import AppContext
from squads.storage.db import session_scope
from squads.storage.service import Database
from tests.web import as_user, site_with_users, web_client
from tools.models import ToolSpec
from squads.accounts.models import Role

AGENT = "webserver/service-health"
GRANT = """name: failed logins
description: df with file system types on local
agents: [webserver/service-health]
nodes: {names: [local]}
allow:
  - lastb -n 5
"""


@pytest.fixture
def context(tmp_path: Path) -> AppContext:
    return site_with_users(tmp_path, {"vera": Role.VIEWER, "ada": Role.ADMIN})


@pytest.fixture
def client(context: AppContext) -> Iterator[TestClient]:
    with web_client(context) as test_client:
        yield test_client


def check(client: TestClient, command: str, *, agent: str = AGENT, node: str = "local") -> str:
    page = client.get("/grants", params={"agent": agent, "node": node, "command": command})
    assert page.status_code == 200
    return unescape(page.text)


def grant_audit(context: AppContext) -> list[tuple[str | None, dict[str, str]]]:
    with context.db.sessions() as session:
        rows = session.scalars(select(AuditRecord).where(AuditRecord.kind == RecordKind.GRANT_ADMIN.value)
                               .order_by(AuditRecord.seq))
        return [(r.actor, json.loads(r.details or "{}")) for r in rows]


def test_squads_page_lists_agents_and_their_tools(client: TestClient) -> None:
    as_user(client, "vera")
    page = client.get("/squads")
    assert page.status_code == 200
    text = unescape(page.text)
    assert "webserver/service-health" in text and "k8s/deployment-manager" in text
    assert "needs approval" in text and "<script" not in page.text


def test_argv_templates_read_as_one_line() -> None:
    tool = ToolSpec.model_validate({
        "name": "logs", "agent": "a", "description": "d",
        "argv": ["kubectl", "logs", "{pod}", ["--tail", "{tail}"], {"if": "previous", "argv": ["--previous"]}],
        "params": {"pod": {"type": "k8s_name"}, "tail": {"type": "int:1..500", "required": False},
                   "previous": {"type": "flag", "required": False}},
    })
    assert argv_text(tool) == "kubectl logs {pod} [--tail {tail}] [--previous if previous]"


def test_grants_page_shows_every_source(client: TestClient, context: AppContext) -> None:
    folder = context.settings.effective_config_dir / "grants"
    folder.mkdir(parents=True)
    (folder / "10-site.yaml").write_text(
        "grants:\n  - name: site-staging\n    agents: ['k8s/*']\n    nodes: {labels: {env: staging}}\n"
        "    allow: ['kubectl get pods -n {k8s_name} ...']\n    constraints: {namespaces: [staging]}\n")
    with session_scope(context.db.sessions) as session:
        save_grant(session, spec=GrantSpec(name="db-one", agents=[AGENT], deny=["ss -ltnp"]), actor="pytest")
    as_user(client, "vera")
    page = client.get("/grants")
    text = unescape(page.text)
    assert page.status_code == 200
    assert "webserver/service-health (shipped" not in text  # the label is the grant's name, the source beside it
    assert "k8s/secrets-never" in text and "site-staging" in text and "env=staging" in text and "db-one" in text
    assert "staging" in text and "ss -ltnp" in text
    assert 'name="grant_yaml"' not in page.text and "/grants/disable" not in page.text  # viewers get no edit forms


def test_check_a_command_shows_decision_reason_and_rule(client: TestClient) -> None:
    as_user(client, "vera")
    allowed = check(client, "df -h")
    assert 'class="badge allow">allow<' in allowed and "Rule: <code>df -h</code>" in allowed
    denied = check(client, "cat /etc/shadow")
    assert 'class="badge deny">deny<' in denied and "cat" in denied
    assert "Cannot split the command" in check(client, "echo 'unbalanced")
    assert "Unknown agent 'nobody/here'" in check(client, "df -h", agent="nobody/here")
    assert "Unknown node 'web-404'" in check(client, "df -h", node="web-404")
    assert "Type a command" in check(client, "   ")
    page = client.get("/grants", params={"agent": AGENT, "node": "local", "command": "df -h; <script>x</script>"})
    assert "<script>x</script>" not in page.text and "&lt;script&gt;x&lt;/script&gt;" in page.text


def test_viewers_cannot_edit_grants(client: TestClient, context: AppContext) -> None:
    token = as_user(client, "vera")
    assert client.post("/grants", data={"csrf_token": token, "grant_yaml": GRANT}).status_code == 403
    assert client.post("/grants/disable", data={"csrf_token": token, "name": "x"}).status_code == 403
    with context.db.sessions() as session:
        assert stored_grants(session) == []


def test_grant_edits_need_the_csrf_token(client: TestClient, context: AppContext) -> None:
    as_user(client, "ada")
    assert client.post("/grants", data={"grant_yaml": GRANT}).status_code == 403
    assert client.post("/grants/disable", data={"name": "x"}).status_code == 403
    assert grant_audit(context) == []


def test_an_admin_saves_a_grant_it_applies_and_is_audited(client: TestClient, context: AppContext) -> None:
    token = as_user(client, "ada")
    assert 'class="badge deny">deny<' in check(client, "lastb -n 5")
    saved = client.post("/grants", data={"csrf_token": token, "grant_yaml": GRANT})
    assert saved.status_code == 303 and saved.headers["location"] == "/grants?saved=failed%20logins"
    page = unescape(client.get(saved.headers["location"]).text)
    assert "Grant failed logins saved" in page and "df with file system types on local" in page
    assert 'class="badge allow">allow<' in check(client, "lastb -n 5")
    (actor, details), = grant_audit(context)
    assert actor == "ada" and details["action"] == "created" and details["grant"] == "failed logins"
    assert "lastb -n 5" not in json.dumps(details)  # the name and a digest, never the body
    edit = unescape(client.get("/grants", params={"edit": "failed logins"}).text)
    assert "name: failed logins\n" in edit and "- lastb -n 5" in edit  # the form comes back filled in
    assert client.post("/grants", data={"csrf_token": token, "grant_yaml": GRANT}).status_code == 303
    assert [d["action"] for _, d in grant_audit(context)] == ["created", "replaced"]


def test_an_admin_disables_a_grant(client: TestClient, context: AppContext) -> None:
    token = as_user(client, "ada")
    client.post("/grants", data={"csrf_token": token, "grant_yaml": GRANT})
    done = client.post("/grants/disable", data={"csrf_token": token, "name": "failed logins"})
    assert done.status_code == 303 and done.headers["location"] == "/grants?disabled=failed%20logins"
    page = unescape(client.get(done.headers["location"]).text)
    assert "Grant failed logins disabled" in page and "stored, disabled" in page
    assert 'class="badge deny">deny<' in check(client, "lastb -n 5")
    assert [d["action"] for _, d in grant_audit(context)] == ["created", "disabled"]
    missing = client.post("/grants/disable", data={"csrf_token": token, "name": "nope"})
    assert missing.status_code == 404 and "no stored grant is named 'nope'" in unescape(missing.text)
    assert "Grant nope" not in client.get("/grants?disabled=nope").text  # no false notice


@pytest.mark.parametrize(("text", "message"), [
    ("name: [unclosed\n", "Not valid YAML"),
    ("- just\n- a list\n", "write one grant as a YAML mapping"),
    ("name: no agents\nallow: [df -h]\n", "Not a valid grant: agents: Field required"),
    ("name: extra\nagents: [a/b]\nalow: [df -h]\n", "alow: Extra inputs are not permitted"),
    ("name: exec\nagents: [k8s/*]\nallow: ['kubectl exec pod -- sh']\n", "kubectl exec"),
    ("name: ''\nagents: [a/b]\n", "a grant name is 1 to 200 characters"),
])
def test_an_invalid_grant_is_refused_and_the_text_kept(
    client: TestClient, context: AppContext, text: str, message: str
) -> None:
    token = as_user(client, "ada")
    page = client.post("/grants", data={"csrf_token": token, "grant_yaml": text})
    assert page.status_code == 400
    shown = unescape(page.text)
    assert message in shown and f">{text}</textarea>" in shown
    with context.db.sessions() as session:
        assert grant_records(session) == []
    assert grant_audit(context) == []


def test_a_stored_grant_description_is_escaped(client: TestClient, context: AppContext) -> None:
    with session_scope(context.db.sessions) as session:
        save_grant(session, actor="pytest", spec=GrantSpec(
            name="x<b>", description="<script>alert(1)</script>", agents=["a/<i>"], allow=["df -h"]))
    as_user(client, "ada")
    page = client.get("/grants").text
    assert "<script>alert(1)</script>" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "x<b>" not in page and "a/<i>" not in page and 'value="x&lt;b&gt;"' in page


def test_disable_grant_is_audited_and_saving_again_re_enables(db: Database) -> None:
    spec = GrantSpec(name="web-1 extra", agents=[AGENT], nodes={"names": ["web-1"]}, allow=["lastb -n 5"])
    with session_scope(db.sessions) as session:
        save_grant(session, spec=spec, actor="alice")
    with session_scope(db.sessions) as session:
        assert disable_grant(session, name="web-1 extra", actor="bob").enabled is False
        disable_grant(session, name="web-1 extra", actor="bob")  # already off: nothing to record
    with session_scope(db.sessions) as session:
        assert stored_grants(session) == [] and [r.name for r in grant_records(session)] == ["web-1 extra"]
        with pytest.raises(GrantError, match="no stored grant"):
            disable_grant(session, name="nope", actor="bob")
    with session_scope(db.sessions) as session:
        save_grant(session, spec=spec, actor="carol")
    with session_scope(db.sessions) as session:
        assert stored_grants(session) == [spec]
        rows = session.scalars(select(AuditRecord).where(AuditRecord.kind == RecordKind.GRANT_ADMIN.value)
                               .order_by(AuditRecord.seq)).all()
        assert [(r.actor, json.loads(r.details or "{}")["action"]) for r in rows] == [
            ("alice", "created"), ("bob", "disabled"), ("carol", "re-enabled")]
        assert verify(session).ok
