"""Open path arguments without following links, and hand the program the open file.

The policy checks the path a person asked for; a check on a name and a later
open by the program are two lookups, and anyone who can write a folder on the
way (the postgres user in ``/var/log/postgresql``) can swap a file for a link
between them. So the executor opens every path-typed argument itself, one
component at a time from ``/`` with ``O_NOFOLLOW`` (``O_PATH``: no read, no
side effects of opening a device), refuses a link anywhere on the way, checks
that what it opened is a regular file or a folder, and only then gives the
program that very file:

- a folder as ``/dev/fd/N/`` (the trailing slash makes even ``find`` and
  ``du``, which never follow a link given as argument, enter it);
- a file as ``/dev/fd/N`` (the program opens the descriptor, not the name);
- a file for a program that only reports metadata and never follows a link
  it is given (``du``, ``find``, ``stat``, ``ls``, ``namei``) as
  ``/dev/fd/P/name``, ``P`` being the pinned parent folder: such a program
  would show ``/dev/fd/N`` itself (a link) instead of the file.

Programs print the names they were given, so the output is mapped back:
``/dev/fd/N`` becomes the path that was asked for (see ``OutputRewriter``).
"""

from __future__ import annotations

import errno
import os
import posixpath
import re
import stat
from collections.abc import Sequence
from dataclasses import dataclass, field

from permissions.validators import normalise_path
from tools.executors.base import NotRun

# Programs that lstat their arguments: given /dev/fd/N they would describe the link.
METADATA_PROGRAMS = frozenset({"du", "find", "stat", "ls", "namei"})
_O_PATH = getattr(os, "O_PATH", 0)
_DIR_FLAGS = _O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_LEAF_FLAGS = _O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC | (0 if _O_PATH else os.O_RDONLY | os.O_NONBLOCK)
_FD_NAME = re.compile(rb"/dev/fd/([0-9]+)(/?)")
# What the end of a chunk may hold of an unfinished descriptor name: kept back until more comes.
_PARTIAL = re.compile(rb"/(?:d(?:e(?:v(?:/(?:f(?:d(?:/(?:[0-9]+/?)?)?)?)?)?)?)?)?")
_HOLD = 32


class PathRefused(NotRun):
    """A path argument is a link, is missing, or is neither a file nor a folder: nothing ran."""


def _refuse(message: str) -> PathRefused:
    return PathRefused(f"{message}; squads never follows links in paths, so nothing was run")


def _kind(mode: int) -> str:
    for test, name in ((stat.S_ISFIFO, "named pipe"), (stat.S_ISSOCK, "socket"), (stat.S_ISCHR, "character device"),
                       (stat.S_ISBLK, "block device"), (stat.S_ISLNK, "symbolic link")):
        if test(mode):
            return name
    return "special file"


def _link_target(name: str, dir_fd: int) -> str | None:
    """Where ``name`` in ``dir_fd`` points when it is a link, else None."""
    try:
        if stat.S_ISLNK(os.lstat(name, dir_fd=dir_fd).st_mode):
            return os.readlink(name, dir_fd=dir_fd)
    except OSError:
        return None
    return None


def _fd_link_target(fd: int) -> str:
    """Where the link opened as ``fd`` (``O_PATH|O_NOFOLLOW``) points; its name may already be reused."""
    try:
        return os.readlink("", dir_fd=fd)  # readlinkat(fd, ""): the link itself, not its current name
    except (OSError, ValueError):
        return "(a target that could not be read)"


@dataclass
class Opened:
    """One path argument opened without links: its descriptor, its pinned parent and what it is."""

    path: str  # normalised, as the policy checked it
    fd: int
    parent_fd: int | None
    name: str
    is_dir: bool


def open_no_follow(value: str) -> Opened:
    """Open ``value`` component by component from ``/``, refusing any link on the way."""
    norm = normalise_path(value)
    if norm is None:
        raise PathRefused(f"{value!r} is not an absolute path without '..'; nothing was run")
    parts = [p for p in norm.split("/") if p]
    dir_fd = os.open("/", _DIR_FLAGS)
    walked = ""
    try:
        for i, part in enumerate(parts):
            last = i == len(parts) - 1
            here = f"{walked}/{part}"
            try:
                fd = os.open(part, _LEAF_FLAGS if last else _DIR_FLAGS, dir_fd=dir_fd)
            except OSError as exc:
                target = _link_target(part, dir_fd)
                if target is not None:
                    where = "" if here == norm else f" (in {norm})"
                    raise _refuse(f"{here} is a symbolic link to {target}{where}") from None
                if exc.errno == errno.ENOTDIR and not last:
                    raise PathRefused(f"{here} is not a folder (in {norm}); nothing was run") from None
                raise PathRefused(f"cannot open {here}: {exc.strerror}; nothing was run") from None
            if last:
                return _check_leaf(norm, fd, dir_fd, part)
            os.close(dir_fd)
            dir_fd, walked = fd, here
        return Opened(path=norm, fd=dir_fd, parent_fd=None, name="", is_dir=True)  # value is "/"
    except BaseException:
        os.close(dir_fd)
        raise


def _check_leaf(norm: str, fd: int, parent_fd: int, name: str) -> Opened:
    try:
        info = os.fstat(fd)
        mode = info.st_mode
        if stat.S_ISLNK(mode):
            raise _refuse(f"{norm} is a symbolic link to {_fd_link_target(fd)}")
        if not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):
            raise PathRefused(f"{norm} is a {_kind(mode)}, not a regular file or folder; nothing was run")
        if stat.S_ISREG(mode):
            _check_hard_links(norm, info, os.fstat(parent_fd))
        # No check of the descriptor's current name: the walk from '/' without links is the proof
        # that this file was at ``norm`` when opened; a rename since (log rotation) changes nothing.
    except BaseException:
        os.close(fd)
        raise
    return Opened(path=norm, fd=fd, parent_fd=parent_fd, name=name, is_dir=stat.S_ISDIR(mode))


def _check_hard_links(norm: str, file: os.stat_result, folder: os.stat_result) -> None:
    """Refuse a file with other names when its folder is writable by someone but the file's owner.

    A hard link is no link to ``O_NOFOLLOW``: it *is* the file. Whoever can write a
    folder (postgres in ``/var/log/postgresql``) could give ``/etc/shadow`` a second
    name there. Linux stops that when ``fs.protected_hardlinks`` is 1 (the default:
    only a file's owner, or someone who may read and write it, can link it), but a
    machine may turn it off, so the executor does not rely on it."""
    others_write = folder.st_uid != file.st_uid or folder.st_mode & (stat.S_IWGRP | stat.S_IWOTH)
    if file.st_nlink > 1 and others_write:
        raise PathRefused(
            f"{norm} has {file.st_nlink} hard links and its folder can be written by users other than the "
            f"file's owner (uid {file.st_uid}), so it may be another file's second name; nothing was run. "
            "Read the file under its only name, or ask the file's owner to remove the extra link"
        )


@dataclass
class PinnedArgv:
    """An argv whose path arguments name open descriptors; ``close()`` when the program has ended."""

    argv: list[str]
    fds: tuple[int, ...] = ()
    names: dict[int, str] = field(default_factory=dict)  # descriptor -> path shown in output
    opened: list[str] = field(default_factory=list)  # one line per path, for the audit record

    def rewriter(self) -> OutputRewriter | None:
        """A rewriter that maps the descriptors back to paths, or None when there are none."""
        return OutputRewriter(self.names) if self.names else None

    def close(self) -> None:
        for fd in self.fds:
            try:
                os.close(fd)
            except OSError:
                pass


def pin_paths(argv: Sequence[str], path_args: Sequence[tuple[int, str]], *, program: str) -> PinnedArgv:
    """``argv`` with each path argument (index, value as written) replaced by its open descriptor.

    Raises ``PathRefused`` (and closes what it opened) when any of them is a link,
    is missing, or is neither a regular file nor a folder."""
    pinned = PinnedArgv(argv=list(argv))
    fds: list[int] = []
    try:
        for index, value in path_args:
            token = pinned.argv[index] if 0 <= index < len(pinned.argv) else ""
            if not token.endswith(value):
                raise PathRefused(f"path argument {value!r} is not at position {index} of the command; nothing was run")
            opened = open_no_follow(value)
            fds.append(opened.fd)
            if opened.parent_fd is not None:
                if opened.is_dir or program not in METADATA_PROGRAMS:
                    os.close(opened.parent_fd)  # only a metadata program's file is named through its folder
                else:
                    fds.append(opened.parent_fd)
            if opened.is_dir:
                name = f"/dev/fd/{opened.fd}/"
                pinned.names[opened.fd] = opened.path
            elif program in METADATA_PROGRAMS:
                assert opened.parent_fd is not None
                name = f"/dev/fd/{opened.parent_fd}/{opened.name}"
                pinned.names[opened.parent_fd] = posixpath.dirname(opened.path)
            else:
                name = f"/dev/fd/{opened.fd}"
                pinned.names[opened.fd] = opened.path
            pinned.argv[index] = token[: len(token) - len(value)] + name
            st = os.fstat(opened.fd)
            what = "folder" if opened.is_dir else "file"
            pinned.opened.append(f"{opened.path}: {what} opened without following links "
                                 f"(device {st.st_dev}, inode {st.st_ino}), given as {name}")
    except BaseException:
        for fd in fds:
            os.close(fd)
        raise
    pinned.fds = tuple(fds)
    return pinned


class OutputRewriter:
    """Maps ``/dev/fd/N`` names back to the paths they stand for, across chunk boundaries."""

    def __init__(self, names: dict[int, str]) -> None:
        """``names``: descriptor number -> normalised path."""
        self._names = {str(fd).encode(): path.encode() for fd, path in names.items()}
        self._held = b""

    def _sub(self, match: re.Match[bytes]) -> bytes:
        base = self._names.get(match.group(1))
        if base is None:
            return match.group(0)
        after = match.string[match.end() : match.end() + 1]
        if match.group(2) and after and after not in b" \t\n\0'\":":
            return base if base == b"/" else base + b"/"  # the folder's name, then an entry in it
        return base

    def feed(self, chunk: bytes) -> bytes:
        """The rewritten part of what came so far; an unfinished name at the end waits for more."""
        data = self._held + chunk
        cut = len(data)
        for start in range(max(0, len(data) - _HOLD), len(data)):
            if data[start] == 0x2F and _PARTIAL.fullmatch(data, start):
                cut = start
                break
        self._held = data[cut:]
        return _FD_NAME.sub(self._sub, data[:cut])

    def flush(self) -> bytes:
        """Whatever was held back, rewritten."""
        data, self._held = self._held, b""
        return _FD_NAME.sub(self._sub, data)
