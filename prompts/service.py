"""Jinja2 templates for the squads' words: replies now, system prompts in LLM mode.

Replies are plain text with a little Markdown (the terminal and the web UI
render it; Slack shows it as is), so autoescaping is off here and every front
end escapes on output instead.
"""

from __future__ import annotations

import shlex
from functools import lru_cache
from typing import Any

from jinja2 import Environment, PackageLoader, StrictUndefined


@lru_cache(maxsize=1)
def environment() -> Environment:
    """The shared template environment (templates live in this package)."""
    env = Environment(
        loader=PackageLoader("prompts", "."),
        undefined=StrictUndefined,
        autoescape=False,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=False,
    )
    env.filters["cmd"] = shlex.join
    return env


def render(name: str, **context: Any) -> str:
    """Render ``prompts/<name>.j2`` with ``context``; the result is stripped."""
    return environment().get_template(f"{name}.j2").render(**context).strip()


def system_prompt(squad: Any) -> str:
    """The system prompt for a squad in LLM mode (its agents, tools and rules of conduct)."""
    return render("system/squad", squad=squad)
