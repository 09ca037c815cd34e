"""Signing in to the control plane, roles on every route, CSRF, throttling and cookies."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi import FastAPI
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient
from starlette.routing import Mount

from squads.accounts.api_tokens import create_api_token
from chat_server.app import create_app
from squads.context import AppContext
from squads.storage.db import session_scope
from squads.accounts.models import Role
from tests.web import PASSWORD, csrf, sign_in, site_with_users, web_client

PUBLIC = {("/healthz", "GET"), ("/login", "GET"), ("/login", "POST")}


@pytest.fixture
def context(tmp_path: Path) -> AppContext:
    users = {"vera": Role.VIEWER, "eddie": Role.ENGINEER, "ada": Role.ADMIN, "newbie": Role.ENGINEER}
    return site_with_users(tmp_path, users, must_change=frozenset({"newbie"}))


@pytest.fixture
def client(context: AppContext) -> Iterator[TestClient]:
    with web_client(context) as test_client:
        yield test_client


def served(app: FastAPI) -> Iterator[tuple[str, set[str]]]:
    """Every HTTP route the app serves, however routers were included (FastAPI wraps included ones)."""
    for route in app.routes:
        if isinstance(route, APIRoute):
            yield route.path, set(route.methods)
        elif hasattr(route, "effective_route_contexts"):
            contexts = route.effective_route_contexts
            for ctx in contexts() if callable(contexts) else contexts:
                yield ctx.path, set(ctx.methods or ())


def test_every_route_needs_authentication_except_health_login_and_assets(context: AppContext) -> None:
    app = create_app(context)
    mounts = [r for r in app.routes if isinstance(r, Mount)]
    assert [m.path for m in mounts] == ["/static"]  # the only mount: the stylesheet the sign-in page needs
    checked = 0
    with TestClient(app, follow_redirects=False) as anonymous:
        assert anonymous.get("/static/app.css").status_code == 200
        for route_path, methods in served(app):
            path = re.sub(r"\{[^}]+\}", "web-1", route_path)
            for method in methods:
                route_key = (route_path, method)
                response = anonymous.request(method, path, json={})
                if route_key in PUBLIC:
                    assert response.status_code in (200, 400, 422), (method, path, response.status_code)
                    continue
                checked += 1
                if path.startswith("/api/"):
                    assert response.status_code == 401, (method, path, response.status_code)
                    assert response.headers["www-authenticate"] == "Bearer"
                else:
                    assert response.status_code == 303, (method, path, response.status_code)
                    assert response.headers["location"].startswith("/login?next="), response.headers
    assert checked >= 10


def test_a_browser_signs_in_with_a_session_cookie_and_signs_out(client: TestClient) -> None:
    assert sign_in(client, "eddie", next="/password") == (303, "/password")
    cookie = client.cookies.get("squads_session")
    assert cookie and "." in cookie
    assert client.get("/").status_code == 200 and "eddie" in client.get("/").text
    assert client.get("/api/nodes").status_code == 200  # the API accepts the session too
    token = csrf(client)
    assert client.post("/logout").status_code == 403  # no CSRF token
    assert client.post("/logout", data={"csrf_token": token}).headers["location"] == "/login"
    client.cookies.set("squads_session", cookie)  # replaying the old cookie does not work
    assert client.get("/").status_code == 303


def test_cookie_flags_and_security_headers(context: AppContext) -> None:
    with TestClient(create_app(context), base_url="https://squads.test", follow_redirects=False) as secure:
        secure.get("/login")
        assert sign_in(secure, "eddie")[0] == 303
        cookies = [v for k, v in secure.get("/login").headers.multi_items() if k == "set-cookie"]
    with TestClient(create_app(context), follow_redirects=False) as plain:
        page = plain.get("/login")
        token = re.search(r'name="login_token" value="([^"]+)"', page.text)
        assert token
        signed = plain.post("/login", data={"username": "eddie", "password": PASSWORD,
                                            "login_token": token.group(1)})
        session_cookie = [v for k, v in signed.headers.multi_items()
                          if k == "set-cookie" and v.startswith("squads_session=")][0]
    assert "HttpOnly" in session_cookie and "SameSite=lax" in session_cookie and "Secure" not in session_cookie
    assert any("Secure" in c for c in cookies)
    headers = page.headers
    assert "default-src 'self'" in headers["content-security-policy"] and headers["x-frame-options"] == "DENY"


def test_wrong_passwords_are_refused_alike_and_throttled(client: TestClient) -> None:
    first = sign_in(client, "eddie", "not the password")
    unknown = sign_in(client, "nobody-here", "not the password")
    assert first[0] == unknown[0] == 401
    assert "Wrong username or password." in first[1] and "Wrong username or password." in unknown[1]
    for _ in range(4):
        assert sign_in(client, "eddie", "still not it")[0] == 401
    throttled = sign_in(client, "eddie", PASSWORD)  # even the right password waits now
    assert throttled[0] == 429 and "Too many failed sign-ins" in throttled[1]
    assert sign_in(client, "vera")[0] == 303  # another account from the same address does not wait


def test_sign_in_needs_its_own_form_token(client: TestClient) -> None:
    response = client.post("/login", data={"username": "eddie", "password": PASSWORD, "login_token": "forged"})
    assert response.status_code == 400 and "expired" in response.text


def test_next_is_never_an_open_redirect(client: TestClient) -> None:
    for target in ("//evil.example/", "https://evil.example/", "/\\evil.example"):
        client.cookies.clear()
        assert sign_in(client, "eddie", next=target) == (303, "/")


def test_a_one_time_password_must_be_changed_first(client: TestClient) -> None:
    assert sign_in(client, "newbie") == (303, "/password")
    assert client.get("/").headers["location"] == "/password"
    assert client.get("/api/nodes").status_code == 403
    old_cookie = client.cookies.get("squads_session")
    token = csrf(client)
    short = client.post("/password", data={"csrf_token": token, "current": PASSWORD, "new": "short"})
    assert short.status_code == 400 and "at least 12" in short.text
    changed = client.post("/password", data={"csrf_token": token, "current": PASSWORD, "new": "my own passphrase!"})
    assert changed.status_code == 303 and changed.headers["location"] == "/"
    assert client.get("/").status_code == 200
    assert client.cookies.get("squads_session") != old_cookie


def test_roles_decide_what_each_caller_may_do(client: TestClient, context: AppContext) -> None:
    sign_in(client, "vera")
    assert client.get("/api/nodes").status_code == 200
    token = csrf(client)
    denied = client.post("/api/run", json={"agent": "webserver/service-health", "argv": ["df", "-h"],
                                           "nodes": ["local"]}, headers={"X-CSRF-Token": token})
    assert denied.status_code == 403 and "needs the engineer role; vera is viewer" in denied.text
    client.cookies.clear()
    sign_in(client, "ada")
    token = csrf(client)
    assert client.post("/api/nodes", json={"name": "web-1"}).status_code == 403  # cookie without CSRF
    made = client.post("/api/nodes", json={"name": "web-1"}, headers={"X-CSRF-Token": token})
    assert made.status_code == 201, made.text
    with session_scope(context.db.sessions) as session:
        from squads.accounts.service import find_user

        personal = create_api_token(session, name="eddie ci", actor="t", user_id=find_user(session, "eddie").id).token
    bearer = {"Authorization": f"Bearer {personal}"}
    with TestClient(create_app(context), follow_redirects=False) as api:
        ran = api.post("/api/run", json={"agent": "webserver/service-health", "argv": ["df", "-h"],
                                         "nodes": ["local"]}, headers=bearer)
        assert ran.status_code == 200 and ran.json()[0]["decision"] == "allow"
        refused = api.post("/api/nodes/web-1/revoke", headers=bearer)
        assert refused.status_code == 403 and "admin" in refused.text
        assert api.get("/api/openapi.json", headers=bearer).json()["info"]["title"] == "Squads control plane"


def test_users_make_and_revoke_their_own_api_tokens(client: TestClient, context: AppContext) -> None:
    sign_in(client, "eddie")
    token = csrf(client)
    made = client.post("/tokens", data={"csrf_token": token, "name": "ci deploy"})
    assert made.status_code == 200 and made.headers["cache-control"] == "no-store"
    secret = re.search(r"(sqa_[0-9a-f]{32}\.[A-Za-z0-9_-]+)", made.text)
    assert secret and "eddie ci deploy" in made.text
    assert secret.group(1) not in client.get("/password").text  # shown once
    token_id = secret.group(1)[4:36]
    with TestClient(create_app(context), follow_redirects=False) as api:
        bearer = {"Authorization": f"Bearer {secret.group(1)}"}
        assert api.post("/api/run", json={"agent": "webserver/service-health", "argv": ["df", "-h"],
                                          "nodes": ["local"]}, headers=bearer).status_code == 200
        assert api.post("/api/nodes", json={"name": "web-9"}, headers=bearer).status_code == 403
        sign_in(api, "vera")
        other = api.post(f"/tokens/{token_id}/revoke", data={"csrf_token": csrf(api)})
        assert other.status_code == 404  # someone else's token: not found, not revoked
        api.cookies.clear()
        assert api.get("/api/nodes", headers=bearer).status_code == 200
        assert client.post(f"/tokens/{token_id}/revoke", data={"csrf_token": token}).status_code == 303
        assert api.get("/api/nodes", headers=bearer).status_code == 401
