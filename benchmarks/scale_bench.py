"""Ten thousand node agents on one control plane: memory per agent, a 1,000-node fan-out, reconnect after a restart.

Usage: ``python benchmarks/scale_bench.py [--json] [--agents N] [--procs K] [--rate R] [--idle-s S]``

A throwaway site (SQLite, the embedded default) with N registered nodes (the first
1,000 labelled ``fan=yes``) and a real ``squads serve`` child process. N agents are
simulated with the real protocol by K ``benchmarks/agent_sim.py`` processes, N/K
``squads.node_agent.service.Agent`` objects on one asyncio loop each (see that file). Measured:

- ``connect_all_s``: from starting the simulators until ``GET /api/nodes/summary``
  reports all N online (polled once a second);
- ``rss_per_agent_kib``: the server's VmRSS with all N connected and idle for
  ``--idle-s`` seconds, minus its VmRSS after a warm-up with no agent, over N;
- ``fanout_1000_s``: one ``POST /api/run`` of ``true`` on the ``fan=yes`` nodes (each
  agent forks /usr/bin/true), until the whole response; a node without exit code 0
  counts as an error;
- ``reconnect_all_s``: SIGTERM the server, start a new one on the same port and data
  dir, and time from its first 200 on /healthz until the summary reports N online;
- ``errors``: fan-out failures + agents that stopped, crashed or never came (back)
  online + non-200 (or failed) API responses.

"Online" is what the summary says, polled once a second (``--watch summary``, the
default). ``--watch simulators`` instead counts the welcomes the simulated agents got and
asks the summary once, to confirm, when they all have one: it keeps API requests out of
the way of a connection storm (the summary answers late, or not at all, while thousands
of agents authenticate; ``summary_max_s`` shows how late).

Targets (printed, never asserted): <= 64 KiB per agent, fan-out <= 3 s,
reconnect <= 60 s, 0 errors.
"""

from __future__ import annotations

import argparse
import json
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks import _cluster as cluster  # noqa: E402

TARGET_RSS_KIB = 64.0
TARGET_FANOUT_S = 3.0
TARGET_RECONNECT_S = 60.0
FANOUT_NODES = 1000
SIMULATOR = Path(__file__).resolve().with_name("agent_sim.py")


class Simulators:
    """K agent_sim.py children and the latest progress line of each."""

    def __init__(self, folder: Path, *, creds: Path, total: int, procs: int, server: str, policy: Path,
                 rate: float, max_connecting: int) -> None:
        self.procs: list[subprocess.Popen[str]] = []
        self.latest: dict[int, dict[str, Any]] = {}
        self.lock = threading.Lock()
        self.readers: list[threading.Thread] = []
        self.folder = folder
        share, extra = divmod(total, procs)
        start = 0
        for sim in range(procs):
            count = share + (1 if sim < extra else 0)
            if count == 0:
                continue
            log = open(folder / f"sim{sim}.log", "wb")  # noqa: SIM115
            try:
                proc = subprocess.Popen(
                    [sys.executable, str(SIMULATOR), "--creds", str(creds), "--start", str(start),
                     "--count", str(count), "--server", server, "--policy", str(policy), "--rate", str(rate),
                     "--max-connecting", str(max_connecting), "--sim", str(sim)],
                    stdout=subprocess.PIPE, stderr=log, stdin=subprocess.DEVNULL, text=True,
                )
            finally:
                log.close()
            self.procs.append(proc)
            reader = threading.Thread(target=self._read, args=(sim, proc), daemon=True)
            reader.start()
            self.readers.append(reader)
            start += count

    def _read(self, sim: int, proc: subprocess.Popen[str]) -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            try:
                status = json.loads(line)
            except ValueError:
                continue
            with self.lock:
                self.latest[sim] = status

    def total(self, key: str) -> int:
        with self.lock:
            return sum(int(s.get(key) or 0) for s in self.latest.values())

    def dead(self) -> list[int]:
        return [p.returncode for p in self.procs if p.poll() is not None]

    def reasons(self) -> dict[str, int]:
        merged: dict[str, int] = {}
        with self.lock:
            for status in self.latest.values():
                for reason, count in (status.get("reasons") or {}).items():
                    merged[reason] = merged.get(reason, 0) + count
        return merged

    def stop(self) -> list[int | None]:
        for proc in self.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        codes: list[int | None] = []
        deadline = time.monotonic() + 60  # one SIGTERM each: a second one would cut a clean shutdown short
        for proc in self.procs:
            try:
                codes.append(proc.wait(timeout=max(0.1, deadline - time.monotonic())))
            except subprocess.TimeoutExpired:
                proc.kill()
                codes.append(proc.wait(timeout=10))
        for reader in self.readers:
            reader.join(timeout=5)
        return codes


class Api:
    """The control plane's API with a token; counts answers that are not 200."""

    def __init__(self, port: int, token: str) -> None:
        import httpx

        self.httpx = httpx
        self.port, self.token = port, token
        self.client = self._client()
        self.failures: list[str] = []
        self.summary_s: list[float] = []  # how long each summary took to answer

    def online(self) -> int | None:
        started = time.monotonic()
        try:
            response = self.client.get("/api/nodes/summary")
        except self.httpx.HTTPError as exc:
            self.failures.append(f"GET /api/nodes/summary after {time.monotonic() - started:.1f} s: {exc!r}")
            return None
        finally:
            self.summary_s.append(time.monotonic() - started)
        if response.status_code != 200:
            self.failures.append(f"GET /api/nodes/summary: {response.status_code} {response.text[:200]}")
            return None
        return int(response.json()["online"])

    def run(self, body: dict[str, Any], timeout: float) -> list[dict[str, Any]] | None:
        try:
            response = self.client.post("/api/run", json=body, timeout=timeout)
        except self.httpx.HTTPError as exc:
            self.failures.append(f"POST /api/run: {exc!r}")
            return None
        if response.status_code != 200:
            self.failures.append(f"POST /api/run: {response.status_code} {response.text[:200]}")
            return None
        return list(response.json())

    def _client(self):  # type: ignore[no-untyped-def]
        return self.httpx.Client(base_url=f"http://127.0.0.1:{self.port}", timeout=60,
                                 headers={"Authorization": f"Bearer {self.token}"})

    def reconnect(self) -> None:
        """New connections (after a server restart); the counts go on."""
        self.client.close()
        self.client = self._client()

    def close(self) -> None:
        self.client.close()


def wait_online(api: Api, want: int, *, since: float, timeout: float, sims: Simulators,
                log: Callable[[str], None], label: str, watch: str) -> tuple[float | None, int]:
    """Once a second until ``want`` are online: (seconds since ``since`` or None, online seen last).

    ``watch="summary"`` polls GET /api/nodes/summary; ``"simulators"`` reads the agents' own
    count of welcomes and asks the summary only to confirm once they all say so."""
    started = since
    last = 0
    while True:
        if watch == "summary" or sims.total("connected") >= want:
            online = api.online()
        else:
            online = None
            last = sims.total("connected")
        now = time.monotonic()
        if online is not None:
            last = online
        if online is not None and online >= want:
            return now - started, online
        if now - started > timeout:
            log(f"{label}: only {last} of {want} online after {timeout:g} s; giving up")
            return None, last
        if len(sims.dead()) == len(sims.procs):
            log(f"{label}: every simulator exited; giving up")
            return None, last
        log(f"{label}: {now - started:5.1f} s, online {last}/{want} (simulators: "
            f"connected {sims.total('connected')}, started {sims.total('started')}, "
            f"stopped {sims.total('stopped')}, crashed {sims.total('crashed')})")
        time.sleep(max(0.0, 1.0 - (time.monotonic() - now)))


def run(*, agents: int, procs: int, rate: float, max_connecting: int, idle_s: float, connect_timeout: float,
        reconnect_timeout: float, watch: str, keep: bool, log: Callable[[str], None]) -> dict[str, Any]:
    cluster.raise_nofile()
    began = time.monotonic()
    figures: dict[str, Any] = {"agents": agents, "procs": procs, "watch": watch}
    errors: dict[str, int] = {}
    root = Path(tempfile.mkdtemp(prefix="squads-scale-"))
    server: subprocess.Popen[bytes] | None = None
    sims: Simulators | None = None
    api: Api | None = None
    try:
        site = cluster.make_site(root)
        context = cluster.app_context(site)
        fan = min(FANOUT_NODES, agents)
        names = [f"node-{i:05d}" for i in range(agents)]
        fan_names = set(names[:fan])
        started = time.monotonic()
        creds = cluster.register_nodes(context, names, lambda n: {"fan": "yes" if n in fan_names else "no"})
        figures["register_s"] = round(time.monotonic() - started, 2)
        token = cluster.api_token(context)
        context.db.engine.dispose()
        creds_file = root / "creds.json"
        creds_file.write_text(json.dumps([[c.node_id, c.name, c.token] for c in creds]))
        creds_file.chmod(0o600)
        log(f"registered {agents} nodes in {figures['register_s']} s")

        port = cluster.free_port()
        server_log = root / "server.log"
        server = cluster.start_server(site, port, server_log)
        cluster.wait_healthz(port, server)
        api = Api(port, token)
        for _ in range(5):  # warm-up: the summary route, its queries and the policy caches
            api.online()
        time.sleep(2)
        rss_before = cluster.rss_kib(server.pid)
        figures["server_rss_before_mib"] = round(rss_before / 1024, 1)
        log(f"server pid {server.pid} on port {port}: {figures['server_rss_before_mib']} MiB with no agent")

        sims_at = time.monotonic()
        sims = Simulators(root, creds=creds_file, total=agents, procs=procs, server=f"http://127.0.0.1:{port}",
                          policy=site.policy, rate=rate, max_connecting=max_connecting)
        seconds, online = wait_online(api, agents, since=sims_at, timeout=connect_timeout, sims=sims, log=cluster.log,
                                      label="connect", watch=watch)
        figures["connect_all_s"] = None if seconds is None else round(seconds, 1)
        figures["online_after_connect"] = online
        if online < agents:
            errors["never_online"] = agents - online

        time.sleep(idle_s)
        rss_after = cluster.rss_kib(server.pid)
        figures["server_rss_after_mib"] = round(rss_after / 1024, 1)
        # Per connected agent: the summary's count, or the simulators' when the summary did not answer.
        connected = online if online else sims.total("connected")
        figures["connected_for_rss"] = connected
        figures["rss_per_agent_kib"] = round((rss_after - rss_before) / connected, 1) if connected else None
        log(f"server RSS {figures['server_rss_after_mib']} MiB with {connected} idle agents: "
            f"{figures['rss_per_agent_kib']} KiB each")

        body = {"agent": cluster.BENCH_AGENT, "argv": ["true"], "labels": {"fan": "yes"}}
        started = time.monotonic()
        answers = api.run(body, timeout=300)
        figures["fanout_1000_s"] = round(time.monotonic() - started, 2)
        figures["fanout_nodes"] = fan
        if answers is None:
            errors["fanout_failed"] = fan
        else:
            bad = [a for a in answers if a.get("error") or a.get("exit_code") != 0]
            errors["fanout"] = len(bad) + max(0, fan - len(answers))
            figures["fanout_answers"] = len(answers)
            if bad:
                figures["fanout_error_sample"] = sorted({str(a.get("error"))[:160] for a in bad})[:3]
        log(f"fan-out to {fan} nodes: {figures['fanout_1000_s']} s, {errors.get('fanout', fan)} failed")

        # Restart: the agents notice the close and reconnect with their own backoff.
        sigterm_at = time.monotonic()
        cluster.stop(server, timeout=60)
        figures["shutdown_s"] = round(time.monotonic() - sigterm_at, 2)
        server = cluster.start_server(site, port, server_log)
        try:
            # A long per-request timeout: under the reconnect storm /healthz waits its turn in the
            # server's thread pool, and a client that gives up after 1 s would never be answered.
            healthy_at = cluster.wait_healthz(port, server, timeout=reconnect_timeout, interval=0.02,
                                              request_timeout=30.0)
        except RuntimeError as exc:
            log(f"restart: {exc}")
            errors["restart_not_healthy"] = 1
            healthy_at = None
        api.reconnect()
        if healthy_at is not None:
            figures["restart_to_healthz_s"] = round(healthy_at - sigterm_at, 2)
            seconds, online = wait_online(api, agents, since=healthy_at, timeout=reconnect_timeout, sims=sims,
                                          log=cluster.log, label="reconnect", watch=watch)
            figures["reconnect_all_s"] = None if seconds is None else round(seconds, 1)
            figures["sigterm_to_all_online_s"] = (None if seconds is None
                                                  else round(healthy_at + seconds - sigterm_at, 1))
        else:
            online = sims.total("connected")
        figures["online_after_reconnect"] = online
        if online < agents:
            errors["not_back_online"] = agents - online
        figures["server_rss_after_reconnect_mib"] = round(cluster.rss_kib(server.pid) / 1024, 1)
        figures["agent_connections"] = sims.total("connections")
    finally:
        if sims is not None:
            codes = sims.stop()
            errors["agents_stopped"] = sims.total("stopped")
            errors["agents_crashed"] = sims.total("crashed")
            errors["simulators_failed"] = sum(1 for c in codes if c not in (0, None))
            if errors["simulators_failed"]:
                figures["simulator_exit_codes"] = codes
                figures["simulator_log_tail"] = {
                    f"sim{i}": (sims.folder / f"sim{i}.log").read_text(errors="replace").strip().splitlines()[-3:]
                    for i, c in enumerate(codes) if c not in (0, None)
                }
            reasons = sims.reasons()
            if reasons:
                figures["agent_stop_reasons"] = reasons
        if api is not None:
            errors["api_non_200"] = len(api.failures)
            if api.summary_s:
                figures["summary_max_s"] = round(max(api.summary_s), 2)
            if api.failures:
                figures["api_failure_sample"] = api.failures[:3]
            api.close()
        cluster.stop(server, timeout=60)
        if keep:
            log(f"kept {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)
    figures["errors"] = sum(errors.values())
    figures["error_breakdown"] = {k: v for k, v in errors.items() if v}
    figures["elapsed_s"] = round(time.monotonic() - began, 1)
    return figures


def print_table(f: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    def num(value: Any) -> float:
        return float("nan") if value is None else float(value)

    table = Table(title=f"Scale: {f['agents']:,} agents in {f['procs']} simulator processes")
    for column in ("measure", "value", "target", "status"):
        table.add_column(column)
    table.add_row("connect all (first start)", f"{f.get('connect_all_s')} s", "", "")
    table.add_row("server RSS, no agent -> all idle",
                  f"{f.get('server_rss_before_mib')} -> {f.get('server_rss_after_mib')} MiB", "", "")
    table.add_row("server RSS per agent", f"{f.get('rss_per_agent_kib')} KiB", f"<= {TARGET_RSS_KIB:g} KiB",
                  cluster.met(num(f.get("rss_per_agent_kib")), TARGET_RSS_KIB))
    table.add_row(f"fan-out of `true` to {f.get('fanout_nodes')} nodes (one POST /api/run)",
                  f"{f.get('fanout_1000_s')} s", f"<= {TARGET_FANOUT_S:g} s",
                  cluster.met(num(f.get("fanout_1000_s")), TARGET_FANOUT_S))
    table.add_row("reconnect all after a restart (from /healthz)", f"{f.get('reconnect_all_s')} s",
                  f"<= {TARGET_RECONNECT_S:g} s", cluster.met(num(f.get("reconnect_all_s")), TARGET_RECONNECT_S))
    table.add_row("  SIGTERM -> new server answers /healthz", f"{f.get('restart_to_healthz_s')} s", "", "")
    table.add_row("  SIGTERM -> all online again", f"{f.get('sigterm_to_all_online_s')} s", "", "")
    table.add_row("server RSS after the reconnect", f"{f.get('server_rss_after_reconnect_mib')} MiB", "", "")
    table.add_row("errors", f"{f['errors']} {f['error_breakdown'] or ''}", "0", "met" if f["errors"] == 0 else "not met")
    Console().print(table)
    for key in ("fanout_error_sample", "agent_stop_reasons", "api_failure_sample"):
        if f.get(key):
            print(f"{key}: {f[key]}")
    print(f"registered nodes in {f.get('register_s')} s; whole run {f['elapsed_s']} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    parser.add_argument("--agents", type=int, default=10_000, help="agents to simulate (and nodes to register)")
    parser.add_argument("--procs", type=int, default=4, help="simulator processes")
    parser.add_argument("--rate", type=float, default=250.0, help="agents each simulator starts per second")
    parser.add_argument("--max-connecting", type=int, default=100,
                        help="agents each simulator lets wait for their first welcome at once")
    parser.add_argument("--idle-s", type=float, default=5.0, help="idle time before the second RSS reading")
    parser.add_argument("--connect-timeout", type=float, default=None,
                        help="give up on the first connect after this many seconds (default 60 + N/20)")
    parser.add_argument("--reconnect-timeout", type=float, default=300.0)
    parser.add_argument("--watch", choices=("summary", "simulators"), default="summary",
                        help="how to tell all are online: poll GET /api/nodes/summary once a second (default), "
                             "or count the simulators' welcomes and confirm with one summary")
    parser.add_argument("--keep", action="store_true", help="keep the temp dir (logs, database) for inspection")
    args = parser.parse_args()
    if args.agents < 1 or args.procs < 1:
        parser.error("--agents and --procs must be >= 1")

    figures = run(agents=args.agents, procs=min(args.procs, args.agents), rate=args.rate,
                  max_connecting=args.max_connecting, idle_s=args.idle_s,
                  connect_timeout=args.connect_timeout or 60 + args.agents / 20,
                  reconnect_timeout=args.reconnect_timeout, watch=args.watch, keep=args.keep, log=cluster.log)
    cluster.emit(figures, as_json=args.json, table=print_table)


if __name__ == "__main__":
    main()
