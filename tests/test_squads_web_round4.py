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
