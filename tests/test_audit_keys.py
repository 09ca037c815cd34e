"""The audit key file, and the promises docs/audit.md makes about the CLI and squads serve."""

from __future__ import annotations

import base64
import json
import os
import sqlite3
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from squads.audit import keys
from squads.audit.anchor import read_checkpoints
from chat_server.app import create_app
from squads.settings.env import Settings
from squads.context import AppContext

SQUADS = [str(Path(sys.executable).with_name("squads"))]  # the installed console script, as people run it


def test_a_key_file_is_created_once_private_and_reused(tmp_path: Path) -> None:
    path = tmp_path / "data" / "audit.key"
    key = keys.load_key(key=None, key_file=path)
    assert len(key) == 32 and path.stat().st_mode & 0o777 == 0o600
    assert keys.load_key(key=None, key_file=path) == key
    assert path.read_text().strip() == key.hex()
    assert not [p for p in path.parent.iterdir() if p.name != "audit.key"]  # no temporary file left behind


def test_processes_starting_together_agree_on_one_key(tmp_path: Path) -> None:
    path = tmp_path / "audit.key"
    found: list[bytes] = []
    barrier = threading.Barrier(8)

    def load() -> None:
        barrier.wait()
        found.append(keys.load_key(key=None, key_file=path))

    threads = [threading.Thread(target=load) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(found) == 8 and len(set(found)) == 1


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o660])
def test_a_key_file_others_may_read_is_refused(tmp_path: Path, mode: int) -> None:
    path = tmp_path / "audit.key"
    keys.load_key(key=None, key_file=path)
    path.chmod(mode)
    with pytest.raises(keys.AuditKeyError, match=rf"open to group or others \(mode {mode:04o}\).*chmod 600 {path}"):
        keys.load_key(key=None, key_file=path)


def test_a_key_file_that_is_a_link_or_junk_is_refused(tmp_path: Path) -> None:
    real = tmp_path / "real.key"
    keys.load_key(key=None, key_file=real)
    link = tmp_path / "link.key"
    link.symlink_to(real)
    with pytest.raises(keys.AuditKeyError, match="cannot read audit key file"):
        keys.load_key(key=None, key_file=link)
    junk = tmp_path / "junk.key"
    junk.write_text("not a key\n")
    junk.chmod(0o600)
    with pytest.raises(keys.AuditKeyError, match="neither hex nor base64"):
        keys.load_key(key=None, key_file=junk)


def test_keys_from_the_environment(tmp_path: Path) -> None:
    raw = bytes(range(32))
    assert keys.load_key(key=raw.hex(), key_file=tmp_path / "unused") == raw
    assert keys.load_key(key=base64.b64encode(raw).decode(), key_file=tmp_path / "unused") == raw
    assert not (tmp_path / "unused").exists()  # a key given never creates a file
    with pytest.raises(keys.AuditKeyError, match="holds 16 bytes; the audit key needs at least 32"):
        keys.load_key(key="ab" * 16, key_file=tmp_path / "unused")
    with pytest.raises(keys.AuditKeyError, match="SQUADS_AUDIT_KEY is neither hex nor base64"):
        keys.load_key(key="%%%", key_file=tmp_path / "unused")


def _env(data: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SQUADS_")}
    return {**env, "SQUADS_DATA_DIR": str(data)}


def _squads(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*SQUADS, *args], env=env, capture_output=True, text=True, timeout=120, check=False)


def test_the_cli_keys_checkpoints_and_catches_a_truncated_log(tmp_path: Path) -> None:
    data = tmp_path / "data"
    env = _env(data)
    for _ in range(3):
        assert _squads(env, "run", "--agent", "webserver/service-health", "--", "uptime").returncode in (0, 1)
    assert (data / "audit.key").stat().st_mode & 0o777 == 0o600  # made on first start
    done = _squads(env, "audit", "checkpoint")
    assert done.returncode == 0, done.stderr
    line = json.loads((data / "audit-checkpoints.jsonl").read_text().splitlines()[-1])
    assert set(line) == {"seq", "head_hash", "at", "key_id", "signature"} and line["seq"] >= 3
    ok = _squads(env, "audit", "verify")
    assert ok.returncode == 0 and "1 checkpoints hold" in ok.stdout, ok.stdout + ok.stderr

    # Someone with the database file drops the triggers and cuts the newest record off.
    with sqlite3.connect(data / "squads.sqlite3") as conn:
        conn.execute("DROP TRIGGER audit_records_no_delete")
        conn.execute("DELETE FROM audit_records WHERE seq = (SELECT max(seq) FROM audit_records)")
    cut = _squads(env, "audit", "verify")
    assert cut.returncode == 1
    assert f"BROKEN at record {line['seq']}" in cut.stdout and "removed from the end" in cut.stdout
    assert _squads(env, "audit", "verify", "--no-checkpoints").returncode == 0  # why checkpoints matter

    (data / "audit.key").chmod(0o644)
    refused = _squads(env, "audit", "verify")
    assert refused.returncode == 78 and "Traceback" not in refused.stderr
    assert f"chmod 600 {data / 'audit.key'}" in refused.stderr


def test_serve_writes_a_signed_checkpoint_at_start_and_at_shutdown(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, config_dir=tmp_path / "config", audit_checkpoint_s=3600)
    context = AppContext(settings=settings)
    with TestClient(create_app(context)) as client:
        assert client.get("/healthz").status_code == 200
        path = settings.effective_audit_checkpoint_file
        assert len(path.read_text().splitlines()) == 1
    found = read_checkpoints(path, key=keys.settings_key(settings))
    assert found.problems == [] and len(found.anchors) == 2
    context.db.engine.dispose()
