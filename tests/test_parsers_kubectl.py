"""kubectl output parsers: real outputs from the public scenarios plus hand-made realistic ones."""

from __future__ import annotations


import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from squads.bundles.k8s.kubectl import (
    Event,
    PodRow,
    Usage,
    cpu_millicores,
    describe_deployment,
    describe_nodes,
    describe_pod,
    describe_pvc,
    describe_service,
    memory_bytes,
    parse_describe,
    parse_events,
    parse_pods,
    parse_selector,
    parse_services,
    parse_table,
    parse_top,
)
from tests.paths import PUBLIC_SCENARIOS

PUBLIC = PUBLIC_SCENARIOS

GET_PODS = """\
NAME                              READY   STATUS             RESTARTS       AGE
analytics-batch-5c8d7f9b4-k2lmn   1/1     Running            0              3h12m
analytics-batch-5c8d7f9b4-p9wqz   1/1     Running            0              3h12m
payment-service-7d9f8b-xyz        0/1     CrashLoopBackOff   12 (2m ago)    47m
postgres-0                        0/1     Pending            0              47m
redis-cache-6b7f5d8c9-4hx2v       1/1     Running            0              12d
"""

GET_PODS_ALL_WIDE = """\
NAMESPACE     NAME                               READY   STATUS      RESTARTS        AGE   IP            NODE       NOMINATED NODE   READINESS GATES
kube-system   coredns-5d78c9869d-8xk2p           1/1     Running     3 (4d2h ago)    41d   10.244.0.3    worker-1   <none>           <none>
production    payment-service-7d9f8b-xyz         0/1     OOMKilled   7 (35s ago)     47m   10.244.2.31   worker-2   <none>           <none>
production    postgres-0                         0/1     Pending     0               47m   <none>        <none>     <none>           <none>
"""

GET_SERVICES = """\
NAME              TYPE           CLUSTER-IP     EXTERNAL-IP    PORT(S)                      AGE
payment-service   ClusterIP      10.96.112.40   <none>         8080/TCP                     41d
postgres-db       ClusterIP      10.96.45.201   <none>         5432/TCP                     41d
web-frontend      LoadBalancer   10.96.7.9      203.0.113.10   80:30080/TCP,443:30443/TCP   9d
dns               ClusterIP      10.96.0.10     <none>         53/UDP,53/TCP,9153/TCP       41d
"""

TOP_NODES = """\
NAME       CPU(cores)   CPU%   MEMORY(bytes)   MEMORY%
worker-1   3840m        96%    9120Mi          58%
worker-2   3790m        94%    8450Mi          54%
worker-3   3905m        97%    10211Mi         65%
"""

TOP_PODS = """\
NAME                              CPU(cores)   MEMORY(bytes)
analytics-batch-5c8d7f9b4-k2lmn   3520m        2210Mi
analytics-batch-5c8d7f9b4-p9wqz   3488m        2185Mi
payment-service-7d9f8b-xyz        1m           12Mi
redis-cache-6b7f5d8c9-4hx2v       14m          48Mi
"""

GET_EVENTS = """\
LAST SEEN   TYPE      REASON             OBJECT                           MESSAGE
47m         Normal    Scheduled          pod/payment-service-7d9f8b-xyz   Successfully assigned production/payment-service-7d9f8b-xyz to worker-2
2m          Warning   FailedScheduling   pod/postgres-0                   0/3 nodes are available: 3 Insufficient cpu. preemption: 0/3 nodes are available: 3 No preemption victims found for incoming pod.
1m          Warning   BackOff            pod/payment-service-7d9f8b-xyz   Back-off restarting failed container payment in pod payment-service-7d9f8b-xyz_production
"""

DESCRIBE_POD_CRASHLOOP = """\
Name:             payment-service-7d9f8b-xyz
Namespace:        production
Priority:         0
Service Account:  payment
Node:             worker-2/10.0.1.12
Start Time:       Sat, 07 Mar 2026 13:36:02 +0000
Labels:           app=payment-service
                  pod-template-hash=7d9f8b
Status:           Running
IP:               10.244.2.31
Controlled By:    ReplicaSet/payment-service-7d9f8b
Containers:
  payment:
    Container ID:   containerd://5b1e0c0f3a9e
    Image:          registry.example.com/payment-service:3.8.1
    Port:           8080/TCP
    State:          Waiting
      Reason:       CrashLoopBackOff
    Last State:     Terminated
      Reason:       Error
      Exit Code:    1
      Started:      Sat, 07 Mar 2026 14:23:10 +0000
      Finished:     Sat, 07 Mar 2026 14:23:20 +0000
    Ready:          False
    Restart Count:  12
    Environment:
      DATABASE_URL:  postgresql://db.example.com:5432/payments
Conditions:
  Type              Status
  Initialized       True
  Ready             False
  ContainersReady   False
  PodScheduled      True
Events:
  Type     Reason   Age                  From     Message
  ----     ------   ----                 ----     -------
  Warning  BackOff  1m (x210 over 46m)   kubelet  Back-off restarting failed container payment in pod payment-service-7d9f8b-xyz_production(8c1d2e3f-41aa-4b7e-9d0c-6a5b4c3d2e1f)
"""

DESCRIBE_POD_PENDING = """\
Name:             postgres-0
Namespace:        production
Priority:         0
Service Account:  default
Node:             <none>
Labels:           app=postgres
                  controller-revision-hash=postgres-6d5c9b7f8
                  statefulset.kubernetes.io/pod-name=postgres-0
Annotations:      <none>
Status:           Pending
IP:
IPs:              <none>
Controlled By:    StatefulSet/postgres
Containers:
  postgres:
    Image:      postgres:16.4
    Port:       5432/TCP
    Host Port:  0/TCP
    Requests:
      cpu:     2
      memory:  4Gi
    Mounts:
      /var/lib/postgresql/data from data (rw)
Conditions:
  Type           Status
  PodScheduled   False
Volumes:
  data:
    Type:       PersistentVolumeClaim (a reference to a PersistentVolumeClaim in the same namespace)
    ClaimName:  data-postgres-0
    ReadOnly:   false
QoS Class:       Burstable
Node-Selectors:  <none>
Tolerations:     node.kubernetes.io/not-ready:NoExecute op=Exists for 300s
                 node.kubernetes.io/unreachable:NoExecute op=Exists for 300s
Events:
  Type     Reason            Age                 From               Message
  ----     ------            ----                ----               -------
  Warning  FailedScheduling  2m (x15 over 47m)   default-scheduler  0/3 nodes are available: 3 Insufficient cpu. preemption: 0/3 nodes are available: 3 No preemption victims found for incoming pod.
"""

DESCRIBE_POD_OOM = """\
Name:             report-worker-6c9d8f7b5-q2w4e
Namespace:        batch
Priority:         0
Service Account:  default
Node:             worker-3/10.0.1.13
Start Time:       Fri, 06 Mar 2026 22:10:41 +0000
Labels:           app=report-worker
                  pod-template-hash=6c9d8f7b5
Annotations:      kubectl.kubernetes.io/restartedAt: 2026-03-06T22:10:40Z
Status:           Running
IP:               10.244.3.18
IPs:
  IP:           10.244.3.18
Controlled By:  ReplicaSet/report-worker-6c9d8f7b5
Containers:
  worker:
    Container ID:   containerd://9f8e7d6c5b4a
    Image:          registry.example.com/report-worker:1.4.2
    Image ID:       registry.example.com/report-worker@sha256:4b5c6d7e8f90
    Ports:          8080/TCP, 9090/TCP
    Host Ports:     0/TCP, 0/TCP
    State:          Running
      Started:      Sat, 07 Mar 2026 14:25:03 +0000
    Last State:     Terminated
      Reason:       OOMKilled
      Exit Code:    137
      Started:      Sat, 07 Mar 2026 14:19:51 +0000
      Finished:     Sat, 07 Mar 2026 14:24:58 +0000
    Ready:          True
    Restart Count:  7
    Limits:
      cpu:     1
      memory:  512Mi
    Requests:
      cpu:     250m
      memory:  256Mi
    Liveness:  http-get http://:8080/healthz delay=10s timeout=1s period=10s #success=1 #failure=3
    Environment:
      JAVA_OPTS:     -Xmx768m
      DB_PASSWORD:   <set to the key 'password' in secret 'report-db'>  Optional: false
      REDIS_URL:     redis://redis-cache:6379/0
    Mounts:
      /var/run/secrets/kubernetes.io/serviceaccount from kube-api-access-7xk2p (ro)
Conditions:
  Type              Status
  Initialized       True
  Ready             True
  ContainersReady   True
  PodScheduled      True
Volumes:
  kube-api-access-7xk2p:
    Type:                    Projected (a volume that contains injected data from multiple sources)
    TokenExpirationSeconds:  3607
QoS Class:                   Burstable
Node-Selectors:              disktype=ssd
Tolerations:                 node.kubernetes.io/not-ready:NoExecute op=Exists for 300s
Events:
  Type     Reason     Age                   From     Message
  ----     ------     ----                  ----     -------
  Normal   Pulled     5m (x8 over 16h)      kubelet  Container image "registry.example.com/report-worker:1.4.2" already present on machine
  Warning  BackOff    5m (x14 over 3h)      kubelet  Back-off restarting failed container worker in pod report-worker-6c9d8f7b5-q2w4e_batch(1a2b3c4d)
  Warning  Unhealthy  4m                    kubelet  Liveness probe failed: Get "http://10.244.3.18:8080/healthz": context deadline exceeded
"""

DESCRIBE_SERVICE = """\
Name:              postgres-db
Namespace:         production
Labels:            app=postgres
Annotations:       <none>
Selector:          app=postgres
Type:              ClusterIP
IP Family Policy:  SingleStack
IP Families:       IPv4
IP:                10.96.45.201
IPs:               10.96.45.201
Port:              postgres  5432/TCP
TargetPort:        5432/TCP
Endpoints:         <none>
Session Affinity:  None
Events:            <none>
"""

DESCRIBE_SERVICE_MULTI = """\
Name:                     web-frontend
Namespace:                production
Labels:                   app=web
Annotations:              <none>
Selector:                 app=web,tier=frontend
Type:                     LoadBalancer
IP:                       10.96.7.9
LoadBalancer Ingress:     203.0.113.10
Port:                     http  80/TCP
TargetPort:               8080/TCP
NodePort:                 http  30080/TCP
Endpoints:                10.244.1.7:8080,10.244.2.9:8080
Port:                     <unset>  443/TCP
TargetPort:               https/TCP
NodePort:                 <unset>  30443/TCP
Endpoints:                10.244.1.7:8443,10.244.2.9:8443 + 1 more...
Session Affinity:         None
External Traffic Policy:  Cluster
Events:
  Type    Reason                Age   From                Message
  ----    ------                ----  ----                -------
  Normal  EnsuringLoadBalancer  9d    service-controller  Ensuring load balancer
"""

DESCRIBE_PVC = """\
Name:          data-postgres-0
Namespace:     production
StorageClass:  fast-ssd
Status:        Pending
Volume:
Labels:        app=postgres
Annotations:   <none>
Finalizers:    [kubernetes.io/pvc-protection]
Capacity:
Access Modes:
VolumeMode:    Filesystem
Used By:       postgres-0
Events:
  Type     Reason              Age                 From                         Message
  ----     ------              ----                ----                         -------
  Warning  ProvisioningFailed  2m (x15 over 47m)   persistentvolume-controller  storageclass.storage.k8s.io "fast-ssd" not found
"""

DESCRIBE_NODES = """\
Name:               control-1
Roles:              control-plane
Labels:             kubernetes.io/hostname=control-1
                    node-role.kubernetes.io/control-plane=
Annotations:        node.alpha.kubernetes.io/ttl: 0
                    volumes.kubernetes.io/controller-managed-attach-detach: true
CreationTimestamp:  Mon, 26 Jan 2026 09:00:00 +0000
Taints:             node-role.kubernetes.io/control-plane:NoSchedule
                    node.kubernetes.io/disk-pressure:NoSchedule
Unschedulable:      true
Lease:
  HolderIdentity:  control-1
  RenewTime:       Sat, 07 Mar 2026 14:24:59 +0000
Conditions:
  Type             Status  LastHeartbeatTime                 LastTransitionTime                Reason                       Message
  ----             ------  -----------------                 ------------------                ------                       -------
  MemoryPressure   False   Sat, 07 Mar 2026 14:20:00 +0000   Mon, 26 Jan 2026 09:00:00 +0000   KubeletHasSufficientMemory   kubelet has sufficient memory available
  DiskPressure     True    Sat, 07 Mar 2026 14:20:00 +0000   Sat, 07 Mar 2026 12:02:11 +0000   KubeletHasDiskPressure       kubelet has disk pressure
  PIDPressure      False   Sat, 07 Mar 2026 14:20:00 +0000   Mon, 26 Jan 2026 09:00:00 +0000   KubeletHasSufficientPID      kubelet has sufficient PID available
  Ready            True    Sat, 07 Mar 2026 14:20:00 +0000   Mon, 26 Jan 2026 09:01:30 +0000   KubeletReady                 kubelet is posting ready status
Addresses:
  InternalIP:  10.0.1.10
  Hostname:    control-1
Capacity:
  cpu:                2
  memory:             4025836Ki
  pods:               110
Allocatable:
  cpu:                2
  memory:             3923436Ki
  pods:               110
Non-terminated Pods:          (2 in total)
  Namespace                   Name                 CPU Requests  CPU Limits  Memory Requests  Memory Limits  Age
  ---------                   ----                 ------------  ----------  ---------------  -------------  ---
  kube-system                 etcd-control-1       100m (5%)     0 (0%)      100Mi (2%)       0 (0%)         40d
  kube-system                 kube-apiserver-c-1   250m (12%)    0 (0%)      0 (0%)           0 (0%)         40d
Allocated resources:
  (Total limits may be over 100 percent, i.e., overcommitted.)
  Resource           Requests    Limits
  --------           --------    ------
  cpu                350m (17%)  0 (0%)
  memory             100Mi (2%)  0 (0%)
  ephemeral-storage  0 (0%)      0 (0%)
Events:              <none>


Name:               worker-1
Roles:              <none>
Labels:             kubernetes.io/hostname=worker-1
Annotations:        node.alpha.kubernetes.io/ttl: 0
CreationTimestamp:  Mon, 26 Jan 2026 09:05:00 +0000
Taints:             <none>
Unschedulable:      false
Conditions:
  Type             Status  LastHeartbeatTime                 LastTransitionTime                Reason                       Message
  ----             ------  -----------------                 ------------------                ------                       -------
  MemoryPressure   False   Sat, 07 Mar 2026 14:21:00 +0000   Mon, 26 Jan 2026 09:05:00 +0000   KubeletHasSufficientMemory   kubelet has sufficient memory available
  Ready            True    Sat, 07 Mar 2026 14:21:00 +0000   Mon, 26 Jan 2026 09:06:10 +0000   KubeletReady                 kubelet is posting ready status
Allocatable:
  cpu:                4
  ephemeral-storage:  93478772582
  memory:             15991764Ki
  pods:               110
Non-terminated Pods:          (3 in total)
  Namespace                   Name                               CPU Requests  CPU Limits  Memory Requests  Memory Limits  Age
  ---------                   ----                               ------------  ----------  ---------------  -------------  ---
  production                  analytics-batch-5c8d7f9b4-k2lmn    1800m (45%)   0 (0%)      4Gi (26%)        0 (0%)         3h12m
  production                  analytics-batch-5c8d7f9b4-p9wqz    1800m (45%)   0 (0%)      4Gi (26%)        0 (0%)         3h12m
  production                  redis-cache-6b7f5d8c9-4hx2v        200m (5%)     0 (0%)      1Gi (6%)         0 (0%)         12d
Allocated resources:
  (Total limits may be over 100 percent, i.e., overcommitted.)
  Resource           Requests     Limits
  --------           --------     ------
  cpu                3800m (95%)  0 (0%)
  memory             9Gi (58%)    0 (0%)
  ephemeral-storage  0 (0%)       0 (0%)
Events:
  Type     Reason                   Age   From     Message
  ----     ------                   ----  ----     -------
  Warning  EvictionThresholdMet     12m   kubelet  Attempting to reclaim ephemeral-storage
"""

DESCRIBE_DEPLOYMENT = """\
Name:                   inventory-api
Namespace:              staging
CreationTimestamp:      Mon, 01 Dec 2025 10:00:00 +0000
Labels:                 app=inventory-api
Annotations:            deployment.kubernetes.io/revision: 7
Selector:               app=inventory-api
Replicas:               1 desired | 1 updated | 2 total | 1 available | 1 unavailable
StrategyType:           RollingUpdate
MinReadySeconds:        0
RollingUpdateStrategy:  25% max unavailable, 25% max surge
Pod Template:
  Labels:  app=inventory-api
  Containers:
   api:
    Image:        registry.example.com/inventory-api:v2.14.0
    Port:         8080/TCP
    Host Port:    0/TCP
    Environment:  <none>
    Mounts:       <none>
  Volumes:        <none>
  Node-Selectors: <none>
  Tolerations:    <none>
Conditions:
  Type           Status  Reason
  ----           ------  ------
  Available      True    MinimumReplicasAvailable
  Progressing    True    ReplicaSetUpdated
OldReplicaSets:  inventory-api-7b4d9c6f5 (1/1 replicas created)
NewReplicaSet:   inventory-api-6f9c7d5b8 (1/1 replicas created)
Events:
  Type    Reason             Age   From                   Message
  ----    ------             ----  ----                   -------
  Normal  ScalingReplicaSet  18m   deployment-controller  Scaled up replica set inventory-api-6f9c7d5b8 to 1
"""


# --------------------------------------------------------------------------- tables


def test_parse_table_keys_are_headers_and_last_column_keeps_spaces() -> None:
    rows = parse_table(GET_EVENTS)
    assert list(rows[0]) == ["LAST SEEN", "TYPE", "REASON", "OBJECT", "MESSAGE"]
    assert rows[1]["LAST SEEN"] == "2m"
    assert rows[1]["MESSAGE"].endswith("3 No preemption victims found for incoming pod.")
    wide = parse_table(GET_PODS_ALL_WIDE)
    assert wide[2]["NOMINATED NODE"] == "<none>" and wide[2]["READINESS GATES"] == "<none>"
    assert wide[0]["RESTARTS"] == "3 (4d2h ago)"


def test_parse_table_empty_and_no_resources() -> None:
    assert parse_table("") == []
    assert parse_table("\n  \n") == []
    assert parse_table("No resources found in production namespace.\n") == []
    assert parse_table("NAME   READY\n") == []


def test_parse_table_empty_cells_and_blank_lines() -> None:
    text = "NAME     ENDPOINTS         AGE\n\nweb      10.0.0.1:80       3d\ndb                         41d\n"
    assert parse_table(text) == [
        {"NAME": "web", "ENDPOINTS": "10.0.0.1:80", "AGE": "3d"},
        {"NAME": "db", "ENDPOINTS": "", "AGE": "41d"},
    ]


def test_parse_table_tolerates_a_value_overflowing_its_column() -> None:
    text = (
        "NAME     READY   STATUS    AGE\n"
        "averylongpodname 1/1     Running   5m\n"
        "short    0/1     Pending   1m\n"
    )
    rows = parse_table(text)
    assert rows[0] == {"NAME": "averylongpodname", "READY": "1/1", "STATUS": "Running", "AGE": "5m"}
    assert rows[1] == {"NAME": "short", "READY": "0/1", "STATUS": "Pending", "AGE": "1m"}
    # A value that starts a character early still lands in its own column.
    assert parse_table("NAME     READY\npod-a   1/1\n") == [{"NAME": "pod-a", "READY": "1/1"}]
    # A multi-word value keeps its words; a column gap marks where the next value starts.
    misaligned = "NAME   RESTARTS      AGE\nbar    3 (10m ago)  1h\nbaz    12 (2m ago)   5m\n"
    assert parse_table(misaligned) == [
        {"NAME": "bar", "RESTARTS": "3 (10m ago)", "AGE": "1h"},
        {"NAME": "baz", "RESTARTS": "12 (2m ago)", "AGE": "5m"},
    ]


def test_parse_pods() -> None:
    pods = parse_pods(GET_PODS)
    assert len(pods) == 5
    assert pods[2] == PodRow("payment-service-7d9f8b-xyz", 0, 1, "CrashLoopBackOff", 12, "2m ago", "47m")
    assert pods[3].status == "Pending" and pods[3].restarts == 0 and pods[3].last_restart == ""
    assert pods[4].age == "12d" and pods[4].ready == pods[4].total == 1


def test_parse_pods_all_namespaces_wide() -> None:
    pods = parse_pods(GET_PODS_ALL_WIDE)
    assert [p.namespace for p in pods] == ["kube-system", "production", "production"]
    assert pods[0] == PodRow("coredns-5d78c9869d-8xk2p", 1, 1, "Running", 3, "4d2h ago", "41d", "kube-system")
    assert pods[1].status == "OOMKilled" and pods[1].restarts == 7 and pods[1].last_restart == "35s ago"
    assert parse_pods("No resources found in default namespace.") == []


def test_parse_services() -> None:
    services = parse_services(GET_SERVICES)
    assert services[1].name == "postgres-db" and services[1].ports == [(5432, "TCP")]
    assert services[1].cluster_ip == "10.96.45.201" and services[1].external_ip == "<none>"
    assert services[2].type == "LoadBalancer" and services[2].external_ip == "203.0.113.10"
    assert services[2].ports == [(80, "TCP"), (443, "TCP")]
    assert services[3].ports == [(53, "UDP"), (53, "TCP"), (9153, "TCP")]


@pytest.mark.parametrize(
    ("text", "expected"),
    [("3840m", 3840), ("2", 2000), ("0.5", 500), ("250m", 250), ("", None), ("<none>", None),
     ("<unknown>", None), ("abc", None), ("1.5", 1500), ("100000n", 1), (" 14m ", 14)],
)
def test_cpu_millicores(text: str, expected: int | None) -> None:
    assert cpu_millicores(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [("4Gi", 4 * 2**30), ("512Mi", 512 * 2**20), ("1G", 10**9), ("1500M", 1_500_000_000),
     ("12Mi", 12 * 2**20), ("123456", 123456), ("1e3", 1000), ("4025836Ki", 4025836 * 1024),
     ("1.5Gi", 3 * 2**29), ("", None), ("<none>", None), ("12 MB", None), ("-1Gi", None), ("Gi", None)],
)
def test_memory_bytes(text: str, expected: int | None) -> None:
    assert memory_bytes(text) == expected


def test_parse_top_nodes_and_pods() -> None:
    nodes = parse_top(TOP_NODES)
    assert nodes[0] == Usage("worker-1", 3840, 96, 9120 * 2**20, 58)
    assert [n.cpu_percent for n in nodes] == [96, 94, 97]
    pods = parse_top(TOP_PODS)
    assert pods[0] == Usage("analytics-batch-5c8d7f9b4-k2lmn", 3520, None, 2210 * 2**20, None)
    assert pods[2].cpu_m == 1 and pods[2].memory_bytes == 12 * 2**20
    all_ns = parse_top("NAMESPACE    NAME        CPU(cores)   MEMORY(bytes)\nproduction   web-1       250m         300Mi\n")
    assert all_ns == [Usage("web-1", 250, None, 300 * 2**20, None, "production")]
    newer = parse_top("NAME       CPU(cores)   CPU(%)   MEMORY(bytes)   MEMORY(%)\nworker-1   3840m        96%      <unknown>       <unknown>\n")
    assert newer == [Usage("worker-1", 3840, 96, None, None)]


def test_parse_events() -> None:
    events = parse_events(GET_EVENTS)
    assert len(events) == 3
    assert events[1] == Event(
        type="Warning",
        reason="FailedScheduling",
        age="2m",
        source="",
        message="0/3 nodes are available: 3 Insufficient cpu. preemption: 0/3 nodes are available: "
        "3 No preemption victims found for incoming pod.",
        object="pod/postgres-0",
    )
    assert events[2].object == "pod/payment-service-7d9f8b-xyz" and events[2].reason == "BackOff"
    assert parse_events("No resources found in production namespace.") == []


def test_parse_selector() -> None:
    assert parse_selector("app=postgres,tier=db") == {"app": "postgres", "tier": "db"}
    assert parse_selector("<none>") == {}
    assert parse_selector("") == {}
    assert parse_selector("app==web, env!=dev") == {"app": "web"}


# --------------------------------------------------------------------------- describe tree


def test_describe_tree_keys_values_children_and_lines() -> None:
    [doc] = parse_describe(DESCRIBE_POD_CRASHLOOP)
    assert doc.value("Service Account") == "payment"
    assert doc.value("Start Time") == "Sat, 07 Mar 2026 13:36:02 +0000"
    labels = doc.get("labels")
    assert labels is not None and labels.value == "app=payment-service"
    assert [line.strip() for line in labels.lines] == ["pod-template-hash=7d9f8b"]
    container = doc.get("Containers", "payment")
    assert container is not None and container.value == ""
    assert container.get("Image") is not None
    assert doc.value("Containers", "payment", "Image") == "registry.example.com/payment-service:3.8.1"
    assert doc.value("Containers", "payment", "Last State", "Exit Code") == "1"
    assert doc.value("Containers", "payment", "Environment", "DATABASE_URL") == "postgresql://db.example.com:5432/payments"
    assert doc.value("Containers", "payment", "Port") == "8080/TCP"
    conditions = doc.get("Conditions")
    assert conditions is not None and not conditions.children and len(conditions.lines) == 5
    assert doc.value("Nope", default="?") == "?"


def test_describe_tolerations_and_mounts_stay_verbatim() -> None:
    [doc] = parse_describe(DESCRIBE_POD_PENDING)
    assert doc.value("IP") == ""
    tolerations = doc.get("Tolerations")
    assert tolerations is not None and tolerations.children == []
    assert tolerations.lines[0].strip() == "node.kubernetes.io/unreachable:NoExecute op=Exists for 300s"
    mounts = doc.get("Containers", "postgres", "Mounts")
    assert mounts is not None and mounts.lines[0].strip() == "/var/lib/postgresql/data from data (rw)"
    assert doc.value("Containers", "postgres", "Requests", "memory") == "4Gi"


def test_describe_events_table() -> None:
    [doc] = parse_describe(DESCRIBE_POD_CRASHLOOP)
    assert doc.events == [Event(
        "Warning", "BackOff", "1m (x210 over 46m)", "kubelet",
        "Back-off restarting failed container payment in pod "
        "payment-service-7d9f8b-xyz_production(8c1d2e3f-41aa-4b7e-9d0c-6a5b4c3d2e1f)",
    )]
    [svc] = parse_describe(DESCRIBE_SERVICE)
    assert svc.events == []


# --------------------------------------------------------------------------- summaries


def test_describe_pod_crashloop() -> None:
    pod = describe_pod(DESCRIBE_POD_CRASHLOOP)
    assert (pod.name, pod.namespace, pod.node, pod.status) == ("payment-service-7d9f8b-xyz", "production", "worker-2", "Running")
    assert pod.labels == {"app": "payment-service", "pod-template-hash": "7d9f8b"}
    assert pod.controlled_by == "ReplicaSet/payment-service-7d9f8b"
    assert pod.conditions == {"Initialized": "True", "Ready": "False", "ContainersReady": "False", "PodScheduled": "True"}
    [c] = pod.containers
    assert (c.name, c.state, c.reason, c.last_state, c.last_reason) == ("payment", "Waiting", "CrashLoopBackOff", "Terminated", "Error")
    assert c.exit_code == 1 and c.restart_count == 12 and c.ready is False
    assert c.env == {"DATABASE_URL": "postgresql://db.example.com:5432/payments"}
    assert c.ports == ["8080/TCP"] and c.requests == {} and c.limits == {}
    assert pod.events[0].reason == "BackOff" and pod.claims == [] and pod.tolerations == []


def test_describe_pod_pending_with_claim() -> None:
    pod = describe_pod(DESCRIBE_POD_PENDING)
    assert pod.node == "" and pod.status == "Pending" and pod.controlled_by == "StatefulSet/postgres"
    assert pod.labels["statefulset.kubernetes.io/pod-name"] == "postgres-0"
    assert pod.claims == ["data-postgres-0"]
    assert pod.node_selectors == ""
    assert pod.tolerations == [
        "node.kubernetes.io/not-ready:NoExecute op=Exists for 300s",
        "node.kubernetes.io/unreachable:NoExecute op=Exists for 300s",
    ]
    assert pod.conditions == {"PodScheduled": "False"}
    [c] = pod.containers
    assert c.image == "postgres:16.4" and c.requests == {"cpu": "2", "memory": "4Gi"}
    assert c.exit_code is None and c.ready is None and c.state == ""
    assert "3 Insufficient cpu" in pod.events[0].message and pod.events[0].source == "default-scheduler"


def test_describe_pod_oomkilled() -> None:
    pod = describe_pod(DESCRIBE_POD_OOM)
    [c] = pod.containers
    assert (c.state, c.last_state, c.last_reason, c.exit_code) == ("Running", "Terminated", "OOMKilled", 137)
    assert c.limits == {"cpu": "1", "memory": "512Mi"} and c.requests == {"cpu": "250m", "memory": "256Mi"}
    assert c.ready is True and c.restart_count == 7
    assert c.ports == ["8080/TCP", "9090/TCP"]
    assert c.env["JAVA_OPTS"] == "-Xmx768m" and c.env["REDIS_URL"] == "redis://redis-cache:6379/0"
    assert c.env["DB_PASSWORD"].startswith("<set to the key 'password'")
    assert pod.node_selectors == "disktype=ssd" and pod.controlled_by == "ReplicaSet/report-worker-6c9d8f7b5"
    assert [e.reason for e in pod.events] == ["Pulled", "BackOff", "Unhealthy"]
    assert pod.events[2].message == 'Liveness probe failed: Get "http://10.244.3.18:8080/healthz": context deadline exceeded'
    assert pod.claims == []


def test_describe_service() -> None:
    svc = describe_service(DESCRIBE_SERVICE)
    assert (svc.name, svc.namespace, svc.type) == ("postgres-db", "production", "ClusterIP")
    assert svc.selector == {"app": "postgres"}
    assert svc.ports == [("postgres", 5432, "TCP")] and svc.target_ports == ["5432/TCP"]
    assert svc.endpoints == [] and svc.events == []


def test_describe_service_several_ports() -> None:
    svc = describe_service(DESCRIBE_SERVICE_MULTI)
    assert svc.selector == {"app": "web", "tier": "frontend"}
    assert svc.ports == [("http", 80, "TCP"), ("", 443, "TCP")]
    assert svc.target_ports == ["8080/TCP", "https/TCP"]
    assert svc.endpoints == ["10.244.1.7:8080", "10.244.2.9:8080", "10.244.1.7:8443", "10.244.2.9:8443"]
    assert svc.events[0].reason == "EnsuringLoadBalancer"


def test_describe_pvc_pending() -> None:
    pvc = describe_pvc(DESCRIBE_PVC)
    assert (pvc.name, pvc.namespace, pvc.status, pvc.storage_class) == ("data-postgres-0", "production", "Pending", "fast-ssd")
    assert pvc.volume == "" and pvc.capacity == ""
    assert pvc.events == [Event(
        "Warning", "ProvisioningFailed", "2m (x15 over 47m)", "persistentvolume-controller",
        'storageclass.storage.k8s.io "fast-ssd" not found',
    )]


def test_describe_nodes() -> None:
    control, worker = describe_nodes(DESCRIBE_NODES)
    assert control.name == "control-1" and worker.name == "worker-1"
    assert control.taints == ["node-role.kubernetes.io/control-plane:NoSchedule", "node.kubernetes.io/disk-pressure:NoSchedule"]
    assert control.unschedulable is True and worker.unschedulable is False and worker.taints == []
    assert control.conditions == {"MemoryPressure": "False", "DiskPressure": "True", "PIDPressure": "False", "Ready": "True"}
    assert control.allocatable == {"cpu": "2", "memory": "3923436Ki", "pods": "110"}
    assert worker.allocated["cpu"] == ("3800m (95%)", "0 (0%)")
    assert worker.allocated["memory"] == ("9Gi (58%)", "0 (0%)")
    assert worker.allocated_percent == {"cpu": 95, "memory": 58, "ephemeral-storage": 0}
    assert control.allocated_percent["cpu"] == 17
    [doc, _] = parse_describe(DESCRIBE_NODES)
    assert doc.events == [] and doc.value("Lease", "HolderIdentity") == "control-1"


def test_describe_deployment() -> None:
    dep = describe_deployment(DESCRIBE_DEPLOYMENT)
    assert (dep.name, dep.namespace) == ("inventory-api", "staging")
    assert dep.replicas == "1 desired | 1 updated | 2 total | 1 available | 1 unavailable"
    assert dep.image == "registry.example.com/inventory-api:v2.14.0"
    assert dep.conditions == {"Available": "True", "Progressing": "True"}
    assert dep.events[0].message == "Scaled up replica set inventory-api-6f9c7d5b8 to 1"


def test_empty_describe() -> None:
    assert parse_describe("") == []
    pod = describe_pod("")
    assert pod.name == "" and pod.containers == [] and pod.events == []
    assert describe_nodes("") == []


def _fixtures(command_prefix: str) -> list[str]:
    outputs = []
    for path in sorted(PUBLIC.glob("k8s-*.yaml")):
        for node in (yaml.safe_load(path.read_text()).get("nodes") or {}).values():
            for fixture in node.get("fixtures") or []:
                if fixture.get("run", "").startswith(command_prefix) and fixture.get("stdout"):
                    outputs.append(fixture["stdout"])
    return outputs


def test_public_scenario_outputs_parse() -> None:
    pods = [p for out in _fixtures("kubectl get pods") for p in parse_pods(out)]
    assert pods and all(p.name and p.total >= 1 and p.status for p in pods)
    described = [describe_pod(out) for out in _fixtures("kubectl describe pod")]
    assert described and all(p.name and p.containers and p.containers[0].image for p in described)
    imagepull = [p for p in described if p.name.startswith("inventory-api")]
    assert imagepull and imagepull[0].containers[0].reason == "ImagePullBackOff"
    assert any("not found" in e.message for e in imagepull[0].events)
    assert [s.name for out in _fixtures("kubectl describe service") for s in [describe_service(out)]] == ["postgres-db"]
    tops = [u for out in _fixtures("kubectl top") for u in parse_top(out)]
    assert tops and all(u.cpu_m is not None and u.memory_bytes is not None for u in tops)
    events = [e for out in _fixtures("kubectl get events") for e in parse_events(out)]
    assert events and all(e.object.startswith("pod/") for e in events)


# --------------------------------------------------------------------------- properties

_WORD = st.text(alphabet="abcxyz0123456789/().:%<>", min_size=1, max_size=12)
_CELL = st.lists(_WORD, min_size=0, max_size=3).map(" ".join)
_HEADER = st.lists(st.text(alphabet="ABCDEFGHIJ", min_size=1, max_size=6), min_size=1, max_size=2).map(" ".join)


@st.composite
def _tables(draw: st.DrawFn) -> tuple[list[str], list[list[str]]]:
    headers = draw(st.lists(_HEADER, min_size=1, max_size=6, unique=True))
    rows = draw(st.lists(st.lists(_CELL, min_size=len(headers), max_size=len(headers)), min_size=1, max_size=5))
    # A row with only empty cells is a blank line, which tables never print.
    return headers, [row for row in rows if any(row)]


@given(_tables(), st.integers(min_value=2, max_value=5))
def test_parse_table_recovers_aligned_cells(table: tuple[list[str], list[list[str]]], gap: int) -> None:
    headers, rows = table
    widths = [max(len(cell) for cell in [h] + [r[i] for r in rows]) + gap for i, h in enumerate(headers)]

    def render(cells: list[str]) -> str:
        return "".join(cell.ljust(width) for cell, width in zip(cells, widths, strict=True)).rstrip()

    text = "\n".join([render(headers)] + [render(row) for row in rows]) + "\n"
    assert parse_table(text) == [dict(zip(headers, row, strict=True)) for row in rows]


@given(st.integers(min_value=0, max_value=10**9))
def test_cpu_millicores_round_trip(millis: int) -> None:
    assert cpu_millicores(f"{millis}m") == millis
    assert cpu_millicores(str(millis)) == millis * 1000
    assert cpu_millicores(f"{millis / 1000}") == millis


@given(st.integers(min_value=0, max_value=10**12), st.sampled_from(["", "Ki", "Mi", "Gi", "Ti", "k", "M", "G", "T"]))
def test_memory_bytes_round_trip(amount: int, suffix: str) -> None:
    scale = {"": 1, "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "k": 10**3, "M": 10**6, "G": 10**9, "T": 10**12}
    assert memory_bytes(f"{amount}{suffix}") == amount * scale[suffix]


@given(st.lists(st.text(alphabet="abcxyz0123456789/()", min_size=1, max_size=8), min_size=2, max_size=5), st.data())
def test_parse_table_recovers_cells_after_an_overflowing_value(cells: list[str], data: st.DataObject) -> None:
    headers = [f"H{i}" for i in range(len(cells))]
    widths = [max(len(h), len(c)) + 3 for h, c in zip(headers, cells, strict=True)]
    idx = data.draw(st.integers(min_value=0, max_value=len(cells) - 2))
    # The value reaches past its column and one space separates it from the rest, which shifts right.
    cells[idx] += "q" * data.draw(st.integers(min_value=widths[idx] - len(cells[idx]), max_value=widths[idx] + 10))
    row = "".join(c.ljust(w) for c, w in zip(cells[:idx], widths, strict=False)) + cells[idx] + " "
    row += "".join(c.ljust(w) for c, w in zip(cells[idx + 1:], widths[idx + 1:], strict=True))
    header = "".join(h.ljust(w) for h, w in zip(headers, widths, strict=True))
    assert parse_table(f"{header}\n{row}\n") == [dict(zip(headers, cells, strict=True))]
