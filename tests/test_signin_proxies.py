"""Forwarded headers are believed only from configured proxies; Secure cookies follow the public URL.

A real uvicorn serves the app on a loopback port, with the options ``squads serve`` uses.
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
import uvicorn
from sqlalchemy import select

from squads.audit.models import AuditRecord
from chat_server.app import create_app
from chat_server.cli import uvicorn_options
from squads.settings.env import Settings
from squads.context import AppContext
from tests.agent_harness import free_port, wait_for
from tests.web import PASSWORD, site_with_users, web_client
from squads.accounts.models import Role


@contextmanager
def served(context: AppContext) -> Iterator[str]:
    """The app under uvicorn on loopback, trusting the proxies the settings name; yields its URL."""
    port = free_port()
    config = uvicorn.Config(create_app(context), host="127.0.0.1", port=port, log_level="warning",
                            **uvicorn_options(trusted_proxies=context.settings.trusted_proxies))
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        wait_for("uvicorn", lambda: server.started)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def attempt(url: str, username: str, password: str, *, forwarded_for: str) -> httpx.Response:
    """One sign-in through the form, claiming to come from ``forwarded_for`` over https."""
    spoof = {"X-Forwarded-For": forwarded_for, "X-Forwarded-Proto": "https"}
    with httpx.Client(base_url=url, headers=spoof, timeout=10) as client:
        page = client.get("/login")
        token = re.search(r'name="login_token" value="([^"]+)"', page.text)
        assert token, page.text
        return client.post("/login", data={"username": username, "password": password,
                                           "login_token": token.group(1)}, headers=login_cookie(page))


def login_cookie(page: httpx.Response) -> dict[str, str]:
    """The sign-in form's cookie, sent back by hand: a client keeps a Secure cookie from plain http."""
    found = re.match(r"squads_login=([^;]+)", page.headers["set-cookie"])
    assert found, page.headers
    return {"Cookie": f"squads_login={found.group(1)}"}


def peers(context: AppContext) -> list[str]:
    with context.db.sessions() as session:
        found = session.scalars(select(AuditRecord).where(AuditRecord.kind == "sign_in").order_by(AuditRecord.seq))
        return [json.loads(r.details)["peer"] for r in found]


def test_a_local_client_cannot_spoof_its_address_by_default(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FORWARDED_ALLOW_IPS", "*")  # uvicorn's own switch must not bring the trust back
    context = site_with_users(tmp_path, {"eddie": Role.ENGINEER})
    with served(context) as url:
        answers = [attempt(url, "eddie", "not the password", forwarded_for=f"203.0.113.{i}") for i in range(6)]
        assert [a.status_code for a in answers] == [401] * 5 + [429]  # the lock applies to the real address
        assert "Secure" not in answers[0].headers["set-cookie"]  # X-Forwarded-Proto was not believed either
    assert peers(context) == ["127.0.0.1"] * 6


def test_a_configured_proxy_is_believed(tmp_path: Path) -> None:
    context = site_with_users(tmp_path, {"eddie": Role.ENGINEER}, trusted_proxies="127.0.0.1")
    with served(context) as url:
        answers = [attempt(url, "eddie", "not the password", forwarded_for=f"203.0.113.{i}") for i in range(6)]
        assert [a.status_code for a in answers] == [401] * 6  # six clients, one wrong guess each
        assert "Secure" in answers[0].headers["set-cookie"]
        signed = attempt(url, "eddie", PASSWORD, forwarded_for="198.51.100.7")
        assert signed.status_code == 303
        assert "Secure" in signed.headers["set-cookie"]
    assert peers(context) == [f"203.0.113.{i}" for i in range(6)] + ["198.51.100.7"]


def test_cookies_are_secure_whenever_the_public_url_is_https(tmp_path: Path) -> None:
    context = site_with_users(tmp_path, {"eddie": Role.ENGINEER}, public_url="https://squads.example.com")
    with web_client(context) as client:  # plain http, as from a TLS proxy that is not trusted
        page = client.get("/login")
        assert "Secure" in page.headers["set-cookie"]
        token = re.search(r'name="login_token" value="([^"]+)"', page.text)
        assert token
        signed = client.post("/login", data={"username": "eddie", "password": PASSWORD,
                                             "login_token": token.group(1)}, headers=login_cookie(page))
        session_cookie = [v for k, v in signed.headers.multi_items()
                          if k == "set-cookie" and v.startswith("squads_session=")]
        assert signed.status_code == 303 and session_cookie and "Secure" in session_cookie[0]


@pytest.mark.parametrize("value", ["*", "proxy.example", "10.0.0.0/33", "127.0.0.1,,nonsense"])
def test_trusted_proxies_must_be_addresses(value: str) -> None:
    with pytest.raises(ValueError, match="is not an IP address or network"):
        Settings(trusted_proxies=value)  # type: ignore[arg-type]


def test_trusted_proxies_are_read_comma_separated(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SQUADS_TRUSTED_PROXIES", "127.0.0.1, 10.0.0.0/24,::1")
    assert Settings().trusted_proxies == ["127.0.0.1/32", "10.0.0.0/24", "::1/128"]
    options = uvicorn_options(trusted_proxies=Settings().trusted_proxies)
    assert options["proxy_headers"] and options["forwarded_allow_ips"] == ["127.0.0.1/32", "10.0.0.0/24", "::1/128"]
    monkeypatch.delenv("SQUADS_TRUSTED_PROXIES")
    assert Settings().trusted_proxies == []  # none by default
    assert uvicorn_options(trusted_proxies=Settings().trusted_proxies)["proxy_headers"] is False
