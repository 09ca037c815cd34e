"""Everything a command-line or server process loads once at start."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

from squads.settings.env import Settings, get_settings
from squads.nodes.models import LOCAL_NODE, NodeConfig
from squads.nodes.hub import Hub
from squads.nodes.remote import RemoteExecutor
from squads.nodes.service import load_nodes, registered_configs
from sqlalchemy import select
from permissions.engine import PolicyEngine
from permissions.tables import GrantRecord
from permissions.models import GrantSpec, NodeSelector
from permissions.programs import ProgramSpec, load_programs, load_site_programs
from permissions.service import build_engine, load_site_grants
from permissions.store import stored_grants
from squads.models import SquadSpec
from squads.service import default_grants, load_squads
from squads.audit.anchor import write_checkpoint
from squads.audit.keys import settings_key
from tools.execution_records import sweep_interrupted
from squads.storage.db import session_scope
from squads.storage.service import Database, open_database
from squads.runtime import RuntimeConfig
from tools.executors.scenario import load_scenario
from tools.executors.base import Executor
from tools.executors.fixture import FixtureExecutor
from tools.executors.local import LocalExecutor


LAB = Path(__file__).with_name("lab")


def read_only_local(grants: list[GrantSpec]) -> list[GrantSpec]:
    """Deny grants that turn every approval rule of ``grants`` into a refusal on node ``local``.

    Deny rules win over allow and approve, so on a read-only ``local`` what would be
    held for approval is refused at decision time, with the setting named in the reason."""
    return [
        GrantSpec(name=f"SQUADS_LOCAL_NODE=read-only (covers {g.name})", agents=g.agents,
                  nodes=NodeSelector(names=[LOCAL_NODE]), deny=list(g.approve),
                  description="node local is read-only: nothing that needs approval runs on the control-plane host")
        for g in grants if g.approve
    ]


def local_executor(node: NodeConfig) -> LocalExecutor:
    """The executor for a node this process runs commands on itself."""
    return LocalExecutor(env_passthrough=node.env_passthrough, extra_env=node.env)


@dataclass
class AppContext:
    """Settings, squads, nodes, grants and the database, loaded lazily."""

    settings: Settings
    # squads serve sets it: there, `local` is off unless SQUADS_LOCAL_NODE turns it on.
    serving: bool = False
    _engine_cache: tuple[object, PolicyEngine] | None = field(default=None, init=False, repr=False)

    @cached_property
    def squads(self) -> dict[str, SquadSpec]:
        return load_squads([self.settings.effective_config_dir / "squads"])

    @property
    def local_node(self) -> str:
        """``off``, ``read-only`` or ``on``: SQUADS_LOCAL_NODE, else off for a server and on for the command line."""
        return self.settings.local_node or ("off" if self.serving else "on")

    @cached_property
    def nodes(self) -> dict[str, NodeConfig]:
        return load_nodes(self.settings.effective_config_dir, local=self.local_node != "off")

    @cached_property
    def db(self) -> Database:
        database = open_database(url=self.settings.effective_database_url, audit_key=settings_key(self.settings))
        # An executor that died mid-command left a started record with no end:
        # make that visible now rather than leave a silent gap.
        with session_scope(database.sessions) as session:
            sweep_interrupted(session)
        return database

    def write_checkpoint(self) -> dict[str, object]:
        """Append a signed checkpoint of the audit head to the configured file (and syslog)."""
        return write_checkpoint(
            self.db.sessions, key=settings_key(self.settings), path=self.settings.effective_audit_checkpoint_file,
            to_syslog=self.settings.audit_checkpoint_syslog,
        )

    @cached_property
    def programs(self) -> dict[str, ProgramSpec]:
        """The shipped programs plus those the site adds in ``<config>/programs/*.yaml``."""
        shipped = load_programs()
        return {**shipped, **load_site_programs(self.settings.effective_config_dir / "programs", shipped=shipped)}

    @cached_property
    def defaults(self) -> list[GrantSpec]:
        return default_grants(self.squads.values())

    def site_grants(self) -> list[GrantSpec]:
        """Site YAML grants plus those stored in the database."""
        with self.db.sessions() as session:
            stored = stored_grants(session)
        return [*load_site_grants(self.settings.effective_config_dir, programs=self.programs), *stored]

    def engine(self, *, with_site: bool = True) -> PolicyEngine:
        """The policy engine: shipped defaults, plus site grants unless told not to."""
        site = self.site_grants() if with_site else []
        if self.local_node == "read-only":
            site = [*site, *read_only_local(self.defaults + site)]
        return build_engine(defaults=self.defaults, site=site, programs=self.programs)

    def current_engine(self) -> PolicyEngine:
        """The engine with site grants, rebuilt only when the stored grants or site files changed.

        A server asks for it on every request; a grant revoked a moment ago must
        already apply, so the check is a fingerprint, not a timer."""
        folder = self.settings.effective_config_dir / "grants"
        files = tuple((p.name, p.stat().st_mtime_ns) for p in sorted(folder.glob("*.y*ml"))) if folder.is_dir() else ()
        with self.db.readers() as session:
            stored = tuple(session.execute(select(GrantRecord.id, GrantRecord.body, GrantRecord.enabled)).all())
        key = (files, stored)
        if self._engine_cache is None or self._engine_cache[0] != key:
            self._engine_cache = (key, self.engine())
        return self._engine_cache[1]

    @cached_property
    def lab_nodes(self) -> dict[str, tuple[NodeConfig, FixtureExecutor]]:
        """The bundled lab's simulated nodes (``squads/lab/*.yaml``) when ``SQUADS_LAB`` is on.

        Their node names say they are simulated; their outputs are recorded, so
        nothing runs anywhere, but every decision and audit record is real."""
        if not self.settings.lab:
            return {}
        nodes: dict[str, tuple[NodeConfig, FixtureExecutor]] = {}
        for path in sorted(LAB.glob("*.yaml")):
            scenario = load_scenario(path)
            for name, node in scenario.nodes.items():
                nodes[name] = (NodeConfig(name=name, labels={**node.labels, "squads.lab": "true"}),
                               FixtureExecutor(node.fixtures))
        return nodes

    def registered_nodes(self) -> dict[str, NodeConfig]:
        """Nodes whose agents connect to this control plane (configured names win on a clash)."""
        with self.db.sessions() as session:
            return {n: c for n, c in registered_configs(session).items() if n not in self.nodes}

    def runtime_config(self, *, with_site: bool = True, hub: Hub | None = None) -> RuntimeConfig:
        """What a conversation needs to run commands: configured nodes run here (local
        executor); with a ``hub``, registered nodes too, through their agents."""
        nodes: dict[str, NodeConfig] = {name: config for name, (config, _) in self.lab_nodes.items()}
        nodes.update(self.nodes)
        remote: dict[str, NodeConfig] = self.registered_nodes() if hub is not None else {}
        nodes.update(remote)

        def executor_for(node: NodeConfig) -> Executor:
            if hub is not None and node.name in remote:
                return RemoteExecutor(hub, node.name)
            if node.name in self.lab_nodes and node.name not in self.nodes:
                return self.lab_nodes[node.name][1]
            return local_executor(node)

        return RuntimeConfig(
            sessions=self.db.sessions,
            engine=self.current_engine() if with_site else self.engine(with_site=False),
            nodes=nodes,
            executor_for=executor_for,
            timeout_s=self.settings.default_timeout_s,
            max_output=self.settings.max_output_bytes,
            approval_ttl_s=self.settings.approval_ttl_s,
        )

    def agent_ids(self) -> list[str]:
        return [squad.agent_id(a) for squad in self.squads.values() for a in squad.agents]


def load_context() -> AppContext:
    """The context for this process."""
    return AppContext(settings=get_settings())
