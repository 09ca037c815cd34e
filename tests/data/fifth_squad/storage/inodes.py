"""Parsing ``df -i -P`` and ``du --inodes``: the storage squad's own parsers."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class InodeUse:
    """One file system's inodes."""

    mount: str
    total: int
    used: int

    @property
    def percent(self) -> int:
        """Used inodes in percent, rounded up as df does (0 when the file system has no fixed count)."""
        return -(-100 * self.used // self.total) if self.total else 0


def parse_df_inodes(text: str) -> list[InodeUse]:
    """The rows of ``df -i -P`` (POSIX format: one line per file system, the mount point last)."""
    rows: list[InodeUse] = []
    for line in text.splitlines()[1:]:
        fields = line.split()
        if len(fields) >= 6 and fields[1].isdigit() and fields[2].isdigit():
            rows.append(InodeUse(mount=" ".join(fields[5:]), total=int(fields[1]), used=int(fields[2])))
    return rows


def parse_du_counts(text: str) -> list[tuple[int, str]]:
    """(files, folder) of each ``du --inodes`` line, most files first."""
    counts = []
    for line in text.splitlines():
        count, _, folder = line.partition("\t")
        if count.strip().isdigit() and folder:
            counts.append((int(count), folder))
    return sorted(counts, reverse=True)
