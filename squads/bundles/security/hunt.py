"""Evidence of access and persistence: processes, their programs, cron.d, account creation.

Plain functions (registered as analyzers in ``analyzers/sweep.py``). Each reports what
it saw as a finding with the decisive line quoted, and reports "no data" rather
than "clean" when it had nothing to judge (issue 12, contract 3).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime

from squads.brain.analyzers import Output
from squads.brain.analyzers.common import failure
from squads.brain.models import Analysis, Facts, Severity
from squads.brain.parsers import logs as lp
from squads.brain.parsers.system import Proc, parse_ps

# Programs that run from here were not installed by a package: a dropper's favourite places.
WRITABLE_DIRS = ("/tmp/", "/var/tmp/", "/dev/shm/", "/run/user/", "/var/run/user/")
# Kernel threads are children of kthreadd (pid 2) and show as [name]; a user-space process that
# names itself like one (kworker, kswapd0 ...) is hiding.
KERNEL_THREAD = re.compile(
    r"^\[?(kworker|kswapd|ksoftirqd|kthreadd|kthread|kauditd|khugepaged|kcompactd|migration|rcu_\w+|"
    r"watchdog|jbd2|kblockd|kdevtmpfs|writeback|oom_reaper|ksmd|irq/|cpuhp|idle_inject|netns)\S*\]?$"
)
DOWNLOAD_EXEC = re.compile(
    r"\b(curl|wget|fetch)\b[^|;]*\|\s*(?:sudo\s+)?(sh|bash|dash|zsh|python3?|perl)\b"
    r"|\bbase64\s+(-d|--decode)\b|\becho\s+[A-Za-z0-9+/=]{40,}"
    r"|\b(nc|ncat|netcat)\b.*\s-e\s|/dev/tcp/"
)
SERVICE_ACCOUNTS = {"www-data", "nginx", "apache", "httpd", "nobody", "daemon", "postgres", "mysql", "redis",
                    "nginx-www", "git", "gitlab-runner", "jenkins", "tomcat", "node", "backup", "mail", "ftp"}


def _chain(proc: Proc, by_pid: dict[int, Proc]) -> list[Proc]:
    """``proc``'s ancestors, nearest first (at most 6)."""
    chain: list[Proc] = []
    seen = {proc.pid}
    current = by_pid.get(proc.ppid)
    while current and current.pid not in seen and len(chain) < 6:
        chain.append(current)
        seen.add(current.pid)
        current = by_pid.get(current.ppid)
    return chain


def processes(output: Output, facts: Facts) -> Analysis:
    """``ps``: processes disguised as kernel threads, programs run from writable folders, download-and-run."""
    if failed := failure(output):
        return failed
    procs = parse_ps(output.stdout)
    if not procs:
        result = Analysis(summary="no process listed")
        result.add("no_data", Severity.INFO, "The process list came back empty: processes could not be checked.", check="processes")
        return result
    by_pid = {p.pid: p for p in procs}
    result = Analysis(summary=f"{len(procs)} processes")
    suspicious: list[str] = []
    for p in procs:
        if p.pid == 2 or p.ppid == 2 or "ps -eo" in p.args:
            continue
        quoted = f"`{p.pid} {p.ppid} {p.user} {p.elapsed} {p.args[:160]}`"
        if KERNEL_THREAD.match(p.args.split()[0] if p.args else ""):
            suspicious.append(str(p.pid))
            result.add(
                "process_disguised", Severity.CAUSE,
                f"pid {p.pid} calls itself {p.args.split()[0]} like a kernel thread, but it is not one: kernel threads "
                f"are children of kthreadd (pid 2), this one's parent is pid {p.ppid} and it runs as {p.user} (for "
                f"{p.elapsed}). A process hiding under a kernel thread's name is malware until proven otherwise "
                f"(a coin miner, when it eats CPU). ps: {quoted}. Its real program: `ls -l /proc/{p.pid}/exe`.",
                pid=str(p.pid), user=p.user,
            )
        elif p.program.startswith(WRITABLE_DIRS) or re.search(r"/\.[^/\s]+/", p.program):
            suspicious.append(str(p.pid))
            result.add(
                "process_tmp", Severity.CAUSE,
                f"pid {p.pid} ({p.user}) runs {p.program}, from a world-writable or hidden folder where no package "
                f"installs programs: a dropped binary. ps: {quoted}.",
                pid=str(p.pid), user=p.user,
            )
        elif DOWNLOAD_EXEC.search(p.args):
            ancestors = _chain(p, by_pid)
            cron = next((a for a in ancestors if re.search(r"\bcron\b", a.args, re.I)), None)
            via = (f" It is a child of {cron.args.split()[0]} (pid {cron.pid}): a cron job runs it, so it is "
                   "persistence: look in /etc/cron.d, /etc/crontab and /var/spool/cron for the entry.") if cron else ""
            who = " It runs as root, so whoever planted it had root." if p.user == "root" else ""
            result.add(
                "process_download_exec", Severity.CAUSE,
                f"pid {p.pid} ({p.user}) downloads code and runs it: {quoted}.{via}{who}",
                pid=str(p.pid), user=p.user,
            )
    if suspicious:
        result.facts["suspicious_pids"] = suspicious
    elif not result.findings:
        result.add("processes_ok", Severity.OK, f"None of the {len(procs)} processes hides as a kernel thread, runs from "
                   "/tmp, /var/tmp or /dev/shm, or pipes a download into a shell.")
    return result


_EXE = re.compile(r"/proc/(?P<pid>[0-9]+)/exe -> (?P<target>.+?)(?P<deleted> \(deleted\))?$")


def process_program(output: Output, facts: Facts) -> Analysis:
    """``ls -l /proc/PID/exe``: the program behind a pid; deleted or in a writable folder is a finding."""
    if failed := failure(output):
        return failed
    m = next((m for m in map(_EXE.search, output.stdout.splitlines()) if m), None)
    if not m:
        result = Analysis(summary="no program shown")
        result.add("no_data", Severity.INFO, "The process's program could not be read (it may have exited).", check="process program")
        return result
    pid, target = m["pid"], m["target"].strip()
    line = next(ln.strip() for ln in output.stdout.splitlines() if "/exe" in ln)
    result = Analysis(summary=f"pid {pid} runs {target}{' (deleted)' if m['deleted'] else ''}")
    if m["deleted"]:
        result.add(
            "exe_deleted", Severity.CAUSE,
            f"pid {pid}'s program {target} was deleted after it started (`{line}`): malware removes its file to hide. "
            f"Preserve it before anything else: copy /proc/{pid}/exe, note its parent and user, then stop it.",
            pid=pid, path=target,
        )
    elif target.startswith(WRITABLE_DIRS) or "/." in target:
        result.add("exe_tmp", Severity.CAUSE, f"pid {pid} runs {target}, from a writable or hidden folder (`{line}`).", pid=pid, path=target)
    else:
        result.add("exe_ok", Severity.INFO, f"pid {pid} runs {target}.", pid=pid)
    return result


_LS = re.compile(
    r"^(?P<mode>[-dlbcps][-rwxsStT]{9})[.+@]?\s+\d+\s+(?P<owner>\S+)\s+(?P<group>\S+)\s+(?P<size>\d+)\s+"
    r"(?P<month>[A-Z][a-z]{2})\s+(?P<day>\d{1,2})\s+(?P<clock>\d{1,2}:\d{2}|\d{4})\s+(?P<name>.+)$"
)
_MONTHS = {m: i for i, m in enumerate(("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"), 1)}


def _ls_time(m: re.Match[str], now: datetime) -> datetime:
    """``ls -l``'s date: "Dec  6 03:12" (within the last six months) or "Mar 23  2022"."""
    month, day = _MONTHS.get(m["month"], 1), int(m["day"])
    if ":" in m["clock"]:
        hour, minute = map(int, m["clock"].split(":"))
        year = now.year if (month, day) <= (now.month, now.day) else now.year - 1
        return datetime(year, month, day, hour, minute)
    return datetime(int(m["clock"]), month, day)


def cron_dir(output: Output, facts: Facts) -> Analysis:
    """``ls -la /etc/cron.d``: a file much newer than the others, or one someone else can write."""
    if failed := failure(output):
        return failed
    now_fact = facts.get("now")
    now = now_fact.replace(tzinfo=None) if isinstance(now_fact, datetime) else datetime.now()
    entries = [(m, _ls_time(m, now)) for m in map(_LS.match, output.stdout.splitlines()) if m and m["name"] not in (".", "..")]
    files = [(m, t) for m, t in entries if m["mode"].startswith("-") and m["name"] != ".placeholder"]
    result = Analysis(summary=", ".join(f"{m['name']} ({t:%Y-%m-%d})" for m, t in files) or "no cron.d files")
    if not files:
        result.add("no_data", Severity.INFO, "No file listed in /etc/cron.d: nothing to judge there.", check="cron.d")
        return result
    for m, t in files:
        line = m.group(0).strip()
        others = [u for n, u in files if n is not m]
        newest_other = max(others, default=None)
        recent = (now - t).days <= 14
        if recent and newest_other is not None and (t - newest_other).days >= 30:
            result.add(
                "cron_new_file", Severity.CAUSE,
                f"/etc/cron.d/{m['name']} is new ({t:%b %d %H:%M}, owner {m['owner']}) while every other entry there is "
                f"at least a month older: a recently added cron job, the usual way to persist. `{line}`. "
                + ("Only root can write /etc/cron.d, so whoever added it had root. " if m["owner"] == "root" else "")
                + "Read it and compare with the packages' own files (dpkg -S) before trusting it.",
                path=f"/etc/cron.d/{m['name']}",
            )
        elif m["mode"][5] == "w" or m["mode"][8] == "w":
            result.add("cron_writable", Severity.PROBLEM, f"/etc/cron.d/{m['name']} is writable by others (`{line}`): anyone who can write it runs commands as its user.")
    if not result.findings:
        result.add("cron_ok", Severity.OK, f"No recently added or writable file among the {len(files)} in /etc/cron.d.")
    return result


# auth.log: who created an account, and how (a package's postinst under apt/dpkg, or a person).
_USERADD = re.compile(r"new user: name=(?P<name>[^,]+), UID=(?P<uid>\d+), GID=\d+, home=(?P<home>[^,]*), shell=(?P<shell>[^,]*)")
_SUDO = re.compile(r"^\s*(?P<user>\S+) : .*COMMAND=(?P<command>.+)$")
PACKAGE_TOOLS = re.compile(r"\b(apt|apt-get|aptitude|dpkg|yum|dnf|rpm|zypper|snap)\b")


@dataclass(frozen=True)
class NewAccount:
    name: str
    uid: int
    home: str
    shell: str
    time: str
    by: str  # "package" | "person"
    who: str
    command: str
    line: str


def new_accounts(text: str) -> list[NewAccount]:
    """Accounts created in an auth log, each attributed to the sudo command that preceded it."""
    last_sudo: tuple[str, str] | None = None
    found = []
    for raw in text.splitlines():
        parsed = lp.parse_syslog(raw)
        if not parsed:
            continue
        if parsed.program == "sudo" and (s := _SUDO.match(parsed.message)):
            last_sudo = (s["user"], s["command"].strip())
        elif parsed.program == "useradd" and (u := _USERADD.search(parsed.message)):
            who, command = last_sudo or ("", "")
            by = "package" if PACKAGE_TOOLS.search(command) else "person"
            found.append(NewAccount(u["name"].strip(), int(u["uid"]), u["home"], u["shell"].strip(), parsed.time, by, who,
                                    command, raw.strip()))
    return found


def account_creation(result: Analysis, text: str) -> None:
    """Findings for the accounts an auth log shows being created."""
    for a in new_accounts(text):
        login = not a.shell.endswith(("nologin", "false"))
        shell = f"shell {a.shell}" + (" (a login shell)" if login else ", so it cannot log in (no login shell)")
        if a.uid == 0:
            result.add("account_created_uid0", Severity.CAUSE,
                       f"Account {a.name} was created with UID 0 at {a.time} (`{a.line}`): a second root. Lock it and find who ran it.",
                       account=a.name)
        elif a.by == "package":
            result.add(
                "account_created_package", Severity.INFO if not login and a.uid < 1000 else Severity.PROBLEM,
                f"Account {a.name} (UID {a.uid}, home {a.home}, {shell}) was created at {a.time} by a package install: "
                f"{a.who} ran `{a.command}` through sudo just before (`{a.line}`). A package's system user is expected "
                "and low risk, not a sign of compromise; still, confirm the install was intended and what it now runs "
                "or listens on.",
                account=a.name, user=a.who,
            )
        else:
            person = f"{a.who} (through sudo: `{a.command}`)" if a.who else "someone with root, not through sudo"
            result.add(
                "account_created_person", Severity.PROBLEM,
                f"Account {a.name} (UID {a.uid}, {shell}) was created at {a.time} by {person}, not by a package: "
                f"`{a.line}`. Confirm it was intended.",
                account=a.name, user=a.who,
            )
