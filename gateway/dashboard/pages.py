"""The dashboard's pages: sign-in, sign-out, and the views (server-rendered shells whose figures the
page's script fetches from /dashboard/api, with the same range, zone and filters in every URL)."""

from __future__ import annotations

import hmac
from dataclasses import dataclass, field
from datetime import date
from typing import Annotated, Any
from urllib.parse import parse_qs, urlencode

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from sqlalchemy.exc import SQLAlchemyError

from gateway.auth import KeyCache, hash_key, well_formed
from gateway.auth_store import now_utc
from gateway.dashboard import lookups
from gateway.dashboard.params import Range, make_range
from gateway.dashboard.render import PREFIX, page
from gateway.dashboard.session import COOKIE, Sessions, Viewer, clear_cookie, set_cookie, viewer_from_session
from gateway.errors import GatewayError

LOGIN_CSRF_COOKIE = "switchyard_dashboard_csrf"
LOGIN_CSRF_MAX_AGE = 3600
MAX_FORM_BYTES = 16 * 1024

router = APIRouter(prefix=PREFIX, include_in_schema=False)


class PageError(Exception):
    """Answered as an HTML page (gateway.dashboard.install_dashboard registers the handler)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class SignInFirst(Exception):
    def __init__(self, then: str) -> None:
        super().__init__(then)
        self.then = then


def _sessions(request: Request) -> Sessions:
    return request.app.state.dashboard_sessions


async def page_viewer(request: Request) -> Viewer:
    if not _sessions(request).enabled:
        raise PageError(403, "The dashboard needs an administrator: set SWITCHYARD_MASTER_KEY.")
    try:
        viewer = await viewer_from_session(request)
    except GatewayError as exc:
        raise PageError(exc.status, exc.message) from None
    if viewer is None:
        then = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        raise SignInFirst(then)
    return viewer


PageViewer = Annotated[Viewer, Depends(page_viewer)]


def safe_next(then: str | None) -> str | None:
    """Only a dashboard path of this site (no scheme, no host, no //) is somewhere to go back to."""
    if not then or not then.startswith(PREFIX + "/") or "//" in then or "\\" in then:
        return None
    return then if then.split("?")[0] not in (f"{PREFIX}/login", f"{PREFIX}/logout") else None


def home(viewer: Viewer) -> str:
    return f"{PREFIX}/overview" if viewer.admin else f"{PREFIX}/teams/{viewer.team_id}"


async def handle_page_error(request: Request, exc: Exception) -> Response:
    if isinstance(exc, SignInFirst):
        response: Response = RedirectResponse(f"{PREFIX}/login?{urlencode({'next': exc.then})}", 303)
        if COOKIE in request.cookies:
            clear_cookie(response, request, COOKIE)
        return response
    assert isinstance(exc, PageError)
    return page("error.html", exc.status, title=f"Error {exc.status}", code=exc.status, message=exc.message)


# -- the view's context -----------------------------------------------------------------------------


@dataclass
class View:
    """What a page shows: whose data, over what range, how grouped; and the links it needs."""

    viewer: Viewer
    rng: Range
    bucket: str
    by: str
    teams: dict[str, str]
    team_id: str | None = None
    team_name: str | None = None
    key_id: str | None = None
    key_name: str | None = None
    keys: dict[str, str] = field(default_factory=dict)  # the team's keys: id -> name

    @property
    def common(self) -> dict[str, str]:
        """The range parameters every API call and link carries."""
        return self.rng.describe()

    def q(self, **params: Any) -> dict[str, Any]:
        """Parameters of an API call for this view (its team and key, its range) plus `params`."""
        return {"team_id": self.team_id, "key_id": self.key_id, **self.common, **params}

    def link(self, path: str, **params: Any) -> str:
        query = urlencode({k: v for k, v in {**self.common, **params}.items() if v})
        return f"{PREFIX}{path}?{query}"


def _choice(value: str | None, allowed: tuple[str, ...], default: str) -> str:
    return value if value in allowed else default


async def build_view(
    request: Request,
    viewer: Viewer,
    *,
    team_id: str | None = None,
    key_id: str | None = None,
    by: tuple[str, ...] = ("team", "model"),
) -> View:
    qp = request.query_params
    try:
        start = date.fromisoformat(qp["start"]) if qp.get("start") else None
        end = date.fromisoformat(qp["end"]) if qp.get("end") else None
        rng = make_range(start, end, qp.get("tz") or "UTC")
    except ValueError:
        raise PageError(400, "start and end are days (YYYY-MM-DD)") from None
    except GatewayError as exc:
        raise PageError(400, exc.message) from None
    if not viewer.admin and team_id is not None and team_id != viewer.team_id:
        raise PageError(403, "This page belongs to another team.")
    default_bucket = "hour" if rng.days <= 2 else "day"
    view = View(
        viewer,
        rng,
        _choice(qp.get("bucket"), ("day", "hour"), default_bucket),
        _choice(qp.get("by"), by, by[0]),
        teams={},
        team_id=team_id,
        key_id=key_id,
    )
    sessions = request.app.state.sessions
    try:
        async with sessions() as session:
            view.teams = await lookups.team_names(session, None if viewer.admin else [viewer.team_id or ""])
            if team_id is not None:
                view.team_name = view.teams.get(team_id)
                if view.team_name is None:
                    raise PageError(404, "No such team.")
            if key_id is not None:
                if await lookups.key_team(session, key_id) != team_id:
                    raise PageError(404, "No such key in this team.")
                view.key_name = (await lookups.key_names(session, [key_id])).get(key_id)
            if team_id is not None:
                keys = await lookups.team_keys(session, team_id)
                view.keys = {k.id: k.name or f"{k.prefix}..." for k in keys}
    except (SQLAlchemyError, OSError, TimeoutError):
        raise PageError(503, "The database is unreachable; try again shortly.") from None
    return view


def render(template: str, view: View, status: int = 200, **context: Any) -> HTMLResponse:
    return page(template, status, view=view, viewer=view.viewer, csrf=view.viewer.csrf, **context)


# -- sign-in and out ---------------------------------------------------------------------------------


async def read_form(request: Request, max_bytes: int = MAX_FORM_BYTES) -> dict[str, str]:
    if request.headers.get("content-type", "").split(";")[0].strip() != "application/x-www-form-urlencoded":
        raise PageError(415, "Send the form as application/x-www-form-urlencoded.")
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > max_bytes:
            raise PageError(413, "The form is too large.")
    try:
        parsed = parse_qs(body.decode(), keep_blank_values=True, max_num_fields=20)
    except (UnicodeDecodeError, ValueError):
        raise PageError(400, "The form could not be read.") from None
    return {k: v[0] for k, v in parsed.items()}


def login_page(request: Request, then: str | None, error: str | None = None, status: int = 200) -> Response:
    token = _sessions(request).login_csrf()
    response = page("login.html", status, title="Sign in", csrf=token, next=then or "", error=error)
    set_cookie(response, request, LOGIN_CSRF_COOKIE, token, LOGIN_CSRF_MAX_AGE)
    return response


@router.get("/login")
async def login_form(request: Request) -> Response:
    if not _sessions(request).enabled:
        raise PageError(403, "The dashboard needs an administrator: set SWITCHYARD_MASTER_KEY.")
    then = safe_next(request.query_params.get("next"))
    try:
        viewer = await viewer_from_session(request)
    except GatewayError:
        viewer = None
    if viewer is not None:
        return RedirectResponse(then or home(viewer), 303)
    return login_page(request, then)


@router.post("/login")
async def login(request: Request) -> Response:
    sessions = _sessions(request)
    if not sessions.enabled:
        raise PageError(403, "The dashboard needs an administrator: set SWITCHYARD_MASTER_KEY.")
    form = await read_form(request)
    if not sessions.login_csrf_ok(request.cookies.get(LOGIN_CSRF_COOKIE), form.get("csrf")):
        raise PageError(
            403, "The sign-in form expired or did not come from this site: reload it and try again."
        )
    then = safe_next(form.get("next"))
    key = form.get("key", "").strip()
    cache: KeyCache = request.app.state.key_cache
    client = request.client.host if request.client is not None else ""
    try:
        cache.failures.charge(client)
    except GatewayError as exc:
        return login_page(
            request, then, "Too many failed sign-ins from this address; wait a minute.", exc.status
        )
    master: bytes = request.app.state.master_key
    token = None
    if key and hmac.compare_digest(key.encode(), master):
        token = sessions.issue("admin")
    elif well_formed(key):
        try:
            principal = await cache.lookup(key)
        except GatewayError as exc:
            cache.failures.refund(client)
            return login_page(request, then, "The key store is unreachable; try again shortly.", exc.status)
        if principal is not None and not principal.expired(now_utc()) and principal.team_id is not None:
            token = sessions.issue(
                "team", team_id=principal.team_id, key_id=principal.key_id, digest=hash_key(key)
            )
            then = then or f"{PREFIX}/teams/{principal.team_id}"
    if token is None:
        return login_page(request, then, "That key is not valid (or was revoked).", 401)
    cache.failures.refund(client)
    response = RedirectResponse(then or f"{PREFIX}/overview", 303)
    set_cookie(response, request, COOKIE, token, int(sessions.ttl_s))
    clear_cookie(response, request, LOGIN_CSRF_COOKIE)
    return response


@router.post("/logout")
async def logout(request: Request) -> Response:
    form = await read_form(request)
    try:
        viewer = await viewer_from_session(request)
    except GatewayError:
        viewer = None
    if viewer is not None and not hmac.compare_digest(form.get("csrf", "").encode(), viewer.csrf.encode()):
        raise PageError(403, "The sign-out form did not come from this site.")
    response = RedirectResponse(f"{PREFIX}/login", 303)
    clear_cookie(response, request, COOKIE)
    return response


# -- views -------------------------------------------------------------------------------------------


@router.get("")
@router.get("/")
async def index(viewer: PageViewer) -> Response:
    return RedirectResponse(home(viewer), 303)


@router.get("/overview")
async def overview(request: Request, viewer: PageViewer) -> Response:
    if not viewer.admin:
        raise PageError(403, "The organisation overview is for admins.")
    view = await build_view(request, viewer, by=("team", "model"))
    return render("overview.html", view, title="Overview")


@router.get("/teams/{team_id}")
async def team(request: Request, team_id: str, viewer: PageViewer) -> Response:
    view = await build_view(request, viewer, team_id=team_id, by=("model", "tier", "key"))
    return render("team.html", view, title=view.team_name)


@router.get("/teams/{team_id}/keys/{key_id}")
async def key(request: Request, team_id: str, key_id: str, viewer: PageViewer) -> Response:
    view = await build_view(request, viewer, team_id=team_id, key_id=key_id, by=("model", "tier"))
    return render("key.html", view, title=view.key_name or key_id)


@router.get("/keys/{key_id}")
async def key_by_id(request: Request, key_id: str, viewer: PageViewer) -> Response:
    """A key's page wherever its team is (links from tables that list keys of several teams)."""
    async with request.app.state.sessions() as session:
        team_id = await lookups.key_team(session, key_id)
    if team_id is None or not (viewer.admin or team_id == viewer.team_id):
        raise PageError(404, "No such key in your teams.")
    query = f"?{request.url.query}" if request.url.query else ""
    return RedirectResponse(f"{PREFIX}/teams/{team_id}/keys/{key_id}{query}", 303)


@router.get("/teams/{team_id}/requests")
async def explorer(request: Request, team_id: str, viewer: PageViewer) -> Response:
    view = await build_view(request, viewer, team_id=team_id)
    qp = request.query_params
    chosen_key = qp.get("key_id") if qp.get("key_id") in view.keys else None
    status = qp.get("status") or ""
    if status and not (status in ("ok", "error", "refusal") or (status.isdigit() and len(status) == 3)):
        status = ""
    model = (qp.get("model") or "").strip()[:200] or None
    filters = {"key_id": chosen_key, "model": model, "status": status or None}
    return render("requests.html", view, title="Requests", filters=filters)
