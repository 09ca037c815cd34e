"""The policy engine: one decision per (agent, node, argv).

Order of checks, first refusal wins:
1. hygiene (types, control/bidi/invisible characters, NFKC look-alikes);
2. the program: a plain known name, or exactly the node's mapped path;
3. the program's flag policy (denied and unknown options and subcommands,
   abbreviations and bundles normalised first, SQL whitelist, path forms);
4. deny rules of every grant that applies: deny always wins;
5. allow rules, then approval rules, each within its grant's constraints;
6. otherwise deny: nothing is allowed unless a grant says so.

The engine holds no I/O, so the node agent runs the very same code against
its owner's local policy.
"""

from __future__ import annotations

import shlex
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from fnmatch import fnmatchcase

from permissions.argv import Parsed, Refused, check_hygiene, parse, program_name
from permissions.models import Decision, GrantSpec, NodeContext, Verdict
from permissions.programs import ProgramSpec, load_programs
from permissions.rules import Rule, compile_rule
from permissions.validators import under_prefixes

_CLUSTER_SCOPED = frozenset(
    {"nodes", "node", "no", "namespaces", "namespace", "ns", "storageclass", "storageclasses", "sc",
     "persistentvolumes", "persistentvolume", "pv"}
)


@dataclass(slots=True)
class CompiledGrant:
    """A grant with its rules compiled against the flag policy."""

    spec: GrantSpec
    default: bool
    allow: list[Rule]
    approve: list[Rule]
    deny: list[Rule]

    @property
    def label(self) -> str:
        return f"{self.spec.name} (shipped default)" if self.default else self.spec.name

    def covers_agent(self, agent: str) -> bool:
        return any(fnmatchcase(agent, pattern) for pattern in self.spec.agents)

    def covers_node(self, node: NodeContext) -> bool:
        sel = self.spec.nodes
        if sel.names and not any(fnmatchcase(node.name, pattern) for pattern in sel.names):
            return False
        labels = node.label_map
        return all(labels.get(k) == v for k, v in sel.labels.items())

    def constraint_problem(self, parsed: Parsed) -> str | None:
        """Why ``parsed`` falls outside this grant's constraints, or None."""
        c = self.spec.constraints
        if c.namespaces is not None and parsed.program == "kubectl":
            names = [v for opt, v in parsed.options if opt == "--namespace"]
            if any(opt == "--all-namespaces" for opt, _ in parsed.options):
                return f"-A (all namespaces) is outside grant {self.label}, which covers only {', '.join(c.namespaces)}"
            outside = [n for n in names if n not in c.namespaces]
            if outside:
                return f"namespace {outside[0]} is outside grant {self.label}, which covers only {', '.join(c.namespaces)}"
            if not names and not _cluster_scoped(parsed):
                return f"grant {self.label} covers only namespaces {', '.join(c.namespaces)}: name one with -n"
        if c.path_prefixes is not None:
            prefixes = tuple(c.path_prefixes)
            for path in parsed.path_values:
                if not under_prefixes(path, prefixes):
                    return f"{path} is outside grant {self.label}, which covers only {', '.join(prefixes)}"
        return None


def _cluster_scoped(parsed: Parsed) -> bool:
    if parsed.subcommands[:1] in (("version",), ("api-resources",), ("cluster-info",)):
        return True
    if parsed.subcommands == ("top", "nodes"):
        return True
    return bool(parsed.positionals) and parsed.positionals[0] in _CLUSTER_SCOPED


def compile_grant(spec: GrantSpec, programs: dict[str, ProgramSpec], *, default: bool = False) -> CompiledGrant:
    """Compile every rule of ``spec``; a bad rule raises ``RuleError`` naming it."""
    return CompiledGrant(
        spec=spec,
        default=default,
        allow=[compile_rule(r, programs) for r in spec.allow],
        approve=[compile_rule(r, programs) for r in spec.approve],
        deny=[compile_rule(r, programs, deny=True) for r in spec.deny],
    )


@dataclass(slots=True)
class _RuleSet:
    """The rules that apply to one agent on one node, indexed by command."""

    deny: dict[tuple[str, tuple[str, ...]], list[tuple[Rule, CompiledGrant]]] = field(default_factory=dict)
    allow: dict[tuple[str, tuple[str, ...]], list[tuple[Rule, CompiledGrant]]] = field(default_factory=dict)
    approve: dict[tuple[str, tuple[str, ...]], list[tuple[Rule, CompiledGrant]]] = field(default_factory=dict)

    def add(self, bucket: str, rule: Rule, grant: CompiledGrant) -> None:
        getattr(self, bucket).setdefault((rule.program, rule.subcommands), []).append((rule, grant))


class PolicyEngine:
    """Decides allow / deny / needs_approval for an argv."""

    def __init__(
        self,
        *,
        defaults: Sequence[GrantSpec] = (),
        grants: Sequence[GrantSpec] = (),
        programs: dict[str, ProgramSpec] | None = None,
        resolve_path: Callable[[str], str] | None = None,
    ) -> None:
        """``defaults`` are the squads' shipped grants; ``grants`` the site's
        overrides. ``resolve_path`` (the node side passes ``os.path.realpath``)
        re-checks every path argument after following symbolic links."""
        self.programs = programs if programs is not None else load_programs()
        self.grants = [compile_grant(g, self.programs, default=True) for g in defaults]
        self.grants += [compile_grant(g, self.programs) for g in grants]
        self.resolve_path = resolve_path
        self._cache: dict[tuple[str, NodeContext], _RuleSet] = {}
        self._paths: dict[tuple[tuple[str, str], ...], dict[str, str]] = {}

    # ------------------------------------------------------------------
    def rules_for(self, agent: str, node: NodeContext) -> _RuleSet:
        """The compiled rules that apply to ``agent`` on ``node`` (cached)."""
        key = (agent, node)
        cached = self._cache.get(key)
        if cached is not None:
            return cached
        applicable = [g for g in self.grants if g.covers_agent(agent) and g.covers_node(node)]
        if any(g.spec.replace_defaults and not g.default for g in applicable):
            applicable = [g for g in applicable if not g.default]
        rules = _RuleSet()
        for grant in applicable:
            for bucket in ("deny", "allow", "approve"):
                for rule in getattr(grant, bucket):
                    rules.add(bucket, rule, grant)
        self._cache[key] = rules
        return rules

    def decide(self, *, agent: str, node: NodeContext, argv: Sequence[str]) -> Decision:
        """The decision for ``argv``, with the rule or check that made it."""
        try:
            check_hygiene(argv)
            argv_t = tuple(argv)
            paths = self._program_paths(node)
            name = program_name(argv_t[0], paths)
            spec = self.programs.get(name)
            if spec is None:
                raise Refused(f"{name!r} is not a program any squad may run", "program:unknown")
            parsed = parse(spec, argv_t[1:])
        except Refused as exc:
            return self._deny(exc.reason, exc.rule, agent, node, argv)
        path = paths[name]
        rules = self.rules_for(agent, node)
        key = (name, parsed.subcommands)
        shown = shlex.join(argv_t)
        for rule, grant in rules.deny.get(key, ()):
            if rule.matches(parsed):
                return Decision(Verdict.DENY, f"`{shown}` is denied by rule `{rule.text}` of grant {grant.label}",
                                rule=rule.text, grant=grant.spec.name, agent=agent, node=node.name,
                                program_path=None, argv=argv_t)
        problems: list[str] = []
        resolved = self._resolved(spec, parsed)
        for bucket, verdict in (("allow", Verdict.ALLOW), ("approve", Verdict.NEEDS_APPROVAL)):
            for rule, grant in getattr(rules, bucket).get(key, ()):
                if not rule.matches(parsed) or (resolved is not None and not rule.matches(resolved)):
                    continue
                problem = grant.constraint_problem(parsed) or (resolved and grant.constraint_problem(resolved))
                if problem:
                    problems.append(problem)
                    continue
                if verdict is Verdict.ALLOW:
                    reason = f"allowed by rule `{rule.text}` of grant {grant.label}"
                else:
                    reason = f"`{shown}` changes state: it needs approval (rule `{rule.text}` of grant {grant.label})"
                return Decision(verdict, reason, rule=rule.text, grant=grant.spec.name, agent=agent,
                                node=node.name, program_path=path, argv=argv_t,
                                program_args=dict(node.program_args).get(name, ()),
                                path_args=tuple((i + 1, v) for i, v in parsed.path_args))
        if problems:
            return self._deny(problems[0], "constraint", agent, node, argv_t)
        return self._deny(self._no_grant_reason(agent, node, shown, rules, key), "default:deny", agent, node, argv_t)

    # ------------------------------------------------------------------
    def _program_paths(self, node: NodeContext) -> dict[str, str]:
        paths = self._paths.get(node.programs)
        if paths is None:
            paths = {name: spec.path for name, spec in self.programs.items()}
            paths.update(node.programs)
            self._paths[node.programs] = paths
        return paths

    def _resolved(self, spec: ProgramSpec, parsed: Parsed) -> Parsed | None:
        if self.resolve_path is None or not parsed.path_values:
            return None
        resolve = self.resolve_path
        positionals = parsed.positionals
        if parsed.command is not None and parsed.command.positionals == "paths":
            positionals = [resolve(p) for p in positionals]
        options = [
            (name, resolve(value) if opt_spec.path and value is not None else value)
            for (name, value), opt_spec in zip(parsed.options, parsed.specs, strict=True)
        ]
        return replace(parsed, positionals=positionals, options=options,
                       path_values=[resolve(p) for p in parsed.path_values])

    @staticmethod
    def _deny(reason: str, rule: str, agent: str, node: NodeContext, argv: Sequence[object]) -> Decision:
        safe = tuple(a if isinstance(a, str) else repr(a) for a in argv) if not isinstance(argv, str | bytes) else (repr(argv),)
        return Decision(Verdict.DENY, reason, rule=rule, agent=agent, node=node.name, argv=safe)

    @staticmethod
    def _no_grant_reason(agent: str, node: NodeContext, shown: str, rules: _RuleSet,
                         key: tuple[str, tuple[str, ...]]) -> str:
        reason = f"no grant lets {agent} run `{shown}` on node {node.name} (default deny)"
        near = [r.text for r, _ in rules.allow.get(key, ())] + [r.text for r, _ in rules.approve.get(key, ())]
        if near:
            reason += "; the closest rules are: " + "; ".join(f"`{t}`" for t in near[:3])
        return reason
