"""Rendering tool calls into argv, and deriving a tool's grant rule."""

from __future__ import annotations

import re
import shlex
from collections.abc import Mapping, Sequence

from permissions import sql
from permissions.validators import ValueRejected, from_spec
from tools.models import PLACEHOLDER, Condition, ParamSpec, SqlToken, ToolSpec


class ToolCallError(ValueError):
    """A tool call's parameters were wrong; the message names which and why."""


def _check(
    tool: ToolSpec, name: str, param: ParamSpec, value: object, extra_prefixes: Sequence[str] = ()
) -> str | bool:
    what = f"tool {tool.name}, parameter {name}"
    if param.is_flag:
        if not isinstance(value, bool):
            raise ToolCallError(f"{what}: expected true or false, got {value!r}")
        return value
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise ToolCallError(f"{what}: expected text or a number, got {value!r}")
    try:
        spec = param.type
        if extra_prefixes and spec.startswith("path:"):
            spec = spec + "," + ",".join(extra_prefixes)
        return from_spec(spec).validate(str(value), what=what)
    except ValueRejected as exc:
        raise ToolCallError(str(exc)) from None


def resolve_params(
    tool: ToolSpec, values: Mapping[str, object], *, extra_prefixes: Sequence[str] = ()
) -> dict[str, str | bool]:
    """Validate ``values`` against the tool's parameters, applying defaults.

    ``extra_prefixes`` (a node's ``path_prefixes``) widen ``path:`` parameters;
    the node's grants still decide whether the command may run there."""
    unknown = set(values) - set(tool.params)
    if unknown:
        raise ToolCallError(
            f"tool {tool.name}: unknown parameter(s) {sorted(unknown)}; it takes {sorted(tool.params) or 'none'}"
        )
    out: dict[str, str | bool] = {}
    for name, param in tool.params.items():
        value = values.get(name, param.default)
        if value is None:
            if param.required:
                raise ToolCallError(f"tool {tool.name}: parameter {name} is required ({param.description or param.type})")
            continue
        out[name] = _check(tool, name, param, value, extra_prefixes)
    return out


def _fill(text: str, params: Mapping[str, str | bool]) -> str | None:
    names = PLACEHOLDER.findall(text)
    if any(n not in params for n in names):
        return None
    return PLACEHOLDER.sub(lambda m: str(params[m.group(1)]), text)


def render(tool: ToolSpec, values: Mapping[str, object], *, extra_prefixes: Sequence[str] = ()) -> list[str]:
    """The argv for a call of ``tool``: every value validated, each one argument."""
    params = resolve_params(tool, values, extra_prefixes=extra_prefixes)
    argv: list[str] = []
    for token in tool.argv:
        if isinstance(token, str):
            filled = _fill(token, params)
            if filled is None:
                raise ToolCallError(f"tool {tool.name}: {token} has no value")
            argv.append(filled)
        elif isinstance(token, list):
            group = [_fill(t, params) for t in token]
            if all(g is not None for g in group):
                argv.extend(g for g in group if g is not None)
        elif isinstance(token, Condition):
            if params.get(token.if_) is True:
                argv.extend(token.argv)
        elif isinstance(token, SqlToken):
            stmt = sql.statements()[token.sql]
            argv.append(stmt.render({h: int(str(params[h])) for h in stmt.holes}))
    return argv


_NEEDS_QUOTES = re.compile(r"[\s'\"\\]")


def _rule_token(text: str, tool: ToolSpec) -> str:
    out = PLACEHOLDER.sub(lambda m: "{" + tool.params[m.group(1)].type + "}", text)
    return shlex.quote(out) if _NEEDS_QUOTES.search(out) or out == "" else out


def rule_text(tool: ToolSpec) -> str:
    """The grant rule that covers exactly the argv ``render`` can produce."""
    parts: list[str] = []
    for token in tool.argv:
        if isinstance(token, str):
            parts.append(_rule_token(token, tool))
        elif isinstance(token, list):
            parts.append("[" + " ".join(_rule_token(t, tool) for t in token) + "]")
        elif isinstance(token, Condition):
            parts.append("[" + " ".join(_rule_token(t, tool) for t in token.argv) + "]")
        elif isinstance(token, SqlToken):
            parts.append("{sql:" + token.sql + "}")
    return " ".join(parts)
