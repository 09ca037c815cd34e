"""kubectl argv shared by the site-grant and differential tests: the hostile
ones of the corpus, the issue's examples, and the ordinary ones."""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path

from permissions.engine import PolicyEngine
from permissions.models import Constraints, GrantSpec
from squads.service import default_grants
from tests.policy_helpers import squads

DATA = Path(__file__).parent / "data"
# The issue's site grant: anything under get/describe, namespaces limited to staging.
SITE_GRANT = GrantSpec(name="site-staging-reads", agents=["k8s/*"],
                       allow=["kubectl get ...", "kubectl describe ..."],
                       constraints=Constraints(namespaces=["staging"]))
ISSUE_ATTACKS: list[list[str]] = [
    ["kubectl", "get", "-n", "staging", "-L=", "secrets", "-o", "yaml"],
    ["kubectl", "get", "pods/web-0", "secrets/db-creds", "-n", "staging", "-o", "yaml"],
    ["kubectl", "describe", "pods/web-0", "secrets/db-creds", "-n", "staging"],
    ["kubectl", "get", "pods", "-n=", "production"],
    ["kubectl", "get", "pods", "-n=", "staging"],
    ["kubectl", "get", "all", "-n", "staging", "-l=", "secrets"],
    ["kubectl", "describe", "all", "-n", "staging", "-L=", "secrets"],
]


def _jsonl(name: str) -> list[dict]:
    return [json.loads(line) for line in (DATA / name).read_text().splitlines() if line.strip()]


def kubectl_attacks() -> list[dict]:
    """Every kubectl case of the adversarial corpus plus the issue's examples."""
    corpus = [c for c in _jsonl("adversarial_corpus.jsonl") if c["argv"][:1] == ["kubectl"]]
    issue = [{"id": f"issue-{i}", "agent": "k8s/pod-diagnostics", "argv": argv, "why": "issue 10 §1"}
             for i, argv in enumerate(ISSUE_ATTACKS)]
    return corpus + issue


def kubectl_legit() -> list[dict]:
    """The ordinary kubectl commands (tests/data/legit_kubectl.jsonl)."""
    return _jsonl("legit_kubectl.jsonl")


@lru_cache(maxsize=1)
def site_engine() -> PolicyEngine:
    """The shipped defaults plus the issue's permissive site grant."""
    return PolicyEngine(defaults=default_grants(squads().values()), grants=[SITE_GRANT])
