"""Reading kubectl output about nodes: readiness, pressure, pod slots, room for a pending pod, and usage (top)."""

from __future__ import annotations

from squads.brain.analyzers import Output, analyzer
from squads.brain.analyzers.common import failure
from squads.brain.models import Analysis, Facts, Severity

from .. import kubectl as k
from . import usage


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
