"""The one interface every executor implements."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from permissions.models import Decision

TRUNCATION_MARKER = "\n[… output truncated at {limit} bytes …]\n"


@dataclass(frozen=True, slots=True)
class ExecResult:
    """What one command did.

    ``exit_code`` is the process's code; a process killed by a signal gets
    ``-signal`` (as subprocess reports it). ``output_sha256`` is the SHA-256 of
    the raw bytes captured (stdout, a NUL byte, stderr) before decoding, so the
    audit log can prove what the node sent even where text was replaced (the
    local executor maps ``/dev/fd/N`` names back to paths before it hashes).
    """

    exit_code: int
    stdout: str
    stderr: str
    duration_ms: int
    stdout_truncated: bool = False
    stderr_truncated: bool = False
    timed_out: bool = False
    output_sha256: str = ""
    # Where and under which node-side rule it ran (remote runs); goes into the audit record's details.
    meta: Mapping[str, str] = field(default_factory=dict)

    @property
    def truncated(self) -> bool:
        return self.stdout_truncated or self.stderr_truncated


def output_digest(stdout: bytes, stderr: bytes) -> str:
    """The digest stored in ``ExecResult.output_sha256``."""
    return hashlib.sha256(stdout + b"\0" + stderr).hexdigest()


# Called with ("stdout" | "stderr", bytes) as output arrives, for executors that stream.
OutputSink = Callable[[str, bytes], None]


@dataclass(frozen=True, slots=True)
class RunContext:
    """Why a command runs: the control plane's decision and the request id it travels under.

    A local executor has no use for it; a remote one sends both so that the node
    can decide again under its own policy and never run one request twice."""

    decision: Decision
    request_id: str
    approved_by: str | None = None


class ExecutorError(RuntimeError):
    """The executor could not give a result; the message says why in a person's words."""


class NotRun(ExecutorError):
    """Certain that nothing ran: the node is offline, refused the command, or was never reached."""


class NodeRefused(NotRun):
    """The node's own policy refused a command the control plane had allowed."""

    def __init__(self, message: str, *, node: str, verdict: str, rule: str, reason: str) -> None:
        super().__init__(message)
        self.node, self.verdict, self.rule, self.reason = node, verdict, rule, reason


class Interrupted(ExecutorError):
    """The command may have started, but its end will never be known (the node went away)."""


class BatchRunner(Protocol):
    """Runs many requests at once for executors that share it (a hub's remote executors).

    Executors offer one through a ``batch`` attribute; ``execute_many`` then makes
    one call for a whole fan-out instead of one blocked thread per node."""

    def run_batch(
        self, runs: Sequence[tuple[Executor, RunContext]], *, timeout: float, max_output: int
    ) -> list[ExecResult | BaseException]:
        """One answer (a result or the exception) per run, in order."""
        ...


class Executor(Protocol):
    """Runs an argv that the policy has already allowed."""

    def run(
        self, argv: Sequence[str], *, timeout: float, max_output: int, context: RunContext | None = None
    ) -> ExecResult:
        """Run ``argv`` (a list, never a shell string) and return its result."""
        ...
