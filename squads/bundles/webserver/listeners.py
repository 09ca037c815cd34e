""""Connection refused" read from the evidence: which ports the web server should answer on, whether
anything listens there, and whether the server runs at all (``ss -ltnp`` with ``ps`` or ``systemctl``).

A refused connection is the kernel answering for a port no process listens on. When the listeners
show nothing on the ports in question and the processes (or systemd) show the server stopped, the
cause is the stopped server, never an application behind it.
"""

from __future__ import annotations

from squads.brain.models import Analysis, Facts, Severity
from squads.brain.parsers import system as sp

DEFAULT_PORTS = (80, 443)
SERVER_NAMES = ("nginx", "apache2", "httpd")
STOPPED_STATES = ("inactive", "failed")


def stopped_by(facts: Facts) -> str | None:
    """How the evidence shows the web server stopped ("no nginx process runs"), or None."""
    server = str(facts.get("server") or "the web server")
    if facts.get("server_stopped"):
        return f"ps shows no {server} process"
    state = str(facts.get("server_active") or "")
    if state in STOPPED_STATES:
        return f"systemd reports it {state}"
    return None


def asked_ports(facts: Facts) -> list[int]:
    """Ports the user named (host:port, URLs), except those the server proxies to (those are backends)."""
    backends = {str(t).rpartition(":")[2] for t in [*facts.get("upstreams", []), *facts.get("config_upstreams", [])]}
    ports: list[int] = []
    for port in facts.get("asked_ports", []) or []:
        if str(port).isdigit() and str(port) not in backends and int(port) not in ports:
            ports.append(int(port))
    return ports


def server_ports(socks: list[sp.Socket]) -> list[int]:
    """The ports a web server process listens on, as ``ss -p`` shows them."""
    return sorted({s.port for s in socks if s.port and any(p.name in SERVER_NAMES for p in s.processes)})


def not_listening(result: Analysis, socks: list[sp.Socket], facts: Facts) -> bool:
    """Add the finding for ports nothing listens on; whether the server itself is the cause (stopped)."""
    asked = asked_ports(facts)
    ports = asked or list(DEFAULT_PORTS)
    if any(sp.listening_on(socks, port) for port in ports):
        return False
    where = "/".join(f":{p}" for p in ports)
    server = str(facts.get("server") or "the web server")
    stopped = stopped_by(facts)
    if stopped:
        result.add(
            "server_not_listening", Severity.CAUSE,
            f"Nothing is listening on {where} and {server} is not running ({stopped}). That is why clients get "
            "\"connection refused\": the kernel refuses connections to a port no process listens on, so no request "
            f"reaches {server} or anything behind it. Start {server} once its configuration test passes (a start "
            "is a state change and needs approval).",
            port=where, server=server,
        )
        return True
    if not asked:
        return False  # the default ports only: the server may well be configured on others
    running = facts.get("server_processes") or facts.get("server_active") == "active"
    elsewhere = [p for p in server_ports(socks) if p not in ports]
    if running:
        instead = f"it listens on {', '.join(f':{p}' for p in elsewhere)} instead" if elsewhere else "it listens elsewhere"
        text = (f"Nothing is listening on {where}, the port you named, although {server} runs: {instead}. Connections "
                f"to {where} are refused until a `listen` directive for that port is loaded (test, then reload).")
    else:
        text = (f"Nothing is listening on {where}, the port you named: connections there are refused by the kernel. "
                f"Whatever should serve it is not running or listens on another port.")
    result.add("port_not_listening", Severity.CAUSE if running else Severity.PROBLEM, text, port=where, server=server)
    return False
