"""Path arguments are opened without links, and the program reads what was checked (issue 10 §2).

The race tests flip a file between a regular file and a link to a secret in a
child process, as fast as it can, while real programs read it through the real
executors; the secret must never appear in any output or audit record.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select
from websockets.protocol import State

from typer.testing import CliRunner

from squads.node_agent.policy import load_policy
from squads.node_agent.protocol import Refused as RefusedFrame
from squads.node_agent.protocol import Result, Run
from squads.node_agent.service import Agent, AgentOptions
from squads.audit.models import AuditRecord
from squads.settings.env import get_settings
from permissions.engine import PolicyEngine
from permissions.models import Decision, GrantSpec, NodeContext
from squads.cli import app
from squads.storage.service import Database
from tools.execution import ExecutionRequest, execute
from tools.executors.base import RunContext
from tools.executors.local import LocalExecutor
from tools.executors.safe_paths import OutputRewriter, PathRefused, open_no_follow, pin_paths

AGENT = "database/log-reader"
SECRET = "root:$6$" + uuid.uuid4().hex + ":19000:0:99999:7:::"
ORDINARY = "2026-01-01 LOG:  checkpoint complete\n"
RACE_RUNS = 300
RACE_BUDGET_S = 60.0  # a bound on the loop, not an assertion


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """``logs/`` (the granted folder) with a log file and a sub-folder, and ``shadow`` outside it."""
    logs = tmp_path / "logs"
    (logs / "sub").mkdir(parents=True)
    (logs / "app.log").write_text(ORDINARY)
    (logs / "sub" / "x.log").write_text("x\n")
    (tmp_path / "shadow").write_text(SECRET + "\n")
    return tmp_path


def engine_for(logs: Path) -> PolicyEngine:
    grant = GrantSpec(name="logs", agents=[AGENT], allow=[
        f"tail -n {{int:1..500}} {{path:{logs}}}", f"du -sh {{path:{logs}}}", f"find {{path:{logs}}} -name {{any}}",
    ])
    return PolicyEngine(grants=[grant])


def decide(engine: PolicyEngine, argv: list[str]) -> Decision:
    decision = engine.decide(agent=AGENT, node=NodeContext.of("local"), argv=argv)
    assert decision.allowed, decision.reason
    return decision


def run(decision: Decision, executor: LocalExecutor | None = None):  # type: ignore[no-untyped-def]
    return (executor or LocalExecutor()).run(decision.exec_argv(), timeout=10, max_output=100_000,
                                             context=RunContext(decision=decision, request_id=uuid.uuid4().hex))


# -- opening ------------------------------------------------------------------------------------
def test_a_link_as_the_file_is_refused_naming_its_target(tree: Path) -> None:
    (tree / "logs" / "p.log").symlink_to(tree / "shadow")
    with pytest.raises(PathRefused) as info:
        open_no_follow(str(tree / "logs" / "p.log"))
    assert f"is a symbolic link to {tree / 'shadow'}" in str(info.value)
    assert "squads never follows links in paths" in str(info.value)


def test_a_link_on_the_way_is_refused(tree: Path) -> None:
    (tree / "logs" / "etc").symlink_to(tree)
    with pytest.raises(PathRefused, match=r"logs/etc is a symbolic link to .* \(in .*/logs/etc/shadow\)"):
        open_no_follow(str(tree / "logs" / "etc" / "shadow"))


@pytest.mark.parametrize("make, message", [
    (lambda p: os.mkfifo(p), "is a named pipe, not a regular file or folder"),
    (lambda p: None, "No such file or directory"),
])
def test_special_and_missing_files_are_refused(tree: Path, make, message: str) -> None:  # type: ignore[no-untyped-def]
    path = tree / "logs" / "odd"
    make(path)
    with pytest.raises(PathRefused, match=message):
        open_no_follow(str(path))


def test_a_file_under_a_file_is_refused(tree: Path) -> None:
    with pytest.raises(PathRefused, match="app.log is not a folder"):
        open_no_follow(str(tree / "logs" / "app.log" / "x"))


def test_files_and_folders_open_and_close(tree: Path) -> None:
    before = set(os.listdir("/proc/self/fd"))
    pinned = pin_paths(["/usr/bin/tail", "-n", "1", str(tree / "logs" / "app.log")],
                       [(3, str(tree / "logs" / "app.log"))], program="tail")
    assert pinned.argv[3] == f"/dev/fd/{pinned.fds[0]}"
    assert "file opened without following links" in pinned.opened[0]
    pinned.close()
    assert set(os.listdir("/proc/self/fd")) == before


def test_a_path_not_where_the_decision_says_is_refused(tree: Path) -> None:
    with pytest.raises(PathRefused, match="is not at position 1"):
        pin_paths(["/usr/bin/du", "-sh"], [(1, str(tree))], program="du")


# -- output names -------------------------------------------------------------------------------
def test_output_names_map_back_even_split_across_chunks() -> None:
    text = b"4\t/dev/fd/3/a.log\n8\t/dev/fd/3/\n==> /dev/fd/31 <==\n/dev/fd/4:x\n/dev/fd/3"
    expected = b"4\t/var/log/a.log\n8\t/var/log\n==> /dev/fd/31 <==\n/srv/f:x\n/var/log"
    names = {3: "/var/log", 4: "/srv/f"}
    whole = OutputRewriter(names)
    assert whole.feed(text) + whole.flush() == expected
    bytewise = OutputRewriter(names)
    assert b"".join(bytewise.feed(text[i : i + 1]) for i in range(len(text))) + bytewise.flush() == expected


# -- real programs ------------------------------------------------------------------------------
def test_real_programs_read_the_opened_file_and_show_the_asked_path(tree: Path) -> None:
    engine, logs = engine_for(tree / "logs"), tree / "logs"
    tail = run(decide(engine, ["tail", "-n", "5", str(logs / "app.log")]))
    assert tail.exit_code == 0 and tail.stdout == ORDINARY
    assert str(logs / "app.log") in tail.meta["paths"]
    du = run(decide(engine, ["du", "-sh", str(logs)]))
    assert du.exit_code == 0 and du.stdout.rstrip("\n").endswith(f"\t{logs}"), du.stdout
    du_file = run(decide(engine, ["du", "-sh", str(logs / "app.log")]))
    assert du_file.exit_code == 0 and du_file.stdout.endswith(f"\t{logs / 'app.log'}\n"), du_file.stdout
    find = run(decide(engine, ["find", str(logs), "-name", "*.log"]))
    assert sorted(find.stdout.split()) == [str(logs / "app.log"), str(logs / "sub" / "x.log")]


def test_a_planted_link_on_a_local_node_is_refused_and_nothing_of_it_is_audited(tree: Path, db: Database) -> None:
    """The review's case: postgresql-16-main.log.2 -> /etc/shadow in a folder its owner can write."""
    logs = tree / "logs"
    planted = logs / "postgresql-16-main.log.2"
    planted.symlink_to(tree / "shadow")
    with pytest.raises(PathRefused) as info:
        request = ExecutionRequest(agent=AGENT, argv=["tail", "-n", "3", str(planted)], actor="mallory",
                                   squad="database", timeout=10, max_output=10_000)
        execute(request=request, sessions=db.sessions, engine=engine_for(logs), executor=LocalExecutor(),
                node=NodeContext.of("local"))
    assert f"{planted} is a symbolic link to {tree / 'shadow'}; squads never follows links in paths" in str(info.value)
    with db.sessions() as session:
        records = session.scalars(select(AuditRecord).order_by(AuditRecord.seq)).all()
        dump = json.dumps([{c.name: str(getattr(r, c.name)) for c in AuditRecord.__table__.columns} for r in records])
        kinds = [r.kind for r in records]
    assert kinds == ["decision", "execution_started", "execution_interrupted"]
    assert "squads never follows links in paths" in dump
    assert SECRET.split(":")[1] not in dump


def test_hashes_and_keys_a_granted_file_shows_are_redacted_before_the_audit_log(tree: Path, db: Database) -> None:
    logs = tree / "logs"
    hashed = "$y$j9T$" + uuid.uuid4().hex + "$" + uuid.uuid4().hex
    key_body = uuid.uuid4().hex
    (logs / "leak.log").write_text(f"root:{hashed}:19700:0:99999:7:::\n-----BEGIN OPENSSH PRIVATE KEY-----\n"
                                   f"{key_body}\n-----END OPENSSH PRIVATE KEY-----\nordinary line\n")
    request = ExecutionRequest(agent=AGENT, argv=["tail", "-n", "5", str(logs / "leak.log")], actor="alice",
                               squad="database", timeout=10, max_output=10_000)
    outcome = execute(request=request, sessions=db.sessions, engine=engine_for(logs), executor=LocalExecutor(),
                      node=NodeContext.of("local"))
    assert outcome.result is not None and "ordinary line" in outcome.result.stdout
    with db.sessions() as session:
        finished = session.get(AuditRecord, outcome.finished_seq)
        assert finished is not None
        stored = (finished.stdout or "") + (finished.details or "")
    assert "[REDACTED:password_hash]" in stored and "[REDACTED:private_key]" in stored
    assert hashed not in stored and key_body not in stored
    assert "opened without following links" in stored  # which file was read, in the record


# -- the race -----------------------------------------------------------------------------------
# Each state is held a moment (sleep) so that both are met often, whatever the machine's load.
FLIPPER = """
import os, sys, time
target, secret = sys.argv[1], sys.argv[2]
spare_file, spare_link = target + ".f", target + ".l"
with open(spare_file + ".src", "w") as f:
    f.write(sys.argv[3])
flips = 0
while True:
    os.link(spare_file + ".src", spare_file)
    os.rename(spare_file, target)
    time.sleep(0.0002)
    os.symlink(secret, spare_link)
    os.rename(spare_link, target)
    time.sleep(0.0002)
    flips += 1
    if flips == 200:
        print("flipping", flush=True)
"""


@pytest.fixture
def flipper(tree: Path) -> Iterator[Path]:
    """A child process that swaps ``logs/race.log`` between a regular file and a link to ``shadow``."""
    target = tree / "logs" / "race.log"
    target.write_text(ORDINARY)
    proc = subprocess.Popen([sys.executable, "-c", FLIPPER, str(target), str(tree / "shadow"), ORDINARY],
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        assert proc.stdout is not None and proc.stdout.readline() == b"flipping\n"  # it is up to speed
        yield target
    finally:
        proc.send_signal(signal.SIGKILL)
        _, err = proc.communicate(timeout=10)
        assert b"Traceback" not in err, err.decode()


def _race(read) -> tuple[int, int, int]:  # type: ignore[no-untyped-def]
    """(runs, reads that showed the secret, refusals); ``read`` returns the output or raises PathRefused."""
    runs = leaks = refused = 0
    deadline = time.monotonic() + RACE_BUDGET_S
    while runs < RACE_RUNS and time.monotonic() < deadline:
        runs += 1
        try:
            output = read()
        except PathRefused as exc:
            refused += 1
            output = str(exc)
        leaks += SECRET.split(":")[1] in output
    return runs, leaks, refused


def test_the_race_shows_the_secret_to_a_naive_read(tree: Path, flipper: Path) -> None:
    """The control: without the executor's opening, the same race wins (so the test below can fail)."""
    def naive() -> str:
        result = LocalExecutor().run(["/usr/bin/tail", "-n", "5", str(flipper)], timeout=10, max_output=10_000)
        return result.stdout + result.stderr
    runs, leaks, _ = _race(naive)
    assert leaks > 0, f"the flipper never won in {runs} naive reads"


def test_the_race_never_shows_the_secret_through_the_local_executor(tree: Path, flipper: Path) -> None:
    decision = decide(engine_for(tree / "logs"), ["tail", "-n", "5", str(flipper)])

    def safe() -> str:
        result = run(decision)
        return result.stdout + result.stderr
    runs, leaks, refused = _race(safe)
    assert leaks == 0
    assert runs >= 100 and refused < runs  # both states were met: reads of the file, refusals of the link


def test_the_race_never_shows_the_secret_through_the_agent(tree: Path, flipper: Path) -> None:
    logs = tree / "logs"
    policy_file = tree / "policy.yaml"
    policy_file.write_text(json.dumps({"defaults": "none", "grants": [
        {"name": "logs", "agents": [AGENT], "allow": [f"tail -n {{int:1..500}} {{path:{logs}}}"]}]}))
    agent = Agent(AgentOptions(url="ws://127.0.0.1:1/agent", node_id="n", token="sqn_x", policy=load_policy(policy_file)))
    node = agent.options.policy.context("db-1")

    class OpenSocket:
        state = State.OPEN

    async def one() -> str:
        outbox: asyncio.Queue[str | bytes] = asyncio.Queue()
        frame = Run(id=uuid.uuid4().hex, agent=AGENT, argv=["tail", "-n", "5", str(flipper)], timeout_s=10,
                    max_output=10_000)
        agent._start(frame, node, outbox, OpenSocket())  # type: ignore[arg-type]
        shown = b""
        while True:
            message = await asyncio.wait_for(outbox.get(), 30)
            if isinstance(message, bytes):
                shown += message
                continue
            shown += message.encode()
            if '"result"' in message or '"refused"' in message:
                if '"refused"' in message and "squads never follows links" in message:
                    raise PathRefused(RefusedFrame.model_validate_json(message).reason)
                Result.model_validate_json(message) if '"result"' in message else None
                return shown.decode(errors="replace")

    loop = asyncio.new_event_loop()
    try:
        runs, leaks, refused = _race(lambda: loop.run_until_complete(one()))
    finally:
        loop.close()
    assert leaks == 0
    assert runs >= 100 and refused < runs


def test_squads_run_refuses_a_link_with_the_reason(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "shadow").write_text(SECRET)
    (tmp_path / "cache").symlink_to(tmp_path / "shadow")
    monkeypatch.setenv("SQUADS_DATA_DIR", str(tmp_path / "data"))
    get_settings.cache_clear()
    try:
        result = CliRunner().invoke(app, ["run", "--agent", "webserver/service-health", "--", "du", "-sh",
                                          str(tmp_path / "cache")])
    finally:
        get_settings.cache_clear()
    text = " ".join(result.stdout.split())
    assert result.exit_code == 1, result.stdout
    assert text.startswith("not run:") and "is a symbolic link to" in text
    assert "squads never follows links in paths" in text
    assert SECRET not in result.stdout
