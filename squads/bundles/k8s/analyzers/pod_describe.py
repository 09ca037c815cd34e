"""Reading kubectl describe pod: why a pod does not schedule, start, stay up or become ready."""

from __future__ import annotations

import difflib
import re

from squads.brain.analyzers import Output, analyzer
from squads.brain.analyzers.common import failure
from squads.brain.known_errors import CODES as LOG_CODES
from squads.brain.known_errors import FACTS as LOG_FACTS
from squads.brain.known_errors import fill_in
from squads.brain.models import Analysis, Facts, Severity
from squads.brain.parsers.logs import find_host_ports

from .. import kubectl as k
from . import usage

# What a container's exit code says when the log does not.
EXIT_MEANING = {
    126: "the command exists but cannot be executed (permissions or format)",
    127: "the command was not found in the image (a wrong command/args or a missing binary)",
    128: "the container's command was invalid",
    134: "the process aborted (SIGABRT)",
    137: "the process was killed (SIGKILL): out of memory, or a failing liveness probe",
    139: "the process crashed (segmentation fault)",
    143: "the process was asked to stop (SIGTERM) and did",
}


def _scheduling(info: k.PodInfo) -> str:
    failed = [e for e in info.events if e.reason == "FailedScheduling"]
    return failed[-1].message if failed else ""


def _total_requests(info: k.PodInfo) -> dict[str, int]:
    """The pod's summed cpu (millicores) and memory (bytes) requests."""
    cpu = sum(k.cpu_millicores(c.requests.get("cpu", "")) or 0 for c in info.containers)
    memory = sum(k.memory_bytes(c.requests.get("memory", "")) or 0 for c in info.containers)
    return {"cpu": cpu, "memory": memory}


def _requests(info: k.PodInfo) -> str:
    parts = []
    for c in info.containers:
        req = ", ".join(f"{r} {v}" for r, v in c.requests.items())
        lim = ", ".join(f"{r} {v}" for r, v in c.limits.items())
        if req or lim:
            parts.append(f"{c.name} requests {req or 'nothing'}" + (f" (limits {lim})" if lim else ""))
    return "; ".join(parts)


@analyzer(
    "k8s.describe_pod",
    facts=(
        "crashing_pods", "env_dependencies", "failing_inits", "insufficient_resources", "last_pod",
        "liveness_ports", "not_ready_containers", "pending_node_selector",
        "pending_requests", "pending_taints", "pod_limits", "probe_failing_pods", "probe_paths", "unbound_claims",
        *LOG_FACTS,
    ),
    codes=(
        "container_config", "cpu_at_limit", "crashloop", "exits_zero", "memory_at_limit", "image_pull", "image_pull_rate_limit", "init_failing", "init_oom_killed", "liveness_killing",
        "oom_killed", "pending_affinity", "pending_insufficient", "pending_nodes_down", "pending_other",
        "pending_taint", "pending_unbound_pvc", "pod_evicted", "pod_running", "probe_failing",
        "selector_label_mismatch", "volume_mount_failed", "volume_multi_attach", *LOG_CODES,
    ),
)
def describe_pod(output: Output, facts: Facts) -> Analysis:
    """``kubectl describe pod``: why the pod is not running, with the numbers that matter."""
    if failed := failure(output):
        return failed
    info = k.describe_pod(output.stdout)
    name = info.name or str(output.item or output.params.get("pod", "the pod"))
    result = Analysis(summary=f"{name}: status {info.status or 'unknown'}")
    hosts = [f"{h}:{p}" for c in info.containers for v in c.env.values() for h, p in find_host_ports(v)]
    if hosts:
        result.facts["env_dependencies"] = hosts
    top = k.parse_describe(output.stdout)
    reason, message = (top[0].value("Reason"), top[0].value("Message")) if top else ("", "")
    if reason == "Evicted":
        resource = re.search(r"low on resource: ([\w.-]+)", message)
        result.add(
            "pod_evicted", Severity.CAUSE,
            f"{name} was Evicted from node {info.node or '?'}: {message}"
            + (f" The node ran out of {resource.group(1)}." if resource else ""),
            pod=name, resource=resource.group(1) if resource else "",
        )
        return result
    schedule = _scheduling(info)
    if info.status == "Pending" and schedule:
        _pending(result, name, info, schedule)
    result.facts["last_pod"] = name
    for orphan in facts.get("orphan_services", []):
        wanted = k.parse_selector(str(orphan.get("selector", "")))
        if wanted and info.namespace == orphan.get("namespace") and name.startswith(str(orphan["service"]).split("-")[0]):
            differ = {key: (value, info.labels.get(key)) for key, value in wanted.items() if info.labels.get(key) != value}
            if differ:
                shown = "; ".join(
                    f"{key}={have}" if have else f"no {key} label" for key, (_, have) in differ.items()
                )
                labels = ", ".join(f"{k_}={v}" for k_, v in info.labels.items()) or "none"
                result.add(
                    "selector_label_mismatch", Severity.CAUSE,
                    f"Pod {name} ({info.status}) carries the labels {labels} ({shown}), so no pod matches Service "
                    f"{orphan['service']}'s selector {orphan['selector']} and the Service has no endpoints. Fix the "
                    "selector or the labels.",
                    service=orphan["service"], selector=orphan["selector"],
                )
    for c in info.init_containers:
        _init_container(result, name, c, info)
    for c in info.containers:
        _container(result, name, info, c)
    # The log of the very container that is not ready or restarting (a sidecar included): `kubectl logs`
    # without -c reads the default container, which may be the healthy one.
    sick = [c for c in info.containers if c.ready is False or c.restart_count > 0]
    if sick and len(info.containers) > 1:
        result.facts["not_ready_containers"] = [
            {"pod": name, "container": c.name, "namespace": info.namespace or str(facts.get("namespace", ""))}
            for c in sick
        ]
    _volume_events(result, name, info)
    usage.after_describe(result, name, info, facts)
    if not any(f.severity >= Severity.PROBLEM for f in result.findings):
        # The reasoning above found nothing wrong: what the catalogue knows of the pod's warning events
        # (a sandbox, mount or network failure it has no rule for), else they are unrecognised errors.
        fill_in(result, "\n".join(e.message for e in info.events if e.type == "Warning"), squad="k8s",
                source=f"{name}'s events")
    if not result.findings and info.status == "Running":
        result.add("pod_running", Severity.OK, f"{name} is Running.")
    return result


SCHEDULING_REASON = re.compile(r"(\d+) (?:node\(s\) )?(.+)")
CONTROL_PLANE = ("node-role.kubernetes.io/control-plane", "node-role.kubernetes.io/master")


def _category(reason: str) -> str:
    lowered = reason.lower()
    if lowered.startswith("insufficient"):
        return "insufficient"
    if "taint" in lowered:
        return "taint"
    if "persistentvolumeclaim" in lowered or "volume node affinity" in lowered:
        return "volume"
    if "affinity" in lowered or "selector" in lowered:
        return "affinity"
    if "unschedulable" in lowered or "not-ready" in lowered or "unreachable" in lowered:
        return "node_down"
    return "other"


def scheduling_reasons(message: str) -> list[tuple[int, str, str]]:
    """(node count, reason, category) from a FailedScheduling message, biggest count first.

    "0/4 nodes are available: 1 node(s) had untolerated taint {...}, 3 node(s) didn't match Pod's node
    affinity/selector. preemption: ..." gives [(3, "didn't match ...", "affinity"), (1, "had untolerated ...", "taint")].
    """
    body = message.split("preemption:")[0]
    body = body.split("available:", 1)[1] if "available:" in body else body
    reasons = []
    for part in re.split(r",\s+(?=\d+ )", body.strip().rstrip(".")):
        found = SCHEDULING_REASON.match(part.strip())
        if found:
            reasons.append((int(found.group(1)), found.group(2).strip(), _category(found.group(2))))
    return sorted(reasons, key=lambda r: -r[0])


def _pending(result: Analysis, name: str, info: k.PodInfo, message: str) -> None:
    reasons = scheduling_reasons(message)
    # A control-plane taint keeps every workload off those nodes by design: it is never the story
    # while other nodes refuse the pod for another reason.
    relevant = [r for r in reasons if not (r[2] == "taint" and any(c in r[1] for c in CONTROL_PLANE))] or reasons
    category = relevant[0][2] if relevant else _category(message.lower())
    others = "; ".join(f"{n} node(s) {why}" for n, why, _ in reasons)
    said = f"The scheduler says: \"{message}\"."
    requests = _requests(info)
    if category == "insufficient":
        kinds = sorted({k_.rstrip(".") for k_ in re.findall(r"insufficient ([a-z0-9./-]+)", message.lower())})
        result.facts["insufficient_resources"] = kinds
        result.facts["pending_requests"] = {name: _total_requests(info)}
        result.add(
            "pending_insufficient", Severity.CAUSE,
            f"{name} is Pending: no node has enough free {' and '.join(kinds)} (Insufficient {', '.join(kinds)}). "
            f"{said} {requests}.",
            pod=name, resources=" and ".join(kinds),
        )
    elif category == "taint":
        taints = [t for t in re.findall(r"\{[^}]*\}", message) if not any(c in t for c in CONTROL_PLANE)] or re.findall(r"\{[^}]*\}", message)
        result.facts["pending_taints"] = taints
        tolerations = ", ".join(info.tolerations) or "none"
        result.add(
            "pending_taint", Severity.CAUSE,
            f"{name} is Pending: the nodes carry taint(s) {', '.join(taints) or 'that it does not tolerate'} and the pod "
            f"does not tolerate them (its tolerations: {tolerations}). {said}",
            pod=name, taints=", ".join(taints),
        )
    elif category == "volume":
        result.facts["unbound_claims"] = info.claims
        result.add(
            "pending_unbound_pvc", Severity.PROBLEM,
            f"{name} is Pending because of its volume(s) {', '.join(info.claims)}: {others}. {said}",
        )
    elif category == "affinity":
        selector = info.node_selectors or "its node affinity (see the pod spec)"
        result.facts["pending_node_selector"] = info.node_selectors
        result.add(
            "pending_affinity", Severity.CAUSE,
            f"{name} is Pending: no node matches its node selector {selector} ({others}). Either no node carries "
            "that label any more, or the pod asks for the wrong one.",
            pod=name, selector=selector,
        )
    elif category == "node_down":
        result.add("pending_nodes_down", Severity.CAUSE, f"{name} is Pending: the nodes are not schedulable ({others}). {said}")
    else:
        result.add("pending_other", Severity.PROBLEM, f"{name} is Pending. {said}")


def _init_container(result: Analysis, name: str, c: k.ContainerInfo, info: k.PodInfo) -> None:
    """An init container that fails keeps the pod in Init:... and the app never starts."""
    if c.last_reason == "OOMKilled" or c.reason == "OOMKilled":
        limit = c.limits.get("memory", "none set")
        result.add(
            "init_oom_killed", Severity.CAUSE,
            f"Init container {c.name} of {name} is OOMKilled (exit code {c.exit_code if c.exit_code is not None else 137}): "
            f"it needs more memory than its limit of {limit}; it has restarted {c.restart_count} times, and the app "
            "containers never start until it succeeds.",
            limit=limit, pod=name, container=c.name,
        )
    elif c.restart_count and c.last_reason not in ("", "Completed"):
        meaning = EXIT_MEANING.get(c.exit_code or -1, "")
        # Its own log says why: `kubectl logs POD -c INIT` (the pod's default container has not started).
        result.facts["failing_inits"] = [{"pod": name, "container": c.name, "namespace": info.namespace}]
        result.add(
            "init_failing", Severity.CAUSE,
            f"Init container {c.name} of {name} keeps failing (exit code {c.exit_code}, {c.last_reason}"
            + (f": {meaning}" if meaning else "") + f", {c.restart_count} restarts); the app containers wait for it.",
            pod=name, container=c.name,
        )


def _volume_events(result: Analysis, name: str, info: k.PodInfo) -> None:
    """A ReadWriteOnce volume still attached elsewhere holds a new pod in ContainerCreating."""
    attach = [e.message for e in info.events if "multi-attach" in e.message.lower() or e.reason == "FailedAttachVolume"]
    if attach:
        result.add(
            "volume_multi_attach", Severity.CAUSE,
            f"{name} cannot start: its volume is ReadWriteOnce (RWO) and still attached to another pod or node "
            f"(\"{attach[-1]}\"). With a RollingUpdate strategy the new pod waits for the old one, which keeps the "
            "volume: use strategy Recreate for single-writer volumes, or delete the old pod (needs approval).",
            pod=name,
        )
    mount = [e.message for e in info.events if e.reason == "FailedMount"]
    if mount and not attach:
        result.add("volume_mount_failed", Severity.CAUSE, f"{name} cannot mount a volume: {mount[-1]}", pod=name)


def _others(info: k.PodInfo, culprit: k.ContainerInfo) -> str:
    """For a pod with several containers: which ones are not the problem."""
    others = [c for c in info.containers if c.name != culprit.name]
    if not others:
        return ""
    fine = ", ".join(f"{c.name} ({c.restart_count} restarts)" for c in others)
    return f" Only the {culprit.name} container is affected (a sidecar, not the app, if it is not the main one); the others: {fine}."


def _image_typo(info: k.PodInfo, image: str) -> str:
    """A note when the image's repository name looks like a misspelling of the workload's own name."""
    repo = image.rsplit("/", 1)[-1].split(":")[0].split("@")[0]
    names = {info.labels.get("app", ""), info.labels.get("app.kubernetes.io/name", ""), info.controlled_by.split("/")[-1]}
    names |= {re.sub(r"-[a-z0-9]{8,10}$", "", n) for n in names}
    for name in sorted(n for n in names if n):
        if repo != name and difflib.SequenceMatcher(None, repo, name).ratio() >= 0.85:
            return f" The image name {repo} looks like a misspelling (typo) of {name}."
    return ""


def _container(result: Analysis, name: str, info: k.PodInfo, c: k.ContainerInfo) -> None:
    pull_errors = [e.message for e in info.events if "pull" in e.message.lower() and e.type == "Warning"]
    if c.reason in ("ImagePullBackOff", "ErrImagePull", "InvalidImageName") or (c.state == "Waiting" and pull_errors and "image" in c.reason.lower()):
        detail = next((m for m in pull_errors if "failed to pull" in m.lower()), pull_errors[0] if pull_errors else "")
        # A rate limit is the registry refusing this node's pulls for a while: the image itself is fine,
        # and which nodes hit it (shared egress IP, no pull secret) is the lead, so the node is named.
        limited = re.search(r"toomanyrequests|429 Too Many Requests|pull rate limit", detail, re.I)
        why = "the image or tag was not found in the registry" if "not found" in detail.lower() else (
            "the registry refused the credentials (unauthorized)" if re.search(r"unauthori[sz]ed|denied|401|403", detail, re.I)
            else "the registry's pull rate limit is reached for this node (toomanyrequests); the image itself exists"
            if limited else "the image could not be pulled")
        where = f" on node {info.node}" if info.node else ""
        result.add(
            "image_pull_rate_limit" if limited else "image_pull", Severity.CAUSE,
            f"{name} is in {c.reason}{where}: container {c.name} cannot start because {why}. Image: {c.image}. "
            + (f"kubelet: \"{detail}\"" if detail else "") + _image_typo(info, c.image),
            image=c.image, pod=name, node=info.node or "its node",
        )
        return
    if c.last_reason == "OOMKilled" or c.reason == "OOMKilled":
        limit = c.limits.get("memory", "none set")
        result.facts["crashing_pods"] = [name]
        result.add(
            "oom_killed", Severity.CAUSE,
            f"Container {c.name} of {name} was OOMKilled (exit code {c.exit_code if c.exit_code is not None else 137}): "
            f"it used more memory than its limit of {limit} (request {c.requests.get('memory', 'none')}); "
            f"it has restarted {c.restart_count} times."
            + _others(info, c),
            limit=limit, pod=name, container=c.name,
        )
        return
    if c.last_reason == "Completed" and c.exit_code == 0 and c.restart_count and c.reason == "CrashLoopBackOff":
        owner = info.controlled_by or "its controller"
        result.facts["crashing_pods"] = [name]
        result.add(
            "exits_zero", Severity.CAUSE,
            f"Container {c.name} of {name} does its work and exits successfully (exit code 0, Completed), but it runs "
            f"under {owner} (a Deployment), whose pods must run forever (restartPolicy Always): the kubelet restarts "
            f"it every time, {c.restart_count} times so far, and backs off, so it shows Completed, then CrashLoopBackOff. "
            "Nothing is broken in the app; the workload kind is wrong: a run-once task belongs in a Job (or a "
            "CronJob, or an init container / Helm hook for migrations), not a Deployment.",
            pod=name, container=c.name,
        )
        return
    liveness = [e.message for e in info.events if "liveness probe failed" in e.message.lower()]
    if liveness and c.restart_count:
        result.facts["crashing_pods"] = [name]
        probe_port = re.search(r"(?:https?://[^/\s:]*|tcp-socket [^\s:]*):(\d+)", c.liveness)
        if probe_port:
            result.facts["liveness_ports"] = [int(probe_port.group(1))]
        result.add(
            "liveness_killing", Severity.CAUSE,
            f"The kubelet keeps killing container {c.name} of {name} because its liveness probe fails "
            f"({liveness[-1]}); it has restarted {c.restart_count} times"
            + (f", last exit code {c.exit_code}" if c.exit_code is not None else "")
            + (f". The probe: {c.liveness.split(' delay=')[0]} ({c.liveness.split(' ', 2)[-1] if ' delay=' in c.liveness else ''})" if c.liveness else "")
            + ". Check the port and path the probe calls against what the app really serves (its log says where "
            "it listens); if they match and the app is only slow to start, add a startupProbe or a longer "
            "initialDelaySeconds.",
            pod=name, container=c.name,
        )
        return
    if c.reason == "CrashLoopBackOff" or (c.last_state == "Terminated" and c.restart_count and c.last_reason != "Completed"):
        result.facts["crashing_pods"] = [name]
        meaning = EXIT_MEANING.get(c.exit_code or -1, "")
        result.add(
            "crashloop", Severity.PROBLEM,
            f"{name} is in {c.reason or 'a crash loop'}: container {c.name} has restarted {c.restart_count} times; "
            f"the last run ended with exit code {c.exit_code} ({c.last_reason or 'Error'})"
            + (f": {meaning}" if meaning else "") + ".",
            pod=name,
        )
        return
    if c.reason in ("CreateContainerConfigError", "CreateContainerError", "RunContainerError"):
        detail = next((e.message for e in reversed(info.events) if e.type == "Warning"), "")
        result.add("container_config", Severity.CAUSE, f"{name}: container {c.name} cannot be created ({c.reason}): {detail}")
        return
    if c.ready is False and info.status == "Running":
        probes = [e.message for e in info.events if "probe failed" in e.message.lower()]
        if probes:
            result.facts["probe_failing_pods"] = [name]
            path = re.search(r"https?://[^/\s]*(/\S*)", c.readiness)
            if path:
                result.facts["probe_paths"] = [path.group(1)]
            result.add(
                "probe_failing", Severity.CAUSE if "readiness" in probes[-1].lower() else Severity.PROBLEM,
                f"{name}: container {c.name} runs but never becomes ready: {probes[-1]}"
                + (f" The probe is {c.readiness.split(' delay=')[0]}." if c.readiness else "")
                + " Until the probe passes, the pod gets no traffic and a rollout cannot progress.",
                pod=name, container=c.name,
            )
