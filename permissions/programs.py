"""Per-program flag policy: which options and subcommands each program has.

The data lives in ``programs.yaml``; this module validates it into frozen
specs the argv parser walks. A spec lists every option the policy knows,
allowed or denied, because GNU long-option abbreviations are resolved against
that list: ``--vacuum-t`` must be recognised as ``--vacuum-time`` to be denied.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from functools import lru_cache
from pathlib import Path
import re
from collections.abc import Callable, Mapping
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from squads.settings.yaml_loader import safe_load

from permissions.normalise import normaliser
from permissions.validators import Validator, from_spec

PROGRAM_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]{0,63}")


class Style(StrEnum):
    """How a program parses its command line."""

    GNU = "gnu"  # getopt_long: bundling, '--opt=v', unique-prefix abbreviations
    PFLAG = "pflag"  # Go pflag (kubectl): bundling, '-n=v', no abbreviations
    SINGLE_DASH = "single_dash"  # find, openssl: '-name' words, no bundling


class ValueKind(StrEnum):
    NONE = "none"
    REQUIRED = "required"
    OPTIONAL = "optional"  # only attached: '--opt=v' or '-ov'
    PEEK = "peek"  # optional, but the next token is taken when it fits (journalctl -n 50)


class OptionModel(BaseModel):
    model_config = ConfigDict(extra="forbid")
    value: ValueKind = ValueKind.NONE
    values: str | None = None  # validator spec for the value
    deny: str | None = None
    path: bool = False
    repeatable: bool = False
    sql: bool = False
    # Options that only change how output looks (kubectl -o wide, --no-headers):
    # they never decide whether a rule matches. format_values narrows which
    # values count as formatting (-o wide is, -o yaml is not).
    format: bool = False
    format_values: str | None = None
    # With deny: the values that are nevertheless fine (rollout status --watch=false).
    deny_unless: str | None = None
    # A normaliser from permissions.normalise for the value (find's -perm spellings).
    normalise: str | None = None
    # Options (canonical names) this one silently overrides when both are given
    # (kubectl -A ignores -n; tail -c replaces -n): the pair is refused.
    overrides: list[str] = Field(default_factory=list)


class CommandModel(BaseModel):
    model_config = ConfigDict(extra="forbid")
    options: dict[str, OptionModel] = Field(default_factory=dict)
    subcommands: dict[str, CommandModel] = Field(default_factory=dict)
    subcommand_required: bool = True
    unknown_subcommand: str | None = None
    deny: str | None = None
    positionals: Literal["any", "none", "paths"] = "any"
    positional_values: str | None = None
    positional_normalise: str | None = None  # e.g. unit: 'nginx.service' is 'nginx'
    require: list[str] = Field(default_factory=list)
    # kubectl resource words this command refuses in its first argument, after
    # splitting 'a,b' and 'type/name', lowercasing and dropping '.group'.
    forbidden_resources: dict[str, str] = Field(default_factory=dict)
    # kubectl commands whose arguments name resources: 'type' (get, describe:
    # the first argument is a type list) or 'pod' (logs: a pod, or type/name).
    # Their resource words are normalised to kubectl's canonical names.
    resource_args: Literal["type", "pod"] | None = None
    # The comma-separated names of this subcommand are aliases of one command
    # (kubectl top pods/pod/po): rules see the first name whatever was typed.
    aliases: bool = False


class ProgramModel(CommandModel):
    path: str
    style: Style = Style.GNU
    equals_values: bool = False  # single-dash programs that accept '-opt=value'
    double_dash: bool = True  # whether '--' ends options for this program
    # Options the program reads before its subcommand (None: any known option).
    before_subcommand: list[str] | None = None

    @model_validator(mode="after")
    def _absolute(self) -> ProgramModel:
        if not self.path.startswith("/"):
            raise ValueError(f"program path must be absolute, got {self.path!r}")
        return self


@dataclass(frozen=True, slots=True)
class OptionSpec:
    """One option as the parser sees it."""

    canonical: str
    names: tuple[str, ...]
    value: ValueKind
    validator: Validator | None
    deny: str | None
    path: bool
    repeatable: bool
    sql: bool
    format_only: bool = False
    format_validator: Validator | None = None
    deny_unless: Validator | None = None
    normalise: Callable[[str], str] | None = None
    overrides: tuple[str, ...] = ()

    def only_formats(self, value: str | None) -> bool:
        """True when this option with ``value`` changes only how output looks."""
        if not self.format_only:
            return False
        return self.format_validator is None or (value is not None and self.format_validator(value))


@dataclass(slots=True)
class CommandSpec:
    """A program or one of its subcommands."""

    name: str
    options: dict[str, OptionSpec]  # every spelling -> spec
    subcommands: dict[str, CommandSpec]  # every alias -> spec
    subcommand_required: bool
    unknown_subcommand: str | None
    deny: str | None
    positionals: str
    positional_validator: Validator | None
    require: tuple[str, ...]
    forbidden_resources: dict[str, str] = field(default_factory=dict)
    long_names: tuple[str, ...] = field(default=())
    resource_args: str | None = None
    word: str | None = None  # the name rules see when aliases are normalised
    positional_normalise: Callable[[str], str] | None = None


@dataclass(slots=True)
class ProgramSpec:
    """A program's root command plus how it parses."""

    name: str
    path: str
    style: Style
    equals_values: bool
    double_dash: bool
    before_subcommand: frozenset[str] | None
    root: CommandSpec


def override_problem(program: str, options: list[tuple[str, str | None]], specs: list[OptionSpec]) -> str | None:
    """Why two given options cannot go together (one silently cancels the other), or None.

    A rule that names ``-n staging`` must not match a command in which ``-A``
    makes kubectl ignore it, whatever '...' or a grant allows."""
    present = {name for name, _ in options}
    for spec in specs:
        for other in spec.overrides:
            if other in present:
                return (f"{spec.canonical} and {other} together: {program} silently uses only one of them; "
                        "give one")
    return None


def _split_names(key: str) -> tuple[str, ...]:
    names = tuple(n.strip() for n in key.split(",") if n.strip())
    if not names:
        raise ValueError(f"empty option name in {key!r}")
    return names


def _canonical(names: tuple[str, ...]) -> str:
    longs = [n for n in names if n.startswith("--")]
    return longs[0] if longs else names[0]


def _build_command(name: str, model: CommandModel) -> CommandSpec:
    options: dict[str, OptionSpec] = {}
    for key, opt in model.options.items():
        names = _split_names(key)
        spec = OptionSpec(
            canonical=_canonical(names),
            names=names,
            value=opt.value,
            validator=from_spec(opt.values) if opt.values else None,
            deny=opt.deny,
            path=opt.path,
            repeatable=opt.repeatable,
            sql=opt.sql,
            format_only=opt.format,
            format_validator=from_spec(opt.format_values) if opt.format_values else None,
            deny_unless=from_spec(opt.deny_unless) if opt.deny_unless else None,
            normalise=normaliser(opt.normalise) if opt.normalise else None,
            overrides=tuple(opt.overrides),
        )
        for n in names:
            if n in options:
                raise ValueError(f"{name}: option {n} is listed twice")
            options[n] = spec
    canonicals = {spec.canonical for spec in options.values()}
    for spec in options.values():
        unknown = [o for o in spec.overrides if o not in canonicals]
        if unknown:
            raise ValueError(f"{name}: {spec.canonical} overrides {unknown}, which are not canonical option names here")
    subcommands: dict[str, CommandSpec] = {}
    for key, sub in model.subcommands.items():
        aliases = _split_names(key)
        built = _build_command(f"{name} {aliases[0]}", sub)
        built.word = aliases[0] if sub.aliases else None
        for alias in aliases:
            subcommands[alias] = built
    return CommandSpec(
        name=name,
        options=options,
        subcommands=subcommands,
        subcommand_required=model.subcommand_required,
        unknown_subcommand=model.unknown_subcommand,
        deny=model.deny,
        positionals=model.positionals,
        positional_validator=from_spec(model.positional_values) if model.positional_values else None,
        require=tuple(model.require),
        forbidden_resources=dict(model.forbidden_resources),
        long_names=tuple(sorted(n for n in options if n.startswith("--"))),
        resource_args=model.resource_args,
        positional_normalise=normaliser(model.positional_normalise) if model.positional_normalise else None,
    )


def build_program(name: str, raw: dict[str, Any]) -> ProgramSpec:
    """Validate one program's YAML mapping into a spec."""
    model = ProgramModel.model_validate(raw)
    return ProgramSpec(
        name=name,
        path=model.path,
        style=model.style,
        equals_values=model.equals_values,
        double_dash=model.double_dash,
        before_subcommand=None if model.before_subcommand is None else frozenset(model.before_subcommand),
        root=_build_command(name, model),
    )


@lru_cache(maxsize=4)
def load_programs(path: Path | None = None) -> dict[str, ProgramSpec]:
    """The flag policy of every known program (``programs.yaml`` by default)."""
    source = path or Path(__file__).with_name("programs.yaml")
    data = safe_load(source.read_text())
    if not isinstance(data, dict):
        raise ValueError(f"{source}: expected a mapping of program name to spec")
    return {name: build_program(name, raw) for name, raw in data.items()}


def programs_from_document(
    data: object, *, source: str, shipped: Mapping[str, ProgramSpec]
) -> dict[str, ProgramSpec]:
    """Programs a site adds (``{programs: {name: spec}}``), validated like the shipped ones.

    A site may add programs but not redefine a shipped one: loosening kubectl's
    flag policy by accident in a site file must not be possible."""
    if not isinstance(data, dict) or not isinstance(data.get("programs", {}), dict):
        raise ValueError(f"{source}: expected a mapping with a 'programs' mapping of name to spec")
    added: dict[str, ProgramSpec] = {}
    for name, raw in (data.get("programs") or {}).items():
        if not isinstance(name, str) or not PROGRAM_NAME.fullmatch(name):
            raise ValueError(f"{source}: program name {name!r} must be a plain file name such as 'haproxy'")
        if name in shipped:
            raise ValueError(f"{source}: program {name!r} is shipped with Squads and cannot be redefined here")
        if not isinstance(raw, dict):
            raise ValueError(f"{source}: program {name}: expected a mapping (path, options, ...)")
        try:
            spec = build_program(name, raw)
        except (ValueError, ValidationError) as exc:
            raise ValueError(f"{source}: program {name}: {exc}") from None
        if not spec.path.startswith("/") or "/../" in spec.path or spec.path.rsplit("/", 1)[-1] in ("", ".."):
            raise ValueError(f"{source}: program {name}: path must be absolute, got {spec.path!r}")
        added[name] = spec
    return added


def load_site_programs(folder: Path, *, shipped: Mapping[str, ProgramSpec] | None = None) -> dict[str, ProgramSpec]:
    """Programs added in ``<folder>/*.yaml`` (a site's ``programs/`` folder), in file-name order."""
    shipped = load_programs() if shipped is None else shipped
    added: dict[str, ProgramSpec] = {}
    if folder.is_dir():
        for path in sorted(folder.glob("*.y*ml")):
            try:
                data = safe_load(path.read_text())
            except yaml.YAMLError as exc:
                raise ValueError(f"{path}: not valid YAML: {exc}") from None
            added.update(programs_from_document(data, source=str(path), shipped={**shipped, **added}))
    return added


def known_programs() -> frozenset[str]:
    """The names of every program with a flag policy (what a command may start with)."""
    return frozenset(load_programs())
