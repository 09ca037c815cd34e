"""Reading kubectl output about pods: which pods are unhealthy, and which pods a Service selects.

Why one pod does not run is read in ``pod_describe``, its log in ``pod_logs``; their public names stay
importable from here."""

from __future__ import annotations

from squads.brain.analyzers import Output, analyzer
from squads.brain.analyzers.common import failure
from squads.brain.models import Analysis, Facts, Severity

from .. import kubectl as k
from . import usage
from .pod_describe import describe_pod as describe_pod
from .pod_describe import scheduling_reasons as scheduling_reasons
from .pod_logs import logs as logs
from .workloads import names, said

HEALTHY = {"Running", "Completed", "Succeeded"}
POD_LIST_LIMIT = 15


def _unhealthy(row: k.PodRow) -> bool:
    return row.status not in HEALTHY or (row.status == "Running" and row.ready < row.total)


def _pod_line(row: k.PodRow) -> str:
    extra = f", {row.restarts} restarts" if row.restarts else ""
    return f"{row.name} ({row.status}, {row.ready}/{row.total} ready{extra})"


@analyzer(
    "k8s.pods",
    facts=("evicted_pods", "no_pods", "target_pods"),
    codes=("pod_unhealthy", "pods_evicted"),
)
def pods(output: Output, facts: Facts) -> Analysis:
    """``kubectl get pods``: which pods are unhealthy (narrowed to the app the user named)."""
    if failed := failure(output):
        return failed
    rows = k.parse_pods(output.stdout)
    where = f" in {output.params.get('namespace')}" if output.params.get("namespace") else ""
    if not rows:
        return Analysis(summary=f"no pods{where}", facts={"no_pods": True})
    bad = [r for r in rows if _unhealthy(r)]
    if not bad:
        # Running and ready now, but restarting over and over: a crash between two probes still counts.
        bad = sorted((r for r in rows if r.restarts >= 3), key=lambda r: -r.restarts)[:3]
    app = str(facts.get("app") or "")
    message = str(facts.get("message") or "")
    named = [r for r in bad if said(r.name, message)] or [r for r in bad if usage.mentions_workload(r.name, message)]
    targets = named or [r for r in bad if app and r.name.startswith(app)] or bad
    shown = ", ".join(_pod_line(r) for r in rows[:POD_LIST_LIMIT])
    more = f" and {len(rows) - POD_LIST_LIMIT} more" if len(rows) > POD_LIST_LIMIT else ""
    result = Analysis(summary=f"{len(rows)} pods{where}, {len(bad)} not healthy: {shown}{more}")
    result.facts["target_pods"] = [r.name for r in targets if r.status != "Evicted"]
    evicted = [r for r in rows if r.status == "Evicted"]
    if evicted:
        result.facts["evicted_pods"] = [r.name for r in evicted]
        result.add("pods_evicted", Severity.PROBLEM, f"{len(evicted)} pods{where} were Evicted (the node ran short of a resource).")
    for row in targets[:5]:
        if row.status != "Evicted":
            result.add("pod_unhealthy", Severity.INFO, f"Pod {_pod_line(row)}.")
    return result


@analyzer(
    "k8s.candidate_pods",
    facts=("candidate_pod_refs",),
    codes=("candidate_pod",),
)
def candidate_pods(output: Output, facts: Facts) -> Analysis:
    """The pods a Service with an empty selector was probably meant for (named like it)."""
    if failed := failure(output):
        return failed
    rows = k.parse_pods(output.stdout)
    namespace = str(output.params.get("namespace", ""))
    orphans = [o for o in facts.get("orphan_services", []) if o.get("namespace") == namespace]
    result = Analysis(summary=f"{len(rows)} pods in {namespace}: " + ", ".join(_pod_line(r) for r in rows[:POD_LIST_LIMIT]))
    refs = []
    for orphan in orphans:
        stem = str(orphan["service"]).split("-")[0]
        for row in rows:
            if row.name.startswith(str(orphan["service"])) or row.name.startswith(stem + "-"):
                refs.append({"pod": row.name, "namespace": namespace})
                result.add("candidate_pod", Severity.INFO, f"Pod {_pod_line(row)} looks like the one Service {orphan['service']} should select.")
    if refs:
        result.facts["candidate_pod_refs"] = refs[:2]
    return result


@analyzer(
    "k8s.all_pods",
    facts=("evicted_pod_refs", "unhealthy_pod_refs"),
    codes=("pods_evicted", "pods_unhealthy"),
)
def all_pods(output: Output, facts: Facts) -> Analysis:
    """``kubectl get pods -A``: counts by state, evictions per namespace."""
    if failed := failure(output):
        return failed
    rows = k.parse_pods(output.stdout)
    by_status: dict[str, int] = {}
    for row in rows:
        by_status[row.status] = by_status.get(row.status, 0) + 1
    counts = ", ".join(f"{n} {s}" for s, n in sorted(by_status.items(), key=lambda p: -p[1]))
    result = Analysis(summary=f"{len(rows)} pods in all namespaces: {counts}")
    evicted = [r for r in rows if r.status == "Evicted"]
    if evicted:
        result.facts["evicted_pod_refs"] = [{"pod": r.name, "namespace": r.namespace} for r in evicted if r.namespace]
        spaces = sorted({r.namespace for r in evicted if r.namespace})
        result.add(
            "pods_evicted", Severity.PROBLEM,
            f"{len(evicted)} pods were Evicted ({', '.join(r.name for r in evicted[:5])}) in {', '.join(spaces) or 'the cluster'}.",
        )
    stuck = [r for r in rows if r.status not in HEALTHY | {"Evicted"} or (r.status == "Running" and r.ready < r.total)]
    if stuck:
        # For the triage sweep: the unhealthy pods of every namespace, to describe (most restarts first).
        worst = sorted((r for r in stuck if r.namespace), key=lambda r: -r.restarts)
        result.facts["unhealthy_pod_refs"] = [{"pod": r.name, "namespace": r.namespace} for r in worst
                                              if names([r.name, r.namespace]) == [r.name, r.namespace]]
        result.add("pods_unhealthy", Severity.INFO, "Not running: " + ", ".join(_pod_line(r) for r in stuck[:8]) + ".")
    return result


@analyzer(
    "k8s.selector_pods",
    facts=("dependency_pods", "empty_selectors", "orphan_services"),
    codes=("dependency_pod_unhealthy", "selector_matches_nothing"),
)
def selector_pods(output: Output, facts: Facts) -> Analysis:
    """``kubectl get pods -l SELECTOR`` for a Service's selector: does it match any pod?"""
    if failed := failure(output):
        return failed
    selector = str(output.params.get("selector", ""))
    service = dict(facts.get("service_of_selector") or {}).get(selector, "the service")
    rows = k.parse_pods(output.stdout)
    if not rows:
        namespace = str(output.params.get("namespace", ""))
        bare = service.split(" (")[0]
        result = Analysis(
            summary=f"no pod matches {selector}",
            facts={"empty_selectors": [selector],
                   "orphan_services": [{"service": bare, "namespace": namespace, "selector": selector}]},
        )
        result.add(
            "selector_matches_nothing", Severity.CAUSE,
            f"Service {service} selects pods with {selector}, but no pod has that label, so it has no endpoints "
            f"and every connection to it is refused: either nothing is running for it (a workload scaled to 0 or "
            f"not creating pods) or the selector and the pods' labels disagree.",
            service=service, selector=selector,
        )
        return result
    bad = [r for r in rows if _unhealthy(r)]
    result = Analysis(summary=f"{selector} matches " + ", ".join(_pod_line(r) for r in rows))
    result.facts["dependency_pods"] = [r.name for r in bad]
    for row in bad:
        result.add(
            "dependency_pod_unhealthy", Severity.PROBLEM,
            f"Service {service} selects {row.name}, which is {row.status} ({row.ready}/{row.total} ready), "
            f"so {service} has no ready endpoint.",
        )
    return result
