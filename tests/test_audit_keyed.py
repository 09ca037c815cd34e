"""The keyed audit chain, signed checkpoints and tamper-evident transcripts, on SQLite and PostgreSQL.

Each attack is the one from issue 10 §4: whoever can write the database drops the
triggers, rewrites, rehashes and restores the triggers. Without the audit key
``verify`` must still say so."""

from __future__ import annotations

import json
import secrets
from pathlib import Path

import pytest
from alembic import command
from sqlalchemy import select, text
from sqlalchemy.exc import DBAPIError

from squads.audit import keys
from squads.audit import chain
from squads.audit.anchor import make_checkpoint, read_checkpoints, write_checkpoint
from squads.audit.models import GENESIS_HASH, HASHED_FIELDS, AuditRecord, RecordKind
from squads.audit.verify import VerifyReport, verify
from squads.storage.db import make_engine
from squads.storage.service import Database, alembic_config, open_database
from tools import execution_records
from tools.executors.base import ExecResult, output_digest
from transcripts import service as transcripts
from transcripts.integrity import verify_transcripts
from transcripts.models import EventKind, EventRecord

ATTACKER_KEY = bytes.fromhex("a7" * 32)


def _sql(db: Database, *statements: str) -> None:
    with db.engine.begin() as conn:
        for statement in statements:
            conn.execute(text(statement))


def _drop_guards(db: Database, table: str = "audit_records") -> None:
    if db.engine.dialect.name == "sqlite":
        _sql(db, f"DROP TRIGGER {table}_no_update", f"DROP TRIGGER {table}_no_delete")
    else:
        _sql(db, f"DROP TRIGGER {table}_no_update_delete ON {table}", f"DROP TRIGGER {table}_no_truncate ON {table}")


def _restore_guards(db: Database, table: str = "audit_records") -> None:
    """What a careful attacker does last, so that nothing looks touched."""
    function = "audit_records_append_only" if table == "audit_records" else f"{table}_append_only"
    if db.engine.dialect.name == "sqlite":
        _sql(db, *(f"CREATE TRIGGER {table}_no_{a.lower()} BEFORE {a} ON {table} BEGIN SELECT RAISE(ABORT, "
                   f"'append-only'); END" for a in ("UPDATE", "DELETE")))  # fmt: skip
    else:
        _sql(db, f"CREATE TRIGGER {table}_no_update_delete BEFORE UPDATE OR DELETE ON {table} "
                 f"FOR EACH ROW EXECUTE FUNCTION {function}()",
                 f"CREATE TRIGGER {table}_no_truncate BEFORE TRUNCATE ON {table} "
                 f"FOR EACH STATEMENT EXECUTE FUNCTION {function}()")  # fmt: skip


def _fill(db: Database, count: int, start: int = 0) -> list[AuditRecord]:
    return [
        chain.append_committed(db.sessions, kind=RecordKind.DECISION, actor="alice", agent="k8s/triage",
                               argv=["kubectl", "get", "pods", "-n", f"ns{i}"], decision="allow", reason="read-only")
        for i in range(start, start + count)
    ]  # fmt: skip


def _verify(db: Database, **kwargs: object) -> VerifyReport:
    with db.sessions() as session:
        return verify(session, **kwargs)  # type: ignore[arg-type]


def _as_attacker(db_url: str) -> Database:
    """The same database, opened by someone who can write it but has not got the audit key."""
    return open_database(url=db_url, audit_key=ATTACKER_KEY, migrate=False)


def test_every_record_carries_a_mac_that_verify_checks(db: Database) -> None:
    records = _fill(db, 3)
    key = keys.session_key(db.sessions())
    for record in records:
        assert record.mac == chain.record_mac(key, {name: getattr(record, name) for name in HASHED_FIELDS})
    report = _verify(db)
    assert (report.ok, report.records_checked, report.sealed_records) == (True, 3, 0)
    wrong = _verify(db, key=ATTACKER_KEY)
    assert (wrong.ok, wrong.first_broken_seq) == (False, 1)
    assert wrong.problem is not None and "not the key the log was written with" in wrong.problem


def test_a_tail_rewritten_and_rehashed_without_the_key_is_detected(db: Database, db_url: str) -> None:
    records = _fill(db, 6)
    anchored = records[2].hash  # the last head anchored elsewhere (`squads audit head`)
    _drop_guards(db)
    _sql(db, "DELETE FROM audit_records WHERE seq >= 4")
    attacker = _as_attacker(db_url)
    try:
        _fill(attacker, 2, start=100)  # a valid SHA-256 chain after record 3, MACed under the wrong key
    finally:
        attacker.engine.dispose()
    _restore_guards(db)
    with pytest.raises(DBAPIError, match="append-only"):
        _sql(db, "DELETE FROM audit_records WHERE seq = 1")
    for report in (_verify(db), _verify(db, expect_head=anchored)):
        assert (report.ok, report.first_broken_seq, report.head_seq) == (False, 4, 3)
        assert report.problem is not None and report.problem.startswith("record 4: MAC does not match")


def test_a_rewrite_that_leaves_the_mac_empty_is_detected(db: Database) -> None:
    _fill(db, 5)
    _drop_guards(db)
    with db.sessions() as session:
        fields = {name: getattr(session.get(AuditRecord, 5), name) for name in HASHED_FIELDS}
    fields["argv"] = json.dumps(["true"], separators=(",", ":"))
    _sql(db, f"UPDATE audit_records SET argv = '{fields['argv']}', hash = '{chain.record_hash(fields)}', mac = NULL "
             "WHERE seq = 5")  # fmt: skip
    report = _verify(db)
    assert (report.ok, report.first_broken_seq) == (False, 5)
    assert report.problem == ("record 5 has no MAC though the records before it have one: "
                              "it was written (or rewritten) without the audit key")  # fmt: skip


def test_a_whole_log_rewritten_without_macs_is_not_taken_for_an_old_one(db: Database) -> None:
    _fill(db, 3)
    _drop_guards(db)
    _sql(db, "UPDATE audit_records SET mac = NULL")
    report = _verify(db)
    assert (report.ok, report.first_broken_seq) == (False, 1)
    assert report.problem is not None and "no chain_keyed record vouches for them" in report.problem


def test_a_checkpoint_newer_than_the_head_reveals_a_truncated_log(db: Database, tmp_path: Path) -> None:
    path = tmp_path / "checkpoints.jsonl"
    key = keys.session_key(db.sessions())
    _fill(db, 3)
    write_checkpoint(db.sessions, key=key, path=path)
    _fill(db, 3, start=3)
    write_checkpoint(db.sessions, key=key, path=path)
    assert path.stat().st_mode & 0o777 == 0o600
    found = read_checkpoints(path, key=key)
    assert found.problems == [] and [a.seq for a in found.anchors] == [3, 6]
    assert _verify(db, anchors=found.anchors).anchors_checked == 2
    _drop_guards(db)
    _sql(db, "DELETE FROM audit_records WHERE seq >= 5")
    assert _verify(db).ok  # a shorter chain is valid on its own
    report = _verify(db, anchors=found.anchors)
    assert (report.ok, report.first_broken_seq, report.head_seq) == (False, 5, 4)
    assert report.problem is not None and "recorded record 6" in report.problem
    assert "records 5-6 were removed from the end" in report.problem


def test_a_checkpoint_catches_even_a_key_holder_rewriting_what_it_covers(db: Database, tmp_path: Path) -> None:
    # Whoever holds the key and the database can rewrite both; a checkpoint shipped elsewhere still disagrees.
    path = tmp_path / "checkpoints.jsonl"
    key = keys.session_key(db.sessions())
    _fill(db, 4)
    write_checkpoint(db.sessions, key=key, path=path)
    _drop_guards(db)
    _sql(db, "DELETE FROM audit_records WHERE seq >= 3")
    _fill(db, 2, start=50)  # rewritten with the real key
    assert _verify(db).ok
    report = _verify(db, anchors=read_checkpoints(path, key=key).anchors)
    assert (report.ok, report.first_broken_seq) == (False, 4)
    assert report.problem is not None and "record 4 has hash" in report.problem and "rewritten after" in report.problem


def test_an_edited_or_foreign_checkpoint_line_is_refused(tmp_path: Path) -> None:
    key = bytes.fromhex("11" * 32)
    path = tmp_path / "checkpoints.jsonl"
    good = make_checkpoint(key=key, seq=7, head_hash="ab" * 32)
    edited = {**good, "seq": 3}
    foreign = make_checkpoint(key=ATTACKER_KEY, seq=9, head_hash="cd" * 32)
    path.write_text("\n".join([json.dumps(good), json.dumps(edited), json.dumps(foreign), "junk", ""]))
    found = read_checkpoints(path, key=key)
    assert [(a.seq, a.hash) for a in found.anchors] == [(7, "ab" * 32)]
    assert len(found.problems) == 3
    assert "line 2" in found.problems[0] and "edited or forged" in found.problems[0]
    assert "line 3" in found.problems[1] and f"names key id {keys.key_id(ATTACKER_KEY)}" in found.problems[1]
    assert "line 4" in found.problems[2] and "is not a checkpoint" in found.problems[2]


def _conversation_with_output(db: Database, stdout: str = "web-0 Running\n") -> tuple[str, int]:
    result = ExecResult(exit_code=0, stdout=stdout, stderr="", duration_ms=5,
                        output_sha256=output_digest(stdout.encode(), b""))  # fmt: skip
    with db.sessions() as session, session.begin():
        started = execution_records.record_started(session, argv=["kubectl", "get", "pods"], node="n", timeout_s=5, agent="a")
        finished = execution_records.record_finished(session, started=started, result=result)
        conversation = transcripts.create_conversation(session, squad="k8s", node="n", actor="alice")
        transcripts.append_event(session, conversation_id=conversation, kind=EventKind.USER_MESSAGE, turn=1,
                                 data={"text": "pods?"})  # fmt: skip
        transcripts.append_event(
            session, conversation_id=conversation, kind=EventKind.TOOL_OUTPUT, turn=1, audit_seq=finished.seq,
            redacted=True, data={"exit_code": 0, "stdout": stdout, "stderr": "", "duration_ms": 5,
                                 "truncated": False, "timed_out": False},
        )  # fmt: skip
        transcripts.append_event(session, conversation_id=conversation, kind=EventKind.TURN_COMPLETE, turn=1,
                                 data={"turn": 1})  # fmt: skip
    return conversation, finished.seq


def _transcripts(db: Database) -> list[str]:
    with db.sessions() as session:
        report = verify_transcripts(session)
    assert report.ok == (report.problems == [])
    return report.problems


def test_transcript_events_are_append_only_and_tied_to_their_audit_record(db: Database) -> None:
    conversation, finished = _conversation_with_output(db)
    with db.sessions() as session:
        report = verify_transcripts(session)
        event = session.scalars(select(EventRecord).where(EventRecord.kind == "tool_output")).one()
        assert event.audit_hash == session.get(AuditRecord, finished).hash  # type: ignore[union-attr]
    assert (report.ok, report.events_checked, report.tool_outputs_checked) == (True, 3, 1)
    edit = "UPDATE conversation_events SET data = replace(data, 'Running', 'Deleted') WHERE kind = 'tool_output'"
    for statement in (edit, "DELETE FROM conversation_events WHERE seq = 1"):
        with pytest.raises(DBAPIError, match="append-only"):
            _sql(db, statement)
    if db.engine.dialect.name == "postgresql":
        with pytest.raises(DBAPIError, match="append-only"):
            _sql(db, "TRUNCATE conversation_events")
    assert _transcripts(db) == []

    _drop_guards(db, "conversation_events")
    _sql(db, edit)
    _restore_guards(db, "conversation_events")
    with db.sessions() as session:
        shown = transcripts.load_events(session, conversation)
    assert "Deleted" in shown[1].data["stdout"]  # the export would show the edit ...
    assert _transcripts(db) == [  # ... and verify says it is one
        f"conversation {conversation} event 2 (tool_output): MAC does not match under this audit key "
        "(altered after it was written)"
    ]


def test_a_tool_output_must_say_what_its_audit_record_says(db: Database) -> None:
    # Even an edit whose MAC was recomputed (by a key holder) is caught by the tie to the keyed chain.
    conversation, finished = _conversation_with_output(db)
    key = keys.session_key(db.sessions())
    with db.sessions() as session:
        event = session.scalars(select(EventRecord).where(EventRecord.kind == "tool_output")).one()
        data = event.data.replace("Running", "Deleted")
        stored = {name: getattr(event, name) for name in ("conversation_id", "seq", "turn", "kind", "at",
                                                           "audit_seq", "audit_hash")}  # fmt: skip
    mac = transcripts.event_mac(key, **stored, data=data)
    _drop_guards(db, "conversation_events")
    with db.engine.begin() as conn:
        conn.execute(text("UPDATE conversation_events SET data = :d, mac = :m WHERE kind = 'tool_output'"),
                     {"d": data, "m": mac})  # fmt: skip
        conn.execute(text("DELETE FROM conversation_events WHERE seq = 1"))
    assert _transcripts(db) == [
        f"conversation {conversation}: events 1-1 are missing",
        f"conversation {conversation} event 2 (tool_output): its stdout differs from audit record {finished}'s "
        "(the transcript was edited)",
    ]


def _insert_legacy(conn: object, seq: int, prev: str) -> str:
    """A record as the unkeyed chain (before migration 0009) wrote it."""
    fields = {name: None for name in HASHED_FIELDS}
    fields.update(seq=seq, ts=f"2026-11-30T00:00:0{seq}+00:00", kind="decision", actor="old", prev_hash=prev,
                  argv=json.dumps(["uptime"]), decision="allow")  # fmt: skip
    digest = chain.record_hash(fields)
    columns = ", ".join([*fields, "hash"])
    conn.execute(text(f"INSERT INTO audit_records ({columns}) VALUES ({', '.join(':' + c for c in [*fields, 'hash'])})"),  # type: ignore[attr-defined]
                 {**fields, "hash": digest})  # fmt: skip
    return digest


def test_an_existing_log_is_sealed_at_upgrade_and_stays_verifiable(db_url: str) -> None:
    engine = make_engine(db_url)
    config = alembic_config(db_url)
    with engine.begin() as conn:
        config.attributes["connection"] = conn
        command.upgrade(config, "0008")
        prev = GENESIS_HASH
        for seq in (1, 2, 3):
            prev = _insert_legacy(conn, seq, prev)
        conn.execute(text("INSERT INTO conversations (id, squad, node, title, created_at, updated_at, turns, state) "
                          "VALUES ('c-old', 'k8s', 'n', '', 'x', 'x', 1, '{}')"))  # fmt: skip
        conn.execute(text("INSERT INTO conversation_events (conversation_id, seq, turn, kind, at, audit_seq, data) "
                          "VALUES ('c-old', 1, 1, 'decision', 'x', 2, '{}')"))  # fmt: skip
    engine.dispose()
    db = open_database(url=db_url)
    try:
        with db.sessions() as session:
            seal = session.get(AuditRecord, 4)
            assert seal is not None and seal.kind == RecordKind.CHAIN_KEYED.value and seal.prev_hash == prev
            assert json.loads(seal.details or "{}")["sealed_seq"] == 3
        _fill(db, 1)
        report = _verify(db)
        assert (report.ok, report.records_checked, report.sealed_records) == (True, 5, 3)
        assert _transcripts(db) == []
        # Someone without the key removes the seal and what follows: the old records are vouched for by nothing.
        _drop_guards(db)
        _sql(db, "DELETE FROM audit_records WHERE seq >= 4")
        broken = _verify(db)
        assert (broken.ok, broken.first_broken_seq) == (False, 1)
        assert broken.problem is not None and "never sealed" in broken.problem
    finally:
        db.engine.dispose()


def test_a_random_key_per_database_keeps_each_chain_its_own(db_url: str) -> None:
    key = secrets.token_bytes(32)
    db = open_database(url=db_url, audit_key=key)
    try:
        _fill(db, 2)
        assert _verify(db).ok and _verify(db, key=key).ok
        with db.engine.connect() as conn:  # a Core connection carries the database's key too
            assert verify(conn).ok
        assert not _verify(db, key=keys.process_key()).ok
    finally:
        db.engine.dispose()
