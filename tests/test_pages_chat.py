"""The chat page: start a conversation, stream a turn, cards, held commands and the approval queue."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from fastapi import HTTPException
from fastapi.testclient import TestClient

from chat_server.pages_chat import _Turns
from chat_server.signin import templates
from squads.context import AppContext
from transcripts.models import Event, EventKind
from squads.accounts.models import Role
from tests.web import as_user, site_with_users, web_client

@pytest.fixture
def context(tmp_path: Path) -> AppContext:
    return site_with_users(tmp_path, {"vera": Role.VIEWER, "eddie": Role.ENGINEER, "april": Role.APPROVER})


@pytest.fixture
def app_client(context: AppContext) -> Iterator[TestClient]:
    with web_client(context) as client:
        yield client


sign_in = as_user  # these tests always want a fresh session and its CSRF token


def start(client: TestClient, csrf: str, message: str) -> str:
    response = client.post("/chat", data={"csrf_token": csrf, "squad": "webserver", "nodes": ["local"],
                                          "message": message})
    assert response.status_code == 303, response.text
    return response.headers["location"].rsplit("/", 1)[1]


def test_a_viewer_cannot_chat_but_can_read(app_client: TestClient) -> None:
    csrf = sign_in(app_client, "eddie")
    cid = start(app_client, csrf, "is the disk full?")
    csrf = sign_in(app_client, "vera")
    assert app_client.get("/chat").status_code == 403
    page = app_client.get(f"/chat/{cid}")
    assert page.status_code == 200 and "chatting needs the engineer role" in page.text
    refused = app_client.post(f"/chat/{cid}/messages", data={"csrf_token": csrf, "text": "and now?"})
    assert refused.status_code == 403


def test_a_turn_shows_each_command_as_a_card(app_client: TestClient) -> None:
    csrf = sign_in(app_client, "eddie")
    index = app_client.get("/chat")
    assert index.status_code == 200 and 'value="local"' in index.text
    cid = start(app_client, csrf, "is the disk full?")
    page = app_client.get(f"/chat/{cid}").text
    assert '<span class="who">eddie</span>' in page  # whose message it was, for shared conversations
    assert '<article class="card call">' in page
    assert "[&#34;df&#34;" in page or '["df"' in page  # argv shown as a JSON array, escaped
    assert 'class="decision allow"' in page and "<details><summary>output" in page and "exit <strong>0</strong>" in page
    assert "Filesystem" in page


def test_a_turn_streams_as_server_sent_events(app_client: TestClient) -> None:
    csrf = sign_in(app_client, "eddie")
    cid = start(app_client, csrf, "")
    with app_client.stream("POST", f"/chat/{cid}/messages", data={"csrf_token": csrf, "text": "is the disk full?"},
                           headers={"Accept": "text/event-stream"}) as response:
        assert response.status_code == 200 and response.headers["content-type"].startswith("text/event-stream")
        body = "".join(response.iter_text())
    kinds = re.findall(r'"kind": "([a-z_]+)"', body)
    assert kinds[0] == "user_message" and "tool_call" in kinds and "tool_output" in kinds
    assert kinds[-1] == "turn_complete" and body.rstrip().endswith("event: done\ndata: {}")


def test_a_held_command_is_shown_to_approvers_only_and_can_be_denied(app_client: TestClient) -> None:
    csrf = sign_in(app_client, "eddie")
    cid = start(app_client, csrf, "please restart nginx")
    mine = app_client.get(f"/chat/{cid}").text
    assert "Held for approval" in mine and "May approve: april" in mine
    assert "value=\"approve\"" not in mine  # the one who asked gets no buttons
    queue = app_client.get("/approvals").text
    assert "You asked for this" in queue
    approval_id = re.search(r'id="approval-(\d+)"', mine)
    assert approval_id
    csrf = sign_in(app_client, "april")
    assert 'value="approve"' in app_client.get(f"/chat/{cid}").text
    assert 'value="approve"' in app_client.get("/approvals").text
    denied = app_client.post(f"/chat/{cid}/approvals/{approval_id.group(1)}",
                             data={"csrf_token": csrf, "decision": "deny", "reason": "not during business hours"})
    assert denied.status_code == 303
    after = app_client.get(f"/chat/{cid}").text
    assert "april rejected" in after and "not during business hours" in after
    assert "Nothing is waiting." in app_client.get("/approvals").text
    again = app_client.post(f"/chat/{cid}/approvals/{approval_id.group(1)}",
                            data={"csrf_token": csrf, "decision": "approve"})
    assert again.status_code == 409 and "no pending approval" in again.text


def test_untrusted_text_is_rendered_as_text() -> None:
    macros = templates.get_template("_chat.html").module
    hostile = "<script>alert(1)</script><img src=x onerror=alert(2)>"
    now = datetime.now(UTC)
    view = {"principal": None, "approvals": {}, "approvers": [], "now": now, "record": None, "can_approve": False,
            "expired": lambda a, now: False}
    html = "".join(str(macros.event(Event(kind=kind, turn=1, at=now, data=data), view)) for kind, data in (  # type: ignore[attr-defined]
        (EventKind.USER_MESSAGE, {"text": hostile}),
        (EventKind.ASSISTANT_MESSAGE, {"text": hostile}),
        (EventKind.TOOL_CALL, {"argv": ["cat", hostile], "agent": "a/b", "node": hostile, "why": hostile}),
        (EventKind.TOOL_OUTPUT, {"exit_code": 0, "stdout": hostile, "stderr": hostile, "duration_ms": 1}),
        (EventKind.ERROR, {"text": hostile}),
    ))
    assert "<script>" not in html and "<img" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html


def test_one_turn_at_a_time_per_conversation() -> None:
    turns = _Turns()
    turns.claim("c1")
    with pytest.raises(HTTPException) as busy:
        turns.claim("c1")
    assert busy.value.status_code == 409
    turns.claim("c2")
    turns.release("c1")
    turns.claim("c1")
