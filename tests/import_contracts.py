"""The import contracts of issue 11 §3, checked on the source (AST) with no third-party tool.

Three kinds of contract, each a pure function over an import graph so a test can feed it
a graph with one bad import added:

- **layers** (docs/architecture.md): a module may import its own layer or any layer below,
  never one above;
- **no cycles**: no two project modules import each other, directly or through others;
- **forbidden**: what the node agent reaches (its imports, their imports, and so on, package
  ``__init__`` files included, as Python runs them) holds no SQLAlchemy, Alembic, web
  framework, brain, storage, audit or application wiring.

Every import counts, also those inside functions and under ``TYPE_CHECKING``: a lazy import is
still a dependency, it only runs later.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from fnmatch import fnmatchcase
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TOP_LEVEL = ("squads", "tools", "prompts", "chat_server", "permissions", "transcripts")

# Highest first. A module belongs to the first layer with a pattern that matches it, trying
# exact names before patterns with wildcards, so ``squads.nodes.models`` (values) can sit
# far below ``squads.nodes.*`` (services).
LAYERS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("interface", ("*.cli", "squads.accounts.token_cli", "squads.approval_cli", "squads.chat", "chat_server", "chat_server.*",
                   "squads.evals", "squads.evals.*", "squads.storage.models", "squads.storage.migrations.*")),
    ("application", ("squads.context", "squads.storage.service", "squads.approvals")),
    ("runtime", ("squads.runtime",)),
    ("services", ("tools.execution", "tools.execution_records", "squads.nodes.*", "squads.nodes", "squads.accounts", "squads.accounts.*",
                  "transcripts", "transcripts.*", "permissions.store")),
    ("node agent", ("squads.node_agent", "squads.node_agent.*")),
    ("audit", ("squads.audit", "squads.audit.*")),
    ("squad bundles", ("squads.service", "squads.models", "squads.grants", "squads.bundle_check",
                       "squads.bundle_code", "squads.bundles", "squads.bundles.*")),
    ("brain", ("squads.brain", "squads.brain.*", "prompts", "prompts.*")),
    ("tools", ("tools", "tools.models", "tools.service", "tools.executors", "tools.executors.*",
               "squads.nodes.models")),
    ("tables", ("permissions.tables", "squads.nodes.tables")),
    ("policy", ("permissions", "permissions.*")),
    ("foundation", ("squads", "squads.settings", "squads.settings.*", "squads.storage", "squads.storage.db",
                    "squads.storage.lookup", "squads.textsafety", "squads.textsafety.*")),
)

NODE_AGENT = "squads.node_agent"
# Neither the libraries of the control plane nor its domains: the agent runs on every server.
AGENT_FORBIDDEN = ("sqlalchemy", "alembic", "fastapi", "starlette", "uvicorn", "jinja2", "argon2", "psycopg",
                   "squads.brain", "squads.storage", "squads.audit", "squads.accounts", "squads.context",
                   "squads.runtime", "squads.service", "squads.models", "squads.evals", "squads.nodes.service",
                   "squads.nodes.hub", "squads.nodes.tables", "permissions.store", "permissions.tables",
                   "chat_server", "transcripts", "tools.execution", "prompts")


@dataclass(frozen=True)
class Graph:
    """Project modules and, for each, the modules it imports (project and third-party, top names only)."""

    modules: frozenset[str]
    imports: Mapping[str, frozenset[str]]


def module_name(path: Path, root: Path = ROOT) -> str:
    """``squads/nodes/models.py`` -> ``squads.nodes.models``; ``squads/__init__.py`` -> ``squads``."""
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def project_sources(root: Path = ROOT) -> dict[str, str]:
    """The source of every module of the six top-level packages (migrations' versions excluded: data)."""
    sources: dict[str, str] = {}
    for top in TOP_LEVEL:
        for path in sorted((root / top).rglob("*.py")):
            if "versions" in path.parts or "__pycache__" in path.parts:
                continue
            sources[module_name(path, root)] = path.read_text(encoding="utf-8")
    return sources


def _imported(module: str, is_package: bool, tree: ast.AST, modules: frozenset[str]) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = module.split(".")[: len(module.split(".")) - node.level + (1 if is_package else 0)]
                target = ".".join([*base, *([node.module] if node.module else [])])
            else:
                target = node.module or ""
            for alias in node.names:
                sub = f"{target}.{alias.name}"
                found.add(sub if sub in modules else target)
    return found


def build_graph(sources: Mapping[str, str], packages: Iterable[str] = ()) -> Graph:
    """The import graph of ``sources`` (module -> source text); ``packages`` lists modules that are packages."""
    modules = frozenset(sources)
    package_set = set(packages) | {m for m in modules if any(o.startswith(m + ".") for o in modules)}
    imports: dict[str, frozenset[str]] = {}
    for module, text in sources.items():
        tree = ast.parse(text, filename=module)
        raw = _imported(module, module in package_set, tree, modules)
        resolved: set[str] = set()
        for name in raw:
            # ``import a.b.c`` of a project module, or a third-party package named by its top.
            while name and name not in modules and name.split(".")[0] in TOP_LEVEL and "." in name:
                name = name.rsplit(".", 1)[0]
            resolved.add(name if name in modules else name.split(".")[0])
        resolved.discard(module)
        imports[module] = frozenset(resolved)
    return Graph(modules=modules, imports=imports)


def layer_of(module: str) -> int:
    """The index in LAYERS (0 is the highest); a module no layer names is an error."""
    for wildcard in (False, True):
        for index, (_, patterns) in enumerate(LAYERS):
            for pattern in patterns:
                if ("*" in pattern) == wildcard and fnmatchcase(module, pattern):
                    return index
    raise LookupError(f"{module} is in no layer of tests/import_contracts.py; add it to LAYERS")


def upward_imports(graph: Graph) -> list[str]:
    """Every import of a module from a higher layer, as readable lines."""
    problems = []
    for module in sorted(graph.modules):
        mine = layer_of(module)
        for target in sorted(graph.imports[module] & graph.modules):
            theirs = layer_of(target)
            if theirs < mine:
                problems.append(f"{module} ({LAYERS[mine][0]}) imports {target} ({LAYERS[theirs][0]}), a higher layer")
    return problems


def cycles(graph: Graph) -> list[list[str]]:
    """Strongly connected groups of more than one project module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    found: list[list[str]] = []
    counter = 0
    for start in sorted(graph.modules):
        if start in index:
            continue
        work = [(start, iter(sorted(graph.imports[start] & graph.modules)))]
        index[start] = low[start] = counter
        counter += 1
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            for child in children:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph.imports[child] & graph.modules))))
                    break
                if child in on_stack:
                    low[node] = min(low[node], index[child])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    group = []
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        group.append(member)
                        if member == node:
                            break
                    if len(group) > 1:
                        found.append(sorted(group))
    return found


def reachable(graph: Graph, start: Iterable[str]) -> dict[str, str]:
    """Every module (project or third-party) that importing ``start`` runs, mapped to who imported it first.

    Importing ``a.b.c`` runs ``a`` and ``a.b`` first, so parents count as imports."""
    via: dict[str, str] = {}
    todo = [(m, "") for m in start]
    while todo:
        module, parent = todo.pop()
        if module in via:
            continue
        via[module] = parent
        if module not in graph.modules:
            continue
        parts = module.split(".")
        nexts = {".".join(parts[:i]) for i in range(1, len(parts))} | set(graph.imports[module])
        todo.extend((n, module) for n in sorted(nexts) if n not in via)
    return via


def agent_violations(graph: Graph) -> list[str]:
    """What the node agent reaches but must not, each with the chain of imports that leads there."""
    agent_modules = [m for m in graph.modules if m == NODE_AGENT or m.startswith(NODE_AGENT + ".")]
    via = reachable(graph, agent_modules)
    problems = []
    for module in sorted(via):
        if any(module == f or module.startswith(f + ".") for f in AGENT_FORBIDDEN):
            chain = [module]
            while via[chain[-1]]:
                chain.append(via[chain[-1]])
            problems.append(" <- ".join(chain))
    return problems


def check(graph: Graph) -> list[str]:
    """Every broken contract, as lines for an assertion message; empty when all hold."""
    return [*upward_imports(graph), *(f"cycle: {' -> '.join(c)}" for c in cycles(graph)),
            *(f"the node agent reaches {p}" for p in agent_violations(graph))]
