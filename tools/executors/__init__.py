"""Executors run an already-decided argv somewhere: locally, on a simulated
node (fixtures) or, later, on a remote node agent. They never decide."""

from tools.executors.base import ExecResult, Executor

__all__ = ["ExecResult", "Executor"]
