"""Issue 12, k8s squad, third round: the log of the very container that is not ready or restarting
(a sidecar, read with -c), and the catalogue's reading of config values an app refuses and of a
container that cannot fetch its configuration. Realistic outputs of the real programs."""

from __future__ import annotations

from typing import Any

from squads.brain.analyzers import Output, analyze
from squads.brain.models import Analysis
from squads.bundle_code import load_analyzers
from squads.grants import BUILTIN_BUNDLES

K8S = load_analyzers(BUILTIN_BUNDLES / "k8s")


def run(name: str, stdout: str, facts: dict[str, Any] | None = None, item: Any = None, **params: Any) -> Analysis:
    output = Output(argv=["kubectl"], exit_code=0, stdout=stdout, stderr="", params=params, item=item)
    return analyze(K8S, name, output, facts or {})


def text(result: Analysis) -> str:
    return "\n".join(f.text for f in result.findings)


SIDECAR_POD = """Name:             orders-api-5f7c9d8b6-x2k4q
Namespace:        shop
Node:             wk-07/10.1.4.17
Status:           Running
Containers:
  orders-api:
    Image:          registry.example.org/orders-api:2.3.0
    Port:           8080/TCP
    State:          Running
      Started:      Mon, 01 Feb 2027 09:12:01 +0000
    Ready:          True
    Restart Count:  0
    Readiness:      http-get http://:8080/health delay=5s timeout=1s period=10s #success=1 #failure=3
  envoy:
    Image:          envoyproxy/envoy:v1.30.2
    Port:           15001/TCP
    State:          Running
      Started:      Mon, 01 Feb 2027 09:12:02 +0000
    Ready:          False
    Restart Count:  0
    Readiness:      http-get http://:15021/ready delay=1s timeout=1s period=5s #success=1 #failure=3
Conditions:
  Type              Status
  Ready             False
  ContainersReady   False
Events:
  Type     Reason     Age                 From     Message
  ----     ------     ----                ----     -------
  Warning  Unhealthy  2m (x40 over 40m)   kubelet  Readiness probe failed: HTTP probe failed with statuscode: 503
"""


def test_a_not_ready_sidecar_is_named_for_its_own_log() -> None:
    result = run("k8s.describe_pod", SIDECAR_POD, pod="orders-api-5f7c9d8b6-x2k4q", namespace="shop")
    assert result.facts["not_ready_containers"] == [
        {"pod": "orders-api-5f7c9d8b6-x2k4q", "container": "envoy", "namespace": "shop"}]


def test_a_single_container_pod_needs_no_container_flag() -> None:
    single = SIDECAR_POD.split("  envoy:")[0] + "Conditions:\n  Type   Status\n  Ready  True\n"
    result = run("k8s.describe_pod", single, pod="orders-api-5f7c9d8b6-x2k4q", namespace="shop")
    assert "not_ready_containers" not in result.facts


ENVOY_LOG = """2027-02-01T09:40:11Z INF starting proxy version=1.30.2
2027-02-01T09:40:12Z ERR failed to fetch config error="rpc error: code = Unavailable desc = connection error: desc = \\"transport: Error while dialing: dial tcp 10.96.40.9:18000: connect: connection refused\\"" source=xds.mesh.svc.cluster.local:18000 attempt=12 retry_in=30s
"""


def test_the_sidecars_log_is_named_by_pod_and_container_and_its_config_source_read() -> None:
    item = {"pod": "orders-api-5f7c9d8b6-x2k4q", "container": "envoy", "namespace": "shop"}
    result = run("k8s.logs", ENVOY_LOG, item=item, pod=item["pod"], container="envoy", namespace="shop")
    found = text(result)
    assert "orders-api-5f7c9d8b6-x2k4q (container envoy)'s log" in found
    assert "{'pod'" not in found
    assert "10.96.40.9:18000" in found  # the address it cannot reach


CONFIG_LOG = """2027-01-30T17:21:05.118Z	INFO	billing-worker 1.8.0 starting
2027-01-30T17:21:05.119Z	INFO	loading configuration from environment
2027-01-30T17:21:05.120Z	FATAL	invalid configuration	{"error": "QUEUE_MODE: unrecognized value \\"fifo-strict\\" (want one of: fifo, priority)"}
"""


def test_a_refused_config_value_names_the_setting_and_the_configmap() -> None:
    result = run("k8s.logs", CONFIG_LOG, item="billing-worker-6c8d7f9b5-pq4zt",
                 pod="billing-worker-6c8d7f9b5-pq4zt", namespace="billing")
    found = text(result)
    assert "QUEUE_MODE" in found and "fifo-strict" in found
    assert "ConfigMap" in found
    assert "unrecognised error" not in found
    assert "{" + "key}" not in found and "{" + "value}" not in found


def test_a_refused_value_in_the_other_word_order_is_read_too() -> None:
    log = "2027-01-30T17:21:05Z ERROR invalid value \"eleven\" for env variable MAX_WORKERS\n"
    found = text(run("k8s.logs", log, item="q-5d8f7c6b9-abcde", pod="q-5d8f7c6b9-abcde", namespace="jobs"))
    assert "MAX_WORKERS" in found and "eleven" in found and "ConfigMap" in found
