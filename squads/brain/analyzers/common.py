"""Analyzers shared by every squad."""

from __future__ import annotations

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


@analyzer("common.generic")
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


NOISE_SOURCES = ("tmpfs", "devtmpfs", "udev", "shm", "overlay", "squashfs", "/dev/loop", "none", "efivarfs")
NOISE_MOUNTS = ("/run", "/dev", "/sys", "/proc", "/snap/", "/var/lib/docker/", "/var/lib/containerd/", "/var/lib/kubelet/")


def real_filesystems(systems: list[sp.Filesystem]) -> list[sp.Filesystem]:
    """Disks that hold data: not tmpfs, container layers, snaps or loop images (always "100%" by design)."""
    return [
        f for f in systems
        if not f.source.startswith(NOISE_SOURCES) and not f.mount.startswith(NOISE_MOUNTS) and f.mount != "/boot/efi"
    ]
