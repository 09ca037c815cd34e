"""A conversation runtime over simulated nodes, for tests that need real events and audit records."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from squads.nodes.models import NodeConfig
from permissions.service import build_engine
from squads.models import SquadSpec
from squads.runtime import RuntimeConfig
from squads.service import default_grants
from squads.storage.service import Database
from tools.executors.fixture import Fixture, FixtureExecutor


def fixture_config(db: Database, fixtures: Mapping[str, Sequence[Fixture]],
                   squads: Mapping[str, SquadSpec]) -> RuntimeConfig:
    """Nodes named by ``fixtures`` answering from them, under the squads' shipped default grants."""
    executors = {name: FixtureExecutor(items) for name, items in fixtures.items()}
    return RuntimeConfig(
        sessions=db.sessions,
        engine=build_engine(defaults=default_grants(squads.values()), site=()),
        nodes={name: NodeConfig(name=name) for name in fixtures},
        executor_for=lambda node: executors[node.name],
    )
