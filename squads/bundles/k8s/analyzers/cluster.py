"""Reading kubectl output about the cluster around a pod: services, claims, nodes, usage, deployments."""

from __future__ import annotations

import difflib
import re

from squads.brain.analyzers import Output, analyzer
from squads.brain.analyzers.common import failure
from squads.brain.known_errors import CODES as LOG_CODES
from squads.brain.known_errors import FACTS as LOG_FACTS
from squads.brain.known_errors import fill_in
from squads.brain.models import Analysis, Facts, Severity
from squads.brain.signatures import catalogue

from .. import kubectl as k
from . import usage
from .pods import said


@analyzer(
    "k8s.services",
    facts=("dependency_services",),
    codes=("dependency_outside", "dependency_service", "dns_broken", "dns_no_service"),
)
def services(output: Output, facts: Facts) -> Analysis:
    """``kubectl get services``: which Service is the unreachable dependency."""
    if failed := failure(output):
        return failed
    rows = k.parse_services(output.stdout)
    result = Analysis(summary=", ".join(f"{s.name} ({'/'.join(f'{p}/{proto}' for p, proto in s.ports)})" for s in rows) or "no services")
    ports = {int(p) for p in facts.get("dependency_ports", [])}
    raw_hosts = [str(h) for h in facts.get("dependency_hosts", [])]
    hosts = [h.split(".")[0] for h in raw_hosts]
    message = str(facts.get("message") or "").lower()
    matched = (
        [s for s in rows if s.name in hosts or s.cluster_ip in raw_hosts]
        or [s for s in rows if ports & {p for p, _ in s.ports}]
        # No address to go by: the Service the user named ("can't reach orders-svc"), the service slot first.
        or [s for s in rows if s.name == facts.get("service")]
        or [s for s in rows if message and said(s.name, message)]
    )
    names = [s.name for s in rows]
    for name in facts.get("unresolved_names", []):
        short = str(name).split(".")[0]
        if short in names:
            result.add(
                "dns_broken", Severity.CAUSE,
                f"Service {short} exists, yet its name does not resolve from the pod: check cluster DNS (CoreDNS) "
                "and the pod's dnsPolicy.",
            )
            continue
        close = difflib.get_close_matches(short, names, n=1, cutoff=0.5)
        hint = f" The closest existing Service is {close[0]}: is the app configured with the wrong name?" if close else ""
        result.add(
            "dns_no_service", Severity.CAUSE,
            f"The app looks up {name}, but there is no Service named {short} in this namespace "
            f"(services here: {', '.join(names) or 'none'}), so the name does not resolve.{hint}",
            name=short, closest=close[0] if close else "",
        )
    if matched:
        result.facts["dependency_services"] = [s.name for s in matched]
        for s in matched:
            result.add(
                "dependency_service", Severity.INFO,
                f"Service {s.name} ({s.cluster_ip}) exposes port {', '.join(str(p) for p, _ in s.ports)}, "
                "the address the failing app cannot reach.",
            )
    elif ports:
        result.add(
            "dependency_outside", Severity.PROBLEM,
            f"No Service in this namespace exposes port {', '.join(map(str, sorted(ports)))}: the dependency lives elsewhere "
            "(another namespace or outside the cluster) and is down or unreachable from here.",
        )
    return result


@analyzer(
    "k8s.describe_service",
    facts=("dependency_selectors", "remote_selector_refs", "service_of_selector"),
    codes=("service_no_endpoints",),
)
def describe_service(output: Output, facts: Facts) -> Analysis:
    """``kubectl describe service``: selector and endpoints."""
    if failed := failure(output):
        return failed
    info = k.describe_service(output.stdout)
    selector = ",".join(f"{k_}={v}" for k_, v in info.selector.items())
    ports = ", ".join(f"{p}/{proto}" for _, p, proto in info.ports)
    result = Analysis(summary=f"selector {selector or 'none'}, port {ports}, endpoints {', '.join(info.endpoints) or 'none'}")
    if not info.endpoints:
        if selector and info.namespace and info.namespace != facts.get("namespace"):
            # A Service in another namespace: its pods are looked for there.
            result.facts["remote_selector_refs"] = [{"selector": selector, "namespace": info.namespace}]
            result.facts["service_of_selector"] = {selector: f"{info.name} (namespace {info.namespace})"}
        elif selector:
            result.facts["dependency_selectors"] = [selector]
            result.facts["service_of_selector"] = {selector: info.name}
        # A Service with a ClusterIP keeps its DNS record whether or not anything serves behind it:
        # "cannot resolve" is then the client's guess, the real error is a refused connection.
        resolves = (f" Its name still resolves (to {info.ip}), so this is not a DNS problem."
                    if re.fullmatch(r"[0-9a-fA-F.:]+", info.ip or "") else "")
        result.add(
            "service_no_endpoints", Severity.PROBLEM,
            f"Service {info.name} ({ports}) has no endpoints: no ready pod matches its selector {selector or '(none)'}, "
            f"so connections to it are refused.{resolves}",
            service=info.name,
        )
    return result


@analyzer(
    "k8s.endpoints",
    codes=("service_no_endpoints",),
)
def endpoints(output: Output, facts: Facts) -> Analysis:
    """``kubectl get endpoints``."""
    if failed := failure(output):
        return failed
    rows = k.parse_table(output.stdout)
    empty = [r["NAME"] for r in rows if r.get("ENDPOINTS", "") in ("", "<none>")]
    result = Analysis(summary=", ".join(f"{r.get('NAME')}: {r.get('ENDPOINTS')}" for r in rows))
    for name in empty:
        result.add("service_no_endpoints", Severity.PROBLEM, f"Service {name} has no endpoints.")
    return result


@analyzer(
    "k8s.events",
    facts=LOG_FACTS,
    codes=("warning_event", *LOG_CODES),
)
def events(output: Output, facts: Facts) -> Analysis:
    """``kubectl get events``: the warnings, newest last; a warning the catalogue knows is reported
    with its meaning, causes and fix (and its count), the others as they are."""
    if failed := failure(output):
        return failed
    rows = k.parse_events(output.stdout)
    warnings = [e for e in rows if e.type == "Warning"]
    result = Analysis(summary=f"{len(rows)} events, {len(warnings)} warnings")
    known = catalogue("k8s")
    seen: set[str] = set()
    for e in warnings[-6:]:
        key = f"{e.object}{e.reason}"
        if key not in seen and known.match(e.message) is None:
            seen.add(key)
            result.add("warning_event", Severity.INFO, f"{e.object}: {e.reason}: {e.message}")
    fill_in(result, "\n".join(e.message for e in warnings), squad="k8s", source="The event list")
    return result


@analyzer(
    "k8s.pvcs",
    facts=("unbound_claims",),
    codes=("pvc_unbound",),
)
def pvcs(output: Output, facts: Facts) -> Analysis:
    """``kubectl get pvc``: claims that are not Bound."""
    if failed := failure(output):
        return failed
    rows = k.parse_table(output.stdout)
    pending = [r for r in rows if r.get("STATUS") != "Bound"]
    result = Analysis(summary=", ".join(f"{r.get('NAME')} {r.get('STATUS')} ({r.get('STORAGECLASS', '')})" for r in rows) or "no claims")
    if pending:
        result.facts["unbound_claims"] = [r["NAME"] for r in pending]
        for r in pending:
            result.add(
                "pvc_unbound", Severity.PROBLEM,
                f"PersistentVolumeClaim {r.get('NAME')} is {r.get('STATUS')} (storage class {r.get('STORAGECLASS') or 'none'}).",
            )
    return result


@analyzer(
    "k8s.describe_pvc",
    facts=("missing_storageclass",),
    codes=("pvc_missing_storageclass", "pvc_unbound", "pvc_waiting_consumer"),
)
def describe_pvc(output: Output, facts: Facts) -> Analysis:
    """``kubectl describe pvc``: why a claim is not bound."""
    if failed := failure(output):
        return failed
    info = k.describe_pvc(output.stdout)
    result = Analysis(summary=f"{info.name}: {info.status}, storage class {info.storage_class or 'none'}")
    if info.status == "Bound":
        return result
    messages = [e.message for e in info.events if e.type == "Warning"] or [e.message for e in info.events]
    last = messages[-1] if messages else ""
    missing = re.search(r'storageclass[.\w]*\s+"([^"]+)"\s+not found', last, re.IGNORECASE)
    if missing:
        result.facts["missing_storageclass"] = missing.group(1)
        result.add(
            "pvc_missing_storageclass", Severity.CAUSE,
            f"PersistentVolumeClaim {info.name} is {info.status}: it asks for storage class {missing.group(1)}, which does "
            f"not exist in the cluster (\"{last}\"), so no volume is provisioned and the pod using it stays Pending.",
            claim=info.name, storage_class=missing.group(1),
        )
    elif "waiting for first consumer" in last.lower():
        result.add("pvc_waiting_consumer", Severity.INFO, f"{info.name} waits for a pod to be scheduled before binding.")
    else:
        result.add("pvc_unbound", Severity.PROBLEM, f"PersistentVolumeClaim {info.name} is {info.status}: {last or 'no events'}")
    return result


@analyzer(
    "k8s.storageclasses",
    codes=("storageclass_choices",),
)
def storageclasses(output: Output, facts: Facts) -> Analysis:
    """``kubectl get storageclass``: what exists, and the default."""
    if failed := failure(output):
        return failed
    names = [r.get("NAME", "") for r in k.parse_table(output.stdout)]
    result = Analysis(summary="storage classes: " + (", ".join(names) or "none"))
    wanted = facts.get("missing_storageclass")
    if wanted:
        result.add(
            "storageclass_choices", Severity.INFO,
            f"Storage classes that do exist: {', '.join(names) or 'none'} (not {wanted}).",
        )
    return result


@analyzer(
    "k8s.top_nodes",
    facts=("busy_nodes",),
    codes=("nodes_busy",),
)
def top_nodes(output: Output, facts: Facts) -> Analysis:
    """``kubectl top nodes``: nodes near their CPU or memory capacity."""
    if failed := failure(output):
        return failed
    rows = k.parse_top(output.stdout)
    result = Analysis(summary=", ".join(f"{u.name} CPU {u.cpu_percent}% memory {u.memory_percent}%" for u in rows))
    hot = [u for u in rows if (u.cpu_percent or 0) >= 85 or (u.memory_percent or 0) >= 85]
    if hot:
        result.facts["busy_nodes"] = [u.name for u in hot]
        result.add(
            "nodes_busy", Severity.PROBLEM,
            "Nodes near capacity: " + ", ".join(f"{u.name} (CPU {u.cpu_percent}%, memory {u.memory_percent}%)" for u in hot) + ".",
        )
    return result


@analyzer(
    "k8s.top_pods",
    facts=("hot_pods", "pod_usage"),
    codes=("cpu_at_limit", "memory_at_limit", "top_consumers"),
)
def top_pods(output: Output, facts: Facts) -> Analysis:
    """``kubectl top pods``: the biggest consumers."""
    if failed := failure(output):
        return failed
    rows = k.parse_top(output.stdout)
    by_cpu = sorted(rows, key=lambda u: -(u.cpu_m or 0))
    total = sum(u.cpu_m or 0 for u in rows) or 1
    top = [u for u in by_cpu[:3] if u.cpu_m]
    result = Analysis(summary=", ".join(f"{u.name} {u.cpu_m}m CPU {_mib(u.memory_bytes)}" for u in by_cpu[:6]))
    if top:
        share = sum(u.cpu_m or 0 for u in top) * 100 // total
        result.add(
            "top_consumers", Severity.PROBLEM if share >= 60 and len(rows) > len(top) else Severity.INFO,
            "Most CPU goes to " + ", ".join(f"{u.name} ({u.cpu_m}m, {_mib(u.memory_bytes)})" for u in top)
            + f": {share}% of what these pods use.",
        )
    usage.after_top(result, rows, facts)
    return result


def _mib(value: int | None) -> str:
    return f"{value // (1024 * 1024)}Mi memory" if value else "? memory"


@analyzer(
    "k8s.describe_nodes",
    codes=(
        "node_capacity", "node_cordoned", "node_full", "node_labels", "node_not_ready", "node_pods_full",
        "node_pressure", "node_taints", "request_exceeds_nodes", "request_needs_room",
    ),
)
def describe_nodes(output: Output, facts: Facts) -> Analysis:
    """``kubectl describe nodes``: pressure conditions, allocation, taints."""
    if failed := failure(output):
        return failed
    nodes = k.describe_nodes(output.stdout)
    result = Analysis(summary=", ".join(
        f"{n.name} requests CPU {n.allocated_percent.get('cpu', '?')}% memory {n.allocated_percent.get('memory', '?')}%"
        for n in nodes
    ))
    for n in nodes:
        pressure = [c for c, status in n.conditions.items() if c.endswith("Pressure") and status == "True"]
        if pressure:
            kind = {"DiskPressure": "disk (ephemeral storage: container logs, emptyDir, images)",
                    "MemoryPressure": "memory", "PIDPressure": "process ids"}
            short = " and ".join(kind.get(p, p) for p in pressure)
            result.add(
                "node_pressure", Severity.CAUSE,
                f"Node {n.name} reports {', '.join(pressure)}: it is short of {short}, and the kubelet evicts pods to "
                f"recover (requests: CPU {n.allocated_percent.get('cpu', '?')}%, memory {n.allocated_percent.get('memory', '?')}%).",
                node=n.name, pressure=short,
            )
        if n.conditions.get("Ready") not in (None, "True"):
            result.add("node_not_ready", Severity.CAUSE, f"Node {n.name} is NotReady ({n.conditions.get('Ready')}).")
        full = {r: p for r, p in n.allocated_percent.items() if p >= 90 and r in ("cpu", "memory")}
        if full:
            result.add(
                "node_full", Severity.PROBLEM,
                f"Node {n.name} has " + " and ".join(f"{p}% of its {r}" for r, p in full.items()) + " already requested.",
            )
        _pod_slots(result, n)
        if n.taints:
            result.add("node_taints", Severity.INFO, f"Node {n.name} taints: {', '.join(n.taints)}.")
        if n.unschedulable:
            result.add("node_cordoned", Severity.PROBLEM, f"Node {n.name} is cordoned (unschedulable).")
    wanted = k.parse_selector(str(facts.get("pending_node_selector") or ""))
    if wanted:
        for key, value in wanted.items():
            present = sorted({f"{key}={n.labels[key]}" for n in nodes if key in n.labels})
            matching = [n.name for n in nodes if n.labels.get(key) == value]
            result.add(
                "node_labels", Severity.CAUSE if not matching else Severity.INFO,
                f"The pod wants {key}={value}; "
                + (f"nodes {', '.join(matching)} have it." if matching else
                   f"no node has it. The nodes carry {', '.join(present) or f'no {key} label at all'}"
                   + " (" + "; ".join(f"{n.name}: {n.labels.get(key, '-')}" for n in nodes) + ")."),
            )
    for n in nodes:
        if n.allocatable:
            free = {r: _amount(r, n.allocatable.get(r, "0")) - _amount(r, n.allocated.get(r, ("0", ""))[0]) for r in ("cpu", "memory")}
            result.add(
                "node_capacity", Severity.OK,
                f"Node {n.name} can give pods cpu {n.allocatable.get('cpu', '?')} and memory "
                f"{_show('memory', _amount('memory', n.allocatable.get('memory', '0')))} in all (allocatable); still free for "
                f"new requests: cpu {_show('cpu', max(free['cpu'], 0))}, memory {_show('memory', max(free['memory'], 0))}.",
            )
    _fit(result, nodes, facts)
    return result


def _pod_slots(result: Analysis, node: k.NodeInfo) -> None:
    """A node holds at most Allocatable pods (max-pods), whatever CPU and memory it has left."""
    limit = node.allocatable.get("pods", "")
    if not limit.isdigit() or node.pods_running is None:
        return
    if node.pods_running >= int(limit):
        result.add(
            "node_pods_full", Severity.CAUSE,
            f"Node {node.name} runs {node.pods_running} pods, its maximum (Allocatable pods: {limit}, the kubelet's "
            f"max-pods): no further pod fits there, however much CPU and memory is free.",
            node=node.name, pods=node.pods_running, max_pods=int(limit),
        )
    elif node.pods_running * 10 >= int(limit) * 9:
        result.add(
            "node_pods_full", Severity.PROBLEM,
            f"Node {node.name} runs {node.pods_running} of its {limit} allowed pods (max-pods): nearly full.",
            node=node.name, pods=node.pods_running, max_pods=int(limit),
        )


def _amount(resource: str, text: str) -> int:
    value = text.split(" ")[0]
    return (k.cpu_millicores(value) if resource == "cpu" else k.memory_bytes(value)) or 0


def _show(resource: str, amount: int) -> str:
    if resource == "cpu":
        return f"{amount}m" if amount % 1000 else str(amount // 1000)
    gib = amount / 2**30
    return f"{gib:.0f}Gi" if gib == int(gib) else f"{gib:.1f}Gi"


def _fit(result: Analysis, nodes: list[k.NodeInfo], facts: Facts) -> None:
    """Can a Pending pod's request fit on any node at all, or only once others make room?"""
    for pod, requests in dict(facts.get("pending_requests") or {}).items():
        for resource in facts.get("insufficient_resources", []):
            wanted = int(requests.get(resource, 0))
            if not wanted:
                continue
            sizes = {n.name: _amount(resource, n.allocatable.get(resource, "0")) for n in nodes if n.allocatable}
            free = {
                n.name: sizes.get(n.name, 0) - _amount(resource, n.allocated.get(resource, ("0", ""))[0]) for n in nodes
            }
            if not sizes:
                continue
            biggest = max(sizes.values())
            if wanted > biggest:
                result.add(
                    "request_exceeds_nodes", Severity.CAUSE,
                    f"{pod} requests {_show(resource, wanted)} {resource}, more than any node has allocatable "
                    f"(the largest: {_show(resource, biggest)}): it can never be scheduled on these nodes. Lower the "
                    f"request or add a bigger node.",
                    pod=pod,
                )
            else:
                room = ", ".join(f"{name} {_show(resource, max(v, 0))}" for name, v in free.items())
                result.add(
                    "request_needs_room", Severity.PROBLEM,
                    f"{pod} requests {_show(resource, wanted)} {resource}; free {resource} per node (allocatable minus "
                    f"requests): {room}. It fits only once other pods make room.",
                )


@analyzer(
    "k8s.nodes",
    codes=("node_not_ready", "nodes_ready"),
)
def nodes(output: Output, facts: Facts) -> Analysis:
    """``kubectl get nodes``: NotReady nodes."""
    if failed := failure(output):
        return failed
    rows = k.parse_table(output.stdout)
    result = Analysis(summary=", ".join(f"{r.get('NAME')} {r.get('STATUS')}" for r in rows))
    for r in rows:
        if not r.get("STATUS", "").startswith("Ready") or "SchedulingDisabled" in r.get("STATUS", ""):
            result.add("node_not_ready", Severity.PROBLEM, f"Node {r.get('NAME')} is {r.get('STATUS')}.")
    if rows and not result.findings:
        result.add("nodes_ready", Severity.OK, f"All {len(rows)} nodes are Ready (up): " + ", ".join(r.get("NAME", "") for r in rows) + ".")
    return result


@analyzer(
    "k8s.deployments",
    facts=("deployment", "deployment_unhealthy"),
    codes=(
        "deployment_replicas", "deployment_scaled_to_zero", "deployment_short", "deployment_zero",
        "rollout_incomplete",
    ),
)
def deployments(output: Output, facts: Facts) -> Analysis:
    """``kubectl get deployments``: deployments short of ready replicas."""
    if failed := failure(output):
        return failed
    rows = k.parse_table(output.stdout)
    result = Analysis(summary=", ".join(f"{r.get('NAME')} {r.get('READY')}" for r in rows))
    message = str(facts.get("message") or "")
    empty = [str(x) for x in facts.get("empty_selectors", [])]
    for r in rows:
        name = r.get("NAME", "")
        ready, _, want = r.get("READY", "0/0").partition("/")
        if not (ready.isdigit() and want.isdigit()):
            continue
        if name and said(name, message):
            result.facts["deployment"] = name
            result.add(
                "deployment_replicas", Severity.INFO,
                f"Deployment {name} runs {ready}/{want} replicas ready ({r.get('UP-TO-DATE', '?')} up to date, "
                f"{r.get('AVAILABLE', '?')} available, age {r.get('AGE', '?')}).",
            )
        if int(want) == 0:
            backs = [sel for sel in empty if sel.split("=")[-1] == name]
            if backs:
                result.add(
                    "deployment_scaled_to_zero", Severity.CAUSE,
                    f"Deployment {name} is scaled to 0 replicas (READY {ready}/{want}): no pod runs, so nothing "
                    f"matches selector {backs[0]} and its Service has no endpoints. Scale it back up (needs approval).",
                    deployment=name,
                )
            else:
                result.add("deployment_zero", Severity.INFO, f"Deployment {name} is scaled to 0 replicas.")
        elif int(ready) < int(want):
            result.facts["deployment_unhealthy"] = True
            result.add("deployment_short", Severity.PROBLEM, f"Deployment {name} has {ready} of {want} replicas ready.")
        updated = r.get("UP-TO-DATE", "")
        if updated.isdigit() and int(updated) < int(want):
            result.facts["deployment_unhealthy"] = True
            result.add(
                "rollout_incomplete", Severity.PROBLEM,
                f"Deployment {name}'s rollout is incomplete: {updated} of {want} replicas run the new version.",
            )
    return result


@analyzer(
    "k8s.describe_deployment",
    facts=("deployment_unhealthy",),
    codes=("rollout_stuck",),
)
def describe_deployment(output: Output, facts: Facts) -> Analysis:
    """``kubectl describe deployment``: image, replicas, rollout conditions."""
    if failed := failure(output):
        return failed
    info = k.describe_deployment(output.stdout)
    result = Analysis(summary=f"{info.name}: replicas {info.replicas}; image {info.image}")
    unavailable = re.search(r"(\d+) unavailable", info.replicas)
    stuck = info.conditions.get("Progressing") == "False" or info.conditions.get("Available") == "False"
    if stuck or (unavailable and int(unavailable.group(1)) > 0):
        result.facts["deployment_unhealthy"] = True
        state = ", ".join(f"{k_} {v}" for k_, v in info.conditions.items())
        result.add(
            "rollout_stuck", Severity.PROBLEM,
            f"Deployment {info.name} is not healthy: replicas {info.replicas}" + (f"; conditions: {state}" if state else "") + ".",
        )
    return result
