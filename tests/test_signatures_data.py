"""The error-signature catalogue's data for the database, security and k8s squads (issue 12 §2, contract 4).

Every entry is checked against the contract on its own terms, independently of the matcher:
the schema, unique kebab-case ids, a pattern that compiles, placeholders that are named groups,
next checks that are read-only tools of the squad, and examples that match their own entry and
are not shadowed by an earlier entry of the same squad (catalogue order: the files sorted by
name, then the entries in file order). Ordinary lines that are no fault must not match an
entry at warning severity or above.
"""

from __future__ import annotations

import functools
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
BUNDLES = REPO / "squads" / "bundles"
SQUADS = ("database", "security", "k8s")
KEYS = {"id", "program", "pattern", "severity", "meaning", "causes", "next_checks", "fix", "examples"}
SEVERITIES = ("emerg", "alert", "crit", "error", "warning", "notice")
SERIOUS = {"emerg", "alert", "crit", "error", "warning"}
ID = re.compile(r"[a-z0-9]+(?:-[a-z0-9]+)*")
PLACEHOLDER = re.compile(r"\{([^{}]*)\}")


@functools.cache
def catalogue(squad: str) -> list[dict[str, Any]]:
    """The squad's entries in catalogue order, each with the file it came from under '_file'."""
    entries: list[dict[str, Any]] = []
    for path in sorted((BUNDLES / squad / "signatures").glob("*.yaml")):
        document = yaml.safe_load(path.read_text())
        assert isinstance(document, dict) and set(document) == {"signatures"}, path
        for entry in document["signatures"]:
            assert isinstance(entry, dict), f"{path}: {entry!r}"
            entries.append({**entry, "_file": path.name})
    return entries


@functools.cache
def read_only_tools(squad: str) -> set[str]:
    tools = yaml.safe_load((BUNDLES / squad / "tools.yaml").read_text())["tools"]
    return {tool["name"] for tool in tools if tool.get("effect", "allow") == "allow"}


ALL = [(squad, entry) for squad in SQUADS for entry in catalogue(squad)]


def label(case: tuple[str, dict[str, Any]]) -> str:
    return str(case[1].get("id"))


@pytest.mark.parametrize("squad", SQUADS)
def test_each_squad_has_a_broad_catalogue(squad: str) -> None:
    entries = catalogue(squad)
    assert len(entries) >= 60, f"{squad}: only {len(entries)} signatures"


def test_ids_are_unique_across_every_catalogue() -> None:
    seen: dict[str, str] = {}
    paths = sorted(BUNDLES.glob("*/signatures/*.yaml")) + sorted(
        (REPO / "squads" / "brain" / "signatures").glob("*.yaml"))
    for path in paths:
        for entry in yaml.safe_load(path.read_text())["signatures"]:
            assert entry["id"] not in seen, f"{entry['id']} in {path} and {seen[entry['id']]}"
            seen[entry["id"]] = str(path)
    assert len(seen) >= 180


@pytest.mark.parametrize("case", ALL, ids=[label(case) for case in ALL])
def test_entry_follows_the_contract(case: tuple[str, dict[str, Any]]) -> None:
    squad, entry = case
    fields = {key for key in entry if key != "_file"}
    assert fields == KEYS, f"missing {KEYS - fields}, unknown {fields - KEYS}"
    assert ID.fullmatch(entry["id"]), entry["id"]
    assert entry["severity"] in SEVERITIES
    assert isinstance(entry["program"], str) and entry["program"]
    pattern = re.compile(entry["pattern"])
    for text in (entry["meaning"], entry["fix"]):
        assert isinstance(text, str) and len(text) > 20
        names = set(PLACEHOLDER.findall(text))
        assert names <= set(pattern.groupindex), f"{names - set(pattern.groupindex)} are no named groups"
    assert isinstance(entry["causes"], list) and entry["causes"]
    assert all(isinstance(cause, str) and cause for cause in entry["causes"])
    checks = entry["next_checks"]
    assert isinstance(checks, list)
    assert set(checks) <= read_only_tools(squad), f"{set(checks) - read_only_tools(squad)} are no read-only {squad} tools"
    assert isinstance(entry["examples"], list) and entry["examples"]


@pytest.mark.parametrize("case", ALL, ids=[label(case) for case in ALL])
def test_examples_match_their_own_entry_first(case: tuple[str, dict[str, Any]]) -> None:
    squad, entry = case
    compiled = [(other["id"], re.compile(other["pattern"])) for other in catalogue(squad)]
    own = re.compile(entry["pattern"])
    for example in entry["examples"]:
        assert "\n" not in example, "an example is one log line"
        found = own.search(example)
        assert found, f"{entry['id']} does not match its example {example!r}"
        first = next(name for name, pattern in compiled if pattern.search(example))
        assert first == entry["id"], f"{example!r} is matched first by {first}, not {entry['id']}"
        # Rendering with this line's groups leaves no placeholder behind (an optional group that
        # did not match is rendered as a neutral word by the engine; here: every group is filled).
        values = {name: value or "(unknown)" for name, value in found.groupdict().items()}
        for text in (entry["meaning"], entry["fix"]):
            rendered = text.format_map(values)
            assert "{" not in rendered and "}" not in rendered, rendered


# Ordinary lines from the same programs: no fault, so no entry at warning severity or above
# may claim them (a catalogue that flags routine lines buries the decisive one).
ROUTINE = {
    "database": [
        "2026-11-26 03:12:44.123 UTC [2211] LOG:  checkpoint starting: time",
        "2026-11-26 03:17:14.881 UTC [2211] LOG:  checkpoint complete: wrote 1841 buffers (11.2%); 0 WAL file(s) "
        "added, 0 removed, 1 recycled; write=269.880 s, sync=0.004 s, total=269.911 s",
        "2026-11-26 03:12:44.123 UTC [812] LOG:  database system is ready to accept connections",
        "2026-11-26 03:12:44.123 UTC [3310] app@shop LOG:  connection authorized: user=app database=shop "
        "application_name=psql",
        "2026-11-26 03:12:44.123 UTC [3310] LOG:  automatic vacuum of table \"shop.public.orders\": index scans: 1",
        "2026-11-26 03:12:44.123 UTC [3310] LOG:  listening on IPv4 address \"0.0.0.0\", port 5432",
        "2026-11-26 03:12:44.123 UTC [3310] app@shop LOG:  duration: 12.114 ms  statement: SELECT 1",
        # A pid that looks like an SQLSTATE code, and a prefix with %e on an ordinary line.
        "2026-11-26 03:12:44.123 UTC [53000] LOG:  checkpoint starting: time",
        "2026-11-26 03:12:44.123 UTC [2211] 00000 app@shop LOG:  connection authorized: user=app database=shop",
    ],
    "security": [
        "Nov 26 03:12:44 web-1 sshd[2211]: Server listening on 0.0.0.0 port 22.",
        "Nov 26 03:12:44 web-1 CRON[2211]: pam_unix(cron:session): session opened for user root(uid=0) by (uid=0)",
        "Nov 26 03:12:44 web-1 systemd-logind[612]: New session 42 of user alice.",
        "Nov 26 03:12:44 web-1 sshd[2211]: pam_unix(sshd:session): session closed for user alice",
        "ciphers chacha20-poly1305@openssh.com,aes128-ctr,aes192-ctr,aes256-ctr",
        "permitrootlogin no",
        "passwordauthentication no",
    ],
    "k8s": [
        "  Normal  Scheduled  2m   default-scheduler  Successfully assigned shop/api-7f9c-x2x4k to node-2",
        "  Normal  Pulled     2m   kubelet            Container image \"registry.example.com/api:2.9.0\" already "
        "present on machine",
        "  Normal  Created    2m   kubelet            Created container api",
        "  Normal  Started    2m   kubelet            Started container api",
        "2m          Normal    ScalingReplicaSet   deployment/api   Scaled up replica set api-7f9c to 3",
        "[INFO] 10.244.1.7:53530 - 43122 \"A IN api.shop.svc.cluster.local. udp 50 false 512\" NOERROR qr,aa,rd 94 "
        "0.000164s",
        "      Reason:       Completed",
    ],
}


@pytest.mark.parametrize("squad", SQUADS)
def test_routine_lines_are_not_flagged(squad: str) -> None:
    entries = catalogue(squad)
    for line in ROUTINE[squad]:
        for entry in entries:
            if re.search(entry["pattern"], line):
                assert entry["severity"] not in SERIOUS, f"{entry['id']} flags the routine line {line!r}"


@pytest.mark.parametrize("squad", SQUADS)
def test_the_engine_loads_the_squad_catalogue_and_each_example_finds_its_entry(squad: str) -> None:
    """Through squads.brain.signatures, as the bundle loads it: the shared entries (systemd, kernel,
    errno) come first and an id ending in '-other' is a catch-all, so neither may take our examples."""
    from squads.brain.signatures import load_catalogue

    tools = [tool["name"] for tool in yaml.safe_load((BUNDLES / squad / "tools.yaml").read_text())["tools"]]
    loaded = load_catalogue(BUNDLES / squad, tools=tools)
    ours = {entry["id"] for entry in catalogue(squad)}
    assert ours <= {signature.id for signature in loaded.signatures}
    for entry in catalogue(squad):
        assert not entry["id"].endswith("-other"), f"{entry['id']} would be a catch-all"
        for example in entry["examples"]:
            hit = loaded.match(example)
            assert hit is not None and hit[0].id == entry["id"], f"{example!r} -> {hit and hit[0].id}"
            for text in (entry["meaning"], entry["fix"]):
                rendered = hit[0].render(text, hit[1].groupdict())
                assert not PLACEHOLDER.search(rendered), rendered
