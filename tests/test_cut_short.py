"""A check stopped at its time limit, or cut at the output limit, is reported as incomplete: the
reply never calls what it could not read clean."""

from __future__ import annotations

from squads.brain.actions import Call, CallResult
from squads.brain.service import State
from tools.service import render
from tests.test_brain import SQUADS, drive, says

SECURITY = SQUADS["security"]
# What find printed before it was killed: one ordinary setuid binary.
PARTIAL = "/usr/bin/passwd\n"


def _respond(*, timed_out: bool = False, truncated: bool = False):  # type: ignore[no-untyped-def]
    def respond(call: Call) -> CallResult:
        argv = render(SECURITY.tool(call.tool), call.params) if call.tool else list(call.argv or [])
        if argv[0] == "find":
            return CallResult(status="ran", argv=argv, tool=call.tool, exit_code=-15 if timed_out else 0,
                              stdout=PARTIAL, node="n1", agent="a", timed_out=timed_out, truncated=truncated)
        return CallResult(status="ran", argv=argv, tool=call.tool, exit_code=0, node="n1", agent="a")
    return respond


def test_a_timed_out_find_is_a_gap_not_a_clean_check() -> None:
    reply = says(drive(SECURITY, "any setuid binaries outside the usual places?", State(), _respond(timed_out=True)))
    assert "`find / -xdev -perm -4000 -type f` was cut short: it ran out of time" in reply
    assert "nothing wrong" not in reply.lower()


def test_a_truncated_output_is_a_gap_too() -> None:
    reply = says(drive(SECURITY, "any setuid binaries outside the usual places?", State(), _respond(truncated=True)))
    assert "was cut short: its output was longer than the limit" in reply


def test_a_complete_run_has_no_such_gap() -> None:
    reply = says(drive(SECURITY, "any setuid binaries outside the usual places?", State(), _respond()))
    assert "cut short" not in reply
