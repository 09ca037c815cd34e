"""Tool templates, parameter errors and squad bundle loading."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from squads.service import BundleError, default_grants, load_bundle, load_squads
from tests.policy_helpers import squads
from tools.models import ToolSpec
from tools.service import ToolCallError, render, rule_text


def tool(squad: str, name: str) -> ToolSpec:
    return squads()[squad].tool(name)


def test_four_squads_ship_with_agents_and_tools() -> None:
    assert set(squads()) == {"k8s", "webserver", "database", "security"}
    for squad in squads().values():
        assert len(squad.agents) == 3
        assert {t.agent for t in squad.tools} == set(squad.agents)


def test_render_produces_the_canonical_argv_forms() -> None:
    assert render(tool("k8s", "pod_logs"), {"pod": "web-1", "namespace": "prod", "tail": 50, "previous": True}) == [
        "kubectl", "logs", "web-1", "-n", "prod", "--previous", "--tail", "50"]
    assert render(tool("k8s", "rollout_restart"), {"deployment": "web", "namespace": "prod"}) == [
        "kubectl", "rollout", "restart", "deployment/web", "-n", "prod"]
    assert render(tool("database", "terminate_backend"), {"pid": 48211})[-1] == "SELECT pg_terminate_backend(48211)"
    assert render(tool("webserver", "service_journal"), {"unit": "nginx"})[-2:] == ["-n", "100"]


def test_parameter_errors_name_the_parameter_the_value_and_what_is_allowed() -> None:
    with pytest.raises(ToolCallError) as info:
        render(tool("k8s", "describe_pod"), {"pod": "Web_1;id", "namespace": "prod"})
    message = str(info.value)
    assert "pod" in message and "Web_1;id" in message and "DNS-1123" in message
    with pytest.raises(ToolCallError, match="namespace is required"):
        render(tool("k8s", "describe_pod"), {"pod": "web-1"})
    with pytest.raises(ToolCallError, match="unknown parameter"):
        render(tool("k8s", "describe_pod"), {"pod": "web-1", "namespace": "p", "kubeconfig": "/x"})
    with pytest.raises(ToolCallError, match="process id from 1 to 4194304"):
        render(tool("database", "terminate_backend"), {"pid": "48211) ; DROP TABLE x; --"})
    with pytest.raises(ToolCallError, match="true or false"):
        render(tool("k8s", "pod_logs"), {"pod": "a", "namespace": "b", "previous": "yes"})


def test_rule_text_is_what_security_teams_read() -> None:
    assert rule_text(tool("k8s", "pod_logs")) == (
        "kubectl logs {k8s_name} -n {k8s_name} [--previous] [--tail {int:1..10000}] [-c {k8s_name}] [--since {re:[1-9][0-9]*[smh]}]")
    assert rule_text(tool("database", "blocking")) == "psql -X -A -F | -P footer=off -c {sql:blocking}"


def test_tool_templates_refuse_unsafe_constructs() -> None:
    base = {"name": "t", "agent": "a", "description": "d"}
    with pytest.raises(ValidationError, match="must be a whole argument"):
        ToolSpec.model_validate({**base, "argv": ["tail", "/var/log/{f}"], "params": {"f": {"type": "re:.*"}}})
    with pytest.raises(ValidationError, match="has no parameter"):
        ToolSpec.model_validate({**base, "argv": ["tail", "{f}"]})
    with pytest.raises(ValidationError, match="never used"):
        ToolSpec.model_validate({**base, "argv": ["df"], "params": {"f": {"type": "k8s_name"}}})
    with pytest.raises(ValidationError, match="unknown value type"):
        ToolSpec.model_validate({**base, "argv": ["df", "{f}"], "params": {"f": {"type": "bogus"}}})
    with pytest.raises(ValidationError, match="program must be a literal"):
        ToolSpec.model_validate({**base, "argv": ["{p}"], "params": {"p": {"type": "k8s_name"}}})


def _write_bundle(root: Path, tools: str) -> Path:
    folder = root / "demo"
    folder.mkdir(parents=True)
    (folder / "squad.yaml").write_text("name: demo\ntitle: Demo\ndescription: d\nagents:\n  disk: {description: d}\n")
    (folder / "tools.yaml").write_text(tools)
    return folder


def test_a_user_adds_a_squad_with_yaml_only(tmp_path: Path) -> None:
    _write_bundle(tmp_path, "tools:\n  - {name: usage, agent: disk, description: d, argv: [df, -h]}\n")
    loaded = load_squads([tmp_path])
    assert "demo" in loaded and "k8s" in loaded
    grants = {g.name: g for g in default_grants(loaded.values())}
    assert grants["demo/disk"].allow == ["df -h"]


def test_bundle_errors_name_the_file_and_problem(tmp_path: Path) -> None:
    folder = _write_bundle(tmp_path, "tools:\n  - {name: usage, agent: nobody, description: d, argv: [df]}\n")
    with pytest.raises(BundleError, match="unknown agent 'nobody'"):
        load_bundle(folder)
    (folder / "tools.yaml").write_text("tools: [unclosed\n")
    with pytest.raises(BundleError, match="tools.yaml: not valid YAML"):
        load_bundle(folder)


def test_the_agents_defaults_from_yaml_alone_equal_the_control_planes() -> None:
    """The node agent reads bundle YAML without squad models; it must arrive at the same grants."""
    from squads.grants import default_grants_from_yaml
    from squads.service import default_grants, load_squads

    assert default_grants_from_yaml() == default_grants(load_squads().values())
    assert len(default_grants_from_yaml()) > 4


def test_a_broken_tools_file_names_itself_to_the_agent(tmp_path: Path) -> None:
    from squads.grants import BundleError, default_grants_from_yaml

    folder = tmp_path / "extra"
    folder.mkdir()
    (folder / "squad.yaml").write_text("name: extra\ntitle: X\ndescription: x\nagents: {a: {description: x}}\n")
    (folder / "tools.yaml").write_text("tools:\n  - {name: t, agent: a, argv: [ls], effect: sometimes}\n")
    with pytest.raises(BundleError, match=r"extra/tools\.yaml"):
        default_grants_from_yaml([tmp_path])


def _copy_bundle(tmp_path: Path, name: str) -> Path:
    import shutil

    from squads.grants import BUILTIN_BUNDLES

    folder = tmp_path / name
    shutil.copytree(BUILTIN_BUNDLES / name, folder)
    return folder


def test_a_tool_naming_an_unknown_analyzer_fails_at_load_naming_file_and_tool(tmp_path: Path) -> None:
    folder = _copy_bundle(tmp_path, "database")
    tools = folder / "tools.yaml"
    tools.write_text(tools.read_text().replace("analyze: pg.status", "analyze: pg.statuz", 1))
    with pytest.raises(BundleError) as caught:
        load_bundle(folder)
    message = str(caught.value)
    assert message.startswith(f"{tools}: tool ")
    assert "unknown analyzer 'pg.statuz'; did you mean 'pg.status'?" in message


def test_a_runbook_step_naming_an_unknown_analyzer_fails_at_load_naming_runbook_and_step(tmp_path: Path) -> None:
    folder = _copy_bundle(tmp_path, "k8s")
    runbooks = folder / "runbooks.yaml"
    runbooks.write_text(runbooks.read_text().replace("analyze: k8s.selector_pods", "analyze: k8s.no_such", 1))
    with pytest.raises(BundleError, match=r"runbooks\.yaml: runbook [a-z-]+, step \d+ \([a-z_]+\): unknown analyzer 'k8s.no_such'"):
        load_bundle(folder)


def test_the_shipped_bundles_name_only_known_analyzers() -> None:
    assert set(load_squads()) == {"k8s", "webserver", "database", "security"}
