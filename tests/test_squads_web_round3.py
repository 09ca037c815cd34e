"""Issue 12, webserver squad, third round: old errors with none since, nginx directives in the wrong
context, PHP "Primary script unknown" read against root and SCRIPT_FILENAME, on real nginx/ss output."""

from __future__ import annotations

from typing import Any

from squads.brain.analyzers import Output, analyze
from squads.brain.models import Analysis, Severity
from squads.bundle_code import load_analyzers
from squads.bundles.webserver import explain
from squads.grants import BUILTIN_BUNDLES

WEB = load_analyzers(BUILTIN_BUNDLES / "webserver")


def run(name: str, stdout: str, facts: dict[str, Any] | None = None, *, stderr: str = "", code: int = 0) -> Analysis:
    return analyze(WEB, name, Output(argv=["nginx"], exit_code=code, stdout=stdout, stderr=stderr), facts or {})


def by_code(result: Analysis, code: str) -> list[Any]:
    return [f for f in result.findings if f.code == code]


REFUSED = (
    '{t} [error] 7310#7310: *40{n} connect() failed (111: Connection refused) while connecting to upstream, client: '
    '192.0.2.{n}, server: tickets.example.com, request: "GET /events HTTP/1.1", upstream: '
    '"http://127.0.0.1:9090/events", host: "tickets.example.com"'
)
OLD_LOG = "\n".join(REFUSED.format(t=f"2026/07/14 23:4{i}:0{i}", n=i) for i in range(1, 6))
SS_BACK = """State  Recv-Q Send-Q Local Address:Port  Peer Address:Port Process
LISTEN 0      128        127.0.0.1:9090       0.0.0.0:*     users:(("uvicorn",pid=61220,fd=7))
LISTEN 0      511          0.0.0.0:443        0.0.0.0:*     users:(("nginx",pid=911,fd=8),("nginx",pid=910,fd=8))
"""


def test_upstream_errors_hours_old_are_history_and_a_listening_backend_says_healthy() -> None:
    facts: dict[str, Any] = {"now": "2026-07-15T09:30:00+00:00", "config_upstreams": ["127.0.0.1:9090"]}
    log = run("web.error_log", OLD_LOG, facts)
    assert log.facts["errors_stopped_at"] == "2026-07-14 23:45:05"
    assert all(f.severity <= Severity.INFO for f in log.findings)
    [errors] = by_code(log, "upstream_errors")
    assert "old upstream failures" in errors.text and "127.0.0.1:9090" in errors.text
    [sig] = by_code(log, "log_signature")
    assert "none since" in sig.text and "between 2026-07-14 23:41:01 and 23:45:05" in sig.text
    ss = run("web.sockets", SS_BACK, {**facts, **log.facts})
    [ok] = by_code(ss, "upstream_recovered")
    assert "uvicorn (pid 61220)" in ok.text and "healthy now" in ok.text


def test_recent_upstream_errors_stay_a_problem() -> None:
    facts = {"now": "2026-07-14T23:50:00+00:00"}
    log = run("web.error_log", OLD_LOG, facts)
    assert "errors_stopped_at" not in log.facts
    assert by_code(log, "upstream_errors")[0].severity == Severity.PROBLEM
    assert "none since" not in by_code(log, "log_signature")[0].text


def test_old_errors_that_fail_on_every_request_are_not_called_over() -> None:
    line = ('2026/07/13 10:00:00 [error] 88#88: *5 FastCGI sent in stderr: "Primary script unknown" while reading '
            'response header from upstream, client: 198.51.100.9, server: wiki.example.com, request: "GET /index.php '
            'HTTP/1.1", upstream: "fastcgi://unix:/run/php/php8.3-fpm.sock:", host: "wiki.example.com"')
    log = run("web.error_log", line, {"now": "2026-07-15T09:30:00+00:00"})
    assert by_code(log, "log_signature")[0].severity == Severity.PROBLEM
    # the backend answered: a script's message is not an upstream connection failure
    assert not by_code(log, "upstream_errors")


def test_apache_and_php_fpm_times_are_read() -> None:
    assert explain.log_time("[Tue Jul 14 23:41:07.118230 2026] [proxy:error] [pid 412] AH00957: x").hour == 23  # type: ignore[union-attr]
    assert explain.log_time("[14-Jul-2026 23:41:07] WARNING: [pool www] server reached pm.max_children").day == 14  # type: ignore[union-attr]
    assert explain.log_time("no time here") is None


def test_directive_not_allowed_explains_the_include_context() -> None:
    stderr = ('nginx: [emerg] "upstream" directive is not allowed here in /etc/nginx/snippets/payments.conf:3\n'
              "nginx: configuration file /etc/nginx/nginx.conf test failed\n")
    result = run("web.config_test", "", {"server_active": "active"}, stderr=stderr, code=1)
    [error] = by_code(result, "config_error")
    assert "wrong context" in error.text and "http context" in error.text and "include" in error.text
    assert "payments.conf" in error.text and result.facts["config_broken"] is True
    location = explain.context_note('"location" directive is not allowed here', "/etc/nginx/conf.d/a.conf")
    assert "server { } or location { }" in location


def test_apache_section_nesting_is_explained() -> None:
    note = explain.context_note("<VirtualHost> cannot occur within <VirtualHost> section", "/etc/apache2/x.conf")
    assert "inside <VirtualHost>" in note and "wrong context" in note
    assert explain.context_note("unknown directive \"proxy_passs\"", "") == ""


DUMP = """# configuration file /etc/nginx/nginx.conf:
http {
    include /etc/nginx/sites-enabled/*;
}
# configuration file /etc/nginx/sites-enabled/wiki:
server {
    listen 443 ssl;
    server_name wiki.example.com;
    root /data/wiki/htdocs;
    location ~ \\.php$ {
        include fastcgi_params;
        fastcgi_pass unix:/run/php/php8.3-fpm.sock;
        fastcgi_param SCRIPT_FILENAME /opt/wiki/htdocs$fastcgi_script_name;
    }
}
server {
    server_name static.example.com;
    root /data/static;
}
"""
UNKNOWN = ('2026/07/15 09:20:00 [error] 88#88: *5 FastCGI sent in stderr: "Primary script unknown" while reading '
           'response header from upstream, client: 198.51.100.9, server: wiki.example.com, request: "GET /index.php '
           'HTTP/1.1", upstream: "fastcgi://unix:/run/php/php8.3-fpm.sock:", host: "wiki.example.com"')


def test_primary_script_unknown_names_the_hard_coded_path_and_the_root_either_order() -> None:
    facts = {"now": "2026-07-15T09:30:00+00:00"}
    dump = run("web.config_dump", DUMP, facts)
    log = run("web.error_log", UNKNOWN, {**facts, **dump.facts})
    [cause] = by_code(log, "php_script_path")
    assert "/opt/wiki/htdocs" in cause.text and "/data/wiki/htdocs" in cause.text and "wiki.example.com" in cause.text
    assert cause.severity == Severity.CAUSE
    log_first = run("web.error_log", UNKNOWN, facts)
    dump_second = run("web.config_dump", DUMP, {**facts, **log_first.facts})
    assert "/opt/wiki/htdocs" in by_code(dump_second, "php_script_path")[0].text


def test_script_unknown_with_document_root_names_the_root() -> None:
    servers = explain.php_servers(DUMP.replace("/opt/wiki/htdocs$fastcgi_script_name", "$document_root$fastcgi_script_name"))
    cause = explain.script_unknown_cause({"php_servers": [vars(s) for s in servers]}, "wiki.example.com")
    assert cause is not None and "document root /data/wiki/htdocs" in cause


def test_ah00558_is_called_harmless_beside_the_real_cause() -> None:
    log = ("[Mon Jul 13 06:25:01.004412 2026] [mpm_prefork:notice] [pid 701] AH00163: Apache/2.4.62 (Debian) configured\n"
           "AH00558: apache2: Could not reliably determine the server's fully qualified domain name, using 127.0.1.1. "
           "Set the 'ServerName' directive globally to suppress this message\n"
           "[Mon Jul 13 09:02:11.551003 2026] [proxy_fcgi:error] [pid 9921:tid 140] (70007)The timeout specified has "
           "expired: [client 203.0.113.40:51234] AH01075: Error dispatching request to : (polling)\n")
    result = run("web.error_log", log, {"now": "2026-07-13T09:10:00+00:00"})
    [harmless] = by_code(result, "log_harmless")
    assert "AH00558" in harmless.text and "Harmless" in harmless.text and harmless.severity == Severity.INFO
    assert max(f.severity for f in result.findings) > Severity.INFO  # the AH01075 line leads
