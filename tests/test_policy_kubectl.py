"""kubectl under a permissive site grant (issue 10 §1): whatever a grant allows,
secrets stay refused in every spelling and pflag's '-X=' is read as kubectl reads it."""

from __future__ import annotations

import pytest

from permissions.argv import parse
from permissions.kubectl import canonical_resource, normalise
from permissions.models import Verdict
from permissions.programs import load_programs
from tests.kubectl_cases import kubectl_attacks, site_engine
from tests.policy_helpers import LAB

ATTACKS = kubectl_attacks()


@pytest.mark.parametrize("case", ATTACKS, ids=[c["id"] for c in ATTACKS])
def test_site_grant_refuses_every_attack(case: dict) -> None:
    decision = site_engine().decide(agent=case["agent"], node=LAB, argv=case["argv"])
    assert decision.verdict is not Verdict.ALLOW, f"{case['why']}: allowed by {decision.rule} of {decision.grant}"
    assert decision.reason


def test_site_grant_still_allows_staging_reads() -> None:
    # The grant is not dead: ordinary reads in staging pass, -A and other namespaces do not.
    # An agent no shipped grant covers, so that only the site grant decides.
    engine, agent = site_engine(), "k8s/site-only"
    ok = ["kubectl", "get", "po,svc", "-n", "staging", "-o", "yaml"]
    assert engine.decide(agent=agent, node=LAB, argv=ok).verdict is Verdict.ALLOW
    for argv in (["kubectl", "get", "configmaps", "-A"], ["kubectl", "get", "configmaps", "-n", "production"],
                 ["kubectl", "get", "configmaps"]):
        d = engine.decide(agent=agent, node=LAB, argv=argv)
        assert d.verdict is Verdict.DENY and "staging" in d.reason, argv


@pytest.mark.parametrize(("word", "canonical"), [
    ("po", "pods"), ("pod", "pods"), ("pods", "pods"), ("Pods", "pods"), ("Pod", "pods"), ("pods.v1.", "pods"),
    ("deploy", "deployments"), ("deployments.apps", "deployments"), ("deployments.v1.apps", "deployments"),
    ("deploy.apps", "deployments"), ("svc", "services"), ("ev", "events"), ("cm", "configmaps"),
    ("hpa", "horizontalpodautoscalers"), ("ing", "ingresses"), ("netpol", "networkpolicies"), ("rs", "replicasets"),
    ("cj", "cronjobs"), ("no", "nodes"), ("ns", "namespaces"),
    # What kubectl does not read as the same resource stays as written.
    ("pods.v1", "pods.v1"), ("PO", "PO"), ("pods.example.com", "pods.example.com"), ("deployments.v1", "deployments.v1"),
])
def test_resource_words_are_normalised_as_kubectl_resolves_them(word: str, canonical: str) -> None:
    assert canonical_resource(word) == canonical


def test_type_name_forms_normalise_to_type_and_names() -> None:
    assert normalise(["po/a", "pods/b"], first_is_type=True) == ["pods", "a", "b"]
    assert normalise(["po/a", "svc/b"], first_is_type=True) == ["pods/a", "services/b"]
    assert normalise(["po,svc", "x"], first_is_type=True) == ["pods,services", "x"]
    assert normalise(["deploy/web"], first_is_type=False) == ["deployments/web"]  # logs: a name is a pod
    assert normalise(["web-0"], first_is_type=False) == ["web-0"]


@pytest.mark.parametrize(("args", "namespace"), [
    (["get", "pods", "-n=x"], "x"), (["get", "pods", "-nx"], "x"), (["get", "pods", "--namespace=x"], "x"),
    (["get", "pods", "--namespace", "x"], "x"), (["logs", "web-0", "-pn=x"], "x"),
])
def test_pflag_value_spellings(args: list[str], namespace: str) -> None:
    parsed = parse(load_programs()["kubectl"], args)
    assert dict(parsed.options)["--namespace"] == namespace


@pytest.mark.parametrize("args", [["get", "pods", "-n="], ["get", "pods", "-n==x"], ["get", "pods", "--namespace="],
                                  ["get", "pods", "-n", "x", "-L="], ["get", "pods", "-An="]])
def test_ambiguous_pflag_values_are_refused_with_a_reason(args: list[str]) -> None:
    d = site_engine().decide(agent="k8s/pod-diagnostics", node=LAB, argv=["kubectl", *args])
    assert d.verdict is Verdict.DENY
    assert "kubectl" in d.reason and ("VALUE" in d.reason), d.reason


def test_output_yaml_is_not_formatting() -> None:
    # -o wide only changes columns; -o yaml shows whole objects, so a rule must allow it.
    engine = site_engine()
    wide = engine.decide(agent="k8s/pod-diagnostics", node=LAB, argv=["kubectl", "get", "pods", "-n", "prod", "-o", "wide"])
    yaml = engine.decide(agent="k8s/pod-diagnostics", node=LAB, argv=["kubectl", "get", "pods", "-n", "prod", "-o", "yaml"])
    assert wide.verdict is Verdict.ALLOW
    assert yaml.verdict is Verdict.DENY
