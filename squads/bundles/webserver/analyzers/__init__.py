"""The webserver squad's analyzers, by what they read.

``config`` (unit status, config test, nginx -T, journal), ``errorlog`` (the error log), ``listening``
(``ss``), ``host`` (processes, memory, PHP-FPM, permissions, access logs), and here the disk checks.
The bundle loader imports every module of this folder, so each registers its own analyzers.
"""

from __future__ import annotations

from squads.brain.analyzers import Output, analyzer
from squads.brain.analyzers.common import failure, filesystem_note, no_disk_data, real_filesystems, usage_words
from squads.brain.models import Analysis, Facts, Severity
from squads.brain.parsers import system as sp


@analyzer(
    "web.disk",
    facts=("full_mounts",),
    codes=("disk_full", "no_data"),
)
def disk(output: Output, facts: Facts) -> Analysis:
    """``df -h`` (or ``df -i``): full file systems, tmpfs and container roots included."""
    if failed := failure(output):
        return failed
    parsed = sp.parse_df(output.stdout)
    if not parsed:
        return no_disk_data(output)
    systems = real_filesystems(parsed)
    result = Analysis(summary=", ".join(f"{f.mount} {f.use_percent}%{' inodes' if f.inodes else ''}" for f in systems))
    full = [f for f in systems if f.use_percent >= 90]
    if full:
        result.facts["full_mounts"] = [f.mount for f in full]
        for f in full:
            severity = Severity.CAUSE if f.use_percent >= 98 else Severity.PROBLEM
            result.add(
                "disk_full", severity,
                f"The file system on {f.mount} ({f.source}) is {usage_words(f)}. Writes there fail with "
                f"\"No space left on device\".{filesystem_note(f)}",
                mount=f.mount, percent=f.use_percent,
            )
    return result


@analyzer(
    "web.dir_size",
    codes=("dir_size",),
)
def dir_size(output: Output, facts: Facts) -> Analysis:
    """``du -sh``."""
    if failed := failure(output):
        return failed
    rows = sp.parse_du(output.stdout)
    result = Analysis(summary=", ".join(f"{path} {size}" for size, path in rows))
    for size, path in rows:
        result.add("dir_size", Severity.INFO, f"{path} holds {size}.")
    return result

