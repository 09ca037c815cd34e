"""Run an argv on this machine: no shell, clean environment, bounded in time and output."""

from __future__ import annotations

import os
import selectors
import signal
import subprocess
import threading
import time
from collections.abc import Mapping, Sequence

from tools.executors.base import TRUNCATION_MARKER, ExecResult, OutputSink, RunContext, output_digest
from tools.executors.safe_paths import OutputRewriter, PinnedArgv, pin_paths

# Fixed variables every command gets. Pagers and colours are disabled because
# nobody is at a terminal to page through output, and a pager is a shell escape.
_BASE_ENV: dict[str, str] = {
    "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "LANG": "C.UTF-8",
    "LC_ALL": "C.UTF-8",
    "PAGER": "cat",
    "SYSTEMD_PAGER": "cat",
    "SYSTEMD_PAGERSECURE": "1",
    "LESSSECURE": "1",
    "SYSTEMD_COLORS": "0",
    "TERM": "dumb",
    "NO_COLOR": "1",
}

# Squads' own secrets (the audit key, the database URL with its password): never in a command's
# environment, whatever a node's configuration says.
NEVER_PASSED = frozenset({"SQUADS_AUDIT_KEY", "SQUADS_AUDIT_KEY_FILE", "SQUADS_DATABASE_URL"})

_CHUNK = 64 * 1024
_TERM_GRACE = 0.5  # seconds between SIGTERM and SIGKILL on timeout
_EXIT_GRACE = 0.2  # seconds children may hold the pipes after the main process exits
_POLL = 0.05  # how often the loop looks at the process while pipes stay quiet
_DRAIN_BUDGET = 0.1  # seconds spent collecting what is left in the pipes after the kill
_REAP_TIMEOUT = 5.0


def clean_environment(
    env_passthrough: Sequence[str] = (),
    extra_env: Mapping[str, str] | None = None,
    *,
    environ: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """The environment a command runs with.

    Passthrough names are copied from ``environ`` (default ``os.environ``) when
    present, but cannot replace the fixed variables: an inherited ``PAGER`` must
    not re-enable a pager. ``extra_env`` is explicit configuration and wins.
    """
    source = os.environ if environ is None else environ
    for name in (*env_passthrough, *(extra_env or {})):
        # The settings are read case-insensitively, so squads_audit_key is the key too.
        if name.upper() in NEVER_PASSED:
            raise ValueError(f"environment variable {name} is one of Squads' own secrets; it is never given to a command")
    env = {name: source[name] for name in env_passthrough if name in source}
    env.update(_BASE_ENV)
    env.update(extra_env or {})
    for name, value in env.items():
        if not name or "=" in name or "\0" in name or "\0" in value:
            raise ValueError(f"invalid environment variable {name!r}")
    return env


def check_argv(argv: Sequence[str]) -> list[str]:
    """Validate an argv for local execution and return it as a list.

    It must be a non-empty sequence of str (a plain string is refused: it would
    be a shell command in disguise) whose program is an absolute path, because
    the policy layer resolves programs and PATH must never decide what runs.
    """
    if isinstance(argv, (str, bytes)) or not isinstance(argv, Sequence):
        raise ValueError(f"argv must be a list of str, not {type(argv).__name__}")
    args = list(argv)
    if not args:
        raise ValueError("argv must not be empty")
    for arg in args:
        if not isinstance(arg, str):
            raise ValueError(f"argv elements must be str, got {type(arg).__name__}: {arg!r}")
        if "\0" in arg:
            raise ValueError(f"argv element contains a NUL byte: {arg!r}")
    if not os.path.isabs(args[0]):
        raise ValueError(f"argv[0] must be an absolute path, got {args[0]!r}")
    return args


def decode_output(data: bytes, truncated: bool, limit: int) -> str:
    """Decode captured bytes as UTF-8 (replacing bad bytes), adding the marker when cut."""
    text = data.decode("utf-8", errors="replace")
    return text + TRUNCATION_MARKER.format(limit=limit) if truncated else text


class _Stream:
    """One captured pipe: the bytes kept up to the cap, and whether more came."""

    def __init__(self, fd: int, limit: int, name: str = "", sink: OutputSink | None = None,
                 rewriter: OutputRewriter | None = None) -> None:
        self.fd = fd
        self.limit = limit
        self.name = name
        self.sink = sink
        self.rewriter = rewriter
        self.data = bytearray()
        self.truncated = False

    def read(self, chunk: bytes) -> None:
        """Bytes from the pipe: descriptor names mapped back to paths, then kept."""
        self.feed(self.rewriter.feed(chunk) if self.rewriter is not None else chunk)

    def finish(self) -> None:
        """Keep what the rewriter still held back at the end of output."""
        if self.rewriter is not None:
            self.feed(self.rewriter.flush())

    def feed(self, chunk: bytes) -> None:
        if self.truncated:
            return
        room = self.limit - len(self.data)
        if len(chunk) > room:
            chunk = chunk[:room]
            self.truncated = True
        self.data += chunk
        if self.sink is not None and chunk:
            self.sink(self.name, chunk)


def _read_chunk(sel: selectors.BaseSelector, stream: _Stream) -> None:
    try:
        chunk = os.read(stream.fd, _CHUNK)
    except BlockingIOError:
        return
    except OSError:
        chunk = b""  # a broken pipe reads as end of output
    if chunk:
        stream.read(chunk)
    else:
        sel.unregister(stream.fd)


def _leader_exited(pid: int) -> bool:
    # WNOWAIT leaves the zombie in place: its pid, and so the process group id,
    # cannot be reused before we have killed the group and reaped it.
    try:
        return os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None
    except ChildProcessError:
        return True


def _open_pidfd(pid: int) -> int | None:
    try:
        return os.pidfd_open(pid)
    except (AttributeError, OSError):
        return None


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass  # the group is already gone


def _spawn_failure(program: str, cwd: str, exc: OSError, start: float) -> ExecResult:
    code = 127 if isinstance(exc, FileNotFoundError) else 126
    if exc.filename == cwd and exc.filename != program:
        message = f"cannot execute {program}: working directory {cwd}: {exc.strerror}"
    else:
        message = f"cannot execute {program}: {exc.strerror or exc}"
    return ExecResult(
        exit_code=code,
        stdout="",
        stderr=message,
        duration_ms=round((time.monotonic() - start) * 1000),
        output_sha256=output_digest(b"", b""),
    )


def _pin(args: list[str], context: RunContext | None) -> PinnedArgv:
    """``args`` with the decision's path arguments opened safely (nothing to do without a context)."""
    if context is None or not context.decision.path_args:
        return PinnedArgv(argv=args)
    decision = context.decision
    return pin_paths(args, decision.exec_path_args(), program=os.path.basename(decision.argv[0]))


class LocalExecutor:
    """Runs commands as child processes of this one, each in its own session."""

    def __init__(
        self,
        *,
        env_passthrough: Sequence[str] = (),
        extra_env: Mapping[str, str] | None = None,
        cwd: str = "/",
    ) -> None:
        """Configure the environment (see ``clean_environment``) and working directory."""
        if isinstance(env_passthrough, str):
            raise ValueError("env_passthrough must be a list of names, not a string")
        self._env = clean_environment(env_passthrough, extra_env)
        self._cwd = cwd

    def run(
        self,
        argv: Sequence[str],
        *,
        timeout: float,
        max_output: int,
        context: RunContext | None = None,
        on_output: OutputSink | None = None,
        cancel: threading.Event | None = None,
    ) -> ExecResult:
        """Run ``argv`` and return its result; never raises for a failing program.

        ``on_output`` (the node agent's streaming) gets each piece of output as it
        is read, within the cap; setting ``cancel`` stops the command as a timeout
        would. The path arguments of ``context``'s decision are opened without
        following links and given to the program as open descriptors
        (``safe_paths``); a link or a missing path raises ``PathRefused`` and
        nothing runs. Without a context no argument is treated as a path."""
        args = check_argv(argv)
        if timeout <= 0:
            raise ValueError(f"timeout must be positive, got {timeout}")
        if max_output < 0:
            raise ValueError(f"max_output must not be negative, got {max_output}")
        pinned = _pin(args, context)
        start = time.monotonic()
        try:
            proc = subprocess.Popen(
                pinned.argv,
                shell=False,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                start_new_session=True,
                env=self._env,
                cwd=self._cwd,
                close_fds=True,
                pass_fds=pinned.fds,
            )
        except OSError as exc:
            return _spawn_failure(args[0], self._cwd, exc, start)
        finally:
            pinned.close()  # the child has its own copies
        try:
            out, err, timed_out = self._collect(proc, start + timeout, max_output, on_output, cancel, pinned)
        finally:
            _signal_group(proc.pid, signal.SIGKILL)
            for pipe in (proc.stdout, proc.stderr):
                if pipe is not None:
                    pipe.close()
        try:
            exit_code = proc.wait(timeout=_REAP_TIMEOUT)
        except subprocess.TimeoutExpired:
            exit_code = -signal.SIGKILL  # stuck in the kernel; Popen reaps it later
        return ExecResult(
            exit_code=exit_code,
            stdout=decode_output(bytes(out.data), out.truncated, max_output),
            stderr=decode_output(bytes(err.data), err.truncated, max_output),
            duration_ms=round((time.monotonic() - start) * 1000),
            stdout_truncated=out.truncated,
            stderr_truncated=err.truncated,
            timed_out=timed_out,
            output_sha256=output_digest(bytes(out.data), bytes(err.data)),
            meta={"paths": "\n".join(pinned.opened)} if pinned.opened else {},
        )

    @staticmethod
    def _collect(
        proc: subprocess.Popen[bytes], deadline: float, max_output: int, sink: OutputSink | None,
        cancel: threading.Event | None, pinned: PinnedArgv,
    ) -> tuple[_Stream, _Stream, bool]:
        """Read both pipes until the group is done, killed for time, or killed for flooding."""
        assert proc.stdout is not None and proc.stderr is not None
        out = _Stream(proc.stdout.fileno(), max_output, "stdout", sink, pinned.rewriter())
        err = _Stream(proc.stderr.fileno(), max_output, "stderr", sink, pinned.rewriter())
        timed_out = False
        kill_at: float | None = None  # when the whole group gets SIGKILL
        with selectors.DefaultSelector() as sel:
            for stream in (out, err):
                os.set_blocking(stream.fd, False)
                sel.register(stream.fd, selectors.EVENT_READ, stream)
            # A pidfd wakes the loop the moment the leader exits, so a command that closed its
            # pipes costs no polling delay (Linux 5.3+; elsewhere the loop polls).
            pidfd = _open_pidfd(proc.pid)
            if pidfd is not None:
                sel.register(pidfd, selectors.EVENT_READ, None)
            try:
                while True:
                    now = time.monotonic()
                    exited = _leader_exited(proc.pid)
                    if exited and pidfd is not None and pidfd in sel.get_map():
                        sel.unregister(pidfd)  # it stays readable; watching it now would spin
                    streams_open = any(key.data is not None for key in sel.get_map().values())
                    if exited and not streams_open:
                        break
                    if kill_at is None:
                        if out.truncated or err.truncated:
                            kill_at = now  # a flooding command must not run on
                        elif exited:
                            kill_at = now + _EXIT_GRACE  # children still hold the pipes
                        elif now >= deadline or (cancel is not None and cancel.is_set()):
                            timed_out = True
                            _signal_group(proc.pid, signal.SIGTERM)
                            kill_at = now + _TERM_GRACE
                    if kill_at is not None and now >= kill_at:
                        break
                    wait = max(0.0, min(_POLL, (deadline if kill_at is None else kill_at) - now))
                    if sel.get_map():
                        for key, _ in sel.select(wait):
                            if key.data is not None:
                                _read_chunk(sel, key.data)
                    else:
                        time.sleep(min(wait, 0.005))  # pipes closed, no pidfd: only the exit is awaited
                _signal_group(proc.pid, signal.SIGKILL)
                if pidfd is not None and pidfd in sel.get_map():
                    sel.unregister(pidfd)
                # Keep what was written before the kill, but never wait for EOF: a
                # process outside the group could hold the pipes open for ever.
                drain_until = time.monotonic() + _DRAIN_BUDGET
                while sel.get_map() and time.monotonic() < drain_until:
                    ready = sel.select(0)
                    if not ready:
                        break
                    for key, _ in ready:
                        _read_chunk(sel, key.data)
            finally:
                if pidfd is not None:
                    os.close(pidfd)
        out.finish()
        err.finish()
        return out, err, timed_out
