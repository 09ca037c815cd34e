"""The runbook brain on its own: slot extraction, intents, explicit commands,
the fact helpers, and whole turns driven by a fake runtime."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from squads.brain.actions import Call, CallResult, Say
from squads.brain import extract as extraction
from squads.brain.intents import best_match, is_affirmative, is_negative, score, trigger_matches, words
from squads.brain.explicit import explicit_command
from squads.brain.service import RunbookBrain, State
from squads.brain.steps import fill, fill_text, holds, merge_facts
from tools.executors.scenario import find_scenarios, load_scenario
from permissions.validators import ValueRejected, from_spec
from squads.models import SquadSpec
from squads.service import load_squads
from tools.executors.fixture import Fixture, FixtureExecutor
from tools.models import Effect
from tools.service import ToolCallError, render
from tests.paths import PUBLIC_SCENARIOS

REPO = Path(__file__).resolve().parents[1]
SCENARIO_DIRS = [PUBLIC_SCENARIOS, REPO / "tests" / "scenarios"]
SQUADS = load_squads()
K8S_NAME = from_spec("k8s_name").describe
# Every slot the shipped squads define (each squad extracts only its own).
VOCABULARY = {name: slot for squad in SQUADS.values() for name, slot in squad.playbook().slots.items()}


def extract(text: str, slots: list[str] | None = None) -> extraction.Extraction:
    return extraction.extract(text, VOCABULARY, slots)


def validate_slot(slot: str, value: str) -> str:
    return extraction.validate_slot(VOCABULARY, slot, value)

Respond = Callable[[Call], CallResult]


def drive(squad: SquadSpec, text: str, state: State, respond: Respond | None = None) -> list[Say | Call]:
    """Run one brain turn the way the runtime does: send a CallResult for every Call."""
    turn = RunbookBrain(squad.playbook()).turn(text, state)
    steps: list[Say | Call] = []
    result: CallResult | None = None
    while True:
        try:
            step = turn.send(result)
        except StopIteration:
            return steps
        steps.append(step)
        if isinstance(step, Call):
            assert respond is not None, f"the brain made a call where none was expected: {step}"
            result = respond(step)
        else:
            result = None


def calls(steps: list[Say | Call]) -> list[Call]:
    return [s for s in steps if isinstance(s, Call)]


def says(steps: list[Say | Call]) -> str:
    return "\n".join(s.text for s in steps if isinstance(s, Say))


def ran_empty(call: Call, squad: SquadSpec = SQUADS["k8s"]) -> CallResult:
    """The call ran and printed nothing (argv rendered the way the runtime renders it)."""
    argv = render(squad.tool(call.tool), call.params) if call.tool else list(call.argv or [])
    return CallResult(status="ran", argv=argv, tool=call.tool, exit_code=0, node="n1", agent="a")


# -- extract -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Pod: payment-service-7d9f8b-xyz, Namespace: production",
         {"pod": "payment-service-7d9f8b-xyz", "namespace": "production"}),
        ("the pod payment-service-7d9f8b-xyz in the production namespace keeps crashing",
         {"pod": "payment-service-7d9f8b-xyz", "namespace": "production"}),
        ("pods/web-1 in staging is broken", {"pod": "web-1", "namespace": "staging"}),
        ("kubectl logs foo -n staging", {"namespace": "staging"}),
        ("something is wrong --namespace=kube-system", {"namespace": "kube-system"}),
        ("ns=kube-system", {"namespace": "kube-system"}),
        ("Namespace:production", {"namespace": "production"}),
        ("my pod is in the production namespace", {"namespace": "production"}),
        ("the inventory-api pods in the staging namespace never become ready",
         {"namespace": "staging", "app": "inventory-api"}),
        ("scale deployment/api to 3 replicas in prod", {"deployment": "api", "replicas": "3", "namespace": "prod"}),
        ("scale the api deployment to 5", {"deployment": "api", "replicas": "5"}),
        ("kubectl scale deploy/web --replicas=4", {"deployment": "web", "replicas": "4"}),
        ("terminate pid 48211", {"pid": "48211"}),
        ("kill backend 1234 please", {"pid": "1234"}),
        ("PID #77 is stuck", {"pid": "77"}),
        ("du on /var/log/nginx please", {"path": "/var/log/nginx", "server": "nginx"}),
        ("check the cert at /etc/ssl/certs/shop.pem.", {"path": "/etc/ssl/certs/shop.pem"}),
        ("is nginx down?", {"server": "nginx"}),
        ("Apache won't start", {"server": "apache2"}),
        ("httpd answers 500", {"server": "httpd"}),
    ],
)
def test_extract_finds_slots_in_varied_wordings(text: str, expected: dict[str, str]) -> None:
    found = extract(text)
    for slot, value in expected.items():
        assert found.values.get(slot) == value, f"{slot} in {text!r}: got {found.values}, errors {found.errors}"
    assert not found.errors, found.errors


def test_extract_skips_stopwords_and_leaves_unmentioned_slots_out() -> None:
    found = extract("my pod is crashing in the namespace")
    assert "pod" not in found.values and "namespace" not in found.values
    assert extract("hello, how are you?").values == {}


def test_extract_limited_to_given_slots() -> None:
    found = extract("Pod: web-1, namespace: prod, pid 12", slots=["pid"])
    assert found.values == {"pid": "12"}


@pytest.mark.parametrize(
    ("text", "slot", "token"),
    [
        ("Pod: foo;rm -rf /", "pod", "foo;rm"),
        ("pod: foo`id`", "pod", "foo`id`"),
        ("pod: foo|bar", "pod", "foo|bar"),
        ("pod: foo&&reboot", "pod", "foo&&reboot"),
        ('pod="foo;rm"', "pod", "foo;rm"),
        ("namespace: prod;id", "namespace", "prod;id"),
        ("namespace: ../etc", "namespace", "../etc"),
        ("namespace: --all-namespaces", "namespace", "--all-namespaces"),
        ("namespace: -n", "namespace", "-n"),
        ("pod: p\u0430yment-api", "pod", "p\u0430yment-api"),  # Cyrillic a
        ("namespace: pr\u043eduction", "namespace", "pr\u043eduction"),  # Cyrillic o
        ("namespace: \uff30\uff32\uff2f\uff24", "namespace", "\uff30\uff32\uff2f\uff24"),  # fullwidth PROD
        ("namespace: prod\u200bx", "namespace", "prod\u200bx"),  # zero-width space inside
        ("the prod;id namespace", "namespace", "prod;id"),
        ("deployment: api;reboot", "deployment", "api;reboot"),
        ("scale api;reboot to 3", "deployment", "api;reboot"),
        ("check /var/log/../../etc/shadow", "path", "/var/log/../../etc/shadow"),
        ("path: /var/../etc", "path", "/var/../etc"),
        ("pid: 0", "pid", "0"),
        ("scale web to 5000", "replicas", "5000"),
    ],
)
def test_extract_refuses_hostile_values_with_the_validator_message(text: str, slot: str, token: str) -> None:
    found = extract(text)
    assert slot not in found.values, f"{text!r}: accepted {slot}={found.values[slot]!r} (a truncated prefix?)"
    with pytest.raises(ValueRejected) as rejected:
        validate_slot(slot, token)
    assert found.errors.get(slot) == str(rejected.value), f"{text!r}: {found.errors}"


def test_extract_refuses_command_substitution_in_a_namespace() -> None:
    found = extract("namespace: $(id)")
    assert "namespace" not in found.values
    message = found.errors["namespace"]
    assert message.startswith("namespace: '$(id") and message.endswith(f"is not allowed; allowed: {K8S_NAME}")


def test_extract_relative_dotdot_path_is_never_a_path() -> None:
    found = extract("look at ../etc/shadow")
    assert "path" not in found.values


@pytest.mark.parametrize(
    ("text", "slot", "prefix"),
    [
        # The bare "looks like a pod name" pattern takes the valid start of a hostile token
        # after the explicit "Pod:" value was refused.
        ("Pod: payment-service-7d9f8b-xyz12;rm -rf /", "pod", "payment-service-7d9f8b-xyz12"),
        ("Pod: payment-service-7d9f8b-xyz12$(id)", "pod", "payment-service-7d9f8b-xyz12"),
        # "in the X" backtracks to the part of X before the ';'.
        ("in the prod;id namespace", "namespace", "prod"),
        # pid patterns take a digit run whatever follows it.
        ("pid: 12;kill -9 1", "pid", "12"),
        # A path is cut where shell punctuation starts.
        ("look at /var/log/nginx/$(id)", "path", "/var/log/nginx"),
    ],
)
def test_extract_never_accepts_a_truncated_prefix_of_a_hostile_token(text: str, slot: str, prefix: str) -> None:
    found = extract(text)
    assert found.values.get(slot) != prefix, (
        f"PRODUCT BUG: extract({text!r}) accepted {slot}={prefix!r}, a valid prefix of a hostile token; "
        "it should refuse the whole token with the validator's message"
    )
    assert slot in found.errors, f"{text!r}: no validator message for {slot}: {found.errors}"


def test_every_slot_type_is_a_known_validator() -> None:
    assert set(VOCABULARY) >= {"namespace", "pod", "service", "deployment", "container", "app", "replicas",
                               "pid", "path", "server"}
    for slot, spec in VOCABULARY.items():
        assert from_spec(spec.type).name, slot


# -- intents -----------------------------------------------------------------------------


def test_words_lowercase_and_strip_punctuation() -> None:
    assert words("Terminate the BLOCKING session, please!") == ["terminate", "the", "blocking", "session", "please"]
    assert words("won't start: web-2.example.com") == ["won't", "start", "web-2.example.com"]


@pytest.mark.parametrize(
    ("trigger", "text", "expected"),
    [
        ("terminate|kill session|backend|pid", "Terminate the blocking session.", True),
        ("terminate|kill session", "kill one two three four session", True),  # a gap of MAX_GAP words
        ("terminate|kill session", "kill one two three four five session", False),  # one word too many
        ("terminate|kill session", "the session was terminated", False),  # order matters
        ("keeps|keep|constantly|always restart*", "the pod keeps restarting", True),  # glob
        ("crashloop*", "It is in CrashLoopBackOff!", True),
        ("crashloop*", "a crash loop", False),
        ("never become|becomes|get|gets ready", "they never ever become ready", True),
        ("not|never ready", "ready, not yet", False),
        ("oom", "zoom in", False),  # whole words only
        ("what's|whats wrong", "What's wrong with it?", True),
        ("", "anything", False),
    ],
)
def test_trigger_matches(trigger: str, text: str, expected: bool) -> None:
    assert trigger_matches(trigger, words(text)) is expected


def test_trigger_matches_tries_every_start() -> None:
    # the first "kill" has no "session" in reach, the second one does
    text = "kill it now please or else later maybe: kill the session"
    assert trigger_matches("kill session", words(text))


def test_score_sums_group_counts_of_matching_triggers() -> None:
    text = words("the pod keeps restarting in a crash loop")
    assert score(["keeps restart*", "crash loop*", "oom"], text) == 4
    assert score(["oom"], text) == 0


@pytest.mark.parametrize(
    ("squad", "text", "expected"),
    [
        ("k8s", "My application pod is in a CrashLoopBackOff state", "pod-failure"),
        ("k8s", "the whole cluster is slow, nodes under memory pressure", "cluster-pressure"),
        ("k8s", "Service payments unreachable, connection refused", "service-unreachable"),
        ("webserver", "Customers are getting 502 Bad Gateway from nginx", "upstream-errors"),
        ("database", "UPDATEs on the accounts table have been hanging. What is blocking them?", "blocking"),
        ("security", "Are we under attack? I see a lot of SSH noise", "ssh-bruteforce"),
        ("k8s", "hello there", None),
    ],
)
def test_best_match_runbooks(squad: str, text: str, expected: str | None) -> None:
    runbook, points = best_match(SQUADS[squad].runbooks, text)
    if expected is None:
        assert (runbook, points) == (None, 0)
    else:
        assert runbook is not None and runbook.name == expected and points > 0


def test_best_match_prefers_higher_score_and_first_on_a_tie() -> None:
    class T:
        def __init__(self, name: str, triggers: list[str]) -> None:
            self.name, self.triggers = name, triggers

    one, two, three = T("one", ["restart"]), T("two", ["keeps restart*"]), T("three", ["restart*"])
    assert best_match([one, two], "it keeps restarting")[0] is two
    assert best_match([one, two], "restart")[0] is one
    assert best_match([three, two], "restarting")[0] is three
    assert best_match([two, three], "restarting")[0] is three
    assert best_match([one, two], "nothing") == (None, 0)


def test_best_match_actions() -> None:
    action, _ = best_match(SQUADS["k8s"].actions, "please delete pod web-1 in staging")
    assert action is not None and action.name == "delete-pod"
    action, _ = best_match(SQUADS["database"].actions, "Terminate the blocking session.")
    assert action is not None and action.name == "terminate"
    assert best_match(SQUADS["k8s"].actions, "my pod keeps crashing") == (None, 0)


@pytest.mark.parametrize("text", ["yes", "Yes, show me the usage", "sure thing", "ok", "OK.", "go ahead", "please do", "y", "yeah!"])
def test_is_affirmative(text: str) -> None:
    assert is_affirmative(text) and not is_negative(text)


@pytest.mark.parametrize("text", ["no", "No thanks", "nope, leave it", "don't", "cancel that", "stop"])
def test_is_negative(text: str) -> None:
    assert is_negative(text) and not is_affirmative(text)


@pytest.mark.parametrize("text", ["", "   ", "yes no", "Yes, but no", "please don't", "yesterday it broke", "maybe"])
def test_neither_affirmative_nor_negative(text: str) -> None:
    assert not is_affirmative(text) and not is_negative(text)


# -- explicit commands -------------------------------------------------------------------

PROGRAMS = RunbookBrain(SQUADS["k8s"].playbook()).programs


@pytest.mark.parametrize(
    ("text", "argv"),
    [
        ("run kubectl get pods -n staging", ["kubectl", "get", "pods", "-n", "staging"]),
        ("Run kubectl get pods -n staging", ["kubectl", "get", "pods", "-n", "staging"]),
        ("execute: df -h", ["df", "-h"]),
        ("exec ss -ltnp", ["ss", "-ltnp"]),
        ("please run nginx -t", ["nginx", "-t"]),
        ("please run: ls -la /tmp", ["ls", "-la", "/tmp"]),
        ("run  kubectl\tget   pods", ["kubectl", "get", "pods"]),
        ("can you check `df -h` for me", ["df", "-h"]),
        ("`kubectl logs web-1 -n prod --tail=20`", ["kubectl", "logs", "web-1", "-n", "prod", "--tail=20"]),
        ("now run kubectl get secrets -n staging -o yaml",
         ["kubectl", "get", "secrets", "-n", "staging", "-o", "yaml"]),
        ("ok, now execute /usr/bin/df -h", ["/usr/bin/df", "-h"]),
        ("kubectl get pods -n x", ["kubectl", "get", "pods", "-n", "x"]),
        ("df -h", ["df", "-h"]),
        ("run kubectl logs 'my pod' -n x", ["kubectl", "logs", "my pod", "-n", "x"]),
        ("run kubectl get pods; rm -rf /", ["kubectl", "get", "pods;", "rm", "-rf", "/"]),
    ],
)
def test_explicit_command_is_found(text: str, argv: list[str]) -> None:
    assert explicit_command(text, PROGRAMS) == argv


@pytest.mark.parametrize(
    "text",
    [
        "my pod keeps crashing",
        "could you run the diagnostics?",
        "can you run a health check on it",
        "why does it run slowly now",
        "I ran kubectl get pods yesterday",
        "run",
        "run ",
        "``",
        "",
    ],
)
def test_prose_is_not_an_explicit_command(text: str) -> None:
    assert explicit_command(text, PROGRAMS) is None


@pytest.mark.parametrize("text", ["run the diagnostics", "Run the diagnostics again please", "please run a quick check"])
def test_run_prefix_followed_by_prose_is_not_a_command(text: str) -> None:
    argv = explicit_command(text, PROGRAMS)
    assert argv is None, (
        f"PRODUCT BUG: explicit_command({text!r}) = {argv!r}: the run/execute prefix makes any prose a command, "
        "so the brain sends it to the policy instead of treating it as a request"
    )


@pytest.mark.parametrize(
    ("squad", "text"),
    [
        ("webserver", "nginx on web-2 will not start since I edited the config"),
        ("webserver", "last night nginx crashed on web-1"),
        ("security", "find out whether anyone logged in as root"),
        ("database", "psql is very slow today, what is blocking?"),
    ],
)
def test_prose_that_starts_with_a_program_name_is_not_a_command(squad: str, text: str) -> None:
    argv = explicit_command(text, RunbookBrain(SQUADS[squad].playbook()).programs)
    assert argv is None, (
        f"PRODUCT BUG: explicit_command({text!r}) = {argv!r}: any message whose first word is a known program "
        "is sent to the policy as a command instead of being diagnosed"
    )


def test_unbalanced_quotes_never_split_into_a_partial_command() -> None:
    # With an explicit prefix the whole text stays one argument (never run through a
    # shell, and no program is called that): it cannot become ["kubectl", "logs"].
    assert explicit_command('run kubectl logs "foo -n prod', PROGRAMS) == ['kubectl logs "foo -n prod']
    assert explicit_command('check `kubectl logs "foo`', PROGRAMS) == ['kubectl logs "foo']
    # Without one it is not a command at all.
    assert explicit_command('kubectl logs "foo', PROGRAMS) is None
    assert explicit_command('now run kubectl logs "foo', PROGRAMS) is None


def test_unbalanced_quotes_turn_into_a_refusal_not_an_exception() -> None:
    seen: list[Call] = []

    def deny(call: Call) -> CallResult:
        seen.append(call)
        return CallResult(status="denied", argv=list(call.argv or []), node="n1", reason="unknown program")

    steps = drive(SQUADS["k8s"], "run kubectl logs 'foo -n prod", State(), deny)
    assert [c.argv for c in seen] == [["kubectl logs 'foo -n prod"]]
    assert "unknown program" in says(steps)


# -- holds / fill / merge_facts ----------------------------------------------------------


@pytest.mark.parametrize(
    ("conditions", "facts", "expected"),
    [
        ([], {}, True),
        (["a"], {"a": "x"}, True),
        (["a"], {"a": ""}, False),
        (["a"], {"a": []}, False),
        (["a"], {}, False),
        (["!a"], {}, True),
        (["!a"], {"a": None}, True),
        (["!a"], {"a": ["p"]}, False),
        (["server=nginx"], {"server": "nginx"}, True),
        (["server=nginx"], {"server": "apache2"}, False),
        (["server=nginx"], {}, False),
        (["n=3"], {"n": 3}, True),
        (["a", "!b", "c=1"], {"a": 1, "c": "1"}, True),
        (["a", "!b", "c=1"], {"a": 1, "b": True, "c": "1"}, False),
    ],
)
def test_holds(conditions: list[str], facts: dict[str, object], expected: bool) -> None:
    assert holds(conditions, facts) is expected


def test_fill_keeps_types_of_whole_placeholders_and_literals() -> None:
    facts = {"pod": "web-1", "namespace": "prod", "pids": [1, 2], "blocker_pid": 48211}
    out = fill({"pod": "{pod}", "namespace": "{namespace}", "tail": 200, "wide": True, "pid": "{blocker_pid}"}, facts)
    assert out == {"pod": "web-1", "namespace": "prod", "tail": 200, "wide": True, "pid": 48211}
    assert isinstance(out["pid"], int)


def test_fill_embeds_and_uses_item() -> None:
    out = fill({"target": "deployment/{deployment}", "pod": "{item}", "ns": "{namespace}"},
               {"deployment": "api", "namespace": "prod"}, item="api-123")
    assert out == {"target": "deployment/api", "pod": "api-123", "ns": "prod"}


def test_fill_returns_none_when_a_fact_is_missing_or_empty() -> None:
    assert fill({"pod": "{pod}"}, {}) is None
    assert fill({"pod": "{pod}"}, {"pod": ""}) is None
    assert fill({"x": "a-{pod}"}, {"pod": None}) is None
    assert fill({"pod": "{item}"}, {"pod": "p"}) is None  # no item given
    assert fill({}, {}) == {}


def test_fill_fallbacks_take_the_first_value_that_is_set() -> None:
    template = {"pid": "{pid|longest_pid|blocker_pid}"}
    assert fill(template, {"pid": "12", "blocker_pid": 99}) == {"pid": "12"}
    assert fill(template, {"pid": "", "longest_pid": None, "blocker_pid": 99}) == {"pid": 99}
    assert fill(template, {"pid": [], "longest_pid": 7}) == {"pid": 7}
    assert fill(template, {"other": 1}) is None
    assert fill({"t": "backend {pid|blocker_pid}!"}, {"blocker_pid": 5}) == {"t": "backend 5!"}


def test_fill_text_leaves_unknown_placeholders() -> None:
    assert fill_text("Restarting {server}", {"server": "nginx"}) == "Restarting nginx"
    assert fill_text("Restarting {server} in {namespace}", {"server": "nginx"}) == "Restarting {server} in {namespace}"
    assert fill_text("Terminating backend {pid|blocker_pid}", {"blocker_pid": 48211}) == "Terminating backend 48211"


def test_merge_facts_scalars_replace_lists_accumulate_mappings_merge() -> None:
    facts: dict[str, object] = {"pod": "a", "pods": ["x", "y"], "ports": {"db": 5432}, "flag": True, "n": ["old"]}
    merge_facts(facts, {"pod": "b", "pods": ["y", "z", "x", "w"], "ports": {"cache": 6379}, "flag": False,
                        "new": ["q", "q"], "n": "now-a-scalar"})
    assert facts == {
        "pod": "b", "pods": ["x", "y", "z", "w"], "ports": {"db": 5432, "cache": 6379}, "flag": False,
        "new": ["q"], "n": "now-a-scalar",
    }
    merge_facts(facts, {"pod": ["list", "now"], "flag": {"k": 1}})
    assert facts["pod"] == ["list", "now"] and facts["flag"] == {"k": 1}


def test_merge_facts_later_mapping_values_win() -> None:
    facts: dict[str, object] = {"user_slots": {"server": True, "pod": True}}
    merge_facts(facts, {"user_slots": {"server": False}})
    assert facts["user_slots"] == {"server": False, "pod": True}


def test_state_round_trips_through_its_json_form() -> None:
    state = State(facts={"namespace": "prod", "pods": ["a"]}, pending={"kind": "runbook", "name": "x", "missing": []},
                  offer={"runbook": "pod-failure", "index": 0})
    again = State.load(state.dump())
    assert again == state and again.facts is not state.facts
    assert State.load({}) == State()


# -- whole turns with a fake runtime -----------------------------------------------------


def test_missing_slot_asks_a_question_and_runs_nothing() -> None:
    state = State()
    steps = drive(SQUADS["k8s"], "My application pod is in a CrashLoopBackOff state. Can you check the logs?", state)
    assert calls(steps) == []
    text = says(steps)
    assert "Which namespace" in text and "pod" in text
    assert state.pending == {"kind": "runbook", "name": "pod-failure", "missing": ["namespace"]}


def test_answering_the_question_runs_the_diagnosis() -> None:
    state = State()
    drive(SQUADS["k8s"], "My application pod is in a CrashLoopBackOff state.", state)
    seen: list[Call] = []

    def respond(call: Call) -> CallResult:
        seen.append(call)
        return ran_empty(call)

    steps = drive(SQUADS["k8s"], "Pod: payment-service-7d9f8b-xyz, Namespace: production", state, respond)
    assert seen and seen[0].tool == "describe_pod"
    assert seen[0].params == {"pod": "payment-service-7d9f8b-xyz", "namespace": "production"}
    assert all(not c.hold for c in seen)
    assert isinstance(steps[-1], Say) and "kubectl describe pod payment-service-7d9f8b-xyz" in steps[-1].text
    assert state.pending is None


def test_an_action_is_exactly_one_held_call() -> None:
    state = State()

    def approval(call: Call) -> CallResult:
        return CallResult(status="approval", argv=["kubectl", "delete", "pod", "web-1", "-n", "staging"],
                          node="n1", agent="k8s/deployment-manager", approval_id="42", reason="needs approval")

    steps = drive(SQUADS["k8s"], "delete pod web-1 in staging", state, approval)
    held = calls(steps)
    assert len(held) == 1 and held[0].hold is True
    assert held[0].tool == "delete_pod" and held[0].params == {"pod": "web-1", "namespace": "staging"}
    text = says(steps)
    assert "approval" in text and "42" in text and "not run" in text


def test_an_action_missing_its_slot_asks_first() -> None:
    state = State()
    steps = drive(SQUADS["webserver"], "please restart the web server", state)
    assert calls(steps) == [] and "nginx or apache2" in says(steps)

    steps = drive(SQUADS["webserver"], "the nginx one", state,
                  lambda c: CallResult(status="approval", argv=["x"], approval_id="1"))
    assert [(c.tool, c.params, c.hold) for c in calls(steps)] == [("restart_service", {"unit": "nginx"}, True)]


def test_answering_the_question_with_the_bare_name_it_offers() -> None:
    state = State()
    steps = drive(SQUADS["webserver"], "please restart the web server", state)
    assert "nginx or apache2" in says(steps)
    steps = drive(SQUADS["webserver"], "nginx", state,
                  lambda c: CallResult(status="approval", argv=["x"], approval_id="1"))
    made = [(c.tool, c.params, c.argv, c.hold) for c in calls(steps)]
    assert made == [("restart_service", {"unit": "nginx"}, None, True)], (
        f"PRODUCT BUG: answering 'nginx' to 'nginx or apache2?' made {made}: a message that starts with a "
        "program name is taken as an explicit command (`nginx`), so the pending restart is never requested"
    )


def test_terminate_uses_the_blocker_found_earlier() -> None:
    state = State(facts={"blocker_pid": 48211})
    steps = drive(SQUADS["database"], "Terminate the blocking session.", state,
                  lambda c: CallResult(status="approval", argv=["psql"], approval_id="3"))
    assert [(c.tool, c.params, c.hold) for c in calls(steps)] == [("terminate_backend", {"pid": 48211}, True)]
    state = State(facts={"blocker_pid": 48211})
    steps = drive(SQUADS["database"], "terminate pid 777", state,
                  lambda c: CallResult(status="approval", argv=["psql"], approval_id="3"))
    assert [c.params for c in calls(steps)] == [{"pid": "777"}], "a pid the user named wins over the blocker"


def test_a_denied_explicit_command_says_the_reason() -> None:
    reason = "denied by rule `kubectl get secret* ...` of grant k8s/secrets-never"

    def deny(call: Call) -> CallResult:
        return CallResult(status="denied", argv=list(call.argv or []), node="k8s-staging", reason=reason)

    steps = drive(SQUADS["k8s"], "now run kubectl get secrets -n staging -o yaml", State(), deny)
    made = calls(steps)
    assert len(made) == 1 and made[0].argv == ["kubectl", "get", "secrets", "-n", "staging", "-o", "yaml"]
    assert made[0].tool is None and not made[0].hold
    text = says(steps)
    assert reason in text and "did not run" in text


def test_hostile_value_is_refused_before_any_call() -> None:
    state = State()
    steps = drive(SQUADS["k8s"], "my pod keeps crashing, namespace: prod;id", state)
    assert calls(steps) == []
    assert "'prod;id' is not allowed" in says(steps) and "would not be safe" in says(steps)
    assert "namespace" not in state.facts and state.pending is None

    steps = drive(SQUADS["k8s"], "delete pod foo;rm in staging", State())
    assert calls(steps) == [] and "'foo;rm' is not allowed" in says(steps)


def test_a_refused_pod_name_is_reported_not_silently_dropped() -> None:
    seen: list[Call] = []
    steps = drive(SQUADS["k8s"], "my pod keeps crashing, Pod: foo;rm -rf /, namespace: prod", State(),
                  lambda c: seen.append(c) or ran_empty(c))
    assert "'foo;rm' is not allowed" in says(steps), (
        f"PRODUCT BUG: the refused pod value vanished: the brain ran {[c.tool for c in seen]} on the whole "
        "namespace and never said the pod name was refused (the pod reaches pod-failure only through `seed`, "
        "which _start's relevance check ignores)"
    )


def test_an_offer_runs_on_yes_and_is_dropped_on_no() -> None:
    squad = SQUADS["k8s"]
    state = State()
    pending_pod = (
        "NAME  READY  STATUS  RESTARTS  AGE\npostgres-0  0/1  Pending  0  47m\n"
    )
    describe = (
        "Name: postgres-0\nNamespace: production\nStatus: Pending\nEvents:\n"
        "  Type     Reason            Age  From               Message\n"
        "  ----     ------            ---- ----               -------\n"
        "  Warning  FailedScheduling  2m   default-scheduler  0/3 nodes are available: 3 Insufficient cpu.\n"
    )

    def respond(call: Call) -> CallResult:
        out = {"list_pods": pending_pod, "describe_pod": describe}.get(call.tool or "", "")
        return CallResult(status="ran", argv=[call.tool or "x"], tool=call.tool, exit_code=0, stdout=out)

    drive(squad, "pods are pending in namespace production", state, respond)
    assert state.offer is not None, "an insufficient-cpu diagnosis offers kubectl top"
    offered = dict(state.offer)

    seen: list[Call] = []
    steps = drive(squad, "yes please", state, lambda c: seen.append(c) or ran_empty(c))
    assert [c.tool for c in seen] == ["top_nodes", "top_pods"]
    assert seen[1].params == {"namespace": "production"}
    assert state.offer is None and isinstance(steps[-1], Say)

    state.offer = offered
    steps = drive(squad, "no", state)
    assert calls(steps) == [] and state.offer is None and "leave it" in says(steps)


def test_invalid_step_results_are_reported_in_the_reply() -> None:
    """The runtime turns a ToolCallError into status "invalid"; the brain must tell the user."""
    state = State()
    reason = "tool describe_pod, parameter pod: 'X' is not allowed"

    def invalid(call: Call) -> CallResult:
        return CallResult(status="invalid", reason=reason, tool=call.tool)

    steps = drive(SQUADS["k8s"], "Pod web-1 in namespace prod keeps crashing", state, invalid)
    assert calls(steps) and reason in says(steps)

    steps = drive(SQUADS["k8s"], "delete pod web-1 in staging", State(), invalid)
    assert "could not prepare that request" in says(steps) and reason in says(steps)


def test_help_when_nothing_matches() -> None:
    steps = drive(SQUADS["security"], "hello", State())
    assert calls(steps) == []
    assert all(r.title in says(steps) for r in SQUADS["security"].runbooks if r.name != "triage")


# -- property: arbitrary text never breaks the brain or smuggles a value -----------------


def _fixtures_by_squad() -> dict[str, list[Fixture]]:
    found: dict[str, list[Fixture]] = {}
    for path in find_scenarios(SCENARIO_DIRS):
        scenario = load_scenario(path)
        for node in scenario.nodes.values():
            found.setdefault(scenario.squad, []).extend(node.fixtures)
    return found


FIXTURES = _fixtures_by_squad()


def _vocabulary(squad: SquadSpec) -> list[str]:
    vocab: set[str] = set()
    for item in [*squad.runbooks, *squad.actions]:
        for trigger in item.triggers:
            for group in trigger.split():
                vocab.update(alt.replace("*", "") or "x" for alt in group.split("|"))
    vocab.update([
        "pod", "Pod:", "pods", "namespace", "namespace:", "in", "the", "-n", "ns=", "deployment", "to", "replicas",
        "--replicas=3", "pid", "backend", "session", "service", "svc/", "container", "yes", "no", "ok", "please",
        "run", "execute", "now run", "`", '"', "'", ",", ".", ";", "$(id)", "../etc", "/var/log/nginx/error.log",
        "/etc/../etc/shadow", "/etc/ssl/certs/shop.pem", "production", "staging", "payment-service-7d9f8b-xyz",
        "postgres-0", "web-1", "db-2", "nginx", "apache", "httpd", "48211", "0", "99999999", "p\u0430yment",
        "foo;rm", "-rf", "kubectl", "get", "pods", "delete", "logs", "systemctl", "restart", "psql", "df", "-h",
        "ss", "sudo", "\u200b", "\n",
    ])
    return sorted(vocab)


VALUES = [
    "production", "staging", "payment-service-7d9f8b-xyz", "postgres-0", "inventory-api", "web-1", "48211", "3",
    "nginx", "apache2", "/var/log/nginx/error.log", "/etc/ssl/certs/shop.pem", "foo;rm", "$(id)", "../etc",
    "p\u0430yment", "-n", "--all", "0", "99999999", "/etc/../etc/shadow", "a" * 300,
]
SLOT_PHRASES = [
    "pod {}", "Pod: {}", "namespace: {}", "in the {} namespace", "in {}.", "-n {}", "deployment/{}", "to {} replicas",
    "pid {}", "backend {}", "service {}", "container {}", "at {}", "on {}", "{}",
]


def _phrases(squad: SquadSpec) -> list[str]:
    """Every trigger of the squad as words (the first alternative of each group, globs dropped)."""
    return [
        " ".join(group.split("|")[0].replace("*", "") for group in trigger.split())
        for item in [*squad.runbooks, *squad.actions] for trigger in item.triggers
    ]


def _messages(squad: SquadSpec) -> st.SearchStrategy[list[str]]:
    worded = st.lists(st.sampled_from(_vocabulary(squad)), max_size=14).map(" ".join)
    slot = st.builds(lambda p, v: p.format(v), st.sampled_from(SLOT_PHRASES), st.sampled_from(VALUES))
    phrased = st.builds(
        lambda trigger, slots, sep: sep.join([trigger, *slots]),
        st.sampled_from(_phrases(squad)), st.lists(slot, max_size=3), st.sampled_from([" ", ", ", " and "]),
    )
    answers = st.sampled_from(["yes", "no", "yes please", "ok", "namespace: production", "nginx", "pid 48211"])
    return st.lists(st.one_of(st.text(max_size=60), worded, phrased, phrased, answers), min_size=1, max_size=4)


def _check_squad(squad: SquadSpec, messages: list[str]) -> None:
    executor = FixtureExecutor(FIXTURES.get(squad.name, []))
    state = State()
    problems: list[str] = []

    def respond(call: Call) -> CallResult:
        if call.tool is None:
            assert call.argv and all(isinstance(a, str) for a in call.argv), call
            return CallResult(status="denied", argv=list(call.argv), node="n1", reason="not allowed here")
        spec = squad.tool(call.tool)
        try:
            argv = render(spec, call.params)
        except ToolCallError as exc:
            problems.append(f"{call.tool}: {exc}")
            return CallResult(status="invalid", reason=str(exc), tool=call.tool, node="n1")
        assert call.hold == (spec.effect is Effect.NEEDS_APPROVAL), f"hold={call.hold} for {spec.name} ({spec.effect})"
        if call.hold:
            return CallResult(status="approval", argv=argv, tool=spec.name, node="n1", approval_id="1", reason="held")
        res = executor.run(argv, timeout=1, max_output=65536)
        return CallResult(status="ran", argv=argv, tool=spec.name, node="n1", agent=squad.agent_id(spec.agent),
                          exit_code=res.exit_code, stdout=res.stdout, stderr=res.stderr)

    for text in messages:
        steps = drive(squad, text, state, respond)
        assert any(isinstance(s, Say) for s in steps), f"no reply to {text!r}"
        # A value that passes its slot's validator but not the tool's (a path outside the tool's
        # folders) is refused by the runtime before anything runs; the reply must say so.
        said = "\n".join(s.text for s in steps if isinstance(s, Say))
        unreported = [p for p in problems if p.split(": ", 1)[1] not in said]
        assert not unreported, f"after {messages!r}: a refused value was not reported to the user: {unreported}"
        problems.clear()
        State.load(state.dump())


@pytest.mark.parametrize("name", sorted(SQUADS))
def test_arbitrary_text_never_breaks_a_turn_and_every_value_passes_its_validator(name: str) -> None:
    squad = SQUADS[name]

    @settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow], database=None)
    @given(messages=_messages(squad))
    def check(messages: list[str]) -> None:
        _check_squad(squad, messages)

    check()
