"""Reading who logged in (last, lastb, group members) and what runs (processes, their programs, cron.d)."""

from __future__ import annotations

import ipaddress
import re
from collections import Counter

from squads.brain.analyzers import Output, analyzer
from squads.brain.analyzers.common import failure
from squads.brain.models import Analysis, Facts, Severity
from squads.brain.parsers import system as sp

from .. import hunt, posture, review
from .addresses import parse_address


def _usual_networks(message: str, sources: list[str]) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    """The networks logins should come from: those the user named, else the /24 most logins share."""
    named = []
    for cidr in re.findall(r"\b\d{1,3}(?:\.\d{1,3}){3}/\d{1,2}\b", message):
        try:
            named.append(ipaddress.ip_network(cidr, strict=False))
        except ValueError:
            continue
    if named:
        return named
    nets = Counter(
        ipaddress.ip_network(f"{a}/24", strict=False) for a in map(parse_address, sources) if isinstance(a, ipaddress.IPv4Address)
    )
    if not nets:
        return []
    net, count = nets.most_common(1)[0]
    return [net] if count >= 3 and count * 2 > sum(nets.values()) else []


@analyzer(
    "sec.last",
    codes=("last_crash", "last_reboots", "login_from_attacker", "login_unusual_source", "no_data", "no_open_sessions",
           "session_open", "wtmp_span", "wtmp_truncated"),
)
def last(output: Output, facts: Facts) -> Analysis:
    """``last``: recent logins and where they came from."""
    if failed := failure(output):
        return failed
    logins = [x for x in sp.parse_last(output.stdout) if x.user != "reboot"]
    if not logins and not sp.parse_last(output.stdout):
        result = Analysis(summary="no logins recorded")
        result.add("no_data", Severity.INFO, "last listed no login (wtmp is empty or was rotated): recent logins could not be checked.", check="recent logins")
        return result
    attackers = set(facts.get("attackers", []))
    result = Analysis(summary=", ".join(f"{x.user} from {x.source or 'console'} ({x.when})" for x in logins[:6]))
    usual = _usual_networks(str(facts.get("message", "")), [x.source for x in logins])
    for x in logins:
        address = parse_address(x.source)
        if usual and address is not None and not any(address in net for net in usual) and x.source not in attackers:
            result.add(
                "login_unusual_source", Severity.PROBLEM,
                f"{x.user} logged in from {x.source} ({x.when}), outside the usual network "
                f"{', '.join(map(str, usual))}: an unexpected source. Confirm with {x.user} it was them.",
                user=x.user, source=x.source,
            )
    for x in logins:
        still = " and is still logged in" if x.still_logged_in else ""
        if x.source in attackers:
            result.add(
                "login_from_attacker", Severity.CAUSE,
                f"{x.user} logged in from {x.source}, the attacking address ({x.when}){still}.",
            )
        elif x.still_logged_in:
            result.add("session_open", Severity.INFO, f"{x.user} is still logged in from {x.source or 'the console'} ({x.when}).")
    if logins and not any(x.still_logged_in for x in logins):
        result.add("no_open_sessions", Severity.INFO, "Nobody in this list is still logged in: every session has ended.")
    posture.last_history(result, output.stdout, sp.parse_last(output.stdout), str(facts.get("message", "")))
    return result


@analyzer(
    "sec.processes",
    facts=("suspicious_pids",),
    codes=("no_data", "process_disguised", "process_download_exec", "process_tmp", "processes_ok"),
)
def processes(output: Output, facts: Facts) -> Analysis:
    """``ps -eo pid,ppid,user,etime,args``: disguised, dropped or download-and-run processes."""
    return hunt.processes(output, facts)


@analyzer("sec.process_program", codes=("exe_deleted", "exe_ok", "exe_tmp", "no_data"))
def process_program(output: Output, facts: Facts) -> Analysis:
    """``ls -l /proc/PID/exe``: a deleted program or one in a writable folder."""
    return hunt.process_program(output, facts)


@analyzer("sec.cron_dir", codes=("cron_new_file", "cron_ok", "cron_writable", "no_data"))
def cron_dir(output: Output, facts: Facts) -> Analysis:
    """``ls -la /etc/cron.d``: a recently added or writable cron file."""
    return hunt.cron_dir(output, facts)


@analyzer("sec.group", codes=("group_members", "group_service_account", "no_data"))
def group(output: Output, facts: Facts) -> Analysis:
    """``getent group NAME``: who is in a privileged group."""
    return review.group(output, facts)


@analyzer("sec.lastb", codes=("lastb_bruteforce", "lastb_counts", "lastb_none", "lastb_spraying", "no_data"))
def lastb(output: Output, facts: Facts) -> Analysis:
    """``lastb``: failed logins by source and user; spraying vs one guesser."""
    return review.lastb(output, facts)
