"""Registered nodes: tokens shown once and stored as hashes, rotation, revocation, audit."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select
from typer.testing import CliRunner

from squads.audit.models import AuditRecord, RecordKind
from squads.audit.verify import verify
from squads.settings.env import get_settings
from squads.nodes.tables import NodeRecord
from squads.nodes.service import (
    NodeNotFound,
    NodeRegistryError,
    authenticate,
    create_node,
    list_registered,
    revoke_node,
    rotate_token,
)
from squads.cli import app
from squads.storage.db import session_scope
from squads.storage.service import Database


def test_the_token_is_returned_once_and_only_its_hash_is_stored(db: Database) -> None:
    with session_scope(db.sessions) as session:
        issued = create_node(session, name="web-7", labels={"env": "prod"}, actor="alice")
    assert issued.token.startswith("sqn_") and len(issued.token) > 40
    with db.sessions() as session:
        record = session.get(NodeRecord, issued.node_id)
        assert record is not None and issued.token not in json.dumps([getattr(record, c) for c in ("token_sha256", "labels", "facts")])
        assert authenticate(session, node_id=issued.node_id, token=issued.token).name == "web-7"
        with pytest.raises(NodeRegistryError, match="wrong"):
            authenticate(session, node_id=issued.node_id, token=issued.token + "x")
        with pytest.raises(NodeRegistryError, match="wrong"):
            authenticate(session, node_id="0" * 32, token=issued.token)


def test_rotation_retires_the_old_token_and_revocation_every_token(db: Database) -> None:
    with session_scope(db.sessions) as session:
        first = create_node(session, name="db-3", labels={}, actor="alice")
    with session_scope(db.sessions) as session:
        second = rotate_token(session, ref="db-3", actor="bob")
    assert second.node_id == first.node_id and second.token != first.token
    with db.sessions() as session:
        with pytest.raises(NodeRegistryError):
            authenticate(session, node_id=first.node_id, token=first.token)
        assert authenticate(session, node_id=second.node_id, token=second.token).token_generation == 2
    with session_scope(db.sessions) as session:
        revoke_node(session, ref=first.node_id, actor="carol")
    with db.sessions() as session:
        with pytest.raises(NodeRegistryError, match="revoked"):
            authenticate(session, node_id=second.node_id, token=second.token)
    with session_scope(db.sessions) as session, pytest.raises(NodeRegistryError, match="revoked"):
        rotate_token(session, ref="db-3", actor="bob")


def test_every_registry_action_is_audited_without_the_token(db: Database) -> None:
    with session_scope(db.sessions) as session:
        issued = create_node(session, name="edge-1", labels={"role": "edge"}, actor="alice")
    with session_scope(db.sessions) as session:
        rotated = rotate_token(session, ref="edge-1", actor="bob")
    with session_scope(db.sessions) as session:
        revoke_node(session, ref="edge-1", actor="carol")
    with db.sessions() as session:
        records = list(session.scalars(select(AuditRecord).where(AuditRecord.kind == RecordKind.NODE_ADMIN.value)))
        assert [(r.actor, json.loads(r.details)["action"]) for r in records] == [
            ("alice", "created"), ("bob", "token_rotated"), ("carol", "revoked")
        ]
        dumped = json.dumps([[r.argv, r.details, r.reason] for r in records])
        assert issued.token not in dumped and rotated.token not in dumped
        assert verify(session).ok


@pytest.mark.parametrize(
    ("name", "labels", "message"),
    [
        ("Bad Name", {}, "not allowed"),
        ("web_7;rm", {}, "not allowed"),
        ("-web", {}, "not allowed"),
        ("web-8", {"env": "prod;id"}, "label"),
    ],
)
def test_bad_names_and_labels_are_refused_with_the_rule(db: Database, name: str, labels: dict[str, str], message: str) -> None:
    with session_scope(db.sessions) as session, pytest.raises(NodeRegistryError, match=message):
        create_node(session, name=name, labels=labels, actor="alice")
    with db.sessions() as session:
        assert list_registered(session) == []


def test_a_duplicate_name_and_an_unknown_node_are_clear_errors(db: Database) -> None:
    with session_scope(db.sessions) as session:
        create_node(session, name="web-1", labels={}, actor="alice")
    with session_scope(db.sessions) as session, pytest.raises(NodeRegistryError, match="already exists"):
        create_node(session, name="web-1", labels={}, actor="alice")
    with session_scope(db.sessions) as session, pytest.raises(NodeNotFound, match="squads node list"):
        rotate_token(session, ref="web-2", actor="alice")


@pytest.fixture
def data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    monkeypatch.setenv("SQUADS_DATA_DIR", str(tmp_path))
    monkeypatch.delenv("SQUADS_DATABASE_URL", raising=False)
    monkeypatch.delenv("SQUADS_CONFIG_DIR", raising=False)
    get_settings.cache_clear()
    yield tmp_path
    get_settings.cache_clear()


def test_the_cli_shows_the_token_once_and_lists_without_it(data_dir: Path) -> None:
    runner = CliRunner()
    created = runner.invoke(app, ["node", "create", "web-7", "--label", "env=prod", "--json"])
    assert created.exit_code == 0, created.output
    issued = json.loads(created.stdout)
    listed = runner.invoke(app, ["node", "list", "--json"])
    assert listed.exit_code == 0 and issued["token"] not in listed.stdout
    assert [(n["name"], n["labels"], n["revoked"]) for n in json.loads(listed.stdout)] == [("web-7", {"env": "prod"}, False)]
    bad = runner.invoke(app, ["node", "create", "web-8", "--label", "noequals"])
    assert bad.exit_code == 2 and "key=value" in bad.output
    assert runner.invoke(app, ["node", "revoke", "web-7"]).exit_code == 0
    again = runner.invoke(app, ["node", "rotate", "web-7"])
    assert again.exit_code == 2 and "revoked" in again.output
