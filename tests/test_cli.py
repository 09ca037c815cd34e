"""The ``squads`` command line: policy check, run, audit."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from squads.settings.env import get_settings
from squads.cli import app

runner = CliRunner()


@pytest.fixture(autouse=True)
def isolated(tmp_path: Path, db_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A fresh data and config folder, and a fresh database on each backend."""
    monkeypatch.setenv("SQUADS_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("SQUADS_CONFIG_DIR", str(tmp_path / "config"))
    monkeypatch.setenv("SQUADS_DATABASE_URL", db_url)
    get_settings.cache_clear()
    yield tmp_path
    get_settings.cache_clear()


def invoke(*args: str):  # type: ignore[no-untyped-def]
    return runner.invoke(app, list(args))


def test_policy_check_json_for_an_agent() -> None:
    result = invoke("policy", "check", "--agent", "k8s/pod-diagnostics", "--json", "--",
                    "kubectl", "get", "pods", "-n", "prod")
    assert result.exit_code == 0, result.output
    body = json.loads(result.output)
    assert body["decision"] == "allow" and body["agent"] == "k8s/pod-diagnostics"
    assert body["rule"].startswith("kubectl get pods") and body["reason"]


def test_policy_check_squad_reports_the_most_permissive_agent() -> None:
    result = invoke("policy", "check", "--squad", "k8s", "--json", "--", "kubectl", "logs", "web", "-n", "prod")
    body = json.loads(result.output)
    assert body["decision"] == "allow" and body["agent"] == "k8s/log-analysis"
    held = json.loads(invoke("policy", "check", "--squad", "k8s", "--json", "--",
                             "kubectl", "delete", "pod", "web", "-n", "prod").output)
    assert held["decision"] == "needs_approval" and held["agent"] == "k8s/deployment-manager"
    denied = invoke("policy", "check", "--squad", "k8s", "--json", "--", "kubectl", "exec", "web", "--", "sh")
    assert denied.exit_code == 1 and json.loads(denied.output)["decision"] == "deny"


def test_policy_check_batch_keeps_order_and_reports_bad_lines(tmp_path: Path) -> None:
    batch = tmp_path / "cmds.jsonl"
    batch.write_text("\n".join([json.dumps(["df", "-h"]), "not json", json.dumps(["ss", "-K"]),
                                json.dumps(["systemctl", "restart", "nginx"]), json.dumps("df -h")]))
    result = invoke("policy", "check", "--squad", "webserver", "--batch", str(batch))
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in result.output.splitlines()]
    assert [r["decision"] for r in rows] == ["allow", "deny", "deny", "needs_approval", "deny"]
    assert "line 2" in rows[1]["reason"] and "--kill" in rows[2]["reason"]


def test_policy_check_errors_are_clear() -> None:
    result = invoke("policy", "check", "--agent", "k8s/nobody", "--", "df")
    assert result.exit_code == 2 and "unknown agent" in result.output and "k8s/pod-diagnostics" in result.output
    result = invoke("policy", "check", "--agent", "k8s/pod-diagnostics", "--node", "ghost", "--", "df")
    assert result.exit_code == 2 and "unknown node 'ghost'" in result.output
    result = invoke("policy", "check", "--agent", "k8s/pod-diagnostics")
    assert result.exit_code == 2 and "no command given" in result.output


def test_policy_check_with_node_applies_site_grants(isolated: Path) -> None:
    config = isolated / "config"
    (config / "grants").mkdir(parents=True)
    (config / "nodes.yaml").write_text("nodes:\n  - {name: web-9, labels: {env: staging}}\n")
    (config / "grants" / "extra.yaml").write_text(
        "grants:\n  - {name: staging-tail, agents: [webserver/log-analysis], nodes: {labels: {env: staging}},"
        " allow: ['tail -n {int:1..50} /srv/app/app.log']}\n")
    args = ("policy", "check", "--agent", "webserver/log-analysis", "--json")
    cmd = ("--", "tail", "-n", "20", "/srv/app/app.log")
    assert json.loads(invoke(*args, "--node", "web-9", *cmd).output)["decision"] == "allow"
    assert json.loads(invoke(*args, *cmd).output)["decision"] == "deny"  # shipped defaults only


def test_run_executes_allowed_commands_and_audits_every_step() -> None:
    result = invoke("run", "--agent", "webserver/service-health", "--node", "local", "--", "df", "-h")
    assert result.exit_code == 0, result.output
    assert "Filesystem" in result.output and "audit records 1 (decision), 2 (started), 3 (finished)" in result.output
    denied = invoke("run", "--agent", "webserver/service-health", "--", "df", "-h", "--sync")
    assert denied.exit_code == 1 and "--sync" in denied.output and "audit record 4" in denied.output
    held = invoke("run", "--agent", "webserver/service-health", "--", "systemctl", "restart", "nginx")
    assert held.exit_code == 3 and "needs approval" in held.output
    verify = invoke("audit", "verify")
    assert verify.exit_code == 0 and "5 records" in verify.output
    exported = [json.loads(line) for line in invoke("audit", "export", "--format", "jsonl").output.splitlines()]
    assert [r["kind"] for r in exported] == ["decision", "execution_started", "execution_finished", "decision", "decision"]
    assert exported[2]["exit_code"] == 0 and "Filesystem" in exported[2]["stdout"]
    assert [r["decision"] for r in exported if r["kind"] == "decision"] == ["allow", "deny", "needs_approval"]
