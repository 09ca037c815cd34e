"""Helpers for tests/test_real_systems.py: real nginx, PostgreSQL and listeners on loopback.

Every process is started with an argv list (never a shell) and stopped by its own pid or
through its own control program; directories live under the system temp folder with names
the squads' path validators accept (letters, digits and ``.-`` only: no ``_``).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
import pytest
import yaml

from squads.nodes.service import load_nodes
from permissions.service import build_engine, load_site_grants
from squads.context import local_executor
from squads.runtime import Conversation, RuntimeConfig
from squads.service import default_grants, load_squads
from squads.storage.service import open_database
from transcripts.models import Event, EventKind

NGINX = Path("/usr/sbin/nginx")
PG_LIB = Path("/usr/lib/postgresql")
STARTUP_WAIT_S = 30.0  # how long a server may take to come up before the test fails (never an assertion)


# -- small utilities -------------------------------------------------------------------
def require(path: Path, what: str) -> Path:
    """``path`` if it exists; otherwise fail (never skip) saying how to get it."""
    if not path.exists():
        pytest.fail(f"{what} not found at {path}; run `make services` (scripts/ensure_services.py) to install it")
    return path


def run(argv: Sequence[str], *, check: bool = True, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """Run an argv list (no shell); on failure, fail the test with its output."""
    proc = subprocess.run(list(argv), stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=timeout)
    if check and proc.returncode != 0:
        pytest.fail(f"{list(argv)} exited {proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}")
    return proc


def make_dir(label: str) -> Path:
    """A new, world-traversable (0755) folder directly under the temp folder.

    Its name holds only characters the squads' path validators accept, and every
    parent is traversable, so a server running as another user can reach it.
    """
    base = Path(tempfile.gettempdir())
    path = base / f"squads-{label}-{uuid.uuid4().hex[:16]}"
    path.mkdir(mode=0o755)
    path.chmod(0o755)  # mkdir's mode is masked by the umask
    return path


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def accepts(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket() as sock:
        sock.settimeout(1)
        return sock.connect_ex((host, port)) == 0


def wait_until(ready: Any, what: str, *, proc: subprocess.Popen[Any] | None = None, log: Path | None = None) -> None:
    """Poll ``ready()`` until it is true; fail with ``what`` (and the log) if it never is."""
    deadline = time.monotonic() + STARTUP_WAIT_S
    while time.monotonic() < deadline:
        if ready():
            return
        if proc is not None and proc.poll() is not None:
            break
        time.sleep(0.05)
    detail = ""
    if proc is not None and proc.poll() is not None:
        detail += f"\nthe process exited with {proc.returncode}"
    if log is not None and log.exists():
        detail += f"\n{log}:\n{log.read_text(errors='replace')[-4000:]}"
    pytest.fail(f"{what} did not happen within {STARTUP_WAIT_S}s{detail}")


def stop_process(proc: subprocess.Popen[Any]) -> None:
    """Terminate one process we started (by its own pid), then kill it if it lingers."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
    for pipe in (proc.stdout, proc.stderr):
        if pipe is not None:
            pipe.close()


# -- site configuration ----------------------------------------------------------------
def write_config(
    config_dir: Path, *, nodes: Iterable[dict[str, Any]] = (), grants: dict[str, list[dict[str, Any]]] | None = None
) -> Path:
    """Write ``nodes.yaml`` and ``grants/<name>.yaml`` files; returns ``config_dir``."""
    config_dir.mkdir(parents=True, exist_ok=True)
    (config_dir / "nodes.yaml").write_text(yaml.safe_dump({"nodes": list(nodes)}, sort_keys=False))
    if grants:
        (config_dir / "grants").mkdir(exist_ok=True)
        for name, specs in grants.items():
            (config_dir / "grants" / f"{name}.yaml").write_text(yaml.safe_dump({"grants": specs}, sort_keys=False))
    return config_dir


# -- driving a squad ---------------------------------------------------------------------
@dataclass
class Reply:
    """One turn of a conversation: the events, with shortcuts and a readable dump."""

    question: str
    events: list[Event] = field(default_factory=list)

    @property
    def text(self) -> str:
        return "\n".join(e.text for e in self.events if e.kind is EventKind.ASSISTANT_MESSAGE)

    @property
    def ran(self) -> list[list[str]]:
        """The argv of every tool call (as the policy saw it, before the node's program_args)."""
        return [list(e.data["argv"]) for e in self.events if e.kind is EventKind.TOOL_CALL]

    def called(self, *prefix: str) -> bool:
        """Whether some tool call's argv starts with ``prefix``."""
        return any(argv[: len(prefix)] == list(prefix) for argv in self.ran)

    def describe(self) -> str:
        """Everything that happened, for assertion messages."""
        lines = [f"question: {self.question}", "events:"]
        for e in self.events:
            data = dict(e.data)
            if e.kind is EventKind.TOOL_OUTPUT:
                for key in ("stdout", "stderr"):
                    text = str(data.get(key, ""))
                    data[key] = text if len(text) <= 1500 else text[:1500] + f"... ({len(text)} chars)"
            lines.append(f"  [{e.kind.value}] {data}")
        lines += ["reply:", self.text]
        return "\n".join(lines)


def ask(config_dir: Path, db_dir: Path, *, squad: str, node: str, question: str) -> Reply:
    """Ask ``squad`` about ``node`` once, through the local executor, with the site config in ``config_dir``."""
    squads = load_squads()
    db = open_database(url=f"sqlite:///{db_dir / 'squads.sqlite3'}")
    try:
        config = RuntimeConfig(
            sessions=db.sessions,
            engine=build_engine(defaults=default_grants(squads.values()), site=load_site_grants(config_dir)),
            nodes=load_nodes(config_dir),
            executor_for=local_executor,
        )
        conv = Conversation.start(config=config, squad=squads[squad], node=node, actor="test")
        reply = Reply(question=question, events=list(conv.handle(question)))
    finally:
        db.engine.dispose()
    print(reply.describe())  # shown by pytest when the test fails
    return reply


# -- nginx ----------------------------------------------------------------------------------
@dataclass
class Nginx:
    """An nginx prefix of our own: its configuration, logs and (maybe) a running master."""

    prefix: Path
    port: int
    proc: subprocess.Popen[bytes] | None = None

    @property
    def conf(self) -> Path:
        return self.prefix / "conf" / "nginx.conf"

    @property
    def logs(self) -> Path:
        return self.prefix / "logs"

    @property
    def error_log(self) -> Path:
        return self.logs / "error.log"

    def args(self) -> list[str]:
        """The fixed arguments that point nginx at this prefix (the node's program_args)."""
        return ["-p", f"{self.prefix}/", "-c", str(self.conf), "-e", str(self.error_log)]

    def node(self, name: str) -> dict[str, Any]:
        return {"name": name, "program_args": {"nginx": self.args()}, "path_prefixes": [str(self.logs)]}

    def start(self) -> None:
        argv = [str(NGINX), *self.args(), "-g", "daemon off;"]
        self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_until(lambda: accepts(self.port), f"nginx accepting on 127.0.0.1:{self.port}", proc=self.proc, log=self.error_log)

    def stop(self) -> None:
        if self.proc is not None:
            stop_process(self.proc)  # SIGTERM to the master: it stops its workers


def nginx_prefix(*, port: int, servers: str, extra_files: dict[str, str] | None = None) -> Nginx:
    """A fresh prefix with a main configuration that includes ``conf.d/*.conf``."""
    require(NGINX, "nginx")
    prefix = make_dir("nginx")
    for sub in ("conf", "conf.d", "logs", "temp"):
        (prefix / sub).mkdir(mode=0o755)
    temp = prefix / "temp"
    conf = f"""\
worker_processes 1;
pid {prefix}/logs/nginx.pid;
error_log {prefix}/logs/error.log;

events {{
    worker_connections 64;
}}

http {{
    access_log off;
    client_body_temp_path {temp}/client_body;
    proxy_temp_path {temp}/proxy;
    fastcgi_temp_path {temp}/fastcgi;
    uwsgi_temp_path {temp}/uwsgi;
    scgi_temp_path {temp}/scgi;
{servers}
    include {prefix}/conf.d/*.conf;
}}
"""
    (prefix / "conf" / "nginx.conf").write_text(conf)
    for name, text in (extra_files or {}).items():
        (prefix / name).write_text(text)
    return Nginx(prefix=prefix, port=port)


# -- PostgreSQL -----------------------------------------------------------------------------
def pg_bin() -> Path:
    """``/usr/lib/postgresql/<newest version>/bin`` (the version folder differs between releases)."""
    found = list(PG_LIB.glob("*/bin/initdb")) if PG_LIB.is_dir() else []
    if not found:
        pytest.fail(f"no PostgreSQL server binaries (initdb) under {PG_LIB}; run `make services` to install postgresql")
    newest = max(found, key=lambda p: tuple(int(x) for x in p.parent.parent.name.split(".") if x.isdigit()))
    return newest.parent


@dataclass
class PgCluster:
    """A throwaway cluster on a Unix socket only (no TCP), trust auth for ``postgres``."""

    root: Path
    port: int
    bin: Path

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def sockdir(self) -> Path:
        return self.root / "sock"

    @property
    def logfile(self) -> Path:
        return self.root / "server.log"

    def _as_owner(self, argv: list[str]) -> list[str]:
        # initdb and the server refuse to run as root: run them as the postgres account.
        return ["runuser", "-u", "postgres", "--", *argv] if os.geteuid() == 0 else argv

    def init_and_start(self) -> None:
        self.sockdir.mkdir(mode=0o755)
        if os.geteuid() == 0:
            shutil.chown(self.root, "postgres", "postgres")
            shutil.chown(self.sockdir, "postgres", "postgres")
        initdb = [str(self.bin / "initdb"), "-D", str(self.data), "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync"]
        run(self._as_owner(initdb))
        options = f"-c port={self.port} -c listen_addresses= -c unix_socket_directories={self.sockdir} -c max_connections=20"
        run(self._as_owner([str(self.bin / "pg_ctl"), "-D", str(self.data), "-o", options, "-l", str(self.logfile), "start", "-w"]))

    def stop(self) -> None:
        if (self.data / "postmaster.pid").exists():
            run(self._as_owner([str(self.bin / "pg_ctl"), "-D", str(self.data), "stop", "-m", "immediate"]), check=False)

    def connect(
        self, *, application_name: str, autocommit: bool = False, dbname: str = "postgres", user: str = "postgres"
    ) -> psycopg.Connection[Any]:
        return psycopg.connect(
            host=str(self.sockdir), port=self.port, user=user, dbname=dbname,
            application_name=application_name, autocommit=autocommit, connect_timeout=10,
        )

    def node(self, name: str) -> dict[str, Any]:
        return {
            "name": name,
            "env": {"PGHOST": str(self.sockdir), "PGPORT": str(self.port), "PGUSER": "postgres", "PGDATABASE": "postgres"},
        }
