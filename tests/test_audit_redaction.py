"""Secrets in a command line never reach the permanent audit log; their hash does."""

from __future__ import annotations

import hashlib

from sqlalchemy import select

from squads.audit.models import AuditRecord, RecordKind
from squads.audit.keys import canonical_json
from squads.nodes.models import NodeConfig
from permissions.service import build_engine
from squads.runtime import Conversation, RuntimeConfig
from squads.service import default_grants, load_squads
from squads.storage.service import Database
from tools.executors.fixture import FixtureExecutor


def test_a_password_in_an_argv_is_redacted_in_decision_records(db: Database) -> None:
    squads = load_squads()
    config = RuntimeConfig(
        sessions=db.sessions,
        engine=build_engine(defaults=default_grants(squads.values()), site=()),
        nodes={"db-1": NodeConfig(name="db-1")},
        executor_for=lambda node: FixtureExecutor([]),
    )
    conversation = Conversation.start(config=config, squad=squads["database"], node="db-1", actor="alice")
    argv = ["psql", "postgresql://app:S3cretPw@db.internal:5432/core", "-c", "SELECT 1"]
    list(conversation.handle("run psql postgresql://app:S3cretPw@db.internal:5432/core -c 'SELECT 1'"))
    with db.sessions() as session:
        decisions = list(session.scalars(select(AuditRecord).where(AuditRecord.kind == RecordKind.DECISION)))
    assert decisions, "the refused command must still be audited"
    for record in decisions:
        assert "S3cretPw" not in (record.argv or "") and "S3cretPw" not in (record.reason or "")
        assert "S3cretPw" not in (record.details or "")
    expected = hashlib.sha256(canonical_json(argv)).hexdigest()
    assert any(expected in (r.details or "") for r in decisions)
