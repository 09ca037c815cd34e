"""The squads against real software: nginx, PostgreSQL and a stray listener, on loopback only.

Each test starts the real server in a folder of its own (so none of the canonical paths
apply), describes the node in ``nodes.yaml`` the way an operator would, asks a squad in
plain words through the local executor, and checks what the squad ran and concluded.
Everything started here is stopped here.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from tests.real_systems import (
    STARTUP_WAIT_S,
    Nginx,
    PgCluster,
    accepts,
    ask,
    free_port,
    make_dir,
    nginx_prefix,
    pg_bin,
    run,
    stop_process,
    wait_until,
    write_config,
)


# -- nginx -----------------------------------------------------------------------------------
@pytest.fixture
def bad_gateway_nginx() -> Iterator[tuple[Nginx, int]]:
    """A running nginx whose only location proxies to a port nothing listens on."""
    port, dead = free_port(), free_port()
    while dead == port:
        dead = free_port()
    server = f"""\
    server {{
        listen 127.0.0.1:{port};
        location / {{
            proxy_pass http://127.0.0.1:{dead};
        }}
    }}
"""
    nginx = nginx_prefix(port=port, servers=server)
    try:
        nginx.start()
        yield nginx, dead
    finally:
        nginx.stop()
        shutil.rmtree(nginx.prefix, ignore_errors=True)


def test_nginx_502_names_the_dead_upstream(bad_gateway_nginx: tuple[Nginx, int], tmp_path: Path) -> None:
    nginx, dead = bad_gateway_nginx
    assert not accepts(dead), f"something listens on the port meant to be dead ({dead})"
    with pytest.raises(urllib.error.HTTPError) as caught:
        urllib.request.urlopen(f"http://127.0.0.1:{nginx.port}/", timeout=10)
    assert caught.value.code == 502, f"expected 502 from nginx, got {caught.value.code}"
    caught.value.close()

    config_dir = write_config(
        tmp_path / "config",
        nodes=[nginx.node("web-test")],
        grants={
            "web-test": [
                {
                    "name": "web-test-prefix-logs",
                    "agents": ["webserver/log-analysis"],
                    "nodes": {"names": ["web-test"]},
                    "allow": [f"tail -n {{int:1..5000}} {{path:{nginx.logs}}}"],
                }
            ]
        },
    )
    reply = ask(config_dir, tmp_path, squad="webserver", node="web-test",
                question="Users get 502 Bad Gateway from nginx on web-test. Why?")
    text = reply.text.lower()
    assert f":{dead}" in reply.text or f"port {dead}" in reply.text, (
        f"the reply does not name the dead port {dead}\n{reply.describe()}"
    )
    assert "nothing is listening" in text or "not listening" in text, (
        f"the reply does not say nothing listens on {dead}\n{reply.describe()}"
    )
    assert reply.called("nginx", "-T"), f"nginx -T did not run\n{reply.describe()}"
    assert reply.called("tail", "-n") and any(argv[-1] == str(nginx.error_log) for argv in reply.ran if argv[0] == "tail"), (
        f"tail of {nginx.error_log} did not run\n{reply.describe()}"
    )
    assert reply.called("ss", "-ltnp"), f"ss -ltnp did not run\n{reply.describe()}"


SHOP_CONF = """\
# The shop front end.
server {{
    listen 127.0.0.1:{port};
    location / {{
        proxy_passs http://127.0.0.1:{backend};
    }}
}}
"""
SHOP_TYPO_LINE = 5  # the line of proxy_passs above


def test_nginx_broken_config_names_file_and_line(tmp_path: Path) -> None:
    port = free_port()
    nginx = nginx_prefix(
        port=port, servers="",
        extra_files={"conf.d/shop.conf": SHOP_CONF.format(port=port, backend=free_port())},
    )
    shop = nginx.prefix / "conf.d" / "shop.conf"
    assert shop.read_text().splitlines()[SHOP_TYPO_LINE - 1].strip().startswith("proxy_passs")
    try:
        config_dir = write_config(tmp_path / "config", nodes=[nginx.node("web-test")])
        reply = ask(config_dir, tmp_path, squad="webserver", node="web-test",
                    question="nginx on web-test won't start since I edited the shop config. Help?")
        assert reply.called("nginx", "-t"), f"nginx -t did not run\n{reply.describe()}"
        assert str(shop) in reply.text, f"the reply does not name {shop}\n{reply.describe()}"
        assert (f"{shop}:{SHOP_TYPO_LINE}" in reply.text or f"line {SHOP_TYPO_LINE}" in reply.text), (
            f"the reply does not name line {SHOP_TYPO_LINE}\n{reply.describe()}"
        )
    finally:
        shutil.rmtree(nginx.prefix, ignore_errors=True)


# -- PostgreSQL ------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def pg_cluster() -> Iterator[PgCluster]:
    """One throwaway cluster (Unix socket only, max_connections 20) for the database tests."""
    cluster = PgCluster(root=make_dir("pg"), port=free_port(), bin=pg_bin())
    try:
        cluster.init_and_start()
        yield cluster
    finally:
        cluster.stop()
        shutil.rmtree(cluster.root, ignore_errors=True)


@pytest.fixture
def pg_config(pg_cluster: PgCluster, tmp_path: Path) -> Path:
    return write_config(tmp_path / "config", nodes=[pg_cluster.node("pg-test")])


def test_postgres_too_many_connections_names_the_leaky_app(pg_cluster: PgCluster, pg_config: Path, tmp_path: Path) -> None:
    leaked: list[psycopg.Connection] = []
    try:
        for _ in range(12):
            conn = pg_cluster.connect(application_name="leaky-app")
            leaked.append(conn)
            conn.execute("SELECT 1")  # opens a transaction that is never committed: idle in transaction
        reply = ask(pg_config, tmp_path, squad="database", node="pg-test",
                    question="Clients on pg-test fail with 'too many clients already'. What is eating the connections?")
    finally:
        for conn in leaked:
            conn.close()
    assert "leaky-app" in reply.text, f"the reply does not name leaky-app\n{reply.describe()}"
    assert "idle in transaction" in reply.text.lower(), f"the reply does not say idle in transaction\n{reply.describe()}"
    sql = [argv[-1] for argv in reply.ran if argv[0] == "psql"]
    assert "SHOW max_connections" in sql, f"psql did not run SHOW max_connections\n{reply.describe()}"
    assert any("pg_stat_activity" in s for s in sql), f"psql did not query pg_stat_activity\n{reply.describe()}"


def test_postgres_lock_blocking_names_the_blocker(pg_cluster: PgCluster, pg_config: Path, tmp_path: Path) -> None:
    with pg_cluster.connect(application_name="setup", autocommit=True) as setup:
        setup.execute("DROP TABLE IF EXISTS accounts")
        setup.execute("CREATE TABLE accounts (id int PRIMARY KEY, balance int NOT NULL)")
        setup.execute("INSERT INTO accounts VALUES (1, 100)")

    holder = pg_cluster.connect(application_name="lock-holder")
    waiter = pg_cluster.connect(application_name="lock-waiter")
    watcher = pg_cluster.connect(application_name="watcher", autocommit=True)
    errors: list[BaseException] = []

    def update() -> None:
        try:
            waiter.execute("UPDATE accounts SET balance = balance + 1 WHERE id = 1")
            waiter.rollback()
        except BaseException as exc:  # reported by the test below
            errors.append(exc)

    thread = threading.Thread(target=update, daemon=True)
    try:
        row = holder.execute("SELECT pg_backend_pid()").fetchone()
        assert row is not None
        holder_pid = int(row[0])
        holder.execute("SELECT balance FROM accounts WHERE id = 1 FOR UPDATE")
        waiter_row = waiter.execute("SELECT pg_backend_pid()").fetchone()
        assert waiter_row is not None
        waiter_pid = int(waiter_row[0])
        waiter.rollback()
        thread.start()

        def waiting() -> bool:
            found = watcher.execute(
                "SELECT 1 FROM pg_stat_activity WHERE pid = %s AND wait_event_type = 'Lock'", (waiter_pid,)
            ).fetchone()
            return found is not None

        wait_until(waiting, f"the UPDATE (pid {waiter_pid}) waiting on the lock of pid {holder_pid}")
        reply = ask(pg_config, tmp_path, squad="database", node="pg-test",
                    question="UPDATEs on pg-test hang. What's blocking them?")
    finally:
        holder.rollback()  # releases the row lock: the UPDATE finishes
        if thread.ident is not None:
            thread.join(timeout=STARTUP_WAIT_S)
        for conn in (holder, waiter, watcher):
            conn.close()
    assert not errors, f"the blocked UPDATE failed: {errors!r}"
    assert f"pid {holder_pid}" in reply.text, f"the reply does not name the blocking pid {holder_pid}\n{reply.describe()}"


# -- a stray listener ------------------------------------------------------------------------
LISTENER = """\
import socket, sys, time
sock = socket.socket()
sock.bind(("127.0.0.1", 0))
sock.listen()
print(sock.getsockname()[1], flush=True)
while True:
    time.sleep(60)
"""


@pytest.fixture
def stray_listener() -> Iterator[tuple[int, int]]:
    """A Python process listening on a loopback port: (port, pid)."""
    proc = subprocess.Popen([sys.executable, "-c", LISTENER], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline().strip()
        if not line.isdigit():
            pytest.fail(f"the listener printed {line!r} instead of its port (exit code {proc.poll()})")
        port = int(line)
        wait_until(lambda: accepts(port), f"the listener accepting on 127.0.0.1:{port}", proc=proc)
        yield port, proc.pid
    finally:
        stop_process(proc)


def test_security_reports_a_stray_listener(stray_listener: tuple[int, int], tmp_path: Path) -> None:
    port, pid = stray_listener
    config_dir = write_config(tmp_path / "config")
    reply = ask(config_dir, tmp_path, squad="security", node="local",
                question="Is anything listening on this box that shouldn't be?")
    assert reply.called("ss"), f"ss did not run\n{reply.describe()}"
    assert f"port {port}" in reply.text or f":{port}" in reply.text, f"the reply does not name port {port}\n{reply.describe()}"
    assert f"pid {pid}" in reply.text or f"pid={pid}" in reply.text, f"the reply does not name pid {pid}\n{reply.describe()}"



# -- issue 12 §5: real machines broken on purpose ----------------------------------------------
# Not made real here, and why: a new UID-0 account. The security squad reads `getent passwd`, which
# reads this machine's real /etc/passwd, and an earlier test that wrote to it broke the machine; the
# class is covered by recorded outputs (tests/scenarios, tests/blind) instead.
def test_stopped_nginx_with_connection_refused_is_not_blamed_on_an_upstream(tmp_path: Path) -> None:
    """nginx is configured but not running, and systemctl cannot answer here (no systemd as PID 1):
    the squad must find that nothing listens on the port, not report a dead upstream."""
    port = free_port()
    nginx = nginx_prefix(port=port, servers=f"    server {{\n        listen 127.0.0.1:{port};\n    }}\n")
    try:
        assert not accepts(port)
        config_dir = write_config(tmp_path / "config", nodes=[nginx.node("web-test")])
        reply = ask(config_dir, tmp_path, squad="webserver", node="web-test",
                    question=f"curl http://127.0.0.1:{port}/ on web-test says connection refused. The site is down.")
    finally:
        shutil.rmtree(nginx.prefix, ignore_errors=True)
    text = reply.text.lower()
    assert reply.called("ss") or reply.called("ps"), f"no listener or process check ran\n{reply.describe()}"
    assert "upstream" not in text.split("\n", 1)[0], f"the headline blames an upstream\n{reply.describe()}"
    assert f"nothing is listening on :{port}" in text and "nginx is not running" in text, (
        f"the reply does not say nothing listens on :{port} and nginx is not running\n{reply.describe()}"
    )


@pytest.fixture
def full_tmpfs() -> Iterator[Path]:
    """A 1 MiB tmpfs, mounted in a folder of our own and filled to the last byte (a full log directory)."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root; CI runs this suite as root")
    mount = make_dir("logfull")
    run(["mount", "-t", "tmpfs", "-o", "size=1m,mode=0755", "tmpfs", str(mount)])
    try:
        with open(mount / "error.log", "wb") as log:
            try:
                while True:
                    log.write(b"2026/12/07 03:12:44 [error] 2211#2211: *881 open() failed\n" * 512)
                    log.flush()
            except OSError:
                pass  # ENOSPC: the tmpfs is full, as the incident had it
        yield mount
    finally:
        run(["umount", str(mount)], check=False)
        shutil.rmtree(mount, ignore_errors=True)


def test_a_full_tmpfs_log_directory_is_found(full_tmpfs: Path, tmp_path: Path) -> None:
    config_dir = write_config(tmp_path / "config")
    reply = ask(config_dir, tmp_path, squad="webserver", node="local",
                question="nginx can't write its logs any more, is a disk full?")
    assert reply.called("df"), f"df did not run\n{reply.describe()}"
    assert f"{full_tmpfs} (tmpfs) is 100% full" in reply.text, f"the full tmpfs is not reported\n{reply.describe()}"
    assert "nothing wrong" not in reply.text.lower()


KWORKER = "kworker"  # named like a kernel thread, run from a temp folder


@pytest.fixture
def disguised_listener() -> Iterator[tuple[int, int, Path]]:
    """A copy of the Python interpreter under a temp folder, named ``kworker``, listening on loopback:
    (port, pid, its program). Killed by its own pid at the end."""
    folder = make_dir("kw")
    program = folder / KWORKER
    shutil.copy2(os.path.realpath(sys.executable), program)
    proc = subprocess.Popen([str(program), "-c", LISTENER], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline().strip()
        if not line.isdigit():
            pytest.fail(f"the listener printed {line!r} instead of its port (exit code {proc.poll()})")
        port = int(line)
        wait_until(lambda: accepts(port), f"the disguised listener accepting on 127.0.0.1:{port}", proc=proc)
        yield port, proc.pid, program
    finally:
        stop_process(proc)
        shutil.rmtree(folder, ignore_errors=True)


def test_a_listener_named_like_a_kernel_thread_from_tmp_leads(disguised_listener: tuple[int, int, Path],
                                                             tmp_path: Path) -> None:
    port, pid, program = disguised_listener
    config_dir = write_config(tmp_path / "config")
    reply = ask(config_dir, tmp_path, squad="security", node="local",
                question="Is anything listening on this box that shouldn't be?")
    headline = next((line for line in reply.text.splitlines() if line.strip()), "")
    assert str(port) in headline and KWORKER in headline, f"the disguised listener is not the headline\n{reply.describe()}"
    assert str(program.parent) in reply.text or "/tmp" in reply.text, f"its folder is not named\n{reply.describe()}"


def test_postgres_per_database_connection_limit(pg_cluster: PgCluster, pg_config: Path, tmp_path: Path) -> None:
    """"too many connections for database X" is the database's own limit (datconnlimit), not max_connections."""
    with pg_cluster.connect(application_name="setup", autocommit=True) as setup:
        setup.execute("DROP DATABASE IF EXISTS shopdb")
        setup.execute("DROP ROLE IF EXISTS shop")
        setup.execute("CREATE ROLE shop LOGIN")  # superusers are exempt from a database's limit
        setup.execute("CREATE DATABASE shopdb CONNECTION LIMIT 1")
    holder = pg_cluster.connect(application_name="shop-worker", dbname="shopdb", user="shop")
    try:
        with pytest.raises(psycopg.OperationalError, match='too many connections for database "shopdb"'):
            pg_cluster.connect(application_name="shop-web", dbname="shopdb", user="shop").close()
        reply = ask(pg_config, tmp_path, squad="database", node="pg-test",
                    question='The shop app on pg-test fails with: FATAL: too many connections for database "shopdb". Why?')
    finally:
        holder.close()
        with pg_cluster.connect(application_name="setup", autocommit=True) as setup:
            setup.execute("DROP DATABASE IF EXISTS shopdb")
            setup.execute("DROP ROLE IF EXISTS shop")
    text = reply.text.lower()
    assert "shopdb" in text, f"the reply does not name the database\n{reply.describe()}"
    assert "datconnlimit = 1" in text, f"the per-database limit is not named\n{reply.describe()}"
    assert "1 client connection is open to it now" in text, f"the current count is not given\n{reply.describe()}"
    sql = [argv[-1] for argv in reply.ran if argv[0] == "psql"]
    assert any("datconnlimit" in s and "rolconnlimit" in s for s in sql), f"the limits were not queried\n{reply.describe()}"
