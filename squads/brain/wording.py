"""Reading intent beyond the triggers: small talk, requests for a check, requests to act, synonyms.

Triggers recognise what a squad has a runbook for. These rules decide what
happens to everything else: a message about operations that no runbook claims
starts the squad's triage sweep; only small talk ("thanks!", "hi") or an
obviously unrelated message gets the menu. A request for a check or an audit
gets a verdict. A request to change something the squad has no tool for is
answered with what the engineer can do instead, and nothing changes.
"""

from __future__ import annotations

import re

from squads.brain.intents import trigger_matches, words
from squads.brain.models import Action

# Small talk: a message made only of these words is not about operations.
SMALL_TALK = frozenset(
    """hi hello hey hiya yo morning evening afternoon good night thanks thank you thx ty cheers great
    nice cool awesome perfect ok okay k bye goodbye later see ya lol haha sorry np no problem welcome
    there all folks team mate buddy :) much so very appreciated appreciate it that's that is helpful
    help what can do you who are how's how is it going your name""".split()
)
OFF_TOPIC = frozenset(
    """joke jokes weather recipe poem song lyrics movie movies football soccer lunch dinner birthday
    horoscope riddle""".split()
)
# Requests for a check, a sweep or an audit: the reply ends with a verdict.
CHECK_WORDS = frozenset(
    """check checks checkup check-up audit audits sanity health healthy healthcheck health-check review
    inspect verify sweep once-over look-over ok okay fine alright good""".split()
)
CHECK_PHRASES = re.compile(
    r"\b(?:sanity[- ]check|health[- ]?check|audit|once[- ]over|look (?:it )?over|check (?:up )?on|"
    r"is (?:everything|all|it|the \S+) (?:ok|okay|fine|alright|good|healthy)|all good|anything wrong|"
    r"before (?:the|a|we) \S+|make sure)\b",
    re.IGNORECASE,
)
# Wording an engineer uses for a symptom, folded onto the words the runbooks' triggers use.
SYNONYMS: dict[str, str] = {
    "crawling": "slow", "crawls": "slow", "sluggish": "slow", "laggy": "slow", "lagging": "slow",
    "sloooow": "slow", "snail": "slow", "timing": "timeout", "timeouts": "timeout",
    "dying": "down", "dead": "down", "died": "down", "offline": "down", "unresponsive": "down",
    "borked": "broken", "busted": "broken", "kaput": "broken", "fubar": "broken", "hosed": "broken",
    "erroring": "error", "errors": "error", "failing": "fail", "failed": "fail", "fails": "fail",
    "rejected": "refused", "refuses": "refused", "denied": "refused",
    "postgresql": "postgres", "pg": "postgres", "psql": "postgres", "database": "db",
    "pods": "pod", "containers": "container",
}
# Verbs that change state. A request that starts with one and that no action of the squad claims
# is answered "I cannot do that", with what to do instead; nothing runs.
STATE_CHANGES: dict[str, str] = {
    "exec": "open a shell in it yourself (`kubectl exec -it POD -- sh`, `ssh`) if your access allows it",
    "ssh": "log in yourself if your access allows it",
    "delete": "delete it yourself with your own access, after checking what depends on it",
    "remove": "remove it yourself with your own access, after checking what depends on it",
    "rm": "remove it yourself with your own access, after checking what depends on it",
    "kill": "end it yourself (`kill PID`, after confirming what it is) or ask me what it is first",
    "stop": "stop it yourself (`systemctl stop UNIT`) with your own access",
    "start": "start it yourself (`systemctl start UNIT`) with your own access",
    "block": "add a firewall rule yourself (`nft`/`iptables`, or your cloud's security group)",
    "ban": "add a firewall rule yourself (`nft`/`iptables`, fail2ban), or your cloud's security group",
    "drop": "do it yourself with your own access, after a backup",
    "truncate": "do it yourself with your own access, after a backup",
    "edit": "edit the file yourself, then ask me to check the result",
    "change": "make the change yourself, then ask me to check the result",
    "modify": "make the change yourself, then ask me to check the result",
    "install": "install it yourself through your configuration management",
    "uninstall": "remove it yourself through your configuration management",
    "upgrade": "upgrade it yourself through your configuration management",
    "reboot": "reboot the machine yourself once you know why it is needed",
    "shutdown": "shut the machine down yourself",
    "chmod": "change the permissions yourself, then ask me to check them",
    "chown": "change the owner yourself, then ask me to check it",
    "patch": "apply the change yourself (`kubectl patch`/`kubectl edit`) with your own access",
    "rollback": "roll back yourself (`kubectl rollout undo`, your deploy tool)",
    "disable": "disable it yourself with your own access",
    "lock": "lock the account yourself (`usermod -L USER`, `passwd -l USER`)",
    "wipe": "do it yourself with your own access, after a backup",
}
LEADS = frozenset(
    """please pls kindly can could would will you go ahead and now ok okay then just so lets let's i we
    want need to should must also first quickly""".split()
)
CLAUSE = re.compile(r"[.;!?\n]|,|\bthen\b|\band\b|&", re.IGNORECASE)
NEGATED = re.compile(r"\b(?:don'?t|do not|never|no need|without|not yet|shouldn'?t|should not)\b", re.IGNORECASE)


def normalised(text: str) -> str:
    """``text`` with symptom synonyms folded onto the triggers' words ("site is crawling" -> "site is slow")."""
    return " ".join(SYNONYMS.get(w, w) for w in words(text))


def is_small_talk(text: str) -> bool:
    """Greetings, thanks, "what can you do", or a clearly unrelated request: the menu, not a sweep."""
    said = words(text)
    if not said:
        return True
    return all(w in SMALL_TALK for w in said) or bool(set(said) & OFF_TOPIC)


def is_check_request(text: str) -> bool:
    """A request for a check, a sweep or an audit ("sanity check db-5", "audit sshd", "is everything ok?")."""
    said = set(words(text))
    return bool(CHECK_PHRASES.search(text)) or bool(said & {"audit", "sanity", "healthcheck", "health-check"})


def clauses(text: str) -> list[str]:
    """The parts of a message that name one thing each ("setuid binaries and privileged accounts")."""
    return [c.strip() for c in CLAUSE.split(text) if c.strip()]


def sentences(text: str) -> list[str]:
    """The sentences of a message."""
    return [c.strip() for c in re.split(r"[.;!?\n]+(?:\s|$)", text) if c.strip()]


def unsupported_change(text: str) -> tuple[str, str] | None:
    """(the verb, what to do instead) when a clause asks for a state change in so many words."""
    for clause in clauses(text):
        if NEGATED.search(clause):
            continue
        said = words(clause)
        for i, word in enumerate(said):
            if word in STATE_CHANGES and all(w in LEADS for w in said[:i]):
                return word, STATE_CHANGES[word]
            if word not in LEADS:
                break
    return None


IMPERATIVE_LEAD = frozenset(
    """please pls plz kindly can could would will you u go ahead and now ok okay k then just so lets let's hey i we
    want need to should must cool yes yeah alright fine right sure meanwhile also first anyway ugh argh hmm
    well""".split()
)
NEGATIONS = ("don't", "dont", "do not", "never", "no need", "without", "not yet", "shouldn't", "should not")


def imperative(action: Action, text: str) -> bool:
    """Whether the message asks for ``action`` in so many words: one of its triggers starts a
    clause, or follows a word like "please", "now", "ok", "can you", and that clause is not negated.

    "Since the restart this morning nginx returns 502" mentions a restart but asks for none;
    "don't stop it" asks for the opposite; "ci pushed the tag, now delete that pod" asks."""
    for clause in re.split(r"[.;:!?\n]|,|\bthen\b|\band\b", text.lower()):
        if any(n in clause for n in NEGATIONS):
            continue
        said = words(clause)
        for i, word in enumerate(said):
            at_start = all(w in IMPERATIVE_LEAD for w in said[:i])
            if not (at_start or said[i - 1] in IMPERATIVE_LEAD):
                continue
            if any(_first_group_hits(t, word) and trigger_matches(t, said[i:]) for t in action.triggers):
                return True
    return False


def _first_group_hits(trigger: str, word: str) -> bool:
    return trigger_matches(trigger.split()[0], [word])
