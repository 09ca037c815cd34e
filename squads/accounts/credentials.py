"""The one way Squads makes and checks secrets (node tokens, API tokens)."""

from __future__ import annotations

import hashlib
import hmac
import secrets

# A decoy for lookups that found nothing, so a miss costs the same as a wrong secret.
_DECOY = hashlib.sha256(b"\0no such credential").hexdigest()


def new_secret() -> str:
    """256 random bits, URL-safe. A fast hash is enough to store them: nothing to brute-force."""
    return secrets.token_urlsafe(32)


def secret_hash(secret: str) -> str:
    """What is stored instead of the secret."""
    return hashlib.sha256(secret.encode()).hexdigest()


def matches(stored: str | None, secret: str) -> bool:
    """Constant-time comparison of ``secret`` with a stored hash (None: nothing was found)."""
    return hmac.compare_digest(stored if stored is not None else _DECOY, secret_hash(secret)) and stored is not None
