"""The transcript and audit pages: lists, views, exports, search, verification, and escaping of what commands print."""

from __future__ import annotations

import html
import json
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import text

from squads.audit import chain, queries
from squads.audit.models import RecordKind
from squads.audit.verify import verify
from squads.accounts.api_tokens import create_api_token
from chat_server.app import create_app
from chat_server.pages_records import chat_items
from squads.settings.env import Settings
from squads.context import AppContext
from tests.runtime_helpers import fixture_config
from squads.runtime import Conversation, RuntimeConfig
from squads.service import load_squads
from squads.storage.db import session_scope
from squads.storage.service import Database
from squads.textsafety import display
from tools.executors.fixture import Fixture
from transcripts import service as transcripts
from transcripts.models import EventKind
from squads.accounts.models import Role
from squads.accounts.service import create_user

PASSWORD = "a long enough passphrase"
SQUADS = load_squads()
HOSTILE = "<script>alert(1)</script>\n<b>bold</b>\nbidi \u202e here\n"
FIXTURES = {
    "k8s-lab": [
        Fixture(run="kubectl logs web-1 -n prod", stdout=HOSTILE + "".join(f"line {i}\n" for i in range(12))),
    ],
    "web-host": [Fixture(run="systemctl restart nginx")],
}


def _config(db: Database) -> RuntimeConfig:
    return fixture_config(db, FIXTURES, SQUADS)


def _k8s_conversation(db: Database) -> str:
    conversation = Conversation.start(config=_config(db), squad=SQUADS["k8s"], node="k8s-lab", actor="alice")
    list(conversation.handle("run kubectl logs web-1 -n prod"))
    list(conversation.handle("now run kubectl get secrets -n prod"))
    return conversation.id


def _restart_conversation(db: Database) -> str:
    conversation = Conversation.start(config=_config(db), squad=SQUADS["webserver"], node="web-host", actor="bob")
    list(conversation.handle("Please restart nginx"))
    return conversation.id


@pytest.fixture
def context(tmp_path: Path) -> AppContext:
    context = AppContext(settings=Settings(data_dir=tmp_path, config_dir=tmp_path / "config"))
    with session_scope(context.db.sessions) as session:
        create_user(session, username="vera", password=PASSWORD, role=Role.VIEWER, actor="pytest")
    return context


def _sign_in(client: TestClient, username: str = "vera") -> None:
    page = client.get("/login")
    token = re.search(r'name="login_token" value="([^"]+)"', page.text)
    assert token, page.text
    response = client.post("/login", data={"username": username, "password": PASSWORD, "login_token": token.group(1)})
    assert response.status_code == 303, response.text


@pytest.fixture
def client(context: AppContext) -> Iterator[TestClient]:
    with TestClient(create_app(context), follow_redirects=False) as test_client:
        _sign_in(test_client)
        yield test_client


def _ok(client: TestClient, url: str) -> str:
    response = client.get(url)
    assert response.status_code == 200, (url, response.status_code, response.text[:500])
    return response.text


# -- transcripts ----------------------------------------------------------------------------


def test_the_list_shows_conversations_newest_first_and_filters_them(client: TestClient, context: AppContext) -> None:
    k8s, restart = _k8s_conversation(context.db), _restart_conversation(context.db)
    page = _ok(client, "/transcripts")
    assert f"/transcripts/{k8s}" in page and f"/transcripts/{restart}" in page
    assert page.index(restart) < page.index(k8s), "the most recent first"
    assert "run kubectl logs web-1 -n prod" in page and "Please restart nginx" in page
    assert "alice" in page and "k8s-lab" in page
    for query, shown, hidden in (("squad=k8s", k8s, restart), ("node=web-host", restart, k8s),
                                 ("actor=alice", k8s, restart)):
        filtered = _ok(client, f"/transcripts?{query}")
        assert shown in filtered and hidden not in filtered, query
    assert "No conversation matches" in _ok(client, "/transcripts?actor=nobody")
    assert client.get("/transcripts?page=0").status_code == 422


def test_the_list_pages_by_fifty(client: TestClient, context: AppContext) -> None:
    with session_scope(context.db.sessions) as session:
        ids = [transcripts.create_conversation(session, squad="k8s", node="n", actor="a", title=f"t{i}")
               for i in range(51)]
    first, second = _ok(client, "/transcripts"), _ok(client, "/transcripts?page=2")
    on_first = [i for i in ids if f"/transcripts/{i}" in first]
    on_second = [i for i in ids if f"/transcripts/{i}" in second]
    assert len(on_first) == 50 and len(on_second) == 1 and not set(on_first) & set(on_second)
    assert 'href="/transcripts?page=2"' in first and "Older" in first and "Older" not in second
    assert 'href="/transcripts?page=1"' in second


def test_a_conversation_reads_as_the_chat_showed_it(client: TestClient, context: AppContext) -> None:
    conversation_id = _k8s_conversation(context.db)
    with context.db.sessions() as session:
        events = transcripts.load_events(session, conversation_id)
    page = _ok(client, f"/transcripts/{conversation_id}")
    assert "run kubectl logs web-1 -n prod" in page  # the user's message
    for event in events:
        if event.kind is EventKind.ASSISTANT_MESSAGE:
            assert html.escape(display.display_lines(event.text), quote=False) in page
    # the tool card: the command, agent and node, the decision with its reason, the folded output
    assert '<pre class="command" title="argv: [&#34;kubectl&#34;, &#34;logs&#34;' in page
    assert "$ kubectl logs web-1 -n prod</pre>" in page and "$ kubectl get secrets -n prod</pre>" in page
    assert "agent <code>k8s/log-analysis</code>" in page and "on node <code>k8s-lab</code>" in page
    allow, deny = [e for e in events if e.kind is EventKind.DECISION]
    assert '<span class="verdict allow">allow</span>' in page and '<span class="verdict deny">deny</span>' in page
    assert html.escape(deny.data["reason"], quote=False) in page
    output = next(e for e in events if e.kind is EventKind.TOOL_OUTPUT)
    summary = f"<summary>Output: exit code 0, {output.data['duration_ms']} ms, 15 lines</summary>"
    assert summary in page
    details = page[page.index("<details>"):page.index("</details>")]
    assert '<pre class="output">' in details and "line 11" in details
    # every event that has an audit record links to it
    for event in (allow, deny, output):
        assert f'<a class="audit-ref" href="/audit/{event.audit_seq}">audit #{event.audit_seq}</a>' in page
    assert f'href="/audit?conversation_id={conversation_id}"' in page


def test_command_output_is_escaped_and_invisible_characters_shown(client: TestClient, context: AppContext) -> None:
    page = _ok(client, f"/transcripts/{_k8s_conversation(context.db)}")
    assert "<script>alert(1)</script>" not in page and "<b>bold</b>" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page and "&lt;b&gt;bold&lt;/b&gt;" in page
    assert "\u202e" not in page and "bidi \\u202e here" in page


def test_approvals_are_shown_on_the_card(client: TestClient, context: AppContext) -> None:
    conversation_id = _restart_conversation(context.db)
    with context.db.sessions() as session:
        requested = next(e for e in transcripts.load_events(session, conversation_id)
                         if e.kind is EventKind.APPROVAL_REQUESTED)
    page = _ok(client, f"/transcripts/{conversation_id}")
    assert f"Held for approval (request {requested.data['id']})" in page
    assert '<span class="verdict needs_approval">needs_approval</span>' in page
    assert "$ systemctl restart nginx</pre>" in page


def test_events_group_into_cards_as_the_chat_shows_them(context: AppContext) -> None:
    with context.db.sessions() as session:
        events = transcripts.load_events(session, _k8s_conversation(context.db))
    items = chat_items(events)
    tools = [i for i in items if i.kind == "tool"]
    assert [i.argv for i in tools] == [["kubectl", "logs", "web-1", "-n", "prod"],
                                       ["kubectl", "get", "secrets", "-n", "prod"]]
    ran, refused = tools
    assert ran.call and ran.decision and ran.output and ran.field("agent") == "k8s/log-analysis"
    assert refused.decision and refused.output is None and refused.decision.data["decision"] == "deny"
    assert "turn_complete" not in {i.kind for i in items}
    assert [i.kind for i in items if i.kind != "tool"][:2] == ["user_message", "assistant_message"]


def test_exports_download_markdown_and_json(client: TestClient, context: AppContext) -> None:
    conversation_id = _k8s_conversation(context.db)
    markdown = client.get(f"/transcripts/{conversation_id}/export.md")
    assert markdown.status_code == 200
    assert markdown.headers["content-type"] == "text/markdown; charset=utf-8"
    assert markdown.headers["content-disposition"] == f'attachment; filename="conversation-{conversation_id}.md"'
    assert f"- Conversation: `{conversation_id}`" in markdown.text
    assert "run kubectl logs web-1 -n prod" in markdown.text and "&lt;script&gt;" not in markdown.text
    assert "<script>alert(1)</script>" in markdown.text  # inside a fenced block, as the CLI writes it
    exported = client.get(f"/transcripts/{conversation_id}/export.json")
    assert exported.status_code == 200 and exported.headers["content-type"] == "application/json"
    assert exported.headers["content-disposition"] == f'attachment; filename="conversation-{conversation_id}.json"'
    document = exported.json()
    assert document["conversation"]["id"] == conversation_id
    assert document["events"][0]["data"]["text"] == "run kubectl logs web-1 -n prod"
    with context.db.sessions() as session:
        from transcripts.export import to_json, to_markdown

        record = transcripts.get_conversation(session, conversation_id)
        events = transcripts.load_events(session, conversation_id)
        assert markdown.text == to_markdown(record, events) and exported.text == to_json(record, events)


def test_an_unknown_conversation_is_a_clear_404(client: TestClient) -> None:
    for url in ("/transcripts/nope<b>", "/transcripts/nope/export.md", "/transcripts/nope/export.json"):
        response = client.get(url)
        assert response.status_code == 404, url
        assert "Conversation not found" in response.text and "<b>" not in response.text.split("<main>")[1]


# -- the audit log ----------------------------------------------------------------------------


def _append(db: Database, **fields: object) -> int:
    return chain.append_committed(db.sessions, **fields).seq  # type: ignore[arg-type]


def _seqs(page: str) -> list[int]:
    return [int(s) for s in re.findall(r'<td class="num"><a href="/audit/(\d+)">', page)]


def test_the_audit_log_lists_records_newest_first(client: TestClient, context: AppContext) -> None:
    _k8s_conversation(context.db)
    page = _ok(client, "/audit")
    seqs = _seqs(page)
    head_seq, head_hash = chain.head(context.db.sessions())
    assert seqs == sorted(seqs, reverse=True) and seqs[0] == head_seq
    assert f"record <a href=\"/audit/{head_seq}\">#{head_seq}</a>, hash <code class=\"hash\">{head_hash}</code>" in page
    assert "[&#34;kubectl&#34;, &#34;logs&#34;, &#34;web-1&#34;, &#34;-n&#34;, &#34;prod&#34;]" in page
    assert "sign_in" in page and "execution_finished" in page and 'href="/audit/verify"' in page


def test_the_audit_log_filters(client: TestClient, context: AppContext) -> None:
    conversation_id = _k8s_conversation(context.db)
    other = _append(context.db, kind=RecordKind.DECISION, actor="mallory", node="db-1", agent="database/x",
                    argv=["psql", "-c", "select 1"], decision="deny", reason="no")
    everything = set(_seqs(_ok(client, "/audit")))
    with context.db.sessions() as session:
        kinds = {r.seq: r.kind for r in queries.search_records(session, queries.AuditQuery(), limit=1000).records}
    signed_in = _seqs(_ok(client, "/audit?kind=sign_in"))
    assert signed_in == sorted((s for s, k in kinds.items() if k == "sign_in"), reverse=True)
    assert other not in signed_in
    assert _seqs(_ok(client, "/audit?actor=mallory")) == [other]
    assert _seqs(_ok(client, "/audit?node=db-1")) == [other]
    assert _seqs(_ok(client, "/audit?agent=database/x&decision=deny")) == [other]
    ours = _seqs(_ok(client, f"/audit?conversation_id={conversation_id}"))
    assert ours and other not in ours and set(ours) < everything
    assert _seqs(_ok(client, "/audit?q=SELECT%201")) == [other], "free text is case-insensitive"
    assert _seqs(_ok(client, "/audit?actor=nobody")) == []


def test_free_text_takes_percent_and_underscore_literally(client: TestClient, context: AppContext) -> None:
    literal = _append(context.db, kind=RecordKind.DECISION, argv=["grep", "50%_done", "/var/log/x"], reason="r")
    lookalike = _append(context.db, kind=RecordKind.DECISION, argv=["grep", "50xxdone"], reason="r")
    quoted = _append(context.db, kind=RecordKind.DECISION, argv=["echo", 'say "hi" \\o/'], reason="r")
    assert _seqs(_ok(client, "/audit?q=50%25_done")) == [literal]
    assert _seqs(_ok(client, "/audit?q=50%25")) == [literal]
    assert lookalike in _seqs(_ok(client, "/audit?q=50xx"))
    assert _seqs(_ok(client, "/audit?q=_")) == [literal]
    assert _seqs(_ok(client, "/audit?q=" + 'say "hi" \\o/'.replace("\\", "%5C"))) == [quoted]
    assert _seqs(_ok(client, "/audit?q=%25%25")) == []


def test_the_audit_log_pages_by_seq(client: TestClient, context: AppContext) -> None:
    made = [_append(context.db, kind=RecordKind.DECISION, actor="pager", argv=["true"]) for _ in range(120)]
    first = _ok(client, "/audit?actor=pager")
    assert _seqs(first) == made[::-1][:50]
    older = re.search(r'<a href="([^"]+)">Older', first)
    assert older and "Newer" not in first
    second = _ok(client, html.unescape(older.group(1)))
    assert _seqs(second) == made[::-1][50:100] and "actor=pager" in older.group(1)
    third_link = re.search(r'<a href="([^"]+)">Older', second)
    assert third_link
    third = _ok(client, html.unescape(third_link.group(1)))
    assert _seqs(third) == made[::-1][100:] and "Older" not in third
    back = re.search(r'<a href="([^"]+)">← Newer', third)
    assert back and _seqs(_ok(client, html.unescape(back.group(1)))) == made[::-1][50:100]
    back = re.search(r'<a href="([^"]+)">← Newer', second)
    assert back and html.unescape(back.group(1)) == "/audit?actor=pager"


def test_a_record_shows_every_column(client: TestClient, context: AppContext) -> None:
    seq = _append(context.db, kind=RecordKind.EXECUTION_FINISHED, actor="alice", node="n<1>", argv=["cat", "x"],
                  exit_code=3, duration_ms=42, stdout="<b>bold</b>\x1b[2J", conversation_id="c1",
                  details={"timed_out": False, "note": "\u202e"})
    started = _append(context.db, kind=RecordKind.EXECUTION_INTERRUPTED, ref_seq=seq, reason="gone")
    page = _ok(client, f"/audit/{seq}")
    with context.db.sessions() as session:
        from squads.audit.models import AuditRecord

        record = queries.record_as_dict(session.get(AuditRecord, seq))
    assert record["hash"] in page and record["prev_hash"] in page
    assert "n&lt;1&gt;" in page and "&lt;b&gt;bold&lt;/b&gt;\\u001b[2J" in page and "<b>bold" not in page
    assert '&#34;note&#34;: &#34;\\u202e&#34;,\n  &#34;timed_out&#34;: false' in page and "\u202e" not in page
    assert f'<a href="/audit/{started}">#{started}</a>' in page  # the record that refers to it
    assert 'href="/transcripts/c1"' in page and "<dd>3</dd>" in page and "42 ms" in page
    for missing in ("999999", "abc", "1.5"):
        response = client.get(f"/audit/{missing}")
        assert response.status_code == 404 and "Audit record not found" in response.text


def test_verify_says_ok_with_the_head(client: TestClient, context: AppContext) -> None:
    _k8s_conversation(context.db)
    with context.db.sessions() as session:
        report = verify(session)
    page = _ok(client, "/audit/verify")
    assert report.ok and f"<strong>OK</strong>: {report.records_checked} records verified" in page
    assert report.head_hash in page and f'href="/audit/{report.head_seq}"' in page
    anchored = _ok(client, f"/audit/verify?expect_head={report.head_hash}")
    assert "the anchored head is in the chain" in anchored
    wrong = _ok(client, "/audit/verify?expect_head=" + "f" * 64)
    assert "BROKEN" in wrong and "nowhere in the chain" in wrong and 'class="error"' in wrong


def test_verify_shows_a_broken_chain_in_red(client: TestClient, context: AppContext) -> None:
    target = _append(context.db, kind=RecordKind.DECISION, actor="alice", argv=["true"], reason="fine")
    with context.db.engine.begin() as conn:  # what someone with database access would do
        conn.execute(text("DROP TRIGGER audit_records_no_update"))
        conn.execute(text("UPDATE audit_records SET reason = 'edited' WHERE seq = :seq"), {"seq": target})
    page = _ok(client, "/audit/verify")
    assert f'<p class="error"><strong>BROKEN</strong> at record #{target}' in page
    assert "altered after it was written" in page


def test_verify_on_an_empty_log(tmp_path: Path) -> None:
    context = AppContext(settings=Settings(data_dir=tmp_path, config_dir=tmp_path / "config"))
    with session_scope(context.db.sessions) as session:  # a service token: no user, no sign-in record
        token = create_api_token(session, name="reader", actor="pytest").token
    with TestClient(create_app(context), follow_redirects=False) as api:
        bearer = {"Authorization": f"Bearer {token}"}
        page = api.get("/audit/verify", headers=bearer).text
        assert "<strong>OK</strong>: 0 records verified" in page and "the log is empty" in page
        assert "No record matches." in api.get("/audit", headers=bearer).text
        exported = api.get("/audit/export.jsonl", headers=bearer)
        assert exported.status_code == 200 and exported.text == ""


def test_the_log_exports_as_jsonl(client: TestClient, context: AppContext) -> None:
    _k8s_conversation(context.db)
    response = client.get("/audit/export.jsonl")
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/x-ndjson"
    assert response.headers["content-disposition"] == 'attachment; filename="audit.jsonl"'
    lines = [json.loads(line) for line in response.text.splitlines()]
    head_seq, head_hash = chain.head(context.db.sessions())
    assert [r["seq"] for r in lines] == list(range(1, head_seq + 1)) and lines[-1]["hash"] == head_hash
    since = client.get(f"/audit/export.jsonl?since={head_seq - 2}").text.splitlines()
    assert [json.loads(line)["seq"] for line in since] == [head_seq - 1, head_seq]


# -- the read helpers, on both backends ---------------------------------------------------------


def test_search_records_on_each_backend(db: Database) -> None:
    literal = chain.append_committed(db.sessions, kind=RecordKind.DECISION, actor="Alice",
                                     argv=["grep", "50%_done"], reason="Read-only").seq
    chain.append_committed(db.sessions, kind=RecordKind.DECISION, actor="bob", argv=["grep", "50xdone"], reason="x")
    with db.readers() as session:
        def found(**filters: str) -> list[int]:
            return [r.seq for r in queries.search_records(session, queries.AuditQuery(**filters)).records]

        assert found(text="50%_d") == [literal] and found(text="read-ONLY") == [literal]
        assert found(text="50_") == [] and found(actor="alice") == [] and found(actor="Alice") == [literal]
        page = queries.search_records(session, queries.AuditQuery(), limit=1)
        assert [r.seq for r in page.records] == [2] and page.older == 2 and page.newer is None
        older = queries.search_records(session, queries.AuditQuery(), before=page.older, limit=1)
        assert [r.seq for r in older.records] == [1] and older.older is None and older.newer == 0
    assert queries.like_escape("a%b_c/d") == "a/%b/_c//d"


def test_find_conversations_on_each_backend(db: Database) -> None:
    with session_scope(db.sessions) as session:
        titled = transcripts.create_conversation(session, squad="k8s", node="n1", actor="alice", title="Pods down")
        untitled = transcripts.create_conversation(session, squad="database", node="n2", actor="bob")
        transcripts.append_event(session, conversation_id=untitled, kind=EventKind.USER_MESSAGE, turn=1,
                                 data={"text": "\n  why is the db slow?\nmore"})
        transcripts.append_event(session, conversation_id=untitled, kind=EventKind.USER_MESSAGE, turn=2,
                                 data={"text": "second"})
    with db.readers() as session:
        every = {s.record.id: s for s in transcripts.find_conversations(session)}
        assert every[titled].title == "Pods down" and every[titled].events == 0
        assert every[untitled].title == "why is the db slow?" and every[untitled].events == 2
        assert [s.record.id for s in transcripts.find_conversations(session, squad="database")] == [untitled]
        assert [s.record.id for s in transcripts.find_conversations(session, node="n1", actor="alice")] == [titled]
        assert len(transcripts.find_conversations(session, limit=1)) == 1
        assert len(transcripts.find_conversations(session, offset=1, limit=5)) == 1
