"""Shared helpers for policy tests: the shipped squads and their default engine."""

from __future__ import annotations

from functools import lru_cache

from permissions.engine import PolicyEngine
from permissions.models import NodeContext
from squads.models import SquadSpec
from squads.service import default_grants, load_squads

LAB = NodeContext.of("lab", {"env": "production"})


@lru_cache(maxsize=1)
def squads() -> dict[str, SquadSpec]:
    return load_squads()


@lru_cache(maxsize=1)
def default_engine() -> PolicyEngine:
    return PolicyEngine(defaults=default_grants(squads().values()))


def agent_ids() -> list[str]:
    return [s.agent_id(a) for s in squads().values() for a in s.agents]
