"""Ordinary kubectl commands an on-call engineer types: the shipped grants allow
them (or hold them for approval when they change state), in every spelling
kubectl itself treats as the same (issue 10 §7)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.policy_helpers import LAB, agent_ids, default_engine

CORPUS = Path(__file__).parent / "data" / "legit_kubectl.jsonl"
CASES = [json.loads(line) for line in CORPUS.read_text().splitlines() if line.strip()]


def test_corpus_is_well_formed() -> None:
    assert len(CASES) >= 50
    assert len({c["id"] for c in CASES}) == len(CASES)
    assert {c["agent"] for c in CASES} <= set(agent_ids())
    assert {c["expect"] for c in CASES} <= {"allow", "needs_approval"}
    assert all(c["argv"][0] == "kubectl" and c["why"] for c in CASES)


@pytest.mark.parametrize("case", CASES, ids=[c["id"] for c in CASES])
def test_ordinary_kubectl_command_is_allowed(case: dict) -> None:
    decision = default_engine().decide(agent=case["agent"], node=LAB, argv=case["argv"])
    assert decision.verdict.value == case["expect"], f"{case['why']}: {decision.verdict.value} ({decision.reason})"
