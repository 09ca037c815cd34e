"""Text for people: nothing in it can move the cursor, hide what was printed or pose as other text.

Command output, argv and names reach terminals, Markdown and HTML pages; each helper here
shows control, bidi, zero-width and other invisible characters as ``\\uXXXX`` instead of
letting them act."""

from __future__ import annotations

from collections.abc import Sequence

__all__ = ["display_argv", "display_lines", "display_text"]

# Printable to Python but invisible or look-alike on a terminal.
_INVISIBLE = frozenset("\u034f\u115f\u1160\u17b4\u17b5\u2800\u3164\uffa0")


def _escape(ch: str) -> str:
    if ch.isprintable() and ch not in _INVISIBLE:
        return ch
    code = ord(ch)
    if code > 0xFFFF:  # JSON spells astral characters as a surrogate pair
        code -= 0x10000
        return f"\\u{0xD800 + (code >> 10):04x}\\u{0xDC00 + (code & 0x3FF):04x}"
    return f"\\u{code:04x}"


def display_text(value: str) -> str:
    """``value`` with control, bidi, zero-width and other invisible characters as ``\\uXXXX``."""
    if value.isprintable() and _INVISIBLE.isdisjoint(value):
        return value
    return "".join(_escape(ch) for ch in value)


def display_lines(text: str) -> str:
    """Multi-line ``text`` for a terminal or a Markdown block: tabs as spaces, and on each line every
    control, escape and invisible character as ``\\uXXXX`` (a ``\\r`` or an ANSI sequence from
    command output can neither end a block, move the cursor nor hide what was printed above it)."""
    return "\n".join(display_text(line.replace("\t", "    ")) for line in text.split("\n"))


def display_argv(argv: Sequence[str]) -> str:
    """A JSON array for humans in which nothing can spoof the terminal.

    Control, bidi, zero-width and other invisible characters are escaped as
    ``\\uXXXX``; the result still parses back to ``argv`` as JSON.
    """
    quoted = ('"' + display_text(a.replace("\\", "\\\\").replace('"', '\\"')) + '"' for a in argv)
    return "[" + ", ".join(quoted) + "]"
