"""Analyzers shared by every squad: the generic one, and certificate dates (webserver, security)."""

from __future__ import annotations

from datetime import UTC, datetime

from squads.brain.analyzers import Output, analyzer
from squads.brain.parsers import system as sp
from squads.brain.models import Analysis, Facts, Severity


def failure(output: Output) -> Analysis | None:
    """The analysis of a command that did not work, or None when it did."""
    if output.missing:
        return Analysis(summary="not available on this node (exit 127)")
    if output.exit_code != 0 and not output.stdout.strip():
        first = next((line.strip() for line in output.stderr.splitlines() if line.strip()), "no output")
        return Analysis(summary=f"failed with exit code {output.exit_code}: {first}")
    return None


@analyzer(
    "common.generic",
    codes=("output_errors",),
)
def generic(output: Output, facts: Facts) -> Analysis:
    """Line count and the first error-looking line, for commands without a parser."""
    failed = failure(output)
    if failed:
        return failed
    lines = [line for line in output.text.splitlines() if line.strip()]
    result = Analysis(summary=f"{len(lines)} line{'s' if len(lines) != 1 else ''} of output")
    errors = [line.strip() for line in lines if any(w in line.lower() for w in ("error", "fatal", "failed", "denied"))]
    if errors:
        result.add("output_errors", Severity.INFO, f"The output reports: {errors[-1][:300]}")
    return result


SOON_DAYS = 30  # a certificate that expires sooner is a problem


def _days(count: int) -> str:
    return "less than a day" if count < 1 else f"{count} day{'s' if count != 1 else ''}"


@analyzer(
    "common.certificate",
    codes=("cert_expired", "cert_expiring", "cert_ok"),
)
def certificate(output: Output, facts: Facts) -> Analysis:
    """``openssl x509 -enddate``: expired or expiring certificates."""
    if failed := failure(output):
        return failed
    cert = sp.parse_openssl_x509(output.stdout)
    path = str(output.params.get("path", output.item or "the certificate"))
    if cert is None or cert.not_after is None:
        return Analysis(summary="no certificate dates in the output")
    now = datetime.fromisoformat(str(facts["now"])) if facts.get("now") else datetime.now(UTC)
    days = (cert.not_after - now).days
    date = cert.not_after.strftime("%Y-%m-%d %H:%M UTC")
    result = Analysis(summary=f"{cert.subject}: valid until {date}")
    if cert.not_after <= now:
        result.add(
            "cert_expired", Severity.CAUSE,
            f"The certificate {path} ({cert.subject}) expired on {date}, {_days((now - cert.not_after).days)} ago: "
            "every client that checks it (browsers, or a proxy calling this backend) refuses the connection. "
            "Renew it and reload the server.",
            path=path, date=date,
        )
    elif days <= SOON_DAYS:
        result.add(
            "cert_expiring", Severity.PROBLEM,
            f"The certificate {path} ({cert.subject}) expires on {date}, in {_days(days)}. Renew it before then.",
            path=path, date=date,
        )
    else:
        result.add("cert_ok", Severity.OK, f"The certificate {path} is valid until {date} ({days} days).")
    return result


NOISE_SOURCES = ("tmpfs", "devtmpfs", "udev", "shm", "overlay", "squashfs", "/dev/loop", "none", "efivarfs")
NOISE_MOUNTS = ("/run", "/dev", "/sys", "/proc", "/snap/", "/var/lib/docker/", "/var/lib/containerd/", "/var/lib/kubelet/")


def real_filesystems(systems: list[sp.Filesystem]) -> list[sp.Filesystem]:
    """Disks that hold data: not tmpfs, container layers, snaps or loop images (always "100%" by design)."""
    return [
        f for f in systems
        if not f.source.startswith(NOISE_SOURCES) and not f.mount.startswith(NOISE_MOUNTS) and f.mount != "/boot/efi"
    ]
