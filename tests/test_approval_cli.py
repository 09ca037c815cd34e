"""``squads approval list|approve|deny`` with the real CLI: who may approve, the audit trail, and the
held command's reply naming the command.

The held command is ``SELECT pg_terminate_backend(4194304)``: 4194304 is the kernel's PID_MAX_LIMIT,
which no process can have, so approving it cannot end anyone's session on this machine's PostgreSQL."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

PASSWORD = "correct horse battery staple"
TERMINATE = "terminate backend 4194304"


@pytest.fixture()
def cli(tmp_path: Path) -> Any:
    squads = Path(sys.executable).with_name("squads")
    env = {**os.environ, "SQUADS_DATA_DIR": str(tmp_path), "COLUMNS": "200", "SQUADS_LOCAL_NODE": "on"}
    env.pop("SQUADS_DATABASE_URL", None)
    env.pop("SQUADS_CONFIG_DIR", None)

    def run(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(squads), *args], env=env, input=stdin, capture_output=True, text=True, timeout=120)

    for name, role in (("alice", "approver"), ("eve", "engineer"), ("olga", "admin")):
        made = run("user", "create", name, "--role", role, "--password-stdin", stdin=PASSWORD + "\n")
        assert made.returncode == 0, made.stderr
    return run


def _hold(cli: Any, actor: str) -> str:
    chat = cli("chat", "--squad", "database", "--node", "local", "--actor", actor, "-m", TERMINATE)
    assert chat.returncode == 0, chat.stderr
    flat = " ".join(chat.stdout.split())  # the reply panel wraps lines
    match = re.search(r"in a terminal with squads approval approve ([0-9]+)", flat)
    assert match, chat.stdout
    assert "on the web at /approvals" in flat
    return match.group(1)


def _audit(cli: Any) -> list[dict[str, Any]]:
    exported = cli("audit", "export")
    assert exported.returncode == 0, exported.stderr
    return [json.loads(line) for line in exported.stdout.splitlines() if line.strip()]


def test_list_approve_and_the_audit_trail(cli: Any) -> None:
    request = _hold(cli, "terminal")
    listed = cli("approval", "list")
    assert listed.returncode == 0
    assert f"{request}  psql -X -A -F '|' -P footer=off -c 'SELECT pg_terminate_backend(4194304)'" in listed.stdout
    assert "asked by terminal" in listed.stdout
    (entry,) = json.loads(cli("approval", "list", "--json").stdout)
    assert entry["id"] == request and entry["node"] == "local" and entry["requested_by"] == "terminal"

    refused = cli("approval", "approve", request, "--as", "eve")
    assert refused.returncode == 2 and "approver or admin role" in refused.stderr
    unknown = cli("approval", "approve", request, "--as", "mallory")
    assert unknown.returncode == 2 and "no user 'mallory'" in unknown.stderr
    assert not any(r["kind"] == "approval_resolved" for r in _audit(cli))  # refusals record nothing

    approved = cli("approval", "approve", request, "--as", "alice", "--reason", "stuck session")
    assert approved.returncode == 0, approved.stderr
    assert "approved by alice" in approved.stdout and "pg_terminate_backend(4194304)" in approved.stdout
    again = cli("approval", "approve", request, "--as", "olga")
    assert again.returncode == 2 and f"no pending approval '{request}'" in again.stderr
    assert cli("approval", "list").stdout.strip() == "no held commands are waiting"

    records = _audit(cli)
    (resolved,) = [r for r in records if r["kind"] == "approval_resolved"]
    assert resolved["actor"] == "alice" and resolved["ref_seq"] == int(request)
    started = [r for r in records if r["kind"] == "execution_started"]
    assert [(r["actor"], r["argv"][-1]) for r in started] == [("alice", "SELECT pg_terminate_backend(4194304)")]
    assert any(r["kind"] == "execution_finished" and r["actor"] == "alice" for r in records)


def test_deny_and_no_self_approval(cli: Any) -> None:
    own = _hold(cli, "alice")
    self_approved = cli("approval", "approve", own, "--as", "alice")
    assert self_approved.returncode == 2 and "alice requested this command and cannot approve it" in self_approved.stderr
    denied = cli("approval", "deny", own, "--as", "olga", "--reason", "not during the sale")
    assert denied.returncode == 0, denied.stderr
    assert "denied by olga" in denied.stdout
    records = _audit(cli)
    (resolved,) = [r for r in records if r["kind"] == "approval_resolved"]
    assert resolved["actor"] == "olga"
    assert not any(r["kind"] == "execution_started" for r in records)  # a denial never runs it
    assert cli("approval", "approve", own, "--as", "alice").returncode == 2
