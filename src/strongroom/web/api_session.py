"""Signing in and out: the sign-in page, `POST /api/session` and `DELETE /api/session`.

The sign-in form has its own CSRF value: GET /login sets it as a cookie and
puts it in the page, and POST /api/session must send it back in
`X-CSRF-Token` (a page elsewhere can neither read the cookie nor set the
header). The daemon remembers the values it handed out: one it did not make
is refused, and one that signed a browser in signs nobody in again. Failed attempts are limited per address and overall
(strongroom.web.auth.SignInLimiter): a refused attempt answers 429 with
Retry-After, before the password is even hashed.
"""

from __future__ import annotations

import hmac
import math
from urllib.parse import urlsplit

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from strongroom.web.guard import LOGIN_COOKIE, SESSION_COOKIE
from strongroom.web.render import page


class SignIn(BaseModel):
    password: str = Field(max_length=1024)


def _cookie_flags(request, origin: str | None = None) -> dict:
    secure = request.url.scheme == "https" or (origin or "").startswith("https://")
    return {"httponly": True, "samesite": "strict", "secure": secure, "path": "/"}


def _safe_next(target: str | None) -> str:
    """Where to go after signing in: a path of this console only."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/"
    if len(target) > 2048 or not target.isprintable() or " " in target:
        return "/"  # browsers drop tabs and newlines from a URL: "/\t/evil" would become "//evil"
    parts = urlsplit(target)
    return "/" if parts.scheme or parts.netloc else target


def routes(console) -> APIRouter:
    router = APIRouter()

    @router.get("/login", include_in_schema=False)
    def login_page(request: Request, next: str | None = None):
        value = console.sessions.new_form()
        response = page(request, "login.html", "Sign in", login_csrf=value, next=_safe_next(next))
        response.set_cookie(LOGIN_COOKIE, value, max_age=3600, **_cookie_flags(request, console.origin))
        return response

    @router.post("/api/session", tags=["session"])
    def sign_in(body: SignIn, request: Request):
        """Sign in with the console password; sets the session cookie. Answers
        `{"csrf": TOKEN}`: send it as X-CSRF-Token with every state-changing request."""
        expected = request.cookies.get(LOGIN_COOKIE, "")
        given = request.headers.get("x-csrf-token", "")
        if (not expected or not hmac.compare_digest(given.encode(), expected.encode())
                or not console.sessions.form_known(expected)):
            return JSONResponse({"error": "the sign-in form is stale: reload the page"}, status_code=403)
        client = request.client.host if request.client else "?"
        wait = console.limiter.wait_for(client)
        if wait > 0:
            return JSONResponse({"error": f"too many sign-in attempts: try again in {math.ceil(wait)} s"},
                                status_code=429, headers={"retry-after": str(math.ceil(wait))})
        if not console.password.verify(body.password):
            console.limiter.failed(client)
            return JSONResponse({"error": "wrong password"}, status_code=401)
        console.limiter.succeeded(client)
        console.sessions.spend_form(expected)
        session = console.sessions.create(console.password.stamp())
        response = JSONResponse({"csrf": session.csrf})
        response.set_cookie(SESSION_COOKIE, session.id, **_cookie_flags(request, console.origin))
        response.delete_cookie(LOGIN_COOKIE, path="/")
        return response

    @router.get("/api/session", tags=["session"])
    def who(request: Request):
        """Who is asking: `{"kind": "session"|"token"}`."""
        return {"kind": request.state.caller.kind}

    @router.delete("/api/session", tags=["session"])
    def sign_out(request: Request):
        """Sign this browser out."""
        caller = request.state.caller
        if caller.kind == "session":
            console.sessions.end(caller.id)
        response = JSONResponse({"signed_out": True})
        response.delete_cookie(SESSION_COOKIE, path="/")
        return response

    return router
