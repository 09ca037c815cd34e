"""The catalogue beside an analyzer's own reasoning (issue 12 §2): the reasoning's findings win, the
catalogue reports the known errors it left out, with counts, and the error lines nobody recognises.
Real auth.log lines read by the shipped security analyzer."""

from __future__ import annotations

from squads.brain.analyzers import Output
from squads.brain.known_errors import fill_in
from squads.brain.models import Analysis, Severity
from squads.bundles.security.analyzers import ssh_log

FAILED = "".join(
    f"Nov 26 03:12:{40 + i:02d} bastion sshd[{3100 + i}]: Failed password for root from 45.142.120.7 port {40100 + i} ssh2\n"
    for i in range(6)
)
NOT_IN_SUDOERS = ("Nov 26 03:20:01 bastion sudo[4211]:  www-data : user NOT in sudoers ; TTY=unknown ; "
                  "PWD=/var/www/html ; USER=root ; COMMAND=/bin/bash\n")
ODD = "Nov 26 03:21:07 bastion backupd[5120]: error: could not open the vault: permission denied\n"


def _auth(text: str) -> Analysis:
    return ssh_log(Output(argv=["tail", "-n", "1000", "/var/log/auth.log"], exit_code=0, stdout=text, stderr=""), {})


def test_the_login_reasoning_wins_and_the_catalogue_adds_what_it_left_out() -> None:
    result = _auth(FAILED + NOT_IN_SUDOERS + NOT_IN_SUDOERS + ODD)
    codes = [f.code for f in result.findings]
    assert "ssh_bruteforce" in codes  # the specific reasoning
    signatures = [f for f in result.findings if f.code == "log_signature"]
    # The failed passwords are the reasoning's: no catalogue finding repeats them.
    assert [f.data["signature"] for f in signatures] == ["sudo-not-in-sudoers"]
    assert signatures[0].data["count"] == 2 and signatures[0].text.startswith("2 × ")
    assert "user NOT in sudoers" in signatures[0].text  # the decisive line quoted verbatim
    odd = next(f for f in result.findings if f.code == "log_unrecognised")
    assert "could not open the vault" in odd.text and "unrecognised error" in odd.text
    assert "log_signatures" in result.facts and result.facts["log_signatures"] == ["sudo-not-in-sudoers"]


def test_an_auth_log_with_only_logins_gets_no_catalogue_findings() -> None:
    result = _auth(FAILED)
    assert not [f for f in result.findings if f.code.startswith("log_")]


def test_an_empty_journal_is_no_data_and_nothing_else() -> None:
    out = ssh_log(Output(argv=["journalctl", "-u", "ssh"], exit_code=0, stdout="-- No entries --\n", stderr=""), {})
    assert [f.code for f in out.findings] == ["no_data"]


def test_a_line_a_finding_already_quotes_is_not_reported_twice() -> None:
    line = "2026/11/26 03:14:02 [crit] 2211#2211: *901 open() \"/var/log/nginx/access.log\" failed (28: No space left on device)"
    result = Analysis()
    result.add("disk_full", Severity.CAUSE, f"The log says `{line}`: the disk is full.")
    fill_in(result, line + "\n", squad="webserver", source="The error log")
    assert [f.code for f in result.findings] == ["disk_full"]


def test_explained_lines_are_left_to_the_reasoning() -> None:
    lines = ["2026/11/26 03:12:44 [error] 2211#2211: *881 connect() failed (111: Connection refused) while connecting to "
             "upstream, client: 10.0.0.7, server: shop, request: \"GET / HTTP/1.1\", upstream: \"http://127.0.0.1:8080/\"",
             "2026/11/26 03:12:45 [error] 2211#2211: *882 something nobody has seen before went wrong"]
    result = Analysis()
    fill_in(result, "\n".join(lines), squad="webserver", source="The error log", explained=lambda ln: "connect()" in ln)
    assert [f.code for f in result.findings] == ["log_unrecognised"]
    assert "nobody has seen" in result.findings[0].text


# -- k8s: events and container logs ---------------------------------------------------------------
EVENTS = """LAST SEEN   TYPE      REASON             OBJECT                  MESSAGE
2m          Warning   FailedScheduling   pod/api-7d9f8-x2kq9     0/3 nodes are available: 3 Insufficient cpu. preemption: 0/3 nodes are available: 3 No preemption victims found for incoming pod.
90s         Warning   FailedScheduling   pod/api-7d9f8-x2kq9     0/3 nodes are available: 3 Insufficient cpu. preemption: 0/3 nodes are available: 3 No preemption victims found for incoming pod.
1m          Warning   Frobnicated        pod/api-7d9f8-x2kq9     the frobnicator could not be reached
30s         Normal    Scheduled          pod/web-1               Successfully assigned shop/web-1 to node-2
"""


def _k8s(analyzer_fn: object, text: str, **params: str) -> Analysis:
    assert callable(analyzer_fn)
    out = analyzer_fn(Output(argv=["kubectl", "get", "events", "-n", "shop"], exit_code=0, stdout=text, stderr="",
                             params=dict(params)), {"namespace": "shop"})
    assert isinstance(out, Analysis)
    return out


def test_known_k8s_events_get_their_meaning_and_the_others_stay_listed() -> None:
    from squads.bundles.k8s.analyzers.cluster import events

    result = _k8s(events, EVENTS)
    known = [f for f in result.findings if f.code == "log_signature"]
    assert known and known[0].data["count"] == 2 and "Insufficient cpu" in known[0].text
    assert "next_checks" in result.facts  # what to run next for it (describe_nodes, top_nodes, ...)
    listed = [f.text for f in result.findings if f.code == "warning_event"]
    # The known warning is not listed again as a bare event; the one nobody knows is.
    assert listed == ["pod/api-7d9f8-x2kq9: Frobnicated: the frobnicator could not be reached"]


def test_a_container_log_reports_known_and_unrecognised_errors_and_keeps_its_reasoning() -> None:
    from squads.bundles.k8s.analyzers.pods import logs

    text = ("2026-11-26T10:00:01Z INFO starting api v2.9.0\n"
            "2026-11-26T10:00:02Z ERROR dial tcp 10.96.12.7:5432: connect: connection refused\n"
            "2026-11-26T10:00:03Z ERROR the ledger shard map is corrupt\n"
            "2026-11-26T10:00:03Z ERROR the ledger shard map is corrupt\n")
    result = _k8s(logs, text, pod="api-1")
    codes = [f.code for f in result.findings]
    assert "dependency_unreachable" in codes  # the reasoning's own finding for the refused connection
    odd = next(f for f in result.findings if f.code == "log_unrecognised")
    assert "2 × " in odd.text and "shard map is corrupt" in odd.text
    assert "connection refused" not in odd.text  # explained by the reasoning, not reported again
    assert "log_error" not in codes  # its last error line is already quoted


# -- database: the server log ----------------------------------------------------------------------
PG_LOG = """2026-11-26 03:10:01.123 UTC [2211] app@shop ERROR:  deadlock detected
2026-11-26 03:10:01.123 UTC [2211] app@shop DETAIL:  Process 2211 waits for ShareLock on transaction 9911; blocked by process 2212.
2026-11-26 03:11:30.002 UTC [2290] app@shop FATAL:  terminating connection due to conflict with recovery
2026-11-26 03:12:07.001 UTC [2302] app@shop ERROR:  frobnication of the ledger failed
2026-11-26 03:12:08.001 UTC [2303] app@shop ERROR:  frobnication of the ledger failed
2026-11-26 03:12:09.001 UTC [2304] LOG:  checkpoint starting: time
"""


def test_the_server_log_reasoning_wins_and_the_catalogue_fills_in() -> None:
    from squads.bundles.database.analyzers import server_log

    result = server_log(Output(argv=["tail", "-n", "500", "/var/log/postgresql/postgresql-16-main.log"], exit_code=0,
                               stdout=PG_LOG, stderr=""), {})
    codes = [f.code for f in result.findings]
    assert "pg_deadlock" in codes  # the database checks read the deadlock and its DETAIL to the end
    quoted = "\n".join(f.text for f in result.findings if f.code.startswith("log_"))
    assert "deadlock" not in quoted.lower() and "Process 2211" not in quoted  # not reported twice
    odd = next(f for f in result.findings if f.code == "log_unrecognised")
    assert "2 × " in odd.text and "frobnication of the ledger failed" in odd.text
    assert "pg_log_error" not in codes  # its last error line is already quoted, with its count


DESCRIBE_SANDBOX = """Name:             api-7d9f8-x2kq9
Namespace:        shop
Node:             node-2/10.0.0.12
Status:           Pending
Containers:
  api:
    Image:          registry.example.com/api:2.9.0
    State:          Waiting
      Reason:       ContainerCreating
    Ready:          False
    Restart Count:  0
Conditions:
  Type              Status
  PodScheduled      True
  Ready             False
Events:
  Type     Reason                  Age                From               Message
  ----     ------                  ----               ----               -------
  Normal   Scheduled               3m                 default-scheduler  Successfully assigned shop/api-7d9f8-x2kq9 to node-2
  Warning  FailedCreatePodSandBox  12s (x4 over 2m)   kubelet            Failed to create pod sandbox: rpc error: code = Unknown desc = failed to setup network for sandbox "3f2e": plugin type="calico" failed (add): failed to request IPv4 addresses: IPAM: failed to allocate IP: no IP addresses available in range set
"""


def test_a_pod_the_reasoning_finds_nothing_wrong_with_reads_its_warning_events_from_the_catalogue() -> None:
    from squads.bundles.k8s.analyzers.pods import describe_pod

    result = describe_pod(Output(argv=["kubectl", "describe", "pod", "api-7d9f8-x2kq9", "-n", "shop"], exit_code=0,
                                 stdout=DESCRIBE_SANDBOX, stderr="", params={"pod": "api-7d9f8-x2kq9"}), {})
    caught = [f for f in result.findings if f.code in ("log_signature", "log_unrecognised")]
    assert caught and "no IP addresses available" in caught[0].text
    assert max(f.severity for f in result.findings) >= Severity.PROBLEM  # never "nothing wrong"
