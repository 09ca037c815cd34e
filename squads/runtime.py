"""The conversation runtime: one engine behind every front end.

``Conversation.handle(text)`` turns a user message into an ordered stream of
events (user_message, assistant_message, tool_call, decision, tool_output,
approval_requested, approval_resolved, error, turn_complete). The brain plans;
the runtime does everything with side effects, the same way for every brain:
each command is decided by the policy and audited before it can run, each
event is stored (redacted) in the transcript, and the conversation's state is
saved after the turn so it can be resumed.
"""

from __future__ import annotations

import logging
import re
from datetime import UTC, datetime, timedelta
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from squads.brain.actions import Call, CallResult, Say, Turn
from squads.brain.explicit import explicit_command
from squads.brain.service import RunbookBrain, State
from squads.nodes.models import NodeConfig
from squads.nodes.service import unknown_nodes_message
from permissions.engine import PolicyEngine
from permissions.models import Decision, Verdict
from squads.models import SquadSpec
from squads.storage.db import session_scope
from tools import execution_records
from tools.execution import ExecutionRequest, execute, run_decided
from tools.executors.base import ExecResult, Executor, ExecutorError
from tools.models import Effect
from tools.service import ToolCallError, render, rule_text
from transcripts import service as transcripts
from transcripts.models import Event, EventKind

log = logging.getLogger(__name__)


class ApprovalError(ValueError):
    """An approval cannot be resolved as asked; the message says why."""
ExecutorFactory = Callable[[NodeConfig], Executor]
# Words after which a node's name is a dependency ("connects to db-2"), not where to look.
DEPENDENCY_WORDS = frozenset({"to", "from", "via", "through", "behind", "connect", "connects", "connecting", "reach"})


@dataclass
class RuntimeConfig:
    """What a conversation needs from its process: policy, nodes, executors, database."""

    sessions: sessionmaker[Session]
    engine: PolicyEngine
    nodes: dict[str, NodeConfig]
    executor_for: ExecutorFactory
    timeout_s: float = 30.0
    max_output: int = 256 * 1024
    approval_ttl_s: float = 3600.0  # a held command not approved within this long can no longer run
    # The moment analyzers compare dates with (certificate expiry); an eval pins it to replay a scenario.
    now: Callable[[], datetime] = field(default=lambda: datetime.now(UTC))
    _executors: dict[str, Executor] = field(default_factory=dict)

    def executor(self, node: NodeConfig) -> Executor:
        if node.name not in self._executors:
            self._executors[node.name] = self.executor_for(node)
        return self._executors[node.name]


class Conversation:
    """One conversation with one squad, bound to a node (which a message may switch)."""

    def __init__(self, *, config: RuntimeConfig, squad: SquadSpec, conversation_id: str, actor: str | None) -> None:
        self.config = config
        self.squad = squad
        self.id = conversation_id
        self.actor = actor
        self.brain = RunbookBrain(squad.playbook())
        with config.sessions() as session:
            record = transcripts.get_conversation(session, conversation_id)
            saved = transcripts.load_state(session, conversation_id)
            self.turns = record.turns
            self.node = saved.get("node") or record.node
        self.state = State.load(saved)
        self.approvals: list[dict[str, Any]] = list(saved.get("approvals", []))
        self._buffer: list[tuple[EventKind, dict[str, Any], int | None]] = []
        self._title = ""

    @classmethod
    def start(cls, *, config: RuntimeConfig, squad: SquadSpec, node: str, actor: str | None) -> Conversation:
        """A new conversation with ``squad`` on ``node``."""
        if node not in config.nodes:
            raise KeyError(unknown_nodes_message([node], config.nodes))
        with session_scope(config.sessions) as session:
            conversation_id = transcripts.create_conversation(session, squad=squad.name, node=node, actor=actor)
        return cls(config=config, squad=squad, conversation_id=conversation_id, actor=actor)

    # -- one turn ----------------------------------------------------------------------
    def handle(self, text: str) -> Iterator[Event]:
        """Process one user message; yields each event as it happens (already stored)."""
        self.turns += 1
        if self.turns == 1:
            self._title = text.strip().splitlines()[0] if text.strip() else ""
        self.state.facts["node_changed"] = self._switch_node(text)
        self.state.facts["now"] = self.config.now().isoformat()
        yield from self._emit(EventKind.USER_MESSAGE, {"text": text, "node": self.node, "actor": self.actor})
        turn: Turn = self.brain.turn(text, self.state)
        result: CallResult | None = None
        while True:
            try:
                step = turn.send(result)
            except StopIteration:
                break
            except Exception as exc:  # a bug in an analyzer must not lose the transcript
                log.exception("brain failed")
                yield from self._emit(EventKind.ERROR, {"text": f"internal error while reasoning: {exc!r}"})
                break
            if isinstance(step, Say):
                result = None
                yield from self._emit(EventKind.ASSISTANT_MESSAGE, {"text": step.text})
            else:
                events: list[Event] = []
                result = self._perform(step, events)
                yield from events
        yield from self._emit(EventKind.TURN_COMPLETE, {"turn": self.turns}, flush=True)

    def resolve_approval(
        self, approval_id: str, *, approver: str, approved: bool, reason: str | None = None
    ) -> Iterator[Event]:
        """Approve or reject a held command; an approved one runs through the normal path.

        The requester cannot approve their own request, and the command is
        decided again first: a grant revoked since the request wins."""
        approval = next((a for a in self.approvals if a["id"] == approval_id), None)
        if approval is None or approval["status"] != "pending":
            raise ApprovalError(f"no pending approval {approval_id!r} in conversation {self.id}")
        if approval_expired(approval, now=self.config.now()):
            raise ApprovalError(
                f"the approval request for `{' '.join(approval['argv'])}` expired at {approval['expires_at']}; "
                "ask the squad again if it is still needed"
            )
        if approved and approver == approval.get("requested_by", self.actor):
            raise ApprovalError(f"{approver} requested this command and cannot approve it; another approver must")
        if any("[REDACTED:" in arg for arg in approval["argv"]):
            raise ApprovalError("this command held a secret, which is never stored; ask for it again without the secret")
        if approval["node"] not in self.config.nodes:
            raise ApprovalError(f"node {approval['node']!r} is no longer configured; the command cannot run there")
        try:
            with session_scope(self.config.sessions) as session:
                # The audit log is the arbiter: it refuses a second resolution, even from another process.
                record = execution_records.record_approval(
                    session, decision_seq=approval["decision_seq"], approver=approver, approved=approved, reason=reason
                )
        except ValueError as exc:
            raise ApprovalError(str(exc)) from None
        approval["status"] = "approved" if approved else "rejected"
        data = {"id": approval_id, "status": approval["status"], "by": approver, "reason": reason, "argv": approval["argv"]}
        yield from self._emit(EventKind.APPROVAL_RESOLVED, data, record.seq)
        if approved:
            yield from self._run_approved(approval, approver=approver, approval_seq=record.seq)
        yield from self._emit(EventKind.TURN_COMPLETE, {"turn": self.turns})

    def _run_approved(self, approval: dict[str, Any], *, approver: str, approval_seq: int) -> Iterator[Event]:
        node = self.config.nodes[approval["node"]]
        # Decided again and audited: a grant revoked since the request wins, and the execution
        # record points at this decision (whose details name the approval).
        request = ExecutionRequest(
            agent=approval["agent"], argv=approval["argv"], actor=approver, squad=self.squad.name,
            timeout=self._timeout(approval.get("tool")), max_output=self.config.max_output, conversation_id=self.id,
        )
        decision = self.config.engine.decide(agent=request.agent, node=node.context(), argv=request.argv)
        with session_scope(self.config.sessions) as session:
            seq = execution_records.record_decision(session, decision=decision, **request.audit_context()).seq
        yield from self._emit(EventKind.DECISION, {**decision.as_dict(), "approval_seq": approval_seq}, seq)
        if decision.verdict is Verdict.DENY:
            yield from self._emit(EventKind.ERROR, {"text": f"not run: the policy now refuses it: {decision.reason}"})
            return
        try:
            outcome = run_decided(
                request=request, sessions=self.config.sessions, executor=self.config.executor(node),
                decision=decision, decision_seq=seq, approved_by=approver,
            )
        except Exception as exc:
            text = str(exc) if isinstance(exc, ExecutorError) else f"node {node.name} could not run it: {exc}"
            yield from self._emit(EventKind.ERROR, {"text": text})
            return
        res = outcome.result
        assert res is not None
        self._buffer.append((EventKind.TOOL_CALL, {**{k: approval[k] for k in ("tool", "argv", "agent", "node")}, "why": "approved"}, None))
        self._buffer.append((EventKind.TOOL_OUTPUT, _output_data(res), outcome.finished_seq))
        status = "succeeded" if res.exit_code == 0 else f"failed with exit code {res.exit_code}"
        text = f"Approved and run: `{' '.join(approval['argv'])}` on {node.name} {status}."
        yield from self._emit(EventKind.ASSISTANT_MESSAGE, {"text": text})

    def _switch_node(self, text: str) -> bool:
        """Move to another configured node the message names in prose ("and jump-ops-02?",
        "is apache-mkt-02 ok", "check db-3").

        A name inside a command ("run kubectl logs web-1") is an argument, and a name after "to",
        "from" or "via" ("the app connects to db-2") is a dependency, not where to look."""
        argv = set(explicit_command(text, self.brain.programs) or [])
        lowered = text.lower()
        if re.search(rf"(?<![\w.-]){re.escape(self.node.lower())}(?![\w-])", lowered):
            return False  # the message names where we already are (perhaps besides others): stay
        named = []
        for node in self.config.nodes:
            if node == self.node or node in argv:
                continue
            for match in re.finditer(rf"(?<![\w.-]){re.escape(node.lower())}(?![\w-])", lowered):
                before = lowered[: match.start()].split()[-1:] or [""]
                if before[0] not in DEPENDENCY_WORDS:
                    named.append(node)
                    break
        if len(named) == 1:
            self.node = named[0]
            return True
        return False

    def _emit(
        self, kind: EventKind, data: dict[str, Any], audit_seq: int | None = None, *, flush: bool = True
    ) -> Iterator[Event]:
        self._buffer.append((kind, data, audit_seq))
        if flush:
            yield from self._flush()

    def _flush(self) -> Iterator[Event]:
        stored: list[Event] = []
        with session_scope(self.config.sessions) as session:
            position = transcripts.last_seq(session, self.id)
            for kind, data, seq in self._buffer:
                position += 1
                stored.append(
                    transcripts.append_event(
                        session, conversation_id=self.id, kind=kind, turn=self.turns, data=data,
                        audit_seq=seq, seq=position, redacted=kind is EventKind.TOOL_OUTPUT,
                    )
                )
            # State is saved at the end of a turn, and as soon as a command is held for approval,
            # so a front end that stops reading mid-turn cannot lose a pending approval.
            kinds = {kind for kind, _, _ in self._buffer}
            if kinds & {EventKind.TURN_COMPLETE, EventKind.APPROVAL_REQUESTED}:
                transcripts.save_state(
                    session, self.id, {**self.state.dump(), "node": self.node, "approvals": self.approvals},
                    turns=self.turns, title=self._title,
                )
        self._buffer.clear()
        yield from stored

    # -- one call ----------------------------------------------------------------------
    def _perform(self, call: Call, events: list[Event]) -> CallResult:
        node = self.config.nodes.get(self.node)
        if node is None:
            message = f"node {self.node!r} is no longer configured; known nodes: {', '.join(sorted(self.config.nodes))}"
            events.extend(self._emit(EventKind.ERROR, {"text": message}))
            return CallResult(status="error", reason=message, node=self.node, tool=call.tool)
        try:
            argv, agent, tool = self._resolve(call, node)
        except ToolCallError as exc:
            events.extend(self._emit(EventKind.ERROR, {"text": str(exc), "tool": call.tool}))
            return CallResult(status="invalid", reason=str(exc), node=node.name, tool=call.tool)
        self._buffer.append(
            (EventKind.TOOL_CALL, {"tool": tool, "argv": argv, "agent": agent, "node": node.name, "why": call.why}, None)
        )
        context = {"actor": self.actor, "squad": self.squad.name, "conversation_id": self.id}
        if call.hold:
            decision = self.config.engine.decide(agent=agent, node=node.context(), argv=argv)
            with session_scope(self.config.sessions) as session:
                seq = execution_records.record_decision(session, decision=decision, **context).seq
            return self._after_decision(decision, seq, tool, events, held=True)
        try:
            request = ExecutionRequest(agent=agent, argv=argv, actor=self.actor, squad=self.squad.name,
                                       timeout=self._timeout(tool), max_output=self.config.max_output,
                                       conversation_id=self.id)
            outcome = execute(request=request, sessions=self.config.sessions, engine=self.config.engine,
                              executor=self.config.executor(node), node=node.context())
        except Exception as exc:
            # A failure while running is already in the audit log as an interrupted execution; one
            # before the decision (the node's executor could not be set up) ran nothing.
            message = str(exc) if isinstance(exc, ExecutorError) else f"node {node.name} could not run {argv[0]}: {exc}"
            events.extend(self._emit(EventKind.ERROR, {"text": message, "argv": argv}))
            return CallResult(status="error", reason=message, argv=argv, agent=agent, node=node.name, tool=tool)
        if outcome.result is None:
            return self._after_decision(outcome.decision, outcome.decision_seq, tool, events, held=False)
        self._buffer.append((EventKind.DECISION, outcome.decision.as_dict(), outcome.decision_seq))
        res = outcome.result
        self._buffer.append((EventKind.TOOL_OUTPUT, _output_data(res), outcome.finished_seq))
        events.extend(self._flush())
        return CallResult(
            status="ran", argv=argv, agent=agent, node=node.name, tool=tool, exit_code=res.exit_code,
            stdout=res.stdout, stderr=res.stderr, timed_out=res.timed_out, truncated=res.truncated,
        )

    def _after_decision(
        self, decision: Decision, seq: int, tool: str | None, events: list[Event], *, held: bool
    ) -> CallResult:
        self._buffer.append((EventKind.DECISION, decision.as_dict(), seq))
        argv, agent, node = list(decision.argv), decision.agent or "", decision.node or ""
        if decision.verdict is Verdict.DENY:
            events.extend(self._flush())
            return CallResult(status="denied", reason=decision.reason, argv=argv, agent=agent, node=node, tool=tool)
        approval = {
            "id": str(seq), "decision_seq": seq, "argv": argv, "agent": agent, "node": node, "tool": tool,
            "reason": decision.reason, "held_by_squad": held, "status": "pending", "requested_by": self.actor,
            "requested_at": self.config.now().isoformat(),
            "expires_at": (self.config.now() + timedelta(seconds=self.config.approval_ttl_s)).isoformat(),
        }
        self.approvals.append(approval)
        self._buffer.append((EventKind.APPROVAL_REQUESTED, approval, seq))
        events.extend(self._flush())
        return CallResult(
            status="approval", reason=decision.reason, approval_id=str(seq), argv=argv, agent=agent, node=node, tool=tool
        )

    def _timeout(self, tool: str | None) -> float:
        spec = self.squad.tool(tool) if tool else None
        return spec.timeout_s if spec and spec.timeout_s else self.config.timeout_s

    def _resolve(self, call: Call, node: NodeConfig) -> tuple[list[str], str, str | None]:
        """The argv, the agent that runs it, and the tool it is an instance of."""
        if call.tool is not None:
            spec = self.squad.tool(call.tool)
            argv = render(spec, call.params, extra_prefixes=node.path_prefixes)
            return argv, self.squad.agent_id(spec.agent), spec.name
        assert call.argv is not None
        return self._pick_agent(list(call.argv), node)

    def _pick_agent(self, argv: list[str], node: NodeConfig) -> tuple[list[str], str, str | None]:
        """For a command the user named: the squad's agent the policy treats best
        (allowed, else approvable, else the first refusal and its reason)."""
        ranked: list[tuple[int, str, Decision]] = []
        for index, name in enumerate(self.squad.agents):
            agent = self.squad.agent_id(name)
            decision = self.config.engine.decide(agent=agent, node=node.context(), argv=argv)
            rank = {Verdict.ALLOW: 0, Verdict.NEEDS_APPROVAL: 1}.get(decision.verdict, 2)
            ranked.append((rank * 100 + index, agent, decision))
        _, agent, decision = min(ranked, key=lambda r: r[0])
        tool = next(
            (
                t.name for t in self.squad.tools
                if self.squad.agent_id(t.agent) == agent and decision.rule and rule_text(t) == decision.rule
                and (t.effect is Effect.ALLOW) == (decision.verdict is Verdict.ALLOW)
            ),
            None,
        )
        return argv, agent, tool


def approval_expired(approval: dict[str, Any], *, now: datetime) -> bool:
    """Whether a held command's approval window has passed (requests older than expiry never expire)."""
    expires = approval.get("expires_at")
    return isinstance(expires, str) and datetime.fromisoformat(expires) <= now


def _output_data(result: ExecResult) -> dict[str, Any]:
    """A tool_output event's data (already redacted by the execution path)."""
    return {
        "exit_code": result.exit_code, "stdout": result.stdout, "stderr": result.stderr,
        "duration_ms": result.duration_ms, "truncated": result.truncated, "timed_out": result.timed_out,
    }
