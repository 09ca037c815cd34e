"""Pages: squads with their agents and tools; the effective grants, edited by admins; checking a command."""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass, replace
from typing import Annotated, Any
from urllib.parse import quote

import yaml
from fastapi import APIRouter, Form, Query, Request
from fastapi.responses import RedirectResponse, Response
from pydantic import ValidationError
from sqlalchemy.orm import Session

from chat_server.deps import ContextDep, ReaderDep, SessionDep
from chat_server.principals import Admin, Principal, Viewer
from chat_server.signin import render
from squads.settings.yaml_loader import safe_load
from squads.nodes.models import NodeConfig
from squads.nodes.service import registered_configs
from permissions.models import Decision, GrantSpec
from permissions.service import GrantError, load_site_grants
from permissions.store import disable_grant, grant_records, save_grant
from squads.context import AppContext
from tools.models import Condition, SqlToken, ToolSpec
from squads.accounts.models import Role

router = APIRouter(include_in_schema=False)
_NEEDS_QUOTES = re.compile(r"[\s'\"\\]")
GRANT_EXAMPLE = """name: web-1 disk
description: df with file system types on web-1
agents: [webserver/service-health]
nodes: {names: [web-1]}
allow:
  - df -h -T
"""


def argv_text(tool: ToolSpec) -> str:
    """A tool's argv template as one line: ``[...]`` optional, ``[... if flag]`` conditional, ``{sql:name}``."""
    def word(text: str) -> str:
        return shlex.quote(text) if _NEEDS_QUOTES.search(text) or not text else text

    parts: list[str] = []
    for token in tool.argv:
        if isinstance(token, str):
            parts.append(word(token))
        elif isinstance(token, list):
            parts.append("[" + " ".join(word(t) for t in token) + "]")
        elif isinstance(token, Condition):
            parts.append("[" + " ".join(word(t) for t in token.argv) + f" if {token.if_}]")
        elif isinstance(token, SqlToken):
            parts.append("{sql:" + token.sql + "}")
    return " ".join(parts)


@router.get("/squads")
def squads_page(request: Request, caller: Viewer, context: ContextDep) -> Response:
    """Every squad: its agents, and each agent's tools with their effect and argv template."""
    squads = [
        {"spec": squad, "agents": [
            {"id": squad.agent_id(name), "description": agent.description,
             "tools": [{"spec": t, "argv": argv_text(t)} for t in squad.tools if t.agent == name]}
            for name, agent in squad.agents.items()
        ]}
        for squad in context.squads.values()
    ]
    return render(request, "squads.html", principal=caller, squads=squads)


# -- grants ---------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Check:
    """The 'check a command' form: what was asked, and the decision or why there is none."""

    agent: str = ""
    node: str = ""
    command: str = ""
    decision: Decision | None = None
    problem: str | None = None


def _nodes(context: AppContext, session: Session) -> dict[str, NodeConfig]:
    # The nodes a conversation reaches (configured ones win a name clash, as in
    # AppContext.registered_nodes), read on the request's own session: a second,
    # writing session would wait on SQLite for the lock the request may hold.
    return {**registered_configs(session), **context.nodes}


def _check(context: AppContext, nodes: dict[str, NodeConfig], agent: str, node: str, command: str) -> Check:
    asked = Check(agent=agent, node=node, command=command)
    if not (agent or node or command):
        return asked
    if agent not in context.agent_ids():
        return replace(asked, problem=f"Unknown agent {agent!r}: pick one of the list.")
    if node not in nodes:
        return replace(asked, problem=f"Unknown node {node!r}: pick one of the list.")
    try:
        # Only splits the text into an argv, as a shell would; nothing is run.
        argv = shlex.split(command)
    except ValueError as exc:
        return replace(asked, problem=f"Cannot split the command into arguments: {exc}.")
    if not argv:
        return replace(asked, problem="Type a command, e.g. df -h.")
    try:
        decision = context.current_engine().decide(agent=agent, node=nodes[node].context(), argv=argv)
    except GrantError as exc:
        return replace(asked, problem=f"The grants do not load: {exc}")
    return replace(asked, decision=decision)


def _validation_text(exc: ValidationError) -> str:
    # One line per problem, naming the field; pydantic's own text adds URLs and input dumps.
    return "; ".join(f"{'.'.join(str(p) for p in e['loc']) or 'grant'}: {e['msg']}" for e in exc.errors())


def _grants_page(
    request: Request, session: Session, context: AppContext, caller: Principal, status_code: int = 200,
    *, ask: tuple[str, str, str] = ("", "", ""), grant_yaml: str = "", **extra: Any,
) -> Response:
    site_error = None
    try:
        site = load_site_grants(context.settings.effective_config_dir, programs=context.programs)
    except GrantError as exc:
        site, site_error = [], str(exc)
    stored = [
        {"spec": GrantSpec.model_validate_json(r.body), "enabled": r.enabled, "by": r.created_by, "at": r.created_at}
        for r in grant_records(session)
    ]
    nodes = _nodes(context, session)
    return render(
        request, "grants.html", status_code, principal=caller, is_admin=caller.role.allows(Role.ADMIN),
        defaults=context.defaults, site=site, site_error=site_error, stored=stored,
        check=_check(context, nodes, *ask), agents=context.agent_ids(), node_names=sorted(nodes),
        grant_yaml=grant_yaml or GRANT_EXAMPLE, **extra,
    )


def _as_yaml(spec: GrantSpec) -> str:
    return yaml.safe_dump(spec.model_dump(mode="json", exclude_defaults=True), sort_keys=False, allow_unicode=True)


@router.get("/grants")
def grants_page(
    request: Request, session: ReaderDep, caller: Viewer, context: ContextDep,
    agent: Annotated[str, Query(max_length=200)] = "", node: Annotated[str, Query(max_length=200)] = "",
    command: Annotated[str, Query(max_length=4000)] = "", edit: Annotated[str, Query(max_length=200)] = "",
    saved: Annotated[str, Query(max_length=200)] = "", disabled: Annotated[str, Query(max_length=200)] = "",
) -> Response:
    """Shipped, site and stored grants; the 'check a command' answer when one was asked."""
    records = {r.name: r for r in grant_records(session)}
    # Notices only for what is true: a crafted link cannot make the page claim a change.
    notice = None
    if saved in records and records[saved].enabled:
        notice = f"Grant {saved} saved; it applies from now on."
    elif disabled in records and not records[disabled].enabled:
        notice = f"Grant {disabled} disabled; it no longer applies."
    grant_yaml = _as_yaml(GrantSpec.model_validate_json(records[edit].body)) if edit in records else ""
    return _grants_page(request, session, context, caller, ask=(agent, node, command), grant_yaml=grant_yaml,
                        notice=notice)


@router.post("/grants")
def save_grant_page(
    request: Request, session: SessionDep, caller: Admin, context: ContextDep,
    grant_yaml: Annotated[str, Form(max_length=20000)] = "",
) -> Response:
    """Add or replace a stored grant from one YAML mapping; on a problem, the text comes back with it."""
    try:
        data = safe_load(grant_yaml)
        if not isinstance(data, dict):
            raise GrantError("write one grant as a YAML mapping (name:, agents:, allow: ...), not a list or text")
        spec = GrantSpec.model_validate(data)
        save_grant(session, spec=spec, actor=caller.name, programs=context.programs)
    except yaml.YAMLError as exc:
        problem = f"Not valid YAML: {exc}"
    except ValidationError as exc:
        problem = f"Not a valid grant: {_validation_text(exc)}"
    except ValueError as exc:  # GrantError, and RuleError naming the rule that does not compile
        problem = f"Not saved: {exc}"
    else:
        session.commit()
        return RedirectResponse(f"/grants?saved={quote(spec.name, safe='')}", status_code=303)
    session.rollback()
    return _grants_page(request, session, context, caller, 400, grant_yaml=grant_yaml, error=problem)


@router.post("/grants/disable")
def disable_grant_page(
    request: Request, session: SessionDep, caller: Admin, context: ContextDep,
    name: Annotated[str, Form(max_length=200)] = "",
) -> Response:
    """Stop applying a stored grant (saving it again re-enables it)."""
    try:
        disable_grant(session, name=name, actor=caller.name)
    except GrantError as exc:
        session.rollback()
        return _grants_page(request, session, context, caller, 404, error=str(exc))
    session.commit()
    return RedirectResponse(f"/grants?disabled={quote(name, safe='')}", status_code=303)
