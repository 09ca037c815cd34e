"""Issue 12 §5 on recorded outputs: "connection refused" read from the listeners and processes (a stopped
web server, never a backend), and "too many connections for database X" read as the database's own limit.

The outputs are real ones (ss -ltnp, ps -eo ..., systemctl without systemd, psql -A) from lab machines.
"""

from __future__ import annotations

from collections.abc import Mapping

from squads.brain.actions import Call, CallResult
from squads.brain.analyzers import Output
from squads.brain.models import Analysis, Severity
from squads.brain.service import State
from squads.bundle_code import load_analyzers
from squads.grants import BUILTIN_BUNDLES
from squads.service import load_squads
from tests.test_brain import calls, drive, says
from tools.service import render

SQUADS = load_squads()
WEB = load_analyzers(BUILTIN_BUNDLES / "webserver")

SS_NO_WEB = """\
State  Recv-Q Send-Q Local Address:Port  Peer Address:PortProcess
LISTEN 0      4096   127.0.0.53%lo:53         0.0.0.0:*    users:(("systemd-resolve",pid=611,fd=14))
LISTEN 0      128          0.0.0.0:22         0.0.0.0:*    users:(("sshd",pid=801,fd=3))
LISTEN 0      244        127.0.0.1:5432       0.0.0.0:*    users:(("postgres",pid=2228,fd=5))
"""
SS_NGINX = SS_NO_WEB + """\
LISTEN 0      511          0.0.0.0:80         0.0.0.0:*    users:(("nginx",pid=2212,fd=6),("nginx",pid=2211,fd=6))
LISTEN 0      511          0.0.0.0:443        0.0.0.0:*    users:(("nginx",pid=2212,fd=7),("nginx",pid=2211,fd=7))
"""
PS_NO_WEB = """\
    PID    PPID USER         ELAPSED COMMAND
      1       0 root        02:11:32 /sbin/docker-init -- sleep infinity
    611       1 systemd+    02:11:30 /lib/systemd/systemd-resolved
    801       1 root        02:11:29 sshd: /usr/sbin/sshd -D [listener] 0 of 10-100 startups
   2228       1 postgres    02:10:02 /usr/lib/postgresql/15/bin/postgres -D /var/lib/postgresql/15/main
"""
PS_NGINX = PS_NO_WEB + """\
   2211       1 root           05:12 nginx: master process /usr/sbin/nginx -g daemon on; master_process on;
   2212    2211 www-data       05:12 nginx: worker process
"""
NO_SYSTEMD = ("System has not been booted with systemd as init system (PID 1). Can't operate.\n"
              "Failed to connect to bus: Host is down\n")
OLD_502 = ('2026/11/25 22:10:01 [error] 2212#2212: *17 connect() failed (111: Connection refused) while connecting to '
           'upstream, client: 10.0.0.7, server: shop, request: "GET / HTTP/1.1", upstream: "http://127.0.0.1:8080/", '
           'host: "shop"\n')


def web(name: str, stdout: str, facts: Mapping[str, object] | None = None, argv: list[str] | None = None) -> Analysis:
    return WEB[name].fn(Output(argv=argv or ["ss", "-ltnp"], exit_code=0, stdout=stdout, stderr=""), dict(facts or {}))


def codes(result: Analysis) -> dict[str, Severity]:
    return {f.code: f.severity for f in result.findings}


def text(result: Analysis, code: str) -> str:
    return next(f.text for f in result.findings if f.code == code)


# -- the web server's own ports --------------------------------------------------------------------
def test_processes_without_a_web_server_set_server_stopped() -> None:
    stopped = web("web.processes", PS_NO_WEB, argv=["ps", "-eo", "pid,ppid,user,etime,args"])
    running = web("web.processes", PS_NGINX, argv=["ps", "-eo", "pid,ppid,user,etime,args"])
    assert stopped.facts.get("server_stopped") is True and "server_not_running" in codes(stopped)
    assert "server_stopped" not in running.facts and running.facts["server_processes"] == ["nginx"]


def test_nothing_on_80_443_and_no_process_is_a_stopped_server() -> None:
    result = web("web.sockets", SS_NO_WEB, {"server": "nginx", "server_stopped": True})
    assert codes(result) == {"server_not_listening": Severity.CAUSE}
    found = text(result, "server_not_listening")
    assert found.startswith("Nothing is listening on :80/:443 and nginx is not running (ps shows no nginx process)")
    assert "connection refused" in found and "upstream" not in found


def test_systemd_inactive_counts_as_stopped_too() -> None:
    result = web("web.sockets", SS_NO_WEB, {"server": "apache2", "server_active": "inactive"})
    assert "apache2 is not running (systemd reports it inactive)" in text(result, "server_not_listening")


def test_the_port_the_user_named_is_the_one_checked() -> None:
    stopped = web("web.sockets", SS_NGINX, {"server": "nginx", "server_stopped": True, "asked_ports": [8443]})
    assert text(stopped, "server_not_listening").startswith("Nothing is listening on :8443 ")
    running = web("web.sockets", SS_NGINX, {"server": "nginx", "server_processes": ["nginx"], "asked_ports": [8443]})
    assert codes(running) == {"port_not_listening": Severity.CAUSE}
    assert "although nginx runs: it listens on :80, :443 instead" in text(running, "port_not_listening")


def test_a_listener_on_the_port_or_an_unknown_state_concludes_nothing() -> None:
    assert not web("web.sockets", SS_NGINX, {"server": "nginx", "server_stopped": True}).findings
    # systemd and ps were not asked: the server may be configured on other ports than 80/443.
    assert not web("web.sockets", SS_NO_WEB, {"server": "nginx"}).findings
    # A port the configuration proxies to is a backend, not the server's own port.
    backend = web("web.sockets", SS_NO_WEB, {"server": "nginx", "server_processes": ["nginx"], "asked_ports": [8080],
                                             "config_upstreams": ["127.0.0.1:8080"]})
    assert "port_not_listening" not in codes(backend) and "upstream_down" in codes(backend)


def test_a_dead_backend_does_not_lead_while_the_server_itself_is_stopped() -> None:
    result = web("web.sockets", SS_NO_WEB, {"server": "nginx", "server_stopped": True, "upstreams": ["127.0.0.1:8080"]})
    assert codes(result) == {"upstream_down": Severity.PROBLEM, "server_not_listening": Severity.CAUSE}
    assert "it is stopped itself" in text(result, "upstream_down")


def _web_host(call: Call) -> CallResult:
    """A container host: no systemd, nginx stopped, an old 502 in its error log."""
    argv = render(SQUADS["webserver"].tool(call.tool), call.params) if call.tool else list(call.argv or [])
    outputs = {
        "service_status": (1, "", NO_SYSTEMD),
        "processes": (0, PS_NO_WEB, ""),
        "listening_sockets": (0, SS_NO_WEB, ""),
        "config_test": (0, "", "nginx: the configuration file /etc/nginx/nginx.conf syntax is ok\n"
                               "nginx: configuration file /etc/nginx/nginx.conf test is successful\n"),
        "error_log": (0, OLD_502, ""),
        "disk_usage": (0, "Filesystem      Size  Used Avail Use% Mounted on\n/dev/vda1        40G   11G   27G  29% /\n", ""),
    }
    code, out, err = outputs.get(str(call.tool), (127, "", "not recorded"))
    return CallResult(status="ran", argv=argv, tool=call.tool, exit_code=code, stdout=out, stderr=err, node="n1", agent="a")


def test_connection_refused_on_a_host_without_systemd_names_the_stopped_server() -> None:
    steps = drive(SQUADS["webserver"], "curl http://web-1:80/ says connection refused, the site is down", State(), _web_host)
    ran = [c.tool for c in calls(steps)]
    assert ran[:4] == ["service_status", "processes", "listening_sockets", "config_test"], ran
    reply = says(steps)
    headline = reply.strip().splitlines()[0]
    assert "Nothing is listening on :80 and nginx is not running" in headline and "upstream" not in headline, reply
    assert "Start nginx once its configuration test passes" in reply
