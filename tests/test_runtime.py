"""The conversation runtime on both backends: event stream, policy, audit trail,
resumption from the database, secret redaction and node switching."""

from __future__ import annotations

import json
from pathlib import Path

from sqlalchemy import select

from squads.audit.models import AuditRecord, RecordKind
from squads.audit.verify import verify
from tools.executors.scenario import load_scenario
from squads.nodes.models import NodeConfig
from permissions.service import build_engine
from squads.runtime import Conversation, RuntimeConfig
from squads.service import default_grants, load_squads
from squads.storage.service import Database
from tools.executors.base import output_digest
from tools.executors.fixture import Fixture, FixtureExecutor
from transcripts import service as transcripts
from transcripts.models import ConversationRecord, Event, EventKind, EventRecord
from squads.textsafety.redact import redact
from tests.paths import PUBLIC_SCENARIOS

REPO = Path(__file__).resolve().parents[1]
PUBLIC = PUBLIC_SCENARIOS
SQUADS = load_squads()
CRASHLOOP = load_scenario(PUBLIC / "k8s-crashloop-db-pending.yaml")
NODE = CRASHLOOP.first_node
ASK = "My application pod is in a CrashLoopBackOff state. Can you check the logs?"
ANSWER = "Pod: payment-service-7d9f8b-xyz, Namespace: production"


def make_config(db: Database, fixtures: dict[str, list[Fixture]]) -> tuple[RuntimeConfig, dict[str, FixtureExecutor]]:
    executors = {name: FixtureExecutor(items) for name, items in fixtures.items()}
    config = RuntimeConfig(
        sessions=db.sessions,
        engine=build_engine(defaults=default_grants(SQUADS.values()), site=()),
        nodes={name: NodeConfig(name=name, labels={"env": "production"}) for name in fixtures},
        executor_for=lambda node: executors[node.name],
    )
    return config, executors


def crashloop(db: Database) -> tuple[Conversation, RuntimeConfig, FixtureExecutor]:
    config, executors = make_config(db, {NODE: list(CRASHLOOP.nodes[NODE].fixtures)})
    return Conversation.start(config=config, squad=SQUADS["k8s"], node=NODE, actor="alice"), config, executors[NODE]


def kinds(events: list[Event]) -> list[EventKind]:
    return [e.kind for e in events]


def audit_records(db: Database) -> list[AuditRecord]:
    with db.sessions() as session:
        return list(session.scalars(select(AuditRecord).order_by(AuditRecord.seq)))


def stored_events(db: Database, conversation_id: str) -> list[Event]:
    with db.sessions() as session:
        return transcripts.load_events(session, conversation_id)


def replies(events: list[Event]) -> str:
    return "\n".join(e.text for e in events if e.kind is EventKind.ASSISTANT_MESSAGE)


# -- the event stream --------------------------------------------------------------------


def test_diagnosis_turn_streams_events_in_order(db: Database) -> None:
    conversation, _, executor = crashloop(db)
    first = list(conversation.handle(ASK))
    assert kinds(first) == [EventKind.USER_MESSAGE, EventKind.ASSISTANT_MESSAGE, EventKind.TURN_COMPLETE]
    assert executor.calls == []

    events = list(conversation.handle(ANSWER))
    assert events[0].kind is EventKind.USER_MESSAGE and events[0].text == ANSWER
    assert events[-1].kind is EventKind.TURN_COMPLETE and events[-1].data == {"turn": 2}
    assert events[-2].kind is EventKind.ASSISTANT_MESSAGE
    assert kinds(events).count(EventKind.ASSISTANT_MESSAGE) == 1, "the diagnosis is one reply, after every command"
    middle = events[1:-2]
    assert middle and len(middle) % 3 == 0, kinds(middle)
    for index in range(0, len(middle), 3):
        call, decision, output = middle[index : index + 3]
        assert (call.kind, decision.kind, output.kind) == (EventKind.TOOL_CALL, EventKind.DECISION, EventKind.TOOL_OUTPUT)
        assert decision.data["decision"] == "allow" and decision.data["argv"] == call.data["argv"]
        assert call.data["node"] == NODE and call.data["agent"].startswith("k8s/")
    argvs = [e.data["argv"] for e in middle if e.kind is EventKind.TOOL_CALL]
    assert ["kubectl", "logs", "payment-service-7d9f8b-xyz", "-n", "production", "--tail", "200"] in argvs
    assert ["kubectl", "describe", "pod", "postgres-0", "-n", "production"] in argvs
    assert len(executor.calls) == len(argvs)
    assert "postgres-0" in replies(events) and "insufficient cpu" in replies(events).lower()
    # every event is stored as it was yielded, numbered without gaps, all of this turn
    assert all(e.turn == 2 for e in events)
    stored = stored_events(db, conversation.id)
    assert [e.seq for e in stored] == list(range(1, len(first) + len(events) + 1))
    assert [(e.seq, e.kind, e.data, e.audit_seq) for e in stored[len(first):]] == [
        (e.seq, e.kind, e.data, e.audit_seq) for e in events
    ]


def test_every_tool_output_points_at_its_audited_execution(db: Database) -> None:
    conversation, _, _ = crashloop(db)
    list(conversation.handle(ASK))
    events = list(conversation.handle(ANSWER))
    records = {r.seq: r for r in audit_records(db)}
    outputs = 0
    for index, event in enumerate(events):
        if event.kind is not EventKind.TOOL_OUTPUT:
            continue
        outputs += 1
        call, decision_event = events[index - 2], events[index - 1]
        finished = records[event.audit_seq]
        assert finished.kind == RecordKind.EXECUTION_FINISHED
        assert finished.exit_code == event.data["exit_code"] and finished.stdout == event.data["stdout"]
        started = records[finished.ref_seq]
        assert started.kind == RecordKind.EXECUTION_STARTED
        decision = records[started.ref_seq]
        assert decision.kind == RecordKind.DECISION and decision.decision == "allow"
        assert decision.seq == decision_event.audit_seq
        assert json.loads(decision.argv) == call.data["argv"] == json.loads(finished.argv)
        assert {r.conversation_id for r in (decision, started, finished)} == {conversation.id}
        assert {r.squad for r in (decision, started, finished)} == {"k8s"}
        assert decision.actor == "alice" and decision.node == NODE
    assert outputs >= 5


def test_a_state_change_is_held_for_approval_and_never_executed(db: Database) -> None:
    config, executors = make_config(db, {"web-1": [Fixture(run="systemctl restart nginx", stdout="restarted")]})
    conversation = Conversation.start(config=config, squad=SQUADS["webserver"], node="web-1", actor="alice")
    events = list(conversation.handle("restart nginx"))
    assert kinds(events) == [
        EventKind.USER_MESSAGE, EventKind.TOOL_CALL, EventKind.DECISION, EventKind.APPROVAL_REQUESTED,
        EventKind.ASSISTANT_MESSAGE, EventKind.TURN_COMPLETE,
    ]
    call, decision, requested = events[1:4]
    assert call.data["argv"] == ["systemctl", "restart", "nginx"]
    assert decision.data["decision"] == "needs_approval"
    assert requested.data["argv"] == ["systemctl", "restart", "nginx"] and requested.data["status"] == "pending"
    assert requested.audit_seq == decision.audit_seq
    assert "approv" in replies(events) and requested.data["id"] in replies(events)
    assert executors["web-1"].calls == []
    records = audit_records(db)
    assert [(r.kind, r.decision) for r in records] == [(RecordKind.DECISION, "needs_approval")]
    assert not [r for r in records if r.kind in (RecordKind.EXECUTION_STARTED, RecordKind.EXECUTION_FINISHED)]
    with db.sessions() as session:
        state = transcripts.load_state(session, conversation.id)
    assert [(a["id"], a["status"], a["argv"]) for a in state["approvals"]] == [
        (requested.data["id"], "pending", ["systemctl", "restart", "nginx"])
    ]


def test_a_denied_explicit_command_is_audited_not_run_and_explained(db: Database) -> None:
    fixtures = [Fixture(run="kubectl get secrets -n staging", stdout="NAME  TYPE\ndb-creds Opaque\n")]
    config, executors = make_config(db, {"k8s-staging": fixtures})
    conversation = Conversation.start(config=config, squad=SQUADS["k8s"], node="k8s-staging", actor="alice")
    events = list(conversation.handle("now run kubectl get secrets -n staging -o yaml"))
    assert kinds(events) == [
        EventKind.USER_MESSAGE, EventKind.TOOL_CALL, EventKind.DECISION, EventKind.ASSISTANT_MESSAGE,
        EventKind.TURN_COMPLETE,
    ]
    decision = events[2]
    assert decision.data["decision"] == "deny" and decision.data["reason"]
    assert decision.data["reason"] in replies(events)
    assert executors["k8s-staging"].calls == []
    assert [(r.kind, r.decision) for r in audit_records(db)] == [(RecordKind.DECISION, "deny")]


# -- resuming from the database ----------------------------------------------------------


def test_a_new_conversation_object_continues_from_the_database(db: Database) -> None:
    conversation, config, executor = crashloop(db)
    asked = list(conversation.handle(ASK))
    assert "namespace" in replies(asked).lower() and executor.calls == []
    conversation_id = conversation.id
    del conversation

    resumed = Conversation(config=config, squad=SQUADS["k8s"], conversation_id=conversation_id, actor="alice")
    assert resumed.turns == 1 and resumed.node == NODE
    assert resumed.state.pending and resumed.state.pending["name"] == "pod-failure"
    diagnosed = list(resumed.handle(ANSWER))
    ran = [e.data["argv"] for e in diagnosed if e.kind is EventKind.TOOL_CALL]
    assert ["kubectl", "logs", "payment-service-7d9f8b-xyz", "-n", "production", "--tail", "200"] in ran
    assert all(e.turn == 2 for e in diagnosed) and diagnosed[0].seq == asked[-1].seq + 1
    assert "Say \"yes\"" in replies(diagnosed)

    again = Conversation(config=config, squad=SQUADS["k8s"], conversation_id=resumed.id, actor="alice")
    assert again.state.offer is not None
    offered = list(again.handle("yes"))
    ran = [e.data["argv"] for e in offered if e.kind is EventKind.TOOL_CALL]
    assert ran == [["kubectl", "top", "nodes"], ["kubectl", "top", "pods", "-n", "production"]]
    assert "analytics-batch" in replies(offered)
    with db.sessions() as session:
        record = transcripts.get_conversation(session, resumed.id)
        assert record.turns == 3
        assert transcripts.load_state(session, resumed.id)["offer"] is None
    assert [e.turn for e in stored_events(db, resumed.id)][-1] == 3


def test_a_namespace_given_later_reaches_a_new_conversation_object(db: Database) -> None:
    conversation, config, _ = crashloop(db)
    first = list(conversation.handle("the pod payment-service-7d9f8b-xyz keeps crashing"))
    assert not [e for e in first if e.kind is EventKind.TOOL_CALL] and "namespace" in replies(first).lower()
    resumed = Conversation(config=config, squad=SQUADS["k8s"], conversation_id=conversation.id, actor="alice")
    events = list(resumed.handle("namespace: production"))
    ran = [e.data["argv"] for e in events if e.kind is EventKind.TOOL_CALL]
    assert ran[0] == ["kubectl", "describe", "pod", "payment-service-7d9f8b-xyz", "-n", "production"]


# -- secrets -----------------------------------------------------------------------------

PEM = (
    "-----BEGIN RSA PRIVATE KEY-----\n"
    "MIIEowIBAAKCAQEA7bq0Zk3b1nQ0m2kH8x9pQ4r7sT1uV5wX2yZ6aB3cD4eF5gH\n"
    "q8x9pQ4r7sT1uV5wX2yZ6aB3cD4eF5gHZk3b1nQ0m2kH8x9pQ4r7sT1uV5wX2yZ\n"
    "-----END RSA PRIVATE KEY-----"
)
DB_URL = "postgresql://app:hunter2@db/x"
AWS_KEY = "AKIAIOSFODNN7EXAMPLE"
POD = "web-7d9f8b6c4-abcde"
DESCRIBE = f"""Name:             {POD}
Namespace:        shop
Status:           Running
Containers:
  web:
    Image:          registry.example.com/web:1.0
    State:          Waiting
      Reason:       CrashLoopBackOff
    Last State:     Terminated
      Reason:       Error
      Exit Code:    1
    Ready:          False
    Restart Count:  7
    Environment:
      DATABASE_URL:       {DB_URL}
      AWS_ACCESS_KEY_ID:  {AWS_KEY}
Events:
  Type     Reason   Age   From     Message
  ----     ------   ----  ----     -------
  Warning  BackOff  1m    kubelet  Back-off restarting failed container web in pod {POD}_shop
"""
LOGS = f"""2026-03-07 14:23:15 [ERROR] Failed to connect to database: connection refused ({DB_URL})
2026-03-07 14:23:15 [INFO] loaded TLS key
{PEM}
2026-03-07 14:23:16 [INFO] using AWS_ACCESS_KEY_ID={AWS_KEY}
2026-03-07 14:23:20 [FATAL] Maximum retry attempts exceeded, shutting down
"""
SECRET_FIXTURES = [
    Fixture(run=f"kubectl describe pod {POD} -n shop", stdout=DESCRIBE),
    Fixture(run=f"kubectl logs {POD} -n shop", stdout=LOGS, stderr=f"warning: {DB_URL}\n"),
]
SECRETS = ["hunter2", AWS_KEY, "MIIEowIBAAKCAQEA7bq0Zk3b1nQ0m2kH8x9pQ4r7sT1uV5wX2yZ6aB3cD4eF5gH", "BEGIN RSA PRIVATE KEY"]


def test_secrets_in_command_output_never_reach_storage(db: Database) -> None:
    config, executors = make_config(db, {"k8s-lab": SECRET_FIXTURES})
    conversation = Conversation.start(config=config, squad=SQUADS["k8s"], node="k8s-lab", actor="alice")
    events = list(conversation.handle(f"Pod {POD} in namespace shop keeps crashing"))
    events += list(conversation.handle(f"run kubectl logs {POD} -n shop"))
    outputs = [e for e in events if e.kind is EventKind.TOOL_OUTPUT]
    # The diagnosis may widen to the squad's sweep (other commands, unanswered here): what matters is
    # that the three commands the fixtures answer (describe, the runbook's logs, the user's logs) ran.
    assert len(outputs) == len(executors["k8s-lab"].calls) >= 3
    assert any("[REDACTED:private_key]" in e.data["stdout"] for e in outputs)
    assert any("[REDACTED:aws_access_key]" in e.data["stdout"] for e in outputs)
    assert any("[REDACTED:url_password]" in e.data["stderr"] for e in outputs)

    with db.sessions() as session:
        raw_events = [r.data for r in session.scalars(select(EventRecord).where(EventRecord.conversation_id == conversation.id))]
        raw_state = session.get(ConversationRecord, conversation.id).state
    records = audit_records(db)
    finished = [r for r in records if r.kind == RecordKind.EXECUTION_FINISHED]
    assert len(finished) == len(outputs)
    for secret in SECRETS:
        for text in [*raw_events, raw_state, *(json.dumps(e.data) for e in events)]:
            assert secret not in text, f"{secret!r} stored in {text[:200]!r}"
        for record in records:
            assert secret not in (record.stdout or "") + (record.stderr or ""), f"{secret!r} in audit record {record.seq}"
    def fixture_of(record: AuditRecord) -> Fixture | None:
        # A fixture answers its command and longer ones it prefixes (`... --tail 200`), as FORMAT.md says.
        argv = json.loads(record.argv)[1:]
        return next((f for f in SECRET_FIXTURES if argv[:len(f.run.split()) - 1] == f.run.split()[1:]), None)

    answered = [(r, f) for r in finished if (f := fixture_of(r)) is not None]
    assert len(answered) == 3, [r.argv for r in finished]
    for record, fixture in answered:
        assert record.output_sha256 == output_digest(fixture.stdout.encode(), fixture.stderr.encode()), (
            "output_sha256 must prove the raw bytes the node sent, before redaction"
        )
    assert json.loads(raw_state)["facts"]["crashing_pods"] == [POD]


def test_secrets_in_the_users_own_words_are_redacted(db: Database) -> None:
    config, _ = make_config(db, {"k8s-lab": SECRET_FIXTURES})
    conversation = Conversation.start(config=config, squad=SQUADS["k8s"], node="k8s-lab", actor="alice")
    text = f"my app cannot reach {DB_URL} with key {AWS_KEY}"
    events = list(conversation.handle(text))
    assert events[0].text == redact(text)[0]
    with db.sessions() as session:
        raw_state = session.get(ConversationRecord, conversation.id).state
        raw_events = [r.data for r in session.scalars(select(EventRecord).where(EventRecord.conversation_id == conversation.id))]
    for secret in ("hunter2", AWS_KEY):
        assert secret not in raw_state and all(secret not in d for d in raw_events)


def test_the_conversation_title_is_the_redacted_first_message(db: Database) -> None:
    config, _ = make_config(db, {"k8s-lab": SECRET_FIXTURES})
    conversation = Conversation.start(config=config, squad=SQUADS["k8s"], node="k8s-lab", actor="alice")
    text = f"my app cannot reach {DB_URL} with key {AWS_KEY}"
    list(conversation.handle(text))
    list(conversation.handle("and another thing"))
    with db.sessions() as session:
        title = transcripts.get_conversation(session, conversation.id).title
    assert title == redact(text)[0], (
        f"PRODUCT BUG: conversation title is {title!r}: the runtime looks for the first user message in the "
        "buffer at turn_complete, but that event was already flushed, so the title is never set "
        "(and save_state would store it unredacted)"
    )


# -- audit chain and nodes ---------------------------------------------------------------


def test_the_audit_chain_verifies_after_a_conversation(db: Database) -> None:
    conversation, _, _ = crashloop(db)
    for turn in CRASHLOOP.conversation:
        list(conversation.handle(turn.user))
    list(conversation.handle("delete pod postgres-0 in production"))
    records = audit_records(db)
    assert {r.kind for r in records} >= {RecordKind.DECISION, RecordKind.EXECUTION_STARTED, RecordKind.EXECUTION_FINISHED}
    with db.sessions() as session:
        report = verify(session)
    assert report.ok, report.problem
    assert report.records_checked == len(records) and report.head_seq == records[-1].seq
    assert report.head_hash == records[-1].hash


WEB_FIXTURES = {
    "web-1": [Fixture(run="nginx -t", stderr="nginx: configuration file /etc/nginx/nginx.conf test is successful\n")],
    "web-2": [
        Fixture(
            run="nginx -t", exit_code=1,
            stderr='nginx: [emerg] unknown directive "proxy_passs" in /etc/nginx/sites-enabled/shop.conf:14\n'
                   "nginx: configuration file /etc/nginx/nginx.conf test failed\n",
        )
    ],
}


def test_naming_another_configured_node_switches_to_it(db: Database) -> None:
    config, executors = make_config(db, WEB_FIXTURES)
    conversation = Conversation.start(config=config, squad=SQUADS["webserver"], node="web-1", actor="alice")
    events = list(conversation.handle("On web-2 nginx won't start since I edited the shop site config. Help?"))
    calls = [e for e in events if e.kind is EventKind.TOOL_CALL]
    assert calls and {e.data["node"] for e in calls} == {"web-2"}
    assert executors["web-1"].calls == [] and executors["web-2"].calls
    assert "proxy_passs" in replies(events)
    assert conversation.node == "web-2"
    assert {r.node for r in audit_records(db)} == {"web-2"}
    resumed = Conversation(config=config, squad=SQUADS["webserver"], conversation_id=conversation.id, actor="alice")
    assert resumed.node == "web-2", "the switched node is saved with the conversation"


def test_node_stays_when_the_message_names_no_other_known_node(db: Database) -> None:
    config, executors = make_config(db, WEB_FIXTURES)
    conversation = Conversation.start(config=config, squad=SQUADS["webserver"], node="web-1", actor="alice")
    list(conversation.handle("nginx on web-9 won't start after a config edit, is the config valid?"))
    assert conversation.node == "web-1"
    list(conversation.handle("is the nginx config on web-1 valid? run the config test"))
    assert conversation.node == "web-1", "naming the current node keeps it"
    assert executors["web-2"].calls == [] and executors["web-1"].calls


def test_a_command_argument_that_equals_a_node_name_does_not_move_the_conversation(db: Database) -> None:
    fixtures = {
        "k8s-lab": [Fixture(run="kubectl logs web-1 -n prod", stdout="GET /healthz 200\n")],
        "web-1": [Fixture(run="systemctl status nginx", stdout="active (running)\n")],
    }
    config, executors = make_config(db, fixtures)
    conversation = Conversation.start(config=config, squad=SQUADS["k8s"], node="k8s-lab", actor="alice")
    events = list(conversation.handle("run kubectl logs web-1 -n prod"))
    nodes = [e.data["node"] for e in events if e.kind is EventKind.TOOL_CALL]
    assert nodes == ["k8s-lab"] and conversation.node == "k8s-lab", (
        f"PRODUCT BUG: the pod name web-1 in the user's own command moved the conversation to node "
        f"{conversation.node!r} and ran kubectl there ({executors['web-1'].calls}); any word equal to a node "
        "name switches nodes, even inside a command"
    )
