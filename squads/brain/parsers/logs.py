"""Parsers for log lines: nginx and Apache error logs, syslog/journal, sshd and PostgreSQL.

Every parser reads one line grammar and returns ``None`` (or skips the line) when
the text does not follow it, so callers can feed whole command output through
them without pre-filtering.
Digits are spelled ``[0-9]``: ``\\d`` also matches non-ASCII digits that ``int()`` may reject.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# --- nginx error.log -------------------------------------------------------------------

@dataclass(frozen=True)
class NginxError:
    time: str
    level: str
    pid: int | None
    message: str
    client: str
    server: str
    request: str
    upstream: str
    host: str


_NGINX_LINE = re.compile(
    r"^(?P<time>[0-9]{4}/[0-9]{2}/[0-9]{2} [0-9]{2}:[0-9]{2}:[0-9]{2}) \[(?P<level>[a-z]+)\] "
    r"(?:(?P<pid>[0-9]+)#[0-9]+: )?(?:\*[0-9]+ )?(?P<rest>.*)$"
)
# nginx appends context as ", key: value" pairs; request/upstream/host are quoted and
# may themselves contain ", " so quoted values are matched as a whole.
_NGINX_PAIR = re.compile(r', (?P<key>[a-z_]+): (?P<value>"(?:[^"\\]|\\.)*"|[^,]*)')


def parse_nginx_error(line: str) -> NginxError | None:
    """Parse one nginx ``error.log`` line; ``None`` when it is not one."""
    m = _NGINX_LINE.match(line.strip())
    if not m:
        return None
    rest = m["rest"]
    cut = rest.find(", client: ")
    message, pairs = (rest, "") if cut < 0 else (rest[:cut], rest[cut:])
    fields: dict[str, str] = {}
    for pair in _NGINX_PAIR.finditer(pairs):
        value = pair["value"]
        if len(value) >= 2 and value[0] == value[-1] == '"':
            value = value[1:-1]
        fields.setdefault(pair["key"], value)
    pid = int(m["pid"]) if m["pid"] else None
    context = (fields.get(key, "") for key in ("client", "server", "request", "upstream", "host"))
    return NginxError(m["time"], m["level"], pid, message.strip(), *context)


# --- Apache error.log -----------------------------------------------------------------

@dataclass(frozen=True)
class ApacheError:
    time: str
    module: str
    level: str
    pid: int | None
    client: str
    code: str
    message: str


# Apache 2.4 writes "[module:level]"; 2.2 wrote just "[level]" and no client port.
_APACHE_LINE = re.compile(
    r"^\[(?P<time>[^\]]+)\] \[(?:(?P<module>[\w.-]*):)?(?P<level>[a-z]+[0-9]?)\]"
    r"(?: \[pid (?P<pid>[0-9]+)(?::tid [0-9]+)?\])?"
    r"(?: \[client (?P<client>[^\]]+)\])?"
    r"(?: \[remote [^\]]+\])?"
    r" ?(?P<rest>.*)$"
)
_AH_CODE = re.compile(r"\b(AH[0-9]{5}): ")


def parse_apache_error(line: str) -> ApacheError | None:
    """Parse one Apache ``error.log`` line; the ``AHnnnnn: `` code is lifted out of the message."""
    m = _APACHE_LINE.match(line.strip())
    if not m:
        return None
    rest = m["rest"]
    code = _AH_CODE.search(rest)
    if code:
        rest = rest[: code.start()] + rest[code.end():]
    client = m["client"] or ""
    if m["module"] is not None:
        # 2.4 always appends ":port" to the client address, even for IPv6.
        client = re.sub(r":[0-9]+$", "", client)
    pid = int(m["pid"]) if m["pid"] else None
    return ApacheError(m["time"], m["module"] or "", m["level"], pid, client, code[1] if code else "", rest.strip())


# --- addresses ---------------------------------------------------------------------------

@dataclass(frozen=True)
class Upstream:
    scheme: str
    host: str
    port: int | None


_DEFAULT_PORTS = {"http": 80, "https": 443, "ws": 80, "wss": 443, "grpc": 80, "grpcs": 443}
_URL = re.compile(r"^(?:(?P<scheme>[a-z][a-z0-9+.-]*)://)?(?:[^@/\s]*@)?(?P<hostport>[^/\s?#]+)", re.I)


def parse_upstream(text: str) -> Upstream | None:
    """Parse an upstream/proxy target: URL, ``host:port``, ``[v6]:port`` or ``unix:/path``."""
    text = text.strip().strip('"')
    # nginx spells socket upstreams "unix:/path" or "http://unix:/path:/uri".
    sock = re.match(r"^(?:[a-z]+://)?unix:(?P<path>/[^:\s]*)", text, re.I)
    if sock:
        return Upstream("unix", sock["path"], None)
    m = _URL.match(text)
    if not m:
        return None
    scheme = (m["scheme"] or "").lower()
    hostport = m["hostport"]
    v6 = re.fullmatch(r"\[(?P<host>[0-9a-fA-F:.%\w]+)\](?::(?P<port>[0-9]+))?", hostport)
    plain = re.fullmatch(r"(?P<host>[\w.-]+)(?::(?P<port>[0-9]+))?", hostport)
    found = v6 or plain
    if not found or (not scheme and not found["port"]):
        # A bare word without scheme or port is not recognisably an address.
        return None
    port = int(found["port"]) if found["port"] else _DEFAULT_PORTS.get(scheme)
    if port is not None and not 0 < port < 65536:
        return None
    return Upstream(scheme, found["host"], port)


_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?"
# The look-behind keeps path segments ("/etc/x.conf:14"), IPv6 pieces and "%iface"
# suffixes out, while "://" and "@" (URLs) still lead into a host.
_HOST_PORT = re.compile(
    r"(?:(?<=//)|(?<=@)|(?<![\w.\-/:@%\[]))"
    rf"(?P<host>{_LABEL}(?:\.{_LABEL})*):(?P<port>[0-9]{{1,5}})"
    # A following digit, ".digit" or ":digit" means a time, a version tag or IPv6.
    r"(?![0-9]|\.[0-9]|:\w|::)"
)
_IPV4 = re.compile(r"[0-9]{1,3}(?:\.[0-9]{1,3}){3}")
# Last labels that mark "file:line" references rather than hosts.
_FILE_SUFFIXES = frozenset(
    "c h cc cpp go py rb js ts java php pl sh conf cfg ini log yaml yml json toml xml txt sock service".split()
)


def _looks_like_host(host: str) -> bool:
    if _IPV4.fullmatch(host):
        return all(int(octet) <= 255 for octet in host.split("."))
    if not re.search(r"[A-Za-z]", host) or re.fullmatch(r"[0-9.]+", host):
        return False
    if re.match(r"[0-9]{4}-[0-9]{2}-[0-9]{2}T", host):  # ISO timestamp "2026-11-26T10:15:02"
        return False
    return "." not in host or host.rsplit(".", 1)[1].lower() not in _FILE_SUFFIXES


def find_host_ports(text: str) -> list[tuple[str, int]]:
    """Every ``host:port`` mentioned in free text, in order of appearance, without repeats."""
    seen: list[tuple[str, int]] = []
    for m in _HOST_PORT.finditer(text):
        host, port = m["host"], int(m["port"])
        if 0 < port < 65536 and _looks_like_host(host) and (host, port) not in seen:
            seen.append((host, port))
    return seen


# --- syslog / journal ----------------------------------------------------------------

@dataclass(frozen=True)
class SyslogLine:
    time: str
    host: str
    program: str
    pid: int | None
    message: str


_SYSLOG_TIME = (
    r"(?:[A-Z][a-z]{2} [ 0-9][0-9] [0-9]{2}:[0-9]{2}:[0-9]{2}(?:\.[0-9]+)?"
    r"|[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(?:\.[0-9]+)?(?:Z|[+-][0-9]{2}:?[0-9]{2})?)"
)
_SYSLOG = re.compile(
    rf"^(?P<time>{_SYSLOG_TIME}) (?P<host>\S+) (?P<program>[^\s\[\]:]+)"
    r"(?:\[(?P<pid>[0-9]+)\])?:(?: (?P<message>.*))?$"
)


def parse_syslog(line: str) -> SyslogLine | None:
    """Parse a journalctl short/short-iso or /var/log/syslog line; ``None`` for ``-- ... --`` markers."""
    m = _SYSLOG.match(line.rstrip("\r\n"))
    if not m:
        return None
    pid = int(m["pid"]) if m["pid"] else None
    return SyslogLine(m["time"], m["host"], m["program"], pid, (m["message"] or "").strip())


# --- sshd ------------------------------------------------------------------------------

@dataclass(frozen=True)
class SshEvent:
    kind: str  # "failed" | "invalid_user" | "accepted" | "disconnect_preauth" | "max_auth"
    user: str
    source: str
    port: int | None
    method: str
    time: str
    invalid_user: bool


_FROM = r"(?P<source>\S+)(?: port (?P<port>[0-9]+))?"
# The user name is chosen by the client and may itself contain "from 10.0.0.1 port 22"; sshd's
# own "from ADDR port N" always ends the line, so these patterns anchor there and take the last one.
_TAIL = rf" from {_FROM}(?: ssh2)?(?:: .*)?$"
_SSH_PATTERNS: list[tuple[str, re.Pattern[str]]] = [
    ("failed", re.compile(rf"^Failed (?P<method>\S+) for (?P<invalid>invalid user )?(?P<user>.*){_TAIL}")),
    ("invalid_user", re.compile(rf"^Invalid user (?P<user>.*){_TAIL}")),
    ("accepted", re.compile(rf"^Accepted (?P<method>\S+) for (?P<user>.*){_TAIL}")),
    (
        "disconnect_preauth",
        re.compile(
            r"^(?:Connection closed by|Disconnected from|Connection reset by)"
            rf"(?: (?P<invalid>invalid|authenticating) user (?P<user>.*?))? {_FROM}.*\[preauth\]"
        ),
    ),
    (
        "max_auth",
        re.compile(
            rf"^error: maximum authentication attempts exceeded for (?P<invalid>invalid user )?(?P<user>.*?) from {_FROM}"
        ),
    ),
]
# rsyslog folds repeats into one line; expanding them keeps attempt counts honest.
_REPEATED = re.compile(r"^message repeated (?P<n>[0-9]+) times: \[ ?(?P<message>.*?) ?\]$")


def _ssh_event(message: str, time: str) -> SshEvent | None:
    for kind, pattern in _SSH_PATTERNS:
        m = pattern.match(message)
        if not m:
            continue
        groups = m.groupdict()
        invalid = kind == "invalid_user" or (groups.get("invalid") or "").startswith("invalid")
        port = int(m["port"]) if m["port"] else None
        return SshEvent(kind, groups.get("user") or "", m["source"], port, groups.get("method") or "", time, invalid)
    return None


def ssh_events(text: str) -> list[SshEvent]:
    """Authentication events from sshd journal or auth.log text, in order; other lines are ignored."""
    events: list[SshEvent] = []
    for raw in text.splitlines():
        parsed = parse_syslog(raw)
        message, time = (parsed.message, parsed.time) if parsed else (raw.strip(), "")
        repeats = 1
        folded = _REPEATED.match(message)
        if folded:
            message, repeats = folded["message"], int(folded["n"])
        event = _ssh_event(message, time)
        if event:
            events.extend([event] * repeats)
    return events


# --- configuration test errors -----------------------------------------------------------

@dataclass(frozen=True)
class ConfigError:
    level: str
    message: str
    file: str
    line: int | None


_NGINX_LEVELS = "emerg|alert|crit|error|warn"
# "nginx: [level] ..." is nginx -t (also inside journal lines); error.log only carries
# config failures at [emerg], its [error] lines are runtime request failures.
_NGINX_CONF = re.compile(
    rf"(?:\bnginx: \[(?P<level>{_NGINX_LEVELS})\] |\[(?P<elevel>emerg)\] [0-9]+#[0-9]+: (?!\*))"
    r"(?P<message>.*?)(?: in (?P<file>/\S+?):(?P<line>[0-9]+))?\s*$"
)
_APACHE_SYNTAX = re.compile(r"Syntax error on line (?P<line>[0-9]+) of (?P<file>[^\s:]+):\s*(?P<message>.*)$")


def _payload(line: str) -> str:
    """The message of a line, without any journal or Apache error.log prefix."""
    syslog = parse_syslog(line)
    if syslog:
        line = syslog.message
    apache = parse_apache_error(line)
    return (apache.message if apache else line).strip()


def parse_config_errors(text: str) -> list[ConfigError]:
    """Configuration errors from ``nginx -t``, ``apachectl configtest``, error logs or the journal."""
    lines = text.splitlines()
    errors: list[ConfigError] = []
    for index, line in enumerate(lines):
        nginx = _NGINX_CONF.search(line)
        apache = None if nginx else _APACHE_SYNTAX.search(line)
        if nginx:
            error = ConfigError(
                level=nginx["level"] or nginx["elevel"],
                message=nginx["message"].strip(),
                file=nginx["file"] or "",
                line=int(nginx["line"]) if nginx["line"] else None,
            )
        elif apache:
            message = apache["message"].strip()
            if not message and index + 1 < len(lines):
                # apachectl puts the reason on the line after "...of FILE:".
                message = _payload(lines[index + 1])
            error = ConfigError("error", message or "Syntax error", apache["file"], int(apache["line"]))
        else:
            continue
        if all((e.message, e.file, e.line) != (error.message, error.file, error.line) for e in errors):
            errors.append(error)
    return errors


# --- PostgreSQL server log ------------------------------------------------------------

@dataclass(frozen=True)
class PgLogLine:
    time: str
    pid: int | None
    user: str
    database: str
    level: str
    message: str


_PG_LEVELS = r"LOG|FATAL|PANIC|ERROR|WARNING|NOTICE|INFO|DEBUG[1-5]?|DETAIL|HINT|STATEMENT|CONTEXT|QUERY|LOCATION"
# Debian's default log_line_prefix is '%m [%p] %q%u@%d '; "%p-%l" adds a line number.
_PG_LINE = re.compile(
    r"^(?P<time>[0-9]{4}-[0-9]{2}-[0-9]{2} [0-9]{2}:[0-9]{2}:[0-9]{2}(?:\.[0-9]+)?(?: [A-Za-z0-9+:-]+)?) "
    r"\[(?P<pid>[0-9]+)(?:-[0-9]+)?\] "
    r"(?:(?P<user>[^\s@]*)@(?P<database>\S*) )?"
    rf"(?P<level>{_PG_LEVELS}):\s+(?P<message>.*)$"
)


def parse_pg_log(line: str) -> PgLogLine | None:
    """Parse one PostgreSQL log line written with the Debian default ``log_line_prefix``."""
    m = _PG_LINE.match(line.strip())
    if not m:
        return None
    return PgLogLine(m["time"], int(m["pid"]), m["user"] or "", m["database"] or "", m["level"], m["message"].rstrip())
