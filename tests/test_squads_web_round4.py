"""Issue 12, round 4, webserver: a certificate valid on disk while clients see an expired one."""

from __future__ import annotations

from squads.brain.analyzers import Output, analyze
from squads.brain.models import Severity
from squads.bundle_code import load_analyzers
from squads.grants import BUILTIN_BUNDLES

WEB = load_analyzers(BUILTIN_BUNDLES / "webserver")

# Real `openssl x509 -noout -subject -enddate` output of a freshly renewed certificate.
RENEWED = "subject=CN = shop.example.net\nnotAfter=Feb 20 08:15:00 2027 GMT\n"
EXPIRED = "subject=CN = shop.example.net\nnotAfter=Nov 20 08:15:00 2026 GMT\n"


def _certificate(stdout: str) -> list[tuple[str, Severity, str]]:
    out = Output(argv=["openssl"], exit_code=0, stdout=stdout, stderr="",
                 params={"path": "/etc/nginx/tls/shop.example.net/fullchain.pem"})
    result = analyze(WEB, "common.certificate", out, {"now": "2026-12-01T00:00:00+00:00"})
    return [(f.code, f.severity, f.text) for f in result.findings]


def test_a_valid_file_says_the_running_server_serves_what_it_loaded_and_a_reload_reads_the_file() -> None:
    [(code, severity, text)] = _certificate(RENEWED)
    assert code == "cert_ok" and severity == Severity.OK
    assert "valid until 2027-02-20 08:15 UTC" in text
    assert "last start or reload" in text and "reload the server" in text
    assert "{" not in text


def test_an_expired_file_is_still_the_cause() -> None:
    [(code, severity, text)] = _certificate(EXPIRED)
    assert code == "cert_expired" and severity == Severity.CAUSE
    assert "last start or reload" not in text


# Real `ss -ltnp` of a host whose nginx serves port 80 only (the HTTPS site file was never enabled).
SS_HTTP_ONLY = """State  Recv-Q Send-Q Local Address:Port  Peer Address:Port Process
LISTEN 0      511          0.0.0.0:80         0.0.0.0:*     users:(("nginx",pid=2205,fd=6),("nginx",pid=2204,fd=6))
LISTEN 0      4096   127.0.0.53%lo:53         0.0.0.0:*     users:(("systemd-resolve",pid=611,fd=14))
LISTEN 0      128          0.0.0.0:22         0.0.0.0:*     users:(("sshd",pid=802,fd=3))
"""
SS_BOTH = SS_HTTP_ONLY + (
    'LISTEN 0      511          0.0.0.0:443        0.0.0.0:*     users:(("nginx",pid=2205,fd=7))\n'
)


def _sockets(stdout: str, message: str, **facts: object) -> list[tuple[str, Severity, str]]:
    out = Output(argv=["ss", "-ltnp"], exit_code=0, stdout=stdout, stderr="", params={})
    result = analyze(WEB, "web.sockets", out, {"message": message, **facts})
    return [(f.code, f.severity, f.text) for f in result.findings]


def test_an_https_complaint_with_nothing_on_443_is_the_cause_not_the_certificate() -> None:
    found = _sockets(SS_HTTP_ONLY, "https times out on the store but http loads fine", certificates=[])
    [(severity, text)] = [(sev, t) for code, sev, t in found if code == "https_not_listening"]
    assert severity == Severity.CAUSE
    assert "Nothing is listening on port 443" in text and "listens only on 80" in text
    assert "names no ssl_certificate" in text and "sites-enabled" in text


def test_no_https_finding_when_443_listens_or_the_message_is_not_about_https() -> None:
    assert not [c for c, _, _ in _sockets(SS_BOTH, "tls handshake fails for some clients") if c == "https_not_listening"]
    assert not [c for c, _, _ in _sockets(SS_HTTP_ONLY, "the site returns 502") if c == "https_not_listening"]
