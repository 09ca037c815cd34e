"""Pulling the values a runbook needs (pod, namespace, unit, pid, ...) out of a message.

Everything found here is untrusted text. Each value is checked by the same
validator its tool parameter uses, so a value that would be refused later is
refused now, with a message that says what a valid one looks like.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field

from permissions.validators import ValueRejected, from_spec

# Words that follow "pod", "service", "in", ... in ordinary sentences but are never names.
STOPWORDS = frozenset(
    """a an the is are was were be been it its this that these those my our your their his her
    in on of for to from with by at as and or but not no any some all every each which what who
    keeps keep has have had does do did can could should would will named called name names
    pod pods service services namespace namespaces deployment deployments container node nodes
    application app apps here there now today yesterday please again still also just only
    state status crashloopbackoff restarting crashing running pending failing broken down up
    never ever become becomes became keep kept won't wont cannot can't stuck after before since
    delete remove kill restart reload scale describe show get list check run execute look see
    why how when where last past hour hours minute minutes day days week night morning evening
    logs log cluster loop phase progress general total order case fact time prod-like way
    so then again too very really also that which because stuck one other same""".split()
)

# Up to white space or a comma: a token with shell punctuation is captured whole and
# then fails its validator, rather than being silently cut down to a valid prefix.
NAME = r"([^\s,]+)"
SLOT_TYPES: dict[str, str] = {
    "namespace": "k8s_name",
    "pod": "k8s_name",
    "service": "k8s_name",
    "deployment": "k8s_name",
    "container": "k8s_name",
    "app": "k8s_name",
    "replicas": "int:0..1000",
    "pid": "pid",
    "path": "path:/",
    "server": "enum:nginx,apache2,httpd",
}

# Slots that name what a question is about; a new question forgets the previous subject
# (the namespace, the server and the node carry over).
SUBJECT_SLOTS = ("pod", "service", "deployment", "container", "app", "pid", "path", "replicas")

PATTERNS: dict[str, list[re.Pattern[str]]] = {
    slot: [re.compile(p, re.IGNORECASE) for p in patterns]
    for slot, patterns in {
        "namespace": [
            rf"\bnamespace\s*[:=]\s*{NAME}",
            rf"\S\s+in\s+(?:the\s+)?{NAME}\s+(?:namespace|ns)\b",  # "cart-api in the checkout namespace"
            rf"(?:^|\s)(?:-n|--namespace)[=\s]+{NAME}",
            rf"\bns\s*[:=]\s*{NAME}",
            rf"\bns\s+{NAME}",
            rf"(?:^|\s){NAME}\s+namespace\b",
            rf"\bnamespace\s+{NAME}",
            rf"\b(?:shipped|deployed|released|rolled\s+out|pushed|promoted)\s+\S+\s+(?:to|into|in)\s+{NAME}",
            rf"\bin\s+(?:the\s+)?{NAME}",  # loose: see SOFT
        ],
        "pod": [
            rf"\bpods?/{NAME}",
            rf"\bpod\s*[:=]\s*{NAME}",
            rf"\bpod\s+(?:named\s+|called\s+)?{NAME}",
            r"(?<![\w-])([a-z][a-z0-9-]{0,200}-[a-z0-9]{6,10}-[a-z0-9]{5})(?![\w-])",
        ],
        "service": [
            rf"\b(?:svc|service)/{NAME}",
            rf"\b(?:service|svc)\s*[:=]\s*{NAME}",
            rf"\b(?:service|svc)\s+(?:named\s+|called\s+)?{NAME}",
        ],
        "deployment": [
            rf"\b(?:deploy|deployment)/{NAME}",
            rf"\bdeployment\s*[:=]\s*{NAME}",
            rf"\bdeployment\s+(?:named\s+|called\s+)?{NAME}",
            rf"(?:^|\s){NAME}\s+deployment\b",
            rf"\bscale\s+(?:the\s+)?(?:up\s+|down\s+)?{NAME}",
        ],
        "container": [rf"\bcontainer\s*[:=]?\s*{NAME}", rf"(?:^|\s)-c\s+{NAME}"],
        "app": [rf"(?:^|\s){NAME}\s+(?:pods|app|application|containers|deploy|deployment|rollout|release|statefulset|sts|daemonset|job|cronjob)\b"],
        "replicas": [rf"--replicas[=\s]+{NAME}", r"\bto\s+(\d[^\s,]*)", r"\b(\d+)\s+replicas?\b"],
        "pid": [rf"\bpid\s*[:=#]?\s*{NAME}", r"\b(?:backend|session|process|connection)\s+(\d[^\s,]*)"],
        # Not the "//host" of a URL, nor a fragment of a relative path; captured up to white space so
        # that "/var/log/x/$(id)" is refused whole rather than cut down to "/var/log/x".
        "path": [r"(?<![\w.~/:-])(/(?!/)[^\s,'\"`]*[^\s,'\"`.;:!?)])"],
        "server": [r"\b(nginx|apache2?|httpd)\b"],
    }.items()
}
ALIASES = {"server": {"apache": "apache2"}}
# Loose patterns ("in X") match much ordinary prose ("in ImagePullBackOff", "in a loop"): a
# candidate from them that fails its validator is skipped, not reported; it is never cut down.
SOFT = {("namespace", PATTERNS["namespace"][-1].pattern), ("namespace", PATTERNS["namespace"][-2].pattern)}


@dataclass
class Extraction:
    """Values found in a message, and the ones that failed their validator."""

    values: dict[str, str] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)
    text: str = ""


def _candidates(slot: str, text: str) -> Iterable[tuple[str, bool]]:
    """(value, soft) for each plausible value, most specific pattern first."""
    for pattern in PATTERNS[slot]:
        soft = (slot, pattern.pattern) in SOFT
        for match in pattern.finditer(text):
            value = match.group(1).rstrip(".,:!?'\"").lstrip("('\"")
            if value.endswith(")") and "(" not in value:
                value = value[:-1]  # "(pod foo)" but not "$(id)"
            if value.lower() in STOPWORDS:
                continue
            yield ALIASES.get(slot, {}).get(value.lower(), value), soft


def extract(text: str, slots: Iterable[str] = SLOT_TYPES) -> Extraction:
    """The first plausible value of each slot in ``text``, validated.

    Patterns are tried most specific first, and the first candidate decides: a
    candidate that fails its validator is an error, never a reason to try a
    looser pattern that might pick a valid-looking piece of the same token."""
    found = Extraction(text=text)
    for slot in slots:
        if slot not in PATTERNS:
            continue
        validator = from_spec(SLOT_TYPES[slot])
        for value, soft in _candidates(slot, text):
            if slot == "server":
                value = value.lower()
            if soft and not validator.check(value):
                continue
            try:
                found.values[slot] = validator.validate(value, what=slot)
            except ValueRejected as exc:
                found.errors[slot] = str(exc)
            break
    return found


def validate_slot(slot: str, value: str) -> str:
    """Check one value against its slot's validator (raises ``ValueRejected``)."""
    return from_spec(SLOT_TYPES.get(slot, "any")).validate(value, what=slot)


def all_paths(text: str) -> list[str]:
    """Every absolute path in ``text`` that passes the path validator, in order, once each."""
    validator = from_spec(SLOT_TYPES["path"])
    found: list[str] = []
    for match in PATTERNS["path"][0].finditer(text):
        value = match.group(1).rstrip(".,:!?'\"")
        if validator.check(value) and value not in found:
            found.append(value)
    return found
