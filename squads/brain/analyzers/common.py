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
        # A renewed file is not what clients see until the server re-reads it: the running process keeps
        # serving the certificate it loaded at its last start or reload.
        result.add(
            "cert_ok", Severity.OK,
            f"The certificate {path} is valid until {date} ({days} days). A server presents the certificate it "
            "loaded at its last start or reload: if clients still see an expired or older one, reload the server "
            "that uses this file so it reads it.",
        )
    return result


# Pseudo file systems have no capacity to fill (df hides them unless -a, and shows 0 or "-").
PSEUDO_TYPES = frozenset((
    "proc", "sysfs", "cgroup", "cgroup2", "devpts", "mqueue", "debugfs", "tracefs", "securityfs", "pstore",
    "bpf", "configfs", "fusectl", "hugetlbfs", "efivarfs", "binfmt_misc", "autofs", "nsfs", "rpc_pipefs", "nfsd",
))
# Read-only images are "100%" by design: a snap, a loop-mounted ISO.
READ_ONLY_TYPES = frozenset(("squashfs", "iso9660", "udf", "erofs"))
# Each container's own view of the runtime's disk: the disk itself is reported once, under its own mount.
CONTAINER_VIEWS = ("/var/lib/docker/", "/var/lib/containerd/", "/var/lib/kubelet/", "/run/containerd/",
                   "/run/docker/", "/var/run/docker/", "/run/k3s/", "/var/lib/containers/", "/snap/")


def real_filesystems(systems: list[sp.Filesystem]) -> list[sp.Filesystem]:
    """File systems that can fill up, tmpfs and overlay included (a full tmpfs log directory or a full
    container root stops writes like any disk). Skipped: pseudo file systems with no capacity (proc,
    sysfs, cgroup ...), read-only images (snaps, ISOs: always 100%) and the per-container views under a
    container runtime's directories and bind mounts of a file system already listed (they repeat the
    disk behind them)."""
    kept: list[sp.Filesystem] = []
    for f in systems:
        kind = f.fstype or f.source
        if kind in PSEUDO_TYPES or kind in READ_ONLY_TYPES or f.source.startswith("/dev/loop"):
            continue
        if f.size in ("0", "-", "") or f.mount.startswith(CONTAINER_VIEWS):
            continue
        if any((k.source, k.size, k.used) == (f.source, f.size, f.used) for k in kept):
            continue  # the same file system bind-mounted again (/etc/hosts in a container)
        kept.append(f)
    return kept


def filesystem_note(f: sp.Filesystem) -> str:
    """What kind of file system ``f`` is, when that changes the fix (tmpfs lives in memory, overlay is a
    container's root); empty for an ordinary disk."""
    kind = f.fstype or f.source
    if kind == "tmpfs":
        return " It is a tmpfs: it lives in memory, its size is the mount's size= option, and it is emptied at reboot."
    if kind in ("overlay", "overlayfs") and f.mount == "/":
        return " It is a container's root (overlay): the container's writable layer fills the disk behind it."
    return ""


def usage_words(f: sp.Filesystem) -> str:
    """What follows "is": ``"95% full: 9.5G used of 10G, 500M left"``, or the inodes used for ``df -i``."""
    if f.inodes:
        return (f"using {f.use_percent}% of its inodes ({f.used} of {f.size}, {f.available} left; without a free inode "
                "no file can be created, however many bytes are free)")
    return f"{f.use_percent}% full: {f.used} used of {f.size}, {f.available} left"


def no_disk_data(output: Output) -> Analysis:
    """``df`` printed no table: disk space was not checked, which is not the same as "not full"."""
    result = Analysis(summary="no file systems in the output")
    result.add(
        "no_data", Severity.INFO,
        f"`{' '.join(output.argv) or 'df'}` printed no file system table, so I could not check disk space.",
        check="disk space",
    )
    return result
