"""What the brain asks the runtime to do, and what comes back.

The brain is a generator: it yields ``Say`` and ``Call`` and receives a
``CallResult`` for each ``Call``. The runtime owns everything with side
effects (policy, audit, execution, storage), so an LLM planner can replace the
brain later without touching the path every command takes.
"""

from __future__ import annotations

from collections.abc import Generator
from dataclasses import dataclass, field
from typing import Any, Literal


@dataclass(frozen=True)
class Say:
    """An assistant message."""

    text: str


@dataclass(frozen=True)
class Call:
    """Run a tool (``tool`` + ``params``) or a command the user named (``argv``).

    ``hold`` marks a state change the user asked for: it is only ever
    requested for approval, even where a grant would allow it outright.
    """

    tool: str | None = None
    params: dict[str, Any] = field(default_factory=dict)
    argv: list[str] | None = None
    why: str = ""
    hold: bool = False
    title: str = ""


Status = Literal["ran", "denied", "approval", "invalid", "error"]


@dataclass(frozen=True)
class CallResult:
    """How a call ended: ran (with output), denied, held for approval, or invalid."""

    status: Status
    argv: list[str] = field(default_factory=list)
    agent: str = ""
    node: str = ""
    tool: str | None = None
    exit_code: int | None = None
    stdout: str = ""
    stderr: str = ""
    reason: str = ""
    approval_id: str | None = None
    # The command was stopped at its time limit, or its output at the size limit: what it printed was
    # read, the rest was never seen, so the reply must say the check is incomplete.
    timed_out: bool = False
    truncated: bool = False


Turn = Generator[Say | Call, CallResult | None, None]
