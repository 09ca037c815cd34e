"""Reading a database host's file systems: df for the data directory's volume, the kernel log for the failing disk."""

from __future__ import annotations

from squads.brain.analyzers import Output, analyzer
from squads.brain.analyzers.common import failure, filesystem_note, no_disk_data, real_filesystems, usage_words
from squads.brain.models import Analysis, Facts, Severity
from squads.brain.parsers import system as sp

from .. import storage


@analyzer(
    "pg.disk",
    facts=("disk_filling_mounts",),
    codes=("disk_filling", "disk_full", "disk_ok", "no_data"),
)
def disk(output: Output, facts: Facts) -> Analysis:
    """``df -h`` (or ``df -i``) for a database host: the data directory's file system above all;
    tmpfs and container roots count too."""
    if failed := failure(output):
        return failed
    parsed = sp.parse_df(output.stdout)
    if not parsed:
        return no_disk_data(output)
    systems = real_filesystems(parsed)
    result = Analysis(summary=", ".join(f"{f.mount} {f.use_percent}%{' inodes' if f.inodes else ''}" for f in systems))
    for f in systems:
        data_dir = "postgres" in f.mount or f.mount in ("/", "/var", "/var/lib")
        if f.use_percent >= 95:
            consequence = ("PostgreSQL cannot write WAL or data there, so it stops" if data_dir
                           else "writes there fail with \"No space left on device\"")
            result.add(
                "disk_full", Severity.CAUSE,
                f"The file system on {f.mount} ({f.source}) is {usage_words(f)}: {consequence}. "
                f"Free space (old logs, WAL archives) or grow the volume.{filesystem_note(f)}",
                mount=f.mount,
            )
        elif f.use_percent >= 85:
            result.add("disk_filling", Severity.PROBLEM, f"{f.mount} is {usage_words(f)}.{filesystem_note(f)}", mount=f.mount)
        if f.use_percent >= 85:
            result.facts.setdefault("disk_filling_mounts", []).append(f.mount)
        elif data_dir:
            result.add("disk_ok", Severity.OK, f"{f.mount} is {usage_words(f)}.")
    return result


@analyzer("pg.kernel", facts=storage.FACTS, codes=storage.CODES)
def kernel(output: Output, facts: Facts) -> Analysis:
    """``journalctl -k``: the failing disk (named) behind I/O errors, read-only remounts, OOM kills of PostgreSQL."""
    return storage.kernel(output)
