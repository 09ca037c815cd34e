"""The error-signature catalogue: loading and validation, matching and ranking, every shipped entry,
and the webserver classes of issue 12 §2 (a 413 is not "nothing wrong"; a bind failure is not a
configuration error with a leaked placeholder)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from squads.brain.models import Severity
from squads.brain.signatures import (
    BUNDLES_DIR, MISSING, SHARED_DIR, Catalogue, SignatureError, load_catalogue, log_findings, match_log, read_file,
)
from squads.cli import app
from squads.grants import BundleError
from squads.service import load_bundle

HERE = Path(__file__).parent
FIFTH = HERE / "data" / "fifth_squad" / "storage"
ALL_FILES = sorted(SHARED_DIR.glob("*.yaml")) + sorted(BUNDLES_DIR.glob("*/signatures/*.yaml"))

GOOD = {
    "id": "demo-port-in-use",
    "program": "demo",
    "pattern": r'bind\(\) to (?P<address>\S+) failed \(98: Address already in use\)(?: in (?P<file>\S+))?',
    "severity": "emerg",
    "meaning": "Cannot listen on {address}; file {file}.",
    "causes": ["another process holds the port"],
    "next_checks": ["listening_sockets"],
    "fix": "Free {address}.",
    "examples": ["2026/11/26 03:12:44 [emerg] 1#1: bind() to 0.0.0.0:80 failed (98: Address already in use)"],
}


def write(folder: Path, name: str, entries: object) -> Path:
    path = folder / "signatures" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump({"signatures": entries}, sort_keys=False))
    return path


def load(tmp_path: Path, *entries: dict[str, object], tools: tuple[str, ...] = ("listening_sockets",)) -> Catalogue:
    write(tmp_path, "demo.yaml", list(entries))
    return load_catalogue(tmp_path, tools=tools, shared=tmp_path / "no-shared")


# --- loading ---------------------------------------------------------------------------------------

@pytest.mark.parametrize(("change", "problem"), [
    ({"id": "Not_Kebab"}, "id must be kebab-case"),
    ({"severity": "fatal"}, "severity 'fatal' is not one of"),
    ({"pattern": "bind\\(( unbalanced"}, "pattern does not compile"),
    ({"pattern": "(?:x)?"}, "matches an empty line"),
    ({"meaning": "Cannot listen on {port}."}, "meaning uses {port}, which is not a named group of the pattern (named groups: address, file)"),
    ({"fix": "Fix {file} at line {line}."}, "fix uses {line}, which is not a named group"),
    ({"examples": ["nginx: [emerg] bind() to 0.0.0.0:80 failed (13: Permission denied)"]}, "example does not match the pattern"),
    ({"examples": []}, "examples must list at least one real log line"),
    ({"next_checks": ["listening_socket"]}, "next_checks names 'listening_socket', which is not a tool of this squad"),
    ({"causes": "one string"}, "causes must be a list of non-empty strings"),
    ({"colour": "red"}, "unknown field(s) ['colour']"),
    ({"meaning": ""}, "meaning must be a non-empty string"),
])
def test_each_broken_entry_is_refused_naming_the_file_and_the_entry(tmp_path: Path, change: dict[str, object], problem: str) -> None:
    with pytest.raises(SignatureError) as caught:
        load(tmp_path, {**GOOD, **change})
    message = str(caught.value)
    assert message.startswith(f"{tmp_path / 'signatures' / 'demo.yaml'}: signature ")
    assert problem in message


def test_a_missing_field_and_a_file_of_the_wrong_shape_are_refused(tmp_path: Path) -> None:
    entry = {k: v for k, v in GOOD.items() if k != "fix"}
    with pytest.raises(SignatureError, match=r"signature demo-port-in-use: missing field\(s\) \['fix'\]"):
        load(tmp_path, entry)
    bad = tmp_path / "bad"
    (bad / "signatures").mkdir(parents=True)
    (bad / "signatures" / "x.yaml").write_text("entries: []\n")
    with pytest.raises(SignatureError, match="expected one top-level key 'signatures'"):
        load_catalogue(bad, tools=(), shared=tmp_path / "none")
    (bad / "signatures" / "x.yaml").write_text("signatures: [\n")
    with pytest.raises(SignatureError, match="not valid YAML"):
        load_catalogue(bad, tools=(), shared=tmp_path / "none")


def test_ids_are_unique_across_the_squad_and_the_shared_files(tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    (shared / "systemd.yaml").write_text(yaml.safe_dump({"signatures": [GOOD]}))
    write(tmp_path, "demo.yaml", [GOOD])
    with pytest.raises(SignatureError, match=r"signature demo-port-in-use: the id is already used in .*systemd.yaml"):
        load_catalogue(tmp_path, tools=("listening_sockets",), shared=shared)


def test_a_shared_entry_skips_next_checks_the_squad_does_not_have(tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    (shared / "kernel.yaml").write_text(yaml.safe_dump({"signatures": [{**GOOD, "next_checks": ["memory", "listening_sockets"]}]}))
    table = load_catalogue(None, tools=("listening_sockets",), shared=shared)
    assert table.signatures[0].next_checks == ("listening_sockets",)


def test_a_bundle_with_a_broken_signature_does_not_load(tmp_path: Path) -> None:
    folder = tmp_path / "storage"
    shutil.copytree(FIFTH, folder)
    write(folder, "df.yaml", [{**GOOD, "next_checks": ["inode_usage"], "fix": "Run {command}."}])
    with pytest.raises(BundleError, match=r"df.yaml: signature demo-port-in-use: fix uses \{command\}"):
        load_bundle(folder)
    write(folder, "df.yaml", [{**GOOD, "next_checks": ["inode_usage"]}])
    assert load_bundle(folder).name == "storage"


# --- matching --------------------------------------------------------------------------------------

NGINX_LOG = """\
2026/11/26 03:10:00 [info] 12#12: *1 client 10.0.0.9 closed keepalive connection
2026/11/26 03:11:00 [error] 12#12: *2 connect() failed (111: Connection refused) while connecting to upstream, client: 10.0.0.7, server: shop, request: "GET / HTTP/1.1", upstream: "http://127.0.0.1:8080/", host: "shop"
2026/11/26 03:12:00 [crit] 12#12: accept4() failed (24: Too many open files)
2026/11/26 03:12:01 [crit] 12#12: accept4() failed (24: Too many open files)
2026/11/26 03:13:00 [error] 12#12: *3 connect() failed (111: Connection refused) while connecting to upstream, client: 10.0.0.8, server: shop, request: "GET /a HTTP/1.1", upstream: "http://127.0.0.1:8080/a", host: "shop"
2026/11/26 03:14:00 [error] 12#12: *4 frobnicator 7 exploded unexpectedly, client: 10.0.0.8, server: shop
2026/11/26 03:14:09 [error] 12#12: *5 frobnicator 8 exploded unexpectedly, client: 10.0.0.9, server: shop
"""


def test_matches_are_ranked_by_severity_then_recency_grouped_and_quoted_verbatim() -> None:
    report = match_log(NGINX_LOG, squad="webserver")
    assert [m.signature.id for m in report.matches] == [
        "nginx-too-many-open-files", "nginx-upstream-refused", "nginx-client-closed"]
    decisive = report.decisive
    assert decisive is not None and decisive.count == 2
    assert decisive.line == "2026/11/26 03:12:01 [crit] 12#12: accept4() failed (24: Too many open files)"
    refused = report.matches[1]
    assert refused.count == 2 and refused.groups["upstream"] == "http://127.0.0.1:8080/a"
    assert "nginx could not connect to the upstream http://127.0.0.1:8080/a" in refused.meaning


def test_an_error_line_that_matches_nothing_is_reported_as_unrecognised_with_its_count() -> None:
    report = match_log(NGINX_LOG, squad="webserver")
    assert len(report.unrecognised) == 1
    odd = report.unrecognised[0]
    assert odd.count == 2 and odd.line.endswith("frobnicator 8 exploded unexpectedly, client: 10.0.0.9, server: shop")
    facts, findings = log_findings(report)
    unrecognised = [f for f in findings if f.code == "log_unrecognised"]
    assert unrecognised and "unrecognised error" in unrecognised[0].text and "2 × " in unrecognised[0].text
    # With no known error beside it, an unrecognised error is a problem, never "nothing wrong".
    alone = log_findings(match_log(NGINX_LOG.splitlines()[-1], squad="webserver"))[1]
    assert [(f.code, f.severity) for f in alone] == [("log_unrecognised", Severity.PROBLEM)]


def test_findings_lead_with_the_decisive_line_its_meaning_causes_and_fix_and_set_next_checks() -> None:
    facts, findings = log_findings(match_log(NGINX_LOG, squad="webserver"))
    assert facts["log_signatures"][0] == "nginx-too-many-open-files"
    assert facts["next_checks"][:2] == ["config_dump", "processes"]
    first = findings[0]
    assert first.severity == Severity.CAUSE and first.text.startswith("2 × \"2026/11/26 03:12:01 [crit]")
    assert "Likely causes: no worker_rlimit_nofile" in first.text and "Fix: Raise the open files limit" in first.text
    # Routine lines are recognised but not reported.
    assert not any("keepalive" in f.text for f in findings)


def test_an_optional_group_that_did_not_match_reads_neutrally(tmp_path: Path) -> None:
    table = load(tmp_path, GOOD)
    report = match_log("nginx: [emerg] bind() to 0.0.0.0:80 failed (98: Address already in use)", squad="demo", known=table)
    assert report.decisive is not None
    assert report.decisive.meaning == f"Cannot listen on 0.0.0.0:80; file {MISSING}."


def test_literal_braces_are_written_doubled(tmp_path: Path) -> None:
    table = load(tmp_path, {**GOOD, "fix": "Use %{{REQUEST_FILENAME}} and ${{{address}}}."})
    report = match_log(GOOD["examples"][0], squad="demo", known=table)  # type: ignore[index]
    assert report.decisive is not None and report.decisive.fix == "Use %{REQUEST_FILENAME} and ${0.0.0.0:80}."


def test_a_catch_all_yields_to_a_specific_entry_whatever_the_order(tmp_path: Path) -> None:
    generic = {**GOOD, "id": "port-in-use-other", "pattern": "Address already in use", "meaning": "Generic.",
               "fix": "Generic."}
    table = load(tmp_path, generic, GOOD)
    hit = table.match(GOOD["examples"][0])  # type: ignore[index]
    assert hit is not None and hit[0].id == "demo-port-in-use"
    hit = table.match("listen: Address already in use")
    assert hit is not None and hit[0].id == "port-in-use-other"


def test_empty_output_and_journal_markers_are_no_data() -> None:
    assert match_log("-- No entries --\n", squad="webserver").empty
    assert match_log("No journal files were found.\n", squad="webserver").empty
    assert not match_log(NGINX_LOG, squad="webserver").empty


# --- the shipped catalogues ------------------------------------------------------------------------

def test_every_shipped_catalogue_loads_with_unique_ids_and_examples_that_match_their_own_entry() -> None:
    ids: dict[str, Path] = {}
    count = 0
    for path in ALL_FILES:
        for signature in read_file(path, None):
            assert signature.id not in ids, f"{signature.id} is in {ids.get(signature.id)} and {path}"
            ids[signature.id] = path
            for example in signature.examples:
                assert signature.pattern.search(example), f"{path}: {signature.id}: {example}"
            count += 1
    assert count >= 120


@pytest.mark.parametrize("squad", sorted(p.name for p in BUNDLES_DIR.iterdir() if (p / "squad.yaml").exists()))
def test_each_squads_catalogue_attributes_every_example_to_its_own_entry(squad: str) -> None:
    """A specific entry written after a broader one would never be used: its examples would go to the other."""
    folder = BUNDLES_DIR / squad
    tools = [t["name"] for t in yaml.safe_load((folder / "tools.yaml").read_text())["tools"]]
    table = load_catalogue(folder, tools=tools)
    for signature in table.signatures:
        if signature.catch_all:
            continue
        for example in signature.examples:
            hit = table.match(example)
            assert hit is not None and hit[0].id == signature.id, f"{signature.id}: {example!r} goes to {hit and hit[0].id}"


def test_rendered_meanings_and_fixes_never_leak_a_placeholder() -> None:
    for path in ALL_FILES:
        for signature in read_file(path, None):
            for example in signature.examples:
                groups = signature.pattern.search(example).groupdict()  # type: ignore[union-attr]
                for text in (signature.render(signature.meaning, groups), signature.render(signature.fix, groups)):
                    assert "{" not in text.replace("${", "").replace("%{", ""), f"{signature.id}: {text}"


# --- the webserver classes of issue 12 §2 ----------------------------------------------------------

def test_a_413_and_a_bind_failure_get_their_real_diagnosis() -> None:
    """Scenarios in tests/data/signatures: "client intended to send too large body" names
    client_max_body_size and is never "nothing wrong"; a bind() failure on port 80 says the address
    is in use, is no "configuration error" and leaks no {file}/{line}."""
    result = CliRunner().invoke(app, ["eval", "--now", "2026-11-26T12:00:00Z", str(HERE / "data" / "signatures")])
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines()[-1] == "2 passed, 0 failed"
