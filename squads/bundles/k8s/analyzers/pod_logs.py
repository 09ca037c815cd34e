"""Reading a container's log: unreachable or unresolved dependencies, configuration refused, a probe on the wrong port."""

from __future__ import annotations

import re

from squads.brain.analyzers import Output, analyzer
from squads.brain.analyzers.common import failure
from squads.brain.known_errors import CODES as LOG_CODES
from squads.brain.known_errors import FACTS as LOG_FACTS
from squads.brain.known_errors import fill_in
from squads.brain.models import Analysis, Facts, Severity
from squads.brain.parsers import logs as lp
from squads.brain.parsers.logs import find_host_ports

NETWORK_ERRORS = re.compile(
    r"connection refused|econnrefused|timed? ?out|no route to host|could not connect|failed to connect|"
    r"unable to connect|no such host|name or service not known|dial tcp|connect: ",
    re.IGNORECASE,
)
# Every name pattern starts at a word boundary of its own, so a long token is scanned once, not
# once per character (which made a 256 KB log line take seconds).
DNS_ERRORS = [
    re.compile(r"lookup ([A-Za-z0-9][\w.-]{0,252})(?: on \S{1,64})?: no such host"),
    re.compile(r'could not translate host name "([^"]{1,253})"'),
    re.compile(r"getaddrinfo (?:ENOTFOUND|EAI_AGAIN) ([A-Za-z0-9][\w.-]{0,252})"),
    re.compile(r"UnknownHostException: ([A-Za-z0-9][\w.-]{0,252})"),
    re.compile(r"(?<![\w.-])([A-Za-z0-9][\w.-]{0,252}): (?:Name or service not known|Temporary failure in name resolution)"),
]
APP_ERRORS = re.compile(
    r"\b(fatal|panic|error|exception|traceback|killed|out ?of ?memory|oom|not found|no such file|permission denied)\b",
    re.IGNORECASE,
)
CLUSTER_DNS = re.compile(r"^([a-z0-9-]+)\.([a-z0-9-]+)(?:\.svc(?:\.cluster\.local)?)?$")


def facts_hosts(result: Analysis) -> list[str]:
    """The dependency hosts an analysis found so far."""
    return [str(h) for h in result.facts.get("dependency_hosts", [])]


@analyzer(
    "k8s.logs",
    facts=("dependency_hosts", "dependency_ports", "dependency_remote", "unresolved_names", *LOG_FACTS),
    codes=("dependency_unreachable", "dns_unresolved", "log_config_error", "log_error", "log_probe_path",
           "probe_wrong_port", *LOG_CODES),
)
def logs(output: Output, facts: Facts) -> Analysis:
    """Container logs: unreachable dependencies (host:port) and the last fatal error."""
    if failed := failure(output):
        return failed
    lines = [line for line in output.text.splitlines() if line.strip()]
    item = output.item.get("pod") if isinstance(output.item, dict) else output.item
    pod = str(item or output.params.get("pod", "the pod"))
    if output.params.get("container"):
        pod = f"{pod} (container {output.params['container']})"
    result = Analysis(summary=f"{len(lines)} log lines")
    unresolved: list[str] = []
    for line in lines:
        for pattern in DNS_ERRORS:
            for name in pattern.findall(line):
                if name not in unresolved:
                    unresolved.append(name)
    if unresolved:
        result.facts["unresolved_names"] = unresolved
        result.summary = f"{len(lines)} log lines; the name {', '.join(unresolved)} does not resolve"
        result.add(
            "dns_unresolved", Severity.PROBLEM,
            f"{pod}'s log shows the name {', '.join(unresolved)} does not resolve (no such host): the app cannot "
            "find that dependency in DNS and exits.",
        )
    for path in facts.get("probe_paths", []):
        mentions = [line.strip() for line in lines if str(path) in line]
        if mentions:
            result.add("log_probe_path", Severity.INFO, f"{pod}'s log about {path}: {mentions[0][:300]}")
    # A DNS error's "on 10.96.0.10:53" names the resolver, not the dependency.
    network = [line for line in lines if NETWORK_ERRORS.search(line) and not any(p.search(line) for p in DNS_ERRORS)]
    targets: list[tuple[str, int]] = []
    for line in network:
        for target in find_host_ports(line):
            if target not in targets:
                targets.append(target)
    if targets:
        kind = "connection refused" if any("refused" in line.lower() for line in network) else "connection failures"
        where = ", ".join(f"{h}:{p}" for h, p in targets)
        result.facts["dependency_ports"] = [p for _, p in targets]
        result.facts["dependency_hosts"] = [h for h, _ in targets]
        result.summary = f"{len(network)} lines with {kind} to {where}"
        result.add(
            "dependency_unreachable", Severity.PROBLEM,
            f"{pod}'s log shows {kind} to {where} ({len(network)} times); the app cannot reach that dependency and exits.",
            target=where,
        )
    for error in lp.parse_config_errors(output.text)[:1]:
        result.add(
            "log_config_error", Severity.CAUSE,
            f"{pod}'s log shows its server refusing its configuration: {error.message}"
            + (f" in {error.file}:{error.line}" if error.file else "") + ".",
            pod=pod,
        )
    remote = [
        {"service": m.group(1), "namespace": m.group(2)}
        for h in facts_hosts(result) for m in [CLUSTER_DNS.match(h)] if m and m.group(2) != str(facts.get("namespace"))
    ]
    if remote:
        result.facts["dependency_remote"] = remote
    _probe_port(result, pod, lines, facts)
    # The catalogue reads the lines the reasoning above did not (unreachable hosts, names, config errors):
    # known errors with meaning and fix, the others as unrecognised errors with counts.
    fill_in(result, output.text, squad="k8s", source=f"{pod}'s log",
            explained=lambda line: line in network or any(p.search(line) for p in DNS_ERRORS))
    errors = [line.strip() for line in lines if APP_ERRORS.search(line)]
    if errors and not any(errors[-1][:300] in f.text for f in result.findings):  # not quoted by the catalogue already
        result.add("log_error", Severity.PROBLEM if not targets else Severity.INFO, f"Last error in {pod}'s log: {errors[-1][:300]}")
    return result


LISTENING = re.compile(
    r"(?:listen(?:ing)?|serving|started|bound|running)\b[^\n]{0,40}?(?:on|at|port)\s+(?:\S*?:)?(\d{2,5})\b", re.I)


def _probe_port(result: Analysis, pod: str, lines: list[str], facts: Facts) -> None:
    """The liveness probe calls one port while the app's own log says it listens on another."""
    probed = {int(p) for p in facts.get("liveness_ports", [])}
    if not probed:
        return
    heard = [(int(m.group(1)), line.strip()) for line in lines for m in [LISTENING.search(line)] if m]
    ports = {port for port, _ in heard}
    if heard and not probed & ports:
        port, line = heard[-1]
        result.add(
            "probe_wrong_port", Severity.CAUSE,
            f"The liveness probe checks port {', '.join(map(str, sorted(probed)))}, but {pod}'s log says the app "
            f"listens on port {port} (\"{line[:200]}\"): the probe checks the wrong port, fails every time and the "
            "kubelet kills a healthy container. It is not slow start-up. Point the probe (and the containerPort) at "
            f"port {port}, or make the app listen where the probe looks.",
            pod=pod, port=port,
        )
