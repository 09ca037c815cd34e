"""The storage squad's analyzers. Each declares the facts it sets and the codes of its findings:
runbooks.yaml is checked against these declarations when the bundle loads."""

from __future__ import annotations

from squads.brain.analyzers import Output, analyzer
from squads.brain.analyzers.common import failure
from squads.brain.models import Analysis, Facts, Severity

from .inodes import parse_df_inodes, parse_du_counts

FULL = 95  # percent of inodes used


@analyzer("storage.inodes", facts=("inode_full_mounts",), codes=("inodes_full", "inodes_ok"))
def inodes(output: Output, facts: Facts) -> Analysis:
    """``df -i -P``: file systems that ran out of inodes."""
    if failed := failure(output):
        return failed
    rows = [r for r in parse_df_inodes(output.stdout) if r.total]
    full = [r for r in rows if r.percent >= FULL]
    result = Analysis(summary=f"{len(rows)} file systems, {len(full)} out of inodes")
    for row in full:
        result.add("inodes_full", Severity.CAUSE,
                   f"{row.mount} has used {row.percent}% of its inodes ({row.used:,} of {row.total:,}): no new file "
                   "can be created there, whatever free space df -h shows.", mount=row.mount)
    if full:
        result.facts["inode_full_mounts"] = [r.mount for r in full]
    else:
        result.add("inodes_ok", Severity.OK, "Every file system has inodes to spare.")
    return result


@analyzer("storage.inode_hogs", codes=("inode_hog",))
def inode_hogs(output: Output, facts: Facts) -> Analysis:
    """``du --inodes -d 1``: the folder holding the most files."""
    if failed := failure(output):
        return failed
    mount = str(output.params.get("mount", output.item))
    counts = [(n, folder) for n, folder in parse_du_counts(output.stdout) if folder != mount]
    result = Analysis(summary=f"{len(counts)} folders under {mount}")
    if counts:
        files, folder = counts[0]
        result.add("inode_hog", Severity.PROBLEM, f"{folder} holds {files:,} files, the most under {mount}.",
                   folder=folder, files=f"{files:,}")
    return result
