"""Issue 12, k8s squad, round 3b: a node at its pod limit (max-pods) whatever CPU is free, and the
namespace of a rollout named as "the deploy to X". Realistic `kubectl describe node` output."""

from __future__ import annotations

from typing import Any

from squads.brain import extract as extraction
from squads.brain.analyzers import Output, analyze
from squads.brain.models import Analysis
from squads.bundle_code import load_analyzers
from squads.bundles.k8s import kubectl as k
from squads.grants import BUILTIN_BUNDLES
from squads.service import load_squads

K8S = load_analyzers(BUILTIN_BUNDLES / "k8s")
SQUADS = load_squads()


def run(name: str, stdout: str, facts: dict[str, Any] | None = None, **params: Any) -> Analysis:
    return analyze(K8S, name, Output(argv=["kubectl"], exit_code=0, stdout=stdout, stderr="", params=params), facts or {})


def node(name: str, max_pods: int, running: int) -> str:
    return f"""Name:               {name}
Roles:              agent
Taints:             <none>
Unschedulable:      false
Conditions:
  Type             Status  LastHeartbeatTime                 LastTransitionTime                Reason                       Message
  ----             ------  -----------------                 ------------------                ------                       -------
  MemoryPressure   False   Wed, 03 Feb 2027 08:01:12 +0000   Mon, 04 Jan 2027 10:00:00 +0000   KubeletHasSufficientMemory   kubelet has sufficient memory available
  Ready            True    Wed, 03 Feb 2027 08:01:12 +0000   Mon, 04 Jan 2027 10:00:00 +0000   KubeletReady                 kubelet is posting ready status
Capacity:
  cpu:                16
  memory:             65842876Ki
  pods:               {max_pods}
Allocatable:
  cpu:                15820m
  memory:             57129660Ki
  pods:               {max_pods}
Non-terminated Pods:          ({running} in total)
  Namespace     Name                          CPU Requests  CPU Limits  Memory Requests  Memory Limits  Age
  ---------     ----                          ------------  ----------  ---------------  -------------  ---
  telemetry     span-collector-6f9d8c7b5-q2w8e  250m (1%)     1 (6%)      512Mi (0%)       1Gi (1%)       6d
Allocated resources:
  (Total limits may be over 100 percent, i.e., overcommitted.)
  Resource           Requests      Limits
  --------           --------      ------
  cpu                3100m (19%)   9 (56%)
  memory             6Gi (11%)     12Gi (22%)
Events:              <none>
"""


def test_the_pod_count_of_a_node_is_read() -> None:
    (info,) = k.describe_nodes(node("gke-pool-b-7x2q", 58, 41))
    assert (info.pods_running, info.allocatable["pods"]) == (41, "58")


def test_a_node_at_max_pods_is_the_cause_although_cpu_is_free() -> None:
    out = node("gke-pool-b-7x2q", 58, 58) + "\n\n" + node("gke-pool-b-9k4m", 58, 23)
    result = run("k8s.describe_nodes", out)
    full = [f for f in result.findings if f.code == "node_pods_full"]
    assert len(full) == 1
    assert full[0].severity.name == "CAUSE"
    assert "gke-pool-b-7x2q runs 58 pods" in full[0].text and "max-pods" in full[0].text


def test_a_node_nearly_at_max_pods_is_a_problem_and_a_roomy_one_says_nothing() -> None:
    near = run("k8s.describe_nodes", node("ip-10-2-7-19.ec2.internal", 17, 16))
    assert [f.severity.name for f in near.findings if f.code == "node_pods_full"] == ["PROBLEM"]
    roomy = run("k8s.describe_nodes", node("ip-10-2-7-19.ec2.internal", 110, 12))
    assert not [f for f in roomy.findings if f.code == "node_pods_full"]


def test_a_node_without_the_pod_count_line_is_not_judged() -> None:
    out = node("edge-03", 20, 20).replace("Non-terminated Pods:          (20 in total)\n", "")
    assert k.describe_nodes(out)[0].pods_running is None
    assert not [f for f in run("k8s.describe_nodes", out).findings if f.code == "node_pods_full"]


def k8s_extract(message: str) -> dict[str, Any]:
    return extraction.extract(message, SQUADS["k8s"].playbook().slots).values


def test_the_deploy_to_x_names_the_namespace() -> None:
    assert k8s_extract("the ledger-api deploy to payments hung for 20 minutes")["namespace"] == "payments"
    assert k8s_extract("rollout into staging-eu is stuck, why")["namespace"] == "staging-eu"
    # A namespace said outright wins over the rollout's target.
    assert k8s_extract("the deploy to prod-eu failed, namespace checkout")["namespace"] == "checkout"


RATE_LIMITED_POD = """Name:             catalog-ui-7d4b9c8f6-m2xkp
Namespace:        retail
Node:             pool-a-node-5/10.20.0.15
Status:           Pending
Labels:           app=catalog-ui
                  pod-template-hash=7d4b9c8f6
Controlled By:    ReplicaSet/catalog-ui-7d4b9c8f6
Containers:
  ui:
    Image:          nginxinc/nginx-unprivileged:1.27.3
    Port:           8080/TCP
    State:          Waiting
      Reason:       ImagePullBackOff
    Ready:          False
    Restart Count:  0
Conditions:
  Type              Status
  Ready             False
Events:
  Type     Reason     Age                From     Message
  ----     ------     ----               ----     -------
  Normal   Scheduled  6m                 default-scheduler  Successfully assigned retail/catalog-ui-7d4b9c8f6-m2xkp to pool-a-node-5
  Warning  Failed     5m (x4 over 6m)    kubelet  Failed to pull image "nginxinc/nginx-unprivileged:1.27.3": rpc error: code = Unknown desc = failed to pull and unpack image "docker.io/nginxinc/nginx-unprivileged:1.27.3": failed to copy: httpReadSeeker: failed open: unexpected status code https://registry-1.docker.io/v2/nginxinc/nginx-unprivileged/manifests/sha256:9f1c2e: 429 Too Many Requests - Server message: toomanyrequests: You have reached your unauthenticated pull rate limit. https://www.docker.com/increase-rate-limit
  Normal   BackOff    60s (x20 over 6m)  kubelet  Back-off pulling image "nginxinc/nginx-unprivileged:1.27.3"
"""


def test_a_rate_limited_pull_names_the_node_and_is_not_a_bad_image_reference() -> None:
    result = run("k8s.describe_pod", RATE_LIMITED_POD, pod="catalog-ui-7d4b9c8f6-m2xkp", namespace="retail")
    (finding,) = [f for f in result.findings if f.code.startswith("image_pull")]
    assert finding.code == "image_pull_rate_limit"
    assert "on node pool-a-node-5" in finding.text and "rate limit" in finding.text


def test_a_missing_tag_is_still_an_image_reference_problem_with_its_node() -> None:
    missing = RATE_LIMITED_POD.replace(
        "429 Too Many Requests - Server message: toomanyrequests: You have reached your unauthenticated pull rate limit. "
        "https://www.docker.com/increase-rate-limit", "not found")
    result = run("k8s.describe_pod", missing, pod="catalog-ui-7d4b9c8f6-m2xkp", namespace="retail")
    (finding,) = [f for f in result.findings if f.code.startswith("image_pull")]
    assert finding.code == "image_pull" and "not found in the registry" in finding.text
    assert "on node pool-a-node-5" in finding.text


def test_ns_is_x_names_the_namespace() -> None:
    assert k8s_extract("checkout is throwing 500s since noon. ns is payments-eu")["namespace"] == "payments-eu"
    assert k8s_extract("the namespace is the analytics one, logs look fine")["namespace"] == "analytics"
