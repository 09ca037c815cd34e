"""The legitimate corpus: commands an on-call engineer (or a model) types, across the four squads.

Each one is allowed by the shipped grants, or held for approval when it changes
state (issue 10 §7). kubectl-only forms live in legit_kubectl.jsonl.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from permissions.models import Verdict
from tests.policy_helpers import LAB, agent_ids, default_engine

CORPUS = Path(__file__).parent / "data" / "legit_corpus.jsonl"
CASES = [json.loads(line) for line in CORPUS.read_text().splitlines() if line.strip()]


def test_corpus_is_large_varied_and_well_formed() -> None:
    assert len(CASES) >= 150
    assert len({c["id"] for c in CASES}) == len(CASES)
    assert {c["agent"] for c in CASES} <= set(agent_ids())
    assert {c["expect"] for c in CASES} == {"allow", "needs_approval"}
    per_squad = Counter(c["agent"].split("/")[0] for c in CASES)
    assert set(per_squad) == {"k8s", "webserver", "database", "security"} and min(per_squad.values()) >= 20


@pytest.mark.parametrize("case", CASES, ids=[c["id"] for c in CASES])
def test_ordinary_command_gets_expected_decision(case: dict) -> None:
    decision = default_engine().decide(agent=case["agent"], node=LAB, argv=case["argv"])
    assert decision.verdict.value == case["expect"], f"{case['why']}: {decision.verdict.value} ({decision.reason})"
    assert decision.verdict is not Verdict.DENY
