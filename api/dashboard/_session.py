"""The dashboard's session: the API key in one cookie, and CSRF tokens derived from it.

The cookie holds ``<scope>.<nonce>.<key>``; it is ``HttpOnly`` (no script reads it),
``SameSite=Strict`` (no other site's page sends it), scoped to ``/dashboard`` (never sent to
the API paths, which take only a bearer header) and ``Secure`` when served over https. No
state lives on the server, so every API process of a scale-out deployment serves any session.

CSRF: each form that writes carries ``csrf`` = HMAC-SHA256(key, nonce), which only someone
holding the cookie's secret can compute; a new sign-in draws a new nonce. The sign-in form
itself (before any key is known) uses a double-submit token: a random value both in a
``SameSite=Strict`` cookie and in the form. ``scope`` only decides which buttons a page
shows; what a key may do is enforced by the API itself.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from typing import Any

from litestar import Request, Response
from litestar.datastructures import Cookie

__all__ = [
    "PRE_COOKIE",
    "SESSION_COOKIE",
    "Session",
    "check_csrf",
    "clear_session",
    "read_session",
    "set_pre_token",
    "set_session",
    "signin_token_ok",
    "well_formed_key",
]

SESSION_COOKIE = "abaxus_session"
PRE_COOKIE = "abaxus_signin"
PATH = "/dashboard"
_KEY = re.compile(r"^sk_(live|test)_[A-Za-z0-9]{40}$")
_SCOPES = ("admin", "read", "ingest")


@dataclass(frozen=True)
class Session:
    scope: str
    nonce: str
    key: str

    @property
    def csrf(self) -> str:
        return hmac.new(self.key.encode(), b"abaxus-dashboard-csrf:" + self.nonce.encode(), hashlib.sha256).hexdigest()

    @property
    def is_admin(self) -> bool:
        return self.scope == "admin"


def well_formed_key(key: str) -> bool:
    return bool(_KEY.match(key))


def read_session(request: Request[Any, Any, Any]) -> Session | None:
    raw = request.cookies.get(SESSION_COOKIE, "")
    scope, _, rest = raw.partition(".")
    nonce, _, key = rest.partition(".")
    if scope not in _SCOPES or not nonce or not well_formed_key(key):
        return None
    return Session(scope, nonce, key)


def _secure(request: Request[Any, Any, Any]) -> bool:
    return request.url.scheme == "https"


def _cookie(request: Request[Any, Any, Any], name: str, value: str, max_age: int | None) -> Cookie:
    return Cookie(key=name, value=value, path=PATH, httponly=True, samesite="strict", secure=_secure(request),
                  max_age=max_age)


def set_session(response: Response[Any], request: Request[Any, Any, Any], key: str, scope: str) -> Session:
    session = Session(scope, secrets.token_hex(16), key)
    response.set_cookie(_cookie(request, SESSION_COOKIE, f"{scope}.{session.nonce}.{key}", None))
    response.delete_cookie(PRE_COOKIE, path=PATH)
    return session


def clear_session(response: Response[Any]) -> None:
    response.delete_cookie(SESSION_COOKIE, path=PATH)


def set_pre_token(response: Response[Any], request: Request[Any, Any, Any], token: str) -> None:
    response.set_cookie(_cookie(request, PRE_COOKIE, token, 3600))


def signin_token_ok(request: Request[Any, Any, Any], sent: str) -> bool:
    expected = request.cookies.get(PRE_COOKIE, "")
    return bool(expected) and bool(sent) and hmac.compare_digest(expected.encode(), sent.encode())


def check_csrf(session: Session, sent: str) -> bool:
    return bool(sent) and hmac.compare_digest(session.csrf.encode(), sent.encode())
