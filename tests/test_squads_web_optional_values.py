"""Webserver findings when an optional value is missing (a config test that names no file or line, a
systemctl status without "since"), and upstreams on another host, which this host's ``ss`` cannot see."""

from __future__ import annotations

import re
from typing import Any

from squads.brain.actions import Call, CallResult
from squads.brain.analyzers import Output, analyze
from squads.brain.models import Analysis, Severity
from squads.brain.service import State
from squads.bundle_code import load_analyzers
from squads.grants import BUILTIN_BUNDLES
from squads.service import load_squads
from tests.test_brain import drive, says
from tools.service import render

WEB = load_analyzers(BUILTIN_BUNDLES / "webserver")
SQUAD = load_squads()["webserver"]

# nginx 1.22 with OpenSSL 3, `nginx -t` with a certificate path that does not exist: no "in file:line".
CERT_MISSING = (
    'nginx: [emerg] cannot load certificate "/etc/ssl/certs/shop.pem": BIO_new_file() failed (SSL: error:80000002:'
    "system library::No such file or directory:calling fopen(/etc/ssl/certs/shop.pem, r) error:10000080:BIO "
    "routines::no such file)\n"
    "nginx: configuration file /etc/nginx/nginx.conf test failed\n"
)
# systemctl status of a unit whose Active line carries no timestamp.
STATUS_NO_SINCE = """\
× nginx.service - A high performance web server and a reverse proxy server
     Loaded: loaded (/lib/systemd/system/nginx.service; enabled; vendor preset: enabled)
     Active: failed
"""
# Leaks of a missing value into words: None, an empty "(file:line)" or "since", empty brackets, "that line"
# when no line is known.
LEAK = re.compile(r"\bNone\b|\(:|:None|since [.;?]| \(\)|in \.|that line")


def run(name: str, stdout: str, facts: dict[str, Any] | None = None, *, code: int = 0) -> Analysis:
    return analyze(WEB, name, Output(argv=["x"], exit_code=code, stdout=stdout, stderr=""), facts or {})


def texts(result: Analysis) -> str:
    return "\n".join([result.summary, *(f.text for f in result.findings)])


def test_a_config_error_without_file_or_line_names_none() -> None:
    result = run("web.config_test", CERT_MISSING, code=1)
    [finding] = [f for f in result.findings if f.code == "config_error"]
    assert finding.text.startswith('The configuration test fails: cannot load certificate "/etc/ssl/certs/shop.pem"')
    assert not LEAK.search(texts(result)), texts(result)
    assert result.facts["config_broken"] is True and not LEAK.search(str(result.facts["config_errors"]))
    # With a file and line, both are still named.
    named = run("web.config_test", 'nginx: [emerg] unknown directive "proxy_pas" in /etc/nginx/sites-enabled/shop:12\n',
                code=1)
    assert "in /etc/nginx/sites-enabled/shop line 12 (/etc/nginx/sites-enabled/shop:12)." in texts(named)
    assert named.facts["config_errors"] == ["/etc/nginx/sites-enabled/shop:12"]


def test_a_failed_unit_without_a_timestamp_says_no_empty_since() -> None:
    result = analyze(WEB, "web.status", Output(argv=["systemctl"], exit_code=3, stdout=STATUS_NO_SINCE, stderr="",
                                               params={"unit": "nginx"}), {})
    [failed] = [f for f in result.findings if f.code == "server_failed"]
    assert failed.text == "nginx is not running: systemd reports failed."
    fpm = analyze(WEB, "web.php_fpm_status", Output(argv=["systemctl"], exit_code=3, stdout=STATUS_NO_SINCE.replace(
        "nginx", "php8.2-fpm"), stderr="", params={"unit": "php8.2-fpm"}), {})
    assert not LEAK.search(texts(fpm)), texts(fpm)
    assert "systemd reports failed; every PHP request" in texts(fpm)


def _responder(outputs: dict[str, tuple[int, str]]) -> Any:
    def respond(call: Call) -> CallResult:
        code, stdout = outputs.get(call.tool or "", (0, ""))
        argv = render(SQUAD.tool(call.tool), call.params) if call.tool else list(call.argv or [])
        return CallResult("ran", argv=argv, tool=call.tool, exit_code=code, stdout=stdout, node="web-1", agent="a")
    return respond


def test_the_reply_to_a_start_failure_without_file_or_line_leaks_no_missing_value() -> None:
    outputs = {"service_status": (3, STATUS_NO_SINCE), "config_test": (1, CERT_MISSING)}
    steps = drive(SQUAD, "nginx won't start", State(), _responder(outputs))
    reply = says(steps)
    assert "cannot load certificate" in reply
    assert not LEAK.search(reply), reply
    assert "{" not in reply  # no unfilled placeholder (the advice names a file and line nobody found)


SS_WILDCARD_8000 = """\
State  Recv-Q Send-Q Local Address:Port  Peer Address:Port Process
LISTEN 0      2048         0.0.0.0:8000       0.0.0.0:*     users:(("gunicorn",pid=4411,fd=5))
LISTEN 0      511          0.0.0.0:80         0.0.0.0:*     users:(("nginx",pid=910,fd=6),("nginx",pid=909,fd=6))
"""
SS_NOTHING_ON_8000 = """\
State  Recv-Q Send-Q Local Address:Port  Peer Address:Port Process
LISTEN 0      511          0.0.0.0:80         0.0.0.0:*     users:(("nginx",pid=910,fd=6),("nginx",pid=909,fd=6))
LISTEN 0      128       10.70.1.20:9100       0.0.0.0:*     users:(("node_exporter",pid=702,fd=3))
"""


def codes(result: Analysis) -> dict[str, Severity]:
    return {f.code: f.severity for f in result.findings}


def test_an_upstream_on_another_host_is_not_judged_by_this_hosts_listeners() -> None:
    for ss in (SS_WILDCARD_8000, SS_NOTHING_ON_8000.replace("10.70.1.20:9100", "10.70.1.5:9100")):
        result = run("web.sockets", ss, {"upstreams": ["10.70.1.20:8000"], "server_processes": ["nginx"]})
        assert codes(result) == {"upstream_remote": Severity.INFO}, result.findings
        assert "dead_upstreams" not in result.facts
        [note] = result.findings
        assert "10.70.1.20:8000" in note.text and "cannot tell" in note.text and "ss -ltnp" in note.text
    # A name may resolve anywhere: ss cannot tell either.
    named = run("web.sockets", SS_NOTHING_ON_8000, {"config_upstreams": ["backend:8000"]})
    assert "upstream_down" not in codes(named) and "upstream_remote" in codes(named)


def test_an_upstream_on_loopback_or_an_address_this_host_binds_is_judged() -> None:
    # 10.70.1.20 is this host's own address (node_exporter is bound to it): nothing on 8000 is down.
    own = run("web.sockets", SS_NOTHING_ON_8000, {"upstreams": ["10.70.1.20:8000"], "server_processes": ["nginx"]})
    assert codes(own) == {"upstream_down": Severity.CAUSE} and own.facts["dead_upstreams"] == ["10.70.1.20:8000"]
    loop = run("web.sockets", SS_NOTHING_ON_8000, {"upstreams": ["127.0.0.1:8000"]})
    assert codes(loop) == {"upstream_down": Severity.CAUSE}
    up = run("web.sockets", SS_WILDCARD_8000, {"upstreams": ["127.0.0.1:8000"], "config_upstreams": ["localhost:8000"]})
    assert codes(up) == {"upstream_listening": Severity.INFO}
    assert len(up.findings) == 2 and all("gunicorn (pid 4411)" in f.text for f in up.findings)
