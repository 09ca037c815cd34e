"""Tests for the text parsers in squads.brain.parsers.logs and .system, and squads.bundles.database.postgres."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from hypothesis import given
from hypothesis import strategies as st

from squads.brain.parsers.logs import (
    ConfigError,
    Upstream,
    find_host_ports,
    parse_apache_error,
    parse_config_errors,
    parse_nginx_error,
    parse_pg_log,
    parse_syslog,
    parse_upstream,
    ssh_events,
)
from squads.bundles.database.postgres import format_duration, parse_interval, parse_lsclusters, parse_unaligned
from squads.brain.parsers.system import (
    Process,
    listening_on,
    parse_df,
    parse_du,
    parse_last,
    parse_openssl_x509,
    parse_passwd,
    parse_paths,
    parse_ss,
    parse_sshd_config,
    parse_systemctl_status,
    size_bytes,
)

# --- nginx ------------------------------------------------------------------------------

NGINX_REFUSED = (
    "2026/11/26 14:02:17 [error] 813#813: *48211 connect() failed (111: Connection refused) while connecting to "
    'upstream, client: 198.51.100.23, server: shop.example.com, request: "GET / HTTP/1.1", '
    'upstream: "http://127.0.0.1:8000/", host: "shop.example.com"'
)


def test_nginx_connection_refused() -> None:
    e = parse_nginx_error(NGINX_REFUSED)
    assert e is not None
    assert (e.time, e.level, e.pid) == ("2026/11/26 14:02:17", "error", 813)
    assert e.message == "connect() failed (111: Connection refused) while connecting to upstream"
    assert (e.client, e.server, e.request) == ("198.51.100.23", "shop.example.com", "GET / HTTP/1.1")
    assert (e.upstream, e.host) == ("http://127.0.0.1:8000/", "shop.example.com")


def test_nginx_other_error_shapes() -> None:
    timeout = parse_nginx_error(
        "2026/11/26 14:05:01 [error] 814#814: *50001 upstream timed out (110: Connection timed out) while reading "
        'response header from upstream, client: 203.0.113.9, server: shop.example.com, request: "GET /a, b HTTP/1.1", '
        'upstream: "http://10.0.0.5:8080/a", host: "shop.example.com", referrer: "https://shop.example.com/"'
    )
    assert timeout is not None and timeout.message.startswith("upstream timed out (110: Connection timed out)")
    assert timeout.request == "GET /a, b HTTP/1.1" and timeout.upstream == "http://10.0.0.5:8080/a"
    no_live = parse_nginx_error(
        "2026/11/26 14:05:02 [error] 814#814: *50002 no live upstreams while connecting to upstream, "
        'client: 203.0.113.9, server: _, request: "GET / HTTP/1.1", upstream: "http://backend/", host: "x"'
    )
    assert no_live is not None and no_live.message == "no live upstreams while connecting to upstream"
    emerg = parse_nginx_error(
        '2026/11/26 09:41:03 [emerg] 20117#20117: unknown directive "proxy_passs" in /etc/nginx/sites-enabled/shop.conf:14'
    )
    assert emerg is not None and emerg.level == "emerg" and emerg.client == ""
    assert emerg.message == 'unknown directive "proxy_passs" in /etc/nginx/sites-enabled/shop.conf:14'
    denied = parse_nginx_error(
        '2026/11/26 10:00:00 [crit] 900#900: *7 open() "/var/www/shop/index.html" failed (13: Permission denied), '
        'client: 192.0.2.1, server: shop.example.com, request: "GET / HTTP/1.1", host: "shop.example.com"'
    )
    assert denied is not None and denied.message.endswith("failed (13: Permission denied)") and denied.upstream == ""
    full = parse_nginx_error(
        '2026/11/26 10:00:01 [alert] 900#900: *8 write() to "/var/log/nginx/access.log" failed (28: No space left on device)'
    )
    assert full is not None and full.level == "alert" and "(28: No space left on device)" in full.message
    warn = parse_nginx_error("2026/11/26 10:00:02 [warn] 1#1: conflicting server name \"x\" on 0.0.0.0:80, ignored")
    assert warn is not None and warn.pid == 1 and warn.message.endswith("ignored")
    assert parse_nginx_error("Nov 26 09:41:03 web-2 systemd[1]: Started nginx.") is None


# --- Apache ------------------------------------------------------------------------------


def test_apache_errors() -> None:
    refused = parse_apache_error(
        "[Thu Nov 26 14:02:17.123456 2026] [proxy:error] [pid 1234:tid 140] (111)Connection refused: AH00957: "
        "http: attempt to connect to 127.0.0.1:8080 (127.0.0.1:8080) failed"
    )
    assert refused is not None
    assert (refused.time, refused.module, refused.level, refused.pid) == (
        "Thu Nov 26 14:02:17.123456 2026", "proxy", "error", 1234)
    assert refused.code == "AH00957"
    assert refused.message == "(111)Connection refused: http: attempt to connect to 127.0.0.1:8080 (127.0.0.1:8080) failed"
    backend = parse_apache_error(
        "[Thu Nov 26 14:02:17.124001 2026] [proxy_http:error] [pid 1234] [client 198.51.100.7:50122] AH01114: "
        "HTTP: failed to make connection to backend: 127.0.0.1"
    )
    assert backend is not None and backend.client == "198.51.100.7" and backend.code == "AH01114"
    assert backend.message == "HTTP: failed to make connection to backend: 127.0.0.1"
    syntax = parse_apache_error(
        "[Thu Nov 26 14:00:00.000001 2026] [core:emerg] [pid 1] AH00526: Syntax error on line 14 of "
        "/etc/apache2/sites-enabled/shop.conf:"
    )
    assert syntax is not None and (syntax.module, syntax.level, syntax.code) == ("core", "emerg", "AH00526")
    old = parse_apache_error("[Thu Nov 26 14:02:17 2026] [error] [client 192.0.2.4] File does not exist: /var/www/x")
    assert old is not None and (old.module, old.level, old.client, old.pid) == ("", "error", "192.0.2.4", None)
    assert parse_apache_error(NGINX_REFUSED) is None


# --- addresses ---------------------------------------------------------------------------


def test_parse_upstream() -> None:
    assert parse_upstream("http://127.0.0.1:8000/cart") == Upstream("http", "127.0.0.1", 8000)
    assert parse_upstream("127.0.0.1:8080") == Upstream("", "127.0.0.1", 8080)
    assert parse_upstream("[::1]:9000") == Upstream("", "::1", 9000)
    assert parse_upstream("unix:/run/app.sock") == Upstream("unix", "/run/app.sock", None)
    assert parse_upstream("http://unix:/run/gunicorn.sock:/") == Upstream("unix", "/run/gunicorn.sock", None)
    assert parse_upstream("https://api.example.com/v1") == Upstream("https", "api.example.com", 443)
    assert parse_upstream("http://backend") == Upstream("http", "backend", 80)
    assert parse_upstream("not an address") is None
    assert parse_upstream("") is None


def test_find_host_ports() -> None:
    assert find_host_ports(
        "2026-03-07 14:23:15 [ERROR] Failed to connect to database: connection refused (postgresql://db.example.com:5432)"
    ) == [("db.example.com", 5432)]
    assert find_host_ports("dial tcp 10.96.45.201:5432: connect: connection refused") == [("10.96.45.201", 5432)]
    assert find_host_ports("Error: connect to redis-cache:6379 failed; connect to redis-cache:6379 again") == [
        ("redis-cache", 6379)
    ]
    assert find_host_ports("Error: connect ECONNREFUSED 127.0.0.1:3306 at 2026-11-26T10:15:02Z") == [("127.0.0.1", 3306)]
    noise = (
        "Nov 26 11:02:01 at 14:23:15, [pid 1234:tid 140] image postgres:16.4, listen [::1]:25 fe80::a00:27ff:fe4e:66a1 "
        "in /etc/nginx/sites-enabled/shop.conf:14 panic at main.go:42 ssh2: ED25519 SHA256:Zk3b 999.1.1.1:80"
    )
    assert find_host_ports(noise) == []


# --- configuration errors ------------------------------------------------------------------


def test_nginx_config_errors() -> None:
    text = "\n".join([
        "Nov 26 09:41:03 web-2 nginx[20117]: nginx: [emerg] unknown directive \"proxy_passs\" in "
        "/etc/nginx/sites-enabled/shop.conf:14",
        "nginx: [emerg] unknown directive \"proxy_passs\" in /etc/nginx/sites-enabled/shop.conf:14",
        "2026/11/26 09:41:03 [emerg] 20117#20117: unknown directive \"proxy_passs\" in /etc/nginx/sites-enabled/shop.conf:14",
        "nginx: configuration file /etc/nginx/nginx.conf test failed",
        'nginx: [emerg] unexpected "}" in /etc/nginx/nginx.conf:40',
        'nginx: [emerg] open() "/etc/nginx/x.conf" failed (2: No such file or directory) in /etc/nginx/nginx.conf:12',
        "nginx: [emerg] bind() to 0.0.0.0:80 failed (98: Address already in use)",
        NGINX_REFUSED,
    ])
    assert parse_config_errors(text) == [
        ConfigError("emerg", 'unknown directive "proxy_passs"', "/etc/nginx/sites-enabled/shop.conf", 14),
        ConfigError("emerg", 'unexpected "}"', "/etc/nginx/nginx.conf", 40),
        ConfigError("emerg", 'open() "/etc/nginx/x.conf" failed (2: No such file or directory)', "/etc/nginx/nginx.conf", 12),
        ConfigError("emerg", "bind() to 0.0.0.0:80 failed (98: Address already in use)", "", None),
    ]


def test_apache_config_errors() -> None:
    reason = "Invalid command 'ProxyPas', perhaps misspelled or defined by a module not included in the server configuration"
    configtest = f"AH00526: Syntax error on line 14 of /etc/apache2/sites-enabled/shop.conf:\n{reason}\nAction 'configtest' failed.\n"
    journal = (
        "Nov 26 09:41:03 web-3 apachectl[811]: AH00526: Syntax error on line 14 of /etc/apache2/sites-enabled/shop.conf:\n"
        f"Nov 26 09:41:03 web-3 apachectl[811]: {reason}\n"
    )
    other = "apache2: Syntax error on line 225 of /etc/apache2/apache2.conf: Could not open configuration file x: No such file"
    assert parse_config_errors(configtest + journal + other) == [
        ConfigError("error", reason, "/etc/apache2/sites-enabled/shop.conf", 14),
        ConfigError("error", "Could not open configuration file x: No such file", "/etc/apache2/apache2.conf", 225),
    ]


# --- syslog and sshd -------------------------------------------------------------------


def test_parse_syslog() -> None:
    line = parse_syslog("Nov 26 11:02:01 bastion-1 sshd[40112]: Invalid user admin from 203.0.113.45 port 51122")
    assert line is not None
    assert (line.time, line.host, line.program, line.pid) == ("Nov 26 11:02:01", "bastion-1", "sshd", 40112)
    assert line.message == "Invalid user admin from 203.0.113.45 port 51122"
    iso = parse_syslog("2026-11-26T11:02:01.123456+00:00 bastion-1 sshd[40112]: Connection closed")
    assert iso is not None and iso.time == "2026-11-26T11:02:01.123456+00:00" and iso.message == "Connection closed"
    kernel = parse_syslog("Nov  6 08:00:00 web-1 kernel: [12345.678] Out of memory: Killed process 812 (nginx)")
    assert kernel is not None and (kernel.program, kernel.pid) == ("kernel", None)
    systemd = parse_syslog("Nov 23 08:02:11 web-1 systemd[1]: Started A high performance web server.")
    assert systemd is not None and systemd.pid == 1
    assert parse_syslog("-- Boot 4f1c2e0b7a0d4e1f9a6b --") is None
    assert parse_syslog("-- No entries --") is None


SSHD = """\
Nov 26 11:02:01 bastion-1 sshd[40112]: Invalid user admin from 203.0.113.45 port 51122
Nov 26 11:02:01 bastion-1 sshd[40112]: Failed password for invalid user admin from 203.0.113.45 port 51122 ssh2
Nov 26 11:02:03 bastion-1 sshd[40114]: Failed password for root from 203.0.113.45 port 51130 ssh2
Nov 26 11:02:04 bastion-1 sshd[40115]: Failed publickey for deploy from 2001:db8::7 port 40000 ssh2: RSA SHA256:abc
Nov 26 11:02:05 bastion-1 sshd[40114]: error: maximum authentication attempts exceeded for root from 203.0.113.45 port 51130 ssh2 [preauth]
Nov 26 11:02:06 bastion-1 sshd[40114]: Connection closed by authenticating user root 203.0.113.45 port 51130 [preauth]
Nov 26 11:02:07 bastion-1 sshd[40117]: pam_unix(sshd:auth): authentication failure; logname= uid=0 rhost=203.0.113.45
Nov 26 11:02:08 bastion-1 sshd[40118]: message repeated 2 times: [ Failed password for root from 203.0.113.45 port 51150 ssh2]
Nov 26 11:03:02 bastion-1 sshd[40150]: Accepted publickey for deploy from 192.0.2.10 port 60122 ssh2: ED25519 SHA256:Zk3b1n
Nov 26 11:04:00 bastion-1 sshd[40160]: Accepted password for alice from 2001:db8::42 port 50000 ssh2
"""


def test_ssh_events() -> None:
    events = ssh_events(SSHD)
    assert [e.kind for e in events] == [
        "invalid_user", "failed", "failed", "failed", "max_auth", "disconnect_preauth", "failed", "failed",
        "accepted", "accepted",
    ]
    invalid, failed_invalid, failed_root, failed_key, max_auth, closed = events[:6]
    assert (invalid.user, invalid.source, invalid.port, invalid.invalid_user) == ("admin", "203.0.113.45", 51122, True)
    assert (failed_invalid.method, failed_invalid.invalid_user, failed_invalid.user) == ("password", True, "admin")
    assert (failed_root.user, failed_root.invalid_user, failed_root.time) == ("root", False, "Nov 26 11:02:03")
    assert (failed_key.method, failed_key.source, failed_key.port) == ("publickey", "2001:db8::7", 40000)
    assert (max_auth.user, max_auth.port) == ("root", 51130)
    assert (closed.user, closed.source, closed.invalid_user) == ("root", "203.0.113.45", False)
    assert (events[8].user, events[8].method, events[8].source) == ("deploy", "publickey", "192.0.2.10")
    assert (events[9].user, events[9].method, events[9].source) == ("alice", "password", "2001:db8::42")
    assert ssh_events("Connection closed by 198.51.100.9 port 4444 [preauth]")[0].user == ""


# --- PostgreSQL log ----------------------------------------------------------------------


def test_parse_pg_log() -> None:
    line = parse_pg_log("2026-11-26 10:15:02.114 UTC [88213] orders@shop FATAL:  sorry, too many clients already")
    assert line is not None
    assert (line.time, line.pid, line.user, line.database) == ("2026-11-26 10:15:02.114 UTC", 88213, "orders", "shop")
    assert (line.level, line.message) == ("FATAL", "sorry, too many clients already")
    ready = parse_pg_log("2026-11-26 10:15:02.114 UTC [88213] LOG:  database system is ready to accept connections")
    assert ready is not None and (ready.user, ready.database, ready.level) == ("", "", "LOG")
    panic = parse_pg_log(
        '2026-11-26 03:12:40.001 UTC [1201] PANIC:  could not write to file "pg_wal/xlogtemp.1201": No space left on device'
    )
    assert panic is not None and panic.level == "PANIC" and panic.message.endswith("No space left on device")
    lock = parse_pg_log(
        '2026-11-26 03:12:41.500 UTC [1] FATAL:  could not create lock file "/var/run/postgresql/.s.PGSQL.5432.lock": '
        "No space left on device"
    )
    assert lock is not None and lock.pid == 1 and "lock file" in lock.message
    for level in ("ERROR", "WARNING", "DETAIL", "HINT", "STATEMENT"):
        parsed = parse_pg_log(f"2026-11-26 10:15:02.114 UTC [5] app@db {level}:  text")
        assert parsed is not None and parsed.level == level
    assert parse_pg_log("2026/11/26 14:02:17 [error] 813#813: something") is None


# --- systemctl ----------------------------------------------------------------------------

FAILED_UNIT = """\
× nginx.service - A high performance web server and a reverse proxy server
     Loaded: loaded (/lib/systemd/system/nginx.service; enabled; vendor preset: enabled)
     Active: failed (Result: exit-code) since Thu 2026-11-26 09:41:03 UTC; 4min ago
       Docs: man:nginx(8)
    Process: 20117 ExecStartPre=/usr/sbin/nginx -t -q -g daemon on; master_process on; (code=exited, status=1/FAILURE)
        CPU: 21ms

Nov 26 09:41:03 web-2 nginx[20117]: nginx: [emerg] unknown directive "proxy_passs" in /etc/nginx/sites-enabled/shop.conf:14
Nov 26 09:41:03 web-2 systemd[1]: Failed to start A high performance web server and a reverse proxy server.
"""

RUNNING_UNIT = """\
● nginx.service - A high performance web server and a reverse proxy server
     Loaded: loaded (/lib/systemd/system/nginx.service; enabled; vendor preset: enabled)
     Active: active (running) since Mon 2026-11-23 08:02:11 UTC; 3 days ago
   Main PID: 812 (nginx)
     CGroup: /system.slice/nginx.service
             ├─812 "nginx: master process /usr/sbin/nginx -g daemon on; master_process on;"
             └─813 "nginx: worker process"
"""


def test_systemctl_status() -> None:
    failed = parse_systemctl_status(FAILED_UNIT)
    assert failed is not None
    assert (failed.unit, failed.loaded, failed.enabled) == ("nginx.service", "loaded", "enabled")
    assert (failed.active, failed.sub, failed.since) == ("failed", "Result: exit-code", "Thu 2026-11-26 09:41:03 UTC")
    assert failed.main_pid is None and len(failed.log) == 2 and "proxy_passs" in failed.log[0]
    running = parse_systemctl_status(RUNNING_UNIT)
    assert running is not None
    assert running.description == "A high performance web server and a reverse proxy server"
    assert (running.active, running.sub, running.main_pid, running.log) == ("active", "running", 812, [])
    inactive = parse_systemctl_status(
        "○ app.service - Shop app\n     Loaded: loaded (/etc/systemd/system/app.service; disabled; preset: enabled)\n"
        "     Active: inactive (dead)\n"
    )
    assert inactive is not None and (inactive.enabled, inactive.active, inactive.sub, inactive.since) == (
        "disabled", "inactive", "dead", "")
    restarting = parse_systemctl_status(
        "● app.service\n     Loaded: loaded (/etc/systemd/system/app.service; enabled)\n"
        "     Active: activating (auto-restart) (Result: exit-code) since Thu 2026-11-26 10:00:00 UTC; 2s ago\n"
    )
    assert restarting is not None and (restarting.active, restarting.sub) == ("activating", "auto-restart")
    assert restarting.since == "Thu 2026-11-26 10:00:00 UTC"
    assert parse_systemctl_status("Unit nginx.service could not be found.") is None


# --- ss -------------------------------------------------------------------------------------

SS_UDP_V6 = """\
Netid State  Recv-Q Send-Q            Local Address:Port  Peer Address:Port Process
udp   UNCONN 0      0             127.0.0.53%lo:53         0.0.0.0:*     users:(("systemd-resolve",pid=402,fd=13))
tcp   LISTEN 0      4096                      *:80               *:*     users:(("apache2",pid=900,fd=4),("apache2",pid=901,fd=4),("apache2",pid=900,fd=5))
tcp   LISTEN 0      128                    [::]:22            [::]:*     users:(("sshd",pid=640,fd=4))
tcp   LISTEN 0      100                   [::1]:25            [::]:*
tcp   LISTEN 0      511   [::ffff:127.0.0.1]:8080               *:*     users:(("java",pid=3001,fd=40))
tcp   LISTEN 0      244               127.0.0.1:5432         0.0.0.0:*
"""


def test_parse_ss_with_netid_and_ipv6() -> None:
    sockets = parse_ss(SS_UDP_V6)
    assert [(s.netid, s.state, s.local_address, s.port) for s in sockets] == [
        ("udp", "UNCONN", "127.0.0.53%lo", 53),
        ("tcp", "LISTEN", "*", 80),
        ("tcp", "LISTEN", "::", 22),
        ("tcp", "LISTEN", "::1", 25),
        ("tcp", "LISTEN", "::ffff:127.0.0.1", 8080),
        ("tcp", "LISTEN", "127.0.0.1", 5432),
    ]
    assert sockets[1].processes == [Process("apache2", 900), Process("apache2", 901)]
    assert sockets[2].peer == "[::]:*" and sockets[3].processes == []
    assert [s.port for s in listening_on(sockets, 80, "shop.example.com")] == [80]
    assert listening_on(sockets, 22, "10.0.0.4") == [sockets[2]]
    assert listening_on(sockets, 5432, "localhost") == [sockets[5]]
    assert listening_on(sockets, 5432, "10.0.0.4") == []
    assert listening_on(sockets, 8080, "127.0.0.1") == [sockets[4]]
    assert listening_on(sockets, 25, "[::1]") == [sockets[3]]
    assert listening_on(sockets, 8000) == []


def test_parse_ss_without_netid() -> None:
    text = (
        "State  Recv-Q Send-Q Local Address:Port  Peer Address:Port Process\n"
        'LISTEN 0      511          0.0.0.0:80         0.0.0.0:*     users:(("nginx",pid=814,fd=6),("nginx",pid=813,fd=6))\n'
        "LISTEN 0      128          0.0.0.0:22         0.0.0.0:*\n"
    )
    sockets = parse_ss(text)
    assert [(s.netid, s.local_address, s.port) for s in sockets] == [("", "0.0.0.0", 80), ("", "0.0.0.0", 22)]
    assert [p.pid for p in sockets[0].processes] == [814, 813]
    assert listening_on(sockets, 80, "127.0.0.1") == [sockets[0]]
    assert parse_ss("") == []


# --- df, du, sizes ----------------------------------------------------------------------------


def test_parse_df_with_wrapped_source() -> None:
    text = """\
Filesystem                          Size  Used Avail Use% Mounted on
/dev/mapper/ubuntu--vg-ubuntu--lv--very--long--name
                                     49G   47G     0 100% /
tmpfs                               1.9G     0  1.9G   0% /dev/shm
/dev/sdb1                           100G   91G  9.0G  92% /mnt/backup disk
"""
    rows = parse_df(text)
    assert [(f.source, f.size, f.used, f.available, f.use_percent, f.mount) for f in rows] == [
        ("/dev/mapper/ubuntu--vg-ubuntu--lv--very--long--name", "49G", "47G", "0", 100, "/"),
        ("tmpfs", "1.9G", "0", "1.9G", 0, "/dev/shm"),
        ("/dev/sdb1", "100G", "91G", "9.0G", 92, "/mnt/backup disk"),
    ]
    typed = parse_df("Filesystem Type 1K-blocks Used Available Use% Mounted on\n/dev/root ext4 100 60 40 60% /\n")
    assert [(f.size, f.available, f.use_percent) for f in typed] == [("100", "40", 60)]


def test_parse_du_and_sizes() -> None:
    text = "du: cannot read directory '/var/lib/x': Permission denied\n38G\t/var/lib/postgresql\n1.2G\t/var/log/my app\n"
    assert parse_du(text) == [("38G", "/var/lib/postgresql"), ("1.2G", "/var/log/my app")]
    assert size_bytes("49G") == 49 * 1024**3
    assert size_bytes("1.9G") == round(1.9 * 1024**3)
    assert size_bytes("105M") == 105 * 1024**2
    assert size_bytes("6.1M") == round(6.1 * 1024**2)
    assert size_bytes("0") == 0
    assert size_bytes("12K") == 12 * 1024
    assert size_bytes("8192 kB") == 8192 * 1024
    assert size_bytes("1234 MB") == 1234 * 1024**2
    assert size_bytes("16 GB") == 16 * 1024**3
    assert size_bytes("512 bytes") == 512
    assert size_bytes("lots") is None


@given(st.integers(min_value=1, max_value=10**6))
def test_size_bytes_monotone_on_suffixes(value: int) -> None:
    sizes = [size_bytes(f"{value}{suffix}") or 0 for suffix in ("", "K", "M", "G", "T")]
    assert 0 < sizes[0] < sizes[1] < sizes[2] < sizes[3] < sizes[4]
    # The spaced PostgreSQL spelling means the same as the df suffix.
    assert size_bytes(f"{value} MB") == sizes[2]


# --- accounts, paths, sshd, certificates, logins ------------------------------------------------


def test_parse_passwd_and_paths() -> None:
    accounts = parse_passwd(
        "root:x:0:0:root:/root:/bin/bash\n# comment\npostgres:x:106:113:PostgreSQL administrator,,,:/var/lib/postgresql:/bin/bash\n"
    )
    assert [(a.name, a.uid, a.gid, a.home, a.shell) for a in accounts] == [
        ("root", 0, 0, "/root", "/bin/bash"),
        ("postgres", 106, 113, "/var/lib/postgresql", "/bin/bash"),
    ]
    assert accounts[1].gecos == "PostgreSQL administrator,,,"
    paths = "/usr/bin/su\nfind: '/proc/1/task/1/fd': Permission denied\n/usr/bin/sudo\n\n/opt/my tool/run\n"
    assert parse_paths(paths) == ["/usr/bin/su", "/usr/bin/sudo", "/opt/my tool/run"]


def test_parse_sshd_config() -> None:
    config = parse_sshd_config(
        "port 22\nlistenaddress [::]:22\nlistenaddress 0.0.0.0:22\nPermitRootLogin yes\n"
        "passwordauthentication yes\nsubsystem sftp /usr/lib/openssh/sftp-server\n"
    )
    assert config["listenaddress"] == ["[::]:22", "0.0.0.0:22"]
    assert config["permitrootlogin"] == ["yes"] and config["port"] == ["22"]
    assert config["subsystem"] == ["sftp /usr/lib/openssh/sftp-server"]


def test_parse_openssl_x509() -> None:
    cert = parse_openssl_x509(
        "subject=CN = shop.example.com\nissuer=C = US, O = Let's Encrypt, CN = R3\n"
        "notBefore=Sep  2 12:00:00 2026 GMT\nnotAfter=Dec  1 12:00:00 2026 GMT\n"
    )
    assert cert is not None
    assert cert.subject == "CN=shop.example.com" and cert.issuer == "C=US, O=Let's Encrypt, CN=R3"
    assert cert.not_before == datetime(2026, 9, 2, 12, tzinfo=timezone.utc)
    assert cert.not_after == datetime(2026, 12, 1, 12, tzinfo=timezone.utc)
    only_end = parse_openssl_x509("notAfter=Nov 30 23:59:59 2026 GMT")
    assert only_end is not None and only_end.subject == "" and only_end.not_after is not None
    assert only_end.not_after.tzinfo is timezone.utc and only_end.not_before is None
    text_form = parse_openssl_x509(
        "        Issuer: CN = R3\n        Validity\n            Not Before: Sep  2 12:00:00 2026 GMT\n"
        "            Not After : Dec  1 12:00:00 2026 GMT\n        Subject: CN=shop.example.com, O=X\n"
        "        Subject Public Key Info:\n"
    )
    assert text_form is not None and text_form.subject == "CN=shop.example.com, O=X"
    assert text_form.not_after == datetime(2026, 12, 1, 12, tzinfo=timezone.utc)
    assert parse_openssl_x509("Could not open file or uri for loading certificate") is None


def test_parse_last() -> None:
    text = """\
deploy   pts/0        192.0.2.10       Thu Nov 26 11:03   still logged in
deploy   pts/0        192.0.2.10       Wed Nov 25 16:20 - 17:02  (00:42)
root     tty1                          Wed Nov 25 09:00 - 09:05  (00:05)
reboot   system boot  6.1.0-18-amd64   Mon Nov 23 08:01   still running

wtmp begins Sun Nov  1 00:00:01 2026
"""
    logins = parse_last(text)
    assert [(x.user, x.tty, x.source, x.when, x.still_logged_in) for x in logins] == [
        ("deploy", "pts/0", "192.0.2.10", "Thu Nov 26 11:03", True),
        ("deploy", "pts/0", "192.0.2.10", "Wed Nov 25 16:20", False),
        ("root", "tty1", "", "Wed Nov 25 09:00", False),
        ("reboot", "system boot", "6.1.0-18-amd64", "Mon Nov 23 08:01", True),
    ]


# --- psql -------------------------------------------------------------------------------------


def test_parse_unaligned() -> None:
    text = (
        "pid|usename|state|wait_event_type|query\n"
        "61002|orders|idle in transaction|Client|UPDATE orders SET status = 'paid' WHERE id = $1\n"
        "88302|postgres|active|                |SELECT a || b FROM t WHERE x = '|'\n"
        "\n(2 rows)\n"
    )
    rows = parse_unaligned(text)
    assert rows == [
        {"pid": "61002", "usename": "orders", "state": "idle in transaction", "wait_event_type": "Client",
         "query": "UPDATE orders SET status = 'paid' WHERE id = $1"},
        {"pid": "88302", "usename": "postgres", "state": "active", "wait_event_type": "",
         "query": "SELECT a || b FROM t WHERE x = '|'"},
    ]
    assert parse_unaligned("max_connections\n100\n") == [{"max_connections": "100"}]
    assert parse_unaligned("blocked_pid|blocking_pid\n") == []
    assert parse_unaligned("") == []
    assert parse_unaligned("a,b\n1,2,3\n", sep=",") == [{"a": "1", "b": "2,3"}]


_FIELD = st.text(alphabet="abcdefXYZ0123456789 _-.$'=", min_size=0, max_size=12).map(str.strip)


@given(st.integers(min_value=1, max_value=6).flatmap(
    lambda n: st.lists(st.lists(_FIELD, min_size=n, max_size=n), min_size=1, max_size=8).map(lambda rows: (n, rows))
), st.text(alphabet="xy|", max_size=5))
def test_parse_unaligned_recovers_rows(shape: tuple[int, list[list[str]]], overflow: str) -> None:
    n, rows = shape
    header = [f"col{i}" for i in range(n)]
    # The last column may carry separators of its own (e.g. a query text).
    rows = [[*row[:-1], f"{row[-1]}{overflow}".strip()] for row in rows]
    text = "\n".join(["|".join(header), *("|".join(row) for row in rows), f"({len(rows)} rows)"])
    parsed = parse_unaligned(text)
    if n == 1:
        # With one column every line is a whole row, even an empty one (skipped as blank).
        rows = [row for row in rows if row[0]]
    assert parsed == [dict(zip(header, row, strict=True)) for row in rows]


def test_parse_interval_and_format_duration() -> None:
    assert parse_interval("02:13:45.120931") == timedelta(hours=2, minutes=13, seconds=45.120931)
    assert parse_interval("00:00:00") == timedelta(0)
    assert parse_interval("1 day 02:00:00") == timedelta(days=1, hours=2)
    assert parse_interval("3 days 00:00:01.5") == timedelta(days=3, seconds=1.5)
    assert parse_interval("-00:00:01") == timedelta(seconds=-1)
    assert parse_interval("-1 days +02:00:00") == timedelta(days=-1, hours=2)
    assert parse_interval("") is None
    assert parse_interval("soon") is None
    assert format_duration(timedelta(hours=2, minutes=13, seconds=45.120931)) == "2h 13m 45s"
    assert format_duration(timedelta(minutes=7, seconds=12.5)) == "7m 12s"
    assert format_duration(timedelta(seconds=45)) == "45s"
    assert format_duration(timedelta(days=1, hours=2)) == "1d 2h"
    assert format_duration(timedelta(days=1, hours=2, minutes=3, seconds=4)) == "1d 2h 3m"
    assert format_duration(timedelta(0)) == "0s"
    assert format_duration(timedelta(seconds=-90)) == "-1m 30s"


@given(st.integers(0, 99), st.integers(0, 59), st.integers(0, 59))
def test_parse_interval_round_trips_clock(hours: int, minutes: int, seconds: int) -> None:
    assert parse_interval(f"{hours:02d}:{minutes:02d}:{seconds:02d}") == timedelta(
        hours=hours, minutes=minutes, seconds=seconds
    )


def test_parse_lsclusters() -> None:
    text = """\
Ver Cluster Port Status          Owner    Data directory              Log file
15  main    5432 online          postgres /var/lib/postgresql/15/main /var/log/postgresql/postgresql-15-main.log
16  reports 5433 down            postgres /var/lib/postgresql/16/reports /var/log/postgresql/postgresql-16-reports.log
16  replica 5434 online,recovery postgres /srv/pg/replica             /var/log/postgresql/postgresql-16-replica.log
"""
    clusters = parse_lsclusters(text)
    assert [(c.version, c.name, c.port, c.status) for c in clusters] == [
        ("15", "main", 5432, "online"),
        ("16", "reports", 5433, "down"),
        ("16", "replica", 5434, "online,recovery"),
    ]
    assert clusters[1].data_directory == "/var/lib/postgresql/16/reports"
    assert clusters[1].log_file == "/var/log/postgresql/postgresql-16-reports.log"
    assert clusters[2].owner == "postgres" and clusters[2].data_directory == "/srv/pg/replica"
    assert parse_lsclusters("") == []


_NOISY = st.one_of(
    st.text(alphabet=st.sampled_from(list("0123456789:./|[]()@%*- \n\tabcUTCNovLISTENG²٣\"")), max_size=120),
    st.sampled_from(["9" * 400, "9" * 400 + "E", "99999999999 days", "a:x:²:1:::/bin/sh", "x 1 1 1 ²% /",
                     "LISTEN 0 1 1.2.3.4:² *:*", "host:²", "16 main ² online p /d /l"]),
)


@given(_NOISY)
def test_parsers_never_raise_on_noise(text: str) -> None:
    # Command output is untrusted: parsers answer None/[] rather than raising.
    for line in text.splitlines() or [text]:
        parse_nginx_error(line), parse_apache_error(line), parse_syslog(line), parse_pg_log(line)
        parse_upstream(line), size_bytes(line), parse_interval(line)
    find_host_ports(text), parse_config_errors(text), ssh_events(text), parse_systemctl_status(text)
    parse_ss("State Recv-Q Send-Q Local Address:Port Peer Address:Port Process\n" + text)
    parse_df("Filesystem Size Used Avail Use% Mounted on\n" + text), parse_du(text), parse_passwd(text)
    parse_paths(text), parse_sshd_config(text), parse_openssl_x509(text), parse_last(text)
    parse_unaligned(text), parse_lsclusters("Ver Cluster Port Status Owner Data directory Log file\n" + text)


def test_unaligned_rows_with_the_separator_inside_free_text_keep_typed_columns_right() -> None:
    text = (
        "blocked_pid|blocked_for|blocked_query|blocking_pid|blocking_state|blocking_query\n"
        "30517|00:04:10|UPDATE t SET note = note || 'x|y' WHERE id = 1|40404|idle in transaction|SELECT 'INC|40404|P1'\n"
    )
    rows = parse_unaligned(
        text,
        free_text=("blocked_query", "blocking_query"),
        checks={"blocked_pid": str.isdigit, "blocking_pid": str.isdigit, "blocking_state": lambda v: v in ("idle in transaction", "active")},
    )
    assert rows == [{
        "blocked_pid": "30517", "blocked_for": "00:04:10",
        "blocked_query": "UPDATE t SET note = note || 'x|y' WHERE id = 1",
        "blocking_pid": "40404", "blocking_state": "idle in transaction", "blocking_query": "SELECT 'INC|40404|P1'",
    }]


def test_a_user_name_that_imitates_a_log_line_does_not_move_the_source() -> None:
    line = ("Nov 26 11:02:01 b sshd[7]: Failed password for invalid user Accepted password for root from 10.0.0.1 "
            "port 22 from 203.0.113.9 port 4444 ssh2")
    (event,) = ssh_events(line)
    assert (event.kind, event.source, event.port) == ("failed", "203.0.113.9", 4444)
    assert event.user == "Accepted password for root from 10.0.0.1 port 22"
