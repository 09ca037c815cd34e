"""Reading a host's exposure: its listeners, setuid files, accounts and sshd's effective settings."""

from __future__ import annotations

import re

from squads.brain.analyzers import Output, analyzer
from squads.brain.analyzers.common import failure
from squads.brain.models import Analysis, Facts, Finding, Severity
from squads.brain.parsers import system as sp

from .. import hunt, posture

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
