"""Issue 12, k8s and webserver squads, second round: general pieces for the TAXONOMY classes
(usage against limits, Services named in the message, evictions to node conditions, wording),
on realistic outputs of the real programs and through whole brain turns."""

from __future__ import annotations

from typing import Any

from squads.brain import extract as extraction
from squads.brain.actions import Call, CallResult, Say
from squads.brain.analyzers import Output, analyze
from squads.brain.models import Analysis
from squads.brain.service import RunbookBrain, State
from squads.bundle_code import load_analyzers
from squads.grants import BUILTIN_BUNDLES
from squads.service import load_squads
from tools.executors.fixture import Fixture, FixtureExecutor
from tools.service import render

K8S = load_analyzers(BUILTIN_BUNDLES / "k8s")
SQUADS = load_squads()


def run(name: str, stdout: str, facts: dict[str, Any] | None = None, **params: Any) -> Analysis:
    return analyze(K8S, name, Output(argv=["kubectl"], exit_code=0, stdout=stdout, stderr="", params=params), facts or {})


def codes(result: Analysis) -> set[str]:
    return {f.code for f in result.findings}


def text(result: Analysis) -> str:
    return "\n".join(f.text for f in result.findings)


TOP_PODS = """NAME                               CPU(cores)   MEMORY(bytes)
billing-worker-7d9c8b6f5-2xkqp     118m         402Mi
ledger-api-6f8d7c9b54-k2m9v        998m         1430Mi
ledger-api-6f8d7c9b54-q7w3z        1000m        1391Mi
search-5c9b7d8f6-vv2lm             64m          290Mi
"""

DESCRIBE_LEDGER = """Name:             ledger-api-6f8d7c9b54-k2m9v
Namespace:        finance
Priority:         0
Node:             ip-10-20-3-41.eu-west-1.compute.internal/10.20.3.41
Labels:           app=ledger-api
                  pod-template-hash=6f8d7c9b54
Status:           Running
IP:               10.20.3.77
Controlled By:  ReplicaSet/ledger-api-6f8d7c9b54
Containers:
  ledger-api:
    Container ID:   containerd://4b1e9a
    Image:          registry.example.com/ledger-api:4.2.1
    Port:           8080/TCP
    State:          Running
      Started:      Mon, 07 Dec 2026 08:02:11 +0000
    Ready:          True
    Restart Count:  0
    Limits:
      cpu:     1
      memory:  1536Mi
    Requests:
      cpu:      750m
      memory:   1Gi
    Environment:  <none>
Conditions:
  Type              Status
  Ready             True
QoS Class:                   Burstable
Events:                      <none>
"""


def test_a_pod_using_its_whole_cpu_limit_is_throttled_whichever_output_comes_first() -> None:
    top = run("k8s.top_pods", TOP_PODS, {"message": "ledger is slow, nothing errors"}, namespace="finance")
    assert top.facts["hot_pods"] == ["ledger-api-6f8d7c9b54-q7w3z", "ledger-api-6f8d7c9b54-k2m9v"]
    after_top = run("k8s.describe_pod", DESCRIBE_LEDGER, dict(top.facts))
    assert "cpu_at_limit" in codes(after_top)
    assert "998m CPU against its CPU limit of 1000m" in text(after_top) and "throttles" in text(after_top)
    # describe first (another runbook), then top: the comparison happens on the second output.
    described = run("k8s.describe_pod", DESCRIBE_LEDGER)
    assert described.facts["pod_limits"] == {"ledger-api-6f8d7c9b54-k2m9v": {"cpu": 1000, "memory": 1536 * 1024 * 1024}}
    assert "cpu_at_limit" not in codes(described)
    assert "cpu_at_limit" in codes(run("k8s.top_pods", TOP_PODS, dict(described.facts)))


def test_usage_well_under_the_limit_or_no_limit_is_no_finding() -> None:
    calm = TOP_PODS.replace("998m ", "310m ")
    facts = dict(run("k8s.top_pods", calm).facts)
    assert "cpu_at_limit" not in codes(run("k8s.describe_pod", DESCRIBE_LEDGER, facts))
    unlimited = DESCRIBE_LEDGER.replace("    Limits:\n      cpu:     1\n      memory:  1536Mi\n", "")
    result = run("k8s.describe_pod", unlimited, dict(run("k8s.top_pods", TOP_PODS).facts))
    assert "pod_limits" not in result.facts and not codes(result) & {"cpu_at_limit", "memory_at_limit"}


def test_memory_at_the_limit_warns_of_the_next_oom_kill() -> None:
    near = TOP_PODS.replace("1430Mi", "1500Mi")
    result = run("k8s.describe_pod", DESCRIBE_LEDGER, dict(run("k8s.top_pods", near).facts))
    assert "memory_at_limit" in codes(result)
    assert "1500Mi memory against its limit of 1536Mi" in text(result) and "OOMKilled" in text(result)


def test_without_a_named_workload_the_busiest_pods_are_described() -> None:
    result = run("k8s.top_pods", TOP_PODS, {"message": "everything in finance feels slow"})
    assert result.facts["hot_pods"] == ["ledger-api-6f8d7c9b54-q7w3z", "ledger-api-6f8d7c9b54-k2m9v"]
    named = run("k8s.top_pods", TOP_PODS, {"message": "billing-worker is slow"})
    assert named.facts["hot_pods"] == ["billing-worker-7d9c8b6f5-2xkqp"]


PODS = """NAME                               READY   STATUS    RESTARTS   AGE
ledger-api-6f8d7c9b54-k2m9v        1/1     Running   0          4h
report-gen-5b7c9d8f6-t4x2n         0/1     Pending   0          52m
invoice-sync-7c8d9e6f5-m3n4p       0/1     CrashLoopBackOff   9   40m
"""


def test_the_app_the_user_names_picks_its_pod_among_the_unhealthy_ones() -> None:
    result = run("k8s.pods", PODS, {"message": "the new report-gen never comes up"}, namespace="finance")
    assert result.facts["target_pods"] == ["report-gen-5b7c9d8f6-t4x2n"]
    by_first_word = run("k8s.pods", PODS, {"message": "invoice sync is down again"}, namespace="finance")
    assert by_first_word.facts["target_pods"] == ["invoice-sync-7c8d9e6f5-m3n4p"]


SERVICES = """NAME            TYPE        CLUSTER-IP      EXTERNAL-IP   PORT(S)    AGE
inventory-svc   ClusterIP   10.100.44.19    <none>        9000/TCP   120d
pricing         ClusterIP   10.100.7.2      <none>        80/TCP     120d
"""

DESCRIBE_SVC = """Name:              inventory-svc
Namespace:         stock
Labels:            app=inventory
Selector:          app=inventory,tier=backend
Type:              ClusterIP
IP Family Policy:  SingleStack
IP:                10.100.44.19
IPs:               10.100.44.19
Port:              http  9000/TCP
TargetPort:        9000/TCP
Endpoints:         <none>
Session Affinity:  None
Events:            <none>
"""


def test_the_service_named_in_the_message_is_the_one_to_describe() -> None:
    message = "pricing pods cannot resolve inventory-svc since noon"
    result = run("k8s.services", SERVICES, {"message": message, "service": "inventory-svc"})
    assert result.facts["dependency_services"] == ["inventory-svc"]
    only_named = run("k8s.services", SERVICES, {"message": "is inventory-svc reachable at all?"})
    assert only_named.facts["dependency_services"] == ["inventory-svc"]
    assert "dependency_services" not in run("k8s.services", SERVICES, {"message": "something is off"}).facts


def test_a_service_without_endpoints_still_resolves_so_it_is_not_dns() -> None:
    result = run("k8s.describe_service", DESCRIBE_SVC, {"namespace": "stock"})
    assert "service_no_endpoints" in codes(result)
    assert "still resolves (to 10.100.44.19), so this is not a DNS problem" in text(result)
    headless = DESCRIBE_SVC.replace("IP:                10.100.44.19\nIPs:               10.100.44.19\n",
                                    "IP:                None\n")
    assert "resolves" not in text(run("k8s.describe_service", headless, {"namespace": "stock"}))


def k8s_extract(message: str) -> dict[str, str]:
    return extraction.extract(message, SQUADS["k8s"].playbook().slots).values


def test_a_service_is_picked_up_however_the_message_names_it() -> None:
    assert k8s_extract("the billing-api service times out")["service"] == "billing-api"
    assert k8s_extract("checkout can't resolve inventory-svc")["service"] == "inventory-svc"
    assert k8s_extract("frontend cannot reach payments-gateway in shop")["service"] == "payments-gateway"
    assert "service" not in k8s_extract("the service is slow")
    # A sentence end is no namespace: "all green. namespace shop" is shop.
    assert k8s_extract("pods all green. namespace shop. what gives")["namespace"] == "shop"


def _turn(message: str, fixtures: list[Fixture]) -> tuple[list[Call], str]:
    squad = SQUADS["k8s"]
    executor = FixtureExecutor(fixtures)
    turn = RunbookBrain(squad.playbook()).turn(message, State())
    calls: list[Call] = []
    result: CallResult | None = None
    reply = ""
    while True:
        try:
            step = turn.send(result)
        except StopIteration:
            return calls, reply
        if isinstance(step, Say):
            reply += step.text
            result = None
            continue
        assert isinstance(step, Call) and step.tool
        calls.append(step)
        argv = render(squad.tool(step.tool), step.params)
        res = executor.run(argv, timeout=1, max_output=65536)
        result = CallResult(status="ran", argv=argv, tool=step.tool, node="n1", exit_code=res.exit_code,
                            stdout=res.stdout, stderr=res.stderr)


def test_slow_but_nothing_failing_reaches_top_pods_and_the_limits() -> None:
    fixtures = [
        Fixture(run="kubectl get pods -n finance", stdout=PODS.replace("Pending", "Running").replace(
            "0/1     Running   0", "1/1     Running   0").replace("0/1     CrashLoopBackOff   9", "1/1     Running   0")),
        Fixture(run="kubectl top pods -n finance", stdout=TOP_PODS),
        Fixture(run="kubectl describe pod ledger-api-6f8d7c9b54-* -n finance", stdout=DESCRIBE_LEDGER),
        Fixture(run="kubectl top nodes", stdout="NAME   CPU(cores)   CPU%   MEMORY(bytes)   MEMORY%\nn1   1900m   24%   9Gi   30%\n"),
    ]
    calls, reply = _turn("ledger is sluggish since this morning, no errors at all, namespace finance", fixtures)
    tools = [c.tool for c in calls]
    assert tools[:3] == ["list_pods", "top_pods", "describe_pod"], tools
    assert "throttles" in reply and "1000m" in reply


def test_pods_killed_on_a_node_lead_to_the_eviction_message_and_node_conditions() -> None:
    evicted = """Name:             report-gen-5b7c9d8f6-t4x2n
Namespace:        finance
Node:             worker-7/10.0.4.17
Status:           Failed
Reason:           Evicted
Message:          The node was low on resource: memory. Threshold quantity: 100Mi, available: 91240Ki. Container report-gen was using 2914Mi, which exceeds its request of 512Mi.
Containers:
  report-gen:
    Image:          registry.example.com/report-gen:1.9.0
    State:          Terminated
      Reason:       ContainerStatusUnknown
    Ready:          False
    Restart Count:  0
Events:            <none>
"""
    fixtures = [
        Fixture(run="kubectl get pods -n finance", stdout=PODS.replace("0/1     Pending   0          52m",
                                                                     "0/1     Evicted   0          52m")),
        Fixture(run="kubectl describe pod report-gen-5b7c9d8f6-t4x2n -n finance", stdout=evicted),
        Fixture(run="kubectl describe nodes", stdout=""),
    ]
    calls, reply = _turn("pods keep getting killed on worker-7 in namespace finance, why?", fixtures)
    tools = [c.tool for c in calls]
    assert "describe_pod" in tools and "describe_nodes" in tools, tools
    assert "low on resource: memory" in reply


# -- webserver --------------------------------------------------------------------------------------

WEB = load_analyzers(BUILTIN_BUNDLES / "webserver")
NGINX_T_FAILS = """nginx: [emerg] unknown directive "proxy_bufer_size" in /etc/nginx/sites-enabled/shop.conf:27
nginx: configuration file /etc/nginx/nginx.conf test failed
"""


def test_a_config_error_while_the_server_runs_says_the_reload_would_fail_not_that_it_is_down() -> None:
    out = Output(argv=["nginx", "-t"], exit_code=1, stdout="", stderr=NGINX_T_FAILS, params={})
    running = analyze(WEB, "web.config_test", out, {"server_active": "active"})
    assert "config_error" in codes(running)
    assert "still running on its previous configuration" in text(running) and "a reload or restart would fail" in text(running)
    stopped = analyze(WEB, "web.config_test", out, {"server_active": "failed"})
    assert "cannot start, and a reload would fail" in text(stopped) and "still running" not in text(stopped)


def test_a_php_version_in_words_names_the_fpm_unit() -> None:
    slots = SQUADS["webserver"].playbook().slots
    for message in ("its php 8.2", "PHP8.1 site", "php-fpm 7.4 pool", "restart php8.3-fpm"):
        value = extraction.extract(message, slots).values.get("php_fpm_unit")
        assert value is not None and value.startswith("php") and value.endswith("-fpm"), (message, value)
    assert extraction.extract("its php 8.2", slots).values["php_fpm_unit"] == "php8.2-fpm"
    assert "php_fpm_unit" not in extraction.extract("php is slow on web-8", slots).values


def test_restart_php_fpm_on_a_host_named_web_n_asks_approval_for_the_versioned_unit() -> None:
    squad = SQUADS["webserver"]
    turn = RunbookBrain(squad.playbook()).turn("please restart php-fpm on web-7, the admin pages hang. php 8.1", State())
    steps: list[Say | Call] = []
    result: CallResult | None = None
    while True:
        try:
            step = turn.send(result)
        except StopIteration:
            break
        steps.append(step)
        result = None
        if isinstance(step, Call):
            assert step.hold and step.tool == "restart_php_fpm", step
            argv = render(squad.tool(step.tool), step.params)
            assert argv[:3] == ["systemctl", "restart", "php8.1-fpm"], argv
            result = CallResult(status="approval", argv=argv, tool=step.tool, node="n1", approval_id="1", reason="held")
    assert [s for s in steps if isinstance(s, Call)], steps
