"""``RemoteExecutor``: the executor for a node whose agent connects to this control plane.

It has the local executor's interface; by the time ``run`` is called the
control plane's policy has decided and the audit log holds the decision and
the start, exactly as for a local run. The agent decides again under its own
policy and answers with the output, a refusal, or nothing (the link dropped).
"""

from __future__ import annotations

from collections.abc import Sequence

from squads.nodes.hub import Hub
from tools.executors.base import ExecResult, NotRun, RunContext


class RemoteExecutor:
    """Runs allowed commands on ``node`` through its agent's link in ``hub``."""

    def __init__(self, hub: Hub, node: str) -> None:
        self.hub = hub
        self.node = node
        self.batch = hub  # a fan-out over many of these is one call to the hub

    def run(
        self, argv: Sequence[str], *, timeout: float, max_output: int, context: RunContext | None = None
    ) -> ExecResult:
        """Dispatch and wait; raises ``NotRun`` (offline, refused) or ``Interrupted`` (link lost)."""
        if context is None:
            # The node decides on the control plane's decision; a bare argv has none to send.
            raise NotRun(f"node {self.node}: a remote run needs the control plane's decision; nothing was sent")
        return self.hub.run_blocking(node=self.node, context=context, timeout=timeout, max_output=max_output)
