"""Start what the test suite needs when it is not already running.

PostgreSQL on 127.0.0.1:5432 is expected (trust auth). When it is down, start
the Debian cluster; when it is missing and we are root, install it first.
nginx (/usr/sbin/nginx) must be installed; the tests start their own instances,
so the system one is stopped again if installing the package started it.
kubectl must be installed (Debian's kubernetes-client provides one): the
differential test runs the real kubectl against a fake API server on loopback.
Every command is an argv list; nothing goes through a shell.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path


def listening(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket() as sock:
        sock.settimeout(1)
        return sock.connect_ex((host, port)) == 0


def run(argv: list[str]) -> None:
    print("+", " ".join(argv), flush=True)
    subprocess.run(argv, check=True, stdin=subprocess.DEVNULL)


def apt_install(*packages: str) -> None:
    if os.geteuid() != 0:
        sys.exit(f"missing {' '.join(packages)}; install them (as root: apt-get install {' '.join(packages)})")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run(["apt-get", "update", "-qq"], check=True, env=env, stdin=subprocess.DEVNULL)
    subprocess.run(["apt-get", "install", "-y", "-qq", *packages], check=True, env=env, stdin=subprocess.DEVNULL)


def ensure_postgres() -> None:
    if listening(5432):
        return
    if not Path("/etc/postgresql").is_dir() or shutil.which("pg_ctlcluster") is None:
        apt_install("postgresql")
    for version in sorted(os.listdir("/etc/postgresql")):
        subprocess.run(["pg_ctlcluster", "--skip-systemctl-redirect", version, "main", "start"], stdin=subprocess.DEVNULL)
    for _ in range(30):
        if listening(5432):
            break
        time.sleep(1)
    else:
        sys.exit("PostgreSQL did not start on 127.0.0.1:5432")
    # Trust auth for local TCP connections is what the tests expect (as on CI).
    check = subprocess.run(["psql", "-h", "127.0.0.1", "-U", "postgres", "-c", "SELECT 1"], stdin=subprocess.DEVNULL,
                           capture_output=True)
    if check.returncode != 0:
        sys.exit("PostgreSQL is up but 'postgres' cannot log in over 127.0.0.1 without a password (trust auth expected)")


NGINX = Path("/usr/sbin/nginx")


def ensure_nginx() -> None:
    if NGINX.exists():
        return
    apt_install("nginx")
    if not NGINX.exists():
        sys.exit(f"installing nginx did not provide {NGINX}")
    # The package may start the system nginx on port 80; the tests run their own, on loopback.
    for argv in (["service", "nginx", "stop"], [str(NGINX), "-s", "stop"]):
        try:
            subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, timeout=30)
        except (OSError, subprocess.SubprocessError):
            pass


CHROMIUM = Path("/usr/bin/chromium")


def ensure_chromium() -> None:
    """Debian's Chromium for the browser tests (Playwright drives it; it never downloads a browser)."""
    if not CHROMIUM.exists():
        apt_install("chromium")
    if not CHROMIUM.exists():
        sys.exit(f"installing chromium did not provide {CHROMIUM}")


def ensure_kubectl() -> str:
    """The real kubectl for tests/test_kubectl_differential.py (Debian's kubernetes-client when missing)."""
    found = shutil.which("kubectl")
    if found is None:
        apt_install("kubernetes-client")
        found = shutil.which("kubectl")
    if found is None:
        sys.exit("installing kubernetes-client did not provide kubectl")
    return found


def main() -> None:
    ensure_postgres()
    ensure_nginx()
    ensure_chromium()
    kubectl = ensure_kubectl()
    print(f"services ready: postgresql 127.0.0.1:5432, nginx {NGINX}, chromium {CHROMIUM}, kubectl {kubectl}")


if __name__ == "__main__":
    main()
