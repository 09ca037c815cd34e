"""Issue 11 §3: the import contracts hold on the tree, and the checker catches each kind of break."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.import_contracts import (
    AGENT_FORBIDDEN,
    ROOT,
    build_graph,
    check,
    cycles,
    layer_of,
    project_sources,
    upward_imports,
)

SOURCES = project_sources()


def with_module(name: str, source: str) -> dict[str, str]:
    """The real tree plus (or with a replaced) module ``name``."""
    return {**SOURCES, name: source}


def test_the_tree_keeps_every_contract() -> None:
    assert check(build_graph(SOURCES)) == []


def test_every_module_is_in_a_layer() -> None:
    for module in SOURCES:
        layer_of(module)  # raises LookupError naming the module otherwise


def test_an_upward_import_is_caught() -> None:
    # The policy engine must not know about the runtime that calls it.
    bad = with_module("permissions.shortcut", "from squads.runtime import Conversation\n")
    problems = upward_imports(build_graph(bad))
    assert problems == ["permissions.shortcut (policy) imports squads.runtime (runtime), a higher layer"]


def test_a_lazy_upward_import_is_caught_too() -> None:
    bad = with_module("tools.executors.shortcut", "def f():\n    from squads.context import load_context\n    return load_context\n")
    assert any("tools.executors.shortcut" in p and "squads.context" in p for p in upward_imports(build_graph(bad)))


def test_a_new_cycle_is_caught_even_inside_one_layer() -> None:
    # Both modules are in the services layer, so only the cycle check can see this.
    bad = {**SOURCES,
           "squads.nodes.loop_a": "from squads.nodes.loop_b import x\n",
           "squads.nodes.loop_b": "from squads.nodes import loop_a\nx = 1\n"}
    graph = build_graph(bad)
    assert upward_imports(graph) == []
    assert cycles(graph) == [["squads.nodes.loop_a", "squads.nodes.loop_b"]]
    assert any(p.startswith("cycle: ") for p in check(graph))


@pytest.mark.parametrize("target", ["sqlalchemy.orm", "squads.brain.service"])
def test_the_node_agent_reaching_sqlalchemy_or_the_brain_is_caught(target: str) -> None:
    bad = with_module("squads.node_agent.extra", f"import {target}\n")
    problems = check(build_graph(bad))
    top = target.split(".")[0] if target.startswith("sqlalchemy") else target
    assert f"the node agent reaches {top} <- squads.node_agent.extra" in problems


def test_the_node_agent_reaching_sqlalchemy_through_another_module_is_caught() -> None:
    # The agent imports a harmless-looking value module that, one step further, loads a table.
    bad = {**SOURCES,
           "squads.nodes.models": SOURCES["squads.nodes.models"] + "\nfrom squads.nodes.tables import NodeRecord\n"}
    problems = check(build_graph(bad))
    assert any(p.startswith("the node agent reaches sqlalchemy <- squads.storage.db <- squads.nodes.tables "
                            "<- squads.nodes.models") for p in problems), problems


def test_importing_the_node_agent_loads_none_of_the_control_plane() -> None:
    """The same contract, measured on a real interpreter: what `import` really loads."""
    code = ("import json, sys\nimport squads.node_agent.cli, squads.node_agent.service, squads.node_agent.policy\n"
            "print(json.dumps(sorted(sys.modules)))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    loaded = json.loads(out)
    assert "squads.node_agent.policy" in loaded
    assert [m for m in loaded if any(m == f or m.startswith(f + ".") for f in AGENT_FORBIDDEN)] == []


def test_a_module_outside_every_layer_is_an_error_not_a_pass() -> None:
    with pytest.raises(LookupError, match="tools.stray is in no layer"):
        check(build_graph(with_module("tools.stray", "x = 1\n")))


def test_the_audit_log_importing_transcripts_again_is_caught() -> None:
    # Before: the audit service redacted with transcripts.redact while transcripts showed text with the
    # audit service's display helpers, so the two packages imported each other.
    bad = {**SOURCES, "transcripts.redact": SOURCES["squads.textsafety.redact"],
           "squads.audit.chain": SOURCES["squads.audit.chain"] + "\nfrom transcripts.redact import redact\n"}
    problems = upward_imports(build_graph(bad))
    assert "squads.audit.chain (audit) imports transcripts.redact (services), a higher layer" in problems


def test_redaction_and_display_are_one_leaf_package() -> None:
    graph = build_graph(SOURCES)
    leaf = {m for m in graph.modules if m == "squads.textsafety" or m.startswith("squads.textsafety.")}
    assert {"squads.textsafety.redact", "squads.textsafety.display"} <= leaf
    assert {m: sorted(graph.imports[m] & graph.modules) for m in leaf} == {m: [] for m in leaf}
    assert "squads.audit.service" not in graph.modules  # the old catch-all is gone, not a facade


def test_the_wheel_installs_exactly_the_six_top_level_packages() -> None:
    """What setuptools packages (pyproject's find rules over the tree) has the brief's six names at the top."""
    import tomllib

    from setuptools import find_packages

    from tests.import_contracts import ROOT, TOP_LEVEL

    rules = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]["find"]
    packages = find_packages(where=str(ROOT), include=rules["include"], exclude=rules.get("exclude", ()))
    assert {name.split(".")[0] for name in packages} == set(TOP_LEVEL)
