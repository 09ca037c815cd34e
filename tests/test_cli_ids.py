"""Issue 11 §6: ids are never cut in a table, and every command that takes an id takes a unique prefix."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select
from typer.testing import CliRunner

from squads.accounts.token_models import ApiToken
from squads.cli import app
from squads.nodes.tables import NodeRecord
from squads.settings.env import get_settings
from squads.storage.db import session_scope
from squads.storage.service import Database, open_database
from transcripts.models import ConversationRecord

# Two ids that share their first 12 characters, the width an 80-column table used to show.
TWIN_A = "f80ac4553534" + "a" * 20
TWIN_B = "f80ac4553534" + "b" * 20
OTHER = "0123456789abcdef" * 2
runner = CliRunner()


@pytest.fixture
def db(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Database]:
    monkeypatch.setenv("SQUADS_DATA_DIR", str(tmp_path))
    monkeypatch.delenv("SQUADS_DATABASE_URL", raising=False)
    monkeypatch.delenv("SQUADS_CONFIG_DIR", raising=False)
    monkeypatch.setenv("COLUMNS", "80")
    get_settings.cache_clear()
    database = open_database(url=get_settings().effective_database_url)
    yield database
    database.engine.dispose()
    get_settings.cache_clear()


def _conversations(db: Database, *ids: str) -> None:
    with session_scope(db.sessions) as session:
        for i, conversation_id in enumerate(ids):
            at = f"2026-01-0{i + 1}T00:00:00+00:00"
            session.add(ConversationRecord(id=conversation_id, squad="k8s", node="k8s-lab", actor="t",
                                           title="why does payment-service crash? " * 4, created_at=at,
                                           updated_at=at, turns=1, state="{}"))


def _nodes(db: Database, *ids: str) -> None:
    with session_scope(db.sessions) as session:
        for i, node_id in enumerate(ids):
            session.add(NodeRecord(id=node_id, name=f"web-{i}", labels='{"env": "production-eu-west"}',
                                   token_sha256="0" * 64, created_at="2026-01-01T00:00:00+00:00"))


def _tokens(db: Database, *ids: str) -> None:
    with session_scope(db.sessions) as session:
        for i, token_id in enumerate(ids):
            session.add(ApiToken(id=token_id, name=f"ci-{i}", secret_sha256="0" * 64,
                                 created_at="2026-01-01T00:00:00+00:00"))


def test_an_80_column_transcript_list_shows_whole_ids_that_export_accepts(db: Database) -> None:
    _conversations(db, TWIN_A, OTHER)
    listed = runner.invoke(app, ["transcript", "list"])
    assert listed.exit_code == 0, listed.output
    assert max(len(line) for line in listed.stdout.splitlines()) <= 80
    shown = re.findall(r"[0-9a-f]{12,}", listed.stdout)
    assert sorted(shown) == sorted([TWIN_A, OTHER]) and "…" not in "".join(shown)
    exported = runner.invoke(app, ["transcript", "export", shown[0], "--format", "json"])
    assert exported.exit_code == 0, exported.output


def test_transcript_export_takes_a_unique_prefix_and_lists_an_ambiguous_one(db: Database) -> None:
    _conversations(db, TWIN_A, TWIN_B, OTHER)
    unique = runner.invoke(app, ["transcript", "export", "0123", "--format", "json"])
    assert unique.exit_code == 0, unique.output
    assert f'"id": "{OTHER}"' in unique.stdout

    ambiguous = runner.invoke(app, ["transcript", "export", "f80ac4553534"])
    assert ambiguous.exit_code == 2
    assert "ambiguous: 'f80ac4553534' matches conversation ids" in ambiguous.output
    assert TWIN_A in ambiguous.output and TWIN_B in ambiguous.output

    longer = runner.invoke(app, ["transcript", "export", TWIN_B[:13], "--format", "json"])
    assert longer.exit_code == 0 and f'"id": "{TWIN_B}"' in longer.stdout


def test_a_prefix_shorter_than_four_characters_or_matching_nothing_is_not_found(db: Database) -> None:
    _conversations(db, OTHER)
    for ref in ("012", "fff0"):
        result = runner.invoke(app, ["transcript", "export", ref])
        assert result.exit_code == 2 and f"no conversation '{ref}'" in result.output


def test_like_wildcards_in_a_prefix_are_plain_characters(db: Database) -> None:
    _conversations(db, OTHER)
    result = runner.invoke(app, ["transcript", "export", "0123%"])
    assert result.exit_code == 2 and "no conversation" in result.output
    result = runner.invoke(app, ["transcript", "export", "01_3"])
    assert result.exit_code == 2 and "no conversation" in result.output


def test_node_list_keeps_ids_and_rotate_and_revoke_take_prefixes(db: Database) -> None:
    _nodes(db, TWIN_A, TWIN_B)
    listed = runner.invoke(app, ["node", "list"])
    assert listed.exit_code == 0, listed.output
    assert TWIN_A in listed.stdout and TWIN_B in listed.stdout

    ambiguous = runner.invoke(app, ["node", "revoke", "f80ac455"])
    assert ambiguous.exit_code == 2
    assert "ambiguous: 'f80ac455' matches node ids" in ambiguous.output and TWIN_B in ambiguous.output

    rotated = runner.invoke(app, ["node", "rotate", TWIN_A[:13], "--json"])
    assert rotated.exit_code == 0, rotated.output
    assert TWIN_A in rotated.stdout
    revoked = runner.invoke(app, ["node", "revoke", TWIN_B[:13]])
    assert revoked.exit_code == 0 and revoked.stdout.strip() == "node web-1 revoked"
    with db.sessions() as session:
        assert session.scalars(select(NodeRecord.name).where(NodeRecord.revoked.is_(True))).all() == ["web-1"]


def test_token_revoke_takes_a_prefix_and_lists_an_ambiguous_one(db: Database) -> None:
    _tokens(db, TWIN_A, TWIN_B)
    ambiguous = runner.invoke(app, ["token", "revoke", "f80ac455"])
    assert ambiguous.exit_code == 2
    assert "ambiguous: 'f80ac455' matches API token ids" in ambiguous.output and TWIN_A in ambiguous.output
    revoked = runner.invoke(app, ["token", "revoke", TWIN_A[:13]])
    assert revoked.exit_code == 0 and revoked.stdout.strip() == "token ci-0 revoked"
    with db.sessions() as session:
        assert session.scalars(select(ApiToken.name).where(ApiToken.revoked.is_(True))).all() == ["ci-0"]
