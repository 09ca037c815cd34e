"""Telling a command the user names ("run kubectl get pods -n x") from prose.

``shlex`` only splits words here: nothing is ever handed to a shell.
"""

from __future__ import annotations

import os
import re
import shlex

from squads.brain.extract import STOPWORDS
from permissions.programs import known_programs, load_programs

EXPLICIT = re.compile(r"^\s*(?:please\s+)?(?:run|execute|exec)\s*:?\s+(?P<cmd>.+?)\s*$", re.IGNORECASE | re.DOTALL)
# "now run kubectl ...", "can you run `df -h`": a command named mid-sentence, taken only when
# its first word is a program the policy knows (so "run the diagnostics" stays prose).
EXPLICIT_INNER = re.compile(
    r"\b(?:run|execute|do|try|type)\s*:?\s+(?P<cmd>[a-z0-9_./-]+(?:\s.*)?)$", re.IGNORECASE | re.DOTALL
)
BACKTICKS = re.compile(r"`(?P<cmd>[^`]+)`")
# Words that end a command typed straight into the chat (no program takes them as arguments here).
PROSE_TAIL = frozenset(
    "on pls plz please thanks thx asap because since after before and but so for it's its is was the a an "
    "to from then again now".split()
)
PROSE = frozenset("diagnostics diagnostic checks check tests test it them this that a some again now into onto".split())


def explicit_command(text: str, programs: set[str]) -> list[str] | None:
    """The argv of a command the user names, or None for prose.

    A command is ``run ...``/``execute ...`` (also mid-sentence: "now run
    kubectl ..."), text in backticks, or a message that starts with one of the
    squad's (or any known) programs followed by a flag or one of its
    subcommands ("df -h", "kubectl get pods"), so "nginx on web-2 will not start" and "last night
    ..." stay prose. After ``run`` the first word must be a known program, a
    path, or be followed by a flag ("run rm -rf /" is a command, and is
    refused by the policy); "run the diagnostics" is prose. ``shlex`` only
    splits words here: nothing is ever handed to a shell.
    """
    prefixed = EXPLICIT.match(text)
    quoted = None if prefixed else BACKTICKS.search(text)
    named = prefixed or quoted or EXPLICIT_INNER.search(text)
    candidate = named.group("cmd") if named else text.strip()
    try:
        argv = shlex.split(candidate)
    except ValueError:
        # Unbalanced quotes. "run a setuid audit on bob's box" is prose; "run kubectl logs "x" is a
        # command attempt, kept as one argument that no program is called as, so the policy refuses it.
        first = candidate.split()[0] if candidate.split() else ""
        return [candidate] if (prefixed or quoted) and os.path.basename(first) in known_programs() else None
    if not argv:
        return None
    program = os.path.basename(argv[0])
    known = argv[0] in programs or program in known_programs()
    if named:
        # "run X ..." at the start of a message is a command unless X is an ordinary word of prose
        # ("run the diagnostics"); the policy then says what is wrong with it. In backticks or
        # mid-sentence (a pasted error message, "now run ..."), only a known program or a path counts.
        if known or (prefixed and (argv[0].startswith("/") or not _prose_word(argv[0]))):
            return argv
        return None
    if known and len(argv) > 1 and (argv[1].startswith("-") or _is_subcommand(program, argv[1])):
        return _without_prose(argv)
    return None


def _without_prose(argv: list[str]) -> list[str]:
    """A command typed straight into the chat ends where the prose starts: "nginx -t on web-5 pls.
    reload failed" is ``nginx -t``; the rest is words about it (and "on web-5" names the node)."""
    kept = [argv[0]]
    for token in argv[1:]:
        bare = token.rstrip(".,;!?")
        if bare.lower() in PROSE_TAIL:
            break
        if bare:
            kept.append(bare)
        if bare != token:
            break
    return kept


def _prose_word(word: str) -> bool:
    lowered = word.lower()
    return lowered in STOPWORDS or lowered in PROSE or not re.fullmatch(r"[a-z0-9_./-]+", lowered)


def _is_subcommand(program: str, word: str) -> bool:
    spec = load_programs().get(program)
    return spec is not None and word in spec.root.subcommands
