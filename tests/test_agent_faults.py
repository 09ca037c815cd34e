"""Faults, with real processes on loopback: ``squads serve``, ``squads agent``s and a fake agent.

Most tests share one control plane (module scope; each test uses node names of
its own and looks only at their records); the restart scenario gets its own.
Every agent a test starts is stopped at its end, every server at the module's.
Nothing waits for a fixed time: the tests poll for the state they need (a node
online, the agent's child process, a log line) with generous deadlines that
only a broken build reaches. The one timed assertion is the issue's: the
caller of a command hears of its agent's death within 1 s.
"""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import connect

from tests.agent_harness import AgentPool, AgentProcess, BackgroundRun, ControlPlane, Node, executions, wait_for
from tools.executors.base import TRUNCATION_MARKER

EXIT_CONFIG = 78
HELLO = json.dumps({"type": "hello", "protocol": 1, "version": "x", "facts": {}})


@pytest.fixture(scope="module")
def plane(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlPlane]:
    """A running ``squads serve`` with the site's programs and grants (true, sleep, yes)."""
    control_plane = ControlPlane(tmp_path_factory.mktemp("plane"))
    try:
        control_plane.start()
        yield control_plane
    finally:
        control_plane.stop()


@pytest.fixture
def agents() -> Iterator[AgentPool]:
    """Start ``squads agent`` processes; all are stopped (and orphans they left killed) after the test."""
    pool = AgentPool()
    try:
        yield pool
    finally:
        pool.stop_all()


def request_ids(plane: ControlPlane, node: str) -> list[str]:
    """The request ids of every execution the control plane started on ``node``, oldest first."""
    return [e["details"]["request_id"] for e in executions(plane.audit(node=node))]


def closers_of(plane: ControlPlane, node: str, request_id: str) -> list[dict[str, Any]]:
    """The records that closed the execution sent as ``request_id``."""
    (execution,) = [e for e in executions(plane.audit(node=node)) if e["details"]["request_id"] == request_id]
    return execution["closers"]


def logged(plane: ControlPlane, line: str) -> Callable[[], bool]:
    """A probe: has ``squads serve`` written ``line`` yet?"""
    return lambda: line in plane.log_text()


def assert_audit_intact(plane: ControlPlane) -> None:
    report = plane.verify_audit()
    assert report.ok, report


def assert_serving(plane: ControlPlane, node: str, argv: tuple[str, ...] = ("true",)) -> None:
    """Health answers and the real agent of ``node`` still runs commands."""
    assert httpx.get(f"{plane.url}/healthz", timeout=5).json() == {"ok": True}
    result = plane.run_one(argv, node)
    assert result["error"] is None and result["ran"] and result["exit_code"] == 0, result


# -- 1. agent killed mid-command ---------------------------------------------------------------
def test_an_agent_killed_mid_command_fails_the_caller_within_a_second_and_is_audited(
    plane: ControlPlane, agents: AgentPool
) -> None:
    node = plane.create_node("kill-1", labels={"role": "web"})
    agent = agents.start(plane, node)
    plane.wait_online([node.name])

    call = BackgroundRun(plane, ["sleep", "5"], node.name)
    wait_for("the agent to start sleep 5", lambda: agent.children("/usr/bin/sleep"))
    killed_at = time.monotonic()
    agent.proc.send_signal(signal.SIGKILL)
    result = call.wait()
    assert call.answered_at is not None
    elapsed = call.answered_at - killed_at

    assert result["error"] == "node kill-1 disconnected while running `sleep 5`", result
    assert result["exit_code"] is None and result["stdout"] == ""
    assert elapsed < 1.0, f"the caller heard of the kill {elapsed:.2f}s after it"
    assert agent.wait_exit(10) == -signal.SIGKILL

    (execution,) = executions(plane.audit(node=node.name))
    assert execution["argv"] == ["sleep", "5"]
    assert [r["kind"] for r in execution["closers"]] == ["execution_interrupted"], execution["closers"]
    assert "disconnected" in execution["closers"][0]["reason"]
    assert plane.nodes()[node.name]["online"] is False
    assert_audit_intact(plane)


# -- 2. node offline ---------------------------------------------------------------------------
def test_a_node_that_never_connected_is_offline_and_nothing_is_queued_for_it(
    plane: ControlPlane, agents: AgentPool
) -> None:
    node = plane.create_node("offline-1", labels={"role": "web"}, via_cli=True)  # `squads node create --json`
    assert plane.nodes()[node.name]["online"] is False

    result = plane.run_one(["sleep", "1"], node.name)
    assert result["ran"] is False and result["exit_code"] is None, result
    assert result["error"] == (
        "node offline-1 is offline (its agent is not connected to this control plane); nothing was run or queued"
    ), result
    (missed_id,) = request_ids(plane, node.name)
    closers = closers_of(plane, node.name, missed_id)
    assert [(r["kind"], r["details"]) for r in closers] == [("execution_interrupted", {"ran": False})]
    assert "is offline" in closers[0]["reason"]

    # The agent connects afterwards: the missed command is not delivered; a new one is, and only it runs.
    agent = agents.start(plane, node)
    plane.wait_online([node.name])
    assert_serving(plane, node.name)
    _, served_id = request_ids(plane, node.name)
    assert agent.ran() == {served_id: 1}, agent.log_text()
    assert missed_id not in agent.log_text()
    assert [r["kind"] for r in closers_of(plane, node.name, missed_id)] == ["execution_interrupted"]
    assert_audit_intact(plane)


def test_a_stopped_agent_leaves_its_node_offline_and_nothing_is_queued_for_it(
    plane: ControlPlane, agents: AgentPool
) -> None:
    node = plane.create_node("stopped-1")
    first = agents.start(plane, node)
    plane.wait_online([node.name])
    assert_serving(plane, node.name)
    first.proc.send_signal(signal.SIGTERM)
    assert first.wait_exit(15) == 0, first.log_text()
    plane.wait_online([node.name], online=False)

    result = plane.run_one(["true"], node.name)
    assert result["ran"] is False, result
    assert result["error"].startswith("node stopped-1 is offline (its agent disconnected at "), result
    assert result["error"].endswith("); nothing was run or queued"), result
    before_id, missed_id = request_ids(plane, node.name)
    assert [(r["kind"], r["details"]) for r in closers_of(plane, node.name, missed_id)] == [
        ("execution_interrupted", {"ran": False})
    ]

    second = agents.start(plane, node)
    plane.wait_online([node.name])
    assert_serving(plane, node.name)
    *_, served_id = request_ids(plane, node.name)
    assert first.ran() == {before_id: 1}
    assert second.ran() == {served_id: 1}, second.log_text()
    assert missed_id not in first.log_text() + second.log_text()
    assert_audit_intact(plane)


# -- 3. control plane restarted ----------------------------------------------------------------
@dataclass
class Restart:
    """What happened around one restart of the control plane, for the tests below to examine."""

    plane: ControlPlane
    agents: dict[str, AgentProcess]
    before: list[dict[str, Any]]
    lost: dict[str, Any]
    summary: dict[str, Any]
    after: list[dict[str, Any]]
    sleep_id: str


@pytest.fixture(scope="module")
def restart(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Restart]:
    """Three agents; a command in flight on web-2 while ``squads serve`` is stopped and started again.

    The in-flight command (``sleep 30``) is ended by killing its process only once
    web-2 has reconnected, so its result is always one the new link never asked for."""
    plane = ControlPlane(tmp_path_factory.mktemp("restart"))
    pool = AgentPool()
    try:
        plane.start(api_token_via_cli=True)  # `squads token create`
        names = ["web-1", "web-2", "web-3"]
        agents = {n: pool.start(plane, plane.create_node(n, labels={"role": "web"})) for n in names}
        plane.wait_online(names)
        before = plane.run(["true"], names)

        in_flight = BackgroundRun(plane, ["sleep", "30"], "web-2")
        (sleep_pid,) = wait_for("web-2 to start sleep 30", lambda: agents["web-2"].children("/usr/bin/sleep"))
        plane.restart()
        lost = in_flight.wait()
        plane.wait_online(names)
        summary = plane.api("GET", "/api/nodes/summary").json()

        (sleep_run,) = [e for e in executions(plane.audit(node="web-2")) if e["argv"] == ["sleep", "30"]]
        sleep_id = sleep_run["details"]["request_id"]
        os.kill(sleep_pid, signal.SIGKILL)  # the agent's own child, started by this fixture's request
        wait_for("web-2 to log the end of sleep 30", lambda: agents["web-2"].ran()[sleep_id])
        after = plane.run(["true"], names)
        yield Restart(plane=plane, agents=agents, before=before, lost=lost, summary=summary, after=after,
                      sleep_id=sleep_id)
    finally:
        pool.stop_all()
        plane.stop()


def test_after_a_control_plane_restart_every_agent_reconnects_and_nothing_runs_twice(restart: Restart) -> None:
    plane, names = restart.plane, sorted(restart.agents)
    assert [(r["node"], r["exit_code"], r["error"]) for r in restart.before] == [(n, 0, None) for n in names]
    assert restart.lost["error"] == "node web-2 disconnected while running `sleep 30`", restart.lost
    assert [r["kind"] for r in closers_of(plane, "web-2", restart.sleep_id)] == ["execution_interrupted"]

    assert restart.summary == {"registered": 3, "revoked": 0, "online": 3}
    assert [(r["node"], r["exit_code"], r["error"]) for r in restart.after] == [(n, 0, None) for n in names]
    for name, agent in restart.agents.items():
        # Every request the control plane sent ran exactly once: the one in flight was not sent again.
        assert agent.ran() == {rid: 1 for rid in request_ids(plane, name)}, (name, agent.log_text())
        assert agent.log_text().count("INFO connected as node") == 2, agent.log_text()
        assert agent.proc.poll() is None
    assert restart.agents["web-2"].ran()[restart.sleep_id] == 1

    assert_audit_intact(plane)
    verified = plane.cli("audit", "verify")
    assert verified.returncode == 0 and verified.stdout.startswith("OK: "), verified.stdout + verified.stderr


def test_a_result_that_ends_after_the_agent_reconnected_is_logged_as_undelivered(restart: Restart) -> None:
    # The Result belongs to the session the request came on; once the agent has reconnected nobody
    # reads that session any more, so the result is lost (the caller was told): the log must say so.
    log = restart.agents["web-2"].log_text()
    assert f"request {restart.sleep_id} ended after its connection dropped; its result (exit" in log, log
    assert "was not delivered" in log, log


# -- 4. slow and flooding commands ---------------------------------------------------------------
@pytest.fixture(scope="module")
def capped(plane: ControlPlane) -> Iterator[tuple[ControlPlane, AgentProcess, str]]:
    """An agent that lets nothing run over 1 s or keep over 10 000 bytes per stream."""
    pool = AgentPool()
    try:
        node = plane.create_node("capped-1")
        agent = pool.start(plane, node, args=["--max-timeout", "1", "--max-output", "10000"])
        plane.wait_online([node.name])
        yield plane, agent, node.name
    finally:
        pool.stop_all()


def test_the_agents_max_timeout_cuts_a_slow_command_the_control_plane_allowed_longer(
    capped: tuple[ControlPlane, AgentProcess, str],
) -> None:
    plane, agent, node = capped
    result = plane.run_one(["sleep", "5"], node, timeout_s=30)
    assert result["error"] is None and result["ran"], result
    assert result["timed_out"] is True, result
    assert 1000 <= result["duration_ms"] < 5000, result  # cut at the agent's 1 s, not the full 5 s
    request_id = request_ids(plane, node)[-1]
    (finished,) = closers_of(plane, node, request_id)
    assert finished["kind"] == "execution_finished" and finished["details"]["timed_out"] is True
    assert agent.ran()[request_id] == 1
    assert_serving(plane, node)
    assert_audit_intact(plane)


def test_the_agents_max_output_cuts_a_flooding_command_and_the_agent_stays_healthy(
    capped: tuple[ControlPlane, AgentProcess, str],
) -> None:
    plane, agent, node = capped
    result = plane.run_one(["yes"], node, timeout_s=30)
    assert result["error"] is None and result["ran"] and result["truncated"] is True, result
    assert not result["timed_out"], "a flood is stopped at the cap, not at the timeout"
    body, marker, _ = result["stdout"].partition("\n[… output truncated at ")
    assert marker, result["stdout"][-200:]
    assert body == "y\n" * 5000, "the agent keeps exactly its 10 000-byte cap"
    (finished,) = closers_of(plane, node, request_ids(plane, node)[-1])
    assert finished["kind"] == "execution_finished" and finished["details"]["stdout_truncated"] is True
    assert_serving(plane, node)
    assert agent.proc.poll() is None
    assert_audit_intact(plane)


def test_the_truncation_marker_names_the_cap_that_cut_the_output(
    capped: tuple[ControlPlane, AgentProcess, str],
) -> None:
    plane, _, node = capped
    stdout = plane.run_one(["yes"], node, timeout_s=30)["stdout"]
    marker = TRUNCATION_MARKER.format(limit=10000)
    assert len(stdout) <= 10000 + len(marker), f"{len(stdout)} characters, ending {stdout[-45:]!r}"
    assert stdout.endswith(marker), f"the marker should name the agent's 10000-byte cap: {stdout[-45:]!r}"


# -- 5. bad frames, oversized frames, wrong credentials ----------------------------------------
def fake_agent_close(plane: ControlPlane, node: Node, frame: str | bytes, *, hello: bool = True) -> tuple[int, str]:
    """Connect as ``node`` with the websockets library, say hello, send ``frame``; the close code and reason."""
    headers = {"Authorization": f"Bearer {node.token}", "X-Squads-Node": node.node_id}
    with connect(plane.ws_url, additional_headers=headers, max_size=None, open_timeout=10, close_timeout=5) as ws:
        if hello:
            ws.send(HELLO)
            assert json.loads(ws.recv(timeout=10))["type"] == "welcome"
        ws.send(frame)
        with pytest.raises(ConnectionClosed) as closed:
            ws.recv(timeout=10)
    rcvd = closed.value.rcvd
    assert rcvd is not None, f"no close frame from the control plane after {frame[:40]!r}"
    return rcvd.code, rcvd.reason


def test_bad_and_oversized_frames_close_the_connection_and_the_server_keeps_serving(
    plane: ControlPlane, agents: AgentPool
) -> None:
    real = plane.create_node("frames-real")
    agents.start(plane, real)
    fake = plane.create_node("frames-fake")
    plane.wait_online([real.name])

    padded = json.dumps({"type": "heartbeat", "running": 0, "pad": "x" * (64 * 1024)})
    cases: list[tuple[str, str | bytes, bool, int, str]] = [
        ("non-JSON text", "this is not json", True, 4400, "malformed message"),
        ("non-JSON text before hello", "this is not json", False, 4400, "malformed message"),
        ("an unknown type", json.dumps({"type": "launch-missiles"}), True, 4400, "unknown message type"),
        ("a second hello", HELLO, True, 4400, "unexpected hello message"),
        ("a text frame over 64 KiB", padded, True, 4400, "over the 65536 limit"),
        ("a frame over 1 MiB", "x" * (1024 * 1024 + 1), True, 1009, ""),
        ("a binary frame with garbage", b"\xff" * 100, True, 4400, "output frame with an unknown stream"),
        ("a binary frame too short", b"o123", True, 4400, "output frame too short"),
    ]
    for what, frame, hello, code, why in cases:
        closed = fake_agent_close(plane, fake, frame, hello=hello)
        assert closed[0] == code and why in closed[1], (what, closed)
        assert httpx.get(f"{plane.url}/healthz", timeout=5).status_code == 200, what
        assert plane.nodes()[fake.name]["online"] is False, what

    # The server says why it closed each one (the 1009 line may follow the close frame: poll for it).
    for line in ("node frames-fake (127.0.0.1:", "unknown message type; closing the connection",
                 "over the 65536 limit; closing the connection", "oversized frame; the connection was closed",
                 "output frame too short; closing the connection"):
        wait_for(f"the server to log {line!r}", logged(plane, line), timeout=10)
    assert_serving(plane, real.name)
    assert plane.nodes()[real.name]["online"] is True
    assert_audit_intact(plane)


def test_wrong_credentials_are_refused_at_the_upgrade_with_401_or_403_and_logged(plane: ControlPlane) -> None:
    good = plane.create_node("creds-1")
    revoked = plane.create_node("creds-2")
    assert plane.api("POST", f"/api/nodes/{revoked.name}/revoke").json()["revoked"] is True
    wrong_before = plane.log_text().count("refused: node id or token is wrong")
    cases = [
        ("a wrong token", {"Authorization": "Bearer sqn_" + "A" * 43, "X-Squads-Node": good.node_id}, 401),
        ("another node's token", {"Authorization": f"Bearer {revoked.token}", "X-Squads-Node": good.node_id}, 401),
        ("an unknown node id", {"Authorization": f"Bearer {good.token}", "X-Squads-Node": "0" * 32}, 401),
        ("no token", {"X-Squads-Node": good.node_id}, 401),
        ("a revoked node", {"Authorization": f"Bearer {revoked.token}", "X-Squads-Node": revoked.node_id}, 403),
    ]
    for what, headers, status in cases:
        with pytest.raises(InvalidStatus) as refused, connect(plane.ws_url, additional_headers=headers,
                                                              open_timeout=10):
            pass
        assert refused.value.response.status_code == status, what

    log = plane.log_text()
    assert log.count("refused: node id or token is wrong") - wrong_before == 3, log
    assert "refused: node creds-2 is revoked" in log
    assert "refused: send the node id in X-Squads-Node" in log
    assert httpx.get(f"{plane.url}/healthz", timeout=5).status_code == 200


def test_a_real_agent_with_a_wrong_token_or_node_exits_78_at_once_saying_why(
    plane: ControlPlane, agents: AgentPool, tmp_path: Path
) -> None:
    good = plane.create_node("wrong-1")
    revoked = plane.create_node("wrong-2")
    plane.api("POST", f"/api/nodes/{revoked.name}/revoke")
    wrong = tmp_path / "wrong.token"
    wrong.write_text("sqn_" + "A" * 43 + "\n")
    wrong.chmod(0o600)
    started = [
        (agents.start(plane, good, token_file=wrong), "(401): node id or token is wrong"),
        (agents.start(plane, good, node_id="f" * 32), "(401): node id or token is wrong"),
        (agents.start(plane, revoked), "(403): node wrong-2 is revoked"),
    ]
    for agent, why in started:
        assert agent.wait_exit(20) == EXIT_CONFIG, agent.log_text()  # it does not retry for ever
        log = agent.log_text()
        assert f"error: stopping: the control plane refused this agent {why}" in log, log
        assert "reconnecting" not in log, log
    assert plane.nodes()[good.name]["online"] is False


# -- 6. revocation while connected -------------------------------------------------------------
def test_revoking_a_connected_node_closes_its_agent_which_exits_78(plane: ControlPlane, agents: AgentPool) -> None:
    node = plane.create_node("revoke-1")
    agent = agents.start(plane, node)
    plane.wait_online([node.name])
    assert_serving(plane, node.name)
    summary = plane.api("GET", "/api/nodes/summary").json()

    response = plane.api("POST", f"/api/nodes/{node.name}/revoke")
    assert response.status_code == 200 and response.json()["revoked"] is True, response.text
    assert agent.wait_exit(20) == EXIT_CONFIG, agent.log_text()
    log = agent.log_text()
    assert "error: stopping: the control plane closed the connection for good: this node was revoked" in log, log
    assert "reconnecting" not in log
    listed = plane.nodes()[node.name]
    assert listed["online"] is False and listed["revoked"] is True
    assert plane.api("GET", "/api/nodes/summary").json() == {
        "registered": summary["registered"], "revoked": summary["revoked"] + 1, "online": summary["online"] - 1
    }
    refused = plane.api("POST", "/api/run", json={"agent": "webserver/service-health", "argv": ["true"],
                                                  "nodes": [node.name]})
    assert refused.status_code == 404, refused.text  # a revoked node is no target any more
    assert httpx.get(f"{plane.url}/healthz", timeout=5).status_code == 200
    assert_audit_intact(plane)


# -- 7. both decisions audited -----------------------------------------------------------------
def test_a_command_the_node_refuses_is_audited_with_both_decisions_and_not_run(
    plane: ControlPlane, agents: AgentPool
) -> None:
    node = plane.create_node("refuse-1")
    agent = agents.start(plane, node, policy=None)  # read-only defaults: no `sleep` on this node
    plane.wait_online([node.name])

    result = plane.run_one(["sleep", "1"], node.name)
    assert result["ran"] is False and result["exit_code"] is None, result
    assert result["error"].startswith("node refuse-1 refused `sleep 1`: its own policy says: "), result

    records = plane.audit(node=node.name)
    (execution,) = executions(records)
    request_id = execution["details"]["request_id"]
    (plane_decision,) = [r for r in records if r["seq"] == execution["ref_seq"]]
    assert plane_decision["kind"] == "decision" and plane_decision["decision"] == "allow", plane_decision
    assert plane_decision["details"]["grant"] == "fault-tests" and plane_decision["argv"] == ["sleep", "1"]
    node_decision, interrupted = execution["closers"]
    assert node_decision["kind"] == "decision" and node_decision["decision"] == "deny", node_decision
    assert node_decision["details"]["source"] == "node" and node_decision["argv"] == ["sleep", "1"]
    assert interrupted["kind"] == "execution_interrupted" and interrupted["details"] == {"ran": False}
    assert "its own policy" in interrupted["reason"]

    assert agent.refused() == {request_id: 1}, agent.log_text()
    assert agent.ran() == {}, agent.log_text()
    assert not agent.children()
    assert_serving(plane, node.name, ("df", "-h"))  # what its read-only defaults allow still runs
    assert len(agent.ran()) == 1 and agent.refused() == {request_id: 1}
    assert_audit_intact(plane)
