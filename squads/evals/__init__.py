"""Incident scenarios (../shared/scenarios/FORMAT.md) and ``squads eval``."""
