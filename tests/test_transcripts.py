"""Transcript export (Markdown and JSON) and the ``squads transcript`` commands."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from markdown_it import MarkdownIt
from typer.testing import CliRunner

from squads.settings.env import get_settings
from squads.cli import app
from tests.runtime_helpers import fixture_config
from squads.runtime import Conversation, RuntimeConfig
from squads.service import load_squads
from squads.storage.service import Database, open_database
from tools.executors.fixture import Fixture
from transcripts import service as transcripts
from transcripts.export import to_json, to_markdown
from transcripts.models import Event, EventKind

SQUADS = load_squads()
runner = CliRunner()

# Output that tries to close its code block, open a heading and close the <details>.
HOSTILE_OUTPUT = (
    "line one\n"
    "```\n"
    "# Injected heading\n"
    "</details>\n"
    "````\n"
    "   ```\n"
    "last line\n"
)
FIXTURES = {
    "k8s-lab": [
        Fixture(run="kubectl logs web-1 -n prod", stdout=HOSTILE_OUTPUT, stderr="warning: ``` in stderr\n"),
        Fixture(run="kubectl get pods -n prod", stdout="NAME READY STATUS RESTARTS AGE\nweb-1 1/1 Running 0 1d\n"),
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
    conversation = Conversation.start(config=_config(db), squad=SQUADS["webserver"], node="web-host", actor="alice")
    list(conversation.handle("Please restart nginx"))
    return conversation.id


def _export(db: Database, conversation_id: str) -> tuple[str, str, list[Event]]:
    with db.sessions() as session:
        record = transcripts.get_conversation(session, conversation_id)
        events = transcripts.load_events(session, conversation_id)
        return to_markdown(record, events), to_json(record, events), events


def _fences(markdown: str) -> list[tuple[str, str]]:
    """(info, content) of every fenced code block, as a CommonMark parser sees them."""
    return [(t.info.strip(), t.content) for t in MarkdownIt("commonmark").parse(markdown) if t.type == "fence"]


def _headings(markdown: str) -> list[str]:
    tokens = MarkdownIt("commonmark").parse(markdown)
    return [tokens[i + 1].content for i, t in enumerate(tokens) if t.type == "heading_open"]


# -- Markdown ----------------------------------------------------------------------------


def test_markdown_shows_commands_decisions_and_folded_outputs(db: Database) -> None:
    conversation_id = _k8s_conversation(db)
    markdown, _, events = _export(db, conversation_id)
    assert f"- Conversation: `{conversation_id}`" in markdown
    assert "- Squad: k8s; node: k8s-lab; started by: alice" in markdown
    assert "## " in markdown and "You\n\nrun kubectl logs web-1 -n prod" in markdown
    fences = _fences(markdown)
    consoles = [content for info, content in fences if info == "console"]
    assert consoles == [
        "$ kubectl logs web-1 -n prod\n",
        "$ kubectl get secrets -n prod\n",
    ]
    on_lines = [line for line in markdown.splitlines() if line.startswith("on `")]
    agents = [e.data["agent"] for e in events if e.kind is EventKind.TOOL_CALL]
    assert agents[0] == "k8s/log-analysis"
    assert on_lines == [f"on `k8s-lab` as `{agent}`" for agent in agents]
    decisions = [e for e in events if e.kind is EventKind.DECISION]
    allow, deny = decisions
    assert f"Policy: **allow** (audit #{allow.audit_seq}): {allow.data['reason']}" in markdown
    assert f"Policy: **deny** (audit #{deny.audit_seq}): {deny.data['reason']}" in markdown
    output = next(e for e in events if e.kind is EventKind.TOOL_OUTPUT)
    assert "<details>" in markdown and "</details>" in markdown
    shown = "\n".join(p for p in (output.data["stdout"], output.data["stderr"]) if p)
    lines = len(shown.splitlines())
    assert lines >= 8
    summary = f"<summary>Output: exit code 0, {output.data['duration_ms']} ms, {lines} lines (audit #{output.audit_seq})</summary>"
    assert summary in markdown
    assert markdown.index("<details>") < markdown.index(summary) < markdown.index("line one")
    for event in events:
        if event.kind is EventKind.ASSISTANT_MESSAGE:
            assert event.text in markdown


def test_command_output_cannot_break_out_of_its_code_block(db: Database) -> None:
    markdown, _, events = _export(db, _k8s_conversation(db))
    output = next(e for e in events if e.kind is EventKind.TOOL_OUTPUT)
    expected = "\n".join([output.data["stdout"], output.data["stderr"]]).rstrip() + "\n"
    assert HOSTILE_OUTPUT in expected and "warning: ``` in stderr" in expected
    texts = [content for info, content in _fences(markdown) if info == "text"]
    assert texts == [expected], "the whole output, stdout then stderr, is exactly one fenced block"
    assert "Injected heading" not in _headings(markdown)
    fence_line = next(line for line in markdown.splitlines() if line.endswith("text"))
    assert fence_line == "`````text", "a fence longer than the longest backtick run inside"


def test_markdown_shows_approval_requests(db: Database) -> None:
    markdown, _, events = _export(db, _restart_conversation(db))
    requested = next(e for e in events if e.kind is EventKind.APPROVAL_REQUESTED)
    line = f"Held for approval, request {requested.data['id']} (audit #{requested.audit_seq}):\n```console\nsystemctl restart nginx\n```"
    assert line in markdown
    assert "Policy: **needs_approval**" in markdown
    assert "<details>" not in markdown, "nothing ran, so there is no output to fold"


def test_markdown_shows_resolved_approvals_and_errors(db: Database) -> None:
    with db.sessions() as session, session.begin():
        conversation_id = transcripts.create_conversation(session, squad="webserver", node="web-1", actor="alice")
        transcripts.append_event(session, conversation_id=conversation_id, kind=EventKind.APPROVAL_RESOLVED, turn=1,
                                 data={"id": "7", "status": "approved", "by": "bob"}, audit_seq=9)
        transcripts.append_event(session, conversation_id=conversation_id, kind=EventKind.ERROR, turn=1,
                                 data={"text": "node web-1 could not run systemctl"})
    markdown, _, _ = _export(db, conversation_id)
    assert "Approval 7 approved by bob (audit #9)" in markdown
    assert "> Error: node web-1 could not run systemctl" in markdown
    assert markdown.startswith("# Conversation\n")


# -- JSON --------------------------------------------------------------------------------


def test_json_export_round_trips_with_events_in_seq_order(db: Database) -> None:
    conversation_id = _k8s_conversation(db)
    _, exported, events = _export(db, conversation_id)
    document = json.loads(exported)
    conversation = document["conversation"]
    assert conversation["id"] == conversation_id and conversation["squad"] == "k8s"
    assert conversation["node"] == "k8s-lab" and conversation["actor"] == "alice" and conversation["turns"] == 2
    again = [Event.model_validate(e) for e in document["events"]]
    assert again == events
    seqs = [e["seq"] for e in document["events"]]
    assert seqs == list(range(1, len(events) + 1))
    assert document["events"][0]["kind"] == "user_message" and document["events"][-1]["kind"] == "turn_complete"
    output = next(e for e in document["events"] if e["kind"] == "tool_output")
    assert output["data"]["stdout"] == HOSTILE_OUTPUT and isinstance(output["audit_seq"], int)


def test_events_are_loaded_in_seq_order_whatever_the_insert_order(db: Database) -> None:
    with db.sessions() as session, session.begin():
        conversation_id = transcripts.create_conversation(session, squad="k8s", node="n", actor=None)
        for seq, kind in [(3, EventKind.TURN_COMPLETE), (1, EventKind.USER_MESSAGE), (2, EventKind.ASSISTANT_MESSAGE)]:
            transcripts.append_event(session, conversation_id=conversation_id, kind=kind, turn=1,
                                     data={"text": str(seq)}, seq=seq)
    _, exported, events = _export(db, conversation_id)
    assert [e.seq for e in events] == [1, 2, 3]
    assert [e["kind"] for e in json.loads(exported)["events"]] == ["user_message", "assistant_message", "turn_complete"]


def test_unknown_conversation_is_a_clear_error(db: Database) -> None:
    with db.sessions() as session, pytest.raises(transcripts.ConversationNotFound, match="no conversation 'nope'"):
        transcripts.load_events(session, "nope")


# -- the CLI -----------------------------------------------------------------------------


@pytest.fixture
def data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    monkeypatch.setenv("SQUADS_DATA_DIR", str(tmp_path))
    monkeypatch.delenv("SQUADS_DATABASE_URL", raising=False)
    monkeypatch.delenv("SQUADS_CONFIG_DIR", raising=False)
    monkeypatch.setenv("COLUMNS", "250")
    get_settings.cache_clear()
    yield tmp_path
    get_settings.cache_clear()


@pytest.fixture
def cli_db(data_dir: Path) -> Iterator[Database]:
    database = open_database(url=get_settings().effective_database_url)
    yield database
    database.engine.dispose()


def test_cli_lists_and_exports_conversations(cli_db: Database, data_dir: Path) -> None:
    assert (data_dir / "squads.sqlite3").exists()
    k8s_id = _k8s_conversation(cli_db)
    web_id = _restart_conversation(cli_db)

    listed = runner.invoke(app, ["transcript", "list"])
    assert listed.exit_code == 0, listed.output
    rows = {line.split("│")[1].strip(): line for line in listed.stdout.splitlines() if k8s_id in line or web_id in line}
    assert set(rows) == {k8s_id, web_id}
    assert "k8s-lab" in rows[k8s_id] and "k8s" in rows[k8s_id] and "webserver" in rows[web_id]
    assert listed.stdout.index(web_id) < listed.stdout.index(k8s_id), "most recently updated first"

    exported = runner.invoke(app, ["transcript", "export", k8s_id])
    assert exported.exit_code == 0, exported.output
    assert exported.stdout == _export(cli_db, k8s_id)[0]

    as_json = runner.invoke(app, ["transcript", "export", web_id, "--format", "json"])
    assert as_json.exit_code == 0, as_json.output
    assert json.loads(as_json.stdout) == json.loads(_export(cli_db, web_id)[1])

    target = data_dir / "out.md"
    written = runner.invoke(app, ["transcript", "export", web_id, "-o", str(target)])
    assert written.exit_code == 0 and written.stdout.strip() == f"wrote {target}"
    assert "Held for approval" in target.read_text()


def test_cli_list_limit(cli_db: Database) -> None:
    ids = [_restart_conversation(cli_db) for _ in range(3)]
    listed = runner.invoke(app, ["transcript", "list", "--limit", "2"])
    assert listed.exit_code == 0, listed.output
    assert [i for i in ids if i in listed.stdout] == ids[1:]


def test_cli_unknown_id_exits_2_with_a_clear_message(cli_db: Database) -> None:
    result = runner.invoke(app, ["transcript", "export", "does-not-exist"])
    assert result.exit_code == 2
    assert "error: no conversation 'does-not-exist'; `squads transcript list` shows the ids" in result.stderr
    assert result.stdout == ""
