"""Web server readings that need more than one line: when log errors happened, which context an nginx
directive belongs in, and where PHP scripts are looked for (root vs SCRIPT_FILENAME)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from squads.brain.models import Finding, Severity

# An error whose last line is this much older than now is history, not what clients see now.
QUIET = timedelta(hours=1)
_NGINX_TIME = re.compile(r"^([0-9]{4}/[0-9]{2}/[0-9]{2} [0-9]{2}:[0-9]{2}:[0-9]{2}) ")
_APACHE_TIME = re.compile(r"^\[(\w{3} \w{3} [ 0-9]{2} [0-9:]{8})(?:\.[0-9]+)? ([0-9]{4})\]")
_FPM_TIME = re.compile(r"^\[([0-9]{2}-\w{3}-[0-9]{4} [0-9:]{8})\]")


def log_time(line: str) -> datetime | None:
    """The time an nginx, Apache or PHP-FPM error line was written (naive, read as UTC), or None."""
    try:
        if m := _NGINX_TIME.match(line):
            return datetime.strptime(m.group(1), "%Y/%m/%d %H:%M:%S").replace(tzinfo=UTC)
        if m := _APACHE_TIME.match(line):
            return datetime.strptime(f"{m.group(1)} {m.group(2)}", "%a %b %d %H:%M:%S %Y").replace(tzinfo=UTC)
        if m := _FPM_TIME.match(line):
            return datetime.strptime(m.group(1), "%d-%b-%Y %H:%M:%S").replace(tzinfo=UTC)
    except ValueError:
        return None
    return None


def now_of(facts: dict[str, Any]) -> datetime:
    """The conversation's "now" (the runtime sets it; an eval pins it)."""
    raw = facts.get("now")
    now = datetime.fromisoformat(str(raw)) if raw else datetime.now(UTC)
    return now if now.tzinfo else now.replace(tzinfo=UTC)


def _ago(delta: timedelta) -> str:
    hours = int(delta.total_seconds() // 3600)
    if hours >= 48:
        return f"{hours // 24} days"
    return f"{hours} hour{'s' if hours != 1 else ''}" if hours else f"{int(delta.total_seconds() // 60)} minutes"


def age_findings(findings: list[Finding], lines: list[str], facts: dict[str, Any]) -> tuple[list[Finding], str | None]:
    """Catalogue findings whose last line is over an hour old, and followed by no newer error, become history.

    A log full of errors from a past incident (a deploy that stopped the backend for ten minutes) is
    not an outage now: such a finding drops to INFO and says when the errors stopped. Returns the findings
    and the time the errors stopped (None when some error is recent, or no line has a time)."""
    stamps = [t for ln in lines if (t := log_time(ln))]
    if not stamps or not facts.get("now"):  # without the conversation's time there is no "since"
        return findings, None
    now = now_of(facts)
    last_error = max(stamps)
    if last_error > now or now - last_error < QUIET:
        return findings, None
    out: list[Finding] = []
    for f in findings:
        when = log_time(str(f.data.get("line", "")))
        if f.code == "log_signature" and when and f.severity > Severity.INFO and _transient(str(f.data["line"])):
            first = next((t for ln in lines if (t := log_time(ln)) and _same(ln, f)), when)
            span = f"between {first:%Y-%m-%d %H:%M:%S} and {when:%H:%M:%S}" if first < when else f"at {when:%Y-%m-%d %H:%M:%S}"
            f = replace(f, severity=Severity.INFO, text=(
                f"Old errors, none since: {f.text} These were logged {span}; nothing was logged after "
                f"{when:%Y-%m-%d %H:%M:%S}, {_ago(now - when)} before now, so they stopped then and are not ongoing."))
        out.append(f)
    return out, f"{last_error:%Y-%m-%d %H:%M:%S}"


def _transient(line: str) -> bool:
    """A failure to reach the backend: it lasts as long as the backend is away, and stops when it is back.

    (A missing script or a bad configuration fails again on the next request, however old the last line.)"""
    return ("upstream" in line or "[proxy" in line) and "FastCGI sent in stderr" not in line


def _same(line: str, finding: Finding) -> bool:
    decisive = str(finding.data.get("line", ""))
    def cut(text: str) -> str:  # the message without time, pids, connection numbers and request
        return re.sub(r"[0-9]+", "N", text.split(", client:")[0].split("] [client")[0].split(" while ")[0])

    return cut(line) == cut(decisive)


# --- nginx contexts --------------------------------------------------------------------------

_HOME = {
    "http": "the http context (a file in sites-enabled/ or conf.d/, which nginx.conf includes inside http { })",
    "server": "a server { } block",
    "server/location": "a server { } or location { } block",
    "main": "the main (top) level of nginx.conf, outside every block",
    "events": "the events { } block",
    "http/server/location": "the http, server or location context",
}
_DIRECTIVES = {
    **dict.fromkeys(("server", "upstream", "map", "geo", "split_clients", "log_format", "limit_req_zone",
                     "limit_conn_zone", "proxy_cache_path", "fastcgi_cache_path", "server_names_hash_bucket_size",
                     "server_names_hash_max_size", "variables_hash_max_size"), "http"),
    **dict.fromkeys(("listen", "server_name", "ssl_reject_handshake"), "server"),
    **dict.fromkeys(("location", "if"), "server/location"),
    **dict.fromkeys(("http", "events", "stream", "mail", "user", "worker_processes", "pid", "load_module",
                     "worker_rlimit_nofile", "daemon", "env", "pcre_jit", "thread_pool"), "main"),
    **dict.fromkeys(("worker_connections", "multi_accept", "use"), "events"),
    **dict.fromkeys(("proxy_pass", "fastcgi_pass", "uwsgi_pass", "grpc_pass", "alias"), "server/location"),
}
_NOT_ALLOWED = re.compile(r'"(?P<directive>[\w-]+)" directive is not allowed here')
_APACHE_CONTEXT = re.compile(r"(?P<directive><?\w+>?) (?:not allowed here|cannot occur within <(?P<outer>\w+)> section)")


def context_note(message: str, file: str) -> str:
    """Why a directive that looks right fails with "not allowed here": the context it is in.

    Each directive is valid only in some blocks; a file pulled in by ``include`` lands inside the block
    that includes it, so a correct server { } in a snippet included from a server { } is nested."""
    if m := _NOT_ALLOWED.search(message):
        directive = m.group("directive")
        home = _DIRECTIVES.get(directive)
        where = f" \"{directive}\" belongs in {_HOME[home]}." if home else ""
        return (f" The directive itself may be fine: it is in the wrong context.{where} {file or 'That file'} is "
                "pulled in by an include, and an included file's contents land inside the block that includes it "
                "(snippets/ are usually included inside a server { } or location { } block, so a server { } there "
                "is nested in another one). Move it to where that directive belongs (a vhost goes in "
                "sites-enabled/ or conf.d/), or include the file from the right block; then nginx -t and reload.")
    if m := _APACHE_CONTEXT.search(message):
        outer = f" inside <{m.group('outer')}>" if m.group("outer") else ""
        return (f" {m.group('directive')} is in the wrong context{outer}: a file included from inside a "
                "<VirtualHost> or <Directory> block lands in that block. Move the directive to the context its "
                "documentation names (a <VirtualHost> goes in sites-enabled/ at the top level), then apache2ctl "
                "configtest.")
    return ""


# --- PHP: where the scripts are looked for -------------------------------------------------------

@dataclass
class PhpServer:
    """One nginx server { } block as far as PHP is concerned."""

    names: list[str] = field(default_factory=list)
    roots: list[str] = field(default_factory=list)
    script_filenames: list[str] = field(default_factory=list)


_TOKEN = re.compile(r"#[^\n]*|[{};]|[^\s{};#]+")


def php_servers(dump: str) -> list[PhpServer]:
    """server { } blocks of an ``nginx -T`` dump with their server_name, root and SCRIPT_FILENAME values."""
    servers: list[PhpServer] = []
    stack: list[str] = []
    words: list[str] = []
    for token in _TOKEN.findall(dump):
        if token.startswith("#"):
            continue
        if token == "{":
            stack.append(words[0] if words else "")
            # nginx -T prints each included file on its own, so a vhost's server { } shows at the top level.
            if stack[-1] == "server" and not {"stream", "mail"} & set(stack[:-1]):
                servers.append(PhpServer())
            words = []
        elif token == "}":
            stack = stack[:-1]
            words = []
        elif token == ";":
            inside = "server" in stack and bool(servers)
            if inside and words[:1] == ["server_name"]:
                servers[-1].names.extend(words[1:])
            elif inside and words[:1] == ["root"] and len(words) > 1:
                servers[-1].roots.append(words[1].strip("\"'"))
            elif inside and words[:2] == ["fastcgi_param", "SCRIPT_FILENAME"] and len(words) > 2:
                servers[-1].script_filenames.append(words[2].strip("\"'"))
            words = []
        else:
            words.append(token)
    return [s for s in servers if s.script_filenames or s.roots]


def script_unknown_cause(facts: dict[str, Any], server: str | None) -> str | None:
    """"Primary script unknown" explained from the configuration: SCRIPT_FILENAME against the document root."""
    servers = [PhpServer(**s) for s in facts.get("php_servers", [])]
    php = [s for s in servers if s.script_filenames] or servers
    chosen = next((s for s in php if server and server in s.names), php[0] if php else None)
    if chosen is None:
        return None
    name = f"server {chosen.names[0]}" if chosen.names else "the server"
    root = chosen.roots[-1] if chosen.roots else None
    hard = [v for v in chosen.script_filenames if not v.startswith(("$document_root", "$realpath_root", "$request_filename"))]
    if hard:
        fixed = re.sub(r"\$\w+.*$", "", hard[-1]).rstrip("/") or hard[-1]
        return (f"For {name}, nginx -T sets fastcgi_param SCRIPT_FILENAME {hard[-1]}: a path hard-coded to {fixed}, "
                f"while the document root is {root or '(no root set)'}. PHP-FPM looks for each script under {fixed}, "
                "finds nothing there (\"Primary script unknown\") and answers 404 \"File not found.\"; static files "
                f"load because nginx serves them from the root. PHP-FPM itself is fine: set fastcgi_param "
                "SCRIPT_FILENAME $document_root$fastcgi_script_name; (and DOCUMENT_ROOT $document_root), then "
                "nginx -t and reload.")
    if root:
        return (f"For {name}, SCRIPT_FILENAME is built from the document root {root}: PHP-FPM finds no script "
                f"there (\"Primary script unknown\"), so the PHP files are not under {root}, or PHP-FPM sees another "
                "path (a chroot, a container, open_basedir) or cannot read it. Check that the files are in "
                f"{root} (namei -l) and point root at where they are.")
    return None
