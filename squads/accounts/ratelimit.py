"""Sign-in throttling: counters in the database, checked and counted in one locked step.

Three counters apply to every attempt, each over a fixed window
(``SQUADS_SIGNIN_WINDOW_S``, 15 minutes by default):

- **account and address** (5): the tight one. Guessing one account from one
  address stops quickly, and only that pair is stopped: the account's owner at
  another address, and everyone else behind the same proxy, still sign in.
- **account** (30): bounds guessing one account from many addresses. It is
  higher, because anyone can use it to lock the account's owner out.
- **address** (100): against password spraying (a few guesses at many
  accounts). Much higher, because a whole office behind one proxy shares it.

An attempt takes a slot on every counter *before* the password is checked, all
in one transaction that holds the counters' rows locked (``SELECT ... FOR
UPDATE`` on PostgreSQL; SQLite's ``BEGIN IMMEDIATE`` locks the whole database).
So concurrent guesses cannot all pass the check, and several control planes on
one database share the counters. A successful sign-in gives its slot back and
clears the account-and-address counter.
"""

from __future__ import annotations

import ipaddress
import time
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import delete, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session, sessionmaker

from squads.storage.db import session_scope
from squads.accounts.models import SignInCounter


@dataclass(frozen=True)
class SignInLimits:
    """Attempts allowed per window for each counter (``SQUADS_SIGNIN_LIMIT_*``)."""

    account_address: int = 5
    account: int = 30
    address: int = 100
    window_s: float = 900.0
    clock: Callable[[], float] = time.time  # wall clock: replicas share the counters


def address_key(peer: str) -> str:
    """The address a counter is kept for: IPv6 by /64, since one host commonly holds a whole /64."""
    try:
        ip = ipaddress.ip_address(peer)
    except ValueError:
        return peer[:100]
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.ip_network(f"{ip}/64", strict=False))
    return str(ip)


def counters(*, username: str, peer: str, limits: SignInLimits) -> dict[str, int]:
    """Each counter's key for this attempt, with its limit."""
    name, where = username[:64].lower(), address_key(peer)
    return {f"pair:{name}@{where}": limits.account_address, f"user:{name}": limits.account, f"peer:{where}": limits.address}


def reserve(sessions: sessionmaker[Session], *, username: str, peer: str, limits: SignInLimits) -> float | None:
    """Take one attempt on every counter: None when the attempt may go on, else seconds to wait.

    A refused attempt takes nothing. Check and count are one transaction with
    the rows locked, in key order so that two attempts cannot deadlock."""
    wanted = counters(username=username, peer=peer, limits=limits)
    now = limits.clock()
    with session_scope(sessions) as session:
        dialect_insert = pg_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert
        rows: list[SignInCounter] = []
        while len(rows) < len(wanted):  # again if prune() deleted a row between the insert and the lock
            session.execute(dialect_insert(SignInCounter)
                            .values([{"key": k, "window_start": now, "attempts": 0} for k in sorted(wanted)])
                            .on_conflict_do_nothing(index_elements=["key"]))
            rows = list(session.scalars(select(SignInCounter).where(SignInCounter.key.in_(wanted))
                                        .order_by(SignInCounter.key).with_for_update()))
        waits = []
        for row in rows:
            if row.window_start + limits.window_s <= now:
                row.window_start, row.attempts = now, 0
            if row.attempts >= wanted[row.key]:
                waits.append(row.window_start + limits.window_s - now)
        if waits:
            return max(waits)
        for row in rows:
            row.attempts += 1
    return None


def succeeded(sessions: sessionmaker[Session], *, username: str, peer: str, limits: SignInLimits) -> None:
    """A successful sign-in: its slot is given back and the account-and-address counter starts afresh."""
    keys = sorted(counters(username=username, peer=peer, limits=limits))
    with session_scope(sessions) as session:
        for key in keys:  # key order, as in reserve()
            if key.startswith("pair:"):
                session.execute(delete(SignInCounter).where(SignInCounter.key == key))
            else:
                session.execute(update(SignInCounter).where(SignInCounter.key == key, SignInCounter.attempts > 0)
                                .values(attempts=SignInCounter.attempts - 1))


def prune(sessions: sessionmaker[Session], *, limits: SignInLimits) -> int:
    """Delete counters whose window has ended; returns how many. Rows in use are skipped, never waited for."""
    cutoff = limits.clock() - limits.window_s
    with session_scope(sessions) as session:
        stale = select(SignInCounter.key).where(SignInCounter.window_start < cutoff).limit(1000)
        keys = list(session.scalars(stale.with_for_update(skip_locked=True)))
        if keys:
            session.execute(delete(SignInCounter).where(SignInCounter.key.in_(keys)))
        return len(keys)
