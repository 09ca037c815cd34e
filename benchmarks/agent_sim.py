"""Many real node agents in one process: the product's ``Agent`` objects on one asyncio loop.

Usage (started by ``scale_bench.py``, one per simulator process)::

    python benchmarks/agent_sim.py --creds FILE --start I --count N --server URL --policy FILE \
        [--rate PER_S] [--max-connecting M] [--sim ID]

``FILE`` is a JSON list of ``[node_id, name, token]``; this process runs agents
``I .. I+N-1``. Each is ``squads.node_agent.service.Agent`` with the real protocol (hello, heartbeats,
run requests decided again under ``--policy``, /usr/bin/true forked by the product's
``LocalExecutor``); only the machine facts are gathered once and shared. Agents are
started at most ``--rate`` per second and at most ``--max-connecting`` waiting for their
first welcome at a time, so a control plane that accepts slowly sets the pace. The
product's own backoff (0.5 s base, 30 s cap, full jitter) governs reconnects.

Prints one JSON line a second to stdout (started, connected, stopped, crashed, requests
received, connections made) and a final line with ``"final": true`` after SIGTERM/SIGINT,
when every agent has been stopped. Warnings go to stderr.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import signal
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks._cluster import raise_nofile  # noqa: E402

from squads.node_agent.policy import load_policy  # noqa: E402
from squads.node_agent.service import Agent, AgentOptions, AgentStopped, agent_url, gather_facts  # noqa: E402
from tools.executors.local import LocalExecutor  # noqa: E402


class Simulator:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.agents: list[Agent] = []
        self.tasks: list[asyncio.Task[None]] = []
        self.stopped = 0  # AgentStopped: the control plane refused or closed for good
        self.crashed = 0  # anything else that ended an agent's run()
        self.reasons: dict[str, int] = {}
        self.started_at = time.monotonic()
        self.launched_all_at: float | None = None
        self.first_all_connected_at: float | None = None

    async def _one(self, agent: Agent) -> None:
        try:
            await agent.run()
        except AgentStopped as exc:
            self.stopped += 1
            self._reason(f"stopped: {exc}")
        except Exception as exc:  # noqa: BLE001 - counted and reported, the others go on
            self.crashed += 1
            self._reason(f"crashed: {exc!r}")

    def _reason(self, text: str) -> None:
        key = text[:200]
        self.reasons[key] = self.reasons.get(key, 0) + 1

    def status(self, *, final: bool = False) -> dict[str, object]:
        connected = sum(1 for a in self.agents if a.connected.is_set())
        now = time.monotonic()
        if self.first_all_connected_at is None and connected == self.args.count:
            self.first_all_connected_at = now
        return {
            "sim": self.args.sim, "t": round(now - self.started_at, 2), "count": self.args.count,
            "started": len(self.agents), "connected": connected, "stopped": self.stopped, "crashed": self.crashed,
            "received": sum(len(a.seen) for a in self.agents),
            "connections": sum(a.connections for a in self.agents),
            "launch_s": None if self.launched_all_at is None else round(self.launched_all_at - self.started_at, 2),
            "all_connected_s": None if self.first_all_connected_at is None
            else round(self.first_all_connected_at - self.started_at, 2),
            "reasons": dict(sorted(self.reasons.items(), key=lambda kv: -kv[1])[:5]),
            "final": final,
        }

    async def _report(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            print(json.dumps(self.status()), flush=True)
            try:
                await asyncio.wait_for(stop.wait(), 1.0)
            except TimeoutError:
                pass

    async def main(self) -> None:
        args = self.args
        creds = json.loads(Path(args.creds).read_text())[args.start : args.start + args.count]
        if len(creds) != args.count:
            raise SystemExit(f"--creds holds {len(creds)} nodes from {args.start}, not {args.count}")
        policy = load_policy(Path(args.policy))
        facts = gather_facts(policy)  # once: every simulated node reports the same machine
        executor = LocalExecutor(env_passthrough=policy.node.env_passthrough, extra_env=policy.node.env)
        url = agent_url(args.server)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        reporter = asyncio.create_task(self._report(stop))

        waiting: list[Agent] = []
        interval = 1.0 / args.rate if args.rate > 0 else 0.0
        next_at = time.monotonic()
        for node_id, _name, token in creds:
            if stop.is_set():
                break
            while True:
                waiting = [a for a in waiting if not a.connected.is_set() and a.connections == 0]
                if len(waiting) < args.max_connecting or stop.is_set():
                    break
                await asyncio.sleep(0.02)
            delay = next_at - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            next_at = max(next_at + interval, time.monotonic() - 1.0)  # no burst to catch up after a stall
            options = AgentOptions(url=url, node_id=node_id, token=token, policy=policy, facts=facts,
                                   backoff_base_s=0.5, backoff_cap_s=30.0)
            agent = Agent(options, executor=executor)
            self.agents.append(agent)
            waiting.append(agent)
            self.tasks.append(asyncio.create_task(self._one(agent)))
        self.launched_all_at = time.monotonic()

        await stop.wait()
        await asyncio.gather(*(a.stop() for a in self.agents), return_exceptions=True)
        _done, pending = await asyncio.wait(self.tasks, timeout=20) if self.tasks else (set(), set())
        for task in pending:
            task.cancel()
        reporter.cancel()
        print(json.dumps(self.status(final=True)), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--creds", required=True, help="JSON list of [node_id, name, token]")
    parser.add_argument("--start", type=int, required=True)
    parser.add_argument("--count", type=int, required=True)
    parser.add_argument("--server", required=True, help="the control plane's URL, e.g. http://127.0.0.1:8700")
    parser.add_argument("--policy", required=True, help="the agents' own policy file")
    parser.add_argument("--rate", type=float, default=250.0, help="agents started per second (0: no limit)")
    parser.add_argument("--max-connecting", type=int, default=100, help="agents waiting for a first welcome at once")
    parser.add_argument("--sim", type=int, default=0, help="this simulator's number (in the progress lines)")
    args = parser.parse_args()
    raise_nofile()
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr,
                        format=f"%(asctime)s sim{args.sim} %(levelname)s %(name)s %(message)s")
    for noisy in ("websockets", "asyncio"):
        logging.getLogger(noisy).setLevel(logging.ERROR)
    asyncio.run(Simulator(args).main())


if __name__ == "__main__":
    main()
