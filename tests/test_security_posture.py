"""Security squad, issue 12 third round: login refusals as the answer, setuid interpreters, services exposed
on every interface, sshd ports/algorithms/allow-lists, wtmp and reboots (TAXONOMY sec-18/19, 25, 29, 31/32,
35..40, 46, 48), read from realistic outputs of the real programs."""

from __future__ import annotations

from collections.abc import Mapping

from squads.brain.analyzers import Output
from squads.brain.models import Analysis, Severity
from squads.bundle_code import load_analyzers
from squads.grants import BUILTIN_BUNDLES

SEC = load_analyzers(BUILTIN_BUNDLES / "security")
JOURNAL = ["journalctl", "-u", "ssh", "--no-pager", "-n", "1000"]


def run(name: str, stdout: str, facts: Mapping[str, object] | None = None, argv: list[str] | None = None) -> Analysis:
    return SEC[name].fn(Output(argv=argv or ["x"], exit_code=0, stdout=stdout, stderr=""), dict(facts or {}))


def codes(result: Analysis) -> set[str]:
    return {f.code for f in result.findings}


def text(result: Analysis, code: str) -> str:
    return next(f.text for f in result.findings if f.code == code)


SS_HEAD = "Netid State  Recv-Q Send-Q Local Address:Port  Peer Address:Port Process\n"
SSHD_T = """port 22
addressfamily any
listenaddress [::]:22
listenaddress 0.0.0.0:22
permitrootlogin without-password
pubkeyauthentication yes
passwordauthentication no
kbdinteractiveauthentication no
permitemptypasswords no
maxauthtries 6
x11forwarding no
ciphers chacha20-poly1305@openssh.com,aes128-ctr,aes192-ctr,aes256-ctr,aes128-gcm@openssh.com,aes256-gcm@openssh.com
macs umac-64-etm@openssh.com,umac-128-etm@openssh.com,hmac-sha2-256-etm@openssh.com,hmac-sha2-512-etm@openssh.com,hmac-sha1-etm@openssh.com,umac-128@openssh.com,hmac-sha2-256,hmac-sha2-512
kexalgorithms sntrup761x25519-sha512@openssh.com,curve25519-sha256,curve25519-sha256@libssh.org,ecdh-sha2-nistp256,diffie-hellman-group16-sha512,diffie-hellman-group14-sha256
hostkeyalgorithms ssh-ed25519-cert-v01@openssh.com,ssh-ed25519,rsa-sha2-512,rsa-sha2-256
"""


def test_faillock_is_the_answer_to_a_user_who_cannot_log_in() -> None:
    log = ("Dec 07 09:11:58 web-3 sshd[4411]: Failed password for alice from 10.20.1.8 port 51120 ssh2\n"
           "Dec 07 09:12:01 web-3 sshd[4411]: pam_faillock(sshd:auth): Consecutive login failures for user alice "
           "account temporarily locked\n")
    result = run("sec.ssh_log", log, {"message": "alice can't log in on web-3"}, JOURNAL)
    first = result.findings[0]
    assert first.severity == Severity.CAUSE and "pam_faillock" in first.text and "faillock --user alice --reset" in first.text
    assert "{" not in " ".join(f.text for f in result.findings)  # the catalogue's causes are rendered too
    # The same log read for a brute-force check does not turn the lock into the cause.
    other = run("sec.ssh_log", log, {"message": "any failed logins?"}, JOURNAL)
    assert all(f.severity < Severity.CAUSE for f in other.findings if "pam_faillock" in f.text)


def test_the_refusal_naming_the_user_comes_first() -> None:
    log = ("Dec 07 09:10:01 web-3 sshd[4410]: User carol not allowed because account is locked\n"
           "Dec 07 09:12:01 web-3 sshd[4411]: Authentication refused: bad ownership or modes for directory /home/deploy\n")
    result = run("sec.ssh_log", log, {"message": "the deploy key stopped working"}, JOURNAL)
    assert "/home/deploy" in result.findings[0].text and result.findings[0].severity == Severity.CAUSE


def test_allowusers_refuses_the_named_user_but_is_not_a_weakness() -> None:
    result = run("sec.sshd", SSHD_T + "allowusers alice\nallowusers deploy@10.20.0.0/16\n",
                 {"message": "bob can't ssh in since the hardening"})
    assert "AllowUsers lists only alice, deploy" in text(result, "sshd_user_not_allowed")
    assert "sshd_noncompliant" not in codes(result)
    quiet = run("sec.sshd", SSHD_T + "allowusers alice\n", {"message": "audit sshd"})
    assert "sshd_user_not_allowed" not in codes(quiet) and "sshd_allow_lists" in codes(quiet)


def test_setuid_interpreters_and_find_are_privilege_escalation() -> None:
    found = "/usr/bin/su\n/usr/bin/sudo\n/usr/bin/passwd\n/usr/bin/mount\n/usr/bin/python3.11\n/usr/bin/find\n/usr/lib/openssh/ssh-keysign\n"
    result = run("sec.setuid", found)
    flagged = {f.data["path"] for f in result.findings if f.code == "setuid_interpreter"}
    assert flagged == {"/usr/bin/python3.11", "/usr/bin/find"}
    assert "setuid_ok" not in codes(result)
    clean = run("sec.setuid", "/usr/bin/su\n/usr/bin/sudo\n/usr/bin/passwd\n/usr/bin/chsh\n/usr/lib/openssh/ssh-keysign\n")
    assert codes(clean) == {"setuid_ok"}


def test_services_on_every_interface_vs_loopback() -> None:
    ss = SS_HEAD + (
        'tcp   LISTEN 0      511          0.0.0.0:6379       0.0.0.0:*     users:(("redis-server",pid=901,fd=6))\n'
        'tcp   LISTEN 0      4096               *:2375             *:*     users:(("dockerd",pid=1044,fd=9))\n'
        'tcp   LISTEN 0      244        127.0.0.1:5432       0.0.0.0:*     users:(("postgres",pid=1201,fd=5))\n'
        'tcp   LISTEN 0      4096               *:9200             *:*     users:(("java",pid=1301,fd=300))\n'
        'tcp   LISTEN 0      128        127.0.0.1:27017      0.0.0.0:*     users:(("mongod",pid=1401,fd=11))\n'
    )
    result = run("sec.listeners", ss)
    exposed = {f.data["port"] for f in result.findings if f.code == "listener_exposed_db"}
    assert exposed == {6379, 2375, 9200}
    assert "root on this host" in next(f.text for f in result.findings if f.data.get("port") == 2375)
    assert "listeners_ok" not in codes(result)


def test_udp_memcached_is_an_amplifier_and_comes_first() -> None:
    ss = SS_HEAD + (
        'tcp   LISTEN 0      128          0.0.0.0:22         0.0.0.0:*     users:(("sshd",pid=731,fd=3))\n'
        'udp   UNCONN 0      0            0.0.0.0:11211      0.0.0.0:*     users:(("memcached",pid=901,fd=26))\n'
    )
    result = run("sec.listeners", ss)
    assert result.findings[0].code == "listener_amplifier" and "amplification" in result.findings[0].text


def test_sshd_extra_port_and_a_second_sshd() -> None:
    ss = SS_HEAD + (
        'tcp   LISTEN 0      128          0.0.0.0:22         0.0.0.0:*     users:(("sshd",pid=731,fd=3))\n'
        'tcp   LISTEN 0      128          0.0.0.0:2222       0.0.0.0:*     users:(("sshd",pid=5120,fd=3))\n'
    )
    listening = run("sec.listeners", ss)
    assert listening.facts["sshd_ports"] == ["2222"]
    declared = run("sec.sshd", SSHD_T.replace("port 22\n", "port 22\nport 2222\n"), listening.facts)
    assert "2222" in text(declared, "sshd_extra_port") and "sshd_rogue_port" not in codes(declared)
    rogue = run("sec.sshd", SSHD_T, listening.facts)
    assert "second sshd" in text(rogue, "sshd_rogue_port") and "sshd_ok" not in codes(rogue)


def test_weak_algorithms_are_named_and_openssh_defaults_are_not() -> None:
    weak = (SSHD_T.replace("ciphers chacha20", "ciphers 3des-cbc,aes128-cbc,chacha20")
            .replace("kexalgorithms sntrup", "kexalgorithms diffie-hellman-group1-sha1,sntrup")
            .replace("macs umac", "macs hmac-md5,hmac-sha1-96,umac"))
    result = run("sec.sshd", weak)
    found = text(result, "sshd_weak_crypto")
    for name in ("3des-cbc", "aes128-cbc", "diffie-hellman-group1-sha1", "hmac-md5", "hmac-sha1-96"):
        assert name in found
    listed = found.split(". Remove")[0]
    assert "chacha20" not in listed and "umac-64-etm" not in listed
    assert "sshd_noncompliant" in codes(result)
    assert "sshd_weak_crypto" not in codes(run("sec.sshd", SSHD_T))


def test_wtmp_recreated_mid_month_is_a_finding_and_monthly_rotation_is_not() -> None:
    truncated = ("alice    pts/0        10.20.1.4        Tue Mar 10 09:41 - 10:58  (01:17)\n\n"
                 "wtmp begins Tue Mar 10 03:14:02 2026\n")
    assert "03:14" in text(run("sec.last", truncated), "wtmp_truncated")
    rotated = ("alice    pts/0        10.20.1.4        Mon Dec  7 10:41 - 10:58  (00:17)\n\n"
               "wtmp begins Tue Dec  1 00:00:02 2026\n")
    result = run("sec.last", rotated)
    assert "wtmp_truncated" not in codes(result) and "wtmp_span" in codes(result)


def test_a_crash_before_a_reboot_and_no_sudo_reboot() -> None:
    last = ("alice    pts/0        10.20.1.4        Mon Dec  7 01:41 - crash  (01:31)\n"
            "reboot   system boot  5.15.0-125-gener Mon Dec  7 03:12   still running\n\n"
            "wtmp begins Sun Nov  1 00:00:02 2026\n")
    result = run("sec.last", last, {"message": "server rebooted overnight, was it us?"})
    assert "without a clean shutdown" in text(result, "last_crash")
    assert "Mon Dec  7 03:12" in text(result, "last_reboots")
    auth = ("Dec  6 14:23:41 web-3 sudo:    alice : TTY=pts/0 ; PWD=/home/alice ; USER=root ; COMMAND=/usr/bin/apt-get update\n"
            "Dec  6 14:23:41 web-3 sudo: pam_unix(sudo:session): session opened for user root(uid=0) by alice(uid=1000)\n")
    log = run("sec.ssh_log", auth, {"message": "server rebooted overnight, was it us?"}, ["tail", "-n", "2000", "/var/log/auth.log"])
    assert "reboot_not_requested" in codes(log)
    asked = auth + ("Dec  7 03:11:02 web-3 sudo:    alice : TTY=pts/0 ; PWD=/home/alice ; USER=root ; "
                    "COMMAND=/usr/sbin/reboot\n")
    log = run("sec.ssh_log", asked, {"message": "server rebooted overnight, was it us?"}, ["tail", "-n", "2000", "/var/log/auth.log"])
    assert "alice asked for the reboot" in text(log, "reboot_by_user")
