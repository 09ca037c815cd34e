"""Reading security-relevant output: SSH attempts, listeners, setuid files, accounts, sshd settings."""

from __future__ import annotations

import ipaddress
import re
from collections import Counter

from squads.brain.analyzers import Output, analyzer
from squads.brain.analyzers.common import failure
from squads.brain.models import Analysis, Facts, Severity
from squads.brain.parsers import logs as lp
from squads.brain.parsers import system as sp

BRUTE_FORCE = 5  # failed attempts from one source
# Daemons that normally listen on a server; anything else is reported for a human to account for.
KNOWN_LISTENERS = {
    "sshd", "systemd-resolve", "systemd-resolved", "chronyd", "ntpd", "postgres", "postgresql", "mysqld", "mariadbd",
    "redis-server", "nginx", "apache2", "httpd", "haproxy", "dnsmasq", "named", "master", "exim4", "sendmail",
    "containerd", "dockerd", "kubelet", "kube-proxy", "node_exporter", "postgres_export", "rpcbind", "cupsd",
    "avahi-daemon", "snmpd", "rabbitmq-server", "beam.smp", "epmd", "mosquitto", "nats-server", "memcached",
    "systemd", "systemd-networkd", "systemd-timesyncd", "sshd-session", "docker-proxy", "dhclient", "dhcpcd",
    "unbound", "rpc.statd", "zabbix_agentd", "prometheus", "grafana-server", "nginx: master", "php-fpm",
}
SHELLS_AND_TOOLS = {"nc", "ncat", "netcat", "nc.openbsd", "nc.traditional", "socat", "bash", "sh", "dash", "zsh",
                    "python", "python3", "perl", "ruby", "php", "node", "telnet", "busybox"}
SYSTEM_PREFIXES = ("/usr/bin/", "/usr/sbin/", "/bin/", "/sbin/", "/usr/lib/", "/usr/libexec/", "/usr/lib64/",
                   "/lib/", "/lib64/", "/snap/", "/usr/local/lib/")
RISKY_SSHD = {
    "permitrootlogin": ({"yes"}, "root can log in over SSH (PermitRootLogin yes): set it to no or prohibit-password"),
    "passwordauthentication": ({"yes"}, "password logins are accepted (PasswordAuthentication yes), which is what brute force needs: use keys only"),
    "permitemptypasswords": ({"yes"}, "accounts with empty passwords may log in (PermitEmptyPasswords yes)"),
    "kbdinteractiveauthentication": ({"yes"}, "keyboard-interactive logins are on (often passwords by another name)"),
    "challengeresponseauthentication": ({"yes"}, "challenge-response logins are on (often passwords by another name)"),
    "x11forwarding": ({"yes"}, "X11 forwarding is on (X11Forwarding yes), an avoidable attack surface"),
    "permituserenvironment": ({"yes"}, "users may set environment variables for sshd (PermitUserEnvironment yes)"),
    "allowtcpforwarding": ({"yes", "all"}, "TCP forwarding is allowed for every user (AllowTcpForwarding yes)"),
    "protocol": ({"1", "2,1", "1,2"}, "SSH protocol 1 is enabled"),
}


@analyzer(
    "sec.ssh_log",
    facts=("accepted_logins", "attackers", "bruteforce", "ssh_log_empty"),
    codes=(
        "ssh_accepted", "ssh_breach", "ssh_bruteforce", "ssh_crafted_user", "ssh_distributed", "ssh_failed_logins",
        "ssh_none_accepted",
    ),
)
def ssh_log(output: Output, facts: Facts) -> Analysis:
    """sshd's journal or auth.log: who is guessing, which users, did anyone get in."""
    if failed := failure(output):
        return failed
    events = lp.ssh_events(output.text)
    failed_events = [e for e in events if e.kind in ("failed", "invalid_user", "max_auth")]
    attempts = [e for e in events if e.kind == "failed"] or failed_events
    accepted = [e for e in events if e.kind == "accepted"]
    result = Analysis(summary=f"{len(attempts)} failed logins, {len(accepted)} successful")
    if not events:
        result.facts["ssh_log_empty"] = True
        return result
    crafted = sorted({e.user for e in events if " " in e.user or e.user.lower().startswith(("accepted", "failed"))})
    if crafted:
        result.add(
            "ssh_crafted_user", Severity.PROBLEM,
            f"{len(crafted)} attempted user names imitate log lines (e.g. {crafted[0][:80]!r}): a log-injection trick. "
            "They are failed logins with a fake user name, not successful logins; the real source is the address "
            "sshd logs at the end of each line.",
        )
    sources = Counter(e.source for e in attempts)
    users = Counter(e.user if e.user not in crafted else "(crafted user name)" for e in attempts)
    attackers = [s for s, n in sources.items() if n >= BRUTE_FORCE]
    top = ", ".join(f"{s} ({n} attempts)" for s, n in sources.most_common(5))
    targeted = ", ".join(f"{u} ({n})" for u, n in users.most_common(6))
    if attempts:
        severity = Severity.PROBLEM if attackers else Severity.INFO
        result.add(
            "ssh_failed_logins", severity,
            f"{len(attempts)} failed password/login attempts from {len(sources)} source(s): {top}. "
            f"Targeted users: {targeted}."
            + (f" {', '.join(attackers)} is a brute-force source (password guessing)." if attackers else ""),
        )
    result.facts["attackers"] = attackers
    if accepted:
        result.facts["accepted_logins"] = sorted({e.user for e in accepted})
    breached = [e for e in accepted if e.source in sources]
    for e in breached:
        result.add(
            "ssh_breach", Severity.CAUSE,
            f"An attempt succeeded: {e.user} logged in with {e.method} from {e.source}, a source that also failed "
            f"{sources[e.source]} times. Treat {e.user}'s account as compromised: lock it, end its sessions, review what it did.",
            user=e.user, source=e.source,
        )
    if accepted and not breached:
        who = ", ".join(sorted({f"{e.user} from {e.source} with {e.method}" for e in accepted}))
        result.add("ssh_accepted", Severity.INFO, f"Successful logins: {who}; none came from the failing sources, so no attempt succeeded.")
    elif attempts and not accepted:
        result.add("ssh_none_accepted", Severity.INFO, "No attempt from these sources succeeded: no accepted login in this window.")
    if not attackers and len(sources) >= 5 and len(attempts) >= BRUTE_FORCE * 2:
        nets = Counter(
            str(ipaddress.ip_network(f"{s_}/24", strict=False)) for s_ in sources if isinstance(_address(s_), ipaddress.IPv4Address)
        )
        if nets:
            net, count = nets.most_common(1)[0]
            if count >= 5:
                subnet_attempts = sum(n for s_, n in sources.items() if _address(s_) in ipaddress.ip_network(net))
                attackers = [net]
                result.facts["attackers"] = [s_ for s_ in sources if _address(s_) in ipaddress.ip_network(net)]
                result.add(
                    "ssh_distributed", Severity.CAUSE,
                    f"Yes: a distributed SSH brute-force attack from {count} different addresses in the same subnet "
                    f"{net} ({subnet_attempts} failed attempts). No single address crosses a per-IP ban threshold "
                    "(which is why fail2ban-style bans miss it): block the whole range.",
                    source=net,
                )
    if attackers and not breached and not any(f.code == "ssh_distributed" for f in result.findings):
        result.facts["bruteforce"] = True
        result.add(
            "ssh_bruteforce", Severity.CAUSE,
            f"Yes: this is an SSH brute-force (password guessing) attack, mostly from {attackers[0]} "
            f"({sources[attackers[0]]} failed attempts, users {', '.join(sorted({e.user for e in attempts if e.source == attackers[0]}))}).",
            source=attackers[0],
        )
    return result


@analyzer(
    "sec.listeners",
    codes=("listener_exposed_db", "listener_suspicious", "listener_unknown", "listeners_ok"),
)
def listeners(output: Output, facts: Facts) -> Analysis:
    """``ss -ltnup``: listeners that no known service accounts for."""
    if failed := failure(output):
        return failed
    socks = [s for s in sp.parse_ss(output.stdout) if s.state in ("LISTEN", "UNCONN")]
    described = [
        f"{s.netid or 'tcp'} {s.local_address}:{s.port} " + (", ".join(f"{p.name} (pid {p.pid})" for p in s.processes) or "(process hidden)")
        for s in socks
    ]
    result = Analysis(summary="; ".join(described[:12]))
    odd = False
    for s in socks:
        names = [p.name for p in s.processes]
        suspicious = [p for p in s.processes if p.name in SHELLS_AND_TOOLS]
        unknown = [p for p in s.processes if p.name not in KNOWN_LISTENERS and p not in suspicious]
        exposed = s.local_address in ("0.0.0.0", "*", "::", "")
        where = f"{s.local_address}:{s.port}"
        procs = ", ".join(f"{p.name} (pid {p.pid})" for p in s.processes)
        if suspicious:
            odd = True
            result.add(
                "listener_suspicious", Severity.CAUSE,
                f"{procs} is listening on port {s.port} ({where}, {s.netid or 'tcp'})"
                + (", open on every interface" if exposed else "")
                + f": {suspicious[0].name} is a generic network tool or interpreter (netcat/socat/shell-style), not a service; "
                "it looks like a backdoor or a leftover debug listener. Find who started it before killing it.",
                port=s.port, pid=suspicious[0].pid,
            )
        elif unknown:
            odd = True
            result.add(
                "listener_unknown", Severity.PROBLEM,
                f"{procs} listens on port {s.port} ({where}){' on every interface' if exposed else ''}; no known service accounts for it.",
                port=s.port,
            )
        elif exposed and names and any(n in ("postgres", "mysqld", "mariadbd", "redis-server", "memcached") for n in names):
            result.add(
                "listener_exposed_db", Severity.PROBLEM,
                f"{procs} listens on {where}, every interface: a database should normally listen on localhost or a private address.",
            )
    if not odd:
        result.add("listeners_ok", Severity.OK, "Every listener belongs to a known service.")
    return result


@analyzer(
    "sec.setuid",
    codes=("setuid_ok", "setuid_outside"),
)
def setuid(output: Output, facts: Facts) -> Analysis:
    """``find -perm -4000``: setuid files outside the system's own directories."""
    if output.missing:
        return Analysis(summary="not available on this node (exit 127)")
    paths = sp.parse_paths(output.stdout)
    outside = [p for p in paths if not p.startswith(SYSTEM_PREFIXES)]
    result = Analysis(summary=f"{len(paths)} setuid files, {len(outside)} outside system paths")
    for path in outside:
        result.add(
            "setuid_outside", Severity.CAUSE,
            f"{path} is setuid (runs as its owner, usually root) but lives outside the system directories: "
            "a classic privilege-escalation backdoor. Check who owns it and when it appeared.",
            path=path,
        )
    if paths and not outside:
        result.add("setuid_ok", Severity.OK, f"All {len(paths)} setuid files are in system directories.")
    return result


@analyzer(
    "sec.accounts",
    codes=("account_named", "extra_uid0", "login_shells", "uid0_ok"),
)
def accounts(output: Output, facts: Facts) -> Analysis:
    """``getent passwd``: accounts with UID 0 besides root."""
    if failed := failure(output):
        return failed
    users = sp.parse_passwd(output.stdout)
    root_like = [a for a in users if a.uid == 0 and a.name != "root"]
    shells = [a for a in users if a.uid >= 1000 and not a.shell.endswith(("nologin", "false"))]
    result = Analysis(summary=f"{len(users)} accounts, {len(shells)} human logins, {len(root_like)} extra UID 0")
    for a in root_like:
        result.add(
            "extra_uid0", Severity.CAUSE,
            f"Account {a.name} has UID 0: it is root under another name (home {a.home}, shell {a.shell}). "
            "Unless it is documented, treat it as a backdoor.",
            account=a.name,
        )
    if not root_like:
        result.add("uid0_ok", Severity.OK, "Only root has UID 0.")
    message = str(facts.get("message", ""))
    for a in users:
        if re.search(rf"(?<![\w.-]){re.escape(a.name.lower())}(?![\w-])", message):
            result.add(
                "account_named", Severity.INFO,
                f"{a.name}: uid {a.uid}, gid {a.gid}, home {a.home}, shell {a.shell}"
                + (f", \"{a.gecos}\"" if a.gecos else "") + ".",
            )
    logins = [a for a in users if not a.shell.endswith(("nologin", "false", "sync", "halt", "shutdown"))]
    if logins:
        result.add(
            "login_shells", Severity.INFO,
            "Accounts with a login shell: " + ", ".join(f"{a.name} (uid {a.uid}, {a.shell})" for a in logins) + ".",
        )
    return result


@analyzer(
    "sec.sshd",
    codes=("sshd_maxauthtries", "sshd_noncompliant", "sshd_ok", *(f"sshd_{key}" for key in RISKY_SSHD)),
)
def sshd(output: Output, facts: Facts) -> Analysis:
    """``sshd -T``: settings that weaken SSH."""
    if failed := failure(output):
        return failed
    config = sp.parse_sshd_config(output.stdout)
    result = Analysis(summary=", ".join(f"{k} {' '.join(config.get(k, ['?']))}" for k in ("permitrootlogin", "passwordauthentication", "maxauthtries")))
    risky = 0
    for key, (bad, text) in RISKY_SSHD.items():
        values = {v.lower() for v in config.get(key, [])}
        if values & bad:
            risky += 1
            severity = Severity.PROBLEM if key in ("permitrootlogin", "passwordauthentication", "permitemptypasswords") else Severity.INFO
            result.add(f"sshd_{key}", severity, f"{key} {' '.join(sorted(values))}: {text}.")
    tries = config.get("maxauthtries", [""])[0]
    if tries.isdigit() and int(tries) > 4:
        result.add("sshd_maxauthtries", Severity.INFO, f"maxauthtries {tries}: each connection may guess {tries} times (3 is usual).")
    if not risky:
        result.add("sshd_ok", Severity.OK, "sshd's effective settings have none of the usual risky options.")
    serious = [f for f in result.findings if f.severity >= Severity.PROBLEM]
    if serious:
        result.add(
            "sshd_noncompliant", Severity.CAUSE,
            f"sshd is not configured safely: it does not comply with a hardened baseline ({len(serious)} serious "
            f"setting{'s' if len(serious) != 1 else ''}: " + "; ".join(f.text.split(':')[0] for f in serious) + ").",
        )
    return result


def _address(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


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
        ipaddress.ip_network(f"{a}/24", strict=False) for a in map(_address, sources) if isinstance(a, ipaddress.IPv4Address)
    )
    if not nets:
        return []
    net, count = nets.most_common(1)[0]
    return [net] if count >= 3 and count * 2 > sum(nets.values()) else []


@analyzer(
    "sec.last",
    codes=("login_from_attacker", "login_unusual_source", "no_open_sessions", "session_open"),
)
def last(output: Output, facts: Facts) -> Analysis:
    """``last``: recent logins and where they came from."""
    if failed := failure(output):
        return failed
    logins = [x for x in sp.parse_last(output.stdout) if x.user != "reboot"]
    attackers = set(facts.get("attackers", []))
    result = Analysis(summary=", ".join(f"{x.user} from {x.source or 'console'} ({x.when})" for x in logins[:6]))
    usual = _usual_networks(str(facts.get("message", "")), [x.source for x in logins])
    for x in logins:
        address = _address(x.source)
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
    return result
