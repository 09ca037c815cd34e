"""Scenario files load into the models of FORMAT.md, and bad ones say why."""

from __future__ import annotations

from pathlib import Path

import pytest

from tools.executors.scenario import ScenarioError, find_scenarios, load_scenario
from tests.paths import PUBLIC_SCENARIOS

PUBLIC = PUBLIC_SCENARIOS


def test_every_public_scenario_loads() -> None:
    paths = find_scenarios([PUBLIC])
    assert len(paths) >= 10
    for path in paths:
        scenario = load_scenario(path)
        assert scenario.conversation and scenario.first_node in scenario.nodes


def test_invalid_scenarios_name_the_file_and_the_problem(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: Bad Name\nsquad: k8s\nnodes: {n: {}}\nconversation: [{user: hi}]\n")
    with pytest.raises(ScenarioError, match="bad.yaml"):
        load_scenario(bad)
    bad.write_text("name: ok\nsquad: k8s\nnodes: {n: {}}\nconversation: [{user: hi, expect: {ran: [\"'unclosed\"]}}]\n")
    with pytest.raises(ScenarioError, match="unclosed"):
        load_scenario(bad)
    with pytest.raises(ScenarioError, match="no such file"):
        find_scenarios([tmp_path / "missing"])
