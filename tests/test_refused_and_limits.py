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
        "config_dump": (0, "# configuration file /etc/nginx/nginx.conf:\nhttp {\n    server {\n        listen 80;\n"
                           "        location / {\n            proxy_pass http://127.0.0.1:8080;\n        }\n    }\n}\n",
                        "nginx: the configuration file /etc/nginx/nginx.conf syntax is ok\n"),
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



def test_a_502_question_about_a_stopped_server_without_systemd_does_not_blame_the_backend() -> None:
    steps = drive(SQUADS["webserver"], "users get 502 bad gateway from nginx", State(), _web_host)
    ran = [c.tool for c in calls(steps)]
    assert ran[:2] == ["service_status", "processes"] and "listening_sockets" in ran, ran
    assert ran.index("listening_sockets") > ran.index("error_log"), ran  # the listeners are read knowing the upstreams
    reply = says(steps)
    headline = reply.strip().splitlines()[0]
    assert "Nothing is listening on :80/:443 and nginx is not running" in headline, reply
    assert "Nothing is listening on 127.0.0.1:8080" in reply and "it is stopped itself" in reply


# -- a database's and a role's own connection limits -----------------------------------------------
DB = load_analyzers(BUILTIN_BUNDLES / "database")
LIMITS_SQL = ["psql", "-X", "-A", "-F", "|", "-P", "footer=off", "-c", "SELECT 'database' AS kind ..."]
LIMITS = """\
kind|name|conn_limit|connections
database|postgres|-1|1
database|reports|10|3
database|shopdb|1|1
database|template1|-1|0
role|postgres|-1|1
role|reporting|5|5
role|shop|-1|1
"""


def pg(name: str, stdout: str, facts: Mapping[str, object] | None = None, *, exit_code: int = 0,
       stderr: str = "") -> Analysis:
    return DB[name].fn(Output(argv=LIMITS_SQL, exit_code=exit_code, stdout=stdout, stderr=stderr), dict(facts or {}))


def test_a_database_and_a_role_at_their_own_limit_are_causes() -> None:
    result = pg("pg.connection_limits", LIMITS, {"max_connections": 100, "limit_object": "shopdb"})
    reached = [f for f in result.findings if f.code == "conn_limit_reached"]
    # The one the user's error names comes last, so it leads the reply.
    reached.reverse()
    assert [f.data["name"] for f in reached] == ["shopdb", "reporting"] and result.facts["limits_reached"] == ["reporting", "shopdb"]
    assert all(f.severity is Severity.CAUSE for f in reached)
    assert reached[0].text.startswith("Database shopdb has a connection limit of its own: datconnlimit = 1 (CONNECTION "
                                      "LIMIT 1), and 1 client connection is open to it now")
    assert "although max_connections (100) has room" in reached[0].text and "ALTER DATABASE shopdb" in reached[0].text
    assert "rolconnlimit = 5" in reached[1].text and "5 client connections are open as it" in reached[1].text
    assert "ALTER ROLE reporting" in reached[1].text
    assert text(result, "conn_limits") == "Own connection limits not reached now: database reports: 10 (3 now)."
    assert result.summary == "own limits: database reports 3/10; database shopdb 1/1; role reporting 5/5"


def test_the_named_object_is_explained_when_it_is_not_full_now() -> None:
    near = pg("pg.connection_limits", LIMITS, {"limit_object": "reports"})
    assert "datconnlimit = 10, and 3 client connections are open now. It is not full at this moment" in text(near, "conn_limit_near")
    assert codes(near)["conn_limit_near"] is Severity.PROBLEM
    unlimited = pg("pg.connection_limits", LIMITS, {"limit_object": "shop"})
    assert "Role shop has no connection limit of its own now (rolconnlimit = -1" in text(unlimited, "conn_limit_none")
    missing = pg("pg.connection_limits", LIMITS, {"limit_object": "billing"})
    assert text(missing, "conn_limit_none").startswith("No database or login role named billing exists on this server")


def test_no_limits_anywhere_is_data_and_an_empty_or_failed_query_is_not() -> None:
    plain = pg("pg.connection_limits", "kind|name|conn_limit|connections\ndatabase|postgres|-1|2\nrole|postgres|-1|2\n")
    assert plain.summary == "no database or role has a connection limit of its own (2 checked)" and not plain.findings
    assert "no_data" in codes(pg("pg.connection_limits", "kind|name|conn_limit|connections\n"))
    down = pg("pg.connection_limits", "", exit_code=2, stderr='psql: error: connection to server on socket '
              '"/var/run/postgresql/.s.PGSQL.5432" failed: No such file or directory\n')
    assert down.facts.get("server_down") is True and "server_unreachable" in codes(down)


def test_the_limit_named_in_a_message_is_taken_and_odd_names_are_skipped_not_refused() -> None:
    from squads.brain import extract as ex

    slots = SQUADS["database"].playbook().slots
    assert ex.extract('FATAL:  too many connections for database "shopdb"', slots).values == {"limit_object": "shopdb"}
    assert ex.extract("too many connections for role reporting.", slots).values == {"limit_object": "reporting"}
    odd = ex.extract('too many connections for database "sh;op$(id)"', slots)
    assert odd.values == {} and odd.errors == {}


def _pg_host(call: Call) -> CallResult:
    """A server whose own log says nothing about the limit (it logs elsewhere): only the check can tell."""
    argv = render(SQUADS["database"].tool(call.tool), call.params) if call.tool else list(call.argv or [])
    outputs = {
        "max_connections": "max_connections\n100\n",
        "clusters": ("Ver Cluster Port Status Owner    Data directory              Log file\n"
                     "16  main    5432 online postgres /var/lib/postgresql/16/main /var/log/postgresql/postgresql-16-main.log\n"),
        "server_log": "2026-12-07 11:00:01.114 UTC [881] LOG:  checkpoint starting: time\n",
        "connections": ("datname|usename|application_name|state|connections|longest_in_state\n"
                        "shopdb|shop|shop-worker|idle|1|00:12:41.118\npostgres|postgres|psql|active|1|00:00:00\n"),
        "connection_limits": LIMITS,
    }
    out = outputs.get(str(call.tool))
    return CallResult(status="ran", argv=argv, tool=call.tool, exit_code=0 if out is not None else 127,
                      stdout=out or "", stderr="" if out is not None else "not recorded", node="n1", agent="a")


def test_too_many_connections_for_a_database_checks_its_own_limit() -> None:
    steps = drive(SQUADS["database"], 'The shop app fails with: FATAL: too many connections for database "shopdb". Why?',
                  State(), _pg_host)
    assert "connection_limits" in [c.tool for c in calls(steps)]
    reply = says(steps)
    headline = reply.strip().splitlines()[0]
    assert "Database shopdb has a connection limit of its own: datconnlimit = 1" in headline, reply
    assert "ALTER DATABASE shopdb CONNECTION LIMIT n: a change you run yourself" in reply
