"""The kernel's record of a database host's disks and memory (``journalctl -k``; issue 12, TAXONOMY db-45,
db-46, db-19): which device returned I/O errors (medium errors, EXT4/XFS errors, a read-only remount), and
whether the OOM killer killed PostgreSQL — so "crashes again, OOM?" is answered from the kernel, with the
device named. Registered as the analyzer ``pg.kernel`` in ``analyzers/filesystems.py``."""

from __future__ import annotations

import re
from collections import Counter

from squads.brain.analyzers import Output
from squads.brain.models import Analysis, Severity

CODES = ("kernel_disk_errors", "kernel_fs_readonly", "kernel_oom_postgres", "kernel_no_oom", "no_data")
FACTS = ("failing_devices", "unavailable")

_DEVICE_ERRORS = (
    re.compile(r"I/O error, dev (?P<dev>[a-z]+[a-z0-9]*)"),
    re.compile(r"Buffer I/O error on dev(?:ice)? (?P<dev>[a-z0-9]+)"),
    re.compile(r"\[(?P<dev>(?:sd[a-z]+|vd[a-z]+|xvd[a-z]+|nvme\d+n\d+))\].*(?:Medium Error|FAILED Result|Unrecovered read error)"),
    re.compile(r"EXT4-fs (?:error|warning) \(device (?P<dev>[a-z0-9]+)\).*(?:I/O error|error)"),
    re.compile(r"XFS \((?P<dev>[a-z0-9-]+)\): .*(?:I/O error|Corruption|shut down)"),
    re.compile(r"(?P<dev>nvme\d+(?:n\d+)?).*(?:I/O \d+ QID \d+ timeout|controller is down|failed)"),
)
_READONLY = re.compile(r"EXT4-fs \((?P<dev>[a-z0-9]+)\): Remounting filesystem read-only|"
                       r"XFS \((?P<xdev>[a-z0-9-]+)\): Filesystem has been shut down")
_OOM = re.compile(r"(?:Out of memory|Memory cgroup out of memory): Kill(?:ed)? process (?P<pid>\d+) \((?P<name>[^)]+)\)")
_NO_DATA = re.compile(r"^-- No entries --$|No journal files were found", re.M)
_SYSTEM_DOWN = re.compile(r"System has not been booted with systemd|Failed to connect to bus")


def _base(dev: str) -> str:
    """sdb1 -> sdb, nvme0n1p2 -> nvme0n1: one disk, several partitions."""
    if m := re.fullmatch(r"(nvme\d+(?:n\d+)?)(?:p\d+)?", dev):
        return m.group(1)  # a controller (nvme1) stays itself; it is folded into its namespace below
    return re.sub(r"(?<=[a-z])\d+$", "", dev)


def kernel(output: Output) -> Analysis:
    """Disk errors by device, read-only remounts and OOM kills in the kernel log."""
    text = output.text
    if _SYSTEM_DOWN.search(text):
        result = Analysis(summary="journal not available")
        result.facts["unavailable"] = True
        return result
    lines = [ln.strip() for ln in output.stdout.splitlines() if ln.strip()]
    if not lines or _NO_DATA.search(output.stdout) and len(lines) <= 1:
        result = Analysis(summary="no kernel messages")
        result.add("no_data", Severity.INFO, "The kernel log printed nothing: disk errors and OOM kills could not be checked.",
                   check="kernel messages")
        return result
    errors: Counter[str] = Counter()
    last: dict[str, str] = {}
    for line in lines:
        for pattern in _DEVICE_ERRORS:
            if m := pattern.search(line):
                disk = _base(m.group("dev"))
                errors[disk] += 1
                last[disk] = line
                break
    for controller in [d for d in errors if re.fullmatch(r"nvme\d+", d)]:
        namespace = next((d for d in errors if d.startswith(controller + "n")), None)
        if namespace is not None:
            errors[namespace] += errors.pop(controller)
            last.pop(controller)
    ooms = [(m.group("name"), m.group("pid"), ln) for ln in lines if (m := _OOM.search(ln))]
    result = Analysis(summary=f"{len(lines)} kernel lines, "
                      + (", ".join(f"{n} disk errors on {d}" for d, n in errors.items()) or "no disk errors"))
    if errors:
        result.facts["failing_devices"] = sorted(errors)
        for disk, count in errors.most_common():
            medium = any("Medium Error" in ln and disk in ln for ln in lines)
            result.add(
                "kernel_disk_errors", Severity.CAUSE,
                f"The kernel logged {count} I/O error line(s) on disk /dev/{disk}"
                + (" (Medium Error: unreadable or unwritable sectors on the drive itself)" if medium else "")
                + f"; last: \"{last[disk]}\". The disk is failing: this hardware fault is why PostgreSQL gets "
                "\"Input/output error\". Do not keep restarting on it: fail over to a replica or restore onto healthy "
                f"storage, and check the drive (smartctl -a /dev/{disk}, the cloud volume's state).",
                device=disk,
            )
    for m in (_READONLY.search(ln) for ln in lines):
        if m:
            dev = m.group("dev") or m.group("xdev")
            result.add("kernel_fs_readonly", Severity.CAUSE,
                       f"The file system on /dev/{dev} went read-only (\"{m.group(0)}\"): every write there fails until "
                       "it is repaired (fsck) and remounted.", device=dev)
            break
    killed = [o for o in ooms if o[0].startswith(("postgres", "postmaster"))]
    if killed:
        name, pid, line = killed[-1]
        result.add("kernel_oom_postgres", Severity.CAUSE,
                   f"The kernel's OOM killer killed {name} (pid {pid}): \"{line}\". PostgreSQL then restarts every "
                   "session (crash recovery). Lower shared_buffers/work_mem × connections or add memory.")
    elif not ooms:
        result.add("kernel_no_oom", Severity.INFO,
                   f"No OOM kill in the last {len(lines)} kernel lines: the OOM killer did not stop PostgreSQL.")
    return result
