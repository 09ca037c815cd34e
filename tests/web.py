"""Helpers for tests of the web UI: a site with users of given roles, signing in, the CSRF token."""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

from fastapi.testclient import TestClient

from chat_server.app import create_app
from squads.settings.env import Settings
from squads.context import AppContext
from squads.storage.db import session_scope
from squads.accounts.models import Role
from squads.accounts.service import create_user

PASSWORD = "a long enough passphrase"


def site_with_users(tmp_path: Path, users: Mapping[str, Role], *, must_change: frozenset[str] = frozenset(),
                    **settings: object) -> AppContext:
    """A fresh site in ``tmp_path`` whose users all have ``PASSWORD``."""
    context = AppContext(settings=Settings(data_dir=tmp_path, config_dir=tmp_path / "config", **settings))  # type: ignore[arg-type]
    with session_scope(context.db.sessions) as session:
        for name, role in users.items():
            create_user(session, username=name, password=PASSWORD, role=role, actor="pytest",
                        must_change=name in must_change)
    return context


@contextmanager
def web_client(context: AppContext, **options: object) -> Iterator[TestClient]:
    """A test client for the site's app (lifespan run), redirects not followed."""
    with TestClient(create_app(context), follow_redirects=False, **options) as client:  # type: ignore[arg-type]
        yield client


def sign_in(client: TestClient, username: str, password: str = PASSWORD, next: str = "/") -> tuple[int, str]:
    """Sign in through the form; returns the status and where it leads (or the page's text)."""
    page = client.get("/login")
    token = re.search(r'name="login_token" value="([^"]+)"', page.text)
    assert token, page.text
    response = client.post("/login", data={"username": username, "password": password,
                                           "login_token": token.group(1), "next": next})
    return response.status_code, response.headers.get("location", response.text)


def csrf(client: TestClient) -> str:
    """The signed-in session's CSRF token (from a page's form)."""
    page = client.get("/password")
    found = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
    assert found, page.text
    return found.group(1)


def as_user(client: TestClient, name: str) -> str:
    """Sign ``name`` in afresh; returns the session's CSRF token."""
    client.cookies.clear()
    assert sign_in(client, name)[0] == 303
    return csrf(client)
