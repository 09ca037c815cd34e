"""``squads scenario export``: a conversation run through the real runtime on a fixture node becomes a
scenario file that validates and that ``squads eval`` replays with the same commands and outputs."""

from __future__ import annotations

import json
import re
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from squads.cli import app
from squads.evals.export import command_pattern
from squads.settings.env import get_settings
from tools.executors.fixture import CommandPattern
from tools.executors.scenario import load_scenario
from tests.paths import PUBLIC_SCENARIOS

SAVED = re.compile(r"conversation ([0-9a-f]{32}) saved")
runner = CliRunner()
# A node whose nginx is down, with a secret in one output: what a real incident leaves in a transcript.
INCIDENT = """\
name: export-source
squad: webserver
nodes:
  web-9:
    labels: {env: production}
    fixtures:
      - run: systemctl status nginx
        stdout: |
          × nginx.service - A high performance web server and a reverse proxy server
               Loaded: loaded (/lib/systemd/system/nginx.service; enabled; vendor preset: enabled)
               Active: failed (Result: exit-code) since Mon 2026-11-23 08:02:11 UTC; 5min ago
          Nov 23 08:02:11 web-9 shop-env[811]: DATABASE_URL=postgres://shop:hunter2secret@db-1:5432/shop
      - run: nginx -t
        exit_code: 1
        stderr: |
          nginx: [emerg] unknown directive "proxy_passs" in /etc/nginx/sites-enabled/shop:14
          nginx: configuration file /etc/nginx/nginx.conf test failed
conversation:
  - user: "nginx won't start on web-9"
"""


@pytest.fixture(autouse=True)
def isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    monkeypatch.setenv("SQUADS_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.delenv("SQUADS_DATABASE_URL", raising=False)
    monkeypatch.delenv("SQUADS_CONFIG_DIR", raising=False)
    monkeypatch.setenv("COLUMNS", "250")
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    get_settings.cache_clear()
    yield tmp_path
    get_settings.cache_clear()


def _chat(scenario: Path, *messages: str) -> str:
    args = ["chat", "--scenario", str(scenario)]
    for m in messages:
        args += ["-m", m]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    match = SAVED.search(result.stdout)
    assert match, result.stdout
    return match.group(1)


def _eval(path: Path, report: Path) -> dict[str, Any]:
    result = runner.invoke(app, ["eval", str(path), "--json", str(report)])
    assert result.exit_code == 0, result.output
    scenario: dict[str, Any] = json.loads(report.read_text())["scenarios"][0]
    return scenario


def test_export_replays_the_same_commands_and_outputs(tmp_path: Path) -> None:
    source = tmp_path / "incident.yaml"
    source.write_text(INCIDENT)
    cid = _chat(source, "nginx won't start on web-9", "please restart nginx")
    out = tmp_path / "exported.yaml"
    exported = runner.invoke(app, ["scenario", "export", cid[:8], "-o", str(out)])
    assert exported.exit_code == 0, exported.output
    text = out.read_text()
    scenario = load_scenario(out)  # validates against FORMAT.md's models
    assert scenario.squad == "webserver" and list(scenario.nodes) == ["web-9"]
    assert [t.user for t in scenario.conversation] == ["nginx won't start on web-9", "please restart nginx"]
    assert "hunter2secret" not in text and "[REDACTED:" in text
    assert "# Turn 1: the squad replied" in text and "proxy_passs" in text
    assert scenario.conversation[1].expect.approval_requested == ["systemctl restart nginx"]

    original = _eval(source, tmp_path / "a.json")
    replay = _eval(out, tmp_path / "b.json")
    assert replay["status"] == "pass" and replay["unmatched"] == []
    ran = [[c["argv"] for c in t["commands"]] for t in replay["turns"]]
    assert ran[0] == [c["argv"] for c in original["turns"][0]["commands"]] and ran[0]
    # The same outputs give the same diagnosis.
    assert replay["turns"][0]["replies"] == original["turns"][0]["replies"]


def test_export_of_a_public_scenario_conversation_replays(tmp_path: Path) -> None:
    crashloop = PUBLIC_SCENARIOS / "k8s-crashloop-db-pending.yaml"
    cid = _chat(crashloop, "My application pod is in a CrashLoopBackOff state. Can you check the logs?",
                "Pod: payment-service-7d9f8b-xyz, Namespace: production")
    out = tmp_path / "crash.yaml"
    assert runner.invoke(app, ["scenario", "export", cid, "-o", str(out), "--name", "crash-replay"]).exit_code == 0
    scenario = load_scenario(out)
    assert scenario.name == "crash-replay"
    assert scenario.conversation[0].expect.ran_nothing  # the first turn only asked
    replay = _eval(out, tmp_path / "r.json")
    assert replay["status"] == "pass", replay["reasons"]


def test_bad_references_and_names_are_refused(tmp_path: Path) -> None:
    missing = runner.invoke(app, ["scenario", "export", "ffffffff"])
    assert missing.exit_code == 2 and "ffffffff" in missing.output
    bad = runner.invoke(app, ["scenario", "export", "ffffffff", "--name", "Bad Name"])
    assert bad.exit_code == 2 and "kebab" not in bad.output and "lowercase letters" in bad.output


@pytest.mark.parametrize("argv", [
    ["psql", "-X", "-A", "-F", "|", "-c", "SELECT count(*) FROM t WHERE a = 'x|y'"],
    ["find", "/", "-name", "*.conf", "-o", "-name", "[ab]?"],
    ["kubectl", "get", "events", "-n", "prod", "--sort-by=.lastTimestamp"],
    ["echo", ""],
])
def test_command_patterns_match_their_argv_literally(argv: list[str]) -> None:
    pattern = CommandPattern(command_pattern(argv))
    assert pattern.matches(argv)
    if any(ch in "".join(argv) for ch in "*?["):
        # a glob in the argv is a literal character in the pattern, not a wildcard
        assert not pattern.matches([a.replace("*", "X").replace("?", "Y") for a in argv])
