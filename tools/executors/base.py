"""The one interface every executor implements."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

TRUNCATION_MARKER = "\n[… output truncated at {limit} bytes …]\n"


@dataclass(frozen=True, slots=True)
class ExecResult:
    """What one command did.

    ``exit_code`` is the process's code; a process killed by a signal gets
    ``-signal`` (as subprocess reports it). ``output_sha256`` is the SHA-256 of
    the raw bytes captured (stdout, a NUL byte, stderr) before decoding, so the
    audit log can prove what the node sent even where text was replaced.
    """

    exit_code: int
    stdout: str
    stderr: str
    duration_ms: int
    stdout_truncated: bool = False
    stderr_truncated: bool = False
    timed_out: bool = False
    output_sha256: str = ""

    @property
    def truncated(self) -> bool:
        return self.stdout_truncated or self.stderr_truncated


def output_digest(stdout: bytes, stderr: bytes) -> str:
    """The digest stored in ``ExecResult.output_sha256``."""
    return hashlib.sha256(stdout + b"\0" + stderr).hexdigest()


class Executor(Protocol):
    """Runs an argv that the policy has already allowed."""

    def run(self, argv: Sequence[str], *, timeout: float, max_output: int) -> ExecResult:
        """Run ``argv`` (a list, never a shell string) and return its result."""
        ...
