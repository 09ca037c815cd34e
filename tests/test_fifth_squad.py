"""A fifth squad from a folder, with no edit anywhere else (issue 11 §4).

tests/data/fifth_squad/storage/ is a complete site bundle: squad.yaml, tools.yaml, slots.yaml,
runbooks.yaml, an analyzer module and a parser module it imports relatively. Copied into a
temporary config directory, it is discovered, its analyzers are imported and checked against its
YAML, and a scenario on a fixture node runs through the real runtime, policy and audit log.
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from squads.evals.runner import run_scenario
from squads.grants import BundleError
from squads.service import load_squads
from squads.storage.service import open_database
from tools.executors.scenario import load_scenario

DATA = Path(__file__).resolve().parent / "data" / "fifth_squad"
SCENARIO = DATA / "storage-inodes.yaml"
SQUADS_CLI = Path(sys.executable).with_name("squads")


def site_config(tmp_path: Path) -> Path:
    """A config directory holding the storage bundle, writable by its owner only (as the docs ask)."""
    config = tmp_path / "config"
    shutil.copytree(DATA / "storage", config / "squads" / "storage")
    for path in [config, *config.rglob("*")]:
        path.chmod(stat.S_IMODE(path.stat().st_mode) & ~(stat.S_IWGRP | stat.S_IWOTH))
    return config


def test_the_fifth_squad_is_discovered_with_its_analyzers_and_slots(tmp_path: Path) -> None:
    squads = load_squads([site_config(tmp_path) / "squads"])
    assert set(squads) == {"k8s", "webserver", "database", "security", "storage"}
    storage = squads["storage"]
    assert {"storage.inodes", "storage.inode_hogs", "common.generic"} <= set(storage.analyzer_registry)
    assert not any(name.startswith("storage.") for name in squads["k8s"].analyzer_registry)
    assert list(storage.playbook().slots) == ["mount"]


def test_a_scenario_runs_the_fifth_squads_own_analyzer_on_a_fixture_node(tmp_path: Path) -> None:
    squads = load_squads([site_config(tmp_path) / "squads"])
    db = open_database(url=f"sqlite:///{tmp_path / 'eval.sqlite3'}")
    try:
        report = run_scenario(load_scenario(SCENARIO), path=SCENARIO, squads=squads, db=db)
    finally:
        db.engine.dispose()
    assert report.passed, report.reasons
    commands = [c["argv"] for c in report.turns[0].commands]
    assert commands == [["df", "-i", "-P"], ["du", "--inodes", "-x", "-d", "1", "/var"]]
    reply = "\n".join(report.turns[0].replies)
    # Words only the bundle's analyzers and advice write: its Python ran, fed by its foreach.
    assert "/var has used 100% of its inodes" in reply and "/var/lib holds 1,288,011 files" in reply


def test_squads_eval_takes_the_site_squad_from_the_config_directory(tmp_path: Path) -> None:
    config = site_config(tmp_path)
    env = {**os.environ, "SQUADS_CONFIG_DIR": str(config), "SQUADS_DATA_DIR": str(tmp_path / "data")}
    ran = subprocess.run([str(SQUADS_CLI), "eval", str(SCENARIO)], capture_output=True, text=True, env=env,
                         timeout=120, check=False)
    assert ran.returncode == 0, ran.stdout + ran.stderr
    assert "PASS storage-inodes-exhausted" in ran.stdout
    # Without the folder there is no fifth squad: nothing else was edited to add it.
    env["SQUADS_CONFIG_DIR"] = tempfile.mkdtemp(dir=tmp_path)
    ran = subprocess.run([str(SQUADS_CLI), "eval", str(SCENARIO)], capture_output=True, text=True, env=env,
                         timeout=120, check=False)
    assert ran.returncode == 1 and "unknown squad 'storage'" in ran.stdout


@pytest.mark.parametrize(
    ("relative", "mode", "who"),
    [("squads/storage/analyzers.py", 0o664, "group"), ("squads/storage", 0o757, "world"), ("squads", 0o770, "group")],
)
def test_a_site_bundle_anyone_but_its_owner_can_change_is_refused(tmp_path: Path, relative: str, mode: int,
                                                                  who: str) -> None:
    config = site_config(tmp_path)
    (config / relative).chmod(mode)
    with pytest.raises(BundleError) as refused:
        load_squads([config / "squads"])
    message = str(refused.value)
    assert message.startswith(f"{config / relative}: refusing to load the site bundle storage")
    assert f"{who}-writable" in message and f"chmod go-w {config / relative}" in message


def test_a_broken_site_bundle_stops_the_cli_with_its_file_and_entry(tmp_path: Path) -> None:
    config = site_config(tmp_path)
    runbooks = config / "squads" / "storage" / "runbooks.yaml"
    runbooks.write_text(runbooks.read_text().replace("foreach: inode_full_mounts", "foreach: inode_full_mount"))
    env = {**os.environ, "SQUADS_CONFIG_DIR": str(config), "SQUADS_DATA_DIR": str(tmp_path / "data")}
    ran = subprocess.run([str(SQUADS_CLI), "eval", str(SCENARIO)], capture_output=True, text=True, env=env,
                         timeout=120, check=False)
    assert ran.returncode == 2, ran.stdout + ran.stderr
    assert "Traceback" not in ran.stderr
    assert ran.stderr.strip() == (
        f"error: {runbooks}: runbook inodes-exhausted, step 2 (inode_hogs): foreach names fact 'inode_full_mount', "
        "which no analyzer this runbook runs declares and no slot, need, default or seed provides; "
        "did you mean 'inode_full_mounts'?"
    )
