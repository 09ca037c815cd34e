"""Sign-in throttling (per account+address, per account, per address; atomic) and failed sign-ins in the audit log."""

from __future__ import annotations

import json
import threading
from collections import Counter

import pytest
from sqlalchemy import select

from squads.audit.models import AuditRecord
from squads.storage.db import session_scope
from squads.storage.service import Database
from squads.accounts.models import Role, SignInCounter
from squads.accounts.ratelimit import SignInLimits, address_key, prune
from squads.accounts.service import SignInError, SignInThrottled, create_user, sign_in

GOOD = "correct horse battery"


def attempts(db: Database) -> list[tuple[str | None, str | None, str, str | None]]:
    """(claimed user, outcome, address, reason) of every sign_in record, read from a fresh session."""
    with db.sessions() as session:
        found = session.scalars(select(AuditRecord).where(AuditRecord.kind == "sign_in").order_by(AuditRecord.seq))
        return [(r.actor, r.decision, json.loads(r.details)["peer"], json.loads(r.details).get("reason"))
                for r in found]


def users(db: Database, *names: str) -> None:
    with session_scope(db.sessions) as session:
        for name in names:
            create_user(session, username=name, password=GOOD, role=Role.ENGINEER, actor="t")


def outcome(db: Database, username: str, password: str, peer: str, limits: SignInLimits) -> str:
    try:
        sign_in(db.sessions, username=username, password=password, peer=peer, limits=limits)
    except SignInThrottled:
        return "throttled"
    except SignInError:
        return "failed"
    return "signed_in"


def test_a_failed_sign_in_is_recorded_whatever_the_caller_does_next(db: Database) -> None:
    users(db, "alice")
    # The caller's own transaction fails afterwards: the failure's record is already committed.
    with pytest.raises(SignInError), session_scope(db.sessions):
        sign_in(db.sessions, username="alice", password="wrong password!!", peer="10.0.0.9")
    with pytest.raises(SignInError):
        sign_in(db.sessions, username="nobody", password=GOOD, peer="10.0.0.9")
    assert attempts(db) == [("alice", "failed", "10.0.0.9", "wrong credentials"),
                            ("nobody", "failed", "10.0.0.9", "wrong credentials")]


def test_one_address_guessing_one_account_does_not_lock_out_the_rest_of_the_proxy(db: Database) -> None:
    users(db, "alice", "bob")
    now = [1000.0]
    limits = SignInLimits(account_address=3, account=6, address=10, window_s=60, clock=lambda: now[0])
    proxy = "10.0.0.1"
    assert [outcome(db, "alice", "guess!", proxy, limits) for _ in range(4)] == ["failed"] * 3 + ["throttled"]
    assert outcome(db, "alice", GOOD, proxy, limits) == "throttled"  # this pair waits, even with the password
    assert outcome(db, "bob", GOOD, proxy, limits) == "signed_in"  # others behind the proxy do not
    assert outcome(db, "alice", GOOD, "10.0.0.2", limits) == "signed_in"  # nor does alice elsewhere
    now[0] += 61
    assert outcome(db, "alice", GOOD, proxy, limits) == "signed_in"  # the window ended
    reasons = Counter(reason for _, _, _, reason in attempts(db))
    assert reasons == {"wrong credentials": 3, "throttled": 2, None: 3}


def test_the_account_limit_holds_across_addresses_and_the_address_limit_across_accounts(db: Database) -> None:
    users(db, "alice", "bob")
    limits = SignInLimits(account_address=2, account=4, address=5, window_s=60, clock=lambda: 1000.0)
    # Many addresses at one account: two each, until the account's own limit.
    spread = [outcome(db, "alice", "guess!", f"10.1.0.{i}", limits) for i in range(4) for _ in range(2)]
    assert spread.count("failed") == 4 and spread.count("throttled") == 4
    assert outcome(db, "alice", GOOD, "10.1.0.99", limits) == "throttled"
    # One address at many accounts (spraying): one guess each, until the address's limit.
    sprayed = [outcome(db, f"user{i}", "guess!", "10.2.0.1", limits) for i in range(7)]
    assert sprayed == ["failed"] * 5 + ["throttled"] * 2
    assert outcome(db, "bob", GOOD, "10.2.0.1", limits) == "throttled"
    assert outcome(db, "bob", GOOD, "10.2.0.2", limits) == "signed_in"


def test_successful_sign_ins_give_their_slot_back(db: Database) -> None:
    users(db, "alice", "bob")
    limits = SignInLimits(account_address=2, account=3, address=3, window_s=60, clock=lambda: 1000.0)
    # An office behind one proxy signs in all day: successes never fill the address's counter.
    for _ in range(10):
        assert outcome(db, "alice", GOOD, "10.0.0.1", limits) == "signed_in"
        assert outcome(db, "bob", GOOD, "10.0.0.1", limits) == "signed_in"
    # A typo, then the right password: the pair starts afresh.
    assert outcome(db, "alice", "typo!", "10.0.0.1", limits) == "failed"
    assert outcome(db, "alice", GOOD, "10.0.0.1", limits) == "signed_in"
    assert [outcome(db, "alice", "typo!", "10.0.0.1", limits) for _ in range(3)] == ["failed", "failed", "throttled"]


def test_expired_counters_are_pruned(db: Database) -> None:
    now = [1000.0]
    limits = SignInLimits(window_s=60, clock=lambda: now[0])
    for i in range(5):
        outcome(db, f"ghost{i}", "guess!", f"10.3.0.{i}", limits)
    with db.sessions() as session:
        assert len(session.scalars(select(SignInCounter)).all()) == 15
    now[0] += 61
    assert prune(db.sessions, limits=limits) == 15


def test_ipv6_addresses_are_counted_per_64() -> None:
    assert address_key("2001:db8:1:2:aaaa::1") == address_key("2001:db8:1:2:bbbb::7") == "2001:db8:1:2::/64"
    assert address_key("::ffff:10.0.0.1") == "10.0.0.1"
    assert address_key("10.0.0.1") == "10.0.0.1"


def test_forty_concurrent_wrong_guesses_are_checked_at_most_five_times(db: Database) -> None:
    users(db, "alice", "bob")
    limits = SignInLimits()  # the defaults: 5 per account+address, 30 per account, 100 per address
    start = threading.Barrier(40)
    results: list[str] = []

    def guess() -> None:
        start.wait()
        results.append(outcome(db, "alice", "wrong guess!", "10.0.0.1", limits))

    threads = [threading.Thread(target=guess) for _ in range(40)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert Counter(results) == {"failed": 5, "throttled": 35}
    assert Counter(reason for _, _, _, reason in attempts(db)) == {"wrong credentials": 5, "throttled": 35}
    assert outcome(db, "bob", GOOD, "10.0.0.1", limits) == "signed_in"  # same proxy address, another account
    assert outcome(db, "alice", GOOD, "10.0.0.2", limits) == "signed_in"  # the account from another address
