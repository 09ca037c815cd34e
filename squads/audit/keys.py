"""The audit key: kept outside the database, it keys every record's MAC and signs checkpoints.

Whoever can write the database can recompute a plain SHA-256 chain, so the chain
alone cannot prove that records were not rewritten. Each record therefore also
carries an HMAC-SHA256 under a key the database never sees: from
``SQUADS_AUDIT_KEY`` (hex or base64), or from a key file (``SQUADS_AUDIT_KEY_FILE``,
default ``<data_dir>/audit.key``) created on first use with mode 0600. A key file
that others may read or write is refused. Each purpose (records, checkpoints,
transcript events) uses its own key derived from that one.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import os
import secrets
import stat
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from squads.settings.env import Settings

# Where a session factory carries its database's key (squads.storage.service.open_database puts it there).
SESSION_KEY = "audit_key"
MIN_KEY_BYTES = 32
_CANONICAL = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False)
_URLSAFE = str.maketrans("-_", "+/")
_loaded: dict[tuple[str | None, str], bytes] = {}


class AuditKeyError(RuntimeError):
    """The audit key is missing, malformed or not private; the message says how to fix it."""


def canonical_json(obj: Any) -> bytes:
    """The one byte form that is hashed and MACed: sorted keys, no spaces, UTF-8."""
    return _CANONICAL.encode(obj).encode("utf-8")


def parse_key(text: str, *, source: str) -> bytes:
    """A key written as hex or base64 (standard or URL-safe), at least 32 bytes."""
    text = text.strip()
    key: bytes | None = None
    try:
        key = bytes.fromhex(text)
    except ValueError:
        try:
            # Standard or URL-safe alphabet, strictly: a lenient decoder would skip junk characters.
            key = base64.b64decode(text.translate(_URLSAFE).encode("ascii"), validate=True)
        except (binascii.Error, ValueError):
            key = None
    if key is None:
        raise AuditKeyError(f"{source} is neither hex nor base64; generate one with `openssl rand -hex 32`")
    if len(key) < MIN_KEY_BYTES:
        raise AuditKeyError(
            f"{source} holds {len(key)} bytes; the audit key needs at least {MIN_KEY_BYTES} (`openssl rand -hex 32`)"
        )
    return key


def _check_private(path: Path, info: os.stat_result) -> None:
    if not stat.S_ISREG(info.st_mode):
        raise AuditKeyError(f"audit key file {path} is not a regular file; point SQUADS_AUDIT_KEY_FILE at one")
    if info.st_uid != os.geteuid():
        # Its owner can read it, and could have written a key of their choosing before squads
        # first started (a root-run squads would otherwise accept any user's 0600 file).
        raise AuditKeyError(
            f"audit key file {path} belongs to uid {info.st_uid}, not to the user squads runs as (uid "
            f"{os.geteuid()}); its owner can read the key and rewrite the audit log undetected. Run "
            f"`chown {os.geteuid()} {path}` if you trust that user, or start over with a new key file"
        )
    if info.st_mode & 0o077:
        raise AuditKeyError(
            f"audit key file {path} is open to group or others (mode {stat.S_IMODE(info.st_mode):04o}); anyone who "
            f"can read it can rewrite the audit log undetected. Run `chmod 600 {path}` (and keep it owned by the "
            "user squads runs as)"
        )


def _read(path: Path) -> bytes:
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        _check_private(path, os.fstat(fd))
        with os.fdopen(fd, "rb", closefd=False) as handle:
            raw = handle.read(4096)
    finally:
        os.close(fd)
    try:
        return parse_key(raw.decode("ascii"), source=f"audit key file {path}")
    except UnicodeDecodeError:
        raise AuditKeyError(f"audit key file {path} is not text; it should hold the key in hex") from None


def _create(path: Path) -> None:
    # Written in full under a private temporary name, then linked into place: link() fails if the
    # name exists, so two processes starting at once agree on one key and nobody reads half a file.
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    try:
        os.write(fd, (secrets.token_hex(MIN_KEY_BYTES) + "\n").encode("ascii"))
        os.fsync(fd)
    finally:
        os.close(fd)
    try:
        os.link(temporary, path)
    except FileExistsError:
        pass  # another process created it first; use theirs
    finally:
        temporary.unlink()


def load_key(*, key: str | None, key_file: Path) -> bytes:
    """The key from ``key`` when given, else from ``key_file``, which is created (0600) if absent."""
    if key:
        return parse_key(key, source="SQUADS_AUDIT_KEY")
    try:
        return _read(key_file)
    except FileNotFoundError:
        _create(key_file)
        return _read(key_file)
    except OSError as exc:
        raise AuditKeyError(f"cannot read audit key file {key_file}: {exc.strerror or exc}") from None


def settings_key(settings: Settings) -> bytes:
    """The audit key ``settings`` point at (loaded once per process and source)."""
    secret = settings.audit_key.get_secret_value() if settings.audit_key else None
    source = (secret, str(settings.effective_audit_key_file))
    if source not in _loaded:
        _loaded[source] = load_key(key=secret, key_file=settings.effective_audit_key_file)
    return _loaded[source]


def process_key() -> bytes:
    """The key of this process's settings (``SQUADS_*`` environment)."""
    from squads.settings.env import get_settings

    return settings_key(get_settings())


@lru_cache(maxsize=32)
def derive(key: bytes, purpose: str) -> bytes:
    """A separate key for each purpose, so a MAC made for one can never pass as another."""
    return hmac.new(key, b"squads/" + purpose.encode("ascii"), hashlib.sha256).digest()


def mac(key: bytes, purpose: str, data: bytes) -> str:
    """HMAC-SHA256 (hex) of ``data`` under ``key``'s subkey for ``purpose``."""
    return hmac.new(derive(key, purpose), data, hashlib.sha256).hexdigest()


def mac_ok(key: bytes, purpose: str, data: bytes, claimed: str | None) -> bool:
    """Whether ``claimed`` is the MAC of ``data`` (constant-time compare)."""
    return claimed is not None and hmac.compare_digest(mac(key, purpose, data), str(claimed))


def key_id(key: bytes) -> str:
    """A short public fingerprint of the key, to tell which key wrote a checkpoint (reveals nothing about it)."""
    return mac(key, "key-id", b"")[:16]


def session_key(source: Any) -> bytes:
    """The key a Session (or Connection) carries, else this process's key."""
    info = getattr(source, "info", None)
    if isinstance(info, dict) and isinstance(info.get(SESSION_KEY), bytes):
        return info[SESSION_KEY]
    return process_key()
