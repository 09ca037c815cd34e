"""Round trip of ``true`` on a node: through the control plane and its agent, and over ssh to localhost.

Usage: ``python benchmarks/roundtrip_bench.py [--json] [--runs N] [--ssh-fresh-runs N] [--warmup N]``

Everything runs on this machine, side by side in one run:

- agent: one real ``squads agent`` (a child process) connected to a control plane
  that runs in this process (``create_app`` under uvicorn in a background thread).
  ``agent_*`` is the dispatch round trip the squad runtime pays: ``Hub.run_blocking``
  sends ``true`` with the control plane's decision, the agent decides again under its
  own policy, forks /usr/bin/true and reports. ``agent_execute_*`` is
  ``tools.execution.execute`` in-process (policy decision, three audit records,
  dispatch), and ``agent_api_*`` is ``POST /api/run`` over HTTP with a keep-alive
  client (token check, policy, audit, dispatch, JSON result).
- ssh: a throwaway sshd (its own config, host key and authorized key in a temp dir,
  loopback only) started as a child; ``ssh ... true`` with a fresh connection each
  time, and through a ControlMaster connection opened once.

Each method is warmed up, then timed ``--runs`` times (``--ssh-fresh-runs`` for fresh
ssh). openssh-server is installed with apt-get when sshd is missing and we are root.
The throwaway sshd sets ``SHLVL=1`` so that bash does not run the user's ~/.bashrc for
each command (what a login's rc files do is not ssh's cost; ``--keep-shell-rc`` keeps
them). ``local_exec_*`` is the floor under every method: the product's LocalExecutor
forking /usr/bin/true in this process.
Targets (printed, never asserted): agent p50 <= 3 ms; >= 30x faster than ssh
through a ControlMaster connection.
"""

from __future__ import annotations

import argparse
import getpass
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks import _cluster as cluster  # noqa: E402

TARGET_AGENT_P50_MS = 3.0
TARGET_SPEEDUP = 30.0
SSHD_CANDIDATES = ("/usr/sbin/sshd", "/usr/bin/sshd")


class SetupError(RuntimeError):
    """The benchmark cannot run here; the message says why and what to do."""


# -- timing ----------------------------------------------------------------------------------
def timed(fn: Callable[[], None], *, runs: int, warmup: int) -> list[float]:
    """Milliseconds of ``runs`` calls of ``fn`` after ``warmup`` untimed ones."""
    for _ in range(warmup):
        fn()
    samples: list[float] = []
    for _ in range(runs):
        started = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - started) * 1000)
    return samples


def summary(samples: list[float]) -> dict[str, float]:
    return {"p50": round(cluster.percentile(samples, 50), 3), "p99": round(cluster.percentile(samples, 99), 3)}


# -- sshd ---------------------------------------------------------------------------------------
def find_sshd() -> str | None:
    for path in SSHD_CANDIDATES:
        if os.access(path, os.X_OK):
            return path
    return shutil.which("sshd")


def ensure_sshd(log: Callable[[str], None]) -> str:
    """The sshd binary; installs openssh-server with apt-get when missing and root."""
    found = find_sshd()
    if found:
        return found
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        raise SetupError("sshd is not installed and this is not root with apt-get: "
                         "install openssh-server (apt-get install openssh-server) and run again")
    log("sshd is missing: installing openssh-server with apt-get (service start suppressed)")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    # Keep the package's maintainer scripts from starting a system-wide sshd on port 22:
    # the standard policy-rc.d switch, present only for the duration of the install.
    policy_rc = Path("/usr/sbin/policy-rc.d")
    added_policy = False
    if not policy_rc.exists():
        policy_rc.write_text("#!/bin/sh\nexit 101\n")
        policy_rc.chmod(0o755)
        added_policy = True
    try:
        install = ["apt-get", "install", "-y", "--no-install-recommends", "openssh-server"]
        done = subprocess.run(install, env=env, capture_output=True, text=True, timeout=600, check=False)
        if done.returncode != 0:
            subprocess.run(["apt-get", "update"], env=env, capture_output=True, text=True, timeout=600, check=False)
            done = subprocess.run(install, env=env, capture_output=True, text=True, timeout=600, check=False)
    finally:
        if added_policy:
            policy_rc.unlink(missing_ok=True)
    found = find_sshd()
    if done.returncode != 0 or not found:
        tail = (done.stderr or done.stdout).strip().splitlines()[-3:]
        raise SetupError("could not install openssh-server with apt-get: " + " | ".join(tail))
    return found


class SshServer:
    """A throwaway sshd on a loopback port, its keys and config in ``folder``."""

    def __init__(self, folder: Path, sshd: str, *, keep_shell_rc: bool = False) -> None:
        self.folder = folder
        self.keep_shell_rc = keep_shell_rc
        self.sshd = sshd
        self.port = cluster.free_port()
        self.user = getpass.getuser()
        self.key = folder / "client_ed25519"
        self.proc: subprocess.Popen[bytes] | None = None
        self.master_pid: int | None = None
        self.socket = folder / "cm.sock"

    def start(self) -> None:
        keygen = ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "squads-bench"]
        subprocess.run([*keygen, "-f", str(self.folder / "host_ed25519")], check=True, timeout=30)
        subprocess.run([*keygen, "-f", str(self.key)], check=True, timeout=30)
        authorized = self.folder / "authorized_keys"
        authorized.write_text((self.folder / "client_ed25519.pub").read_text())
        authorized.chmod(0o600)
        config = self.folder / "sshd_config"
        config.write_text("\n".join([
            f"HostKey {self.folder / 'host_ed25519'}",
            "ListenAddress 127.0.0.1",
            f"Port {self.port}",
            f"PidFile {self.folder / 'sshd.pid'}",
            f"AuthorizedKeysFile {authorized}",
            "PasswordAuthentication no",
            "KbdInteractiveAuthentication no",
            "PubkeyAuthentication yes",
            "PermitRootLogin prohibit-password",
            "UsePAM no",
            "StrictModes no",
            # bash runs ~/.bashrc for an ssh command when it is the top-level shell; what a login's
            # rc files do (a pyenv init costs ~100 ms) is not ssh's cost, so say the shell is nested.
            *([] if self.keep_shell_rc else ["SetEnv SHLVL=1"]),
            "",
        ]))
        if os.geteuid() == 0:
            # sshd refuses to start without its privilege-separation directory (the service makes it).
            Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)
        log = open(self.folder / "sshd.log", "wb")  # noqa: SIM115
        try:
            self.proc = subprocess.Popen([self.sshd, "-D", "-e", "-f", str(config)], stdout=log,
                                         stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        finally:
            log.close()
        deadline = time.monotonic() + 15
        while subprocess.run(self.argv("true"), capture_output=True, timeout=30, check=False).returncode != 0:
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise SetupError("the throwaway sshd did not accept the client key: "
                                 + (self.folder / "sshd.log").read_text()[-500:])
            time.sleep(0.2)

    def _common(self) -> list[str]:
        return ["-F", "/dev/null", "-p", str(self.port), "-i", str(self.key), "-o", "IdentitiesOnly=yes",
                "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null", "-o", "BatchMode=yes",
                "-o", "LogLevel=ERROR"]

    def argv(self, *command: str, master: bool = False) -> list[str]:
        via = ["-S", str(self.socket)] if master else []
        return ["ssh", *self._common(), *via, f"{self.user}@127.0.0.1", *command]

    def start_master(self) -> None:
        """A ControlMaster connection that persists in the background; its pid is kept to stop it."""
        master = ["ssh", *self._common(), "-M", "-S", str(self.socket), "-o", "ControlPersist=yes", "-N",
                  f"{self.user}@127.0.0.1"]
        subprocess.run(master, check=True, timeout=30, stdin=subprocess.DEVNULL,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        check = subprocess.run(["ssh", *self._common(), "-S", str(self.socket), "-O", "check",
                                f"{self.user}@127.0.0.1"], capture_output=True, text=True, timeout=30, check=False)
        found = re.search(r"pid=(\d+)", check.stdout + check.stderr)
        if check.returncode != 0 or not found:
            raise SetupError(f"the ControlMaster connection did not start: {check.stderr.strip()}")
        self.master_pid = int(found.group(1))

    def stop(self) -> None:
        if self.master_pid is not None:
            subprocess.run(["ssh", *self._common(), "-S", str(self.socket), "-O", "exit", f"{self.user}@127.0.0.1"],
                           capture_output=True, timeout=30, check=False)
            deadline = time.monotonic() + 5
            while _alive(self.master_pid) and time.monotonic() < deadline:
                time.sleep(0.05)
            if _alive(self.master_pid):
                os.kill(self.master_pid, 9)
            self.master_pid = None
        cluster.stop(self.proc)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    status = Path(f"/proc/{pid}/status")
    return status.exists() and "State:\tZ" not in status.read_text()


def measure_ssh(folder: Path, *, fresh_runs: int, master_runs: int, warmup: int, keep_shell_rc: bool,
                log: Callable[[str], None]) -> dict[str, object]:
    sshd = ensure_sshd(log)
    server = SshServer(folder, sshd, keep_shell_rc=keep_shell_rc)
    try:
        server.start()
        log(f"sshd {sshd} on 127.0.0.1:{server.port}")

        def run(argv: list[str]) -> Callable[[], None]:
            def once() -> None:
                done = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, timeout=30, check=False)
                if done.returncode != 0:
                    raise RuntimeError(f"ssh failed ({done.returncode}): {done.stderr.decode().strip()}")
            return once

        fresh = summary(timed(run(server.argv("true")), runs=fresh_runs, warmup=min(warmup, fresh_runs)))
        log(f"ssh fresh: p50 {fresh['p50']} ms")
        server.start_master()
        master = summary(timed(run(server.argv("true", master=True)), runs=master_runs, warmup=warmup))
        log(f"ssh ControlMaster: p50 {master['p50']} ms")
    finally:
        server.stop()
    return {"ssh_fresh_p50_ms": fresh["p50"], "ssh_fresh_p99_ms": fresh["p99"],
            "ssh_controlmaster_p50_ms": master["p50"], "ssh_controlmaster_p99_ms": master["p99"],
            "ssh_shell_rc": "kept" if keep_shell_rc else "skipped"}


def measure_local_exec(*, runs: int, warmup: int) -> dict[str, float]:
    """The floor every method pays: the product's LocalExecutor forking /usr/bin/true in this process."""
    from tools.executors.local import LocalExecutor

    executor = LocalExecutor()

    def once() -> None:
        if executor.run(["/usr/bin/true"], timeout=10, max_output=65536).exit_code != 0:
            raise RuntimeError("/usr/bin/true failed")

    local = summary(timed(once, runs=runs, warmup=warmup))
    return {"local_exec_p50_ms": local["p50"], "local_exec_p99_ms": local["p99"]}


# -- agent --------------------------------------------------------------------------------------
def measure_agent(folder: Path, *, runs: int, warmup: int, log: Callable[[str], None]) -> dict[str, float]:
    import httpx
    import uvicorn

    from chat_server.app import create_app
    from chat_server.cli import uvicorn_options
    from tools.execution import ExecutionRequest, execute
    from tools.executors.base import RunContext

    site = cluster.make_site(folder)
    name = "bench-node"
    creds = cluster.register_node_cli(site, name, {"bench": "yes"})
    context = cluster.app_context(site)
    token = cluster.api_token(context)
    app = create_app(context)
    hub = app.state.hub
    port = cluster.free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning",
                                           **uvicorn_options()))
    thread = threading.Thread(target=server.run, name="control-plane", daemon=True)
    agent: subprocess.Popen[bytes] | None = None
    thread.start()
    try:
        deadline = time.monotonic() + 30
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                raise SetupError("the in-process control plane did not start")
            time.sleep(0.02)
        token_file = cluster.write_token_file(folder / "node-token", creds.token)
        agent_log = open(folder / "agent.log", "wb")  # noqa: SIM115
        try:
            agent = subprocess.Popen(
                [str(cluster.SQUADS), "agent", "--server", f"http://127.0.0.1:{port}", "--node-id", creds.node_id,
                 "--token-file", str(token_file), "--policy", str(site.policy)],
                env=site.env(), stdout=agent_log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            )
        finally:
            agent_log.close()
        deadline = time.monotonic() + 30
        while not hub.online(name):
            if agent.poll() is not None or time.monotonic() > deadline:
                raise SetupError("the agent did not connect: " + (folder / "agent.log").read_text()[-800:])
            time.sleep(0.02)
        log(f"agent connected to the in-process control plane on port {port}")

        runtime = context.runtime_config(hub=hub)
        node = runtime.nodes[name]
        engine = context.current_engine()
        decision = engine.decide(agent=cluster.BENCH_AGENT, node=node.context(), argv=["true"])
        if not decision.allowed:
            raise SetupError(f"the control plane's policy does not allow true: {decision.reason}")

        def dispatch() -> None:
            result = hub.run_blocking(node=name, context=RunContext(decision, uuid.uuid4().hex),
                                      timeout=10, max_output=65536)
            if result.exit_code != 0:
                raise RuntimeError(f"true exited {result.exit_code} on the agent: {result.stderr}")

        executor = runtime.executor(node)

        def executed() -> None:
            request = ExecutionRequest(agent=cluster.BENCH_AGENT, argv=["true"], actor="bench", squad="webserver",
                                       timeout=10, max_output=65536)
            outcome = execute(request=request, sessions=context.db.sessions, engine=engine, executor=executor,
                              node=node.context())
            if outcome.result is None or outcome.result.exit_code != 0:
                raise RuntimeError(f"execute gave no clean result: {outcome}")

        client = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30,
                              headers={"Authorization": f"Bearer {token}"})
        body = {"agent": cluster.BENCH_AGENT, "argv": ["true"], "nodes": [name]}

        def api() -> None:
            response = client.post("/api/run", json=body)
            if response.status_code != 200:
                raise RuntimeError(f"POST /api/run answered {response.status_code}: {response.text[:300]}")
            (answer,) = response.json()
            if answer.get("error") or answer.get("exit_code") != 0:
                raise RuntimeError(f"POST /api/run: {answer}")

        try:
            raw = summary(timed(dispatch, runs=runs, warmup=warmup))
            log(f"agent dispatch: p50 {raw['p50']} ms")
            full = summary(timed(executed, runs=runs, warmup=warmup))
            log(f"agent execute(): p50 {full['p50']} ms")
            http = summary(timed(api, runs=runs, warmup=warmup))
            log(f"agent POST /api/run: p50 {http['p50']} ms")
        finally:
            client.close()
    finally:
        cluster.stop(agent)
        server.should_exit = True
        thread.join(timeout=20)
        context.db.engine.dispose()
    return {"agent_p50_ms": raw["p50"], "agent_p99_ms": raw["p99"],
            "agent_execute_p50_ms": full["p50"], "agent_execute_p99_ms": full["p99"],
            "agent_api_p50_ms": http["p50"], "agent_api_p99_ms": http["p99"]}


# -- report -------------------------------------------------------------------------------------
def run(*, runs: int, fresh_runs: int, warmup: int, keep_shell_rc: bool,
        log: Callable[[str], None]) -> dict[str, object]:
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="squads-roundtrip-") as tmp:
        root = Path(tmp)
        (root / "agent").mkdir()
        (root / "ssh").mkdir()
        figures: dict[str, object] = {}
        figures.update(measure_agent(root / "agent", runs=runs, warmup=warmup, log=log))
        figures.update(measure_local_exec(runs=runs, warmup=warmup))
        log(f"LocalExecutor /usr/bin/true in-process: p50 {figures['local_exec_p50_ms']} ms")
        figures.update(measure_ssh(root / "ssh", fresh_runs=fresh_runs, master_runs=runs, warmup=warmup,
                                   keep_shell_rc=keep_shell_rc, log=log))
    agent_p50 = float(figures["agent_p50_ms"])  # type: ignore[arg-type]
    master_p50 = float(figures["ssh_controlmaster_p50_ms"])  # type: ignore[arg-type]
    figures["speedup_vs_controlmaster"] = round(master_p50 / agent_p50, 1) if agent_p50 > 0 else None
    figures["speedup_vs_fresh"] = round(float(figures["ssh_fresh_p50_ms"]) / agent_p50, 1) if agent_p50 > 0 else None  # type: ignore[arg-type]
    figures["runs"] = runs
    figures["ssh_fresh_runs"] = fresh_runs
    figures["warmup"] = warmup
    figures["elapsed_s"] = round(time.monotonic() - started, 1)
    return figures


def print_table(f: dict[str, object]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"Round trip of `true` ({f['runs']} runs; fresh ssh {f['ssh_fresh_runs']})")
    for column in ("method", "p50 ms", "p99 ms", "target", "status"):
        table.add_column(column)
    agent_p50 = float(f["agent_p50_ms"])  # type: ignore[arg-type]
    table.add_row("agent: hub dispatch (what the runtime pays)", str(f["agent_p50_ms"]), str(f["agent_p99_ms"]),
                  f"p50 <= {TARGET_AGENT_P50_MS:g}", cluster.met(agent_p50, TARGET_AGENT_P50_MS))
    table.add_row("agent: execute() (policy + 3 audit records + dispatch)", str(f["agent_execute_p50_ms"]),
                  str(f["agent_execute_p99_ms"]), "", "")
    table.add_row("agent: POST /api/run over HTTP (keep-alive)", str(f["agent_api_p50_ms"]),
                  str(f["agent_api_p99_ms"]), "", "")
    table.add_row("floor: LocalExecutor forks /usr/bin/true in-process", str(f["local_exec_p50_ms"]),
                  str(f["local_exec_p99_ms"]), "", "")
    table.add_row(f"ssh, fresh connection (shell rc {f['ssh_shell_rc']})", str(f["ssh_fresh_p50_ms"]), str(f["ssh_fresh_p99_ms"]), "", "")
    table.add_row("ssh, ControlMaster connection", str(f["ssh_controlmaster_p50_ms"]),
                  str(f["ssh_controlmaster_p99_ms"]), "", "")
    speedup = f["speedup_vs_controlmaster"]
    table.add_row("speedup: ControlMaster p50 / agent p50", f"{speedup}x", "", f">= {TARGET_SPEEDUP:g}x",
                  cluster.met(float(speedup or 0), TARGET_SPEEDUP, at_most=False))  # type: ignore[arg-type]
    table.add_row("speedup: fresh ssh p50 / agent p50", f"{f['speedup_vs_fresh']}x", "", "", "")
    Console().print(table)
    print(f"took {f['elapsed_s']} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    parser.add_argument("--runs", type=int, default=300, help="timed runs of each agent method and of ControlMaster ssh")
    parser.add_argument("--ssh-fresh-runs", type=int, default=100, help="timed runs of ssh with a fresh connection")
    parser.add_argument("--warmup", type=int, default=20, help="untimed runs before each method")
    parser.add_argument("--keep-shell-rc", action="store_true",
                        help="let the ssh user's shell read its rc files (by default sshd tells bash it is nested)")
    args = parser.parse_args()
    if args.runs < 1 or args.ssh_fresh_runs < 1 or args.warmup < 0:
        parser.error("--runs and --ssh-fresh-runs must be >= 1, --warmup >= 0")

    try:
        figures = run(runs=args.runs, fresh_runs=args.ssh_fresh_runs, warmup=args.warmup,
                      keep_shell_rc=args.keep_shell_rc, log=cluster.log)
    except SetupError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
    cluster.emit(figures, as_json=args.json, table=print_table)


if __name__ == "__main__":
    main()
