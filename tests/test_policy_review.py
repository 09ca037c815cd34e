"""Holes an attacker's review found after the issue-10 fixes, one class per test.

- kubectl folds resource words with Go's ``strings.ToLower``, which maps 'İ'
  (U+0130) to 'i': ``describe servİceaccounts`` made kubectl fetch secrets.
- An option that silently cancels another: kubectl's ``-A`` ignores ``-n``, GNU
  tail's last ``-n``/``-c`` wins. A rule naming one must not match the pair.
- Flags marked formatting-only that show more data (``ps -f`` prints command
  lines where ``ps -e`` prints program names).

The real kubectl runs as nobody against the fake API server (tests/kube_fake_api.py).
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from permissions.engine import PolicyEngine
from permissions.models import Constraints, GrantSpec, Verdict
from permissions.programs import build_program
from tests.kube_fake_api import fake_kube_api, kube_env, run_kubectl
from tests.policy_helpers import LAB

# A site grant that relies on the namespace named in its rules, not on constraints.
NAMED_NS = GrantSpec(name="site-named-ns", agents=["k8s/site-only"],
                     allow=["kubectl get pods -n staging ...", "kubectl top pods -n staging ...",
                            "kubectl events -n staging ..."])
# The permissive site grant, with logs.
PERMISSIVE = GrantSpec(name="site-permissive", agents=["k8s/site-only"],
                       allow=["kubectl get ...", "kubectl describe ...", "kubectl logs ..."],
                       constraints=Constraints(namespaces=["staging"]))
SITE_RULES = GrantSpec(name="site-rules", agents=["ops/site-only"],
                       allow=["ps -e", "journalctl -u nginx -n {int:1..500}", "lastb -n {int:1..100}",
                              "tail -n {int:1..500} {path:/var/log/app} ..."])


def _decide(grant: GrantSpec, argv: list[str], agent: str = "k8s/site-only") -> Verdict:
    return PolicyEngine(grants=[grant]).decide(agent=agent, node=LAB, argv=argv).verdict


def _requests(args: list[str]) -> list[tuple[str | None, str]]:
    """(namespace, resource) of every request the real kubectl makes for ``args``."""
    kubectl = shutil.which("kubectl") or "/usr/bin/kubectl"
    if not Path(kubectl).exists():
        pytest.fail("kubectl is not installed; run `make test`, which installs Debian's kubernetes-client")
    with fake_kube_api() as api, tempfile.TemporaryDirectory() as home:
        run_kubectl(kubectl, args, kube_env(api, Path(home), namespace="default"))
        return [(r.resource[1], r.resource[2]) for r in api.take() if r.resource]


@pytest.mark.parametrize("argv", [
    ["kubectl", "describe", "servİceaccounts", "-n", "staging"],
    ["kubectl", "describe", "pods/web-0,servİceaccount/default", "-n", "staging"],
    ["kubectl", "get", "confİgmaps", "-n", "staging"],
    ["kubectl", "logs", "deployments/İ", "-n", "staging"],
])
def test_non_ascii_resource_words_are_refused(argv: list[str]) -> None:
    d = PolicyEngine(grants=[PERMISSIVE]).decide(agent="k8s/site-only", node=LAB, argv=argv)
    assert d.verdict is Verdict.DENY and "non-ASCII" in d.reason, d.reason


def test_dotted_capital_i_really_reads_secrets_with_kubectl() -> None:
    """Why the refusal above matters: kubectl reads 'servİceaccounts' as serviceaccounts
    and describing them fetches the namespace's secrets."""
    requests = _requests(["describe", "servİceaccounts", "-n", "staging"])
    assert ("staging", "serviceaccounts") in requests and ("staging", "secrets") in requests, requests


@pytest.mark.parametrize("argv", [
    ["kubectl", "get", "pods", "-n", "staging", "-A"],
    ["kubectl", "get", "pods", "--all-namespaces", "--namespace=staging"],
    ["kubectl", "-n", "staging", "get", "pods", "-A"],
    ["kubectl", "get", "pods", "-nstaging", "-A"],
    ["kubectl", "top", "pods", "-n", "staging", "-A"],
    ["kubectl", "events", "-n", "staging", "-A"],
])
def test_all_namespaces_never_rides_on_a_named_namespace(argv: list[str]) -> None:
    assert _decide(NAMED_NS, argv) is Verdict.DENY
    d = PolicyEngine(grants=[NAMED_NS]).decide(agent="k8s/site-only", node=LAB, argv=argv)
    assert "--all-namespaces and --namespace together" in d.reason, d.reason


def test_named_namespace_alone_is_still_allowed() -> None:
    for argv in (["kubectl", "get", "pods", "-n", "staging"], ["kubectl", "top", "pods", "-n", "staging"],
                 ["kubectl", "events", "-n", "staging"]):
        assert _decide(NAMED_NS, argv) is Verdict.ALLOW, argv
    assert _decide(NAMED_NS, ["kubectl", "get", "pods", "-n", "prod"]) is Verdict.DENY


def test_kubectl_really_ignores_n_when_a_is_given() -> None:
    """Why -n with -A is refused: kubectl lists every namespace."""
    assert _requests(["get", "pods", "-n", "staging", "-A"]) == [(None, "pods")]
    assert _requests(["get", "pods", "-n", "staging"]) == [("staging", "pods")]


def test_tail_bytes_cannot_undo_a_line_limit() -> None:
    agent = "ops/site-only"
    assert _decide(SITE_RULES, ["tail", "-n", "50", "/var/log/app/a.log"], agent) is Verdict.ALLOW
    for argv in (["tail", "-n", "50", "-c", "100000000", "/var/log/app/a.log"],
                 ["tail", "--bytes=100000000", "--lines=50", "/var/log/app/a.log"],
                 ["tail", "-c100000000", "-n50", "/var/log/app/a.log"]):
        assert _decide(SITE_RULES, argv, agent) is Verdict.DENY, argv


@pytest.mark.parametrize(("allowed", "more"), [
    (["ps", "-e"], ["ps", "-e", "-f"]),  # -f adds the full command line
    (["ps", "-e"], ["ps", "-ef"]),
    (["ps", "-e"], ["ps", "-e", "-F"]),
    (["ps", "-e"], ["ps", "-e", "-l"]),
    (["journalctl", "-u", "nginx", "-n", "50"], ["journalctl", "-u", "nginx", "-n", "50", "-a"]),  # blob data
    (["lastb", "-n", "10"], ["lastb", "-n", "10", "-w"]),  # whole user names
])
def test_flags_that_show_more_are_not_formatting(allowed: list[str], more: list[str]) -> None:
    assert _decide(SITE_RULES, allowed, "ops/site-only") is Verdict.ALLOW
    assert _decide(SITE_RULES, more, "ops/site-only") is Verdict.DENY


def test_ps_f_really_shows_command_lines_that_ps_e_does_not() -> None:
    """Why -f is not formatting: plain ps shows the program name, -f its whole command line."""
    ps = shutil.which("ps")
    if ps is None:
        pytest.fail("ps (procps) is not installed")
    child = subprocess.Popen(["sleep", "271.828"], stdin=subprocess.DEVNULL)
    try:
        def show(*flags: str) -> str:
            return subprocess.run([ps, *flags, "-p", str(child.pid)], capture_output=True, text=True, check=True,
                                  stdin=subprocess.DEVNULL).stdout
        assert "sleep" in show() and "271.828" not in show()
        assert "sleep 271.828" in show("-f") and "sleep 271.828" in show("-F")
    finally:
        child.kill()
        child.wait()


def test_overrides_must_name_known_options() -> None:
    with pytest.raises(ValueError, match="overrides"):
        build_program("x", {"path": "/usr/bin/x", "options": {"-a": {"overrides": ["--nope"]}}})
