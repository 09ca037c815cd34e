"""Everything a command-line or server process loads once at start."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

from config.settings import Settings, get_settings
from nodes.models import NodeConfig
from nodes.service import load_nodes
from permissions.engine import PolicyEngine
from permissions.models import GrantSpec
from permissions.service import build_engine, load_site_grants, stored_grants
from squads.models import SquadSpec
from squads.service import default_grants, load_squads
from audit.service import sweep_interrupted
from storage.db import session_scope
from storage.service import Database, open_database
from squads.runtime import RuntimeConfig
from tools.executors.local import LocalExecutor


def local_executor(node: NodeConfig) -> LocalExecutor:
    """The executor for a node this process runs commands on itself."""
    return LocalExecutor(env_passthrough=node.env_passthrough, extra_env=node.env)


@dataclass
class AppContext:
    """Settings, squads, nodes, grants and the database, loaded lazily."""

    settings: Settings

    @cached_property
    def squads(self) -> dict[str, SquadSpec]:
        return load_squads([self.settings.effective_config_dir / "squads"])

    @cached_property
    def nodes(self) -> dict[str, NodeConfig]:
        return load_nodes(self.settings.effective_config_dir)

    @cached_property
    def db(self) -> Database:
        database = open_database(url=self.settings.effective_database_url)
        # An executor that died mid-command left a started record with no end:
        # make that visible now rather than leave a silent gap.
        with session_scope(database.sessions) as session:
            sweep_interrupted(session)
        return database

    @cached_property
    def defaults(self) -> list[GrantSpec]:
        return default_grants(self.squads.values())

    def site_grants(self) -> list[GrantSpec]:
        """Site YAML grants plus those stored in the database."""
        with self.db.sessions() as session:
            stored = stored_grants(session)
        return [*load_site_grants(self.settings.effective_config_dir), *stored]

    def engine(self, *, with_site: bool = True) -> PolicyEngine:
        """The policy engine: shipped defaults, plus site grants unless told not to."""
        return build_engine(defaults=self.defaults, site=self.site_grants() if with_site else ())

    def runtime_config(self, *, with_site: bool = True) -> RuntimeConfig:
        """What a conversation needs to run commands on this process's nodes (local executor)."""
        return RuntimeConfig(
            sessions=self.db.sessions,
            engine=self.engine(with_site=with_site),
            nodes=self.nodes,
            executor_for=local_executor,
            timeout_s=self.settings.default_timeout_s,
            max_output=self.settings.max_output_bytes,
        )

    def agent_ids(self) -> list[str]:
        return [squad.agent_id(a) for squad in self.squads.values() for a in squad.agents]


def load_context() -> AppContext:
    """The context for this process."""
    return AppContext(settings=get_settings())
