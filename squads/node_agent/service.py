"""The node agent: one outbound WebSocket to the control plane, and the commands it is asked to run.

The agent connects out (so the node needs no inbound rule), says hello with its
facts, heartbeats, and for each request decides again under its own policy,
runs what both allow with the local executor (its own timeout and output caps),
streams the output back and reports the end. It never runs one request id
twice, even across reconnects. When the link drops it reconnects with capped
exponential backoff and full jitter; a refused token, a revoked node or a
certificate it cannot verify stop it with the reason, because retrying cannot
fix those.
"""

from __future__ import annotations

import asyncio
import logging
import platform
import random
import shlex
import socket
import ssl
import threading
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from ipaddress import ip_address
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus
from websockets.protocol import State

from squads.node_agent import __version__
from squads.node_agent.policy import LocalPolicy
from squads.node_agent.protocol import (
    AGENT_PATH,
    CLOSE_BAD_FRAME,
    FATAL_CLOSE_CODES,
    MAX_CHUNK,
    MAX_TEXT_FRAME,
    NODE_HEADER,
    PROTOCOL,
    SERVER_FRAMES,
    VERSION_HEADER,
    check_protocol,
    clip,
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
    pack_chunk,
    parse_text,
)
from squads.nodes.models import NODE_NAME
from permissions.models import Decision, Verdict
from tools.executors.base import ExecResult, RunContext, output_digest
from tools.executors.local import LocalExecutor
from tools.executors.safe_paths import PathRefused

log = logging.getLogger("squads.agent")

EXIT_CONFIG = 78  # EX_CONFIG: the unit's RestartPreventExitStatus, so systemd does not retry either
SEEN_IDS = 10_000  # request ids remembered (at most once, across reconnects)
WELCOME_TIMEOUT_S = 10.0


class AgentConfigError(ValueError):
    """The agent cannot start as configured; the message says what to change."""


class AgentStopped(Exception):
    """Retrying cannot help (wrong token, revoked node, unverifiable certificate); the message says why."""


def agent_url(server: str) -> str:
    """The WebSocket URL of the agent endpoint for a control plane at ``server``.

    ``https://`` becomes ``wss://``. Plain ``http://`` is accepted only for a
    loopback address: anywhere else the token and the commands would cross the
    network in clear, and there is no switch to allow that."""
    parts = urlsplit(server.strip())
    scheme = {"https": "wss", "wss": "wss", "http": "ws", "ws": "ws"}.get(parts.scheme.lower())
    if scheme is None or not parts.hostname:
        raise AgentConfigError(f"--server {server!r}: give the control plane's URL, e.g. https://squads.example.com")
    if scheme == "ws" and not _loopback(parts.hostname):
        raise AgentConfigError(
            f"--server {server!r}: plain http is only allowed on loopback; use https:// "
            "(squads serve --tls-cert/--tls-key, or a TLS reverse proxy in front of it)"
        )
    path = parts.path.rstrip("/") + AGENT_PATH
    return urlunsplit((scheme, parts.netloc, path, "", ""))


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ip_address(host).is_loopback
    except ValueError:
        return False


def read_token(path: Path) -> str:
    """The node token in ``path``, refusing a file that others can read."""
    try:
        mode = path.stat().st_mode
        text = path.read_text().strip()
    except OSError as exc:
        raise AgentConfigError(f"token file {path}: {exc.strerror}") from None
    if mode & 0o077:
        raise AgentConfigError(
            f"token file {path} can be read by other users (mode {mode & 0o777:o}); run: chmod 600 {path}"
        )
    return check_token(text, where=f"token file {path}")


def check_node_name(name: str) -> str:
    """``name`` if it can be a registered node's name; otherwise ``AgentConfigError`` saying so."""
    if not NODE_NAME.fullmatch(name):
        raise AgentConfigError(
            f"--node-name {name!r}: give the name the node was registered under (squads node list), "
            "e.g. web-7: lowercase letters, digits, '.', '_' or '-'"
        )
    return name


def check_token(text: str, *, where: str) -> str:
    """``text`` if it looks like a node token; otherwise ``AgentConfigError`` saying so."""
    if not text.startswith("sqn_") or len(text) > 200 or not text.isascii() or any(c.isspace() for c in text):
        raise AgentConfigError(f"{where} does not hold a node token (sqn_...); `squads node create` makes one")
    return text


def tls_context(ca_file: Path | None) -> ssl.SSLContext:
    """Verified TLS: the system's CAs, or only ``ca_file`` when given."""
    try:
        return ssl.create_default_context(cafile=str(ca_file) if ca_file else None)
    except (OSError, ssl.SSLError) as exc:
        raise AgentConfigError(f"--ca-file {ca_file}: {exc}") from None


def backoff_delay(attempt: int, *, base: float, cap: float, rng: random.Random) -> float:
    """Full jitter: a uniform draw between 0 and the capped exponential bound."""
    return rng.uniform(0, min(cap, base * (2 ** min(attempt, 30))))


def gather_facts(policy: LocalPolicy) -> Facts:
    """What the control plane is told about this machine."""
    os_name = ""
    try:
        for line in Path("/etc/os-release").read_text().splitlines():
            if line.startswith("PRETTY_NAME="):
                os_name = shlex.split(line.partition("=")[2])[0] if line.partition("=")[2] else ""
    except (OSError, ValueError):
        os_name = platform.system()
    return Facts(
        hostname=socket.gethostname()[:255], os=os_name[:255], kernel=platform.release()[:255],
        arch=platform.machine()[:64], python=platform.python_version(), agent_version=__version__,
        programs=policy.found_programs(), policy=policy.source[:255],
    )


@dataclass
class AgentOptions:
    """How one agent connects and what it may run."""

    url: str
    node_id: str
    token: str
    policy: LocalPolicy
    ssl_context: ssl.SSLContext | None = None
    max_timeout_s: float = 300.0
    max_output: int = 4 * 1024 * 1024
    workers: int = 8
    backoff_base_s: float = 0.5
    backoff_cap_s: float = 30.0
    facts: Facts | None = None  # gathered at start when not given (simulations share one)
    # The name this node is registered under (--node-name). A welcome naming another node is refused:
    # the name picks which node-scoped grants apply, so it is not the control plane's to choose.
    node_name: str | None = None


@dataclass(eq=False)
class _Running:
    cancel: threading.Event = field(default_factory=threading.Event)


class Agent:
    """One node's agent. ``run()`` returns when stopped; ``AgentStopped`` when it must not retry."""

    def __init__(self, options: AgentOptions, *, executor: LocalExecutor | None = None,
                 rng: random.Random | None = None) -> None:
        self.options = options
        self.executor = executor or LocalExecutor(
            env_passthrough=options.policy.node.env_passthrough, extra_env=options.policy.node.env
        )
        self.facts = options.facts or gather_facts(options.policy)
        self.rng = rng or random.Random()
        self.seen: OrderedDict[str, None] = OrderedDict()
        self.running: dict[str, _Running] = {}
        self.connected = asyncio.Event()
        self.connections = 0
        self.node_name: str | None = None
        self._pool = ThreadPoolExecutor(max_workers=options.workers, thread_name_prefix="agent-run")
        self._stop = asyncio.Event()
        self._ws: ClientConnection | None = None

    # -- connection loop -----------------------------------------------------------------------
    async def run(self) -> None:
        """Connect, serve, reconnect; until ``stop()`` or a reason to give up (``AgentStopped``)."""
        attempt = 0
        try:
            while not self._stop.is_set():
                try:
                    await self._connect_once()
                    attempt = 0 if self.connected.is_set() else attempt
                except AgentStopped:
                    raise
                except ssl.SSLCertVerificationError as exc:
                    raise AgentStopped(
                        f"cannot verify the control plane's certificate ({exc.verify_message}); "
                        "give the CA that signed it with --ca-file"
                    ) from None
                except InvalidStatus as exc:
                    status, body = exc.response.status_code, exc.response.body.decode(errors="replace").strip()
                    if status in (401, 403):
                        raise AgentStopped(f"the control plane refused this agent ({status}): {body[:200]}") from None
                    log.warning("the control plane answered %s: %s", status, body[:200])
                except (OSError, TimeoutError, InvalidHandshake, ConnectionClosed, FrameError) as exc:
                    log.warning("connection to the control plane failed: %s", exc or type(exc).__name__)
                finally:
                    was_up = self.connected.is_set()
                    self.connected.clear()
                    self._ws = None
                if self._stop.is_set():
                    break
                attempt = 0 if was_up else attempt + 1
                delay = backoff_delay(attempt, base=self.options.backoff_base_s, cap=self.options.backoff_cap_s,
                                      rng=self.rng)
                log.info("reconnecting in %.1fs", delay)
                try:
                    await asyncio.wait_for(self._stop.wait(), delay)
                except TimeoutError:
                    pass
        finally:
            for running in self.running.values():
                running.cancel.set()
            self._pool.shutdown(wait=False, cancel_futures=True)

    async def stop(self) -> None:
        """Close the connection and end ``run()``; running commands are stopped."""
        self._stop.set()
        if self._ws is not None:
            await self._ws.close(1000, "agent stopping")

    async def _connect_once(self) -> None:
        headers = {"Authorization": f"Bearer {self.options.token}", NODE_HEADER: self.options.node_id,
                   VERSION_HEADER: __version__}
        async with connect(
            self.options.url, additional_headers=headers, ssl=self.options.ssl_context, compression=None,
            max_size=MAX_TEXT_FRAME, ping_interval=None, open_timeout=10, close_timeout=2,
            user_agent_header=f"squads-agent/{__version__}",
        ) as ws:
            self._ws = ws
            if self._stop.is_set():  # stop() came while the handshake was under way
                return
            await self._session(ws)

    async def _session(self, ws: ClientConnection) -> None:
        self.connections += 1
        await ws.send(Hello(protocol=PROTOCOL, version=__version__, facts=self.facts).model_dump_json())
        tasks: list[asyncio.Task[None]] = []
        try:
            first = await asyncio.wait_for(ws.recv(), WELCOME_TIMEOUT_S)
            if isinstance(first, bytes):
                raise FrameError("the control plane sent a binary frame instead of welcome")
            welcome = parse_text(SERVER_FRAMES, first)
            if not isinstance(welcome, Welcome):
                raise FrameError("the control plane did not send welcome first")
            check_protocol(welcome.protocol)
            self._check_name(welcome.node)
            self.node_name = welcome.node
            context = self.options.policy.context(welcome.node)
            log.info("connected as node %s (policy: %s)", welcome.node, self.options.policy.source)
            self.connected.set()
            outbox: asyncio.Queue[str | bytes] = asyncio.Queue()
            tasks = [asyncio.create_task(self._send_all(ws, outbox)),
                     asyncio.create_task(self._heartbeats(outbox, welcome.heartbeat_s))]
            async for message in ws:
                if isinstance(message, bytes):
                    raise FrameError("the control plane sent a binary frame")
                frame = parse_text(SERVER_FRAMES, message)
                if isinstance(frame, Run):
                    self._start(frame, context, outbox, ws)
                elif isinstance(frame, Cancel):
                    running = self.running.get(frame.id)
                    if running is not None:
                        running.cancel.set()
                else:
                    raise FrameError("unexpected welcome")
        except FrameError as exc:
            log.error("protocol error from the control plane: %s; reconnecting", exc)
            await ws.close(CLOSE_BAD_FRAME, str(exc)[:120])
        except ConnectionClosed:
            pass
        finally:
            for task in tasks:
                task.cancel()
        rcvd = ws.protocol.close_rcvd
        if rcvd is not None and rcvd.code in FATAL_CLOSE_CODES:
            raise AgentStopped(f"the control plane closed the connection for good: {rcvd.reason or rcvd.code}")
        log.warning("disconnected from the control plane (%s)", rcvd.reason if rcvd and rcvd.reason else "link lost")

    def _check_name(self, offered: str) -> None:
        # Without --node-name, the first welcome's name holds for the life of the process.
        expected = self.options.node_name or self.node_name
        if expected is not None and offered != expected:
            reason = (f"the control plane says this is node {offered!r}, but this agent is node {expected!r}"
                      f"{' (--node-name)' if self.options.node_name else ' (its first welcome)'}; refusing to "
                      "act as another node. If the node was renamed, run squads agent install again")
            log.error("%s", reason)
            raise AgentStopped(reason)

    @staticmethod
    async def _send_all(ws: ClientConnection, outbox: asyncio.Queue[str | bytes]) -> None:
        while True:
            await ws.send(await outbox.get())

    async def _heartbeats(self, outbox: asyncio.Queue[str | bytes], every: float) -> None:
        while True:
            await asyncio.sleep(every * self.rng.uniform(0.8, 1.0))
            outbox.put_nowait(Heartbeat(running=len(self.running)).model_dump_json())

    # -- requests ------------------------------------------------------------------------------
    def _start(self, frame: Run, context: object, outbox: asyncio.Queue[str | bytes], ws: ClientConnection) -> None:
        if frame.id in self.seen:
            log.warning("request %s was already received; not running it again", frame.id)
            outbox.put_nowait(Duplicate(id=frame.id).model_dump_json())
            return
        self.seen[frame.id] = None
        while len(self.seen) > SEEN_IDS:
            self.seen.popitem(last=False)
        try:
            decision = self.options.policy.engine.decide(agent=frame.agent, node=context, argv=frame.argv)  # type: ignore[arg-type]
            refusal = self._refusal(decision, frame)
        except Exception as exc:  # noqa: BLE001 - one bad request must never end the agent
            log.exception("request %s could not be decided", frame.id)
            outbox.put_nowait(Refused(id=frame.id, verdict="deny", rule="agent:error",
                                      reason=clip(f"the agent could not decide it: {exc}")).model_dump_json())
            return
        if refusal is not None:
            log.warning("request %s refused: %s %s: %s", frame.id, frame.agent, shlex.join(frame.argv), refusal.reason)
            outbox.put_nowait(refusal.model_dump_json())
            return
        running = _Running()
        self.running[frame.id] = running
        asyncio.create_task(self._execute(frame, decision, running, outbox, ws))

    def _refusal(self, decision: Decision, frame: Run) -> Refused | None:
        if len(self.running) >= self.options.workers * 4:
            return Refused(id=frame.id, verdict="deny", rule="agent:busy",
                           reason=f"the node already runs {len(self.running)} commands; nothing was run")
        if decision.verdict is Verdict.ALLOW:
            return None
        if decision.verdict is Verdict.NEEDS_APPROVAL and frame.approved_by:
            return None
        if decision.verdict is Verdict.NEEDS_APPROVAL:
            return Refused(id=frame.id, verdict="needs_approval", rule=clip(decision.rule or ""),
                           reason=clip(f"{decision.reason}; the control plane sent no approval"))
        return Refused(id=frame.id, verdict="deny", rule=clip(decision.rule or ""), reason=clip(decision.reason))

    async def _execute(self, frame: Run, decision: Decision, running: _Running,
                       outbox: asyncio.Queue[str | bytes], ws: ClientConnection) -> None:
        loop = asyncio.get_running_loop()
        put: Callable[[str | bytes], None] = outbox.put_nowait

        def sink(stream: str, data: bytes) -> None:
            for at in range(0, len(data), MAX_CHUNK):
                loop.call_soon_threadsafe(put, pack_chunk(frame.id, stream, data[at : at + MAX_CHUNK]))

        argv = decision.exec_argv()
        # The context carries the decision's path arguments: the executor opens them without links.
        context = RunContext(decision=decision, request_id=frame.id, approved_by=frame.approved_by)
        try:
            result: ExecResult = await loop.run_in_executor(self._pool, partial(
                self.executor.run, argv, timeout=min(frame.timeout_s, self.options.max_timeout_s),
                max_output=min(frame.max_output, self.options.max_output), on_output=sink, cancel=running.cancel,
                context=context,
            ))
        except PathRefused as exc:  # a link or a missing path: nothing ran, so it is a refusal
            log.warning("request %s refused: %s", frame.id, exc)
            put(Refused(id=frame.id, verdict="deny", rule="path:open", reason=clip(str(exc))).model_dump_json())
            return
        except Exception as exc:  # noqa: BLE001 - the request must end with an answer, never silently
            log.exception("request %s: the executor failed", frame.id)
            message = f"the agent could not run it: {exc}".encode()[:MAX_CHUNK]
            put(pack_chunk(frame.id, "stderr", message))  # on the loop already: before the result, in order
            result = ExecResult(exit_code=126, stdout="", stderr=message.decode(), duration_ms=0,
                                output_sha256=output_digest(b"", message))
        finally:
            self.running.pop(frame.id, None)
        log.info("request %s: %s ran %s (rule %s): exit %s in %s ms%s", frame.id, frame.agent, shlex.join(argv),
                 decision.rule, result.exit_code, result.duration_ms, " (timed out)" if result.timed_out else "")
        put(Result(
            id=frame.id, exit_code=max(-255, min(255, result.exit_code)), duration_ms=result.duration_ms,
            timed_out=result.timed_out, stdout_truncated=result.stdout_truncated,
            stderr_truncated=result.stderr_truncated, output_sha256=result.output_sha256 or "0" * 64,
            rule=clip(decision.rule or ""),
        ).model_dump_json())
        if ws.state is not State.OPEN:
            # The session that asked is gone; a reconnected one must not get it (the caller was told it was lost).
            log.warning("request %s ended after its connection dropped; its result (exit %s) was not delivered",
                        frame.id, result.exit_code)
