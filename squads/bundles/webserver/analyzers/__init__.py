"""Reading web server output: unit status, error logs, config tests and dumps, sockets, disk, certificates."""

from __future__ import annotations

import re
from collections import Counter

from squads.brain.analyzers import Output, analyzer
from squads.brain.analyzers.common import failure, filesystem_note, no_disk_data, real_filesystems, usage_words
from squads.brain.models import Analysis, Facts, Severity
from squads.brain.parsers import logs as lp
from squads.brain.parsers import system as sp
from squads.brain.signatures import CODES as LOG_CODES
from squads.brain.signatures import FACTS as LOG_FACTS
from squads.brain.signatures import LogMatch, log_findings, match_log

from .. import explain
from .. import listeners as refused

APP_SERVERS = {"gunicorn", "uwsgi", "uvicorn", "python", "python3", "node", "java", "puma", "unicorn", "php-fpm",
               "php-fpm8.2", "php-fpm8.1", "dotnet", "ruby", "hypercorn", "daphne", "waitress-serve", "deno", "bun"}
DIRECTIVE = re.compile(
    r"^[ \t]*(error_log|ssl_certificate|proxy_pass|fastcgi_pass|uwsgi_pass|proxy_read_timeout|proxy_connect_timeout"
    r"|fastcgi_read_timeout)\s+([^;\s]+)",
    re.M,
)
# [ \t] rather than \s at line starts: with re.M, \s* would run across blank lines from every one.
UPSTREAM_BLOCK = re.compile(r"^[ \t]*upstream[ \t]+([\w.-]+)[ \t]*\{([^}]*)\}", re.M)
UPSTREAM_SERVER = re.compile(r"^[ \t]*server[ \t]+([^;\s]+)", re.M)
PHP_FACTS = ("php_fpm_logs", "php_fpm_unit", "php_fpm_units", "upstream_sockets")
NO_SYSTEMD = re.compile(r"System has not been booted with systemd[^\n]*|Failed to connect to bus[^\n]*")
TIMEOUTS = ("proxy_read_timeout", "proxy_connect_timeout", "fastcgi_read_timeout")  # facts of the same names


@analyzer(
    "web.status",
    facts=("missing_units", "server", "server_active", "server_failed", "unavailable", *LOG_FACTS),
    codes=("server_failed", "server_running", *LOG_CODES),
)
def status(output: Output, facts: Facts) -> Analysis:
    """``systemctl status``: is the server up, and what did its last start say."""
    unit = str(output.params.get("unit", "the server"))
    if no_systemd := NO_SYSTEMD.search(output.text):
        # Contract 3: systemd cannot answer here (a container without it as PID 1); the step's
        # fallback (processes, listeners, the config test) answers the same question.
        return Analysis(summary=f"systemctl cannot answer here: {no_systemd.group(0)}", facts={"unavailable": True})
    parsed = sp.parse_systemctl_status(output.stdout)
    if parsed is None:
        # "could not be found" (systemctl exit 4) or no such program/output at all (127).
        if "could not be found" in output.text or output.exit_code in (4, 127):
            # No nginx here: the same diagnosis continues with Apache, the other server this squad knows.
            guessed = "server" not in facts.get("user_slots", [])
            switch = {"server": "apache2"} if unit == "nginx" and guessed else {}
            return Analysis(summary=f"{unit} is not installed here", facts={"missing_units": [unit], **switch})
        return failure(output) or Analysis(summary="no status")
    result = Analysis(summary=f"{unit}: {parsed.active} ({parsed.sub}) since {parsed.since or '?'}")
    result.facts["server_active"] = parsed.active
    errors = lp.parse_config_errors("\n".join(parsed.log))
    if parsed.active == "failed":
        result.facts["server_failed"] = True
        text = f"{unit} is not running: systemd reports {parsed.active} ({parsed.sub}) since {parsed.since}."
        if errors:
            e = errors[0]
            where = f" in {e.file}:{e.line}" if e.file and e.line is not None else ""
            text += f" Its last start failed with: {e.message}{where}."
            module = _module_for(e.message)
            if module:
                text += f" That directive needs mod_{module.split()[0]} (`a2enmod {module}`)."
        result.add("server_failed", Severity.PROBLEM, text)
        # The status's own log lines say why (a port in use, a missing certificate, the OOM killer).
        log_facts, log_found = log_findings(match_log("\n".join(parsed.log), squad="webserver"), source="Its last start")
        result.facts.update(log_facts)
        result.findings.extend(f for f in log_found if f.code == "log_signature")
    elif parsed.active == "active":
        result.add("server_running", Severity.OK, f"{unit} is running" + (f" (main PID {parsed.main_pid})." if parsed.main_pid else "."))
    return result


# Apache directives that only exist when their module is loaded: "Invalid command 'X'" means a2enmod.
APACHE_MODULES = {
    "rewriteengine": "rewrite", "rewriterule": "rewrite", "rewritecond": "rewrite", "rewritebase": "rewrite",
    "proxypass": "proxy proxy_http", "proxypassreverse": "proxy proxy_http", "proxypreservehost": "proxy",
    "sslengine": "ssl", "sslcertificatefile": "ssl", "sslproxyengine": "ssl", "header": "headers",
    "requestheader": "headers", "expiresactive": "expires", "expiresbytype": "expires", "remoteipheader": "remoteip",
    "authtype": "auth_basic", "authldapurl": "authnz_ldap", "wsgidaemonprocess": "wsgi", "wsgiscriptalias": "wsgi",
    "phpadminvalue": "php", "php_value": "php", "deflatecompressionlevel": "deflate", "addoutputfilterbytype": "filter",
    "headername": "autoindex", "userdir": "userdir", "loadbalancermember": "proxy_balancer",
}


def _module_for(message: str) -> str | None:
    found = re.search(r"Invalid command '([\w-]+)'", message)
    return APACHE_MODULES.get(found.group(1).lower()) if found else None


def _config_findings(result: Analysis, errors: list[lp.ConfigError], how: str, *, running: bool = False) -> None:
    """A finding per configuration error, naming the missing Apache module when that is the cause.

    ``running``: the server is up now (systemd says active), so the error is pending: nothing is down
    yet, but the next reload or restart would fail."""
    consequence = ("The server is still running on its previous configuration, so nothing is down yet, but a reload "
                   "or restart would fail: fix that line before you reload." if running else
                   "The server cannot start, and a reload would fail, until that line is fixed.")
    for e in errors[:3]:
        where = f"{e.file} line {e.line}" if e.file and e.line is not None else (e.file or "the configuration")
        result.facts["config_errors"] = [f"{e.file}:{e.line}"]
        module = _module_for(e.message)
        if module:
            directive = re.search(r"Invalid command '([\w-]+)'", e.message)
            result.add(
                "apache_module_missing", Severity.CAUSE,
                f"{how}: {e.message} in {where}. {directive.group(1) if directive else 'That directive'} comes from "
                f"mod_{module.split()[0]}, which is not enabled: `a2enmod {module}` enables it.",
                file=e.file, line=e.line, module=module,
            )
        else:
            result.add(
                "config_error", Severity.CAUSE,
                f"{how}: {e.message} in {where} ({e.file}:{e.line}).{explain.context_note(e.message, e.file)} {consequence}",
                file=e.file, line=e.line,
            )


@analyzer(
    "web.config_test",
    facts=("config_broken", "config_errors", "config_ok"),
    codes=("apache_module_missing", "config_error", "config_ok"),
)
def config_test(output: Output, facts: Facts) -> Analysis:
    """``nginx -t`` / ``apache2ctl configtest``: the failing file and line."""
    if output.missing:
        return Analysis(summary="not available on this node (exit 127)")
    errors = lp.parse_config_errors(output.text)
    if output.exit_code == 0 and not errors:
        result = Analysis(summary="configuration test passed", facts={"config_ok": True, "config_broken": False})
        result.add("config_ok", Severity.OK, "The configuration test passes: the syntax is ok and the test is successful.")
        return result
    # Read by the restart/reload actions: while the test fails, a restart stops the server for good.
    result = Analysis(summary=f"configuration test failed (exit code {output.exit_code})", facts={"config_broken": True})
    _config_findings(result, errors, "The configuration test fails", running=facts.get("server_active") == "active")
    if not errors:
        last = next((ln for ln in reversed(output.text.splitlines()) if ln.strip()), "")
        result.add("config_error", Severity.CAUSE, f"The configuration test fails: {last}")
    return result


@analyzer(
    "web.config_dump",
    facts=("certificates", "config_upstreams", "error_logs", "php_servers", *PHP_FACTS, *TIMEOUTS),
    codes=("php_script_path",),
)
def config_dump(output: Output, facts: Facts) -> Analysis:
    """``nginx -T``: where the server logs, what it proxies to, which certificates it serves."""
    if failed := failure(output):
        return failed
    found: dict[str, list[str]] = {}
    for name, value in DIRECTIVE.findall(output.stdout):
        found.setdefault(name, [])
        if value not in found[name]:
            found[name].append(value.strip("\"'"))
    logs = [v for v in found.get("error_log", []) if v.startswith("/")]
    # proxy_pass http://api_backend names an upstream block; its servers are the real addresses.
    blocks = {name: UPSTREAM_SERVER.findall(body) for name, body in UPSTREAM_BLOCK.findall(output.stdout)}
    targets: list[str] = []
    for value in found.get("proxy_pass", []) + found.get("fastcgi_pass", []) + found.get("uwsgi_pass", []):
        name = re.sub(r"^\w+://", "", value).split("/")[0]
        targets.extend(blocks.get(name, [value]))
    upstreams = [u for u in (lp.parse_upstream(t if "://" in t or t.startswith("unix:") else f"http://{t}") for t in targets) if u]
    certs = [v for v in found.get("ssl_certificate", []) if v.startswith("/")]
    result = Analysis(
        summary=f"{len(logs)} error logs, {len(upstreams)} upstreams, {len(certs)} certificates in the configuration"
    )
    result.facts["error_logs"] = logs
    result.facts["certificates"] = certs
    result.facts["config_upstreams"] = [f"{u.host}:{u.port}" for u in upstreams if u.port]
    _php_and_sockets(result, [u.host for u in upstreams if u.scheme == "unix"])
    for key in TIMEOUTS:
        if found.get(key):
            result.facts[key] = found[key][0]
    if servers := explain.php_servers(output.stdout):
        result.facts["php_servers"] = [vars(s) for s in servers]
        if SCRIPT_UNKNOWN in facts.get("log_signatures", []):  # the error log was read first
            _script_path(result, {**facts, **result.facts}, facts.get("script_unknown_server"))
    return result


SCRIPT_UNKNOWN = "nginx-fastcgi-primary-script-unknown"
# Lines people blame that never cause an outage: said to be harmless (the catalogue ranks them notice, so
# they are otherwise not reported), and never the headline.
HARMLESS = ("apache-fqdn", "nginx-client-closed")


def _harmless(result: Analysis, matches: list[LogMatch]) -> None:
    seen = [m for m in matches if m.signature.id in HARMLESS]
    if seen:
        quoted = "; ".join(f"{m.count} × \"{m.line[:200]}\": {m.meaning}" for m in seen)
        result.add("log_harmless", Severity.INFO,
                   f"Harmless, not the cause (a red herring): {quoted} Fixing it would not change what users see.")


def _script_path(result: Analysis, facts: Facts, server: str | None) -> None:
    if cause := explain.script_unknown_cause(facts, server):
        result.add("php_script_path", Severity.CAUSE, cause)


def _php_and_sockets(result: Analysis, sockets: list[str]) -> None:
    """Unix-socket upstreams (for namei) and the PHP-FPM versions they name (for its status and log)."""
    from .host import php_facts  # the sibling module imports this package; import it late

    if sockets:
        result.facts["upstream_sockets"] = sockets
        php_facts(result, "\n".join(sockets))


TLS_ERROR = re.compile(
    r"\[ssl:\w+\].*?\[remote (?P<remote>[^\]]+)\].*?(?:AH\d+: )?(?P<reason>Certificate Verification: .*|.*certificate.*)$"
    r"|upstream SSL certificate verify error: \((?P<code>\d+):(?P<reason2>[^)]*)\).*?upstream: \"(?P<remote2>[^\"]+)\""
)


def _failure_kind(message: str) -> str:
    """What went wrong talking to an upstream, from one error line's message."""
    lowered = message.lower()
    for needle, kind in (("refused", "refused"), ("timed out", "timed out"), ("handshake", "TLS handshake failed"),
                         ("reset by peer", "connection reset by the backend"), ("no live upstreams", "no live upstreams"),
                         ("prematurely closed", "the backend closed the connection early")):
        if needle in lowered:
            return kind
    return "request to the backend failed"


def _socket_upstreams(proxy: list[tuple[str, lp.Upstream | None]]) -> dict[str, str]:
    """Unix-socket upstreams (php-fpm, gunicorn) that are missing or refuse: path -> the error."""
    down: dict[str, str] = {}
    for message, up in proxy:
        if up is None or up.scheme != "unix":
            continue
        lowered = message.lower()
        for reason in ("No such file or directory", "Connection refused", "Permission denied", "Resource temporarily unavailable"):
            if reason.lower() in lowered:
                down.setdefault(up.host, reason)
    return down


def _upstream_errors(text: str) -> list[tuple[str, lp.Upstream | None]]:
    """(message, upstream) for every proxy failure in an nginx or Apache error log."""
    out: list[tuple[str, lp.Upstream | None]] = []
    for line in text.splitlines():
        nginx = lp.parse_nginx_error(line)
        if nginx and nginx.upstream and nginx.message.startswith("FastCGI sent in stderr"):
            continue  # the backend answered: a script's message (PHP error, unknown script), no connection failure
        if nginx and nginx.upstream:
            out.append((nginx.message, lp.parse_upstream(nginx.upstream)))
            continue
        apache = lp.parse_apache_error(line)
        if apache and "proxy" in apache.module:
            targets = lp.find_host_ports(apache.message)
            up = lp.Upstream(scheme="http", host=targets[0][0], port=targets[0][1]) if targets else None
            out.append((apache.message, up))
    return out


@analyzer(
    "web.error_log",
    facts=("disk_full_suspected", "errors_stopped_at", "script_unknown_server", "upstream_failure", "upstream_slow",
           "upstream_tls_error", "upstreams", *PHP_FACTS, *LOG_FACTS),
    codes=(
        "config_error", "log_errors", "log_forged_upstream", "log_harmless", "log_no_space", "php_script_path",
        "upstream_errors",
        "upstream_socket_down", "upstream_tls", *LOG_CODES,
    ),
)
def error_log(output: Output, facts: Facts) -> Analysis:
    """An nginx or Apache error log: failing upstreams, disk full, permission problems."""
    if failed := failure(output):
        return failed
    lines = [ln for ln in output.text.splitlines() if ln.strip()]
    result = Analysis(summary=f"{len(lines)} lines")
    # The catalogue's reading comes first: the specific findings below, added later, lead among equals.
    report = match_log(output.text, squad="webserver")
    result.facts, result.findings = log_findings(report, source="The error log")
    _harmless(result, report.matches)
    result.findings, stopped = explain.age_findings(result.findings, lines, facts)
    if stopped:
        result.facts["errors_stopped_at"] = stopped
    if SCRIPT_UNKNOWN in result.facts.get("log_signatures", []):
        unknown = next((lp.parse_nginx_error(ln) for ln in reversed(lines) if "Primary script unknown" in ln), None)
        if unknown and unknown.server:
            result.facts["script_unknown_server"] = unknown.server
        if facts.get("php_servers"):  # nginx -T was read first
            _script_path(result, facts, unknown.server if unknown else None)
    proxy = _upstream_errors(output.text)
    configured = set(facts.get("config_upstreams", []))
    if configured:
        # A client controls the request part of a log line and can forge an 'upstream: "..."' field in it;
        # when the configuration is known, only upstreams it names are believed.
        forged = sorted({f"{u.host}:{u.port}" for _, u in proxy if u and u.port and f"{u.host}:{u.port}" not in configured})
        proxy = [(m, u) for m, u in proxy if not (u and u.port and f"{u.host}:{u.port}" not in configured)]
        if forged:
            result.add(
                "log_forged_upstream", Severity.INFO,
                f"Some log lines name upstream(s) the configuration does not have ({len(forged)}); clients can write "
                "such text into the request part of a log line, so I ignored them.",
            )
    sockets_down = _socket_upstreams(proxy)
    _php_and_sockets(result, list(sockets_down))
    for path, reason in sockets_down.items():
        service = path.rsplit("/", 1)[-1].removesuffix(".sock")
        result.add(
            "upstream_socket_down", Severity.CAUSE,
            f"The upstream socket unix:{path} fails with \"{reason}\": {service} is not running (or listens elsewhere), "
            "so every request it should answer fails with 502.",
            socket=path, service=service,
        )
    if proxy:
        targets: list[str] = []
        for _, up in proxy:
            if up and up.port and f"{up.host}:{up.port}" not in targets:
                targets.append(f"{up.host}:{up.port}")
        result.facts["upstreams"] = targets
        kinds = Counter(_failure_kind(m) for m, _ in proxy)
        main = kinds.most_common(1)[0][0]
        result.facts["upstream_failure"] = main
        if main == "timed out":
            timed = [m for m, _ in proxy if _failure_kind(m) == "timed out"]
            phase = re.search(r"while ([a-z ]+?) (?:from|to) upstream", timed[-1])
            during = phase.group(1) if phase else "talking to the upstream"
            result.facts["upstream_slow"] = "connecting" not in during
            kind = f"timed out while {during}"
        elif main == "refused":
            kind = "connection refused while connecting"
        else:
            kind = main
        result.summary = f"{len(proxy)} upstream errors ({kind}) for {', '.join(targets) or 'the backend'}"
        if stopped:
            result.add(
                "upstream_errors", Severity.INFO,
                f"The error log has {len(proxy)} old upstream failures ({kind} to upstream "
                f"{', '.join(targets) or '(unknown)'}), the last at {stopped}, and no error since: they stopped "
                "then; clients saw 502/503/504 during that window, not now.",
                upstream=", ".join(targets),
            )
        else:
            result.add(
                "upstream_errors", Severity.PROBLEM,
                f"The error log has {len(proxy)} upstream failures: {kind} to upstream "
                f"{', '.join(targets) or '(unknown)'}; that is what the clients see as 502/503/504.",
                upstream=", ".join(targets),
            )
    tls = [m for m in (TLS_ERROR.search(ln) for ln in lines) if m]
    if tls:
        last = tls[-1]
        remote = last.group("remote") or last.group("remote2")
        reason = (last.group("reason") or last.group("reason2") or "").strip()
        result.facts["upstream_tls_error"] = reason
        result.add(
            "upstream_tls", Severity.CAUSE,
            f"The TLS handshake with the backend {remote} fails ({len(tls)} times): \"{reason}\". The proxy verifies "
            "the backend's certificate and refuses it, so requests to that backend fail with 502 although the backend "
            "runs.",
            remote=remote, reason=reason,
        )
    space = [ln for ln in lines if "no space left on device" in ln.lower()]
    if space:
        result.facts["disk_full_suspected"] = True
        result.add("log_no_space", Severity.PROBLEM, f"The error log reports \"No space left on device\" ({len(space)} times).")
    # A failure without a file and line (a bind() error, a missing certificate) is no syntax error:
    # the catalogue above names it.
    config = [e for e in lp.parse_config_errors(output.text) if e.file and e.line is not None]
    if config and not proxy:
        e = config[-1]
        result.add("config_error", Severity.PROBLEM, f"The log shows a configuration error: {e.message} in {e.file}:{e.line}.",
                   file=e.file, line=e.line)
    return result


@analyzer(
    "web.sockets",
    facts=("dead_upstreams",),
    codes=("listen_loopback_only", "port_not_listening", "server_not_listening", "upstream_down", "upstream_listening",
           "upstream_port_mismatch", "upstream_recovered", "upstream_slow"),
)
def sockets(output: Output, facts: Facts) -> Analysis:
    """``ss -ltnp``: is anything listening where the server proxies to, and on the server's own ports."""
    if failed := failure(output):
        return failed
    socks = sp.parse_ss(output.stdout)
    ports = sorted({s.port for s in socks if s.port is not None})
    result = Analysis(summary="listening on " + ", ".join(str(p) for p in ports))
    _loopback_only(result, socks)
    stopped = refused.stopped_by(facts)
    checked: set[str] = set()
    for target in [*facts.get("upstreams", []), *facts.get("config_upstreams", [])]:
        host, _, port = str(target).rpartition(":")
        if not port.isdigit() or target in checked:
            continue
        checked.add(target)
        listeners = sp.listening_on(socks, int(port), host or None)
        if listeners:
            names = ", ".join(f"{p.name} (pid {p.pid})" for s in listeners for p in s.processes) or "a process"
            if facts.get("upstream_slow"):
                timeout = facts.get("proxy_read_timeout", "60s (the default)")
                result.add(
                    "upstream_slow", Severity.CAUSE,
                    f"{names} listens on {target}, so the backend is up but slow: it does not send its response "
                    f"headers within proxy_read_timeout {timeout}, and the web server gives up with 504 Gateway "
                    "Time-out. Look at the backend's own latency (its logs, database, CPU) rather than restarting the proxy.",
                    upstream=target,
                )
            elif facts.get("errors_stopped_at") and not refused.stopped_by(facts):
                result.add(
                    "upstream_recovered", Severity.OK,
                    f"{names} listens on {target}, the upstream, again and no error was logged after "
                    f"{facts['errors_stopped_at']}: the backend recovered (restarted or redeployed then) and the site "
                    "is healthy now. The errors in the log are history; nothing needs a restart.",
                    upstream=target,
                )
            else:
                result.add("upstream_listening", Severity.INFO, f"{names} listens on {target}, the upstream.")
        else:
            result.facts["dead_upstreams"] = [target]
            near = [
                s_ for s_ in socks
                if s_.port and s_.port != int(port) and abs(s_.port - int(port)) <= 10
                and any(p.name in APP_SERVERS for p in s_.processes)
            ]
            if near:
                other = near[0]
                names = ", ".join(f"{p.name} (pid {p.pid})" for p in other.processes)
                result.add(
                    "upstream_port_mismatch", Severity.CAUSE,
                    f"Nothing is listening on {target}, the upstream the web server proxies to, but {names} listens on "
                    f"{other.local_address}:{other.port}: the application and the proxy configuration disagree on the "
                    f"port. Point the upstream at port {other.port} (or the app at {port}).",
                    upstream=target, port=port,
                )
                continue
            # With the web server itself stopped, clients get "connection refused", not 502: the dead
            # backend matters once the server runs again, it is not the cause of what they see now.
            result.add(
                "upstream_down", Severity.PROBLEM if stopped else Severity.CAUSE,
                f"Nothing is listening on {target}: the upstream the server proxies to is down, so connections are "
                f"refused and clients get 502 Bad Gateway. Start (or fix) the application that should listen on port {port}."
                + (" That matters once the web server runs again: it is stopped itself." if stopped else ""),
                upstream=target, port=port,
            )
    refused.not_listening(result, socks, facts)  # last: among equal causes the later finding leads
    return result


WEB_PORTS = (80, 443, 8443)
LOOPBACK = ("127.", "[::1]", "::1", "localhost")


def _loopback_only(result: Analysis, socks: list[sp.Socket]) -> None:
    """A web server bound to 127.0.0.1/::1 only: it works from the box (curl localhost) and refuses everyone else."""
    for port in WEB_PORTS:
        bound = [s for s in socks if s.port == port and any(p.name in ("nginx", "apache2", "httpd") for p in s.processes)]
        if bound and all(s.local_address.startswith(LOOPBACK) for s in bound):
            name = bound[0].processes[0].name
            result.add(
                "listen_loopback_only", Severity.CAUSE,
                f"{name} listens on port {port} only on {', '.join(sorted({s.local_address for s in bound}))} "
                "(localhost, the loopback interface): requests from the box itself work, every other client gets "
                f"connection refused. Make it listen on all addresses (nginx: `listen {port};` instead of "
                f"`listen 127.0.0.1:{port};`; Apache: `Listen {port}`), test the configuration and reload.",
                port=port, server=name,
            )


@analyzer(
    "web.disk",
    facts=("full_mounts",),
    codes=("disk_full", "no_data"),
)
def disk(output: Output, facts: Facts) -> Analysis:
    """``df -h`` (or ``df -i``): full file systems, tmpfs and container roots included."""
    if failed := failure(output):
        return failed
    parsed = sp.parse_df(output.stdout)
    if not parsed:
        return no_disk_data(output)
    systems = real_filesystems(parsed)
    result = Analysis(summary=", ".join(f"{f.mount} {f.use_percent}%{' inodes' if f.inodes else ''}" for f in systems))
    full = [f for f in systems if f.use_percent >= 90]
    if full:
        result.facts["full_mounts"] = [f.mount for f in full]
        for f in full:
            severity = Severity.CAUSE if f.use_percent >= 98 else Severity.PROBLEM
            result.add(
                "disk_full", severity,
                f"The file system on {f.mount} ({f.source}) is {usage_words(f)}. Writes there fail with "
                f"\"No space left on device\".{filesystem_note(f)}",
                mount=f.mount, percent=f.use_percent,
            )
    return result


@analyzer(
    "web.dir_size",
    codes=("dir_size",),
)
def dir_size(output: Output, facts: Facts) -> Analysis:
    """``du -sh``."""
    if failed := failure(output):
        return failed
    rows = sp.parse_du(output.stdout)
    result = Analysis(summary=", ".join(f"{path} {size}" for size, path in rows))
    for size, path in rows:
        result.add("dir_size", Severity.INFO, f"{path} holds {size}.")
    return result


@analyzer(
    "web.journal",
    facts=LOG_FACTS,
    codes=("config_error", "log_harmless", *LOG_CODES),
)
def journal(output: Output, facts: Facts) -> Analysis:
    """The server's journal: start failures and config errors."""
    if failed := failure(output):
        return failed
    errors = [e for e in lp.parse_config_errors(output.text) if e.file and e.line is not None]
    result = Analysis(summary=f"{len(output.text.splitlines())} journal lines")
    report = match_log(output.text, squad="webserver")
    result.facts, result.findings = log_findings(report, source="The journal")
    _harmless(result, report.matches)
    if errors:
        e = errors[-1]
        result.add("config_error", Severity.CAUSE, f"The journal shows the start failing: {e.message} in {e.file}:{e.line}."
                   + explain.context_note(e.message, e.file), file=e.file, line=e.line)
    return result
