"""`squads demo` end to end over HTTP: sign in with the printed login, replay the seed incident."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import httpx

from tests.agent_harness import free_port

SEED = [
    "My application pod is in a CrashLoopBackOff state. Can you check the logs?",
    "Pod: payment-service-7d9f8b-xyz, Namespace: production",
]


def test_the_demo_serves_the_lab_and_this_machine_and_replays_the_seed(tmp_path: Path) -> None:
    port = free_port()
    squads = Path(sys.executable).with_name("squads")
    env = {**os.environ, "SQUADS_DATA_DIR": str(tmp_path)}
    env.pop("SQUADS_CONFIG_DIR", None)
    demo = subprocess.Popen([str(squads), "demo", "--port", str(port)], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    base = f"http://127.0.0.1:{port}"
    try:
        banner = ""
        assert demo.stdout is not None
        while "Stop with Ctrl-C" not in banner:
            line = demo.stdout.readline()
            assert line, f"squads demo exited: {banner}"
            banner += line
        password = re.search(r"password\s+(\S+)", banner)
        assert password and f"open {base}/" in banner and "k8s-cluster-east" in banner
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "the demo did not answer /healthz within 60 s"
            time.sleep(0.2)
        with httpx.Client(base_url=base, follow_redirects=False, timeout=30) as web:
            token = re.search(r'name="login_token" value="([^"]+)"', web.get("/login").text)
            assert token
            signed = web.post("/login", data={"username": "admin", "password": password.group(1),
                                              "login_token": token.group(1)})
            assert signed.headers["location"] == "/password"  # a one-time password must be changed first
            csrf = re.search(r'name="csrf_token" value="([^"]+)"', web.get("/password").text)
            assert csrf
            changed = web.post("/password", data={"csrf_token": csrf.group(1), "current": password.group(1),
                                                  "new": "my own demo passphrase"})
            assert changed.status_code == 303
            csrf = re.search(r'name="csrf_token" value="([^"]+)"', web.get("/password").text)
            assert csrf
            deadline = time.monotonic() + 30
            while not any(n["name"] == "this-machine" and n["online"] for n in web.get("/api/nodes").json()):
                assert time.monotonic() < deadline, "the agent for this machine did not connect"
                time.sleep(0.2)
            started = web.post("/chat", data={"csrf_token": csrf.group(1), "squad": "k8s",
                                              "nodes": ["k8s-cluster-east"], "message": SEED[0]})
            assert started.status_code == 303, started.text
            page = started.headers["location"]
            web.post(f"{page}/messages", data={"csrf_token": csrf.group(1), "text": SEED[1]})
            text = web.get(page).text
            assert "payment-service-7d9f8b-xyz" in text and "CrashLoopBackOff" in text
            assert "postgres-0" in text and "Pending" in text
            assert "kubectl" in text and 'class="decision allow"' in text
    finally:
        demo.terminate()
        try:
            demo.wait(timeout=15)
        except subprocess.TimeoutExpired:
            demo.kill()
    # The demo stops the agent it started: nothing of it is left running.
    leftovers = subprocess.run(["pgrep", "-f", f"--server http://127.0.0.1:{port}"], capture_output=True, text=True)
    assert leftovers.stdout.strip() == "", leftovers.stdout
