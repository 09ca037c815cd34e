"""Parsers for host diagnostics: systemctl, ss, df/du, passwd, find, sshd -T, openssl, last.

Tables are read by their header names and by splitting on whitespace with a known
column count, never by fixed character offsets, because widths change with the data.
Digits are spelled ``[0-9]``: ``\\d`` also matches non-ASCII digits that ``int()`` may reject.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime, timezone


def _is_number(text: str) -> bool:
    # str.isdigit() also accepts "²" and other digits that int() rejects.
    return re.fullmatch(r"[0-9]+", text) is not None


# --- systemctl status --------------------------------------------------------------

@dataclass(frozen=True)
class UnitStatus:
    unit: str
    description: str
    loaded: str
    enabled: str
    active: str
    sub: str
    since: str
    main_pid: int | None
    log: list[str] = field(default_factory=list)


# The bullet is "●", "×", "○", "↻" on UTF-8 terminals and "*" otherwise.
_UNIT_HEADER = re.compile(r"^[●×○↻*]?\s*(?P<unit>[\w@:.\\-]+\.[a-z]+)(?: - (?P<description>.*))?$")
_UNIT_FIELD = re.compile(r"^\s+(?P<key>[A-Z][A-Za-z ]*?): (?P<value>.*)$")
_ACTIVE = re.compile(r"^(?P<state>\S+)(?: \((?P<sub>[^)]*)\))?.*?(?: since (?P<since>[^;]+))?(?:;.*)?$")


def parse_systemctl_status(text: str) -> UnitStatus | None:
    """Parse ``systemctl status UNIT``; ``None`` when the unit could not be found."""
    lines = text.splitlines()
    start = next((i for i, line in enumerate(lines) if line.strip()), None)
    if start is None:
        return None
    header = _UNIT_HEADER.match(lines[start].strip())
    if not header:
        return None
    fields: dict[str, str] = {}
    body_end = len(lines)
    for i in range(start + 1, len(lines)):
        if not lines[i].strip():
            body_end = i
            break
        m = _UNIT_FIELD.match(lines[i])
        if m:
            fields.setdefault(m["key"], m["value"].strip())
    log: list[str] = []
    for line in lines[body_end + 1:]:
        if _UNIT_HEADER.match(line.strip()) and line[:1] in "●×○↻*":
            break  # "systemctl status a b" prints the next unit after the journal.
        if line.strip():
            log.append(line.rstrip())

    loaded = re.match(r"(?P<state>\S+)(?: \((?P<detail>[^)]*)\))?", fields.get("Loaded", ""))
    detail = (loaded["detail"] or "").split(";") if loaded else []
    # "loaded (/path; enabled; vendor preset: enabled)": the enablement is the 2nd item.
    enabled = detail[1].strip() if len(detail) > 1 and ":" not in detail[1] else ""
    active = _ACTIVE.match(fields.get("Active", ""))
    pid = re.match(r"[0-9]+", fields.get("Main PID", ""))
    state, sub, since = (active["state"], active["sub"] or "", (active["since"] or "").strip()) if active else ("", "", "")
    description = (header["description"] or "").strip()
    main_pid = int(pid[0]) if pid else None
    return UnitStatus(header["unit"], description, loaded["state"] if loaded else "", enabled, state, sub, since, main_pid, log)


# --- ps -------------------------------------------------------------------------------

@dataclass(frozen=True)
class Proc:
    """One ``ps -eo pid,ppid,user,etime,args`` row."""

    pid: int
    ppid: int
    user: str
    elapsed: str
    args: str

    @property
    def program(self) -> str:
        """The first word of the command line."""
        return self.args.split()[0] if self.args.split() else ""


def parse_ps(text: str) -> list[Proc]:
    """Rows of ``ps -eo pid,ppid,user,etime,args``; the header and malformed lines are skipped, args keep their spaces."""
    procs: list[Proc] = []
    for line in text.splitlines():
        parts = line.split(None, 4)
        if len(parts) < 5 or not parts[0].isdigit() or not parts[1].isdigit():
            continue
        procs.append(Proc(pid=int(parts[0]), ppid=int(parts[1]), user=parts[2], elapsed=parts[3], args=parts[4].strip()))
    return procs


# --- ss -------------------------------------------------------------------------------

@dataclass(frozen=True)
class Process:
    name: str
    pid: int


@dataclass(frozen=True)
class Socket:
    netid: str
    state: str
    local_address: str
    port: int | None
    peer: str
    processes: list[Process] = field(default_factory=list)


_SS_COLUMNS = ("Netid", "State", "Recv-Q", "Send-Q", "Local Address:Port", "Peer Address:Port")
_SS_PROCESS = re.compile(r'\("(?P<name>(?:[^"\\]|\\.)*)",pid=(?P<pid>[0-9]+)')


def _split_address(text: str) -> tuple[str, int | None]:
    """Split "addr:port" as ss prints it; brackets around IPv6 are dropped."""
    bracketed = re.fullmatch(r"\[(?P<host>[^\]]*)\](?P<iface>%\S+)?:(?P<port>\S+)", text)
    if bracketed:
        host, port = bracketed["host"] + (bracketed["iface"] or ""), bracketed["port"]
    elif ":" in text:
        host, port = text.rsplit(":", 1)
    else:
        host, port = text, ""
    return host, int(port) if _is_number(port) else None


def parse_ss(text: str) -> list[Socket]:
    """Parse ``ss -ltnp``/``ss -ltnup`` output; the header decides which columns exist."""
    lines = text.splitlines()
    header_at = next((i for i, line in enumerate(lines) if re.match(r"\s*(Netid|State)\b", line)), None)
    if header_at is None:
        return []
    header = lines[header_at]
    columns = [name for name in _SS_COLUMNS if name in header]
    sockets: list[Socket] = []
    for line in lines[header_at + 1:]:
        # Only the trailing Process column may hold spaces (inside quoted names).
        parts = line.split(None, len(columns))
        if len(parts) < len(columns):
            continue
        row = dict(zip(columns, parts, strict=False))
        process_text = parts[len(columns)] if len(parts) > len(columns) else ""
        processes: list[Process] = []
        for m in _SS_PROCESS.finditer(process_text):
            if all(p.pid != int(m["pid"]) for p in processes):
                processes.append(Process(m["name"], int(m["pid"])))
        address, port = _split_address(row.get("Local Address:Port", ""))
        peer = row.get("Peer Address:Port", "")
        sockets.append(Socket(row.get("Netid", ""), row.get("State", ""), address, port, peer, processes))
    return sockets


_WILDCARDS = frozenset({"0.0.0.0", "*", "::", "::ffff:0.0.0.0"})
_LOOPBACK_NAMES = {"127.0.0.1": {"127.0.0.1", "localhost"}, "::1": {"::1", "localhost"}}


def _covers(local: str, host: str) -> bool:
    local = local.split("%", 1)[0]  # "127.0.0.53%lo": the interface does not change the address.
    host = host.strip("[]").lower()
    if local in _WILDCARDS:
        # An IPv4 wildcard cannot accept IPv6 connections; "::" usually is dual-stack.
        return local != "0.0.0.0" or ":" not in host
    local = local.removeprefix("::ffff:")
    return host == local or host in _LOOPBACK_NAMES.get(local, set())


def listening_on(sockets: list[Socket], port: int, host: str | None = None) -> list[Socket]:
    """Sockets listening on ``port`` (TCP LISTEN or bound UDP) that accept connections to ``host``."""
    return [
        s
        for s in sockets
        if s.port == port and s.state in ("LISTEN", "UNCONN", "") and (host is None or _covers(s.local_address, host))
    ]


# --- df / du / sizes ----------------------------------------------------------------

@dataclass(frozen=True)
class Filesystem:
    source: str
    size: str
    used: str
    available: str
    use_percent: int
    mount: str
    fstype: str = ""  # with df -T
    inodes: bool = False  # df -i: the numbers count inodes, not bytes


_DF_NAMES = {
    "size": ("Size", "1K-blocks", "1M-blocks", "1024-blocks", "512-blocks", "Inodes"),
    "used": ("Used", "IUsed"),
    "available": ("Avail", "Available", "IFree"),
    "use_percent": ("Use%", "Capacity", "IUse%"),
}


def parse_df(text: str) -> list[Filesystem]:
    """Parse ``df``/``df -h``/``df -hT``/``df -i`` output, rejoining sources that wrapped onto their own line."""
    lines = [line for line in text.splitlines() if line.strip()]
    if not lines or not lines[0].startswith("Filesystem"):
        return []
    # "Mounted on" is the only header with a space and always comes last.
    names = lines[0].replace("Mounted on", "Mounted").split()
    width = len(names)
    index = {key: next((names.index(n) for n in options if n in names), -1) for key, options in _DF_NAMES.items()}
    result: list[Filesystem] = []
    pending = ""
    for line in lines[1:]:
        joined = f"{pending} {line.strip()}" if pending else line.strip()
        parts = re.split(r"\s+", joined, maxsplit=width - 1)
        if len(parts) < width:
            pending = joined  # a long device name is printed alone, its numbers follow
            continue
        pending = ""
        size, used, available, percent = (parts[i] if i >= 0 else "" for i in index.values())
        percent = percent.rstrip("%")
        use = int(percent) if _is_number(percent) else 0
        fstype = parts[names.index("Type")] if "Type" in names else ""
        result.append(Filesystem(parts[0], size, used, available, use, parts[-1], fstype, "IUse%" in names))
    return result


def parse_du(text: str) -> list[tuple[str, str]]:
    """Parse ``du`` output into ``(size, path)`` pairs, skipping ``du:`` error lines."""
    pairs: list[tuple[str, str]] = []
    for line in text.splitlines():
        parts = line.strip().split(None, 1)
        if len(parts) == 2 and not line.startswith("du:") and size_bytes(parts[0]) is not None:
            pairs.append((parts[0], parts[1]))
    return pairs


_SIZE = re.compile(r"^(?P<number>[0-9]+(?:[.,][0-9]+)?)\s*(?P<prefix>[KMGTPE]?)(?:i?B|bytes?)?$", re.I)
_POWERS = {"": 0, "K": 1, "M": 2, "G": 3, "T": 4, "P": 5, "E": 6}


def size_bytes(text: str) -> int | None:
    """Convert a human size ("1.9G", "8192 kB", "512 bytes") to bytes, 1024-based; ``None`` if unreadable."""
    m = _SIZE.match(text.strip())
    if not m:
        return None
    scale = 1 << (10 * _POWERS[m["prefix"].upper()])
    try:
        return round(float(m["number"].replace(",", ".")) * scale)
    except OverflowError:  # hundreds of digits overflow float to infinity
        return None


# --- accounts, paths, sshd ------------------------------------------------------------

@dataclass(frozen=True)
class Account:
    name: str
    uid: int
    gid: int
    gecos: str
    home: str
    shell: str


def parse_passwd(text: str) -> list[Account]:
    """Parse ``/etc/passwd`` or ``getent passwd`` lines; malformed lines are skipped."""
    accounts: list[Account] = []
    for line in text.splitlines():
        parts = line.strip().split(":")
        if len(parts) != 7 or not _is_number(parts[2]) or not _is_number(parts[3]):
            continue
        name, _password, uid, gid, gecos, home, shell = parts
        accounts.append(Account(name, int(uid), int(gid), gecos, home, shell))
    return accounts


def parse_paths(text: str) -> list[str]:
    """Absolute paths from ``find`` output; ``find: ...`` diagnostics and other noise are skipped."""
    return [line.rstrip("\r\n") for line in text.splitlines() if line.startswith("/")]


def parse_sshd_config(text: str) -> dict[str, list[str]]:
    """``sshd -T`` (or sshd_config) as lowercase keyword -> values, repeated keywords accumulating."""
    config: dict[str, list[str]] = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        parts = re.split(r"\s*=\s*|\s+", line, maxsplit=1)
        key = parts[0].lower()
        if key == "match":
            break  # settings below a Match block only apply conditionally
        config.setdefault(key, []).append(parts[1] if len(parts) > 1 else "")
    return config


# --- openssl x509 ---------------------------------------------------------------------

@dataclass(frozen=True)
class Certificate:
    subject: str
    not_before: datetime | None
    not_after: datetime | None
    issuer: str


_X509_FIELD = re.compile(r"^\s*(?P<key>subject|issuer|notBefore|notAfter|Not Before|Not After)\s*[=:]\s*(?P<value>.*)$", re.I)


def _x509_date(text: str) -> datetime | None:
    text = " ".join(text.split())  # openssl pads single-digit days: "Dec  1"
    for fmt in ("%b %d %H:%M:%S %Y GMT", "%b %d %H:%M:%S %Y", "%Y-%m-%d %H:%M:%SZ"):
        try:
            return datetime.strptime(text, fmt).replace(tzinfo=timezone.utc)
        except ValueError:
            continue
    return None


def parse_openssl_x509(text: str) -> Certificate | None:
    """Parse ``openssl x509 -noout -subject -issuer -dates`` (or ``-text``) output; UTC-aware dates."""
    values: dict[str, str] = {}
    for line in text.splitlines():
        m = _X509_FIELD.match(line)
        if m:
            values.setdefault(m["key"].lower().replace(" ", ""), m["value"].strip())
    if not values:
        return None

    def name(key: str) -> str:
        # OpenSSL 1.1+ prints "CN = x", older versions "/CN=x": normalise to "CN=x".
        return re.sub(r"\s*=\s*", "=", values.get(key, "")).strip()

    return Certificate(
        subject=name("subject"),
        not_before=_x509_date(values.get("notbefore", "")),
        not_after=_x509_date(values.get("notafter", "")),
        issuer=name("issuer"),
    )


# --- last -----------------------------------------------------------------------------

@dataclass(frozen=True)
class Login:
    user: str
    tty: str
    source: str
    when: str
    still_logged_in: bool


_LAST_WHEN = re.compile(
    r"\s(?P<when>(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun) [A-Z][a-z]{2} [ 0-9][0-9] [0-9]{2}:[0-9]{2}(?::[0-9]{2} [0-9]{4})?"
    r"|[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(?:[+-][0-9]{2}:?[0-9]{2}|Z)?)(?P<rest>.*)$"
)


def parse_last(text: str) -> list[Login]:
    """Parse ``last`` output rows (including ``reboot`` pseudo-logins); headers and trailers are skipped."""
    logins: list[Login] = []
    for line in text.splitlines():
        m = _LAST_WHEN.search(line)
        if not m or re.match(r"\s*[bw]tmp begins", line):
            continue
        words = line[: m.start()].split()
        if len(words) < 2:
            continue
        if words[1:3] == ["system", "boot"]:
            user, tty, source = words[0], "system boot", " ".join(words[3:])
        else:
            user, tty, source = words[0], words[1], " ".join(words[2:])
        rest = m["rest"]
        logins.append(Login(user, tty, source, m["when"], "still logged in" in rest or "still running" in rest))
    return logins
