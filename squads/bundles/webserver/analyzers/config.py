"""Reading the web server's configuration and unit: systemctl status, the config test, nginx -T, the journal."""

from __future__ import annotations

import re

from squads.brain.analyzers import Output, analyzer
from squads.brain.analyzers.common import failure
from squads.brain.models import Analysis, Facts, Severity
from squads.brain.parsers import logs as lp
from squads.brain.parsers import system as sp
from squads.brain.signatures import CODES as LOG_CODES
from squads.brain.signatures import FACTS as LOG_FACTS
from squads.brain.signatures import LogMatch, log_findings, match_log

from .. import explain
from .host import php_facts

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
    result = Analysis(summary=f"{unit}: {unit_state(parsed)}")
    result.facts["server_active"] = parsed.active
    errors = lp.parse_config_errors("\n".join(parsed.log))
    if parsed.active == "failed":
        result.facts["server_failed"] = True
        text = f"{unit} is not running: systemd reports {unit_state(parsed)}."
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


def unit_state(parsed: sp.UnitStatus) -> str:
    """The unit's state as systemctl printed it ("failed (Result: exit-code) since ..."), without what it left out."""
    return parsed.active + (f" ({parsed.sub})" if parsed.sub else "") + (f" since {parsed.since}" if parsed.since else "")


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
        # A test can fail with no file or line at all (a bind() or certificate failure): then the text
        # names none, rather than printing "(:None)".
        known = bool(e.file) and e.line is not None
        where = f" in {e.file} line {e.line}" if known else f" in {e.file}" if e.file else ""
        result.facts["config_errors"] = [f"{e.file}:{e.line}" if known else e.file or e.message]
        module = _module_for(e.message)
        if module:
            directive = re.search(r"Invalid command '([\w-]+)'", e.message)
            result.add(
                "apache_module_missing", Severity.CAUSE,
                f"{how}: {e.message}{where}. {directive.group(1) if directive else 'That directive'} comes from "
                f"mod_{module.split()[0]}, which is not enabled: `a2enmod {module}` enables it.",
                file=e.file, line=e.line, module=module,
            )
        else:
            result.add(
                "config_error", Severity.CAUSE,
                f"{how}: {e.message}{where}{f' ({e.file}:{e.line})' if known else ''}."
                f"{explain.context_note(e.message, e.file)} {consequence if known else consequence.replace('that line', 'it')}",
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
    php_and_sockets(result, [u.host for u in upstreams if u.scheme == "unix"])
    for key in TIMEOUTS:
        if found.get(key):
            result.facts[key] = found[key][0]
    if servers := explain.php_servers(output.stdout):
        result.facts["php_servers"] = [vars(s) for s in servers]
        if SCRIPT_UNKNOWN in facts.get("log_signatures", []):  # the error log was read first
            script_path(result, {**facts, **result.facts}, facts.get("script_unknown_server"))
    return result



SCRIPT_UNKNOWN = "nginx-fastcgi-primary-script-unknown"
# Lines people blame that never cause an outage: said to be harmless (the catalogue ranks them notice, so
# they are otherwise not reported), and never the headline.
HARMLESS = ("apache-fqdn", "nginx-client-closed")


def harmless(result: Analysis, matches: list[LogMatch]) -> None:
    """Say which matched lines are harmless (a red herring), so they are never read as the cause."""
    seen = [m for m in matches if m.signature.id in HARMLESS]
    if seen:
        quoted = "; ".join(f"{m.count} × \"{m.line[:200]}\": {m.meaning}" for m in seen)
        result.add("log_harmless", Severity.INFO,
                   f"Harmless, not the cause (a red herring): {quoted} Fixing it would not change what users see.")


def script_path(result: Analysis, facts: Facts, server: str | None) -> None:
    """'Primary script unknown' read against nginx -T's server blocks (needs both in ``facts``)."""
    if cause := explain.script_unknown_cause(facts, server):
        result.add("php_script_path", Severity.CAUSE, cause)


def php_and_sockets(result: Analysis, sockets: list[str]) -> None:
    """Unix-socket upstreams (for namei) and the PHP-FPM versions they name (for its status and log)."""
    if sockets:
        result.facts["upstream_sockets"] = sockets
        php_facts(result, "\n".join(sockets))


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
    harmless(result, report.matches)
    if errors:
        e = errors[-1]
        result.add("config_error", Severity.CAUSE, f"The journal shows the start failing: {e.message} in {e.file}:{e.line}."
                   + explain.context_note(e.message, e.file), file=e.file, line=e.line)
    return result
