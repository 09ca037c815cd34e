"""Real processes on loopback for the agent fault tests: a ``squads serve`` and ``squads agent``s.

Every process is started from an argv list (never a shell), writes its output
to a file under the test's tmp folder (a pipe nobody reads could fill and stall
it), and is stopped by the fixture that started it: SIGTERM, then SIGKILL.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import httpx
from sqlalchemy import select

from squads.audit.models import AuditRecord
from squads.audit.verify import VerifyReport, verify
from squads.accounts.api_tokens import create_api_token
from squads.storage.db import session_scope
from squads.storage.service import open_database

SQUADS = Path(sys.executable).with_name("squads")
AGENT = "webserver/service-health"
STARTUP_S = 30.0  # generous: a loaded CI machine; only reached when something is wrong
T = TypeVar("T")

# Programs the squads do not ship, the same on both sides; paths checked to exist below.
PROGRAMS: dict[str, dict[str, Any]] = {
    "true": {"path": "/usr/bin/true", "subcommand_required": False, "positionals": "none"},
    "sleep": {"path": "/usr/bin/sleep", "subcommand_required": False, "positionals": "any"},
    "yes": {"path": "/usr/bin/yes", "subcommand_required": False, "positionals": "any"},
}
ALLOW = ["true", "sleep {int:0..100}", "yes ..."]
GRANTS = [{"name": "fault-tests", "agents": [AGENT], "allow": ALLOW}]
# The node's own policy: read-only defaults plus the same three programs.
AGENT_POLICY = {"defaults": "read-only", "programs": PROGRAMS, "grants": GRANTS}

# The agent logs one line per request it ran ("request <id>: <agent> ran <argv> ...").
RAN = re.compile(r"request ([0-9a-f]{32}): \S+ ran ")
REFUSED = re.compile(r"request ([0-9a-f]{32}) refused: ")


def free_port() -> int:
    """A TCP port nothing listens on right now (bind port 0 and read it back)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for(what: str, probe: Callable[[], T | None], *, timeout: float = STARTUP_S, every: float = 0.05) -> T:
    """Poll ``probe`` until it returns something truthy; fail naming ``what`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g}s waiting for {what}")
        time.sleep(every)


def write_yaml(path: Path, data: object) -> Path:
    """JSON is YAML: no quoting surprises ("true" stays a string)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2))
    return path


def stop_process(proc: subprocess.Popen[bytes], *, grace: float = 10.0) -> int:
    """SIGTERM, then SIGKILL after ``grace`` seconds; returns the exit code."""
    if proc.poll() is None:
        proc.terminate()
        try:
            return proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            proc.kill()
    return proc.wait(timeout=10)


@dataclass(frozen=True)
class Node:
    """A registered node and its credentials (token file mode 600)."""

    name: str
    node_id: str
    token: str
    token_file: Path


class ControlPlane:
    """One ``squads serve`` on a free loopback port, with its data and config folders."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.data_dir = root / "data"
        self.config_dir = root / "config"
        self.port = free_port()
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("SQUADS_")}
        # The suite's fixed audit key (conftest) goes to the server too, so the in-process
        # verify_audit() checks the log with the key it was written with.
        self.env.update(SQUADS_DATA_DIR=str(self.data_dir), SQUADS_CONFIG_DIR=str(self.config_dir),
                        SQUADS_AUDIT_KEY=os.environ["SQUADS_AUDIT_KEY"])
        self.proc: subprocess.Popen[bytes] | None = None
        self.logs: list[Path] = []
        self.token = ""
        for spec in PROGRAMS.values():
            assert os.access(spec["path"], os.X_OK), f"{spec['path']} is needed by these tests"
        self.data_dir.mkdir(parents=True, exist_ok=True)
        write_yaml(self.config_dir / "programs" / "fault-tests.yaml", {"programs": PROGRAMS})
        write_yaml(self.config_dir / "grants" / "fault-tests.yaml", {"grants": GRANTS})

    # -- process -------------------------------------------------------------------------------
    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/agent/v1/connect"

    @property
    def db_url(self) -> str:
        return f"sqlite:///{self.data_dir / 'squads.sqlite3'}"

    def start(self, *, api_token_via_cli: bool = False) -> None:
        """Start ``squads serve`` (again, on the same port and data) and wait until it answers.

        The first start also makes the API token the tests use: in this process, or
        with ``squads token create`` when ``api_token_via_cli``."""
        assert self.proc is None or self.proc.poll() is not None, "already running"
        log = self.root / f"serve-{len(self.logs) + 1}.log"
        self.logs.append(log)
        with log.open("wb") as out:
            self.proc = subprocess.Popen([str(SQUADS), "serve", "--port", str(self.port)], env=self.env,
                                         stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)

        def healthy() -> bool:
            assert self.proc is not None and self.proc.poll() is None, f"squads serve exited:\n{self.log_text()}"
            try:
                return httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200
            except httpx.TransportError:
                return False

        wait_for("squads serve to answer /healthz", healthy)
        if not self.token and api_token_via_cli:
            done = self.cli("token", "create", "fault-tests")
            assert done.returncode == 0, done.stderr
            self.token = done.stdout.split()[-1]
            assert self.token.startswith("sqa_"), done.stdout
        elif not self.token:
            self.token = self._api_token()

    def stop(self) -> int | None:
        """SIGTERM (uvicorn's graceful shutdown), SIGKILL if it hangs; returns the exit code."""
        if self.proc is None:
            return None
        return stop_process(self.proc)

    def restart(self) -> None:
        self.stop()
        self.start()

    def log_text(self) -> str:
        """Everything every ``squads serve`` of this control plane wrote so far."""
        return "".join(p.read_text(errors="replace") for p in self.logs if p.exists())

    def cli(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        """``squads ARGS`` with this control plane's environment."""
        return subprocess.run([str(SQUADS), *args], env=self.env, capture_output=True, text=True, timeout=timeout,
                              check=False, stdin=subprocess.DEVNULL)

    def _api_token(self) -> str:
        database = open_database(url=self.db_url, migrate=False)
        try:
            with session_scope(database.sessions) as session:
                return create_api_token(session, name="fault-tests", actor="pytest").token
        finally:
            database.engine.dispose()

    # -- API -----------------------------------------------------------------------------------
    def client(self, timeout: float = 30) -> httpx.Client:
        return httpx.Client(base_url=self.url, headers={"Authorization": f"Bearer {self.token}"}, timeout=timeout)

    def api(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        with self.client() as client:
            return client.request(method, path, **kwargs)

    def create_node(self, name: str, *, labels: dict[str, str] | None = None, via_cli: bool = False) -> Node:
        """Register ``name`` (over HTTP, or with ``squads node create --json``) and write its token file."""
        if via_cli:
            argv = ["node", "create", name, "--json"] + [f"--label={k}={v}" for k, v in (labels or {}).items()]
            done = self.cli(*argv)
            assert done.returncode == 0, done.stderr
            issued = json.loads(done.stdout)
        else:
            response = self.api("POST", "/api/nodes", json={"name": name, "labels": labels or {}})
            assert response.status_code == 201, response.text
            issued = response.json()
        token_file = self.root / f"{name}.token"
        token_file.write_text(issued["token"] + "\n")
        token_file.chmod(0o600)
        return Node(name=issued["name"], node_id=issued["node_id"], token=issued["token"], token_file=token_file)

    def nodes(self) -> dict[str, dict[str, Any]]:
        response = self.api("GET", "/api/nodes")
        assert response.status_code == 200, response.text
        return {n["name"]: n for n in response.json()}

    def wait_online(self, names: Iterable[str], *, online: bool = True, timeout: float = STARTUP_S) -> None:
        wanted = set(names)

        def ready() -> bool:
            return all(self.nodes()[n]["online"] is online for n in wanted)

        wait_for(f"nodes {sorted(wanted)} to be {'online' if online else 'offline'}", ready, timeout=timeout,
                 every=0.1)

    def run(self, argv: Sequence[str], nodes: Sequence[str], *, timeout_s: float | None = None,
            agent: str = AGENT) -> list[dict[str, Any]]:
        """``POST /api/run``; the per-node results."""
        body: dict[str, Any] = {"agent": agent, "argv": list(argv), "nodes": list(nodes)}
        if timeout_s is not None:
            body["timeout_s"] = timeout_s
        with self.client(timeout=(timeout_s or 30) + 30) as client:
            response = client.post("/api/run", json=body)
        assert response.status_code == 200, response.text
        return list(response.json())

    def run_one(self, argv: Sequence[str], node: str, **kwargs: Any) -> dict[str, Any]:
        (result,) = self.run(argv, [node], **kwargs)
        assert result["node"] == node
        return result

    # -- audit log -----------------------------------------------------------------------------
    def audit(self, *, node: str | None = None) -> list[dict[str, Any]]:
        """The audit records (optionally of one node), oldest first, ``details`` and ``argv`` parsed."""
        database = open_database(url=self.db_url, migrate=False)
        try:
            with database.sessions() as session:
                stmt = select(AuditRecord).order_by(AuditRecord.seq)
                if node is not None:
                    stmt = stmt.where(AuditRecord.node == node)
                rows = list(session.scalars(stmt))
                return [
                    {c: getattr(r, c) for c in ("seq", "kind", "node", "decision", "rule", "reason", "ref_seq",
                                                "exit_code", "actor")}
                    | {"argv": json.loads(r.argv) if r.argv else None,
                       "details": json.loads(r.details) if r.details else {}}
                    for r in rows
                ]
        finally:
            database.engine.dispose()

    def verify_audit(self) -> VerifyReport:
        database = open_database(url=self.db_url, migrate=False)
        try:
            with database.sessions() as session:
                return verify(session)
        finally:
            database.engine.dispose()


def executions(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each execution_started record with the records that refer to it, as ``closers``."""
    started = [r for r in records if r["kind"] == "execution_started"]
    for record in started:
        record["closers"] = [r for r in records if r["ref_seq"] == record["seq"]]
    return started


class AgentProcess:
    """One ``squads agent`` for ``node``; its stderr (the log) goes to a file."""

    def __init__(self, plane: ControlPlane, node: Node, *, policy: dict[str, Any] | None = AGENT_POLICY,
                 args: Sequence[str] = (), token_file: Path | None = None, node_id: str | None = None) -> None:
        self.plane = plane
        self.node = node
        self.log = plane.root / f"agent-{node.name}-{len(list(plane.root.glob(f'agent-{node.name}-*.log'))) + 1}.log"
        argv = [str(SQUADS), "agent", "--server", plane.url, "--node-id", node_id or node.node_id,
                "--node-name", node.name, "--token-file", str(token_file or node.token_file), *args]
        if policy is not None:
            argv += ["--policy", str(write_yaml(plane.root / f"policy-{node.name}.yaml", policy))]
        self.seen_children: set[tuple[int, tuple[str, ...]]] = set()
        with self.log.open("wb") as out:
            self.proc = subprocess.Popen(argv, env=plane.env, stdout=out, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def ran(self) -> Counter[str]:
        """How many times the agent says it ran each request id."""
        return Counter(RAN.findall(self.log_text()))

    def refused(self) -> Counter[str]:
        return Counter(REFUSED.findall(self.log_text()))

    def children(self, program: str | None = None) -> list[int]:
        """Pids of the agent's child processes (optionally only those running ``program``)."""
        found: list[int] = []
        for task in Path(f"/proc/{self.pid}/task").glob("*"):
            try:
                found += [int(p) for p in (task / "children").read_text().split()]
            except OSError:
                continue
        if program is not None:
            found = [p for p in found if _cmdline(p)[:1] == [program]]
        self.seen_children.update((p, tuple(_cmdline(p))) for p in found)
        return found

    def wait_exit(self, timeout: float) -> int:
        return self.proc.wait(timeout=timeout)

    def stop(self) -> int:
        code = stop_process(self.proc)
        # A command left running by a SIGKILLed agent is in its own session: end it too,
        # if that pid still runs the very command the agent started.
        for pid, cmdline in list(self.seen_children):
            if tuple(_cmdline(pid)) == cmdline:
                try:
                    os.killpg(pid, signal.SIGKILL)
                except (ProcessLookupError, PermissionError):
                    pass
        return code


def stop_all(agents: Iterable[AgentProcess]) -> None:
    """Stop agents together: SIGTERM to all first, then wait for (or kill) each."""
    agents = list(agents)
    for agent in agents:
        if agent.proc.poll() is None:
            agent.proc.terminate()
    for agent in agents:
        agent.stop()


class AgentPool:
    """Starts agents for one test (or one module) and stops every one of them at the end."""

    def __init__(self) -> None:
        self.started: list[AgentProcess] = []

    def start(self, plane: ControlPlane, node: Node, **kwargs: Any) -> AgentProcess:
        agent = AgentProcess(plane, node, **kwargs)
        self.started.append(agent)
        return agent

    def stop_all(self) -> None:
        stop_all(self.started)


def _cmdline(pid: int) -> list[str]:
    try:
        return [a.decode(errors="replace") for a in Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0") if a]
    except OSError:
        return []


class BackgroundRun:
    """``POST /api/run`` on a thread, recording when its answer arrived (``time.monotonic``)."""

    def __init__(self, plane: ControlPlane, argv: Sequence[str], node: str, **kwargs: Any) -> None:
        self.result: dict[str, Any] | None = None
        self.error: BaseException | None = None
        self.answered_at: float | None = None
        self._thread = threading.Thread(target=self._run, args=(plane, argv, node, kwargs), daemon=True)
        self._thread.start()

    def _run(self, plane: ControlPlane, argv: Sequence[str], node: str, kwargs: dict[str, Any]) -> None:
        try:
            self.result = plane.run_one(argv, node, **kwargs)
        except BaseException as exc:  # noqa: BLE001 - handed to the test by wait()
            self.error = exc
        finally:
            self.answered_at = time.monotonic()

    def wait(self, timeout: float = 60) -> dict[str, Any]:
        self._thread.join(timeout)
        assert not self._thread.is_alive(), f"POST /api/run gave no answer within {timeout:g}s"
        if self.error is not None:
            raise self.error
        assert self.result is not None
        return self.result
