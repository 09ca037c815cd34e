"""Security posture rules beside the main analyzers (issue 12, TAXONOMY sec-18/19, sec-25, sec-29, sec-31/32,
sec-35..40, sec-46, sec-48): setuid interpreters, services exposed on every interface, sshd's extra ports,
weak algorithms and user allow-lists, login refusals as the answer to "X can't log in", wtmp's span and
reboots in ``last``. Called from ``analyzers/``, which declares the codes and facts."""

from __future__ import annotations

import re
from collections.abc import Sequence

from squads.brain.models import Analysis, Finding, Severity
from squads.brain.parsers import system as sp

# Programs that hand out a shell (or arbitrary file writes) when they carry the setuid bit (GTFOBins):
# no distribution ships them setuid, so the bit itself is the backdoor.
_GTFO = re.compile(
    r"(?:python|perl|ruby|php|lua|node|nodejs|tclsh|wish|jjs|jrunscript)[\d.]*"
    r"|bash|sh|dash|zsh|ksh|mksh|csh|tcsh|fish|ash|busybox|env|find|xargs|vi|vim|vim\.basic|vim\.tiny|rvim|view|nvim"
    r"|ed|nano|pico|less|more|man|awk|gawk|mawk|nawk|cp|mv|dd|tee|install|rsync|tar|zip|unzip|cpio|nmap|socat|nc|ncat"
    r"|netcat|gdb|strace|ltrace|expect|make|git|docker|systemctl|openssl|taskset|nice|ionice|stdbuf|timeout|time"
    r"|flock|chroot|run-parts|script|watch|sed|cat|base64|xxd|curl|wget|chmod|chown|ld\.so|ld-linux.*"
)

# Services that must not listen on every interface: port -> (name, why, severity).
_EXPOSED: dict[int, tuple[str, str, Severity]] = {
    2375: ("the Docker API (unauthenticated)", "anyone who reaches it can start a privileged container: root on this host", Severity.CAUSE),
    2376: ("the Docker API (TLS)", "only safe if client certificates are enforced (--tlsverify)", Severity.PROBLEM),
    6379: ("Redis", "Redis has no password by default; a remote client can read every key and use CONFIG SET to write files (a known way to root)", Severity.CAUSE),
    11211: ("memcached", "no authentication, and over UDP it is a classic DDoS amplifier (one small request, a huge reply to a spoofed address)", Severity.CAUSE),
    9200: ("Elasticsearch", "its REST API reads and deletes every index, without authentication unless security is enabled", Severity.CAUSE),
    9300: ("Elasticsearch transport", "the cluster's node-to-node port", Severity.PROBLEM),
    27017: ("MongoDB", "without authorization enabled anyone can read or drop every database (mass ransom wipes)", Severity.CAUSE),
    5432: ("PostgreSQL", "a database should listen on localhost or a private address; pg_hba.conf is then the only guard", Severity.PROBLEM),
    3306: ("MySQL/MariaDB", "a database should listen on localhost or a private address; passwords are then the only guard", Severity.PROBLEM),
    5984: ("CouchDB", "its HTTP API administers every database", Severity.PROBLEM),
    8086: ("InfluxDB", "its HTTP API reads and writes every series", Severity.PROBLEM),
    2379: ("etcd", "it stores the cluster's secrets; clients need certificates or it is open", Severity.CAUSE),
    10250: ("the kubelet API", "with anonymous auth it runs commands in every pod", Severity.PROBLEM),
    5900: ("VNC", "a remote desktop, often with a weak or no password", Severity.PROBLEM),
    23: ("telnet", "passwords cross the network in clear text", Severity.CAUSE),
}
# UDP services that reflect and amplify traffic when they answer the whole internet.
_AMPLIFIERS = {11211: "memcached", 123: "NTP (monlist/readvar)", 53: "DNS (an open resolver)", 161: "SNMP",
               1900: "SSDP", 19: "chargen", 111: "rpcbind (portmapper)", 389: "CLDAP", 3702: "WS-Discovery"}
_EXPOSED_NAMES = {"redis-server": 6379, "memcached": 11211, "mongod": 27017, "mysqld": 3306, "mariadbd": 3306,
                  "postgres": 5432, "dockerd": 2375, "etcd": 2379}
_EVERYWHERE = ("0.0.0.0", "*", "::", "", "[::]")


def setuid_gtfo(result: Analysis, paths: Sequence[str]) -> int:
    """Findings for setuid files that are interpreters, shells or tools that give a root shell (GTFOBins)."""
    found = 0
    for path in paths:
        if _GTFO.fullmatch(path.rsplit("/", 1)[-1]):
            found += 1
            result.add(
                "setuid_interpreter", Severity.CAUSE,
                f"{path} is setuid: it is a standard interpreter/tool, never shipped setuid, and with the bit any user "
                "can get a root shell through it (GTFOBins: e.g. `find . -exec /bin/sh -p \\;`, `python -c "
                "'import os; os.setuid(0); os.system(\"sh\")'`). Treat it as privilege escalation: find who ran "
                f"chmod u+s on it (sudo lines in the auth log) and remove the bit (chmod u-s {path}).",
                path=path,
            )
    return found


def exposed_listener(result: Analysis, s: sp.Socket) -> bool:
    """A finding for a known service listening on every interface; False when none applies."""
    if s.local_address not in _EVERYWHERE or s.port is None:
        return False
    names = [p.name for p in s.processes]
    where = f"{s.local_address or '*'}:{s.port}"
    procs = ", ".join(f"{p.name} (pid {p.pid})" for p in s.processes) or "a process ss could not name"
    udp = (s.netid or "").startswith("udp")
    if udp and s.port in _AMPLIFIERS:
        # First: an abuse report about traffic from this address is answered by the amplifier, not the TCP port.
        result.findings.insert(0, Finding(
            "listener_amplifier", Severity.CAUSE,
            f"{procs} answers UDP on {where}, every interface: {_AMPLIFIERS[s.port]} over UDP is a DDoS amplification "
            "vector (spoofed small requests, large replies to a victim): the likely source of an abuse report. "
            f"Bind it to localhost or a private address, or firewall UDP port {s.port}.", {"port": s.port},
        ))
        return True
    port = s.port if s.port in _EXPOSED else next((_EXPOSED_NAMES[n] for n in names if n in _EXPOSED_NAMES), None)
    if port is None or (port != s.port and port not in (5432, 3306)):
        return False
    service, why, severity = _EXPOSED[port]
    result.add(
        "listener_exposed_db", severity,
        f"{procs} listens on {where} ({service}), every interface, not loopback: {why}. Bind it to 127.0.0.1 or a "
        "private address, or firewall the port, unless it must be public (and then require authentication).",
        port=s.port,
    )
    return True


_WEAK = {
    "ciphers": (re.compile(r"cbc|3des|arcfour|blowfish|cast128|rc4|des(?!-)"), "ciphers"),
    "kexalgorithms": (re.compile(r"group1-sha1|group-exchange-sha1|group14-sha1|gss-.*-sha1|rsa1024"), "key exchange"),
    "macs": (re.compile(r"md5|-96|ripemd"), "MACs"),
    "hostkeyalgorithms": (re.compile(r"^ssh-dss|^ssh-rsa$|^ssh-rsa-cert-v01"), "host key algorithms"),
}


_STRICT_MACS = {"umac-64@openssh.com", "hmac-sha1"}


def sshd_crypto(result: Analysis, config: dict[str, list[str]]) -> int:
    """Findings for weak ciphers, key exchanges, MACs and host key algorithms that ``sshd -T`` offers."""
    weak: list[str] = []
    for key, (pattern, label) in _WEAK.items():
        algorithms = [a for v in config.get(key, []) for a in v.replace(" ", ",").split(",") if a]
        bad = [a for a in algorithms if pattern.search(a.lower())]
        if bad:
            weak.append(f"{label} ({key}): {', '.join(bad)}")
    # OpenSSH's own default list still offers these (encrypt-and-MAC with a 64-bit tag, SHA-1): strict
    # scanners warn about them, but a stock sshd is not "configured unsafely" for offering them.
    strict = [a for v in config.get("macs", []) for a in v.split(",") if a in _STRICT_MACS]
    if strict:
        result.add("sshd_strict_macs", Severity.INFO,
                   f"sshd offers OpenSSH's default MACs {', '.join(strict)}, which strict scanners (ssh-audit) mention; "
                   "not a weakness on their own. To silence them, list only the *-etm MACs in sshd_config.")
    if weak:
        result.add(
            "sshd_weak_crypto", Severity.PROBLEM,
            "sshd offers weak algorithms a compliance scan flags: " + "; ".join(weak) + ". Remove them from Ciphers, "
            "KexAlgorithms, MACs and HostKeyAlgorithms in sshd_config (keep chacha20-poly1305/aes-gcm/aes-ctr, "
            "curve25519/sntrup, *-etm MACs), check with `sshd -T`, then reload sshd.",
        )
    return len(weak)


def sshd_ports(result: Analysis, config: dict[str, list[str]], listening: Sequence[str]) -> None:
    """Extra Port lines in sshd's settings, and sshd ports that the settings do not explain (a second sshd)."""
    ports = [p for v in config.get("port", []) for p in v.split()]
    extra = [p for p in ports if p != "22"]
    if extra:
        result.add(
            "sshd_extra_port", Severity.PROBLEM,
            f"sshd is configured to listen on port{'s' if len(ports) > 1 else ''} {', '.join(ports)}: port "
            f"{', '.join(extra)} comes from a Port line in sshd_config or a file in sshd_config.d. If nobody added it on "
            "purpose, it is a second way in that firewalls and monitoring may not cover: find the Port line "
            "(`grep -rn '^Port' /etc/ssh/`) and who changed the file.",
        )
    unexplained = sorted({p for p in listening if p not in ports}, key=int)
    if unexplained and ports:
        result.add(
            "sshd_rogue_port", Severity.CAUSE,
            f"sshd listens on port {', '.join(unexplained)}, but sshd's configuration declares only port "
            f"{', '.join(ports)}: a second sshd runs with its own settings (`sshd -f OTHER_FILE -p PORT`), a classic "
            "backdoor. Find its process (ps: its -f and -p arguments), preserve that config file, then stop it.",
        )


def sshd_allow_lists(result: Analysis, config: dict[str, list[str]], message: str) -> None:
    """AllowUsers/DenyUsers/AllowGroups/DenyGroups, and whether a user the message names is refused by them."""
    lists = {k: [u for v in config.get(k, []) for u in v.split()] for k in ("allowusers", "denyusers", "allowgroups", "denygroups")}
    present = {k: v for k, v in lists.items() if v}
    if not present:
        return
    named = set(re.findall(r"[a-z_][a-z0-9_.-]*", message))
    named -= {"ssh", "sshd", "the", "can't", "cannot", "log", "login", "in", "since", "after", "into", "user", "users"}
    allowed = {u.split("@", 1)[0] for u in lists["allowusers"]}
    for user in sorted(named):
        denied = user in {u.split("@", 1)[0] for u in lists["denyusers"]}
        if denied or (allowed and user not in allowed and _looks_like_user(user, message)):
            why = "DenyUsers lists them" if denied else f"AllowUsers lists only {', '.join(sorted(allowed))}"
            result.add(
                "sshd_user_not_allowed", Severity.CAUSE,
                f"sshd refuses {user} before any password or key is checked: {why}. Add {user} to AllowUsers (or "
                "remove it from DenyUsers) in sshd_config, check with `sshd -T`, then reload sshd.",
                user=user,
            )
    result.add(
        "sshd_allow_lists", Severity.INFO,
        "sshd restricts who may log in: " + "; ".join(f"{k} {' '.join(v)}" for k, v in present.items())
        + ". Anyone else is refused with \"not allowed because not listed in AllowUsers\" (or a DenyUsers line).",
    )


def _looks_like_user(word: str, message: str) -> bool:
    """A word the message uses as a user: "bob can't ...", "user bob", "for bob", "bob's"."""
    w = re.escape(word)
    return bool(re.search(
        rf"(?:^|[\s,])(?:user|account|for|login|as)\s+{w}\b|\b{w}(?:'s)?\s+(?:can't|cannot|can not|is unable|is locked|"
        rf"gets|got|cant|couldn't|could not|isn't|is not|no longer|still)", message))


# A message about a login that fails ("alice can't log in", "key stopped working", "locked out").
LOGIN_TROUBLE = re.compile(
    r"can'?t|cannot|can not|unable|couldn'?t|could not|locked|lock-?out|refus|reject|denied|den(?:y|ies)|stopped|"
    r"not working|doesn'?t work|no longer|fail(?:s|ing)? to log|expired|kicked|drops?|dropped"
)
REFUSALS = {
    "pam-faillock-locked", "pam-tally-deny", "pam-account-expired", "pam-access-denied", "pam-succeed-if-not-met",
    "sshd-not-listed-allowusers", "sshd-user-not-allowed", "sshd-root-login-refused", "sshd-bad-ownership-modes",
    "sshd-key-type-not-accepted", "sshd-maxstartups", "sshd-penalty", "sshd-negotiation-failed",
    "sshd-no-host-keys", "sshd-config-error", "sshd-bind-failed", "sshd-cannot-bind", "sshd-key-permissions-too-open",
}


def login_refusals(result: Analysis, message: str) -> None:
    """When the user asks why a login fails, the catalogue line that refused it is the answer: raise it to a
    cause and put it first (a line naming a user the message names first of all)."""
    if not LOGIN_TROUBLE.search(message):
        return
    refusals = [f for f in result.findings if f.code == "log_signature" and f.data.get("signature") in REFUSALS]
    if not refusals:
        return
    words = set(re.findall(r"[a-z_][a-z0-9_.-]{2,}", message))

    def names_user(f: Finding) -> bool:
        line = str(f.data.get("line", "")).lower()
        return any(re.search(rf"(?<![\w.-]){re.escape(w)}(?![\w-])", line) for w in words if w not in ("ssh", "sshd", "log", "user"))

    refusals.sort(key=lambda f: not names_user(f))
    for f in refusals:
        result.findings.remove(f)
    result.findings[:0] = [
        Finding(f.code, Severity.CAUSE, "This is why the login is refused: " + f.text, f.data) for f in refusals
    ]


_WTMP_BEGINS = re.compile(r"wtmp begins (?P<when>(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun) [A-Z][a-z]{2} +(?P<day>\d{1,2}) (?P<time>[\d:]+)(?: \d{4})?)")


def last_history(result: Analysis, text: str, logins: Sequence[sp.Login], message: str) -> None:
    """What ``last`` can and cannot say: the span wtmp covers (a mid-month start with no boot record is a
    file recreated by hand), reboots, and sessions that ended in a crash (an unclean shutdown)."""
    boots = [x for x in logins if x.user == "reboot"]
    crashed = [x for x in logins if x.user != "reboot" and re.search(r"\bcrash\b", _row(text, x))]
    for x in crashed:
        result.add(
            "last_crash", Severity.PROBLEM,
            f"{x.user}'s session from {x.source or 'the console'} ({x.when}) ended in \"crash\": the system went down "
            "without a clean shutdown (power loss, kernel panic, hard reset, or a watchdog), not through reboot/shutdown. "
            "Look at the previous boot's kernel log (`journalctl -k -b -1`) and whether anyone ran reboot (sudo lines).",
            user=x.user,
        )
    if boots and (crashed or re.search(r"reboot|restart|went down|crash|uptime|power", message)):
        result.add(
            "last_reboots", Severity.PROBLEM if crashed else Severity.INFO,
            "The host booted at " + ", ".join(b.when for b in boots[:4])
            + (" after an unclean shutdown (a session ended in \"crash\")." if crashed else
               ". Whether someone rebooted it on purpose shows in the auth log (sudo reboot/shutdown lines)."),
        )
    m = _WTMP_BEGINS.search(text)
    if not m:
        return
    users = [x for x in logins if x.user != "reboot"]
    rotated = m["day"] == "1" and m["time"].startswith("00:")
    if not boots and not rotated:
        result.add(
            "wtmp_truncated", Severity.PROBLEM,
            f"wtmp begins {m['when']}, in the middle of a month and with no boot recorded since: the login history "
            f"was recreated or emptied then (logrotate starts it on the 1st), so `last` shows only {len(users)} "
            "login(s). Attackers truncate wtmp to hide their sessions: compare with the auth log's Accepted lines "
            "before that date and find who touched /var/log/wtmp.",
        )
    else:
        result.add("wtmp_span", Severity.INFO, f"`last` covers only the time since wtmp begins ({m['when']}).")


def _row(text: str, login: sp.Login) -> str:
    return next((ln for ln in text.splitlines() if ln.startswith(login.user) and login.when in ln), "")


_SUDO_REBOOT = re.compile(r"sudo(?:\[\d+\])?: +(?P<user>\S+) : .*COMMAND=(?P<cmd>\S*(?:reboot|shutdown|poweroff|halt|init [06]|systemctl (?:reboot|poweroff|halt))\S*.*)$")


def reboot_commands(result: Analysis, text: str, message: str) -> None:
    """Who asked for a reboot through sudo; when the message asks about a reboot and nobody did, say so."""
    if not re.search(r"reboot|restart|went down|crash|power", message):
        return
    lines = [(m["user"], ln.strip()) for ln in text.splitlines() if (m := _SUDO_REBOOT.search(ln))]
    for user, line in lines[-3:]:
        result.add("reboot_by_user", Severity.INFO, f"{user} asked for the reboot through sudo: `{line}`.", user=user)
    if not lines:
        result.add(
            "reboot_not_requested", Severity.INFO,
            "No reboot, shutdown or poweroff ran through sudo in this log window: nobody here rebooted it on purpose "
            "(an unclean shutdown, a hypervisor or a power event is likelier).",
        )
