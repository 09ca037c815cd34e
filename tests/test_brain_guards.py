"""Guards against the brain acting on words nobody meant as a request."""

from __future__ import annotations

import pytest

from squads.brain.actions import Call, CallResult, Say
from squads.brain.service import RunbookBrain, State, imperative
from squads.chat import safe
from squads.service import load_squads

SQUADS = load_squads()


def _action(squad: str, name: str):  # type: ignore[no-untyped-def]
    return next(a for a in SQUADS[squad].actions if a.name == name)


@pytest.mark.parametrize(
    ("squad", "action", "text"),
    [
        ("webserver", "restart", "Since the restart this morning nginx returns 502"),
        ("database", "cancel", "Don't stop it! Just tell me whether the update will finish"),
        ("database", "terminate", "we should never terminate backends by hand, right?"),
        ("k8s", "delete-pod", "the pod was deleted yesterday and came back broken"),
    ],
)
def test_mentions_and_negations_are_not_requests(squad: str, action: str, text: str) -> None:
    assert not imperative(_action(squad, action), text)


@pytest.mark.parametrize(
    ("squad", "action", "text"),
    [
        ("webserver", "restart", "Please restart nginx on web-1."),
        ("database", "terminate", "ok, kill the blocker"),
        ("k8s", "scale", "then scale it to 0 until ES recovers"),
        ("k8s", "delete-pod", "can you delete pod api-1 in shop?"),
    ],
)
def test_imperatives_are_requests(squad: str, action: str, text: str) -> None:
    assert imperative(_action(squad, action), text)


def _turn(squad: str, text: str, state: State) -> list[Say | Call]:
    gen = RunbookBrain(SQUADS[squad].playbook()).turn(text, state)
    out: list[Say | Call] = []
    result: CallResult | None = None
    while True:
        try:
            step = gen.send(result)
        except StopIteration:
            return out
        out.append(step)
        result = CallResult(status="ran", argv=["x"], exit_code=0) if isinstance(step, Call) else None


def test_an_unanswered_question_does_not_capture_a_later_message() -> None:
    state = State()
    first = _turn("k8s", "delete pod", state)
    assert not [s for s in first if isinstance(s, Call)] and state.pending
    _turn("k8s", "hmm, never mind", state)
    later = _turn("k8s", "pod payment-7d9f8b6c5d-x2x9z in production keeps restarting", state)
    assert not [s for s in later if isinstance(s, Call) and s.hold], "a stale delete request was revived"


def test_evidence_does_not_cross_to_another_node() -> None:
    state = State(facts={"blocker_pid": "48211"})
    state.facts["node_changed"] = True
    steps = _turn("database", "terminate the blocking session", state)
    assert not [s for s in steps if isinstance(s, Call)], "a pid found on another node must not be reused"
    # Each squad keeps its own slots: the k8s squad's namespace carries over, the pod it found does not.
    state = State(facts={"last_pod": "web-7d9f8b6c5d-x2x9z", "namespace": "prod"})
    state.facts["node_changed"] = True
    steps = _turn("k8s", "delete the pod", state)
    assert not [s for s in steps if isinstance(s, Call)], "a pod found on another node must not be deleted"
    assert state.facts.get("namespace") == "prod", "what the user said carries over"


def test_terminal_text_shows_escape_sequences_instead_of_running_them() -> None:
    shown = safe("ok\x1b[2J\x1b]0;pwned\x07\rline")
    assert "\x1b" not in shown and "\r" not in shown and "\x07" not in shown
    assert "\\u001b[2J" in shown
