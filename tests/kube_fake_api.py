"""A fake Kubernetes API server on loopback that records what kubectl asks for.

It answers legacy discovery (``/api``, ``/apis``, ``/api/v1``, ``/apis/<g>/<v>``)
with the resources kubectl needs to resolve names, short names, kinds and the
``all`` category, and answers every other GET with a plausible object or list,
so that kubectl goes on to make every request it would make against a real
cluster. Each request path is recorded; the tests read ``requests``.
"""

from __future__ import annotations

import json
import os
import pwd
import subprocess
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit

# (group, version) -> [(plural, singular, kind, namespaced, short names, categories)]
_ALL = ["all"]
RESOURCES: dict[tuple[str, str], list[tuple[str, str, str, bool, list[str], list[str]]]] = {
    ("", "v1"): [
        ("pods", "pod", "Pod", True, ["po"], _ALL),
        ("services", "service", "Service", True, ["svc"], _ALL),
        ("endpoints", "endpoints", "Endpoints", True, ["ep"], []),
        ("events", "event", "Event", True, ["ev"], []),
        ("configmaps", "configmap", "ConfigMap", True, ["cm"], []),
        ("secrets", "secret", "Secret", True, [], []),
        ("serviceaccounts", "serviceaccount", "ServiceAccount", True, ["sa"], []),
        ("persistentvolumeclaims", "persistentvolumeclaim", "PersistentVolumeClaim", True, ["pvc"], []),
        ("persistentvolumes", "persistentvolume", "PersistentVolume", False, ["pv"], []),
        ("nodes", "node", "Node", False, ["no"], []),
        ("namespaces", "namespace", "Namespace", False, ["ns"], []),
        ("replicationcontrollers", "replicationcontroller", "ReplicationController", True, ["rc"], _ALL),
        ("resourcequotas", "resourcequota", "ResourceQuota", True, ["quota"], []),
        ("limitranges", "limitrange", "LimitRange", True, ["limits"], []),
    ],
    ("apps", "v1"): [
        ("deployments", "deployment", "Deployment", True, ["deploy"], _ALL),
        ("replicasets", "replicaset", "ReplicaSet", True, ["rs"], _ALL),
        ("statefulsets", "statefulset", "StatefulSet", True, ["sts"], _ALL),
        ("daemonsets", "daemonset", "DaemonSet", True, ["ds"], _ALL),
    ],
    ("batch", "v1"): [
        ("jobs", "job", "Job", True, [], _ALL),
        ("cronjobs", "cronjob", "CronJob", True, ["cj"], _ALL),
    ],
    ("autoscaling", "v2"): [
        ("horizontalpodautoscalers", "horizontalpodautoscaler", "HorizontalPodAutoscaler", True, ["hpa"], _ALL),
    ],
    ("networking.k8s.io", "v1"): [
        ("ingresses", "ingress", "Ingress", True, ["ing"], []),
        ("networkpolicies", "networkpolicy", "NetworkPolicy", True, ["netpol"], []),
    ],
    ("storage.k8s.io", "v1"): [
        ("storageclasses", "storageclass", "StorageClass", False, ["sc"], []),
    ],
    ("events.k8s.io", "v1"): [
        ("events", "event", "Event", True, ["ev"], []),
    ],
    ("metrics.k8s.io", "v1beta1"): [
        ("pods", "", "PodMetrics", True, [], []),
        ("nodes", "", "NodeMetrics", False, [], []),
    ],
}


def _kind_of(group: str, plural: str) -> tuple[str, str]:
    for (g, v), items in RESOURCES.items():
        if g == group:
            for name, _s, kind, _n, _sh, _c in items:
                if name == plural:
                    return kind, (f"{g}/{v}" if g else v)
    return "Status", "v1"


def _object(group: str, plural: str, namespace: str | None, name: str) -> dict[str, object]:
    kind, api_version = _kind_of(group, plural)
    meta: dict[str, object] = {"name": name, "uid": f"uid-{name}", "creationTimestamp": "2025-01-01T00:00:00Z",
                               "resourceVersion": "1", "labels": {"app": "web"}}
    if namespace:
        meta["namespace"] = namespace
    obj: dict[str, object] = {"kind": kind, "apiVersion": api_version, "metadata": meta}
    if kind == "Pod":
        obj["spec"] = {"containers": [{"name": "app", "image": "web:1"}], "nodeName": "node-1"}
        obj["status"] = {"phase": "Running"}
    elif kind == "Deployment":
        obj["metadata"]["generation"] = 1  # type: ignore[index]
        obj["spec"] = {"replicas": 1, "selector": {"matchLabels": {"app": "web"}},
                       "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "app", "image": "web:1"}]}}}
        obj["status"] = {"observedGeneration": 1, "replicas": 1, "updatedReplicas": 1, "readyReplicas": 1,
                         "availableReplicas": 1}
    elif kind in ("PodMetrics", "NodeMetrics"):
        obj["timestamp"] = "2025-01-01T00:00:00Z"
        obj["window"] = "30s"
        usage = {"cpu": "10m", "memory": "10Mi"}
        if kind == "PodMetrics":
            obj["containers"] = [{"name": "app", "usage": usage}]
        else:
            obj["usage"] = usage
    return obj


@dataclass(frozen=True, slots=True)
class Request:
    """One request kubectl made: the path without the query, and the query."""

    method: str
    path: str
    query: str

    @property
    def resource(self) -> tuple[str, str | None, str, str | None] | None:
        """(group, namespace, plural, name) of a resource request, or None for discovery."""
        parts = [p for p in self.path.split("/") if p]
        if parts[:2] == ["api", "v1"]:
            group, rest = "", parts[2:]
        elif parts[:1] == ["apis"] and len(parts) >= 3:
            group, rest = parts[1], parts[3:]
        else:
            return None
        namespace = None
        if len(rest) >= 3 and rest[0] == "namespaces":
            namespace, rest = rest[1], rest[2:]
        elif len(rest) in (1, 2) and rest[0] == "namespaces":
            return group, None, "namespaces", rest[1] if len(rest) == 2 else None
        if not rest:
            return None
        return group, namespace, rest[0], rest[1] if len(rest) > 1 else None


@dataclass(slots=True)
class FakeKubeAPI:
    """The running server: its URL and every request it has seen."""

    url: str
    requests: list[Request] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def take(self) -> list[Request]:
        """The requests recorded so far, clearing the record."""
        with self.lock:
            seen, self.requests[:] = list(self.requests), []
        return seen


def _discovery(path: str) -> object | None:
    if path == "/api":
        return {"kind": "APIVersions", "versions": ["v1"],
                "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": "127.0.0.1"}]}
    if path == "/apis":
        groups = []
        for (g, v) in RESOURCES:
            if g:
                gv = {"groupVersion": f"{g}/{v}", "version": v}
                groups.append({"name": g, "versions": [gv], "preferredVersion": gv})
        return {"kind": "APIGroupList", "apiVersion": "v1", "groups": groups}
    for (g, v), items in RESOURCES.items():
        if path == (f"/apis/{g}/{v}" if g else f"/api/{v}"):
            return {"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": f"{g}/{v}" if g else v,
                    "resources": [
                        {"name": plural, "singularName": singular, "namespaced": namespaced, "kind": kind,
                         "verbs": ["get", "list", "watch", "delete"], "shortNames": shorts, "categories": cats}
                        for plural, singular, kind, namespaced, shorts, cats in items
                    ]}
    if path == "/version":
        return {"major": "1", "minor": "32", "gitVersion": "v1.32.0", "platform": "linux/amd64"}
    return None


def _handler(api: FakeKubeAPI) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - the base class's name
            return

        def _send(self, status: int, body: object, content_type: str = "application/json") -> None:
            data = body.encode() if isinstance(body, str) else json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:  # noqa: N802 - http.server's name
            split = urlsplit(self.path)
            with api.lock:
                api.requests.append(Request("GET", split.path, split.query))
            found = _discovery(split.path)
            if found is not None:
                self._send(200, found)
                return
            request = Request("GET", split.path, split.query)
            target = request.resource
            if target is None:
                self._send(404, {"kind": "Status", "apiVersion": "v1", "status": "Failure", "code": 404})
                return
            group, namespace, plural, name = target
            tail = [p for p in split.path.split("/") if p][-1]
            if tail == "log":
                self._send(200, "log line\n", "text/plain")
            elif name is None:
                kind, api_version = _kind_of(group, plural)
                self._send(200, {"kind": kind + "List", "apiVersion": api_version, "metadata": {"resourceVersion": "1"},
                                 "items": [_object(group, plural, namespace, "web-0")]})
            else:
                self._send(200, _object(group, plural, namespace, name))

        def do_POST(self) -> None:  # noqa: N802
            split = urlsplit(self.path)
            with api.lock:
                api.requests.append(Request("POST", split.path, split.query))
            self._send(403, {"kind": "Status", "apiVersion": "v1", "status": "Failure", "code": 403})

        do_PUT = do_PATCH = do_DELETE = do_POST  # noqa: N815

    return Handler


@contextmanager
def fake_kube_api() -> Iterator[FakeKubeAPI]:
    """Run the fake API server on 127.0.0.1 for the duration of the block."""
    api = FakeKubeAPI(url="")
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(api))
    api.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield api
    finally:
        server.shutdown()
        server.server_close()


def kube_env(api: FakeKubeAPI, home: Path, *, namespace: str = "default") -> dict[str, str]:
    """An environment whose KUBECONFIG points kubectl at ``api`` (context namespace ``namespace``)."""
    home.mkdir(parents=True, exist_ok=True)
    if os.geteuid() == 0:
        # kubectl runs as nobody (see run_kubectl); it must read its config and write its cache here.
        os.chown(home, _NOBODY.pw_uid, _NOBODY.pw_gid)
    config = home / "kubeconfig"
    config.write_text(json.dumps({
        "apiVersion": "v1", "kind": "Config", "current-context": "fake",
        "clusters": [{"name": "fake", "cluster": {"server": api.url}}],
        "users": [{"name": "fake", "user": {}}],
        "contexts": [{"name": "fake", "context": {"cluster": "fake", "user": "fake", "namespace": namespace}}],
    }))
    return {"KUBECONFIG": str(config), "HOME": str(home), "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "KUBECTL_CACHE_DIR": str(home / "cache")}


_NOBODY = pwd.getpwnam("nobody")


def run_kubectl(kubectl: str, args: Sequence[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """Run the real kubectl with ``args`` (an argv list, never a shell line).

    The argv come from the adversarial corpus. The caller runs only those the
    flag policy reads, but a slip there once let ``--profile-output=/etc/passwd``
    through while the suite ran as root and overwrote the machine's passwd file.
    So, as root, kubectl runs as ``nobody`` in its own home: a hostile argv that
    slips through can then write nothing of the machine's.
    """
    cwd = env.get("HOME")
    if os.geteuid() == 0:
        return subprocess.run([kubectl, *args], env=env, capture_output=True, text=True, timeout=30,
                              stdin=subprocess.DEVNULL, check=False, cwd=cwd,
                              user=_NOBODY.pw_uid, group=_NOBODY.pw_gid, extra_groups=[])
    return subprocess.run([kubectl, *args], env=env, capture_output=True, text=True, timeout=30,
                          stdin=subprocess.DEVNULL, check=False, cwd=cwd)
