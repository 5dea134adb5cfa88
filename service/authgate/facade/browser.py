"""The user's browser in the facade's flow: its random `__Host-authgate-browser` id (the
consent form's CSRF token and the upstream round trip's binding) and, with `consent:
remember`, the sealed `__Host-authgate-consent` cookie of the clients it approved."""

from __future__ import annotations

import hashlib
import secrets

from starlette.requests import Request

from authgate.errors import SealError
from authgate.facade.authorization_request import AuthorizationRequest
from authgate.facade.records import REMEMBER_TTL, RememberedConsent
from authgate.sealing import SealingKeys

BROWSER_COOKIE = "__Host-authgate-browser"
REMEMBER_COOKIE = "__Host-authgate-consent"
REMEMBERED_CLIENTS = 10


def digest(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


def same_browser(request: Request, browser_hash: str) -> bool:
    """Was a record bound to `browser_hash` (a consent form, a transaction) made for this browser?"""
    browser = request.cookies.get(BROWSER_COOKIE)
    return bool(browser) and digest(browser) == browser_hash


def browser_id(request: Request) -> tuple[str, bool]:
    """The browser's random id: (id, newly made)."""
    current = request.cookies.get(BROWSER_COOKIE)
    if current and 32 <= len(current) <= 64 and current.replace("-", "").replace("_", "").isalnum():
        return current, False
    return secrets.token_urlsafe(32), True


def browser_cookie(browser: str) -> str:
    return f"{BROWSER_COOKIE}={browser}; Path=/; Max-Age=86400; Secure; HttpOnly; SameSite=Lax"


def _remembered_clients(
    keys: SealingKeys, issuer: str, policy_uid: str, request: Request, browser: str
) -> dict[str, list[str]]:
    try:
        record = RememberedConsent.open(keys, issuer, policy_uid, request.cookies.get(REMEMBER_COOKIE, ""))
    except SealError:
        return {}
    return dict(record.clients) if record.browser_hash == digest(browser) else {}


def remembered(
    keys: SealingKeys, issuer: str, policy_uid: str, request: Request, browser: str, authorization: AuthorizationRequest
) -> bool:
    """Did this browser approve this client for (at least) these scopes before?"""
    scopes = _remembered_clients(keys, issuer, policy_uid, request, browser).get(digest(authorization.client_id))
    return scopes is not None and set(authorization.scope) <= set(scopes)


def remember_cookie(
    keys: SealingKeys, issuer: str, policy_uid: str, request: Request, browser: str, authorization: AuthorizationRequest
) -> str:
    """The remember cookie with this approval added (the last REMEMBERED_CLIENTS clients)."""
    clients = _remembered_clients(keys, issuer, policy_uid, request, browser)
    key = digest(authorization.client_id)
    clients.pop(key, None)
    clients[key] = sorted(set(authorization.scope))
    clients = dict(list(clients.items())[-REMEMBERED_CLIENTS:])
    sealed = RememberedConsent(digest(browser), clients).seal(keys, issuer, policy_uid)
    return f"{REMEMBER_COOKIE}={sealed}; Path=/; Max-Age={REMEMBER_TTL}; Secure; HttpOnly; SameSite=Lax"
