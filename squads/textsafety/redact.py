"""Secret redaction for everything a transcript stores or shows.

Command outputs and chat messages pass through :func:`redact` (or :func:`redact_value`
for structured payloads) before they are written or displayed. Each secret is replaced
by ``[REDACTED:<kind>]``; the text around it is left exactly as it was, so a redacted
``kubectl describe`` or ``env`` output stays readable.

Design notes:

* Every rule is a precompiled regex that runs in linear time: each pattern has a fixed
  or boundary-anchored start (a lookbehind stops it from restarting inside a run of
  token characters), and the repeats that could otherwise backtrack are possessive or
  bounded. A 1 MB adversarial input is part of the test suite.
* Where a rule names a group, only that group is replaced (the password in a URL, the
  value of ``password=...``, the token after ``Bearer``); otherwise the whole match is.
* Spans found by different rules are merged when they overlap, so a secret matched by
  two rules is never half-shown. The kind of a merged span is the one of its earliest
  part, the most specific rule first (``private_key`` over ``password_assignment``).
* Redaction is idempotent: no rule matches a ``[REDACTED:...]`` marker, and the search is
  repeated on the redacted text until it finds nothing new (see :func:`find_secrets`).
"""

from __future__ import annotations

import base64
import binascii
import re
from bisect import bisect_right
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache

__all__ = ["KINDS", "Redaction", "find_secrets", "redact", "redact_value"]

KINDS: tuple[str, ...] = (
    "private_key",
    "password_hash",
    "aws_access_key",
    "aws_secret_key",
    "gcp_key",
    "github_token",
    "slack_token",
    "bearer_token",
    "url_password",
    "password_assignment",
)


@dataclass(frozen=True)
class Redaction:
    """A secret found in a text: its kind and its span ``[start, end)`` in the original text."""

    kind: str
    start: int
    end: int


# A value that is already a redaction marker (or a kubectl placeholder such as
# "<set to the key 'password' in secret 'db'>") is not a secret.
_NOT_MARKER = r"(?!\[REDACTED:)"
# Characters of an RFC 6750 b64token (the "=" padding comes after).
_TOKEN = r"[A-Za-z0-9._~+/\-]++=*+"
# Key/value separator: optional closing quote of the key (JSON, escaped JSON, Python repr),
# then ":", "::" (LDIF), "=", or "=>" with optional blanks around it (never a newline).
# Atomic, so a value refused by a guard is not retried from a shorter separator.
_SEP = r"""(?>(?:\\?["'])?[ \t]*+(?:=>|::?|=)[ \t]*+)"""

_NSS_SOURCES = "files|compat|systemd|sss|ldap|nis|nisplus|db|winbind|extrausers|cache|hesiod|resolve|dns|myhostname"
# Guards at the start of a password_assignment value.
_PW_GUARD = (
    _NOT_MARKER
    + r"(?!<)"
    # `PWD=/root`, `OLDPWD=~` in `env` output are directories, not passwords.
    + r"(?(pwd)(?![/~]))"
    # `passwd:   files systemd` in /etc/nsswitch.conf.
    + rf"(?(passwd)(?!(?:{_NSS_SOURCES})(?![A-Za-z0-9_-])))"
)
_ENV_GUARD = _NOT_MARKER + r"(?!<)"


def _value(guard: str) -> str:
    """A password_assignment value: a double- or single-quoted string on one line, or a bare
    word that ends at whitespace, a quote, ";" or "&" (a "\\" is kept unless it escapes a quote)."""
    return (
        r'(?:"' + guard + r'(?P<dq>[^"\r\n]++)"'
        r"|'" + guard + r"(?P<sq>[^'\r\n]++)'"
        r"""|\\?["'`]?""" + guard + r"""(?P<bare>(?:[^\s"'`;&\\]|\\(?!["']))++))"""
    )


_PW_GROUPS = ("dq", "sq", "bare")

_PASSWORD_KEYWORD = (
    r"(?:"
    # password / passwd may follow anything but "/" (PGPASSWORD, userPassword, db_passwd),
    # which keeps `/etc/passwd:root:x:0:0:...` (grep output) out.
    r"(?<!/)(?i:password|(?P<passwd>passwd))"
    # the other words need a boundary on the left (OLDPWD, mysecret stay out) ...
    # (SECRET_KEY, SECRET_KEY_BASE, WireGuard's PrivateKey are values of the same sort) ...
    r"|(?<![A-Za-z0-9/])(?i:(?P<pwd>pwd)|secret(?:[_-]?key(?:[_-]?base)?)?|api[_-]?key|private[_-]?key)"
    # ... or a camelCase one (clientSecret, xApiKey, sshPrivateKey).
    r"|(?<=[a-z0-9])(?:(?:Secret|SECRET)(?:[_-]?(?:Key|KEY))?|Api[_-]?[Kk]ey|API[_-]?KEY|Private[_-]?Key)"
    r")"
)

# Kubernetes env entries whose name says what the value is: YAML `- name: DB_PASSWORD`
# followed by `value: ...`, and the compact JSON form of kubectl's last-applied-configuration.
# (The lookahead finds the keyword with one forward scan; the name itself is then taken
# possessively, so a long name without a newline after it fails in linear time.)
_ENV_NAME = r"(?=[A-Za-z0-9_.\-]*?(?i:password|passwd|secret|token|api[_-]?key))[A-Za-z0-9_.\-]++"


def _token_like(value: str) -> bool:
    """A credential rather than a word: long, or at least 8 characters with a digit."""
    return len(value) >= 20 or (len(value) >= 8 and any(c.isdigit() for c in value))


def _hash_field(value: str) -> bool:
    """A shadow/passwd password field that holds a hash, not a lock marker ('x', '*', '!', '!!', '*LK*')."""
    return value.lstrip("!") not in ("", "x", "*") and not value.startswith("*")


# crypt(3) ids (md5, bcrypt, sha256/512, scrypt, yescrypt, gost-yescrypt), Apache's apr1,
# and the PHC/passlib ids (argon2, pbkdf2, scrypt).
_HASH_ID = r"(?:1|2[abxy]?|5|6|7|y|gy|sha1|md5|apr1|argon2(?:id|i|d)|pbkdf2(?:-sha(?:1|256|512))?|scrypt)"
# A shadow line (name:hash:7 numeric-or-empty fields) or a passwd line with the hash still in it.
_LOGIN = r"(?m)^[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}+\$?:(?P<v>" + _NOT_MARKER + r"[^:\s]++)"


def _basic_credentials(value: str) -> bool:
    """HTTP Basic credentials: base64 of ``user:password`` (anything else after "Basic" is prose)."""
    try:
        decoded = base64.b64decode(value + "=" * (-len(value) % 4), validate=True).decode("utf-8")
    except (binascii.Error, ValueError):
        return False
    return ":" in decoded and decoded.isprintable()


def _not_scheme_word(value: str) -> bool:
    return value.lower() not in {"bearer", "basic", "token", "digest", "negotiate", "ntlm"}


Validator = Callable[[str], bool]


@dataclass(frozen=True)
class _Rule:
    kind: str
    pattern: re.Pattern[str]
    groups: tuple[str, ...] = ()  # the first group that took part is the secret; () = the whole match
    validate: Validator | None = None


def _rule(kind: str, pattern: str, groups: tuple[str, ...] = (), validate: Validator | None = None,
          flags: int = 0) -> _Rule:
    return _Rule(kind, re.compile(pattern, flags), groups, validate)


# Order matters only as a tie-break: for two spans with the same start and end, the
# earlier (more specific) rule gives the kind.
_RULES: tuple[_Rule, ...] = (
    # PEM and OpenSSH private keys, the whole block; an unterminated block runs to the end
    # of the text. Inside JSON (GCP service-account keys) the newlines are "\n" escapes,
    # which the lazy scan crosses the same way. CERTIFICATE / PUBLIC KEY blocks do not match.
    _rule(
        "private_key",
        r"-----BEGIN[A-Z0-9 ]{0,40}PRIVATE KEY(?: BLOCK)?-----"
        r"(?:.*?-----END[A-Z0-9 ]{0,40}PRIVATE KEY(?: BLOCK)?-----|.*+)",
        flags=re.DOTALL,
    ),
    # PuTTY keys: the private lines and their MAC (the public part and the header stay); one
    # without its MAC (cut off) runs to the end of the text, like an unterminated PEM block.
    _rule(
        "private_key",
        r"(?m)^Private-Lines:[ \t]*+[0-9]++(?:.*?^Private-MAC:[^\n]*+|.*+)",
        flags=re.DOTALL,
    ),
    # Password hashes: `$id$[params$]salt$hash` (each part bounded and free of "$", so a run of
    # "$" costs a bounded scan per start), LDAP `{SSHA}...`, and the password field of
    # shadow- or passwd-shaped lines (DES crypt has no "$"), unless it is a lock marker.
    _rule(
        "password_hash",
        r"(?<![A-Za-z0-9$./])\$" + _HASH_ID + r"\$(?:[A-Za-z0-9./+=,-]{1,64}+\$){1,4}+[A-Za-z0-9./+=]{16,}+",
    ),
    _rule(
        "password_hash",
        r"(?<![A-Za-z0-9])\{(?:SSHA|SSHA256|SSHA512|SHA|SHA256|SHA512|SMD5|MD5|CRYPT|PBKDF2[A-Z0-9-]{0,10})\}"
        r"[A-Za-z0-9+/=$./]{8,}+",
    ),
    _rule("password_hash", _LOGIN + r"(?::[0-9]*+){7}[ \t\r]*+$", groups=("v",), validate=_hash_field),
    _rule("password_hash", _LOGIN + r":[0-9]++:[0-9]++(?::[^:\n]*+){3}$", groups=("v",), validate=_hash_field),
    _rule("aws_access_key", r"(?<![A-Za-z0-9])(?:AKIA|ASIA)[A-Z0-9]{16}(?![A-Za-z0-9])"),
    _rule(
        "aws_secret_key",
        r"(?<![A-Za-z0-9])(?i:(?:aws[_-]?)?secret[_-]?(?:access[_-]?)?key)" + _SEP
        + r"""(?:\\?["'])?(?P<v>[A-Za-z0-9/+=]{40})(?![A-Za-z0-9/+=])""",
        groups=("v",),
    ),
    _rule("gcp_key", r"(?<![A-Za-z0-9_\-])AIza[0-9A-Za-z_\-]{35}(?![A-Za-z0-9_\-])"),
    _rule(
        "github_token",
        r"(?<![A-Za-z0-9_])(?:gh[pousr]_[A-Za-z0-9]{36,}+|github_pat_[A-Za-z0-9_]{22,}+)",
    ),
    _rule("slack_token", r"(?<![A-Za-z0-9\-])xox[abprs]-[A-Za-z0-9\-]{10,}+"),
    # JSON Web Tokens anywhere (service-account tokens, OIDC id-tokens, ...).
    _rule(
        "bearer_token",
        r"(?<![A-Za-z0-9_\-])eyJ[A-Za-z0-9_\-]++\.[A-Za-z0-9_\-]++\.[A-Za-z0-9_\-]++",
    ),
    # `Authorization: Bearer|Basic|Token <credential>` headers (curl -v, HTTP logs).
    _rule(
        "bearer_token",
        r"""(?<![A-Za-z0-9_\-])(?i:(?:proxy-)?authorization)"""
        + _SEP
        + r"""(?:\\?["'])?(?:(?i:bearer|basic|token)[ \t]++)?"""
        + _NOT_MARKER
        + r"(?P<v>" + _TOKEN + ")",
        groups=("v",),
        validate=_not_scheme_word,
    ),
    # `bearer <token>` anywhere; the word stays, the token goes. Prose ("a bearer token")
    # is left alone by _token_like.
    _rule(
        "bearer_token",
        r"(?<![A-Za-z0-9_\-])(?i:bearer)[ \t]++" + _NOT_MARKER + r"(?P<v>" + _TOKEN + ")",
        groups=("v",),
        validate=_token_like,
    ),
    # kubeconfig / `kubectl describe secret` / JSON: `token: ...`, `access_token=...`,
    # `"SessionToken": "..."`, and kubeconfig `client-key-data: ...`.
    _rule(
        "bearer_token",
        r"(?:(?<![A-Za-z0-9])(?i:token)|(?<=[a-z0-9])(?:Token|TOKEN))" + _SEP
        + r"""(?:\\?["'])?""" + _NOT_MARKER + r"(?P<v>" + _TOKEN + ")",
        groups=("v",),
        validate=_token_like,
    ),
    _rule(
        "bearer_token",
        r"""(?<![A-Za-z0-9_\-])(?i:client-key-data)""" + _SEP + r"""(?:\\?["'])?(?P<v>[A-Za-z0-9+/]++=*+)""",
        groups=("v",),
    ),
    # scheme://user:password@host -> only the password. Needs the "@": host:port never matches.
    _rule(
        "url_password",
        r"(?<![A-Za-z0-9+.\-])[A-Za-z][A-Za-z0-9+.\-]*+://"
        r"""[^\s:/?#@"'<>\[\]]*+:""" + _NOT_MARKER + r"""(?P<v>[^\s/"'<>]+)@""",
        groups=("v",),
    ),
    # HTTP Basic credentials wherever they are logged ("Basic dXNlcjpwYXNz" in an access log).
    _rule(
        "bearer_token",
        r"(?<![A-Za-z0-9_\-])(?i:basic)[ \t]++(?P<v>[A-Za-z0-9+/]{8,}+={0,2}+)(?![A-Za-z0-9+/=])",
        groups=("v",),
        validate=_basic_credentials,
    ),
    _rule("password_assignment", _PASSWORD_KEYWORD + _SEP + _value(_PW_GUARD), groups=_PW_GROUPS),
    # A .pgpass line, hostname:port:database:username:password (":" and "\" escaped by "\"); a
    # host is a name, an address, "*" or a socket folder, never only digits (times, counters).
    _rule(
        "password_assignment",
        r"(?m)^(?![0-9]++:)(?:[^\s:#\\]|\\.)(?:[^\s:\\]|\\.){0,254}+:(?:[0-9]{1,5}+|\*):[^\s:]{1,64}+:[^\s:]{1,64}+:"
        r"(?P<v>" + _NOT_MARKER + r"(?:[^\\:\r\n]|\\.)++)\r?$",
        groups=("v",),
    ),
    _rule(
        "password_assignment",
        r"(?<![A-Za-z0-9_\-])(?i:name)[ \t]*+:[ \t]*+[\"']?" + _ENV_NAME + r"[\"']?[ \t]*+\r?\n"
        r"[ \t]*+(?i:value)[ \t]*+:[ \t]*+" + _value(_ENV_GUARD),
        groups=_PW_GROUPS,
    ),
    _rule(
        "password_assignment",
        r'"name"[ \t]*+:[ \t]*+"' + _ENV_NAME + r'"[ \t]*+,[ \t]*+"value"[ \t]*+:[ \t]*+"'
        + _NOT_MARKER + r'(?P<v>(?:[^"\\\r\n]|\\.)++)"',
        groups=("v",),
    ),
)

# The end of a private key whose beginning is not in the text (`tail -n 3 key.pem`, output cut
# at the front): the key lines before it are walked back from it (see _key_tails).
_KEY_END = re.compile(r"-----END[A-Z0-9 ]{0,40}PRIVATE KEY(?: BLOCK)?-----|(?m:^Private-MAC:)")
_KEY_LINE = re.compile(r"[A-Za-z0-9+/=]*+|(?:Proc-Type|DEK-Info|Private-Lines): [^\n]*+")
_B64_CHARS = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/="


def _key_tails(text: str) -> list[tuple[int, int]]:
    """Spans from the first key line before each key end marker to the marker's end.

    Lines end at a newline or at the two characters backslash-n (JSON). A walk stops at
    the first line that is not a key line (keeping that line's trailing base64 run, the
    key's first line after a quote) or at the previous marker; each separator is searched
    for once, so the scan is linear."""
    spans: list[tuple[int, int]] = []
    floor = 0
    for match in _KEY_END.finditer(text):
        start = pos = match.start()
        newline = text.rfind("\n", floor, pos)
        escaped = text.rfind("\\n", floor, pos)
        while pos > floor:
            if escaped > newline:
                line_start, cut = escaped + 2, escaped
            else:
                line_start, cut = (newline + 1, newline) if newline >= 0 else (floor, -1)
            line = text[line_start:pos]
            core = line[:-2] if line.endswith("\\r") else line.rstrip("\r")
            if not _KEY_LINE.fullmatch(core):
                run = len(core[len(core.rstrip(_B64_CHARS)):].lstrip("="))  # "=" only ends base64
                start = line_start + len(core) - run if run else start
                break
            start = line_start
            if cut < 0 or core.startswith("Private-Lines:"):  # a PuTTY key's private part starts there
                break
            pos = cut
            if newline >= pos:
                newline = text.rfind("\n", floor, pos)
            if escaped >= pos - 1:
                escaped = text.rfind("\\n", floor, pos)
        if sum(c.isalnum() for c in text[start:match.start()]) >= 16:
            end = match.end()
            if not match.group(0).startswith("-"):  # Private-MAC: to the end of its line
                line_end = text.find("\n", end)
                end = len(text) if line_end < 0 else line_end
            spans.append((start, end))
        floor = match.end()
    return spans


def _candidates(text: str) -> list[tuple[int, int, int, str]]:
    """Every span any rule finds, as (start, end, rule priority, kind)."""
    found: list[tuple[int, int, int, str]] = [(start, end, 0, "private_key") for start, end in _key_tails(text)]
    for priority, rule in enumerate(_RULES):
        pos = 0
        while True:
            match = rule.pattern.search(text, pos)
            if match is None:
                break
            start, end = match.span()
            for group in rule.groups:
                if match.group(group) is not None:
                    start, end = match.span(group)
                    break
            if end > start and (rule.validate is None or rule.validate(text[start:end])):
                found.append((start, end, priority, rule.kind))
                pos = match.end()
            else:
                # A rejected candidate is short (validators only reject short values), so
                # retrying one character later keeps the scan linear and misses nothing.
                pos = match.start() + 1
    return found


def _merge(candidates: list[tuple[int, int, int, str]]) -> list[Redaction]:
    """Union of overlapping spans; a merged span takes the kind of its earliest, most specific, longest part."""
    merged: list[Redaction] = []
    for start, end, _priority, kind in sorted(candidates, key=lambda c: (c[0], c[2], -c[1])):
        if merged and start < merged[-1].end:
            last = merged[-1]
            if end > last.end:
                merged[-1] = Redaction(last.kind, last.start, end)
            continue
        merged.append(Redaction(kind, start, end))
    return merged


def _marker(kind: str) -> str:
    return f"[REDACTED:{kind}]"


def _replace(text: str, secrets: list[Redaction]) -> tuple[str, list[tuple[int, int, int, int, bool]]]:
    """The redacted text, and its pieces as (redacted start, redacted end, original start, original end, is marker)."""
    parts: list[str] = []
    pieces: list[tuple[int, int, int, int, bool]] = []
    pos = out = 0
    for secret in secrets:
        if secret.start > pos:
            parts.append(text[pos:secret.start])
            pieces.append((out, out + secret.start - pos, pos, secret.start, False))
            out += secret.start - pos
        marker = _marker(secret.kind)
        parts.append(marker)
        pieces.append((out, out + len(marker), secret.start, secret.end, True))
        out += len(marker)
        pos = secret.end
    if pos < len(text):
        parts.append(text[pos:])
        pieces.append((out, out + len(text) - pos, pos, len(text), False))
    return "".join(parts), pieces


# Passes of find-and-redact; see find_secrets.
_MAX_PASSES = 4


def find_secrets(text: str) -> list[Redaction]:
    """The secrets in ``text``: non-overlapping spans of the original text, sorted by start.

    The rules need a boundary before a token (for speed and precision), so a secret glued
    to the end of another one (``-----END PRIVATE KEY-----eyJ...``) only shows once the first
    is replaced. The search is therefore repeated on the redacted text, and what it finds
    there is mapped back to the original, until nothing new turns up; this is also what makes
    ``redact`` idempotent. The second pass runs only when the first found something.
    """
    secrets = _merge(_candidates(text))
    for _ in range(_MAX_PASSES - 1):
        if not secrets:
            break
        redacted, pieces = _replace(text, secrets)
        extra = _candidates(redacted)
        if not extra:
            break
        starts = [piece[0] for piece in pieces]
        mapped: list[tuple[int, int, int, str]] = []
        for start, end, priority, kind in extra:
            first = pieces[bisect_right(starts, start) - 1]
            last = pieces[bisect_right(starts, end - 1) - 1]
            orig_start = first[2] if first[4] else first[2] + start - first[0]
            orig_end = last[3] if last[4] else last[2] + end - last[0]
            mapped.append((orig_start, orig_end, priority, kind))
        before = secrets
        secrets = _merge([(s.start, s.end, -1, s.kind) for s in secrets] + mapped)
        if secrets == before:
            break
    return secrets


def redact(text: str) -> tuple[str, list[str]]:
    """``text`` with every secret replaced by ``[REDACTED:<kind>]``, and the kinds found, in order."""
    secrets = find_secrets(text)
    if not secrets:
        return text, []
    return _replace(text, secrets)[0], [secret.kind for secret in secrets]


SHORT = 256  # event fields this short (an argv word, a node, a status) repeat constantly: remembered


@lru_cache(maxsize=8192)
def _redacted_short(text: str) -> str:
    # redact is a pure function of its text, so a short string seen before (every transcript event
    # carries the same names and argv words) is not searched again.
    return redact(text)[0]


def redact_value(value: object) -> object:
    """Redact every string inside nested dicts, lists and tuples (dict keys are left as they are).

    Returns new containers; any other type is returned unchanged.
    """
    if isinstance(value, str):
        return _redacted_short(value) if len(value) <= SHORT else redact(value)[0]
    if isinstance(value, dict):
        return {key: redact_value(item) for key, item in value.items()}
    if isinstance(value, list):
        return [redact_value(item) for item in value]
    if isinstance(value, tuple):
        items = [redact_value(item) for item in value]
        if hasattr(value, "_fields"):  # a namedtuple keeps its type
            make: Callable[..., object] = type(value)
            return make(*items)
        return tuple(items)
    return value
