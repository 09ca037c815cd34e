"""Parsers for kubectl's human-readable output.

kubectl's tables come out of a tabwriter and ``describe`` prints indented
``Key: value`` blocks. Neither layout is a contract (column widths follow the
data, versions add columns), so tables are cut where their header words start
and describe output is read by indentation and field names, never by fixed
character positions.

The describe parsers live here; the table parsers, quantities and selectors in
``kubectl_tables``, whose public names are importable from here too.
"""

from __future__ import annotations

import re
import textwrap
from dataclasses import dataclass, field

from .kubectl_tables import Event as Event
from .kubectl_tables import PodRow as PodRow
from .kubectl_tables import ServiceRow as ServiceRow
from .kubectl_tables import Usage as Usage
from .kubectl_tables import _int, _percent
from .kubectl_tables import cpu_millicores as cpu_millicores
from .kubectl_tables import memory_bytes as memory_bytes
from .kubectl_tables import parse_events as parse_events
from .kubectl_tables import parse_pods as parse_pods
from .kubectl_tables import parse_selector as parse_selector
from .kubectl_tables import parse_services as parse_services
from .kubectl_tables import parse_table as parse_table
from .kubectl_tables import parse_top as parse_top

# The key is whatever precedes the first colon, and that colon must end the token.
_KEY_LINE = re.compile(r"^(?P<indent> *)(?P<key>[^:]+):(?:[ \t]+(?P<value>.*))?$")
_NONE = frozenset({"", "<none>", "<unknown>", "<unset>"})


def _find(fields: list[Field], path: tuple[str, ...]) -> Field | None:
    if not path:
        return None
    for item in fields:
        if item.key.lower() == path[0].lower():
            found = item if len(path) == 1 else _find(item.children, path[1:])
            if found is not None:
                return found
    return None


@dataclass
class Field:
    """A describe ``Key: value`` line with its nested fields and verbatim continuation lines."""
    key: str
    value: str
    children: list[Field] = field(default_factory=list)
    lines: list[str] = field(default_factory=list)

    def get(self, *path: str) -> Field | None:
        """The first descendant at this key path (case-insensitive), or None."""
        return _find(self.children, path)


@dataclass
class Describe:
    """One object of `kubectl describe` output as a tree of fields."""
    fields: list[Field]

    def get(self, *path: str) -> Field | None:
        """The first field at this key path (case-insensitive), or None."""
        return _find(self.fields, path)

    def value(self, *path: str, default: str = "") -> str:
        """The value at this key path, or ``default`` when the field is absent."""
        found = self.get(*path)
        return default if found is None else found.value

    def all(self, key: str) -> list[Field]:
        """Every top-level field with this key; services repeat Port/TargetPort/Endpoints."""
        return [item for item in self.fields if item.key.lower() == key.lower()]

    @property
    def events(self) -> list[Event]:
        """The Events table (Type Reason Age From Message); [] when it says <none>."""
        return [Event(r.get("Type", ""), r.get("Reason", ""), r.get("Age", ""), r.get("From", ""), r.get("Message", ""))
                for r in _subtable(self.get("Events"), "Type")]


def _key_of(line: str) -> tuple[str, str, int] | None:
    """(key, value, value column) when the line reads as ``Key: value``."""
    match = _KEY_LINE.match(line)
    if not match:
        return None
    key = match.group("key")
    # Keys are short names with single spaces; labels, taints, images and table rows
    # carry "/", "=" or column gaps before their first colon.
    if key[0] in " \t([<'\"-" or "/" in key or "=" in key or "  " in key or "\t" in key:
        return None
    value = match.group("value") or ""
    return key, value.strip(), match.start("value") if value else -1


def _build_tree(lines: list[str]) -> list[Field]:
    top: list[Field] = []
    stack: list[tuple[int, int, Field]] = []  # (indent, value column, field)
    for raw in lines:
        line = raw.expandtabs().rstrip()
        if not line:
            continue
        indent = len(line) - len(line.lstrip(" "))
        while stack and stack[-1][0] >= indent:
            stack.pop()
        parent = stack[-1] if stack else None
        parsed = _key_of(line)
        # Under a field that already holds verbatim lines (a table) or aligned with its
        # value (a second label), a line continues that value even if it has a colon.
        if parent is not None and (parent[2].lines or indent == parent[1]):
            parsed = None
        if parsed is None:
            owner = parent[2] if parent else (top[-1] if top else None)
            if owner is not None:
                owner.lines.append(line)
            continue
        node = Field(parsed[0], parsed[1])
        (parent[2].children if parent else top).append(node)
        stack.append((indent, parsed[2], node))
    return top


def parse_describe(text: str) -> list[Describe]:
    """Parse `kubectl describe` output; a column-0 "Name:" starts each further object."""
    chunks: list[list[str]] = [[]]
    named = False
    for line in text.splitlines():
        if re.match(r"Name:(\s|$)", line):
            if named:
                chunks.append([])
            named = True
        chunks[-1].append(line)
    return [Describe(_build_tree(chunk)) for chunk in chunks if any(ln.strip() for ln in chunk)]


def _first(text: str) -> Describe:
    found = parse_describe(text)
    return found[0] if found else Describe([])


def _subtable(owner: Field | None, first_header: str) -> list[dict[str, str]]:
    """The table among a field's verbatim lines whose header starts with ``first_header``."""
    if owner is None:
        return []
    lines = textwrap.dedent("\n".join(owner.lines)).splitlines()
    for i, line in enumerate(lines):
        if line.split()[:1] == [first_header]:
            return parse_table("\n".join(lines[i:]))
    return []


def _multi(owner: Field | None) -> list[str]:
    """A value continued over several lines (labels, taints, tolerations), <none> dropped."""
    if owner is None:
        return []
    items = [owner.value] + [line.strip() for line in owner.lines]
    return [item for item in items if item not in _NONE]


def _plain(value: str) -> str:
    return "" if value in _NONE else value


def _conditions(owner: Field | None) -> dict[str, str]:
    return {row["Type"]: row.get("Status", "") for row in _subtable(owner, "Type") if row.get("Type")}


@dataclass
class ContainerInfo:
    """One container of a described pod."""
    name: str
    image: str
    state: str
    reason: str
    last_state: str
    last_reason: str
    exit_code: int | None
    restart_count: int
    ready: bool | None
    requests: dict[str, str]
    limits: dict[str, str]
    env: dict[str, str]
    ports: list[str]
    readiness: str = ""  # the probe as kubectl prints it: "http-get http://:8080/ready delay=10s ..."
    liveness: str = ""


def _children(owner: Field | None) -> dict[str, str]:
    return {} if owner is None else {child.key: child.value for child in owner.children}


def _container(item: Field) -> ContainerInfo:
    def val(*path: str) -> str:
        found = item.get(*path)
        return "" if found is None else found.value

    # The current state's exit code is the fresher one; a waiting container only has the last.
    exit_text = val("State", "Exit Code") or val("Last State", "Exit Code")
    ready = val("Ready").lower()
    ports = [
        port.strip()
        for child in item.children if child.key in ("Port", "Ports")
        for port in child.value.split(",") if port.strip() not in _NONE
    ]
    return ContainerInfo(
        name=item.key, image=val("Image"), state=val("State"), reason=val("State", "Reason"),
        last_state=val("Last State"), last_reason=val("Last State", "Reason"),
        exit_code=_int(exit_text) if re.match(r"\s*-?\d", exit_text) else None,
        restart_count=_int(val("Restart Count")), ready={"true": True, "false": False}.get(ready),
        requests=_children(item.get("Requests")), limits=_children(item.get("Limits")),
        env=_children(item.get("Environment")), ports=ports, readiness=val("Readiness"), liveness=val("Liveness"),
    )


@dataclass
class PodInfo:
    """The parts of `kubectl describe pod` a diagnosis needs; node is the name without its IP."""
    name: str
    namespace: str
    node: str
    status: str
    labels: dict[str, str]
    containers: list[ContainerInfo]
    conditions: dict[str, str]
    events: list[Event]
    claims: list[str]
    node_selectors: str
    tolerations: list[str]
    controlled_by: str
    init_containers: list[ContainerInfo] = field(default_factory=list)


def describe_pod(text: str) -> PodInfo:
    """Summarise `kubectl describe pod` output (the first pod if there are several)."""
    doc = _first(text)
    containers = doc.get("Containers")
    inits = doc.get("Init Containers")
    volumes = doc.get("Volumes")
    claims = [] if volumes is None else [
        claim.value for vol in volumes.children if (claim := vol.get("ClaimName")) is not None
    ]
    return PodInfo(
        name=doc.value("Name"), namespace=doc.value("Namespace"),
        node=_plain(doc.value("Node").split("/")[0]), status=doc.value("Status"),
        labels=parse_selector(" ".join(_multi(doc.get("Labels")))),
        containers=[] if containers is None else [_container(c) for c in containers.children],
        conditions=_conditions(doc.get("Conditions")), events=doc.events, claims=claims,
        node_selectors=",".join(_multi(doc.get("Node-Selectors"))), tolerations=_multi(doc.get("Tolerations")),
        controlled_by=_plain(doc.value("Controlled By")),
        init_containers=[] if inits is None else [_container(c) for c in inits.children],
    )


@dataclass
class ServiceInfo:
    """`kubectl describe service`: ports are (name or "", port, protocol); endpoints are ip:port."""
    name: str
    namespace: str
    selector: dict[str, str]
    type: str
    ports: list[tuple[str, int, str]]
    target_ports: list[str]
    endpoints: list[str]
    events: list[Event]
    ip: str = ""


def describe_service(text: str) -> ServiceInfo:
    """Summarise `kubectl describe service` output; a service prints one Port/Endpoints per port."""
    doc = _first(text)
    ports = []
    for item in doc.all("Port"):
        match = re.match(r"(?:(\S+)\s+)?(\d+)(?:/(\w+))?$", item.value)
        if match:
            ports.append((_plain(match.group(1) or ""), int(match.group(2)), match.group(3) or "TCP"))
    endpoints = []
    for item in doc.all("Endpoints"):
        # Long lists end in "+ 3 more..."; the addresses kubectl did print are still real.
        listed = item.value.split(" + ")[0]
        endpoints += [ep.strip() for ep in listed.split(",") if ep.strip() not in _NONE]
    return ServiceInfo(
        name=doc.value("Name"), namespace=doc.value("Namespace"), selector=parse_selector(doc.value("Selector")),
        type=doc.value("Type"), ports=ports,
        target_ports=[item.value for item in doc.all("TargetPort") if item.value not in _NONE],
        endpoints=endpoints, events=doc.events, ip=doc.value("IP"),
    )


@dataclass
class PvcInfo:
    """`kubectl describe pvc`: empty strings where an unbound claim shows nothing."""
    name: str
    namespace: str
    status: str
    storage_class: str
    volume: str
    capacity: str
    events: list[Event]


def describe_pvc(text: str) -> PvcInfo:
    """Summarise `kubectl describe pvc` output."""
    doc = _first(text)
    return PvcInfo(
        name=doc.value("Name"), namespace=doc.value("Namespace"), status=doc.value("Status"),
        storage_class=_plain(doc.value("StorageClass")), volume=_plain(doc.value("Volume")),
        capacity=_plain(doc.value("Capacity")), events=doc.events,
    )


@dataclass
class NodeInfo:
    """`kubectl describe node`: conditions are Type -> Status; allocated is resource -> (requests, limits)."""
    name: str
    taints: list[str]
    unschedulable: bool
    conditions: dict[str, str]
    allocatable: dict[str, str]
    allocated: dict[str, tuple[str, str]]
    allocated_percent: dict[str, int]
    labels: dict[str, str] = field(default_factory=dict)
    pods_running: int | None = None  # "Non-terminated Pods: (N in total)"; None when the line is absent


def describe_nodes(text: str) -> list[NodeInfo]:
    """Summarise `kubectl describe node(s)` output, one NodeInfo per node."""
    nodes = []
    for doc in parse_describe(text):
        allocated = {
            row["Resource"]: (row.get("Requests", ""), row.get("Limits", ""))
            for row in _subtable(doc.get("Allocated resources"), "Resource") if row.get("Resource")
        }
        percent = {name: p for name, (requests, _) in allocated.items() if (p := _percent(requests)) is not None}
        nodes.append(NodeInfo(
            name=doc.value("Name"), taints=_multi(doc.get("Taints")),
            unschedulable=doc.value("Unschedulable").lower() == "true", conditions=_conditions(doc.get("Conditions")),
            allocatable=_children(doc.get("Allocatable")), allocated=allocated, allocated_percent=percent,
            labels=parse_selector(",".join(_multi(doc.get("Labels")))),
            pods_running=int(m.group(1)) if (m := _IN_TOTAL.search(doc.value("Non-terminated Pods"))) else None,
        ))
    return nodes


_IN_TOTAL = re.compile(r"\((\d+) in total\)")


@dataclass
class DeploymentInfo:
    """`kubectl describe deployment`: replicas is the raw "1 desired | 1 updated | ..." line."""
    name: str
    namespace: str
    replicas: str
    image: str
    conditions: dict[str, str]
    events: list[Event]


def describe_deployment(text: str) -> DeploymentInfo:
    """Summarise `kubectl describe deployment` output; several containers' images join with ","."""
    doc = _first(text)
    containers = doc.get("Pod Template", "Containers")
    images = [] if containers is None else [
        image.value for c in containers.children if (image := c.get("Image")) is not None
    ]
    return DeploymentInfo(
        name=doc.value("Name"), namespace=doc.value("Namespace"), replicas=doc.value("Replicas"),
        image=",".join(images), conditions=_conditions(doc.get("Conditions")), events=doc.events,
    )
