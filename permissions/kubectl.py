"""kubectl's reading of resource arguments: names, short names, kinds, groups.

kubectl resolves ``po``, ``pod``, ``pods``, ``Pods``, ``Pod``, ``pods.v1.`` and
``deploy.apps`` to the same resource. Rules are matched on the canonical
(plural, group-less) form so that a rule written ``kubectl get pods -n {ns}``
covers every spelling kubectl treats as the same, and only those: the table
below mirrors what the real kubectl does (``tests/test_kubectl_differential.py``
proves it against a fake API server):

- short names are case-sensitive (``PO`` is not a resource to kubectl);
- plural, singular and kind are case-insensitive (``Pods``, ``Secret``);
- ``name.group`` and ``name.version.group`` resolve only with the resource's
  real group; ``pods.v1`` is the group ``v1`` to kubectl, which fails, so it is
  left as written and matches no rule that says ``pods``.

Anything not in the table is left exactly as written.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

# plural, singular, kind, short names, group, versions
_TABLE: tuple[tuple[str, str, str, tuple[str, ...], str, tuple[str, ...]], ...] = (
    ("pods", "pod", "Pod", ("po",), "", ("v1",)),
    ("services", "service", "Service", ("svc",), "", ("v1",)),
    ("endpoints", "endpoints", "Endpoints", ("ep",), "", ("v1",)),
    ("events", "event", "Event", ("ev",), "", ("v1",)),
    ("configmaps", "configmap", "ConfigMap", ("cm",), "", ("v1",)),
    ("secrets", "secret", "Secret", (), "", ("v1",)),
    ("serviceaccounts", "serviceaccount", "ServiceAccount", ("sa",), "", ("v1",)),
    ("persistentvolumeclaims", "persistentvolumeclaim", "PersistentVolumeClaim", ("pvc",), "", ("v1",)),
    ("persistentvolumes", "persistentvolume", "PersistentVolume", ("pv",), "", ("v1",)),
    ("nodes", "node", "Node", ("no",), "", ("v1",)),
    ("namespaces", "namespace", "Namespace", ("ns",), "", ("v1",)),
    ("replicationcontrollers", "replicationcontroller", "ReplicationController", ("rc",), "", ("v1",)),
    ("resourcequotas", "resourcequota", "ResourceQuota", ("quota",), "", ("v1",)),
    ("limitranges", "limitrange", "LimitRange", ("limits",), "", ("v1",)),
    ("deployments", "deployment", "Deployment", ("deploy",), "apps", ("v1",)),
    ("replicasets", "replicaset", "ReplicaSet", ("rs",), "apps", ("v1",)),
    ("statefulsets", "statefulset", "StatefulSet", ("sts",), "apps", ("v1",)),
    ("daemonsets", "daemonset", "DaemonSet", ("ds",), "apps", ("v1",)),
    ("jobs", "job", "Job", (), "batch", ("v1",)),
    ("cronjobs", "cronjob", "CronJob", ("cj",), "batch", ("v1",)),
    ("horizontalpodautoscalers", "horizontalpodautoscaler", "HorizontalPodAutoscaler", ("hpa",), "autoscaling",
     ("v2", "v1")),
    ("ingresses", "ingress", "Ingress", ("ing",), "networking.k8s.io", ("v1",)),
    ("networkpolicies", "networkpolicy", "NetworkPolicy", ("netpol",), "networking.k8s.io", ("v1",)),
    ("storageclasses", "storageclass", "StorageClass", ("sc",), "storage.k8s.io", ("v1",)),
    ("poddisruptionbudgets", "poddisruptionbudget", "PodDisruptionBudget", ("pdb",), "policy", ("v1",)),
)
_SHORT = {s: row for row in _TABLE for s in row[3]}
_LONG = {n.lower(): row for row in _TABLE for n in (row[0], row[1], row[2])}
# Resource words a rule may leave as placeholders or globs: normalise only literals.
_PATTERN_CHARS = re.compile(r"[{}*?\[]")

CLUSTER_SCOPED = frozenset({"nodes", "namespaces", "persistentvolumes", "storageclasses"})


def canonical_resource(word: str) -> str:
    """The plural, group-less name kubectl resolves ``word`` to, or ``word`` unchanged."""
    if word.count(".") >= 2:
        name, version, group = word.split(".", 2)
        row = _SHORT.get(name) or _LONG.get(name.lower())
        return row[0] if row and row[4] == group and version in row[5] else word
    name, dot, group = word.partition(".")
    row = _SHORT.get(name) or _LONG.get(name.lower())
    if row is None or (dot and row[4] != group):
        return word
    return row[0]


def resource_words(token: str) -> list[str]:
    """Every resource-ish word of one argument: comma lists and ``type/name`` split,
    the part before a ``.group`` kept, lowercased. Used to refuse, so it errs wide."""
    return [part.split(".", 1)[0].lower() for part in re.split(r"[,/]", token)]


def forbidden_in(args: Sequence[str], forbidden: dict[str, str]) -> str | None:
    """The refusal for the first forbidden resource word in any argument, or None.

    Every argument is checked, not only the first: ``get pods/a secrets/b`` and
    ``get pods,secrets`` read secrets too. A name that merely equals a forbidden
    word (``get pods secrets``, a pod named 'secrets') is refused as well; that
    is cheaper than being wrong.

    Non-ASCII is refused outright: kubectl lowercases resource words with Go's
    ``strings.ToLower``, which folds 'İ' (U+0130) to a plain 'i', so
    ``servİceaccounts`` is ``serviceaccounts`` to kubectl but not to Python's
    ``lower()``. Resource types and object names are ASCII in Kubernetes."""
    for token in args:
        if not token.isascii():
            return (f"{token!r} contains non-ASCII characters; kubectl folds some of them to ASCII letters "
                    "(İ to i), so resource types and names must be plain ASCII")
        for word in resource_words(token):
            if word in forbidden:
                return forbidden[word]
    return None


@dataclass(frozen=True, slots=True)
class ResourceArgs:
    """What kubectl will fetch: resource types (canonical) and object names."""

    types: tuple[str, ...]
    names: tuple[str, ...]


def normalise(args: Sequence[str], *, first_is_type: bool) -> list[str]:
    """``args`` with every resource type in canonical form, names untouched.

    With ``first_is_type`` (get, describe, delete, scale, rollout) a first
    argument without ``/`` is a comma list of types; otherwise (logs) only the
    ``type/name`` form names a type. Placeholders and globs (rule patterns) are
    left alone."""
    out = list(args)
    if any("/" in a for a in out):
        for i, arg in enumerate(out):
            kind, slash, name = arg.partition("/")
            if slash and not _PATTERN_CHARS.search(kind):
                out[i] = f"{canonical_resource(kind)}/{name}"
        kinds = {a.partition("/")[0] for a in out}
        if first_is_type and len(kinds) == 1 and all("/" in a for a in out):
            # 'pods/a pods/b' is 'pods a b' to kubectl: one form for rules to match.
            return [kinds.pop(), *(a.partition("/")[2] for a in out)]
        return out
    if first_is_type and out and not _PATTERN_CHARS.search(out[0]):
        out[0] = ",".join(canonical_resource(word) for word in out[0].split(","))
    return out


def understood(args: Sequence[str], *, first_is_type: bool) -> ResourceArgs:
    """The resource types and names the policy understood from normalised ``args``."""
    if any("/" in a for a in args):
        pairs = [a.partition("/") for a in args]
        return ResourceArgs(tuple(p[0] for p in pairs), tuple(p[2] for p in pairs))
    if first_is_type and args:
        return ResourceArgs(tuple(args[0].split(",")), tuple(args[1:]))
    return ResourceArgs(("pods",), tuple(args))
