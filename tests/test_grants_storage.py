"""Site grants from YAML and from the database (both backends)."""

from __future__ import annotations

from pathlib import Path

import pytest

from permissions.models import GrantSpec, NodeContext, Verdict
from permissions.service import GrantError, build_engine, load_site_grants
from permissions.store import save_grant, stored_grants
from squads.storage.db import session_scope
from squads.storage.service import Database
from tests.policy_helpers import squads
from squads.service import default_grants


def test_grants_round_trip_through_the_database(db: Database) -> None:
    spec = GrantSpec(name="web-1 extra", agents=["webserver/service-health"], nodes={"names": ["web-1"]},
                     allow=["lastb -n 5"], deny=["ss -ltnp"])
    with session_scope(db.sessions) as session:
        save_grant(session, spec=spec, actor="alice")
    with session_scope(db.sessions) as session:
        loaded = stored_grants(session)
    assert loaded == [spec]
    engine = build_engine(defaults=default_grants(squads().values()), site=loaded)
    web1, web2 = NodeContext.of("web-1"), NodeContext.of("web-2")
    agent = "webserver/service-health"
    assert engine.decide(agent=agent, node=web1, argv=["lastb", "-n", "5"]).allowed
    assert engine.decide(agent=agent, node=web2, argv=["lastb", "-n", "5"]).verdict is Verdict.DENY
    assert engine.decide(agent=agent, node=web1, argv=["ss", "-ltnp"]).verdict is Verdict.DENY
    assert engine.decide(agent=agent, node=web2, argv=["ss", "-ltnp"]).allowed


def test_invalid_grant_is_refused_before_it_is_stored(db: Database) -> None:
    bad = GrantSpec(name="bad", agents=["x/y"], allow=["kubectl exec pod -- sh"])
    with pytest.raises(ValueError, match="kubectl exec"):
        with session_scope(db.sessions) as session:
            save_grant(session, spec=bad, actor="mallory")
    with session_scope(db.sessions) as session:
        assert stored_grants(session) == []


def test_site_yaml_grants_load_and_report_errors_with_file_and_index(tmp_path: Path) -> None:
    folder = tmp_path / "grants"
    folder.mkdir()
    (folder / "10-staging.yaml").write_text(
        "grants:\n  - name: staging\n    agents: ['k8s/*']\n    nodes: {labels: {env: staging}}\n"
        "    allow: ['kubectl get pods -n {k8s_name} ...']\n    constraints: {namespaces: [staging]}\n")
    assert [g.name for g in load_site_grants(tmp_path)] == ["staging"]
    (folder / "20-bad.yaml").write_text("grants:\n  - name: bad\n    agents: ['k8s/*']\n    allow: ['kubectl get pods --watch']\n")
    with pytest.raises(GrantError) as info:
        load_site_grants(tmp_path)
    assert "20-bad.yaml" in str(info.value) and "grant #1" in str(info.value) and "--watch" in str(info.value)
