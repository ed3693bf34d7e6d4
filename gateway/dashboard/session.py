"""Who is looking at the dashboard: sign-in sessions as encrypted, expiring cookie tokens.

A session is a Fernet token (AES-128-CBC + HMAC-SHA256, with its issue time) in an HttpOnly,
SameSite=Strict cookie, Secure when the request came over TLS. Its key comes from the settings
(SWITCHYARD_DASHBOARD_SECRET), else from the master key, so every replica reads every session with no
shared store. It holds the role, the team, the key's id and SHA-256 (never the key), a CSRF token and
the expiry. A team member's key is checked again on every request through the KeyCache, so revoking
the key (or deleting its team) ends its sessions within the cache's invalidation time; an admin's
session names the master key's fingerprint, so a new master key ends them. Signing out drops the
cookie; a copy of it taken before stays valid until it expires (no server-side list to strike it from).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass
from typing import Literal

import orjson
from cryptography.fernet import Fernet, InvalidToken
from fastapi import Request, Response

from gateway.api.deps import authenticate
from gateway.auth import KeyCache
from gateway.auth_store import now_utc
from gateway.errors import GatewayError

COOKIE = "switchyard_dashboard"
PATH = "/dashboard"


@dataclass(frozen=True, slots=True)
class Viewer:
    role: Literal["admin", "team"]
    team_id: str | None = None  # None for an admin: every team
    key_id: str | None = None
    csrf: str = ""  # '' when the caller sent a key header rather than a session cookie

    @property
    def admin(self) -> bool:
        return self.role == "admin"


def _derive(secret: bytes, purpose: bytes) -> bytes:
    return hmac.new(secret, b"switchyard dashboard " + purpose, hashlib.sha256).digest()


class Sessions:
    """Issues and reads session tokens; one per app (app.state.dashboard_sessions)."""

    def __init__(self, master_key: bytes | None, secret: bytes | None, ttl_s: float) -> None:
        self.enabled = master_key is not None
        root = secret or master_key or secrets.token_bytes(32)
        self._fernet = Fernet(base64.urlsafe_b64encode(_derive(root, b"session v1")))
        self._csrf_key = _derive(root, b"login csrf v1")
        self._master_fp = "" if master_key is None else _derive(master_key, b"admin")[:12].hex()
        self.ttl_s = ttl_s

    # -- the session token ------------------------------------------------------------------------

    def issue(
        self, role: str, *, team_id: str | None = None, key_id: str | None = None, digest: str = ""
    ) -> str:
        payload = {
            "r": role,
            "t": team_id,
            "k": key_id,
            "d": digest,
            "m": self._master_fp if role == "admin" else "",
            "c": secrets.token_urlsafe(24),
            "x": int(time.time() + self.ttl_s),
        }
        return self._fernet.encrypt(orjson.dumps(payload)).decode()

    def read(self, token: str) -> dict[str, object] | None:
        """The payload of a token this made that has not expired; None for anything else."""
        try:
            data = orjson.loads(self._fernet.decrypt(token.encode(), ttl=int(self.ttl_s) + 1))
        except (InvalidToken, orjson.JSONDecodeError, ValueError, TypeError):
            return None
        if not isinstance(data, dict) or not isinstance(data.get("x"), int) or data["x"] <= time.time():
            return None
        if data.get("r") == "admin" and not hmac.compare_digest(str(data.get("m", "")), self._master_fp):
            return None
        return data

    # -- the sign-in form's CSRF token (before there is a session) ---------------------------------

    def login_csrf(self) -> str:
        nonce = secrets.token_urlsafe(18)
        mac = hmac.new(self._csrf_key, nonce.encode(), hashlib.sha256).hexdigest()[:32]
        return f"{nonce}.{mac}"

    def login_csrf_ok(self, cookie: str | None, field: str | None) -> bool:
        """Double submit: the form's token equals the cookie's, and this server made it."""
        if not cookie or not field or not hmac.compare_digest(cookie.encode(), field.encode()):
            return False
        nonce, _, mac = field.partition(".")
        good = hmac.new(self._csrf_key, nonce.encode(), hashlib.sha256).hexdigest()[:32]
        return hmac.compare_digest(mac.encode(), good.encode())


def over_tls(request: Request) -> bool:
    forwarded = request.headers.get("x-forwarded-proto", "").split(",")[0].strip().lower()
    return request.url.scheme == "https" or forwarded == "https"


def set_cookie(response: Response, request: Request, name: str, value: str, max_age: int) -> None:
    response.set_cookie(
        name,
        value,
        max_age=max_age,
        path=PATH,
        httponly=True,
        samesite="strict",
        secure=over_tls(request),
    )


def clear_cookie(response: Response, request: Request, name: str) -> None:
    response.delete_cookie(name, path=PATH, httponly=True, samesite="strict", secure=over_tls(request))


def _disabled() -> GatewayError:
    return GatewayError(
        403, "the dashboard needs SWITCHYARD_MASTER_KEY", type="permission_error", code="dashboard_disabled"
    )


def _signed_out() -> GatewayError:
    return GatewayError(401, "sign in at /dashboard/login", type="authentication_error", code="not_signed_in")


async def viewer_from_session(request: Request) -> Viewer | None:
    """The session cookie's viewer, its key checked again; None when there is no live session."""
    sessions: Sessions = request.app.state.dashboard_sessions
    token = request.cookies.get(COOKIE)
    data = sessions.read(token) if token else None
    if data is None:
        return None
    csrf = str(data.get("c") or "")
    if data.get("r") == "admin":
        return Viewer("admin", csrf=csrf)
    digest, team_id, key_id = data.get("d"), data.get("t"), data.get("k")
    if not (isinstance(digest, str) and isinstance(team_id, str) and isinstance(key_id, str)):
        return None
    cache: KeyCache = request.app.state.key_cache
    principal = await cache.lookup_digest(digest)
    if principal is None or principal.expired(now_utc()) or principal.team_id != team_id:
        return None
    return Viewer("team", team_id=team_id, key_id=key_id, csrf=csrf)


async def current_viewer(request: Request) -> Viewer:
    """The signed-in viewer, else the caller of a key header (the master key: an admin; a virtual key:
    its team), for scripts that fetch the JSON and CSV. 401 for nobody, 403 with no master key.
    Once per request: the answer cache (gateway.dashboard.answers) asks first."""
    known: Viewer | None = getattr(request.state, "dashboard_viewer", None)
    if known is not None:
        return known
    request.state.dashboard_viewer = viewer = await _find_viewer(request)
    return viewer


async def _find_viewer(request: Request) -> Viewer:
    sessions: Sessions = request.app.state.dashboard_sessions
    if not sessions.enabled:
        raise _disabled()
    viewer = await viewer_from_session(request)
    if viewer is not None:
        return viewer
    if not any(h in request.headers for h in ("authorization", "x-api-key", "api-key")):
        raise _signed_out()
    principal = await authenticate(request)
    if principal.kind == "master":
        return Viewer("admin")
    if principal.kind == "key" and principal.team_id is not None:
        return Viewer("team", team_id=principal.team_id, key_id=principal.key_id)
    raise _signed_out()
