"""What the real kubectl requests, against what the policy understood (issue 10 §1, §7).

Each hostile and each ordinary kubectl argv runs through the real kubectl
against a fake API server on 127.0.0.1 (tests/kube_fake_api.py), pointed at it
by KUBECONFIG in the environment (--kubeconfig is refused by policy). Then:

- any argv for which kubectl requested a ``/secrets`` path is refused by the
  policy, under the shipped grants and under a permissive site grant;
- for every argv the policy allows, the namespace and the resource kubectl
  requested are the ones the policy understood.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from permissions.argv import Parsed, Refused, parse
from permissions.kubectl import CLUSTER_SCOPED, canonical_resource, understood
from permissions.models import Verdict
from permissions.programs import load_programs
from tests.kube_fake_api import Request, fake_kube_api, kube_env, run_kubectl
from tests.kubectl_cases import kubectl_attacks, kubectl_legit, site_engine
from tests.policy_helpers import LAB, default_engine

CONTEXT_NAMESPACE = "default"
CASES = kubectl_attacks() + kubectl_legit()


def _kubectl() -> str:
    found = shutil.which("kubectl") or ("/usr/bin/kubectl" if Path("/usr/bin/kubectl").exists() else None)
    if found is None:
        pytest.fail("kubectl is not installed; run `make test`, which installs Debian's kubernetes-client")
    return found


@pytest.fixture(scope="module")
def observed() -> Iterator[dict[str, tuple[int, list[Request], str]]]:
    """Each case's id -> (kubectl's exit status, resource requests, stderr); kubectl runs once per case."""
    kubectl = _kubectl()
    seen: dict[str, tuple[int, list[Request], str]] = {}
    with fake_kube_api() as api, tempfile.TemporaryDirectory() as home:
        env = kube_env(api, Path(home), namespace=CONTEXT_NAMESPACE)
        for case in CASES:
            if not _executable(case["argv"]):
                continue
            done = run_kubectl(kubectl, case["argv"][1:], env)
            seen[case["id"]] = (done.returncode, [r for r in api.take() if r.resource], done.stderr)
    yield seen


_RUN_REFUSALS = ("flag:kubectl:equals", "flag:kubectl:empty")


def _executable(argv: object) -> bool:
    """Whether kubectl may run this argv here: what the flag policy reads (or
    refuses only for a secret, an ambiguous or empty value, or a bad value).
    Denied options and commands (proxy, exec, --watch, --log-file ...) are
    refused before any grant and never run: they would hang or write files."""
    if not isinstance(argv, list) or not all(isinstance(a, str) and "\x00" not in a for a in argv):
        return False
    if argv[:1] != ["kubectl"]:
        return False
    try:
        parse(load_programs()["kubectl"], argv[1:])
    except Refused as exc:
        return exc.rule.startswith("resource:") or exc.rule in _RUN_REFUSALS or exc.rule.endswith(":value")
    return True


def _decisions(case: dict) -> list[tuple[str, Verdict, str]]:
    out = []
    for name, engine in (("shipped", default_engine()), ("site", site_engine())):
        d = engine.decide(agent=case["agent"], node=LAB, argv=case["argv"])
        out.append((name, d.verdict, d.rule or ""))
    return out


@pytest.mark.parametrize("case", CASES, ids=[c["id"] for c in CASES])
def test_policy_refuses_whatever_makes_kubectl_fetch_secrets(case: dict, observed: dict) -> None:
    if case["id"] not in observed:
        assert not _executable(case["argv"])
        return
    _status, requests, _err = observed[case["id"]]
    if any(r.resource and r.resource[2] == "secrets" for r in requests):
        for name, verdict, rule in _decisions(case):
            assert verdict is not Verdict.ALLOW, f"kubectl fetched secrets, but the {name} policy allowed it by {rule}"


def _types_understood(parsed: Parsed) -> set[str]:
    if parsed.subcommands[:1] == ("top",):
        return {parsed.subcommands[1]}
    if parsed.subcommands[:1] == ("events",):
        return {"events"}
    assert parsed.command is not None and parsed.command.resource_args is not None, parsed.subcommands
    return set(understood(parsed.positionals, first_is_type=parsed.command.resource_args == "type").types)


def _names_understood(parsed: Parsed) -> set[str]:
    if parsed.subcommands[:1] in (("top",), ("events",)):
        return set(parsed.positionals)
    assert parsed.command is not None and parsed.command.resource_args is not None
    return set(understood(parsed.positionals, first_is_type=parsed.command.resource_args == "type").names)


ALLOWED = [c for c in CASES if any(v is Verdict.ALLOW for _, v, _ in _decisions(c))]


def test_the_differential_covers_enough(observed: dict) -> None:
    secret_fetches = [i for i, (_s, reqs, _e) in observed.items() if any(r.resource[2] == "secrets" for r in reqs)]
    assert len(observed) >= 100 and len(ALLOWED) >= 40 and len(secret_fetches) >= 20


@pytest.mark.parametrize("case", ALLOWED, ids=[c["id"] for c in ALLOWED])
def test_allowed_argv_requests_what_the_policy_understood(case: dict, observed: dict) -> None:
    status, requests, err = observed[case["id"]]
    assert status == 0 and requests, f"kubectl failed on an allowed command: {err}"
    parsed = parse(load_programs()["kubectl"], case["argv"][1:])
    options = dict(parsed.options)
    all_namespaces = "--all-namespaces" in options
    namespace = options.get("--namespace", CONTEXT_NAMESPACE)
    types = _types_understood(parsed)
    names = _names_understood(parsed)
    # The first request is the object or list the command names: its type, namespace and name.
    group, req_ns, plural, req_name = requests[0].resource  # type: ignore[misc]
    assert canonical_resource(plural) in types, f"kubectl asked for {plural}, the policy understood {types}"
    if plural in CLUSTER_SCOPED:
        assert req_ns is None
    elif all_namespaces:
        assert req_ns is None, f"-A, but kubectl asked in namespace {req_ns}"
    else:
        assert req_ns == namespace, f"kubectl asked in namespace {req_ns}, the policy understood {namespace}"
    if req_name is not None and plural not in ("namespaces",):
        assert req_name in names or (not names and req_name == "web-0"), f"kubectl fetched {req_name}, policy saw {names}"
    # Nothing it did afterwards touched secrets or, for a namespaced command, left
    # the namespace (describe node reads the node's lease and pods everywhere).
    for request in requests:
        _g, ns, kind, _n = request.resource  # type: ignore[misc]
        assert kind != "secrets"
        if plural not in CLUSTER_SCOPED:
            assert ns is None or all_namespaces or ns == namespace, f"{request.path} left namespace {namespace}"


def test_file_writing_and_hanging_options_are_never_run() -> None:
    """The filter above is what keeps hostile argv away from the real kubectl."""
    for argv in (["kubectl", "get", "pods", "-A", "--profile=cpu", "--profile-output=/etc/passwd"],
                 ["kubectl", "get", "pods", "--log-file=/etc/passwd"],
                 ["kubectl", "get", "pods", "--cache-dir=/etc"],
                 ["kubectl", "get", "pods", "--kubeconfig=/tmp/x"],
                 ["kubectl", "get", "pods", "-w"],
                 ["kubectl", "proxy"],
                 ["kubectl", "exec", "web-0", "--", "id"]):
        assert not _executable(argv), argv


def test_kubectl_runs_unprivileged_under_root(tmp_path: Path) -> None:
    """As root, a slipped argv still cannot write outside kubectl's own home."""
    if os.geteuid() != 0:
        pytest.skip("kubectl drops to nobody only when the suite runs as root (as on CI)")
    target = tmp_path / "victim"
    target.write_text("intact")
    target.chmod(0o644)
    with fake_kube_api() as api:
        home = tmp_path / "home"
        env = kube_env(api, home)
        run_kubectl(_kubectl(), ["get", "pods", "--profile=cpu", f"--profile-output={target}"], env)
    assert target.read_text() == "intact"
