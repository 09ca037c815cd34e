"""Reading kubectl output about the cluster around a pod: services, endpoints, events, claims, deployments.

Nodes and usage are read in ``nodes``."""

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
from .workloads import said


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
