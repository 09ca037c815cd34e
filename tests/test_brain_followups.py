"""Follow-ups (issue 12 §4): a question runs or re-reads the check that answers it, "did it work?"
re-runs the checks on fresh output, and a request to act in a follow-up becomes the approval
request with the values the conversation found. End to end through the shipped squads, the
policy and the audit log, with realistic outputs (scenario fixtures)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from squads.brain.followups import (
    _folders_on, answering_steps, answering_tools, is_recheck, question_terms, recheck,
)
from squads.brain.models import Finding, Severity
from squads.brain.verdict import Checked, Outcome
from squads.evals.runner import ScenarioReport, run_scenario
from squads.models import SquadSpec
from squads.service import load_squads
from squads.storage.service import Database, open_database
from tools.executors.scenario import load_scenario

DF = """\
Filesystem      Size  Used Avail Use% Mounted on
udev            3.9G     0  3.9G   0% /dev
tmpfs           796M  1.1M  795M   1% /run
/dev/xvda1       48G   44G  3.1G  94% /
/dev/xvda15     105M  6.1M   99M   6% /boot/efi
"""
PASSWD = """\
root:x:0:0:root:/root:/bin/bash
daemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin
postgres:x:103:109:PostgreSQL administrator,,,:/var/lib/postgresql:/bin/bash
admin:x:1000:1000:Admin:/home/admin:/bin/bash
sys-update:x:0:0::/var/lib/sys-update:/bin/bash
"""


@pytest.fixture(scope="module")
def squads() -> dict[str, SquadSpec]:
    return load_squads()


@pytest.fixture()
def db(tmp_path: Path) -> Iterator[Database]:
    database = open_database(url=f"sqlite:///{tmp_path / 'eval.sqlite3'}")
    yield database
    database.engine.dispose()


def play(tmp_path: Path, text: str, squads: dict[str, SquadSpec], db: Database) -> ScenarioReport:
    path = tmp_path / "scenario.yaml"
    path.write_text(text)
    return run_scenario(load_scenario(path), path=path, squads=squads, db=db)


def _block(text: str, indent: int = 10) -> str:
    return "\n".join(" " * indent + line for line in text.splitlines())


DISK = f"""\
name: disk-followup
description: a 94% root file system, then "what's using the space?"
squad: webserver
nodes:
  web-2:
    labels: {{env: production}}
    fixtures:
      - run: df -h
        stdout: |
{_block(DF)}
      - run: du -sh /var/log
        stdout: "31G\\t/var/log\\n"
      - run: du -sh /var/log/nginx
        stdout: "29G\\t/var/log/nginx\\n"
      - run: du -sh /var/cache/nginx
        stdout: "1.1G\\t/var/cache/nginx\\n"
      - run: du -sh /var/www
        stdout: "2.4G\\t/var/www\\n"
      - run: du -sh /var/lib
        stdout: "1.7G\\t/var/lib\\n"
      - run: du -sh /srv
        stdout: "4.0K\\t/srv\\n"
      - run: du -sh /tmp
        stdout: "22M\\t/tmp\\n"
      - run: tail *error.log
        stdout: ""
conversation:
  - user: "got a disk alert for web-2, 94%. is it actually filling up?"
  - user: "ok so what's using the space?"
"""


def test_what_is_using_the_space_measures_every_folder_on_the_full_file_system(
        tmp_path: Path, squads: dict[str, SquadSpec], db: Database) -> None:
    report = play(tmp_path, DISK, squads, db)
    first, second = report.turns
    ran = [" ".join(a) for a in second.ran]
    # The folder tool on each folder its path parameter allows on "/", not only the runbook's own.
    for folder in ("/var/www", "/var/lib", "/srv", "/tmp"):
        assert f"du -sh {folder}" in ran
    assert not any(a.startswith(("rm", "find", "truncate")) for a in ran)
    reply = second.reply_text
    assert reply.startswith('To answer "ok so what\'s using the space?" I looked at')
    answer = reply.split("Where the diagnosis stands:")[0]
    # Biggest first, from what ran now and what was measured in the first turn.
    order = [answer.index(f"{p} holds") for p in ("/var/log", "/var/log/nginx", "/var/www", "/var/lib", "/tmp", "/srv")]
    assert order == sorted(order)
    assert reply != first.reply_text


SECURITY = f"""\
name: uid0-recheck
description: a UID-0 backdoor, then the user says it is gone
squad: security
nodes:
  db-9:
    labels: {{env: production}}
    fixtures:
      - run: getent passwd
        stdout: |
{_block(PASSWD)}
      - run: last*
        stdout: |
          admin    pts/0        10.3.0.8         Mon Dec  7 09:14   still logged in

          wtmp begins Tue Dec  1 00:00:01 2026
conversation:
  - user: "can you check db-9 for backdoor accounts pls?"
  - user: "ok ran userdel sys-update, it's gone now. we good?"
"""


def test_we_good_after_a_change_runs_the_check_again_and_says_what_is_still_there(
        tmp_path: Path, squads: dict[str, SquadSpec], db: Database) -> None:
    report = play(tmp_path, SECURITY, squads, db)
    first, second = report.turns
    assert "sys-update" in first.reply_text
    # Fresh output, not the first turn's re-read: the command ran again.
    assert ["getent", "passwd"] in second.ran
    reply = second.reply_text
    assert reply.startswith("I ran the checks again, with fresh output")
    assert "Still there: Account sys-update has UID 0" in reply
    assert "Gone now" not in reply and "nothing wrong" not in reply.lower()


DATABASE = """\
name: kill-that-report
description: a reporting query spilling temp files, then "can u kill that report query"
squad: database
nodes:
  db-2:
    labels: {env: production}
    fixtures:
      - run: psql *pg_stat_activity*runtime*
        stdout: |
          pid|usename|datname|state|runtime|wait_event_type|query
          41877|report|analytics|active|03:12:44.601183|IO|SELECT r.region, p.category, sum(ol.qty * ol.unit_price) FROM orders o JOIN order_lines ol ON ol.order_id = o.id GROUP BY 1, 2
          88120|app|analytics|active|00:00:00.412008||SELECT count(*) FROM events WHERE tenant_id = $1
conversation:
  - user: "which queries have been running for a long time on db-2?"
  - user: "can u kill that report query, i dont want the disk to hit 100"
"""


def test_an_action_in_a_follow_up_is_the_approval_request_with_the_pid_found_earlier(
        tmp_path: Path, squads: dict[str, SquadSpec], db: Database) -> None:
    report = play(tmp_path, DATABASE, squads, db)
    first, second = report.turns
    assert "41877" in first.reply_text
    assert second.ran == []  # nothing runs: it is only requested
    assert len(second.approvals) == 1 and "pg_terminate_backend(41877)" in " ".join(second.approvals[0])
    assert "approv" in second.reply_text and "From the evidence I already gathered" not in second.reply_text


# -- the vocabulary: the squads' own words, no scenario's -------------------------------------------
@pytest.mark.parametrize(("squad", "question", "tool"), [
    ("webserver", "what's using the space?", "dir_size"),
    ("webserver", "what port is it listening on?", "listening_sockets"),
    ("webserver", "is the cert expiring?", "certificate_dates"),
    ("k8s", "are customers hitting errors or is the old version still serving?", "list_replicasets"),
    ("k8s", "which pods are using the most memory?", "top_pods"),
    ("database", "who is blocking whom?", "blocking"),
    ("security", "who logged in?", "recent_logins"),
])
def test_a_question_is_matched_to_the_tool_whose_own_words_answer_it(
        squads: dict[str, SquadSpec], squad: str, question: str, tool: str) -> None:
    assert answering_tools(question, squads[squad].playbook())[0] == tool


@pytest.mark.parametrize("question", ["what do I need to change?", "why?", "thanks, what next?"])
def test_a_question_without_a_subject_runs_nothing_new(squads: dict[str, SquadSpec], question: str) -> None:
    assert answering_tools(question, squads["webserver"].playbook()) == []


def test_which_errors_prefers_the_log_already_read(squads: dict[str, SquadSpec]) -> None:
    playbook = squads["database"].playbook()
    assert "error" in question_terms("which errors, how many of each?")
    assert answering_tools("which errors, how many of each?", playbook, ran=["server_log"]) == ["server_log"]


def test_state_changing_tools_never_answer_a_question(squads: dict[str, SquadSpec]) -> None:
    for spec in squads.values():
        playbook = spec.playbook()
        for question in ("restart it?", "can you scale it?", "delete the pod?", "terminate the backend?"):
            assert all(not playbook.tools[t].changes for t in answering_tools(question, playbook))


def test_folders_on_a_full_mount_come_from_the_path_parameter() -> None:
    spec = "path:/var/log,/var/log/nginx,/var/www,/var/lib,/srv,/tmp"
    assert _folders_on(spec, ["/"]) == ["/var/log", "/var/www", "/var/lib", "/srv", "/tmp"]
    assert _folders_on(spec, ["/var/lib"]) == ["/var/lib"]
    assert _folders_on(spec, ["/boot/efi"]) == [] and _folders_on("int:1..5", ["/"]) == []


def test_answering_steps_drop_conditions_and_keep_the_runbook_parameters(squads: dict[str, SquadSpec]) -> None:
    playbook = squads["webserver"].playbook()
    steps = answering_steps(["dir_size"], playbook, {"full_mounts": ["/"], "server": "nginx"})
    assert all(s.when == [] and s.tool == "dir_size" for s in steps)
    assert {"path": "/var/www"} in [s.with_ for s in steps]


@pytest.mark.parametrize("text", [
    "ok ran userdel sys-update, it's gone now. we good?", "did it work?", "I've restarted it, how about now?",
    "we bumped max_connections to 300", "check the disk again", "is it still failing?", "fixed it, recheck pls",
])
def test_a_change_or_did_it_work_is_a_recheck(text: str) -> None:
    assert is_recheck(text)


@pytest.mark.parametrize("text", [
    "nginx returns 502 since the deploy", "what's using the space?", "is the old version still serving?",
    "disk full on web-1", "who logged in as root?",
])
def test_a_new_question_is_no_recheck(text: str) -> None:
    assert not is_recheck(text)


def test_recheck_says_still_there_gone_and_not_rechecked() -> None:
    before = [
        {"code": "uid0", "text": "Account x has UID 0.", "argv": ["getent", "passwd"]},
        {"code": "disk_full", "text": "/ is 100% full.", "argv": ["df", "-h"]},
        {"code": "cert", "text": "The certificate expires in 2 days.", "argv": ["openssl", "x509"]},
    ]
    outcome = Outcome(findings=[Finding("uid0", Severity.CAUSE, "Account x has UID 0.")],
                      checked=[Checked(["getent", "passwd"], "1 extra UID 0"), Checked(["df", "-h"], "/ 41%")],
                      gaps=[], produced={})
    reply = recheck(before, outcome, "REST")
    assert "- Still there: Account x has UID 0." in reply
    assert "- Gone now (the same check no longer shows it): / is 100% full." in reply
    assert "- Not re-checked (its check did not run again), so it still stands: The certificate" in reply
    assert reply.endswith("\n\nREST")
