"""Security checks beyond sshd's log (issue 12, TAXONOMY sec-08/09, sec-41, sec-57): who is in the
privileged groups, and what ``lastb`` says about failed logins (one guesser vs distributed spraying).
Registered as analyzers in ``analyzers/sweep.py``."""

from __future__ import annotations

from collections import Counter

from squads.brain.analyzers import Output
from squads.brain.models import Analysis, Facts, Severity

PRIVILEGED = {"sudo", "wheel", "admin", "adm", "root", "docker", "lxd", "disk", "shadow"}
SERVICE_ACCOUNTS = {"www-data", "nginx", "apache", "httpd", "nobody", "postgres", "mysql", "redis", "daemon", "bin",
                    "sys", "mail", "backup", "list", "irc", "gnats", "systemd-network", "sshd", "ftp", "git", "jenkins"}
SPRAY_SOURCES = 20  # distinct sources, each with only a few tries


def group(output: Output, facts: Facts) -> Analysis:
    """``getent group NAME``: the members of a privileged group; a service account there is a cause."""
    if output.exit_code == 2 and not output.stdout.strip():
        return Analysis(summary="no such group on this host")  # getent: key not found; nothing to judge, nothing missed
    line = next((ln.strip() for ln in output.stdout.splitlines() if ln.count(":") >= 3), "")
    if not line:
        result = Analysis(summary="no group listed")
        result.add("no_data", Severity.INFO, "getent group printed nothing: the group's members could not be checked.",
                   check="group members")
        return result
    name, _, gid, members_field = line.split(":", 3)
    members = [m for m in members_field.split(",") if m]
    result = Analysis(summary=f"{name} (gid {gid}): {', '.join(members) or 'no members'}")
    privileged = name in PRIVILEGED
    result.add("group_members", Severity.INFO,
               f"Group {name} (gid {gid}) has {len(members)} member(s): {', '.join(members) or 'none'}"
               + (" — each of them can become root." if privileged and name in ("sudo", "wheel", "admin", "docker", "lxd") else "."))
    for member in members:
        if privileged and (member in SERVICE_ACCOUNTS or member.endswith(("-data", "-svc"))):
            result.add(
                "group_service_account", Severity.CAUSE,
                f"Service account {member} is in the {name} group: a web shell or a compromised service running as "
                f"{member} can become root. Remove it (gpasswd -d {member} {name}) and find when it was added (auth.log: usermod).",
                account=member, group=name,
            )
    return result


def lastb(output: Output, facts: Facts) -> Analysis:
    """``lastb``: failed logins grouped by source and user; many sources with a few tries each is spraying."""
    rows = []
    for line in output.stdout.splitlines():
        fields = line.split()
        if len(fields) < 4 or line.startswith(("btmp begins", "wtmp begins")):
            continue
        rows.append((fields[0], fields[2] if not fields[2][:3].isalpha() or "." in fields[2] or ":" in fields[2] else "?"))
    if not rows:
        result = Analysis(summary="no failed logins listed")
        if output.exit_code != 0 or "btmp begins" not in output.stdout:
            result.add("no_data", Severity.INFO, "lastb listed nothing (btmp missing or unreadable): failed logins could "
                       "not be checked from it.", check="failed logins (lastb)")
        else:
            result.add("lastb_none", Severity.OK, "lastb records no failed login in its window.")
        return result
    sources, users = Counter(s for _, s in rows), Counter(u for u, _ in rows)
    top = ", ".join(f"{s} ({n})" for s, n in sources.most_common(8))
    result = Analysis(summary=f"{len(rows)} failed logins from {len(sources)} sources")
    result.add("lastb_counts", Severity.INFO,
               f"lastb: {len(rows)} failed logins from {len(sources)} source(s), by source: {top}; "
               f"users tried: {', '.join(f'{u} ({n})' for u, n in users.most_common(8))}.")
    few = [s for s, n in sources.items() if n <= 3]
    if len(sources) >= SPRAY_SOURCES and len(few) >= len(sources) * 0.8:
        result.add(
            "lastb_spraying", Severity.CAUSE,
            f"Distributed password spraying: {len(sources)} different sources, most with only 1-3 tries each, "
            f"against {len(users)} user names. Per-address bans (fail2ban) never trigger; turn password logins off "
            "(PasswordAuthentication no) and check that none of these users logged in.",
        )
    elif sources and sources.most_common(1)[0][1] >= 20:
        source, count = sources.most_common(1)[0]
        result.add("lastb_bruteforce", Severity.PROBLEM,
                   f"{source} failed {count} times: password guessing from one address.", source=source)
    return result
