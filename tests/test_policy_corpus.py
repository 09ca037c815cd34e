"""The adversarial corpus: hundreds of hostile argv, none of which may be allowed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from permissions.models import Verdict
from tests.policy_helpers import LAB, agent_ids, default_engine

CORPUS = Path(__file__).parent / "data" / "adversarial_corpus.jsonl"
CASES = [json.loads(line) for line in CORPUS.read_text().splitlines() if line.strip()]


def test_corpus_is_large_and_well_formed() -> None:
    assert len(CASES) >= 300
    assert len({c["id"] for c in CASES}) == len(CASES)
    assert {c["agent"] for c in CASES} <= set(agent_ids())


@pytest.mark.parametrize("case", CASES, ids=[c["id"] for c in CASES])
def test_hostile_command_gets_expected_decision(case: dict) -> None:
    decision = default_engine().decide(agent=case["agent"], node=LAB, argv=case["argv"])
    assert decision.verdict is not Verdict.ALLOW, f"{case['why']}: allowed by {decision.rule}"
    assert decision.verdict.value == case["expect"], f"{case['why']}: {decision.verdict.value} ({decision.reason})"
    assert decision.reason  # every refusal says why
