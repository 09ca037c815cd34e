"""Who became root, read from the auth log's sudo and su lines (issue 12, TAXONOMY sec-10/11, sec-30,
sec-43/44): a service account (www-data, nginx, postgres...) that ran ``su`` or ``sudo`` to root is a
likely compromise (a web shell, an exploited service), even when it failed; a sudo command that set a
setuid bit, changed accounts or sudoers, or planted a key is named with its user and time; the people
who used sudo are summed up so "who became root" always has an answer. Called from ``sec.ssh_log``."""

from __future__ import annotations

import re
from collections import Counter, defaultdict

from squads.brain.models import Analysis, Severity

from .review import SERVICE_ACCOUNTS

CODES = ("priv_service_account_root", "priv_risky_sudo", "priv_root_users")
FACTS = ("privilege_suspicious",)

_STAMP = r"(?P<when>[A-Z][a-z]{2} +\d{1,2} \d\d:\d\d:\d\d|\d{4}-\d\d-\d\dT[\d:.]+(?:[+-]\d\d:?\d\d|Z)?)"
# sudo:   alice : TTY=pts/0 ; PWD=/home/alice ; USER=root ; COMMAND=/usr/bin/systemctl status nginx
_SUDO = re.compile(_STAMP + r" \S+ sudo(?:\[\d+\])?: +(?P<user>[\w.@-]+) : (?P<rest>.*?)\bUSER=(?P<target>[\w.-]+) ; "
                   r"COMMAND=(?P<command>.+)$")
# su[123]: (to root) www-data on pts/1    |    su[123]: FAILED SU (to root) www-data on none
_SU = re.compile(_STAMP + r" \S+ su(?:\[\d+\])?: (?P<failed>FAILED SU )?\(to (?P<target>[\w.-]+)\) (?P<user>[\w.@-]+) on ")
# sudo: www-data : user NOT in sudoers ; TTY=... ; COMMAND=/bin/bash   (or "command not allowed")
_SUDO_DENIED = re.compile(_STAMP + r" \S+ sudo(?:\[\d+\])?: +(?P<user>[\w.@-]+) : .*?(?:user NOT in sudoers|"
                          r"command not allowed|incorrect password attempts?)")
_RISKY = (
    (re.compile(r"\bchmod\b.*(?:\bu?\+s\b|[ugoa]*\+[rwx]*s|\b[4-7][0-7]{3}\b)"), "set a setuid/setgid bit"),
    (re.compile(r"\bsetcap\b"), "gave a program capabilities"),
    (re.compile(r"\b(?:useradd|adduser|usermod|userdel|passwd|chpasswd|gpasswd)\b"), "changed accounts"),
    (re.compile(r"\b(?:visudo|sudoers)\b"), "changed who may use sudo"),
    (re.compile(r"authorized_keys"), "changed SSH keys"),
    (re.compile(r"(?:^|/)(?:bash|sh|zsh|dash)(?: -[il]+)?$|\bsu\b"), "opened a root shell"),
)


def _service(user: str) -> bool:
    return user in SERVICE_ACCOUNTS or user.endswith(("-data", "-svc"))


def privilege_use(result: Analysis, text: str) -> None:
    """Findings for the sudo and su lines of an auth log (nothing when it has none)."""
    by_user: dict[str, Counter[str]] = defaultdict(Counter)
    for line in text.splitlines():
        line = line.strip()
        if m := _SU.search(line):
            user, target, failed = m.group("user"), m.group("target"), bool(m.group("failed"))
            by_user[user]["su (failed)" if failed else "su"] += 1
            if target == "root" and _service(user):
                _service_root(result, user, m.group("when"), line, "su", failed)
        elif m := _SUDO.search(line):
            user, command = m.group("user"), m.group("command").strip()
            by_user[user]["sudo"] += 1
            if _service(user):
                _service_root(result, user, m.group("when"), line, "sudo", False)
                continue
            for pattern, what in _RISKY:
                if pattern.search(command):
                    result.facts["privilege_suspicious"] = True
                    result.add("priv_risky_sudo", Severity.PROBLEM,
                               f"{user} {what} as {m.group('target')} with sudo at {m.group('when')}: `{command}` "
                               f"(\"{line}\"). Confirm with {user} that this was intended.",
                               user=user, command=command)
                    break
        elif (m := _SUDO_DENIED.search(line)) and _service(m.group("user")):
            by_user[m.group("user")]["sudo (refused)"] += 1
            _service_root(result, m.group("user"), m.group("when"), line, "sudo", True)
    if by_user:
        people = "; ".join(f"{u}: " + ", ".join(f"{n} × {k}" for k, n in counts.items())
                           for u, counts in by_user.items())
        result.add("priv_root_users", Severity.INFO, f"Who used sudo or su in this log: {people}.")


def _service_root(result: Analysis, user: str, when: str, line: str, how: str, failed: bool) -> None:
    result.facts["privilege_suspicious"] = True
    earlier = next((f for f in result.findings
                    if f.code == "priv_service_account_root" and f.data.get("user") == user), None)
    if earlier is not None:
        if failed or not earlier.data.get("failed"):
            return  # one finding per account: its first success, else its first attempt
        result.findings.remove(earlier)
    attempt = "tried to become root (and failed)" if failed else "became root"
    result.add(
        "priv_service_account_root", Severity.CAUSE,
        f"Service account {user} {attempt} with {how} at {when} (\"{line}\"). A service account never does this "
        f"in normal operation: this is not normal and points to a compromise — most likely a web shell or an "
        f"exploited application running as {user}. Preserve the evidence, look for the web shell (recently "
        f"changed files under the document root) and for what ran as root after that time.",
        user=user, when=when, failed=failed,
    )
