"""The control plane's live side of the node registry: which agents are connected, and dispatch.

One ``Hub`` lives in the server process, on its event loop. It holds one
``Link`` per connected node and the requests in flight on it. Nothing is
queued for a node that is not connected: a request for an offline node fails
at once, and a request on a link that drops fails at once with "node N
disconnected while running ...". Database writes (last seen, facts, agent
version) are batched by a housekeeping task so ten thousand heartbeats do not
become ten thousand transactions.
"""

from __future__ import annotations

import asyncio
import json
import logging
import shlex
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any
from datetime import UTC, datetime

from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker

from squads.accounts.credentials import matches
from squads.node_agent.protocol import (
    AGENT_FRAMES,
    CLOSE_BAD_FRAME,
    CLOSE_GOING_AWAY,
    CLOSE_HEARTBEAT,
    CLOSE_REPLACED,
    CLOSE_REVOKED,
    PROTOCOL,
    Cancel,
    Duplicate,
    Facts,
    FrameError,
    Heartbeat,
    Hello,
    Refused,
    Result,
    Run,
    Welcome,
    parse_text,
    unpack_chunk,
)
from squads.textsafety.display import display_text
from squads.nodes.models import LOCAL_NODE, NodeConfig, node_config
from squads.nodes.tables import NodeRecord
from squads.storage.db import session_scope
from tools.executors.base import ExecResult, Interrupted, NodeRefused, NotRun, RunContext, output_digest
from tools.executors.local import decode_output

log = logging.getLogger("squads.hub")

MAX_IN_FLIGHT = 64  # requests per node; more is refused, never queued
ANSWER_GRACE_S = 5.0  # beyond the command's own timeout, for the agent to kill it and report


@dataclass(eq=False, slots=True)
class Pending:
    """One request in flight: the output received so far and the future its caller waits on."""

    argv: tuple[str, ...]
    max_output: int
    future: asyncio.Future[ExecResult]
    stdout: bytearray = field(default_factory=bytearray)
    stderr: bytearray = field(default_factory=bytearray)
    cut: set[str] = field(default_factory=set)  # streams the control plane cut at max_output

    def feed(self, stream: str, data: bytes) -> None:
        buf = self.stdout if stream == "stdout" else self.stderr
        room = self.max_output - len(buf)
        if len(data) > room:
            data = data[: max(room, 0)]
            self.cut.add(stream)
        buf += data


@dataclass(eq=False, slots=True)
class Link:
    """One connected agent."""

    node_id: str
    name: str
    generation: int
    send_text: Callable[[str], Awaitable[None]]
    close: Callable[[int, str], Awaitable[None]]
    peer: str = ""
    version: str = ""
    facts: Facts | None = None
    connected_at: float = field(default_factory=time.time)
    last_seen: float = field(default_factory=time.time)
    running: int = 0
    pending: dict[str, Pending] = field(default_factory=dict)
    closing: bool = False
    facts_written: bool = False


@dataclass(frozen=True, slots=True)
class Credential:
    """What the hub keeps in memory of a registered node, so a handshake needs no database."""

    node_id: str
    name: str
    token_sha256: str
    generation: int
    revoked: bool
    labels: dict[str, str]


@dataclass(frozen=True, slots=True)
class NodeState:
    """What the API shows of a node's connection."""

    online: bool
    last_seen: str | None
    connected_since: str | None
    peer: str | None
    running: int
    version: str | None = None
    facts: dict[str, object] | None = None


def shown(argv: Sequence[str]) -> str:
    """A command as people type it, in backquotes, with nothing that can spoof a terminal."""
    return f"`{display_text(shlex.join(argv))}`"


def _iso(ts: float | None) -> str | None:
    return None if ts is None else datetime.fromtimestamp(ts, UTC).isoformat(timespec="seconds")


class Hub:
    """Connected agents and the requests in flight to them."""

    def __init__(
        self, *, sessions: sessionmaker[Session], readers: sessionmaker[Session] | None = None,
        heartbeat_s: float = 20.0, housekeeping_s: float = 5.0,
    ) -> None:
        """``heartbeat_s`` is what agents are told; a link silent for three of them is closed."""
        self.sessions = sessions
        self.readers = readers or sessions
        # Registered nodes by id, reloaded every housekeeping round and updated at once by this
        # process's own registry changes: ten thousand reconnecting agents cost no database reads.
        self.credentials: dict[str, Credential] = {}
        self.heartbeat_s = heartbeat_s
        self.housekeeping_s = housekeeping_s
        self.links: dict[str, Link] = {}
        self.loop: asyncio.AbstractEventLoop | None = None
        self._last_seen: dict[str, float] = {}  # nodes seen since this process started, by name
        self._dirty: dict[str, Link] = {}  # node id -> link whose facts/last seen the database lacks
        self._persisted: dict[str, float] = {}  # node id -> last_seen last written
        self._task: asyncio.Task[None] | None = None

    # -- lifecycle -----------------------------------------------------------------------------
    async def start(self) -> None:
        """Bind to the running loop, forget connections a previous process left marked, start housekeeping."""
        self.loop = asyncio.get_running_loop()
        await asyncio.to_thread(self._clear_connections)
        await asyncio.to_thread(self.reload_credentials)
        self._task = asyncio.create_task(self._housekeeping(), name="hub-housekeeping")

    async def stop(self) -> None:
        """Close every link (agents reconnect to the next process) and write what is pending."""
        if self._task is not None:
            self._task.cancel()
        for link in list(self.links.values()):
            self.detach(link, "control plane shutting down")
            await self._close(link, CLOSE_GOING_AWAY, "control plane shutting down")
        rows, _ = self._rows_to_write()
        await asyncio.to_thread(self._write, rows, {})

    # -- connections ---------------------------------------------------------------------------
    async def attach(self, link: Link, hello: Hello) -> Welcome:
        """Register a link that said hello; an older link for the same node is closed."""
        link.version, link.facts = hello.version, hello.facts
        old = self.links.get(link.name)
        self.links[link.name] = link
        self._dirty[link.node_id] = link
        if old is not None and old is not link:
            log.warning("node %s: a new connection from %s replaces the one from %s", link.name, link.peer, old.peer)
            self._fail_pending(old, f"node {old.name} was taken over by another connection while running")
            await self._close(old, CLOSE_REPLACED, "replaced by a newer connection for this node")
        log.info("node %s connected from %s (agent %s)", link.name, link.peer, link.version)
        return Welcome(protocol=PROTOCOL, node=link.name, heartbeat_s=self.heartbeat_s)

    def detach(self, link: Link, why: str) -> None:
        """Forget a link whose connection ended; its requests fail now, not at their timeout."""
        if self.links.get(link.name) is link:
            del self.links[link.name]
            log.info("node %s disconnected (%s)", link.name, why)
        link.last_seen = time.time()
        self._last_seen[link.name] = link.last_seen
        self._dirty[link.node_id] = link
        self._fail_pending(link, f"node {link.name} disconnected while running")

    def _fail_pending(self, link: Link, prefix: str) -> None:
        for pending in list(link.pending.values()):
            if not pending.future.done():
                pending.future.set_exception(Interrupted(f"{prefix} {shown(pending.argv)}"))
        link.pending.clear()

    async def _close(self, link: Link, code: int, reason: str) -> None:
        if link.closing:
            return
        link.closing = True
        try:
            await link.close(code, reason)
        except Exception:  # noqa: BLE001 - the connection is already gone; nothing to do
            pass

    # -- frames from agents --------------------------------------------------------------------
    async def on_text(self, link: Link, text: str) -> None:
        """Handle a text frame; a frame that breaks the protocol closes the link."""
        link.last_seen = time.time()
        try:
            frame = parse_text(AGENT_FRAMES, text)
        except FrameError as exc:
            await self.reject(link, str(exc))
            return
        if isinstance(frame, Heartbeat):
            link.running = frame.running
        elif isinstance(frame, Result):
            self._finish(link, frame)
        elif isinstance(frame, Refused):
            self._refused(link, frame)
        elif isinstance(frame, Duplicate):
            self._settle(link, frame.id, NotRun(
                f"node {link.name} had already received request {frame.id} and did not run it again"
            ))
        else:  # a second hello
            await self.reject(link, f"unexpected {type(frame).__name__.lower()} message")

    async def on_binary(self, link: Link, data: bytes) -> None:
        """Handle an output frame for a request in flight."""
        link.last_seen = time.time()
        try:
            request_id, stream, chunk = unpack_chunk(data)
        except FrameError as exc:
            await self.reject(link, str(exc))
            return
        pending = link.pending.get(request_id)
        if pending is not None:
            pending.feed(stream, chunk)

    async def reject(self, link: Link, problem: str) -> None:
        """Log a protocol violation and close the link."""
        log.warning("node %s (%s): %s; closing the connection", link.name, link.peer, problem)
        await self._close(link, CLOSE_BAD_FRAME, problem[:120])

    def _settle(self, link: Link, request_id: str, outcome: ExecResult | BaseException) -> None:
        pending = link.pending.pop(request_id, None)
        if pending is None or pending.future.done():
            log.info("node %s: answer for request %s, which nobody waits for any more", link.name, request_id)
            return
        if isinstance(outcome, BaseException):
            pending.future.set_exception(outcome)
        else:
            pending.future.set_result(outcome)

    def _refused(self, link: Link, frame: Refused) -> None:
        pending = link.pending.get(frame.id)
        what = shown(pending.argv) if pending else "the command"
        message = f"node {link.name} refused {what}: its own policy says: {frame.reason}"
        self._settle(link, frame.id, NodeRefused(
            message, node=link.name, verdict=frame.verdict, rule=frame.rule, reason=frame.reason
        ))

    def _finish(self, link: Link, frame: Result) -> None:
        pending = link.pending.get(frame.id)
        if pending is None:
            self._settle(link, frame.id, ExecResult(frame.exit_code, "", "", frame.duration_ms))
            return
        out_cut = frame.stdout_truncated or "stdout" in pending.cut
        err_cut = frame.stderr_truncated or "stderr" in pending.cut
        # The marker names the cap that cut: the agent's own may be smaller than the one asked for.
        out_limit = pending.max_output if "stdout" in pending.cut else len(pending.stdout)
        err_limit = pending.max_output if "stderr" in pending.cut else len(pending.stderr)
        digest = output_digest(bytes(pending.stdout), bytes(pending.stderr))
        meta = {"via": "agent", "node_rule": frame.rule}
        if digest != frame.output_sha256 and not pending.cut:
            # What arrived is not what the agent says it sent: keep both digests on record.
            log.warning("node %s: output of request %s does not match the agent's digest", link.name, frame.id)
            meta["agent_output_sha256"] = frame.output_sha256
        result = ExecResult(
            exit_code=frame.exit_code,
            stdout=decode_output(bytes(pending.stdout), out_cut, out_limit),
            stderr=decode_output(bytes(pending.stderr), err_cut, err_limit),
            duration_ms=frame.duration_ms,
            stdout_truncated=out_cut,
            stderr_truncated=err_cut,
            timed_out=frame.timed_out,
            output_sha256=digest,
            meta=meta,
        )
        self._settle(link, frame.id, result)

    # -- dispatch ------------------------------------------------------------------------------
    def online(self, name: str) -> bool:
        """Whether an agent for ``name`` is connected to this process now."""
        return name in self.links

    def offline_reason(self, name: str) -> str:
        """A sentence saying since when ``name`` is away."""
        seen = self._last_seen.get(name)
        since = f"its agent disconnected at {_iso(seen)}" if seen else "its agent is not connected to this control plane"
        return f"node {name} is offline ({since}); nothing was run or queued"

    async def run(
        self, *, node: str, argv: Sequence[str], agent: str, timeout: float, max_output: int,
        request_id: str, approved_by: str | None = None,
    ) -> ExecResult:
        """Send one request to ``node``'s agent and wait for its end (or the link's)."""
        link = self.links.get(node)
        if link is None:
            raise NotRun(self.offline_reason(node))
        if len(link.pending) >= MAX_IN_FLIGHT:
            raise NotRun(f"node {node} already runs {MAX_IN_FLIGHT} commands for this control plane; "
                         "nothing was run, try again when some have finished")
        if request_id in link.pending:
            raise NotRun(f"request {request_id} is already in flight on node {node}")
        assert self.loop is not None
        pending = Pending(argv=tuple(argv), max_output=max_output, future=self.loop.create_future())
        link.pending[request_id] = pending
        frame = Run(id=request_id, agent=agent, argv=list(argv), timeout_s=timeout, max_output=max_output,
                    approved_by=approved_by)
        try:
            await link.send_text(frame.model_dump_json())
        except Exception as exc:  # noqa: BLE001 - any send failure means the link is gone
            link.pending.pop(request_id, None)
            raise Interrupted(f"node {node} disconnected while {shown(argv)} was being sent: {exc}") from None
        try:
            return await asyncio.wait_for(asyncio.shield(pending.future), timeout + ANSWER_GRACE_S)
        except TimeoutError:
            link.pending.pop(request_id, None)
            try:
                await link.send_text(Cancel(id=request_id).model_dump_json())
            except Exception:  # noqa: BLE001 - the cancel is best effort; the agent's own timeout holds
                pass
            raise Interrupted(
                f"node {node} did not report the end of {shown(argv)} within "
                f"{timeout + ANSWER_GRACE_S:g}s; it was asked to stop it"
            ) from None

    def run_blocking(
        self, *, node: str, context: RunContext, timeout: float, max_output: int
    ) -> ExecResult:
        """``run`` for a caller on a worker thread (the runtime and the API are synchronous)."""
        if self.loop is None:
            raise NotRun(f"node {node} cannot be reached: this process has no agent endpoint")
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is self.loop:
            raise RuntimeError("run_blocking was called on the hub's own event loop; await Hub.run instead")
        decision = context.decision
        coro = self.run(
            node=node, argv=decision.argv, agent=decision.agent or "", timeout=timeout, max_output=max_output,
            request_id=context.request_id, approved_by=context.approved_by,
        )
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result()

    def run_batch(
        self, runs: Sequence[tuple[Any, RunContext]], *, timeout: float, max_output: int
    ) -> list[ExecResult | BaseException]:
        """Many requests at once from a worker thread (a fan-out): one hop onto the loop, not one per node.

        ``runs`` pairs each node's executor (anything with a ``node`` name) with its context."""
        if self.loop is None:
            return [NotRun(f"node {ex.node} cannot be reached: this process has no agent endpoint") for ex, _ in runs]

        async def gather() -> list[ExecResult | BaseException]:
            return await asyncio.gather(*(
                self.run(node=ex.node, argv=ctx.decision.argv, agent=ctx.decision.agent or "", timeout=timeout,
                         max_output=max_output, request_id=ctx.request_id, approved_by=ctx.approved_by)
                for ex, ctx in runs
            ), return_exceptions=True)

        return asyncio.run_coroutine_threadsafe(gather(), self.loop).result()

    def config(self, cred: Credential) -> NodeConfig:
        """The node as the control plane's policy sees it: its labels, and its programs where its agent found them."""
        link = self.links.get(cred.name)
        programs = dict(link.facts.programs) if link is not None and link.facts is not None else {}
        return node_config(cred.name, cred.labels, programs)

    # -- state -----------------------------------------------------------------------------------
    def state(self, name: str) -> NodeState:
        """The live state of ``name`` as this process sees it."""
        link = self.links.get(name)
        if link is None:
            return NodeState(False, _iso(self._last_seen.get(name)), None, None, 0)
        facts = link.facts.model_dump(mode="json") if link.facts is not None else None
        return NodeState(True, _iso(link.last_seen), _iso(link.connected_at), link.peer, len(link.pending),
                         link.version, facts)

    # -- housekeeping ----------------------------------------------------------------------------
    async def _housekeeping(self) -> None:
        while True:
            await asyncio.sleep(self.housekeeping_s)
            try:
                await self._sweep()
                rows, connected = self._rows_to_write()
                stale = await asyncio.to_thread(self._write, rows, connected)
                for link in stale:
                    await self.kick(link.name, "this node's token was revoked or rotated")
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: BLE001 - housekeeping must survive a database hiccup
                log.exception("hub housekeeping failed; retrying in %ss", self.housekeeping_s)

    async def kick(self, name: str, reason: str) -> None:
        """Close ``name``'s link for good (revoked or rotated token): the agent stops retrying."""
        link = self.links.get(name)
        if link is None:
            return
        self.detach(link, reason)
        await self._close(link, CLOSE_REVOKED, reason[:120])

    def kick_blocking(self, name: str, reason: str) -> None:
        """``kick`` from a worker thread (the node API's revoke and rotate)."""
        if self.loop is not None and self.loop.is_running():
            asyncio.run_coroutine_threadsafe(self.kick(name, reason), self.loop).result(timeout=10)

    async def _sweep(self) -> None:
        deadline = time.time() - 3 * self.heartbeat_s
        for link in [lk for lk in self.links.values() if lk.last_seen < deadline]:
            log.warning("node %s: no heartbeat for %.0fs; closing", link.name, time.time() - link.last_seen)
            self.detach(link, "heartbeat timeout")
            await self._close(link, CLOSE_HEARTBEAT, "no heartbeat")

    def _rows_to_write(self) -> tuple[list[dict[str, object]], dict[str, Link]]:
        """On the loop: what the database lacks. Connects, disconnects and new facts are written at
        the next round; a connected node's last seen at most once a minute."""
        now = time.time()
        dirty, self._dirty = self._dirty, {}
        for link in self.links.values():
            if now - self._persisted.get(link.node_id, 0.0) > 60:
                dirty.setdefault(link.node_id, link)
        rows: list[dict[str, object]] = []
        for node_id, link in dirty.items():
            live = self.links.get(link.name) is link
            row: dict[str, object] = {
                "id": node_id, "last_seen": _iso(link.last_seen),
                "connected_since": _iso(link.connected_at) if live else None,
                "connected_from": link.peer[:100] if live else None,
            }
            if link.facts is not None and not link.facts_written:
                row["facts"] = json.dumps(link.facts.model_dump(mode="json"), sort_keys=True)
                row["agent_version"] = link.version[:64]
                link.facts_written = True
            rows.append(row)
            self._persisted[node_id] = now
        return rows, {link.node_id: link for link in self.links.values()}

    def _write(self, rows: list[dict[str, object]], connected: dict[str, Link]) -> list[Link]:
        """On a worker thread: one transaction for the rows, then the registry reloaded;
        returns connected links whose token was revoked or rotated (by any process)."""
        if rows:
            with session_scope(self.sessions) as session:
                for keys in {tuple(sorted(r)) for r in rows}:
                    session.execute(update(NodeRecord), [r for r in rows if tuple(sorted(r)) == keys])
        credentials = self.reload_credentials()
        return [
            link for node_id, link in connected.items()
            if (cred := credentials.get(node_id)) is None or cred.revoked or cred.generation != link.generation
        ]

    def reload_credentials(self) -> dict[str, Credential]:
        """Read every registered node's id, name, token hash and labels (on a worker thread)."""
        columns = (NodeRecord.id, NodeRecord.name, NodeRecord.token_sha256, NodeRecord.token_generation,
                   NodeRecord.revoked, NodeRecord.labels)
        with self.readers() as session:
            rows = session.execute(select(*columns)).all()
        # A `local` written into the registry (before the name was reserved) counts as revoked: it
        # would otherwise answer for the control-plane host's name.
        self.credentials = {
            row[0]: Credential(row[0], row[1], row[2], row[3], bool(row[4]) or row[1] == LOCAL_NODE,
                               json.loads(row[5] or "{}"))
            for row in rows
        }
        return self.credentials

    def remember(self, record: NodeRecord) -> None:
        """Take this process's own registry change (create, rotate, revoke) into account at once."""
        self.credentials[record.id] = Credential(
            record.id, record.name, record.token_sha256, record.token_generation, bool(record.revoked),
            json.loads(record.labels or "{}"),
        )

    def authenticate(self, node_id: str, token: str) -> Credential | None:
        """The node these credentials belong to, from memory; None when memory cannot tell.

        None (unknown id, a token that does not match, a revoked node) sends the
        caller to the database, which is the authority: a node registered or
        rotated by another process a moment ago is not refused for being new."""
        cred = self.credentials.get(node_id)
        if cred is None or cred.revoked or not matches(cred.token_sha256, token):
            return None
        return cred

    def _clear_connections(self) -> None:
        with session_scope(self.sessions) as session:
            session.execute(update(NodeRecord).where(NodeRecord.connected_since.is_not(None))
                            .values(connected_since=None, connected_from=None))

    def flush(self) -> None:
        """Write everything pending now (at shutdown, and in tests)."""
        self._write(*self._rows_to_write())
