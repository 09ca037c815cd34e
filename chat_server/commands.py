"""``POST /api/run``: one command on one or many nodes, through the policy and the audit log.

For automation and for fan-out ("uptime on every web node"). Each node gets its
own decision and audit records, exactly as a squad's tool call would; a node
that is offline, refuses or drops answers with its reason instead of a result.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, HTTPException, status
from pydantic import BaseModel, Field

from chat_server.deps import ContextDep, HubDep
from chat_server.principals import Engineer
from squads.nodes.remote import RemoteExecutor
from squads.nodes.service import registered_configs, unknown_nodes_message
from squads.context import local_executor
from tools.execution import CommandOutcome, ExecutionRequest, Target, execute_many
from tools.executors.base import NotRun

router = APIRouter(prefix="/api", tags=["commands"])
MAX_TARGETS = 10_000


class RunIn(BaseModel):
    """What to run, as whom, where."""

    agent: str = Field(description="The squad agent whose grants apply, e.g. 'webserver/diagnostician'.",
                       max_length=200)
    argv: Annotated[list[Annotated[str, Field(max_length=4096)]], Field(min_length=1, max_length=256)]
    nodes: list[Annotated[str, Field(max_length=64)]] = Field(default_factory=list, max_length=MAX_TARGETS)
    labels: dict[str, str] = Field(
        default_factory=dict, description="Also every registered node carrying all these labels."
    )
    timeout_s: float | None = Field(default=None, gt=0, le=3600)


class NodeRun(BaseModel):
    """What happened on one node."""

    node: str
    decision: str
    reason: str
    decision_seq: int | None = None
    ran: bool = False
    exit_code: int | None = None
    stdout: str = ""
    stderr: str = ""
    duration_ms: int | None = None
    timed_out: bool = False
    truncated: bool = False
    error: str | None = Field(default=None, description="Why there is no result (offline, refused, lost).")


def _node_run(node: str, outcome: CommandOutcome) -> NodeRun:
    decision, result = outcome.decision, outcome.result
    out = NodeRun(node=node, decision=decision.verdict.value, reason=decision.reason, decision_seq=outcome.decision_seq)
    if outcome.error is not None:
        out.error, out.ran = str(outcome.error), not isinstance(outcome.error, NotRun)
    if result is not None:
        out.ran, out.exit_code, out.stdout, out.stderr = True, result.exit_code, result.stdout, result.stderr
        out.duration_ms, out.timed_out, out.truncated = result.duration_ms, result.timed_out, result.truncated
    return out


@router.post("/run")
def run_command(body: RunIn, caller: Engineer, context: ContextDep, hub: HubDep) -> list[NodeRun]:
    """Run ``argv`` on the named nodes and those matching ``labels``; one answer per node, in name order.

    Held commands (needs approval) are not run here: approve them in a conversation."""
    if body.agent not in context.agent_ids():
        raise HTTPException(status.HTTP_400_BAD_REQUEST,
                            f"unknown agent {body.agent!r}; agents: {', '.join(context.agent_ids())}")
    wanted = set(body.nodes)
    remote = {c.name: hub.config(c) for c in list(hub.credentials.values()) if not c.revoked and (
        c.name in wanted or (body.labels and body.labels.items() <= c.labels.items()))}
    unseen = wanted - remote.keys() - context.nodes.keys()
    if unseen:  # registered by another process since the hub last looked
        with context.db.readers() as session:
            remote.update(registered_configs(session, names=unseen))
    local = {n: c for n, c in context.nodes.items()
             if n in body.nodes or (body.labels and body.labels.items() <= c.labels.items())}
    chosen = {**remote, **local}  # a configured node's name wins: it runs here
    unknown = sorted(set(body.nodes) - set(chosen))
    if unknown:
        raise HTTPException(status.HTTP_404_NOT_FOUND,
                            f"{unknown_nodes_message(unknown, chosen)}; GET /api/nodes lists the registered ones")
    if not chosen:
        raise HTTPException(status.HTTP_400_BAD_REQUEST, "name at least one node, or labels that some node carries")
    targets = [
        Target(node=chosen[n].context(),
               executor=local_executor(chosen[n]) if n in local else RemoteExecutor(hub, n))
        for n in sorted(chosen)
    ]
    request = ExecutionRequest(
        agent=body.agent, argv=body.argv, actor=caller.name, squad=body.agent.split("/")[0],
        timeout=body.timeout_s or context.settings.default_timeout_s, max_output=context.settings.max_output_bytes,
    )
    outcomes = execute_many(request=request, targets=targets, sessions=context.db.sessions,
                            engine=context.current_engine())
    return [_node_run(t.node.name, o) for t, o in zip(targets, outcomes, strict=True)]
