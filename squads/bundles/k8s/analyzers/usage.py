"""What pods use against what they are allowed: ``kubectl top pods`` read next to ``describe pod`` limits.

A container at its CPU limit is throttled by the kernel (CFS quota): it gets slower without an error,
a restart or a log line, which is why "slow but nothing fails" needs these two outputs side by side.
Whichever of the two runs second reports it; the first leaves its numbers in the facts.
"""

from __future__ import annotations

import re

from squads.brain.models import Analysis, Facts, Severity

from .. import kubectl as k

# Usage at or above this share of the limit counts as "at the limit" (top samples average over ~15 s).
AT_LIMIT = 0.9
# A pod's name without its ReplicaSet hash and pod suffix (Deployment), pod suffix (DaemonSet/Job)
# or ordinal (StatefulSet): the workload the user calls it by.
POD_SUFFIX = re.compile(r"-[a-z0-9]{6,10}-[a-z0-9]{5}$|-[a-z0-9]{5}$|-\d+$")


def workload_of(pod: str) -> str:
    """``checkout-api-84f6b9d7c-4gk9s`` -> ``checkout-api``; ``postgres-0`` -> ``postgres``."""
    return POD_SUFFIX.sub("", pod) or pod


def mentions_workload(pod: str, message: str) -> bool:
    """The user named this pod's workload, in full or by its first word ("checkout" for checkout-api)."""
    words = set(re.findall(r"[a-z0-9][a-z0-9-]*[a-z0-9]", message.lower()))
    workload = workload_of(pod)
    first = workload.split("-")[0]
    return workload in words or (len(first) >= 3 and first in words)


def _mib(value: int) -> str:
    return f"{value // (1024 * 1024)}Mi"


def pod_limits(info: k.PodInfo) -> dict[str, int]:
    """The pod's summed CPU (millicores) and memory (bytes) limits; a resource is left out unless every
    container has a limit for it (one unlimited container makes the pod unlimited)."""
    limits: dict[str, int] = {}
    for resource, parse in (("cpu", k.cpu_millicores), ("memory", k.memory_bytes)):
        values = [parse(c.limits.get(resource, "")) for c in info.containers]
        if values and all(values):
            limits[resource] = sum(v or 0 for v in values)
    return limits


def compare(result: Analysis, pod: str, usage: dict[str, int], limits: dict[str, int]) -> None:
    """Add a finding when a pod's measured usage is at its CPU or memory limit."""
    cpu, cpu_limit = usage.get("cpu"), limits.get("cpu")
    if cpu and cpu_limit and cpu >= cpu_limit * AT_LIMIT:
        result.add(
            "cpu_at_limit", Severity.CAUSE,
            f"{pod} uses {cpu}m CPU against its CPU limit of {cpu_limit}m: it is at the limit, so the kernel "
            "throttles it (CFS quota) and requests queue and slow down without any error, restart or log line.",
            pod=pod, limit=f"{cpu_limit}m", used=f"{cpu}m",
        )
    memory, memory_limit = usage.get("memory"), limits.get("memory")
    if memory and memory_limit and memory >= memory_limit * AT_LIMIT:
        result.add(
            "memory_at_limit", Severity.PROBLEM,
            f"{pod} uses {_mib(memory)} memory against its limit of {_mib(memory_limit)}: the next peak gets it "
            "OOMKilled (exit code 137).",
            pod=pod, limit=_mib(memory_limit), used=_mib(memory),
        )


def after_describe(result: Analysis, pod: str, info: k.PodInfo, facts: Facts) -> None:
    """From ``describe pod``: record the pod's limits, and compare them with ``top pods`` if it ran first."""
    limits = pod_limits(info)
    if not limits:
        return
    result.facts["pod_limits"] = {pod: limits}
    usage = dict(facts.get("pod_usage") or {}).get(pod)
    if usage:
        compare(result, pod, dict(usage), limits)


def after_top(result: Analysis, rows: list[k.Usage], facts: Facts) -> None:
    """From ``top pods``: record usage, pick the pods to describe (the named workload's, else the
    busiest), and compare with limits ``describe pod`` already gave."""
    usage = {u.name: {"cpu": u.cpu_m or 0, "memory": u.memory_bytes or 0} for u in rows if u.name}
    if not usage:
        return
    result.facts["pod_usage"] = usage
    message = str(facts.get("message") or "")
    named = [u for u in rows if message and mentions_workload(u.name, message)]
    busiest = sorted(named or rows, key=lambda u: -(u.cpu_m or 0))
    result.facts["hot_pods"] = [u.name for u in busiest[:2]]
    known = dict(facts.get("pod_limits") or {})
    for name, limits in known.items():
        if name in usage:
            compare(result, name, usage[name], dict(limits))
