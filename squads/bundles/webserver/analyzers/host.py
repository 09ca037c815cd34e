"""The host around the web server: processes, memory, the OOM killer, PHP-FPM, path permissions, access logs."""

from __future__ import annotations

import re
from collections import Counter

from squads.brain.analyzers import Output, analyzer
from squads.brain.analyzers.common import failure
from squads.brain.models import Analysis, Facts, Severity
from squads.brain.parsers import system as sp

from .. import hostparse as hp

SERVERS = re.compile(r"^(nginx|apache2|httpd)\b|/(nginx|apache2|httpd)\b")
PHP_VERSION = re.compile(r"php(?:-fpm)?/?(\d\.\d+)(?:-fpm|/fpm)|php-fpm(\d\.\d+)")
EMPTY = ("-- No entries --", "No journal files were found")


def php_units(text: str) -> list[str]:
    """php<version>-fpm units named anywhere in ``text`` (sockets, config paths, process titles)."""
    units: list[str] = []
    for found in PHP_VERSION.finditer(text):
        unit = f"php{found.group(1) or found.group(2)}-fpm"
        if unit not in units:
            units.append(unit)
    return units


def php_facts(result: Analysis, text: str) -> None:
    """Set php_fpm_units and php_fpm_logs from the versions ``text`` names."""
    units = php_units(text)
    if units:
        result.facts["php_fpm_units"] = units
        result.facts["php_fpm_unit"] = units[0]
        result.facts["php_fpm_logs"] = [f"/var/log/{u}.log" for u in units]


def no_data(output: Output, check: str) -> Analysis | None:
    """Contract 3: an output with nothing to judge is said so, never read as clean."""
    text = output.text.strip()
    if text and not any(text.startswith(e) or text == e for e in EMPTY):
        return None
    why = text.splitlines()[0] if text else "the output was empty"
    result = Analysis(summary=f"no data ({why})")
    result.add("no_data", Severity.INFO, f"I could not check {check}: {why}.", check=check)
    return result


@analyzer("web.processes", facts=("php_fpm_logs", "php_fpm_unit", "php_fpm_units", "server_processes", "server_stopped",
                                  "web_user"),
          codes=("no_data", "server_not_running", "server_processes"))
def processes(output: Output, facts: Facts) -> Analysis:
    """``ps -eo pid,ppid,user,etime,args``: which web server and PHP-FPM processes run, and as whom."""
    if failed := failure(output):
        return failed
    procs = sp.parse_ps(output.stdout)
    if not procs:
        return no_data(output, "the process list") or Analysis(summary="no processes in the output")
    result = Analysis(summary=f"{len(procs)} processes")
    servers = [p for p in procs if SERVERS.search(p.args)]
    php_facts(result, "\n".join(p.args for p in procs if "php" in p.args))
    if servers:
        masters = [p for p in servers if "master" in p.args or p.user == "root"]
        workers = [p for p in servers if p not in masters]
        names = sorted({m.group(1) or m.group(2) for p in servers if (m := SERVERS.search(p.args))})
        result.facts["server_processes"] = names
        if workers:
            result.facts["web_user"] = Counter(p.user for p in workers).most_common(1)[0][0]
        result.add("server_processes", Severity.INFO,
                   f"{', '.join(names)} runs: {len(masters)} master and {len(workers)} worker process(es)"
                   + (f", the workers as user {result.facts['web_user']}" if workers else "") + ".")
    else:
        result.facts["server_stopped"] = True  # read by web.sockets: nothing listening + no process = stopped
        result.add("server_not_running", Severity.PROBLEM,
                   "No nginx, apache2 or httpd process runs on this node: the web server is stopped, so connections "
                   "to its ports are refused.")
    return result


@analyzer("web.memory", facts=("memory_total_mb",), codes=("memory_low", "memory_ok", "no_swap"))
def memory(output: Output, facts: Facts) -> Analysis:
    """``free -m``: how much memory is left, and whether there is swap."""
    if failed := failure(output):
        return failed
    mem = hp.parse_free(output.stdout)
    if mem is None:
        return Analysis(summary="no memory figures in the output")
    result = Analysis(summary=f"{mem.available} MiB available of {mem.total} MiB", facts={"memory_total_mb": mem.total})
    if mem.total and mem.available * 10 < mem.total:
        result.add("memory_low", Severity.PROBLEM,
                   f"Memory is nearly exhausted: {mem.available} MiB available of {mem.total} MiB (free -m).")
    else:
        result.add("memory_ok", Severity.INFO, f"Right now {mem.available} MiB of {mem.total} MiB RAM are available.")
    if mem.swap_total == 0:
        result.add("no_swap", Severity.INFO, "There is no swap: when RAM runs out, the kernel's OOM killer kills a process.")
    return result


RSS = re.compile(r"anon-rss:(\d+)kB")


@analyzer("web.kernel", facts=("oom_victims",), codes=("no_data", "oom_killer", "oom_pool_too_big"))
def kernel(output: Output, facts: Facts) -> Analysis:
    """``journalctl -k``: the OOM killer, and whether the PHP-FPM pool can fit in RAM at all."""
    if failed := failure(output):
        return failed
    if empty := no_data(output, "the kernel messages"):
        return empty
    kills = hp.oom_kills(output.text)
    result = Analysis(summary=f"{len(kills)} OOM kills" if kills else "no OOM kills")
    if not kills:
        return result
    victims = Counter(name for _, name, _ in kills)
    result.facts["oom_victims"] = sorted(victims)
    shown = ", ".join(f"{name} ({count}x)" for name, count in victims.most_common())
    result.add("oom_killer", Severity.CAUSE,
               f"The kernel ran out of memory (OOM) and its OOM killer killed {shown}. Last: \"{kills[-1][2]}\"",
               victims=shown)
    rss = [int(m.group(1)) for _, _, line in kills if (m := RSS.search(line))]
    children, total = facts.get("fpm_max_children"), facts.get("memory_total_mb")
    if rss and children and any("php" in v for v in victims):
        each = max(rss) // 1024
        need = int(children) * each
        room = f" but the machine has {total} MiB RAM" if total else ""
        result.add("oom_pool_too_big", Severity.CAUSE,
                   f"pm.max_children = {children} PHP-FPM children at about {each} MiB each need about {need} MiB"
                   f"{room}: the pool does not fit in memory. Raising max_children makes it worse; lower it to what "
                   "fits (available RAM / the size of one child), or reduce each child's memory.",
                   children=children, each=each)
    return result


@analyzer("web.php_fpm_status", facts=("php_fpm_failed",),
          codes=("php_fpm_config_error", "php_fpm_failed", "php_fpm_oom", "php_fpm_running"))
def php_fpm_status(output: Output, facts: Facts) -> Analysis:
    """``systemctl status phpX.Y-fpm``: running or failed, the pool error of its last start, OOM kills."""
    if failed := failure(output):
        return failed
    unit = str(output.params.get("unit") or output.item or "php-fpm")
    parsed = sp.parse_systemctl_status(output.stdout)
    if parsed is None:
        return Analysis(summary=f"{unit}: no status")
    result = Analysis(summary=f"{unit}: {parsed.active}" + (f" ({parsed.sub})" if parsed.sub else ""))
    _fpm_errors(result, hp.parse_fpm_log("\n".join(parsed.log)), unit)
    ooms = [ln for ln in parsed.log if "killed by the OOM killer" in ln]
    if ooms:
        result.add("php_fpm_oom", Severity.PROBLEM,
                   f"systemd reports {len(ooms)} {unit} process(es) killed by the OOM killer: \"{ooms[-1].strip()}\"")
    if parsed.active == "failed":
        result.facts["php_fpm_failed"] = True
        result.add("php_fpm_failed", Severity.PROBLEM,
                   f"{unit} is not running: systemd reports failed{f' ({parsed.sub})' if parsed.sub else ''}"
                   f"{f' since {parsed.since}' if parsed.since else ''}; every PHP "
                   "request nginx passes to it fails with 502.", unit=unit)
    elif parsed.active == "active":
        result.add("php_fpm_running", Severity.INFO, f"{unit} is running" + (f" (main PID {parsed.main_pid})." if parsed.main_pid else "."))
    return result


def _fpm_errors(result: Analysis, lines: list[hp.FpmLine], unit: str) -> None:
    for line in lines:
        found = hp.FPM_CONFIG.search(line.message) if line.level in ("ERROR", "ALERT") else None
        if found:
            result.add("php_fpm_config_error", Severity.CAUSE,
                       f"PHP-FPM refuses its pool configuration: {found.group('error')} in {found.group('file')} line "
                       f"{found.group('line')} (\"{line.raw}\"). It cannot start until that line is fixed.",
                       file=found.group("file"), line=found.group("line"), unit=unit)
            return


@analyzer("web.php_fpm_log", facts=("fpm_max_children", "fpm_children_killed"),
          codes=("fpm_busy", "fpm_children_killed", "fpm_max_children", "no_data", "php_fpm_config_error"))
def php_fpm_log(output: Output, facts: Facts) -> Analysis:
    """PHP-FPM's log: max_children reached, children killed, pool configuration errors."""
    if failed := failure(output):
        return failed
    if empty := no_data(output, "PHP-FPM's log"):
        return empty
    lines = hp.parse_fpm_log(output.text)
    unit = str(output.params.get("path", "php-fpm")).rsplit("/", 1)[-1].removesuffix(".log")
    result = Analysis(summary=f"{len(lines)} PHP-FPM log lines")
    _fpm_errors(result, lines, unit)
    reached = [(m, ln) for ln in lines if (m := hp.FPM_MAX_CHILDREN.search(ln.message))]
    if reached:
        m, last = reached[-1]
        result.facts["fpm_max_children"] = int(m.group("max"))
        result.add("fpm_max_children", Severity.PROBLEM,
                   f"Pool {m.group('pool')} reached pm.max_children ({m.group('max')}) {len(reached)} times: requests "
                   f"queue and time out as 502/504. Last: \"{last.raw}\"", pool=m.group("pool"), max=m.group("max"))
    killed = [(m, ln) for ln in lines if (m := hp.FPM_SIGNAL.search(ln.message))]
    if killed:
        m, last = killed[-1]
        result.facts["fpm_children_killed"] = len(killed)
        why = " (SIGKILL: usually the kernel's OOM killer)" if m.group("name") == "SIGKILL" else ""
        result.add("fpm_children_killed", Severity.PROBLEM,
                   f"{len(killed)} PHP-FPM children died on signal {m.group('name')}{why}. Last: \"{last.raw}\"")
    busy = [ln for ln in lines if "seems busy" in ln.message]
    if busy and not reached:
        result.add("fpm_busy", Severity.INFO, f"PHP-FPM reports its pool busy {len(busy)} times: \"{busy[-1].raw}\"")
    return result


@analyzer("web.namei", codes=("path_permission_denied", "path_permissions_ok"))
def namei(output: Output, facts: Facts) -> Analysis:
    """``namei -l PATH``: can the web server's user reach and use the path (a socket, a document root)?"""
    if failed := failure(output):
        return failed
    target, entries = hp.parse_namei(output.stdout)
    if not entries:
        return Analysis(summary="no path components in the output")
    user = str(facts.get("web_user") or "")
    last = entries[-1]
    result = Analysis(summary=f"{target or last.name}: {last.mode} {last.owner}:{last.group}")
    if not user:
        return result
    if user == "root":
        return result
    blocked = [e for e in entries[:-1] if e.mode[9] not in "xt" and user not in (e.owner, e.group)]
    other = last.mode[7:9]
    needs = "rw" if last.mode[0] == "s" else "r"
    if blocked or (user not in (last.owner, last.group) and not all(ch in other for ch in needs)):
        where = blocked[0] if blocked else last
        result.add("path_permission_denied", Severity.CAUSE,
                   f"The web server runs as {user}, but {target or last.name} is {last.mode} {last.owner}:{last.group}"
                   + (f" (the folder {where.name} is {where.mode} {where.owner}:{where.group})" if blocked else "")
                   + f": {user} is neither its owner nor in its group and others may not {needs}, so access fails "
                   "with Permission denied (13). That is a permission problem, not a stopped service: make the owner/"
                   f"group match (e.g. listen.owner/listen.group = {user} in the PHP-FPM pool) or add {user} to the group.",
                   path=target or last.name, user=user)
    else:
        result.add("path_permissions_ok", Severity.INFO, f"{user} can reach {target or last.name} ({last.mode} {last.owner}:{last.group}).")
    return result


@analyzer("web.access_log", codes=("access_5xx", "access_summary", "no_data"))
def access_log(output: Output, facts: Facts) -> Analysis:
    """An access log: status codes, top clients and paths (for "the site is slow / throws errors")."""
    if failed := failure(output):
        return failed
    if empty := no_data(output, "the access log"):
        return empty
    requests = hp.parse_access_log(output.text)
    if not requests:
        return Analysis(summary="no requests in a known access-log format")
    classes = Counter(f"{r.status // 100}xx" for r in requests)
    statuses = Counter(r.status for r in requests)
    clients = Counter(r.client for r in requests).most_common(3)
    paths = Counter(r.path for r in requests).most_common(3)
    result = Analysis(summary=", ".join(f"{c} {n}" for c, n in sorted(classes.items())))
    result.add("access_summary", Severity.INFO,
               f"The last {len(requests)} requests: " + ", ".join(f"{s}: {n}" for s, n in statuses.most_common(6))
               + "; top clients " + ", ".join(f"{c} ({n})" for c, n in clients)
               + "; top paths " + ", ".join(f"{p} ({n})" for p, n in paths) + ".")
    errors = classes.get("5xx", 0)
    if errors * 20 > len(requests):
        result.add("access_5xx", Severity.PROBLEM,
                   f"{errors} of the last {len(requests)} requests ({errors * 100 // len(requests)}%) failed with 5xx.")
    return result
