"""Reading sshd's journal or the auth log: who is guessing, which users, did anyone get in, and the noise around it."""

from __future__ import annotations

import ipaddress
import re
from collections import Counter

from squads.brain.analyzers import Output, analyzer
from squads.brain.known_errors import CODES as LOG_CODES
from squads.brain.known_errors import FACTS as LOG_FACTS
from squads.brain.known_errors import fill_in
from squads.brain.models import Analysis, Facts, Severity
from squads.brain.parsers import logs as lp

from .. import hunt, posture, privilege
from .addresses import parse_address

BRUTE_FORCE = 5  # failed attempts from one source
# The journal or the log had nothing to give: "no data", never "0 failed logins".
NO_DATA = ("no journal files were found", "-- no entries --", "no such file or directory")
UNAVAILABLE = ("system has not been booted with systemd", "failed to connect to bus", "permission denied")
# Lines of pre-authentication noise: scanners that connect, probe and leave without authenticating.
PREAUTH = re.compile(
    r"kex_exchange_identification|banner exchange|\[preauth\]|Unable to negotiate with|Did not receive identification"
    r"|Protocol major versions differ|invalid format|Bad protocol version|Invalid user "
)
_PREAUTH_SOURCE = re.compile(r"(?:from|by|with|Connection from) (?:(?:invalid|authenticating) user \S+ )?(?P<ip>[0-9a-f.:]+[0-9a-f]) port")


def _log_missing(output: Output, what: str) -> Analysis | None:
    """The analysis of an auth source that gave nothing (no data) or could not be read (unavailable)."""
    text = output.text.lower()
    if any(marker in text for marker in UNAVAILABLE) and not lp.ssh_events(output.text):
        result = Analysis(summary=f"{what}: unavailable", facts={"unavailable": True, "ssh_log_empty": True})
        first = next((ln.strip() for ln in output.text.splitlines() if ln.strip()), "")
        result.add("no_data", Severity.INFO, f"{what} could not be read on this node (\"{first[:160]}\"): logins were not checked there.", check=what)
        return result
    if output.missing or output.exit_code != 0 and not output.stdout.strip() or not output.stdout.strip() or any(
        marker in text for marker in NO_DATA
    ) and not lp.ssh_events(output.text):
        first = next((ln.strip() for ln in output.text.splitlines() if ln.strip()), "no output")
        result = Analysis(summary=f"{what}: no data", facts={"ssh_log_empty": True})
        result.add(
            "no_data", Severity.INFO,
            f"{what} returned nothing to judge (\"{first[:160]}\"): this is no data, not zero failed logins.",
            check=what,
        )
        return result
    return None


def _public(source: str) -> bool:
    address = parse_address(source)
    return bool(address is not None and address.is_global)


@analyzer(
    "sec.ssh_log",
    facts=("accepted_logins", "attackers", "bruteforce", "ssh_log_empty", "unavailable", *LOG_FACTS,
           *privilege.FACTS),
    codes=(
        "account_created_package", "account_created_person", "account_created_uid0", "no_data",
        "ssh_accepted", "ssh_breach", "ssh_bruteforce", "ssh_crafted_user", "ssh_distributed", "ssh_failed_logins",
        "ssh_login_after_failures", "ssh_login_new_source", "ssh_none_accepted", "ssh_preauth_noise", "ssh_root_login",
        "ssh_service_account_login", "reboot_by_user", "reboot_not_requested", *LOG_CODES, *privilege.CODES,
    ),
)
def ssh_log(output: Output, facts: Facts) -> Analysis:
    """sshd's journal or auth.log: who is guessing, which users, did anyone get in; then the
    catalogue's known errors (PAM, sudo, sshd's own failures) among the lines that reasoning left out."""
    result = _ssh_reasoning(output, facts)
    if not any(f.code == "no_data" for f in result.findings):
        what = "The auth log" if output.argv[:1] == ["tail"] else "sshd's journal"
        fill_in(result, output.text, squad="security", source=what, explained=_auth_explained)
        privilege.privilege_use(result, output.text)  # after: the catalogue keeps its counts of the same lines
        message = str(facts.get("message", ""))
        posture.login_refusals(result, message)
        posture.reboot_commands(result, output.text, message)
    return result


def _auth_explained(line: str) -> bool:
    """A line the login reasoning accounts for: an authentication event, or pre-authentication noise."""
    return bool(PREAUTH.search(line) or lp.ssh_events(line))


def _ssh_reasoning(output: Output, facts: Facts) -> Analysis:
    what = "the auth log" if output.argv[:1] == ["tail"] else "sshd's journal"
    if missing := _log_missing(output, what):
        return missing
    events = lp.ssh_events(output.text)
    failed_events = [e for e in events if e.kind in ("failed", "invalid_user", "max_auth")]
    attempts = [e for e in events if e.kind == "failed"] or failed_events
    accepted = [e for e in events if e.kind == "accepted"]
    result = Analysis(summary=f"{len(attempts)} failed logins, {len(accepted)} successful")
    hunt.account_creation(result, output.text)
    if not events:
        result.facts["ssh_log_empty"] = True
        _preauth_noise(result, output.text, accepted)
        return result
    crafted = sorted({e.user for e in events if " " in e.user or e.user.lower().startswith(("accepted", "failed"))})
    if crafted:
        result.add(
            "ssh_crafted_user", Severity.PROBLEM,
            f"{len(crafted)} attempted user names imitate log lines (e.g. {crafted[0][:80]!r}): a log-injection trick. "
            "They are failed logins with a fake user name, not successful logins; the real source is the address "
            "sshd logs at the end of each line.",
        )
    sources = Counter(e.source for e in attempts)
    users = Counter(e.user if e.user not in crafted else "(crafted user name)" for e in attempts)
    attackers = [s for s, n in sources.items() if n >= BRUTE_FORCE]
    top = ", ".join(f"{s} ({n} attempts)" for s, n in sources.most_common(5))
    targeted = ", ".join(f"{u} ({n})" for u, n in users.most_common(6))
    if attempts:
        severity = Severity.PROBLEM if attackers else Severity.INFO
        result.add(
            "ssh_failed_logins", severity,
            f"{len(attempts)} failed password/login attempts from {len(sources)} source(s): {top}. "
            f"Targeted users: {targeted}."
            + (f" {', '.join(attackers)} is a brute-force source (password guessing)." if attackers else ""),
        )
    result.facts["attackers"] = attackers
    if accepted:
        result.facts["accepted_logins"] = sorted({e.user for e in accepted})
    breached = [e for e in accepted if e.source in sources]
    for e in breached:
        result.add(
            "ssh_breach", Severity.CAUSE,
            f"An attempt succeeded: {e.user} logged in with {e.method} from {e.source}, a source that also failed "
            f"{sources[e.source]} times. Treat {e.user}'s account as compromised: lock it, end its sessions, review what it did.",
            user=e.user, source=e.source,
        )
    flagged = _access_evidence(result, events, breached, output.text)
    if accepted and not breached:
        who = ", ".join(sorted({f"{e.user} from {e.source} with {e.method}" for e in accepted}))
        also = " (no guessed password worked), but see the logins flagged above" if flagged else ", so no attempt succeeded"
        result.add("ssh_accepted", Severity.INFO, f"Successful logins: {who}; none came from the failing sources{also}.")
    elif attempts and not accepted:
        result.add("ssh_none_accepted", Severity.INFO, "No attempt from these sources succeeded: no accepted login in this window.")
    if not attackers and len(sources) >= 5 and len(attempts) >= BRUTE_FORCE * 2:
        nets = Counter(
            str(ipaddress.ip_network(f"{s_}/24", strict=False)) for s_ in sources if isinstance(parse_address(s_), ipaddress.IPv4Address)
        )
        if nets:
            net, count = nets.most_common(1)[0]
            if count >= 5:
                subnet_attempts = sum(n for s_, n in sources.items() if parse_address(s_) in ipaddress.ip_network(net))
                attackers = [net]
                result.facts["attackers"] = [s_ for s_ in sources if parse_address(s_) in ipaddress.ip_network(net)]
                result.add(
                    "ssh_distributed", Severity.CAUSE,
                    f"Yes: a distributed SSH brute-force attack from {count} different addresses in the same subnet "
                    f"{net} ({subnet_attempts} failed attempts). No single address crosses a per-IP ban threshold "
                    "(which is why fail2ban-style bans miss it): block the whole range.",
                    source=net,
                )
    if attackers and not breached and not any(f.code == "ssh_distributed" for f in result.findings):
        result.facts["bruteforce"] = True
        result.add(
            "ssh_bruteforce", Severity.CAUSE,
            f"Yes: this is an SSH brute-force (password guessing) attack, mostly from {attackers[0]} "
            f"({sources[attackers[0]]} failed attempts, users {', '.join(sorted({e.user for e in attempts if e.source == attackers[0]}))}).",
            source=attackers[0],
        )
    _preauth_noise(result, output.text, accepted)
    return result


def _raw_line(text: str, e: lp.SshEvent) -> str:
    needle = f"Accepted {e.method} for {e.user} from {e.source}"
    return next((ln.strip() for ln in text.splitlines() if needle in ln), needle)


def _access_evidence(result: Analysis, events: list[lp.SshEvent], breached: list[lp.SshEvent], text: str = "") -> bool:
    """Findings for every successful login that is evidence of access on its own (issue 12 §3): root,
    a service account, a login right after a burst of failures for that user, an address not seen before."""
    flagged = False
    seen_sources: set[str] = set()
    failures_for: Counter[str] = Counter()
    reported: set[tuple[str, str]] = set()
    for e in events:
        if e.kind != "accepted":
            if e.kind in ("failed", "invalid_user", "max_auth"):
                failures_for[e.user] += 1
            continue
        first_time = e.source not in seen_sources
        seen_sources.add(e.source)
        if (e.user, e.source) in reported or e in breached:
            continue
        where = f"from {e.source}" + (" (a public address)" if _public(e.source) else "") + f" with {e.method}"
        when = f" at {e.time}" if e.time else ""
        quote = f"`{_raw_line(text, e)}`" if text else ""
        new = " It is the first login from that address in this log window." if first_time else ""
        if e.user == "root":
            result.add(
                "ssh_root_login", Severity.CAUSE,
                f"root logged in over SSH {where}{when}: {quote}.{new} Direct root access is evidence of access, whatever "
                "the method: confirm who holds that key or password now; if nobody can, treat the host as compromised "
                "(remove the key from /root/.ssh/authorized_keys, set PermitRootLogin no, review what was run).",
                user=e.user, source=e.source,
            )
        elif e.user in hunt.SERVICE_ACCOUNTS:
            result.add(
                "ssh_service_account_login", Severity.CAUSE,
                f"The service account {e.user} logged in over SSH {where}{when}: {quote}. Service accounts do not log in "
                f"interactively: someone planted a key in {e.user}'s authorized_keys (often through the web app). Treat "
                "it as a compromise: remove the key, lock the account's shell, find how the key got there.",
                user=e.user, source=e.source,
            )
        elif failures_for[e.user] >= BRUTE_FORCE:
            result.add(
                "ssh_login_after_failures", Severity.CAUSE,
                f"{e.user} logged in {where}{when} right after {failures_for[e.user]} failed attempts for that user: "
                f"{quote}. A guessed or sprayed password is the likely way in: confirm with {e.user}, else lock it.",
                user=e.user, source=e.source,
            )
        elif first_time and _public(e.source):
            result.add(
                "ssh_login_new_source", Severity.PROBLEM,
                f"{e.user} logged in {where}{when}, from an address not seen before in this log window: {quote}. "
                f"Confirm with {e.user} that it was them.",
                user=e.user, source=e.source,
            )
        else:
            continue
        reported.add((e.user, e.source))
        flagged = True
    return flagged


def _preauth_noise(result: Analysis, text: str, accepted: list[lp.SshEvent]) -> None:
    """Pre-authentication scanner noise: say so, and say whether any login succeeded."""
    lines = [ln for ln in text.splitlines() if PREAUTH.search(ln)]
    if len(lines) < 3 or result.facts.get("attackers") or any(f.severity >= Severity.CAUSE for f in result.findings):
        return
    sources = {m["ip"] for m in map(_PREAUTH_SOURCE.search, lines) if m}
    noisy = sources - {e.source for e in accepted}
    if accepted:
        ok = ", ".join(sorted({f"{e.user} from {e.source} ({e.method})" for e in accepted}))
        outcome = f"None of those addresses authenticated; the only successful logins are {ok}."
    else:
        outcome = "No login succeeded in this window: nobody got in."
    result.add(
        "ssh_preauth_noise", Severity.INFO,
        f"{len(lines)} lines are pre-authentication noise from {len(noisy) or 'several'} address(es) "
        "(kex_exchange_identification, banner exchange, connections closed [preauth], invalid users): internet "
        "scanners and bots probing sshd. They never authenticated; this is background noise, not an intrusion. "
        f"{outcome}",
    )
