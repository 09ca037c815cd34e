"""Reading security-relevant output: SSH attempts, listeners, setuid files, accounts, sshd settings."""

from __future__ import annotations

import ipaddress
import re
from collections import Counter

from squads.brain.analyzers import Output, analyzer
from squads.brain.analyzers.common import failure
from squads.brain.known_errors import CODES as LOG_CODES
from squads.brain.known_errors import FACTS as LOG_FACTS
from squads.brain.known_errors import fill_in
from squads.brain.models import Analysis, Facts, Finding, Severity
from squads.brain.parsers import logs as lp
from squads.brain.parsers import system as sp

from . import hunt, posture, privilege, review

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
# Forwarding exposures: what a logged-in user can open through sshd (sshd -T spells them in lower case).
FORWARDING = {
    "gatewayports": ({"yes", "clientspecified"}, "remote port forwards (ssh -R) bind on every interface, not only "
                     "loopback: any user can publish an internal service to the network. Set GatewayPorts no"),
    "permittunnel": ({"yes", "point-to-point", "ethernet"}, "users may open tun/tap VPN tunnels through sshd, a layer-3 "
                     "path into the network. Set PermitTunnel no"),
    "allowagentforwarding": ({"yes"}, "agent forwarding is on: a root user on this host can use forwarded agents of "
                             "everyone who logs in. Set AllowAgentForwarding no on a bastion unless needed"),
    "permitopen": ({"any"}, "forwards may reach any host and port (PermitOpen any): restrict them with PermitOpen host:port"),
    "permitlisten": ({"any"}, "remote forwards may listen on any port (PermitListen any): restrict with PermitListen"),
}


# The journal or the log had nothing to give: "no data", never "0 failed logins".
NO_DATA = ("no journal files were found", "-- no entries --", "no such file or directory")
UNAVAILABLE = ("system has not been booted with systemd", "failed to connect to bus", "permission denied")
# Lines of pre-authentication noise: scanners that connect, probe and leave without authenticating.
PREAUTH = re.compile(
    r"kex_exchange_identification|banner exchange|\[preauth\]|Unable to negotiate with|Did not receive identification"
    r"|Protocol major versions differ|invalid format|Bad protocol version|Invalid user "
)
_PREAUTH_SOURCE = re.compile(r"(?:from|by|with|Connection from) (?:(?:invalid|authenticating) user \S+ )?(?P<ip>[0-9a-f.:]+[0-9a-f]) port")


def _log_missing(output: Output, what: str) -> Analysis | None:
    """The analysis of an auth source that gave nothing (no data) or could not be read (unavailable)."""
    text = output.text.lower()
    if any(marker in text for marker in UNAVAILABLE) and not lp.ssh_events(output.text):
        result = Analysis(summary=f"{what}: unavailable", facts={"unavailable": True, "ssh_log_empty": True})
        first = next((ln.strip() for ln in output.text.splitlines() if ln.strip()), "")
        result.add("no_data", Severity.INFO, f"{what} could not be read on this node (\"{first[:160]}\"): logins were not checked there.", check=what)
        return result
    if output.missing or output.exit_code != 0 and not output.stdout.strip() or not output.stdout.strip() or any(
        marker in text for marker in NO_DATA
    ) and not lp.ssh_events(output.text):
        first = next((ln.strip() for ln in output.text.splitlines() if ln.strip()), "no output")
        result = Analysis(summary=f"{what}: no data", facts={"ssh_log_empty": True})
        result.add(
            "no_data", Severity.INFO,
            f"{what} returned nothing to judge (\"{first[:160]}\"): this is no data, not zero failed logins.",
            check=what,
        )
        return result
    return None


def _public(source: str) -> bool:
    address = _address(source)
    return bool(address is not None and address.is_global)


@analyzer(
    "sec.ssh_log",
    facts=("accepted_logins", "attackers", "bruteforce", "ssh_log_empty", "unavailable", *LOG_FACTS,
           *privilege.FACTS),
    codes=(
        "account_created_package", "account_created_person", "account_created_uid0", "no_data",
        "ssh_accepted", "ssh_breach", "ssh_bruteforce", "ssh_crafted_user", "ssh_distributed", "ssh_failed_logins",
        "ssh_login_after_failures", "ssh_login_new_source", "ssh_none_accepted", "ssh_preauth_noise", "ssh_root_login",
        "ssh_service_account_login", "reboot_by_user", "reboot_not_requested", *LOG_CODES, *privilege.CODES,
    ),
)
def ssh_log(output: Output, facts: Facts) -> Analysis:
    """sshd's journal or auth.log: who is guessing, which users, did anyone get in; then the
    catalogue's known errors (PAM, sudo, sshd's own failures) among the lines that reasoning left out."""
    result = _ssh_reasoning(output, facts)
    if not any(f.code == "no_data" for f in result.findings):
        what = "The auth log" if output.argv[:1] == ["tail"] else "sshd's journal"
        fill_in(result, output.text, squad="security", source=what, explained=_auth_explained)
        privilege.privilege_use(result, output.text)  # after: the catalogue keeps its counts of the same lines
        message = str(facts.get("message", ""))
        posture.login_refusals(result, message)
        posture.reboot_commands(result, output.text, message)
    return result


def _auth_explained(line: str) -> bool:
    """A line the login reasoning accounts for: an authentication event, or pre-authentication noise."""
    return bool(PREAUTH.search(line) or lp.ssh_events(line))


def _ssh_reasoning(output: Output, facts: Facts) -> Analysis:
    what = "the auth log" if output.argv[:1] == ["tail"] else "sshd's journal"
    if missing := _log_missing(output, what):
        return missing
    events = lp.ssh_events(output.text)
    failed_events = [e for e in events if e.kind in ("failed", "invalid_user", "max_auth")]
    attempts = [e for e in events if e.kind == "failed"] or failed_events
    accepted = [e for e in events if e.kind == "accepted"]
    result = Analysis(summary=f"{len(attempts)} failed logins, {len(accepted)} successful")
    hunt.account_creation(result, output.text)
    if not events:
        result.facts["ssh_log_empty"] = True
        _preauth_noise(result, output.text, accepted)
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
    flagged = _access_evidence(result, events, breached, output.text)
    if accepted and not breached:
        who = ", ".join(sorted({f"{e.user} from {e.source} with {e.method}" for e in accepted}))
        also = " (no guessed password worked), but see the logins flagged above" if flagged else ", so no attempt succeeded"
        result.add("ssh_accepted", Severity.INFO, f"Successful logins: {who}; none came from the failing sources{also}.")
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
    _preauth_noise(result, output.text, accepted)
    return result


@analyzer(
    "sec.listeners",
    facts=("listener_pids", "sshd_ports"),
    codes=("listener_amplifier", "listener_disguised", "listener_exposed_db", "listener_suspicious", "listener_unknown", "listeners_ok", "no_data"),
)
def listeners(output: Output, facts: Facts) -> Analysis:
    """``ss -ltnup``: listeners that no known service accounts for; one named like a kernel thread first."""
    if failed := failure(output):
        return failed
    socks = [s for s in sp.parse_ss(output.stdout) if s.state in ("LISTEN", "UNCONN")]
    if not socks:
        result = Analysis(summary="no listener listed")
        result.add("no_data", Severity.INFO, "ss listed no listening socket: listeners could not be checked.", check="listeners")
        return result
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
        disguised = [p for p in s.processes if hunt.KERNEL_THREAD.match(p.name)]
        for p in disguised:
            result.facts.setdefault("listener_pids", []).append(str(p.pid))
        if "sshd" in names and s.port is not None and s.port != 22:
            if str(s.port) not in result.facts.setdefault("sshd_ports", []):
                result.facts["sshd_ports"].append(str(s.port))
        if disguised:
            odd = True
            result.findings.insert(0, Finding(
                "listener_disguised", Severity.CAUSE,
                f"{procs} listens on port {s.port} ({where}){', open on every interface' if exposed else ''}, under the name "
                f"of a kernel thread: kernel threads never open sockets, so this is a user-space program hiding (a "
                f"backdoor or a miner's control port). Its real program: `ls -l /proc/{disguised[0].pid}/exe`; a program "
                "in /tmp, /dev/shm or a deleted one confirms it. Preserve evidence before stopping it.",
                {"port": s.port, "pid": disguised[0].pid},
            ))
        elif suspicious:
            odd = True
            result.add(
                "listener_suspicious", Severity.CAUSE,
                f"{procs} is listening on port {s.port} ({where}, {s.netid or 'tcp'})"
                + (", open on every interface" if exposed else "")
                + f": {suspicious[0].name} is a generic network tool or interpreter (netcat/socat/shell-style), not a service; "
                "it looks like a backdoor or a leftover debug listener. Find who started it before killing it.",
                port=s.port, pid=suspicious[0].pid,
            )
        elif posture.exposed_listener(result, s):
            odd = True
        elif unknown:
            odd = True
            result.add(
                "listener_unknown", Severity.PROBLEM,
                f"{procs} listens on port {s.port} ({where}){' on every interface' if exposed else ''}; no known service accounts for it.",
                port=s.port,
            )
    if not odd:
        ports = sorted({str(s.port) for s in socks if s.port is not None}, key=int)
        result.add("listeners_ok", Severity.OK,
                   f"Every listening port ({', '.join(ports) or 'none'}) belongs to a known service.")
    return result


@analyzer(
    "sec.setuid",
    facts=("setuid_suspicious",),
    codes=("setuid_interpreter", "setuid_ok", "setuid_outside"),
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
    interpreters = posture.setuid_gtfo(result, [p for p in paths if p not in outside])
    if outside or interpreters:
        result.facts["setuid_suspicious"] = True  # the auth log's sudo lines say who set the bit
    if paths and not outside and not interpreters:
        result.add("setuid_ok", Severity.OK, f"All {len(paths)} setuid files are in system directories.")
    return result


@analyzer(
    "sec.accounts",
    facts=("named_accounts",),
    codes=("account_named", "extra_uid0", "login_shells", "no_data", "uid0_ok"),
)
def accounts(output: Output, facts: Facts) -> Analysis:
    """``getent passwd``: accounts with UID 0 besides root."""
    if failed := failure(output):
        return failed
    users = sp.parse_passwd(output.stdout)
    if not users:
        result = Analysis(summary="no accounts listed")
        result.add("no_data", Severity.INFO, "getent passwd listed no account: accounts could not be checked.", check="accounts")
        return result
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
            result.facts.setdefault("named_accounts", []).append(a.name)
            can_login = not a.shell.endswith(("nologin", "false"))
            result.add(
                "account_named", Severity.PROBLEM if can_login and a.uid >= 1000 else Severity.INFO,
                f"{a.name} still exists"
                + (" and can log in" if can_login else "")
                + f": uid {a.uid}, gid {a.gid}, home {a.home}, shell {a.shell}"
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
    codes=("no_data", "sshd_allow_lists", "sshd_extra_port", "sshd_maxauthtries", "sshd_noncompliant", "sshd_ok",
           "sshd_rogue_port", "sshd_root_password", "sshd_strict_macs", "sshd_user_not_allowed", "sshd_weak_crypto",
           *(f"sshd_{key}" for key in (*RISKY_SSHD, *FORWARDING))),
)
def sshd(output: Output, facts: Facts) -> Analysis:
    """``sshd -T``: settings that weaken SSH."""
    if failed := failure(output):
        return failed
    config = sp.parse_sshd_config(output.stdout)
    if not config:
        result = Analysis(summary="no settings")
        result.add("no_data", Severity.INFO, "sshd -T printed no settings: sshd's configuration could not be checked.", check="sshd settings")
        return result
    result = Analysis(summary=", ".join(f"{k} {' '.join(config.get(k, ['?']))}" for k in ("permitrootlogin", "passwordauthentication", "maxauthtries")))
    risky = 0
    for key, (bad, text) in RISKY_SSHD.items():
        values = {v.lower() for v in config.get(key, [])}
        if values & bad:
            risky += 1
            severity = Severity.PROBLEM if key in ("permitrootlogin", "passwordauthentication", "permitemptypasswords") else Severity.INFO
            result.add(f"sshd_{key}", severity, f"{key} {' '.join(sorted(values))}: {text}.")
    values_of = {k: {v.lower() for v in config.get(k, [])} for k in ("permitrootlogin", "passwordauthentication",
                                                                    "kbdinteractiveauthentication")}
    if "yes" in values_of["permitrootlogin"] and ({"yes"} & (values_of["passwordauthentication"] | values_of["kbdinteractiveauthentication"])):
        result.add(
            "sshd_root_password", Severity.CAUSE,
            "permitrootlogin yes together with password authentication: anyone on the network can guess root's "
            "password directly. Set PermitRootLogin no (or prohibit-password) and PasswordAuthentication no, then reload sshd.",
        )
    for key, (bad, text) in FORWARDING.items():
        values = {v.lower() for v in config.get(key, [])}
        if values & bad:
            risky += 1
            result.add(f"sshd_{key}", Severity.PROBLEM if key in ("gatewayports", "permittunnel") else Severity.INFO,
                       f"{key} {' '.join(sorted(values))}: {text}.")
    risky += posture.sshd_crypto(result, config)
    posture.sshd_ports(result, config, [str(p) for p in facts.get("sshd_ports", [])])
    posture.sshd_allow_lists(result, config, str(facts.get("message", "")))
    risky += sum(f.code in ("sshd_extra_port", "sshd_rogue_port") for f in result.findings)
    tries = config.get("maxauthtries", [""])[0]
    if tries.isdigit() and int(tries) > 4:
        result.add("sshd_maxauthtries", Severity.INFO, f"maxauthtries {tries}: each connection may guess {tries} times (3 is usual).")
    if not risky:
        result.add("sshd_ok", Severity.OK, "sshd's effective settings have none of the usual risky options.")
    # Who may log in (AllowUsers) is a policy, not a weakness: it answers "X can't log in", not the audit.
    serious = [f for f in result.findings if f.severity >= Severity.PROBLEM and f.code != "sshd_user_not_allowed"]
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
    posture.last_history(result, output.stdout, sp.parse_last(output.stdout), str(facts.get("message", "")))
    return result


def _raw_line(text: str, e: lp.SshEvent) -> str:
    needle = f"Accepted {e.method} for {e.user} from {e.source}"
    return next((ln.strip() for ln in text.splitlines() if needle in ln), needle)


def _access_evidence(result: Analysis, events: list[lp.SshEvent], breached: list[lp.SshEvent], text: str = "") -> bool:
    """Findings for every successful login that is evidence of access on its own (issue 12 §3): root,
    a service account, a login right after a burst of failures for that user, an address not seen before."""
    flagged = False
    seen_sources: set[str] = set()
    failures_for: Counter[str] = Counter()
    reported: set[tuple[str, str]] = set()
    for e in events:
        if e.kind != "accepted":
            if e.kind in ("failed", "invalid_user", "max_auth"):
                failures_for[e.user] += 1
            continue
        first_time = e.source not in seen_sources
        seen_sources.add(e.source)
        if (e.user, e.source) in reported or e in breached:
            continue
        where = f"from {e.source}" + (" (a public address)" if _public(e.source) else "") + f" with {e.method}"
        when = f" at {e.time}" if e.time else ""
        quote = f"`{_raw_line(text, e)}`" if text else ""
        new = " It is the first login from that address in this log window." if first_time else ""
        if e.user == "root":
            result.add(
                "ssh_root_login", Severity.CAUSE,
                f"root logged in over SSH {where}{when}: {quote}.{new} Direct root access is evidence of access, whatever "
                "the method: confirm who holds that key or password now; if nobody can, treat the host as compromised "
                "(remove the key from /root/.ssh/authorized_keys, set PermitRootLogin no, review what was run).",
                user=e.user, source=e.source,
            )
        elif e.user in hunt.SERVICE_ACCOUNTS:
            result.add(
                "ssh_service_account_login", Severity.CAUSE,
                f"The service account {e.user} logged in over SSH {where}{when}: {quote}. Service accounts do not log in "
                f"interactively: someone planted a key in {e.user}'s authorized_keys (often through the web app). Treat "
                "it as a compromise: remove the key, lock the account's shell, find how the key got there.",
                user=e.user, source=e.source,
            )
        elif failures_for[e.user] >= BRUTE_FORCE:
            result.add(
                "ssh_login_after_failures", Severity.CAUSE,
                f"{e.user} logged in {where}{when} right after {failures_for[e.user]} failed attempts for that user: "
                f"{quote}. A guessed or sprayed password is the likely way in: confirm with {e.user}, else lock it.",
                user=e.user, source=e.source,
            )
        elif first_time and _public(e.source):
            result.add(
                "ssh_login_new_source", Severity.PROBLEM,
                f"{e.user} logged in {where}{when}, from an address not seen before in this log window: {quote}. "
                f"Confirm with {e.user} that it was them.",
                user=e.user, source=e.source,
            )
        else:
            continue
        reported.add((e.user, e.source))
        flagged = True
    return flagged


def _preauth_noise(result: Analysis, text: str, accepted: list[lp.SshEvent]) -> None:
    """Pre-authentication scanner noise: say so, and say whether any login succeeded."""
    lines = [ln for ln in text.splitlines() if PREAUTH.search(ln)]
    if len(lines) < 3 or result.facts.get("attackers") or any(f.severity >= Severity.CAUSE for f in result.findings):
        return
    sources = {m["ip"] for m in map(_PREAUTH_SOURCE.search, lines) if m}
    noisy = sources - {e.source for e in accepted}
    if accepted:
        ok = ", ".join(sorted({f"{e.user} from {e.source} ({e.method})" for e in accepted}))
        outcome = f"None of those addresses authenticated; the only successful logins are {ok}."
    else:
        outcome = "No login succeeded in this window: nobody got in."
    result.add(
        "ssh_preauth_noise", Severity.INFO,
        f"{len(lines)} lines are pre-authentication noise from {len(noisy) or 'several'} address(es) "
        "(kex_exchange_identification, banner exchange, connections closed [preauth], invalid users): internet "
        "scanners and bots probing sshd. They never authenticated; this is background noise, not an intrusion. "
        f"{outcome}",
    )


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
