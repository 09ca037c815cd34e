"""Reading kubectl output about workloads beyond pods: jobs and cron jobs, replica sets and rollouts,
autoscalers, ingresses, cluster DNS, and warning events across the cluster."""

from __future__ import annotations

import re
from collections import Counter

from squads.brain.analyzers import Output, analyzer
from squads.brain.analyzers.common import failure
from squads.brain.known_errors import CODES as LOG_CODES
from squads.brain.known_errors import FACTS as LOG_FACTS
from squads.brain.known_errors import fill_in
from squads.brain.models import Analysis, Facts, Severity

from .. import kubectl as k

K8S_NAME = re.compile(r"[a-z0-9](?:[-a-z0-9.]{0,251}[a-z0-9])?")


def names(values: list[str]) -> list[str]:
    """Only what is a Kubernetes object name: a fact that feeds a tool parameter never carries a
    stray word of an error message or a table the parser misread."""
    return [v for v in values if K8S_NAME.fullmatch(v)]


def said(name: str, message: str) -> bool:
    """``name`` appears in the user's message as a whole word ("web" is not in "webshop")."""
    return re.search(rf"(?<![\w.-]){re.escape(name.lower())}(?![\w-])", message) is not None


def no_data(output: Output, check: str) -> Analysis | None:
    """Contract 3: "No resources found" or an empty output is said, never read as clean."""
    text = output.text.strip()
    if text and not text.startswith("No resources found"):
        return None
    why = text.splitlines()[0] if text else "the output was empty"
    result = Analysis(summary=why)
    result.add("no_data", Severity.INFO, f"There is nothing to check for {check}: {why}.", check=check)
    return result


@analyzer("k8s.jobs", facts=("failed_jobs",), codes=("job_failed", "job_running", "jobs_ok", "no_data"))
def jobs(output: Output, facts: Facts) -> Analysis:
    """``kubectl get jobs``: jobs that failed (STATUS Failed, or completions short of the goal and not running)."""
    if failed := failure(output):
        return failed
    if empty := no_data(output, "jobs"):
        return empty
    rows = k.parse_table(output.stdout)
    result = Analysis(summary=f"{len(rows)} jobs")
    bad: list[str] = []
    for row in rows:
        done, _, wanted = row.get("COMPLETIONS", "").partition("/")
        status = row.get("STATUS", "")
        if status == "Failed" or (status not in ("Running", "Complete") and wanted and done != wanted and not status):
            bad.append(row.get("NAME", "?"))
        elif status == "Running":
            result.add("job_running", Severity.INFO, f"Job {row.get('NAME')} is running ({row.get('COMPLETIONS')}).")
    if bad:
        result.facts["failed_jobs"] = names(bad)
        result.add("job_failed", Severity.PROBLEM, f"Job(s) {', '.join(bad)} failed (completions short of the goal).")
    elif rows:
        result.add("jobs_ok", Severity.INFO, f"{len(rows)} job(s), none failed.")
    return result


@analyzer("k8s.describe_job", facts=("job_pods",), codes=("job_backoff_limit", "job_deadline", "job_failed"))
def describe_job(output: Output, facts: Facts) -> Analysis:
    """``kubectl describe job``: BackoffLimitExceeded / DeadlineExceeded, and the pods it created."""
    if failed := failure(output):
        return failed
    doc = k.parse_describe(output.stdout)
    if not doc:
        return Analysis(summary="no job in the output")
    job = doc[0]
    name = job.value("Name") or str(output.params.get("job", "the job"))
    statuses = job.value("Pods Statuses")
    result = Analysis(summary=f"{name}: {statuses or 'no pod statuses'}")
    pods = [m.group(1) for e in job.events for m in [re.search(r"Created pod: (\S+)", e.message)] if m]
    if pods:
        result.facts["job_pods"] = names(pods[-2:])
    for e in job.events:
        if e.reason == "BackoffLimitExceeded":
            limit = job.value("Backoff Limit")
            result.add("job_backoff_limit", Severity.CAUSE,
                       f"Job {name} failed: \"{e.message}\" — its pods failed {limit or 'backoffLimit'} times "
                       f"({statuses}), so Kubernetes stopped retrying. The pods' logs say why each run failed.",
                       job=name)
            return result
        if e.reason == "DeadlineExceeded":
            result.add("job_deadline", Severity.CAUSE,
                       f"Job {name} failed: \"{e.message}\" — it ran longer than activeDeadlineSeconds and was stopped.",
                       job=name)
            return result
    if re.search(r"[1-9]\d* Failed", statuses or ""):
        result.add("job_failed", Severity.PROBLEM, f"Job {name} has failed pods ({statuses}).", job=name)
    return result


@analyzer("k8s.cronjobs", codes=("cronjob_suspended", "cronjobs_ok", "no_data"))
def cronjobs(output: Output, facts: Facts) -> Analysis:
    """``kubectl get cronjobs``: suspended ones, and which last ran when."""
    if failed := failure(output):
        return failed
    if empty := no_data(output, "cron jobs"):
        return empty
    rows = k.parse_table(output.stdout)
    result = Analysis(summary=f"{len(rows)} cron jobs")
    for row in rows:
        if row.get("SUSPEND") == "True":
            result.add("cronjob_suspended", Severity.PROBLEM,
                       f"CronJob {row.get('NAME')} is suspended (SUSPEND True): it schedules no runs until resumed.")
    if rows and not result.findings:
        result.add("cronjobs_ok", Severity.INFO, "; ".join(
            f"{r.get('NAME')} ({r.get('SCHEDULE')}, last run {r.get('LAST SCHEDULE', '?')} ago)" for r in rows[:5]))
    return result


@analyzer("k8s.replicasets", codes=("no_data", "replicasets_serving"))
def replicasets(output: Output, facts: Facts) -> Analysis:
    """``kubectl get replicasets``: which version (replica set) really serves, old and new side by side."""
    if failed := failure(output):
        return failed
    if empty := no_data(output, "replica sets"):
        return empty
    rows = [r for r in k.parse_table(output.stdout) if k._int(r.get("DESIRED", "0")) or k._int(r.get("READY", "0"))]
    wanted = str(facts.get("deployment") or facts.get("app") or "")
    if wanted:
        rows = [r for r in rows if r.get("NAME", "").rsplit("-", 1)[0] == wanted] or rows
    result = Analysis(summary=f"{len(rows)} active replica sets")
    if rows:
        shown = "; ".join(f"{r.get('NAME')}: {r.get('READY', '0')} of {r.get('DESIRED', '0')} ready (age {r.get('AGE')})"
                          for r in rows[:6])
        result.add("replicasets_serving", Severity.INFO, f"Replica sets with pods: {shown}. Pods that are ready serve "
                   "traffic, so an older replica set that is still ready means its version still serves users.")
    return result


@analyzer("k8s.rollout_status", facts=("deployment_unhealthy",), codes=("rollout_done", "rollout_stuck"))
def rollout_status(output: Output, facts: Facts) -> Analysis:
    """``kubectl rollout status --watch=false``: finished, still waiting, or past its progress deadline."""
    text = output.text.strip()
    last = text.splitlines()[-1] if text else ""
    result = Analysis(summary=last[:200] or "no output")
    if "successfully rolled out" in text:
        result.add("rollout_done", Severity.INFO, f"The rollout finished: \"{last}\"")
    elif "exceeded its progress deadline" in text or "Waiting for" in text:
        result.facts["deployment_unhealthy"] = True
        result.add("rollout_stuck", Severity.PROBLEM, f"The rollout has not finished: \"{last}\"")
    return result


@analyzer("k8s.rollout_history", codes=("rollout_revisions",))
def rollout_history(output: Output, facts: Facts) -> Analysis:
    """``kubectl rollout history``: the revisions and their change causes."""
    if failed := failure(output):
        return failed
    rows = k.parse_table("\n".join(ln for ln in output.stdout.splitlines() if not ln.startswith("deployment.")))
    result = Analysis(summary=f"{len(rows)} revisions")
    if rows:
        result.add("rollout_revisions", Severity.INFO, "Rollout history: " + "; ".join(
            f"revision {r.get('REVISION')}: {r.get('CHANGE-CAUSE') or '<none>'}" for r in rows[-4:]))
    return result


@analyzer("k8s.hpa", facts=("hpas",), codes=("hpa_at_max", "hpa_no_metrics", "no_data"))
def hpa(output: Output, facts: Facts) -> Analysis:
    """``kubectl get hpa``: autoscalers without metrics (<unknown>) or stuck at their maximum."""
    if failed := failure(output):
        return failed
    if empty := no_data(output, "autoscalers (HPA)"):
        return empty
    rows = k.parse_table(output.stdout)
    result = Analysis(summary=f"{len(rows)} autoscalers", facts={"hpas": names([r.get("NAME", "") for r in rows])})
    for row in rows:
        name, targets = row.get("NAME", "?"), row.get("TARGETS", "")
        replicas, top = k._int(row.get("REPLICAS", "0")), k._int(row.get("MAXPODS", "0"))
        if "<unknown>" in targets:
            result.add("hpa_no_metrics", Severity.CAUSE,
                       f"HPA {name} cannot read its metrics (TARGETS {targets}): it cannot scale. Usually metrics-server "
                       "is missing or unhealthy, or the pods have no CPU/memory request to compute a utilization from.",
                       hpa=name)
        elif top and replicas >= top:
            result.add("hpa_at_max", Severity.PROBLEM,
                       f"HPA {name} is at its maximum of {top} replicas (TARGETS {targets}): it cannot add pods; "
                       "load above this is not absorbed. Raise maxReplicas (and check the nodes have room).", hpa=name)
    return result


@analyzer("k8s.describe_hpa", codes=("hpa_no_metrics",))
def describe_hpa(output: Output, facts: Facts) -> Analysis:
    """``kubectl describe hpa``: why it cannot compute its metric (its warning events)."""
    if failed := failure(output):
        return failed
    doc = k.parse_describe(output.stdout)
    result = Analysis(summary="hpa described")
    for e in (doc[0].events if doc else []):
        if e.type == "Warning" and re.search(r"FailedGetResourceMetric|FailedComputeMetricsReplicas|FailedGet", e.reason):
            result.add("hpa_no_metrics", Severity.CAUSE, f"The autoscaler cannot get its metric: \"{e.message}\"")
            break
    return result


BACKEND = re.compile(r"(?P<service>[a-z0-9][a-z0-9.-]*):(?P<port>\S+)\s+\((?P<endpoints>[^)]*)\)")
TLS_LINE = re.compile(r"^\s*(?P<secret>[a-z0-9][a-z0-9.-]*) terminates (?P<hosts>.+)$")


@analyzer("k8s.describe_ingress", facts=("ingress_tls_secrets",),
          codes=("ingress_backend_missing", "ingress_ok", "ingress_tls_secret_missing"))
def describe_ingress(output: Output, facts: Facts) -> Analysis:
    """``kubectl describe ingress``: backends without a Service/endpoints, and TLS secrets that do not exist."""
    if failed := failure(output):
        return failed
    result = Analysis(summary="ingress described")
    for doc in k.parse_describe(output.stdout):
        name = doc.value("Name")
        tls = doc.get("TLS")
        secrets = [m.group("secret") for ln in ([] if tls is None else [tls.value, *tls.lines]) if (m := TLS_LINE.match(ln))]
        if secrets:
            result.facts["ingress_tls_secrets"] = names(secrets)
        rules = doc.get("Rules")
        for line in ([] if rules is None else rules.lines):
            found = BACKEND.search(line)
            if found and ("not found" in found.group("endpoints") or found.group("endpoints").strip() == "<none>"):
                result.add("ingress_backend_missing", Severity.CAUSE,
                           f"Ingress {name} routes to Service {found.group('service')}:{found.group('port')}, which has "
                           f"no endpoints ({found.group('endpoints')}): requests there get 503 (or 404) from the "
                           "controller. Create the Service or fix the backend's name/port.",
                           ingress=name, service=found.group("service"))
        for e in doc.events:
            if re.search(r"secret .* (?:not found|does not exist)|SSL certificate .* not found", e.message, re.I):
                result.add("ingress_tls_secret_missing", Severity.CAUSE,
                           f"Ingress {name}: \"{e.message}\". Without its TLS secret the controller serves its default "
                           "certificate (\"Kubernetes Ingress Controller Fake Certificate\").", ingress=name)
    if not result.findings:
        result.add("ingress_ok", Severity.INFO, "The ingress rules point at Services that have endpoints.")
    return result


SECRET_MISSING = re.compile(r"(?:local SSL certificate|secret) (?P<ref>[a-z0-9.-]+/[a-z0-9.-]+) (?:was not found|not found)"
                            r"|no object matching key \"(?P<ref2>[^\"]+)\"")


@analyzer("k8s.controller_logs", codes=("ingress_tls_secret_missing",))
def controller_logs(output: Output, facts: Facts) -> Analysis:
    """The ingress controller's log: a TLS secret it cannot find, so it serves its default (fake) certificate."""
    if failed := failure(output):
        return failed
    lines = [ln for ln in output.text.splitlines() if SECRET_MISSING.search(ln)]
    result = Analysis(summary=f"{len(lines)} certificate errors")
    if lines:
        found = SECRET_MISSING.search(lines[-1])
        ref = (found.group("ref") or found.group("ref2")) if found else "?"
        result.add("ingress_tls_secret_missing", Severity.CAUSE,
                   f"The ingress controller cannot find the TLS secret {ref} ({len(lines)} times) and serves its "
                   "default certificate instead (\"Kubernetes Ingress Controller Fake Certificate\"), which browsers "
                   f"reject: \"{lines[-1].strip()[:300]}\". Create the secret {ref} (or fix the secretName in the "
                   "Ingress); the controller picks it up without a restart.", secret=ref)
    return result


DNS_LOOP = re.compile(r"plugin/loop: Loop \((?P<pair>[^)]*)\) detected")
DNS_TIMEOUT = re.compile(r"plugin/errors: .*(?:i/o timeout|read udp .*timeout)|plugin/forward: .*(?:no healthy|timeout)", re.I)


@analyzer("k8s.dns_logs", codes=("coredns_loop", "coredns_upstream_timeout"))
def dns_logs(output: Output, facts: Facts) -> Analysis:
    """CoreDNS's log: a forwarding loop (it exits, CrashLoopBackOff) or upstream resolvers timing out."""
    if failed := failure(output):
        return failed
    lines = output.text.splitlines()
    result = Analysis(summary=f"{len(lines)} CoreDNS log lines")
    loop = [ln for ln in lines if DNS_LOOP.search(ln)]
    if loop:
        result.add("coredns_loop", Severity.CAUSE,
                   f"CoreDNS detected a forwarding loop and exits: \"{loop[-1].strip()[:300]}\". Its `forward . "
                   "/etc/resolv.conf` points at the node's resolv.conf, which names a local stub resolver "
                   "(127.0.0.53, systemd-resolved) — so CoreDNS forwards to itself. Point the kubelet's resolvConf at "
                   "/run/systemd/resolve/resolv.conf (the real upstreams) or forward to explicit upstream servers in "
                   "the Corefile, then restart the CoreDNS pods.")
    timeouts = [ln for ln in lines if DNS_TIMEOUT.search(ln)]
    if timeouts:
        result.add("coredns_upstream_timeout", Severity.PROBLEM,
                   f"CoreDNS's upstream resolvers time out ({len(timeouts)} lines): \"{timeouts[-1].strip()[:300]}\".")
    return result


@analyzer("k8s.events_all", facts=("warning_objects", *LOG_FACTS), codes=("no_data", "warning_events", *LOG_CODES))
def events_all(output: Output, facts: Facts) -> Analysis:
    """``kubectl get events -A``: warning events across the cluster, grouped by reason."""
    if failed := failure(output):
        return failed
    if empty := no_data(output, "cluster events"):
        return empty
    rows = k.parse_table(output.stdout)
    warnings = [r for r in rows if r.get("TYPE") == "Warning"]
    result = Analysis(summary=f"{len(rows)} events, {len(warnings)} warnings")
    if not warnings:
        return result
    # What the catalogue knows of each warning (meaning, fix, count), before the grouped summary quotes the latest.
    fill_in(result, "\n".join(r.get("MESSAGE", "") for r in warnings), squad="k8s", source="The cluster's event list")
    reasons = Counter(r.get("REASON", "?") for r in warnings)
    last = warnings[-1]
    result.facts["warning_objects"] = [f"{r.get('NAMESPACE')}/{r.get('OBJECT')}" for r in warnings[-3:]]
    result.add("warning_events", Severity.PROBLEM,
               "Warning events: " + ", ".join(f"{reason} ({n})" for reason, n in reasons.most_common(5))
               + f". Latest: {last.get('NAMESPACE')}/{last.get('OBJECT')}: \"{last.get('MESSAGE', '')[:250]}\"")
    return result


@analyzer("k8s.ingresses", facts=("ingresses",), codes=("no_data",))
def ingresses(output: Output, facts: Facts) -> Analysis:
    """``kubectl get ingress``: the ingresses to describe (those whose hosts the user named first)."""
    if failed := failure(output):
        return failed
    if empty := no_data(output, "ingresses"):
        return empty
    rows = k.parse_table(output.stdout)
    message = str(facts.get("message", ""))
    named = [r.get("NAME", "") for r in rows if any(h and h in message for h in r.get("HOSTS", "").split(","))]
    found = named + [r.get("NAME", "") for r in rows if r.get("NAME", "") not in named]
    return Analysis(summary=f"{len(rows)} ingresses", facts={"ingresses": names(found)})


@analyzer("k8s.dns_pods", facts=("dns_pods",), codes=("dns_pods_unhealthy",))
def dns_pods(output: Output, facts: Facts) -> Analysis:
    """``kubectl get pods -n kube-system -l k8s-app=kube-dns``: the cluster DNS pods, unhealthy ones first."""
    if failed := failure(output):
        return failed
    rows = k.parse_pods(output.stdout)
    bad = [r for r in rows if r.status != "Running" or r.ready < r.total]
    result = Analysis(summary=f"{len(rows)} DNS pods, {len(bad)} not ready",
                      facts={"dns_pods": names([r.name for r in bad + [r for r in rows if r not in bad]])})
    if bad:
        result.add("dns_pods_unhealthy", Severity.PROBLEM,
                   f"The cluster DNS pods are not healthy: {', '.join(f'{r.name} ({r.status})' for r in bad)}. Every "
                   "name lookup in the cluster fails (EAI_AGAIN, no such host) while they are down.")
    return result


@analyzer("k8s.controller_pods", facts=("controller_pods",), codes=("pod_unhealthy",))
def controller_pods(output: Output, facts: Facts) -> Analysis:
    """The ingress controller's namespace: its controller pods (Running ones first, their logs are current)."""
    if failed := failure(output):
        return failed
    rows = [r for r in k.parse_pods(output.stdout) if "admission" not in r.name]
    ordered = sorted(rows, key=lambda r: (r.status != "Running", "controller" not in r.name))
    result = Analysis(summary=f"{len(rows)} controller pods", facts={"controller_pods": names([r.name for r in ordered])})
    for r in rows:
        if r.status != "Running" or r.ready < r.total:
            result.add("pod_unhealthy", Severity.PROBLEM, f"Ingress controller pod {r.name} is {r.status} ({r.ready}/{r.total} ready).")
    return result
