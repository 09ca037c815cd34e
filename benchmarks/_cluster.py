"""Shared plumbing for the agent benchmarks: a throwaway site, registered nodes, a control plane, agents.

Not a benchmark itself. Everything here starts processes with argv lists (never a
shell) and hands back what the caller must stop; the callers stop it in ``finally``.
"""

from __future__ import annotations

import json
import os
import resource
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from squads.nodes.service import IssuedToken  # noqa: E402

VENV_BIN = Path(sys.executable).parent
SQUADS = VENV_BIN / "squads"
BENCH_AGENT = "webserver/service-health"

# The site adds one harmless program and lets the benchmark's agent run it; the node's
# own policy file holds the same two sections (the agent decides again under it).
PROGRAMS_YAML = 'programs: {"true": {path: /usr/bin/true, subcommand_required: false, positionals: none}}\n'
GRANTS_YAML = f'grants: [{{name: bench, agents: [{BENCH_AGENT}], allow: ["true"]}}]\n'


@dataclass(frozen=True)
class Site:
    """A throwaway data dir, its config dir and the agents' policy file."""

    data_dir: Path
    config_dir: Path
    policy: Path

    def env(self) -> dict[str, str]:
        """The environment of a ``squads`` process on this site."""
        return {**os.environ, "SQUADS_DATA_DIR": str(self.data_dir), "SQUADS_CONFIG_DIR": str(self.config_dir)}


# A registered node's id, name and token: the product's own record of them.
NodeCreds = IssuedToken


def log(message: str) -> None:
    """Progress for the person running a benchmark (stderr, so --json stays clean on stdout)."""
    print(message, file=sys.stderr, flush=True)


def emit(figures: dict[str, Any], *, as_json: bool, table: Callable[[dict[str, Any]], None]) -> None:
    """Print the figures as one JSON object or as the benchmark's table."""
    if as_json:
        print(json.dumps(figures))
    else:
        table(figures)


def raise_nofile() -> int:
    """Raise this process's open-files soft limit to the hard limit (children inherit it)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard


def make_site(folder: Path) -> Site:
    """Write the site config (programs + grants) and the agents' policy file under ``folder``."""
    config = folder / "config"
    (config / "programs").mkdir(parents=True)
    (config / "grants").mkdir(parents=True)
    (config / "programs" / "bench.yaml").write_text(PROGRAMS_YAML)
    (config / "grants" / "bench.yaml").write_text(GRANTS_YAML)
    policy = folder / "agent-policy.yaml"
    policy.write_text(PROGRAMS_YAML + GRANTS_YAML)
    return Site(data_dir=folder, config_dir=config, policy=policy)


def app_context(site: Site):  # type: ignore[no-untyped-def]
    """The product's ``AppContext`` for ``site`` (imports kept local: the simulators do not need them)."""
    from squads.settings.env import Settings
    from squads.context import AppContext

    return AppContext(settings=Settings(data_dir=site.data_dir, config_dir=site.config_dir))


def register_nodes(context, names: Sequence[str], labels_for, *, batch: int = 500) -> list[NodeCreds]:  # type: ignore[no-untyped-def]
    """Register ``names`` in-process with the product's ``create_node``, ``batch`` per transaction."""
    from squads.nodes.service import create_node
    from squads.storage.db import session_scope

    issued: list[NodeCreds] = []
    for first in range(0, len(names), batch):
        with session_scope(context.db.sessions) as session:
            for name in names[first : first + batch]:
                token = create_node(session, name=name, labels=labels_for(name), actor="bench")
                issued.append(NodeCreds(token.node_id, token.name, token.token))
            session.expunge_all()
    return issued


def register_node_cli(site: Site, name: str, labels: dict[str, str]) -> NodeCreds:
    """Register one node with ``squads node create ... --json`` (the documented way)."""
    argv = [str(SQUADS), "node", "create", name, "--json"]
    for key, value in labels.items():
        argv += ["--label", f"{key}={value}"]
    done = subprocess.run(argv, env=site.env(), capture_output=True, text=True, timeout=120, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"squads node create failed ({done.returncode}): {done.stderr.strip()}")
    data = json.loads(done.stdout)
    return NodeCreds(data["node_id"], data["name"], data["token"])


def api_token(context) -> str:  # type: ignore[no-untyped-def]
    """A fresh API token (sqa_...)."""
    from squads.accounts.api_tokens import create_api_token
    from squads.storage.db import session_scope

    with session_scope(context.db.sessions) as session:
        return create_api_token(session, name="bench", actor="bench").token


def write_token_file(path: Path, token: str) -> Path:
    """A node token file the agent accepts (mode 600)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(token + "\n")
    os.chmod(path, 0o600)
    return path


def free_port() -> int:
    """A loopback TCP port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_server(site: Site, port: int, log_path: Path) -> subprocess.Popen[bytes]:
    """``squads serve --port PORT`` as a child process, its output appended to ``log_path``."""
    log = open(log_path, "ab")  # noqa: SIM115 - the child keeps the descriptor; ours closes below
    try:
        return subprocess.Popen([str(SQUADS), "serve", "--port", str(port)], env=site.env(),
                                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    finally:
        log.close()


def wait_healthz(port: int, proc: subprocess.Popen[bytes] | None = None, *, timeout: float = 60.0,
                 interval: float = 0.05, request_timeout: float = 1.0) -> float:
    """Poll ``GET /healthz`` until 200; returns the monotonic time it first answered."""
    import httpx

    deadline = time.monotonic() + timeout
    url = f"http://127.0.0.1:{port}/healthz"
    while True:
        try:
            if httpx.get(url, timeout=request_timeout).status_code == 200:
                return time.monotonic()
        except httpx.TransportError:
            pass
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"the server exited with code {proc.returncode} before answering /healthz")
        if time.monotonic() > deadline:
            raise RuntimeError(f"the server did not answer /healthz within {timeout:g} s")
        time.sleep(interval)


def rss_kib(pid: int) -> int:
    """Resident set size of ``pid`` in KiB (VmRSS from /proc)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for pid {pid}")


def stop(proc: subprocess.Popen[bytes] | subprocess.Popen[str] | None, *, sig: int = signal.SIGTERM,
         timeout: float = 15.0) -> int | None:
    """Stop one child we started: ``sig``, then SIGKILL after ``timeout``. Returns its exit code."""
    if proc is None:
        return None
    if proc.poll() is None:
        try:
            proc.send_signal(sig)
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
        except ProcessLookupError:
            pass
    return proc.returncode


def percentile(values: Iterable[float], q: float) -> float:
    """The ``q``-th percentile (0-100) with linear interpolation between ranks."""
    data = sorted(values)
    if not data:
        return float("nan")
    rank = (len(data) - 1) * q / 100
    low = int(rank)
    high = min(low + 1, len(data) - 1)
    return data[low] + (data[high] - data[low]) * (rank - low)


def met(value: float, target: float, *, at_most: bool = True) -> str:
    """'met' or 'not met' for a printed target."""
    if value != value:  # NaN: nothing measured
        return "not measured"
    return "met" if (value <= target if at_most else value >= target) else "not met"
