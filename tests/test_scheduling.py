"""Reading the scheduler's FailedScheduling message: the reason that holds back most nodes leads."""

from __future__ import annotations

from squads.bundles.k8s.analyzers.pods import scheduling_reasons


def test_reasons_are_counted_and_ordered() -> None:
    message = (
        "0/4 nodes are available: 1 node(s) had untolerated taint {node-role.kubernetes.io/control-plane: }, "
        "3 node(s) didn't match Pod's node affinity/selector. preemption: 0/4 nodes are available: "
        "4 Preemption is not helpful for scheduling."
    )
    assert scheduling_reasons(message) == [
        (3, "didn't match Pod's node affinity/selector", "affinity"),
        (1, "had untolerated taint {node-role.kubernetes.io/control-plane: }", "taint"),
    ]


def test_insufficient_resources_and_unbound_claims() -> None:
    assert [r[2] for r in scheduling_reasons("0/3 nodes are available: 3 Insufficient cpu.")] == ["insufficient"]
    claims = "0/2 nodes are available: 2 pod has unbound immediate PersistentVolumeClaims."
    assert [r[2] for r in scheduling_reasons(claims)] == ["volume"]
