"""The contract between a bundle's YAML and its analyzers, checked when the bundle loads (issue 11 §4).

Each test copies a bundle to a temporary folder, breaks one reference, and expects the load to stop
with the file, the entry and, where there is one, the closest known name.
"""

from __future__ import annotations

import logging
import re
import shutil
import tempfile
from pathlib import Path

import pytest
import yaml

from squads.brain.analyzers import Output, analyze
from squads.evals.runner import run_scenario
from squads.grants import BUILTIN_BUNDLES, BundleError
from squads.service import load_bundle, load_squads
from squads.storage.service import open_database
from tests.paths import PUBLIC_SCENARIOS
from tools.executors.scenario import find_scenarios, load_scenario

REPO = Path(__file__).resolve().parents[1]
FIFTH = REPO / "tests" / "data" / "fifth_squad" / "storage"


def copy(tmp_path: Path, source: Path) -> Path:
    folder = tmp_path / source.name
    shutil.copytree(source, folder, ignore=shutil.ignore_patterns("__pycache__"))
    return folder


def edit(path: Path, old: str, new: str) -> Path:
    text = path.read_text()
    assert old in text, f"{old!r} is not in {path}"
    path.write_text(text.replace(old, new, 1))
    return path


def edit_in(path: Path, runbook: str | None, old: str, new: str) -> Path:
    """Replace the first ``old`` inside runbook ``runbook``'s entry (anywhere when None): the
    breakage lands in the runbook the test names whatever order the runbooks are in."""
    if runbook is None:
        return edit(path, old, new)
    text = path.read_text()
    start = re.search(rf"^  - name: {re.escape(runbook)}$", text, re.M)
    assert start, f"runbook {runbook} is not in {path}"
    end = re.compile(r"^  - name: ", re.M).search(text, start.end())
    body = text[start.end(): end.start() if end else len(text)]
    assert old in body, f"{old!r} is not in runbook {runbook} of {path}"
    path.write_text(text[: start.end()] + body.replace(old, new, 1) + text[start.end() + len(body):])
    return path


def refused(folder: Path) -> str:
    with pytest.raises(BundleError) as caught:
        load_bundle(folder)
    return str(caught.value)


@pytest.mark.parametrize(
    ("bundle", "runbook", "old", "new", "expected"),
    [
        ("webserver", "upstream-errors", "when: [upstreams]", "when: [upstreamz]",
         r"runbook upstream-errors, step \d+ \(listening_sockets\): when names fact 'upstreamz', .*; "
         r"did you mean 'upstreams'\?"),
        ("webserver", "upstream-errors", "foreach: error_logs", "foreach: error_logz",
         r"runbook upstream-errors, step \d+ \(error_log\): foreach names fact 'error_logz'"),
        ("webserver", "upstream-errors", '{path: "{item}", lines: 200}', '{path: "{item}", lines: "{line_count}"}',
         r"runbook upstream-errors, step \d+ \(error_log\): with names fact 'line_count'"),
        ("webserver", "upstream-errors", "  - when: [dead_upstreams]", "  - when: [dead_upstream]",
         r"runbook upstream-errors, offer 1: when names fact 'dead_upstream'.*did you mean 'dead_upstreams'\?"),
        ("webserver", "upstream-errors", "upstream_down:", "upstream_dwn:",
         r"runbook upstream-errors, advice upstream_dwn: no analyzer this runbook runs declares the finding code "
         r"'upstream_dwn'; did you mean 'upstream_down'\?"),
        ("k8s", None, "namespace: \"Which namespace is the pod in", "namepsace: \"Which namespace is the pod in",
         r"runbook [a-z-]+, needs namepsace: 'namepsace' is not a slot of slots.yaml; did you mean 'namespace'\?"),
        ("k8s", None, 'params: {pod: "{pod|last_pod}"', 'params: {pod: "{pod|lastpod}"',
         r"action delete-pod, params: names 'lastpod', .*did you mean 'last_pod'\?"),
    ],
)
def test_a_broken_reference_in_runbooks_yaml_names_the_file_and_the_entry(
    tmp_path: Path, bundle: str, runbook: str | None, old: str, new: str, expected: str
) -> None:
    folder = copy(tmp_path, BUILTIN_BUNDLES / bundle)
    runbooks = edit_in(folder / "runbooks.yaml", runbook, old, new)
    message = refused(folder)
    assert message.startswith(f"{runbooks}: "), message
    assert re.search(expected, message), message
    step = re.search(r"runbook ([a-z-]+), step (\d+) \((\w+)\)", message)
    if step:  # the step it names is the one that was broken: that runbook's step N, that tool, the new name
        data = yaml.safe_load(runbooks.read_text())
        broken = next(r for r in data["runbooks"] if r["name"] == step[1])["steps"][int(step[2]) - 1]
        assert broken["tool"] == step[3]
        assert new.split(":")[-1].strip(' "[]{}') in str(broken), (broken, new)


def test_what_the_analyzer_stops_declaring_breaks_the_runbook_that_reads_it(tmp_path: Path) -> None:
    folder = copy(tmp_path, FIFTH)
    edit(folder / "analyzers.py", 'codes=("inodes_full", "inodes_ok")', 'codes=("inodes_ok",)')
    message = refused(folder)
    assert message.startswith(f"{folder / 'runbooks.yaml'}: runbook inodes-exhausted, advice inodes_full: "), message
    edit(folder / "analyzers.py", 'codes=("inodes_ok",)', 'codes=("inodes_full", "inodes_ok")')
    # The runbook seeds the list from the user's mount, so it stays known until the seed goes too.
    edit(folder / "analyzers.py", 'facts=("inode_full_mounts",), ', "")
    load_bundle(folder)
    edit(folder / "runbooks.yaml", "    seed: {inode_full_mounts: mount}\n", "")
    message = refused(folder)
    assert message.startswith(f"{folder / 'runbooks.yaml'}: runbook inodes-exhausted, step 2 (inode_hogs): "
                              "foreach names fact 'inode_full_mounts'"), message


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        ("'\\b(?:on|mount", "'(?:on|mount(", "slot mount: pattern .* is not a regular expression"),
        ("(/[^\\s,;:!?]*)'", "/[^\\s,;:!?]*'", "slot mount: pattern .* captures nothing; its group 1 is the value"),
        ('type: "path:/"', 'type: "folder"', "slot mount: type 'folder': unknown value type"),
        ("  mount:\n    type", "  mount: shard\n  other:\n    type", "slot mount: 'shard' is not a definition"),
    ],
)
def test_a_broken_slot_names_slots_yaml_and_the_slot(tmp_path: Path, old: str, new: str, expected: str) -> None:
    folder = copy(tmp_path, FIFTH)
    edit(folder / "slots.yaml", old, new)
    message = refused(folder)
    assert message.startswith(f"{folder / 'slots.yaml'}: "), message
    assert re.search(expected, message), message


def test_an_analyzer_module_that_fails_to_import_names_its_file(tmp_path: Path) -> None:
    folder = copy(tmp_path, FIFTH)
    edit(folder / "analyzers.py", "from .inodes import", "from .inodez import")
    message = refused(folder)
    assert message.startswith(f"{folder / 'analyzers.py'}: cannot import the analyzers: ModuleNotFoundError"), message


def test_a_bundle_cannot_take_a_shared_analyzers_name(tmp_path: Path) -> None:
    folder = copy(tmp_path, FIFTH)
    edit(folder / "analyzers.py", '@analyzer("storage.inode_hogs"', '@analyzer("common.generic"')
    message = refused(folder)
    assert message == f"{folder / 'analyzers.py'}: analyzer 'common.generic' is already registered by a shared analyzer; rename it"


def test_a_site_folder_is_its_own_package_and_a_reload_runs_its_current_code(tmp_path: Path) -> None:
    first = copy(Path(tempfile.mkdtemp(dir=tmp_path)), FIFTH)
    second = copy(Path(tempfile.mkdtemp(dir=tmp_path)), FIFTH)
    edit(second / "analyzers.py", 'summary=f"{len(rows)} file systems', 'summary=f"{len(rows)} filesystems')
    output = Output(argv=["df", "-i", "-P"], exit_code=0, stdout="Filesystem Inodes IUsed IFree IUse% Mounted on\n",
                    stderr="")

    def summary(folder: Path) -> str:
        return analyze(load_bundle(folder).analyzer_registry, "storage.inodes", output, {}).summary

    assert (summary(first), summary(second)) == ("0 file systems, 0 out of inodes", "0 filesystems, 0 out of inodes")
    edit(first / "analyzers.py", "{len(full)} out of inodes", "{len(full)} without inodes")
    assert summary(first) == "0 file systems, 0 without inodes"


def test_an_analyzer_that_produces_what_it_did_not_declare_is_reported(caplog: pytest.LogCaptureFixture,
                                                                      tmp_path: Path) -> None:
    folder = copy(tmp_path, FIFTH)
    edit(folder / "analyzers.py", 'result.add("inodes_ok"', 'result.facts["spare"] = True\n        result.add("inodes_ok"')
    output = Output(argv=["df", "-i", "-P"], exit_code=0, stdout="", stderr="")
    with caplog.at_level(logging.WARNING, logger="squads.brain.analyzers"):
        analysis = analyze(load_bundle(folder).analyzer_registry, "storage.inodes", output, {})
    assert analysis.facts == {"spare": True}  # the reply is unchanged; the declaration was incomplete
    assert "analyzer storage.inodes produced undeclared fact 'spare'" in caplog.text


def test_every_shipped_analyzer_declares_all_it_produces_over_the_whole_eval(caplog: pytest.LogCaptureFixture,
                                                                            tmp_path: Path) -> None:
    """The declarations are what the load-time check trusts: over every scenario, no analyzer may set a
    fact or add a finding code it does not declare."""
    squads = load_squads()
    db = open_database(url=f"sqlite:///{tmp_path / 'eval.sqlite3'}")
    try:
        with caplog.at_level(logging.WARNING, logger="squads.brain.analyzers"):
            for path in find_scenarios([REPO / "tests" / "scenarios", PUBLIC_SCENARIOS]):
                run_scenario(load_scenario(path), path=path, squads=squads, db=db)
    finally:
        db.engine.dispose()
    assert [r.getMessage() for r in caplog.records if "undeclared" in r.getMessage()] == []
