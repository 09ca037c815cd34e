"""Round 3 of issue 12 for the database and security squads, on real output formats (names and values
differ from the blind batches): the kernel log names the failing disk behind PostgreSQL's I/O errors
(and says whether the OOM killer was involved); sudo/su in the auth log (a service account becoming
root is a likely compromise, a sudo chmod u+s is named with user and time); OpenSSH's default MACs are a
note, not "configured unsafely"; a setuid interpreter asks for the auth log; the runbooks that read them."""

from __future__ import annotations

from squads.brain.analyzers import Output
from squads.brain.models import Analysis, Severity
from squads.bundles.database.analyzers import kernel
from squads.bundles.security.analyzers import setuid, ssh_log, sshd


def _out(argv: list[str], stdout: str, exit_code: int = 0, stderr: str = "") -> Output:
    return Output(argv=argv, exit_code=exit_code, stdout=stdout, stderr=stderr)


def _codes(result: Analysis) -> list[str]:
    return [f.code for f in result.findings]


NVME_KERNEL = """\
Mar 02 11:40:01 pg-eu-7 kernel: nvme nvme1: I/O 412 QID 3 timeout, aborting
Mar 02 11:40:31 pg-eu-7 kernel: nvme nvme1: I/O 412 QID 3 timeout, reset controller
Mar 02 11:41:02 pg-eu-7 kernel: blk_update_request: I/O error, dev nvme1n1, sector 88211456 op 0x1:(WRITE) flags 0x8800 phys_seg 4 prio class 0
Mar 02 11:41:02 pg-eu-7 kernel: Buffer I/O error on dev nvme1n1p1, logical block 11026432, lost async page write
Mar 02 11:41:03 pg-eu-7 kernel: EXT4-fs error (device nvme1n1p1): ext4_journal_check_start:83: comm postgres: Detected aborted journal
Mar 02 11:41:03 pg-eu-7 kernel: EXT4-fs (nvme1n1p1): Remounting filesystem read-only
"""


def test_kernel_log_names_the_failing_nvme_disk_and_the_read_only_remount() -> None:
    result = kernel(_out(["journalctl", "-k", "--no-pager", "-n", "200"], NVME_KERNEL), {})
    disk = next(f for f in result.findings if f.code == "kernel_disk_errors")
    assert disk.severity is Severity.CAUSE and "/dev/nvme1n1" in disk.text and "smartctl" in disk.text
    assert result.facts["failing_devices"] == ["nvme1n1"]  # partitions and the controller are one disk
    readonly = next(f for f in result.findings if f.code == "kernel_fs_readonly")
    assert "nvme1n1p1" in readonly.text
    assert "kernel_no_oom" in _codes(result)  # "OOM again?" is answered: no


def test_kernel_log_with_an_oom_kill_of_postgres_is_the_cause_and_clean_disks_are_not_blamed() -> None:
    text = ("Apr 11 02:12:09 pg-2 kernel: postgres invoked oom-killer: gfp_mask=0x140cca(GFP_HIGHUSER_MOVABLE), order=0\n"
            "Apr 11 02:12:09 pg-2 kernel: Out of memory: Killed process 40218 (postgres) total-vm:9123400kB, "
            "anon-rss:7001200kB, file-rss:0kB, shmem-rss:1200kB, UID:114 pgtables:14000kB oom_score_adj:0\n")
    result = kernel(_out(["journalctl", "-k"], text), {})
    assert _codes(result) == ["kernel_oom_postgres"]
    assert "40218" in result.findings[0].text


def test_empty_or_unavailable_kernel_log_is_never_clean() -> None:
    empty = kernel(_out(["journalctl", "-k"], "-- No entries --\n"), {})
    assert _codes(empty) == ["no_data"] and empty.findings[0].data["check"] == "kernel messages"
    down = kernel(_out(["journalctl", "-k"], "", 1, "System has not been booted with systemd as init system (PID 1). Can't operate.\n"), {})
    assert down.facts.get("unavailable") is True and not down.findings


AUTH = ["tail", "-n", "2000", "/var/log/auth.log"]


def test_a_service_account_that_becomes_root_with_su_is_a_likely_compromise() -> None:
    text = ("Jan 14 04:02:17 shop-3 su[7711]: pam_unix(su:auth): authentication failure; logname= uid=998 euid=0 "
            "tty= ruser=nginx rhost=  user=root\n"
            "Jan 14 04:02:19 shop-3 su[7711]: FAILED SU (to root) nginx on none\n"
            "Jan 14 04:05:44 shop-3 su[7760]: (to root) nginx on none\n"
            "Jan 14 04:05:44 shop-3 su[7760]: pam_unix(su:session): session opened for user root(uid=0) by (uid=998)\n"
            "Jan 14 05:10:02 shop-3 sudo:    priya : TTY=pts/2 ; PWD=/home/priya ; USER=root ; "
            "COMMAND=/usr/bin/journalctl -u nginx\n")
    result = ssh_log(_out(AUTH, text), {})
    causes = [f for f in result.findings if f.code == "priv_service_account_root"]
    assert len(causes) == 1  # one per account: its success, not also its failed try
    assert causes[0].severity is Severity.CAUSE and "nginx became root with su at Jan 14 04:05:44" in causes[0].text
    assert "compromise" in causes[0].text and "web shell" in causes[0].text
    assert result.facts["privilege_suspicious"] is True
    who = next(f for f in result.findings if f.code == "priv_root_users")
    assert "priya: 1 × sudo" in who.text and "nginx: 1 × su (failed), 1 × su" in who.text


def test_sudo_chmod_setuid_is_named_with_its_user_and_time_and_routine_sudo_is_not() -> None:
    text = ("Jun  3 22:47:31 api-9 sudo:    omar : TTY=pts/0 ; PWD=/opt/api ; USER=root ; COMMAND=/usr/bin/systemctl reload api\n"
            "Jun  3 22:49:05 api-9 sudo:    omar : TTY=pts/0 ; PWD=/opt/api ; USER=root ; COMMAND=/bin/chmod 4755 /usr/bin/perl\n")
    result = ssh_log(_out(AUTH, text), {})
    risky = [f for f in result.findings if f.code == "priv_risky_sudo"]
    assert len(risky) == 1 and "omar" in risky[0].text and "22:49:05" in risky[0].text
    assert "/bin/chmod 4755 /usr/bin/perl" in risky[0].text
    assert "priv_service_account_root" not in _codes(result)


def test_routine_sudo_alone_raises_nothing() -> None:
    text = "Jun  3 22:47:31 api-9 sudo:    omar : TTY=pts/0 ; PWD=/opt/api ; USER=root ; COMMAND=/usr/bin/apt update\n"
    result = ssh_log(_out(AUTH, text), {})
    assert not result.facts.get("privilege_suspicious")
    assert not [f for f in result.findings if f.severity in (Severity.CAUSE, Severity.PROBLEM)]


def test_openssh_default_macs_are_a_note_and_real_weak_ones_a_problem() -> None:
    base = "port 22\npermitrootlogin no\npasswordauthentication no\n"
    stock = base + ("macs umac-64-etm@openssh.com,umac-128-etm@openssh.com,hmac-sha2-256-etm@openssh.com,"
                    "hmac-sha2-512-etm@openssh.com,hmac-sha1-etm@openssh.com,umac-64@openssh.com,umac-128@openssh.com,"
                    "hmac-sha2-256,hmac-sha2-512,hmac-sha1\n")
    result = sshd(_out(["sshd", "-T"], stock), {})
    assert "sshd_weak_crypto" not in _codes(result)
    note = next(f for f in result.findings if f.code == "sshd_strict_macs")
    assert note.severity is Severity.INFO and "umac-64@openssh.com" in note.text
    weak = sshd(_out(["sshd", "-T"], base + "macs hmac-md5,hmac-sha2-256\n"), {})
    assert "sshd_weak_crypto" in _codes(weak)


def test_a_setuid_interpreter_asks_for_the_auth_log_and_stock_setuid_files_do_not() -> None:
    stock = "/usr/bin/passwd\n/usr/bin/sudo\n/usr/bin/mount\n/usr/lib/openssh/ssh-keysign\n"
    assert not setuid(_out(["find", "/", "-xdev", "-perm", "-4000", "-type", "f"], stock), {}).facts
    odd = setuid(_out(["find", "/", "-xdev", "-perm", "-4000", "-type", "f"], stock + "/usr/bin/perl5.36\n"), {})
    assert odd.facts["setuid_suspicious"] is True
