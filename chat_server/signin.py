"""Sign-in, sign-out, password change and the home page.

The session cookie is HttpOnly, SameSite=Lax and Secure whenever the public
URL is https (or the request came over HTTPS, directly or through a configured
trusted proxy). Sign-in has its own double-submit token against login CSRF, and
attempts are throttled per account+address, per account and per address
(``squads/accounts/ratelimit.py``).
"""

from __future__ import annotations

import secrets
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates

from chat_server.deps import process_wide
from squads.accounts.token_models import ApiToken
from squads.accounts.api_tokens import TokenError, create_api_token, list_api_tokens, revoke_own_token
from chat_server.principals import SESSION_COOKIE, Principal, SignedIn, Viewer
from squads.storage.db import session_scope
from squads.accounts.models import User
from squads.accounts.ratelimit import SignInLimits, reserve, succeeded
from squads.accounts.service import (
    SESSION_LIFETIME,
    AccountError,
    SignInError,
    SignInThrottled,
    WrongCurrentPassword,
    change_password,
    open_session,
    sign_in,
    sign_out,
)

router = APIRouter(include_in_schema=False)
templates = Jinja2Templates(directory=str(Path(__file__).with_name("templates")))
LOGIN_COOKIE = "squads_login"


def render(request: Request, name: str, status_code: int = 200, **context: Any) -> HTMLResponse:
    """A page from ``templates/`` (autoescaped)."""
    return templates.TemplateResponse(request, name, {"principal": None, **context}, status_code=status_code)


def _secure(request: Request) -> bool:
    # The public URL decides: behind a TLS proxy the request itself may arrive over plain http.
    public = request.app.state.context.settings.public_url
    return public.lower().startswith("https://") or request.url.scheme == "https"


def _local_path(value: str) -> str:
    # Only a path on this site: "//evil.example" and "https://..." would be open redirects.
    return value if value.startswith("/") and not value.startswith(("//", "/\\")) else "/"


def _peer(request: Request) -> str:
    return request.client.host if request.client else "?"


def limits(request: Request) -> SignInLimits:
    """The sign-in throttle's limits, from the settings (``SQUADS_SIGNIN_*``)."""
    settings = request.app.state.context.settings
    return process_wide(request, "signin_limits", lambda: SignInLimits(
        account_address=settings.signin_limit_account_address, account=settings.signin_limit_account,
        address=settings.signin_limit_address, window_s=settings.signin_window_s))


@router.get("/login")
def login_page(request: Request, next: str = "/") -> Response:
    """The sign-in form (no authentication needed)."""
    token = secrets.token_urlsafe(24)
    response = render(request, "login.html", login_token=token, next=_local_path(next))
    response.set_cookie(LOGIN_COOKIE, token, httponly=True, samesite="strict", secure=_secure(request), max_age=3600)
    return response


@router.post("/login")
def login(
    request: Request,
    username: Annotated[str, Form(max_length=64)],
    password: Annotated[str, Form(max_length=1024)],
    login_token: Annotated[str, Form(max_length=100)] = "",
    next: Annotated[str, Form(max_length=2000)] = "/",
) -> Response:
    """Check the password (throttled), open a session, and go on (or to the password page)."""
    def again(message: str, code: int) -> Response:
        token = secrets.token_urlsafe(24)
        response = render(request, "login.html", code, login_token=token, next=_local_path(next), error=message)
        response.set_cookie(LOGIN_COOKIE, token, httponly=True, samesite="strict", secure=_secure(request))
        return response

    if not login_token or not secrets.compare_digest(request.cookies.get(LOGIN_COOKIE, ""), login_token):
        return again("The sign-in form expired; please try again.", 400)
    try:
        signed = sign_in(request.app.state.context.db.sessions, username=username, password=password,
                         peer=_peer(request), user_agent=request.headers.get("user-agent", ""),
                         limits=limits(request))
    except SignInThrottled as exc:
        response = again(f"{str(exc).capitalize()}.", 429)
        response.headers["Retry-After"] = str(exc.retry_after)
        return response
    except SignInError as exc:
        return again(f"{str(exc).capitalize()}.", 401)
    target = "/password" if signed.user.must_change_password else _local_path(next)
    response = RedirectResponse(target, status_code=303)
    _set_session(request, response, signed.cookie)
    response.delete_cookie(LOGIN_COOKIE)
    return response


def _set_session(request: Request, response: Response, cookie: str) -> None:
    response.set_cookie(SESSION_COOKIE, cookie, httponly=True, samesite="lax", secure=_secure(request),
                        max_age=int(SESSION_LIFETIME.total_seconds()), path="/")


@router.post("/logout")
def logout(request: Request, caller: SignedIn) -> Response:
    """End this browser's session."""
    db = request.app.state.context.db
    if caller.session_id is not None:
        from squads.accounts.models import WebSession

        with session_scope(db.sessions) as session:
            web_session, user = session.get(WebSession, caller.session_id), session.get(User, caller.user_id)
            if web_session is not None and user is not None:
                sign_out(session, web_session=web_session, user=user)
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(SESSION_COOKIE, path="/")
    return response


@router.get("/password")
def password_page(request: Request, caller: SignedIn) -> Response:
    """The account page: change the password; personal API tokens."""
    return render(request, "password.html", principal=caller, tokens=_own_tokens(request, caller))


def _own_tokens(request: Request, caller: Principal) -> list[ApiToken]:
    if caller.user_id is None:
        return []
    with request.app.state.context.db.readers() as session:
        return list_api_tokens(session, user_id=caller.user_id)


@router.post("/tokens")
def create_token(request: Request, caller: Viewer, name: Annotated[str, Form(max_length=100)]) -> Response:
    """A personal API token acting as the caller, with their role; shown once."""
    if caller.user_id is None:
        return render(request, "password.html", 400, principal=caller, tokens=[],
                      error="only a signed-in user has personal tokens")
    try:
        with session_scope(request.app.state.context.db.sessions) as session:
            issued = create_api_token(session, name=f"{caller.name} {name.strip()}"[:100], actor=caller.name,
                                      user_id=caller.user_id)
    except TokenError as exc:
        return render(request, "password.html", 400, principal=caller, tokens=_own_tokens(request, caller),
                      error=str(exc))
    response = render(request, "password.html", principal=caller, tokens=_own_tokens(request, caller),
                      new_token=issued.token, notice=f"Token {issued.name} created; copy it now, it is shown once.")
    response.headers["Cache-Control"] = "no-store"
    return response


@router.post("/tokens/{token_id}/revoke")
def revoke_token(request: Request, token_id: str, caller: Viewer) -> Response:
    """Revoke one of the caller's own tokens."""
    try:
        with session_scope(request.app.state.context.db.sessions) as session:
            revoke_own_token(session, token_id=token_id[:32], user_id=caller.user_id or -1)
    except TokenError as exc:
        return render(request, "password.html", 404, principal=caller, tokens=_own_tokens(request, caller),
                      error=str(exc))
    return RedirectResponse("/password", status_code=303)


@router.post("/password")
def password(
    request: Request, caller: SignedIn,
    current: Annotated[str, Form(max_length=1024)], new: Annotated[str, Form(max_length=1024)],
) -> Response:
    """Change the caller's own password; every other session ends and this one is renewed."""
    db = request.app.state.context.db
    # The current password is a guess like a sign-in's: a stolen session must not make it an unthrottled oracle.
    wait = reserve(db.sessions, username=caller.name, peer=_peer(request), limits=limits(request))
    if wait is not None:
        return render(request, "password.html", 429, principal=caller, tokens=_own_tokens(request, caller),
                      error=f"{str(SignInThrottled(wait)).capitalize()}.")
    try:
        with session_scope(db.sessions) as session:
            user = session.get(User, caller.user_id)
            if user is None:
                raise AccountError("only a signed-in user can change a password")
            change_password(session, user=user, current=current, new=new)
            signed = open_session(session, user=user, peer=_peer(request),
                                  user_agent=request.headers.get("user-agent", ""))
    except AccountError as exc:
        if not isinstance(exc, WrongCurrentPassword):  # the current password was right: no guess to count
            succeeded(db.sessions, username=caller.name, peer=_peer(request), limits=limits(request))
        return render(request, "password.html", 400, principal=caller, error=str(exc),
                      tokens=_own_tokens(request, caller))
    succeeded(db.sessions, username=caller.name, peer=_peer(request), limits=limits(request))
    response = RedirectResponse("/", status_code=303)
    _set_session(request, response, signed.cookie)
    return response


@router.get("/")
def home(request: Request, caller: Viewer) -> Response:
    """The start page."""
    return render(request, "home.html", principal=caller)
