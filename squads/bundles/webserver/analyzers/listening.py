"""Reading ``ss -ltnp`` for the web server: its upstreams, its own ports, a loopback-only bind."""

from __future__ import annotations

import re

from squads.brain.analyzers import Output, analyzer
from squads.brain.analyzers.common import failure
from squads.brain.models import Analysis, Facts, Severity
from squads.brain.parsers import system as sp

from .. import listeners as refused

APP_SERVERS = {"gunicorn", "uwsgi", "uvicorn", "python", "python3", "node", "java", "puma", "unicorn", "php-fpm",
               "php-fpm8.2", "php-fpm8.1", "dotnet", "ruby", "hypercorn", "daphne", "waitress-serve", "deno", "bun"}


@analyzer(
    "web.sockets",
    facts=("dead_upstreams",),
    codes=("https_not_listening", "listen_loopback_only", "port_not_listening", "server_not_listening", "upstream_down", "upstream_listening",
           "upstream_port_mismatch", "upstream_recovered", "upstream_remote", "upstream_slow"),
)
def sockets(output: Output, facts: Facts) -> Analysis:
    """``ss -ltnp``: is anything listening where the server proxies to, and on the server's own ports."""
    if failed := failure(output):
        return failed
    socks = sp.parse_ss(output.stdout)
    ports = sorted({s.port for s in socks if s.port is not None})
    result = Analysis(summary="listening on " + ", ".join(str(p) for p in ports))
    _loopback_only(result, socks)
    _https_port(result, socks, ports, facts)
    stopped = refused.stopped_by(facts)
    checked: set[str] = set()
    for target in [*facts.get("upstreams", []), *facts.get("config_upstreams", [])]:
        host, _, port = str(target).rpartition(":")
        if not port.isdigit() or target in checked:
            continue
        checked.add(target)
        if not on_this_host(host, socks):
            # ss lists this host's sockets only: another host's listeners (or their absence) are not in it.
            result.add(
                "upstream_remote", Severity.INFO,
                f"{target}, the upstream, is not this host's loopback nor an address it listens on, so this host's "
                f"listeners (ss) cannot tell whether anything listens there. Check on {host} itself (`ss -ltnp` "
                "there) and whether this host can reach it.",
                upstream=target,
            )
            continue
        listeners = sp.listening_on(socks, int(port), host or None)
        if listeners:
            names = ", ".join(f"{p.name} (pid {p.pid})" for s in listeners for p in s.processes) or "a process"
            if facts.get("upstream_slow"):
                timeout = facts.get("proxy_read_timeout", "60s (the default)")
                result.add(
                    "upstream_slow", Severity.CAUSE,
                    f"{names} listens on {target}, so the backend is up but slow: it does not send its response "
                    f"headers within proxy_read_timeout {timeout}, and the web server gives up with 504 Gateway "
                    "Time-out. Look at the backend's own latency (its logs, database, CPU) rather than restarting the proxy.",
                    upstream=target,
                )
            elif facts.get("errors_stopped_at") and not refused.stopped_by(facts):
                result.add(
                    "upstream_recovered", Severity.OK,
                    f"{names} listens on {target}, the upstream, again and no error was logged after "
                    f"{facts['errors_stopped_at']}: the backend recovered (restarted or redeployed then) and the site "
                    "is healthy now. The errors in the log are history; nothing needs a restart.",
                    upstream=target,
                )
            else:
                result.add("upstream_listening", Severity.INFO, f"{names} listens on {target}, the upstream.")
        else:
            result.facts["dead_upstreams"] = [target]
            near = [
                s_ for s_ in socks
                if s_.port and s_.port != int(port) and abs(s_.port - int(port)) <= 10
                and any(p.name in APP_SERVERS for p in s_.processes)
            ]
            if near:
                other = near[0]
                names = ", ".join(f"{p.name} (pid {p.pid})" for p in other.processes)
                result.add(
                    "upstream_port_mismatch", Severity.CAUSE,
                    f"Nothing is listening on {target}, the upstream the web server proxies to, but {names} listens on "
                    f"{other.local_address}:{other.port}: the application and the proxy configuration disagree on the "
                    f"port. Point the upstream at port {other.port} (or the app at {port}).",
                    upstream=target, port=port,
                )
                continue
            # With the web server itself stopped, clients get "connection refused", not 502: the dead
            # backend matters once the server runs again, it is not the cause of what they see now.
            result.add(
                "upstream_down", Severity.PROBLEM if stopped else Severity.CAUSE,
                f"Nothing is listening on {target}: the upstream the server proxies to is down, so connections are "
                f"refused and clients get 502 Bad Gateway. Start (or fix) the application that should listen on port {port}."
                + (" That matters once the web server runs again: it is stopped itself." if stopped else ""),
                upstream=target, port=port,
            )
    refused.not_listening(result, socks, facts)  # last: among equal causes the later finding leads
    return result


WEB_PORTS = (80, 443, 8443)
LOOPBACK = ("127.", "[::1]", "::1", "localhost")
LOCAL_NAMES = ("localhost", "::1", "0.0.0.0", "::", "*")  # a connection to a wildcard address stays on this host


def on_this_host(host: str, socks: list[sp.Socket]) -> bool:
    """Whether ``host`` is an address of this machine as far as ``ss`` shows: empty (the port alone),
    loopback, a wildcard, or an address one of its sockets is bound to. A name or any other address may
    be another machine, whose listeners this host's ``ss`` cannot see."""
    bare = host.strip("[]").lower().removeprefix("::ffff:")
    if not bare or bare.startswith("127.") or bare in LOCAL_NAMES:
        return True
    bound = {s.local_address.split("%", 1)[0].strip("[]").lower().removeprefix("::ffff:") for s in socks}
    return bare in bound


def _loopback_only(result: Analysis, socks: list[sp.Socket]) -> None:
    """A web server bound to 127.0.0.1/::1 only: it works from the box (curl localhost) and refuses everyone else."""
    for port in WEB_PORTS:
        bound = [s for s in socks if s.port == port and any(p.name in ("nginx", "apache2", "httpd") for p in s.processes)]
        if bound and all(s.local_address.startswith(LOOPBACK) for s in bound):
            name = bound[0].processes[0].name
            result.add(
                "listen_loopback_only", Severity.CAUSE,
                f"{name} listens on port {port} only on {', '.join(sorted({s.local_address for s in bound}))} "
                "(localhost, the loopback interface): requests from the box itself work, every other client gets "
                f"connection refused. Make it listen on all addresses (nginx: `listen {port};` instead of "
                f"`listen 127.0.0.1:{port};`; Apache: `Listen {port}`), test the configuration and reload.",
                port=port, server=name,
            )



HTTPS_WORDS = re.compile(r"\b(?:https|ssl|tls|443)\b")


def _https_port(result: Analysis, socks: list[sp.Socket], ports: list[int], facts: Facts) -> None:
    """An HTTPS complaint on a host where nothing listens on 443: HTTPS cannot work whatever the certificate."""
    if not HTTPS_WORDS.search(str(facts.get("message", ""))) or 443 in ports:
        return
    web = sorted({s_.port for s_ in socks if s_.port and any(p.name in ("nginx", "apache2", "httpd") for p in s_.processes)})
    only = f"the web server listens only on {', '.join(map(str, web))}" if web else "no web server socket is on 443"
    certs = facts.get("certificates")
    loaded = " and the loaded configuration names no ssl_certificate" if certs == [] else ""
    result.add(
        "https_not_listening", Severity.CAUSE,
        f"Nothing is listening on port 443: {only}{loaded}. HTTPS connections hang or are refused before any "
        "certificate is sent, so this is not the certificate. The HTTPS server block (listen 443 ssl) is not "
        "enabled: its site file is not linked into sites-enabled (or not included), or it lacks listen 443 ssl. "
        "Enable it, run the config test, then reload the server; check the firewall only if 443 then listens.",
    )
