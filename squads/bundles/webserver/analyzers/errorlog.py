"""Reading a web server's error log: failing upstreams, TLS to the backend, disk full, config errors."""

from __future__ import annotations

import re
from collections import Counter

from squads.brain.analyzers import Output, analyzer
from squads.brain.analyzers.common import failure
from squads.brain.models import Analysis, Facts, Severity
from squads.brain.parsers import logs as lp
from squads.brain.signatures import CODES as LOG_CODES
from squads.brain.signatures import FACTS as LOG_FACTS
from squads.brain.signatures import log_findings, match_log

from .. import explain
from .config import PHP_FACTS, SCRIPT_UNKNOWN, harmless, php_and_sockets, script_path

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
    harmless(result, report.matches)
    result.findings, stopped = explain.age_findings(result.findings, lines, facts)
    if stopped:
        result.facts["errors_stopped_at"] = stopped
    if SCRIPT_UNKNOWN in result.facts.get("log_signatures", []):
        unknown = next((lp.parse_nginx_error(ln) for ln in reversed(lines) if "Primary script unknown" in ln), None)
        if unknown and unknown.server:
            result.facts["script_unknown_server"] = unknown.server
        if facts.get("php_servers"):  # nginx -T was read first
            script_path(result, facts, unknown.server if unknown else None)
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
    php_and_sockets(result, list(sockets_down))
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

