"""The audit log on both backends: chain, append-only guards, tampering, crashes, export, CLI."""

from __future__ import annotations

import io
import json
import threading
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select, text
from sqlalchemy.exc import DBAPIError
from typer.testing import CliRunner

from squads.audit import chain, queries
from squads.audit.cli import app
from squads.audit.keys import canonical_json
from squads.audit.models import GENESIS_HASH, AuditRecord, RecordKind
from squads.audit.verify import VerifyReport, verify
from squads.textsafety import display
from squads.settings.env import get_settings
from permissions.models import Decision, Verdict
from squads.storage.service import Database
from tools import execution_records
from tools.executors.base import ExecResult, output_digest


def _dialect(db: Database) -> str:
    return db.engine.dialect.name


def _sql(db: Database, statement: str) -> None:
    with db.engine.begin() as conn:
        conn.execute(text(statement))


def _drop_guards(db: Database) -> None:
    """What an attacker with database access would do first."""
    if _dialect(db) == "sqlite":
        _sql(db, "DROP TRIGGER audit_records_no_update")
        _sql(db, "DROP TRIGGER audit_records_no_delete")
    else:
        _sql(db, "DROP TRIGGER audit_records_no_update_delete ON audit_records")
        _sql(db, "DROP TRIGGER audit_records_no_truncate ON audit_records")


def _fill(db: Database, count: int) -> list[AuditRecord]:
    return [
        chain.append_committed(
            db.sessions,
            kind=RecordKind.DECISION,
            actor="alice",
            squad="k8s",
            agent="k8s/triage",
            node=f"node-{i}",
            argv=["kubectl", "get", "pods", "-n", f"ns{i}"],
            decision="allow",
            rule="kubectl get",
            reason="read-only",
            stdout=f"output {i}",
        )
        for i in range(count)
    ]


def _verify(db: Database, expect_head: str | None = None) -> VerifyReport:
    with db.sessions() as session:
        return verify(session, expect_head=expect_head)


def test_a_conversation_chains_and_verifies(db: Database) -> None:
    decision = Decision(
        verdict=Verdict.ALLOW, reason="read-only listing", rule="ls", grant="base", agent="linux/triage",
        node="web-1", program_path="/usr/bin/ls", argv=("ls", "-l", "/var/log"),
    )  # fmt: skip
    held = Decision(verdict=Verdict.NEEDS_APPROVAL, reason="restarts a service", rule="systemctl restart",
                    agent="linux/triage", node="web-1", argv=("systemctl", "restart", "nginx"))  # fmt: skip
    result = ExecResult(exit_code=0, stdout="syslog\n", stderr="", duration_ms=12,
                        output_sha256=output_digest(b"syslog\n", b""))  # fmt: skip
    with db.sessions() as session, session.begin():
        dec = execution_records.record_decision(session, decision=decision, actor="alice", squad="linux",
                                      conversation_id="c1", incident_id="INC-7")  # fmt: skip
        started = execution_records.record_started(session, argv=decision.exec_argv(), node="web-1", timeout_s=30,
                                         agent="linux/triage", actor="alice", squad="linux", decision_seq=dec.seq,
                                         conversation_id="c1", incident_id="INC-7")  # fmt: skip
        finished = execution_records.record_finished(session, started=started, result=result)
        asked = execution_records.record_decision(session, decision=held, actor="alice", squad="linux", conversation_id="c1")
        approved = execution_records.record_approval(session, decision_seq=asked.seq, approver="bob", approved=True)

    assert [r.seq for r in (dec, started, finished, asked, approved)] == [1, 2, 3, 4, 5]
    assert started.prev_hash == dec.hash and dec.prev_hash == GENESIS_HASH
    assert (finished.ref_seq, finished.exit_code) == (started.seq, 0)
    assert finished.argv == '["/usr/bin/ls","-l","/var/log"]'
    assert finished.incident_id == "INC-7" and finished.output_sha256 == result.output_sha256
    assert (approved.actor, approved.decision, approved.ref_seq) == ("bob", "approved", asked.seq)
    report = _verify(db)
    assert report.ok and report.records_checked == 5 and report.problem is None
    with db.sessions() as session:
        assert (report.head_seq, report.head_hash) == chain.head(session) == (5, approved.hash)
        assert execution_records.execution_state(session, started.seq) == "finished"


def test_verify_accepts_a_core_connection(db: Database) -> None:
    records = _fill(db, 3)
    with db.engine.connect() as conn:
        report = verify(conn, expect_head=records[1].hash)
        assert (report.ok, report.head_seq, report.head_hash) == (True, 3, records[-1].hash)
        assert chain.head(conn) == (3, records[-1].hash)


def test_argv_must_be_a_list_not_a_shell_string(db: Database) -> None:
    with pytest.raises(TypeError, match="shell string"):
        chain.append_committed(db.sessions, kind="decision", argv="rm -rf /")
    with pytest.raises(ValueError):
        chain.append_committed(db.sessions, kind="no-such-kind")
    assert _verify(db).records_checked == 0


def test_empty_log_verifies(db: Database) -> None:
    with db.sessions() as session:
        assert chain.head(session) == (0, GENESIS_HASH)
    assert _verify(db) == VerifyReport(True, 0, 0, GENESIS_HASH)


@pytest.mark.parametrize(
    "statement",
    ["UPDATE audit_records SET stdout = 'edited' WHERE seq = 1", "DELETE FROM audit_records WHERE seq = 1"],
)
def test_update_and_delete_are_refused(db: Database, statement: str) -> None:
    _fill(db, 2)
    with pytest.raises(DBAPIError, match="append-only"):
        _sql(db, statement)
    assert _verify(db).ok


@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
def test_truncate_is_refused_on_postgresql(db: Database) -> None:
    # SQLite has no TRUNCATE statement; its DELETE trigger covers the same ground.
    assert _dialect(db) == "postgresql"
    _fill(db, 2)
    with pytest.raises(DBAPIError, match="append-only"):
        _sql(db, "TRUNCATE audit_records")
    assert _verify(db).records_checked == 2


@pytest.mark.parametrize(
    "assignment", ["stdout = 'nothing to see'", 'argv = \'["kubectl","get","secrets"]\'', "actor = 'mallory'"]
)
def test_altered_record_is_named(db: Database, assignment: str) -> None:
    _fill(db, 5)
    _drop_guards(db)
    _sql(db, f"UPDATE audit_records SET {assignment} WHERE seq = 3")
    report = _verify(db)
    assert not report.ok and report.first_broken_seq == 3 and report.records_checked == 2
    assert report.problem == "record 3: stored hash does not match its contents (altered after it was written)"


def test_altered_and_rehashed_record_fails_its_mac(db: Database) -> None:
    # Rehashing keeps the SHA-256 of record 3 right; without the audit key its MAC cannot follow.
    _fill(db, 5)
    _drop_guards(db)
    with db.sessions() as session:
        fields = queries.record_as_dict(session.get(AuditRecord, 3))
    fields["argv"] = json.dumps(["rm", "-rf", "/"], separators=(",", ":"))
    forged = chain.record_hash(fields)
    _sql(db, f"UPDATE audit_records SET argv = '{fields['argv']}', hash = '{forged}' WHERE seq = 3")
    report = _verify(db)
    assert (report.ok, report.first_broken_seq, report.head_seq) == (False, 3, 2)
    assert report.problem is not None and report.problem.startswith("record 3: MAC does not match under this audit key")


def test_deleted_middle_record_is_named(db: Database) -> None:
    _fill(db, 5)
    _drop_guards(db)
    _sql(db, "DELETE FROM audit_records WHERE seq = 3")
    report = _verify(db)
    assert (report.ok, report.first_broken_seq) == (False, 3)
    assert report.problem == "record 3 is missing (seq jumps from 2 to 4)"


def test_removed_tail_is_found_with_expect_head(db: Database) -> None:
    records = _fill(db, 5)
    anchor = records[-1].hash
    assert _verify(db, expect_head=anchor).ok
    assert _verify(db, expect_head=records[2].hash).ok  # the log grew after that anchor
    _drop_guards(db)
    _sql(db, "DELETE FROM audit_records WHERE seq >= 4")
    assert _verify(db).ok  # without an anchor a shorter log is indistinguishable
    report = _verify(db, expect_head=anchor)
    assert (report.ok, report.first_broken_seq, report.head_seq) == (False, 4, 3)
    assert report.problem is not None and f"expected {anchor}" in report.problem
    assert "removed from the end" in report.problem


def test_nul_in_output_round_trips_as_a_visible_sign(db: Database) -> None:
    digest = output_digest(b"a\x00b", b"")
    record = chain.append_committed(
        db.sessions, kind="execution_finished", stdout="a\x00b", stderr="\x00", output_sha256=digest, argv=["x\x00"]
    )
    with db.sessions() as session:
        stored = session.get(AuditRecord, record.seq)
        assert stored is not None
        assert (stored.stdout, stored.stderr, stored.argv) == ("a\u2400b", "\u2400", '["x\u2400"]')
        assert stored.output_sha256 == digest  # the digest still proves the raw bytes
    assert _verify(db).ok


def test_concurrent_appends_form_one_contiguous_chain(db: Database) -> None:
    threads_n, each = 6, 15
    errors: list[BaseException] = []
    barrier = threading.Barrier(threads_n)

    def work(worker: int) -> None:
        try:
            barrier.wait()
            for i in range(each):
                chain.append_committed(db.sessions, kind="decision", actor=f"w{worker}", reason=str(i))
        except BaseException as exc:  # reported by the assertion below, not lost in the thread
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(threads_n)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    report = _verify(db)
    assert report.ok and report.records_checked == report.head_seq == threads_n * each
    with db.sessions() as session:
        seqs = list(session.scalars(select(AuditRecord.seq).order_by(AuditRecord.seq)))
    assert seqs == list(range(1, threads_n * each + 1))


def test_crash_between_start_and_finish_is_swept_as_interrupted(db: Database) -> None:
    with db.sessions() as session, session.begin():
        lost = execution_records.record_started(session, argv=["sleep", "9"], node="web-1", timeout_s=10, agent="a")
        done = execution_records.record_started(session, argv=["true"], node="web-1", timeout_s=10, agent="a")
        execution_records.record_finished(
            session, started=done, result=ExecResult(exit_code=0, stdout="", stderr="", duration_ms=1)
        )
    started_at = datetime.fromisoformat(lost.ts)
    with db.sessions() as session, session.begin():
        assert [r.seq for r in execution_records.open_executions(session)] == [lost.seq]
        assert execution_records.execution_state(session, lost.seq) == "running"
        assert execution_records.sweep_interrupted(session, now=started_at + timedelta(seconds=60), grace_s=60) == []
        swept = execution_records.sweep_interrupted(session, now=started_at + timedelta(seconds=71), grace_s=60)
    assert [(r.kind, r.ref_seq, r.node) for r in swept] == [("execution_interrupted", lost.seq, "web-1")]
    assert swept[0].reason and "crashed" in swept[0].reason
    with db.sessions() as session, session.begin():
        assert execution_records.execution_state(session, lost.seq) == "interrupted"
        assert execution_records.execution_state(session, done.seq) == "finished"
        assert execution_records.open_executions(session) == []
        assert execution_records.sweep_interrupted(session, now=started_at + timedelta(days=1)) == []
        with pytest.raises(LookupError):
            execution_records.execution_state(session, swept[0].seq)
    assert _verify(db).ok


def test_export_jsonl_lines_equal_the_records(db: Database) -> None:
    _fill(db, 3)
    chain.append_committed(db.sessions, kind="decision", argv=["echo", "\u202e\u00e9"], details={"k": [1, None]})
    out = io.StringIO()
    with db.sessions() as session:
        assert queries.export_jsonl(session, out) == 4
        records = list(session.scalars(select(AuditRecord).order_by(AuditRecord.seq)))
        later = io.StringIO()
        assert queries.export_jsonl(session, later, since_seq=2) == 2
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    assert lines == [queries.record_as_dict(r) for r in records]
    assert out.getvalue().isascii()
    assert lines[3]["argv"] == ["echo", "\u202e\u00e9"] and lines[3]["details"] == {"k": [1, None]}
    assert lines[0]["argv"] == ["kubectl", "get", "pods", "-n", "ns0"]
    # The export carries everything needed to re-check the chain elsewhere.
    for line in lines:
        line["argv"] = canonical_json(line["argv"]).decode() if line["argv"] is not None else None
        line["details"] = canonical_json(line["details"]).decode() if line["details"] is not None else None
        assert chain.record_hash(line) == line["hash"]
    assert [json.loads(x)["seq"] for x in later.getvalue().splitlines()] == [3, 4]


def test_display_argv_escapes_what_could_spoof_a_terminal() -> None:
    argv = ["echo", "a\nb", "\x1b[31mred", "evil\u202etxt.exe", "zero\u200bwidth", "tag\U000e0041", 'q"\\', "héllo"]
    shown = display.display_argv(argv)
    for raw in ("\n", "\x1b", "\u202e", "\u200b", "\U000e0041"):
        assert raw not in shown
    for escaped in ("\\u000a", "\\u001b", "\\u202e", "\\u200b", "\\udb40\\udc41"):
        assert escaped in shown
    assert "héllo" in shown and shown.isprintable()
    assert json.loads(shown) == argv


@pytest.fixture
def cli_db(db: Database, db_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[Database]:
    monkeypatch.setenv("SQUADS_DATABASE_URL", db_url)
    get_settings.cache_clear()
    yield db
    get_settings.cache_clear()


def test_cli_head_verify_export(cli_db: Database, tmp_path: Path) -> None:
    records = _fill(cli_db, 3)
    runner = CliRunner()

    result = runner.invoke(app, ["head"])
    assert result.exit_code == 0 and result.stdout.strip() == f"3 {records[-1].hash}"
    assert json.loads(runner.invoke(app, ["head", "--json"]).stdout) == {"seq": 3, "hash": records[-1].hash}

    result = runner.invoke(app, ["verify", "--expect-head", records[-1].hash])
    assert result.exit_code == 0 and "OK: 3 records" in result.stdout

    result = runner.invoke(app, ["export", "--format", "jsonl"])
    assert result.exit_code == 0
    assert [json.loads(line)["hash"] for line in result.stdout.splitlines()] == [r.hash for r in records]
    target = tmp_path / "audit.jsonl"
    assert runner.invoke(app, ["export", "--output", str(target)]).exit_code == 0
    assert len(target.read_text(encoding="utf-8").splitlines()) == 3

    result = runner.invoke(app, ["export", "--format", "csv"])
    assert result.exit_code == 2 and "'csv' is not supported" in result.output

    _drop_guards(cli_db)
    _sql(cli_db, "UPDATE audit_records SET reason = 'harmless' WHERE seq = 2")
    result = runner.invoke(app, ["verify"])
    assert result.exit_code == 1
    assert "BROKEN at record 2: record 2: stored hash does not match its contents" in result.stdout
    report = json.loads(runner.invoke(app, ["verify", "--json"]).stdout)
    assert (report["ok"], report["first_broken_seq"], report["records_checked"]) == (False, 2, 1)


def test_many_appends_in_one_transaction_and_a_rolled_back_savepoint_keep_the_chain(db: Database) -> None:
    # The head is remembered within a transaction; a savepoint's records may vanish, so it must not be.
    with db.sessions() as session, session.begin():
        for i in range(50):
            chain.append(session, kind=RecordKind.NODE_ADMIN, actor="t", details={"i": i})
        nested = session.begin_nested()
        chain.append(session, kind=RecordKind.NODE_ADMIN, actor="t", details={"i": "dropped"})
        nested.rollback()
        chain.append(session, kind=RecordKind.NODE_ADMIN, actor="t", details={"i": "after"})
    with db.sessions() as session:
        report = verify(session)
        assert report.ok, report.problem
        assert report.records_checked == 51
        last = session.scalars(select(AuditRecord).order_by(AuditRecord.seq.desc())).first()
        assert last is not None and json.loads(last.details) == {"i": "after"}
