"""The routing page: the live config as the live-config service has it (version, routes, models and
prices) and its editor. An admin edits one route (candidates, quality, strong_fraction) or the whole
document (YAML or JSON), validates it (every error, the diff, and the preview: share per tier and cost
before and after on the route's logged requests), applies it with the version it was based on (a
change made meanwhile makes it a 409, shown as such) or rolls back to a listed version.

Admins only; every form carries the session's CSRF token. Calls go to the ConfigService
(app.state.config_service) and the preview hook (app.state.config_preview) in process, never over
HTTP to this gateway.
"""

from __future__ import annotations

import hmac
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

import yaml
from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response
from sqlalchemy.exc import SQLAlchemyError

from gateway.dashboard.pages import PageError, PageViewer, build_view, read_form, render
from gateway.dashboard.render import PREFIX
from gateway.dashboard.session import Viewer
from gateway.errors import GatewayError
from gateway.live.service import (
    Applied,
    ConfigNotFound,
    ConfigReadOnly,
    ConfigRejected,
    ConfigService,
    StaleVersion,
)
from gateway.quality.report import quality_rows

PAGE = f"{PREFIX}/routing"
AUTHOR = "master (dashboard)"
# A whole config document travels in the form (the admin API takes up to 4 MiB; a form this much).
MAX_FORM_BYTES = 1024 * 1024
# The versions the page lists to roll back to.
VERSIONS_SHOWN = 15
# The quality panel's window.
QUALITY_DAYS = 30

router = APIRouter(prefix=PAGE, include_in_schema=False)


class ProposalError(ValueError):
    """A form field that is not what it should be (shown beside the form, nothing is sent on)."""


@dataclass
class Proposal:
    """A change as the forms carry it: one route's fields, or the whole document's text."""

    mode: Literal["route", "document"]
    route: str = ""
    candidates: str = ""
    quality: str = ""
    strong_fraction: str = ""
    document: str = ""
    base_version: int | None = None
    comment: str = ""

    @classmethod
    def of(cls, form: dict[str, str]) -> Proposal:
        mode = form.get("mode")
        if mode not in ("route", "document"):
            raise ProposalError("the form names no change (route or document)")
        base = form.get("base_version", "")
        return cls(
            mode,  # type: ignore[arg-type]
            route=form.get("route", "").strip()[:200],
            candidates=form.get("candidates", ""),
            quality=form.get("quality", "").strip(),
            strong_fraction=form.get("strong_fraction", "").strip(),
            document=form.get("document", ""),
            base_version=int(base) if base.isdigit() else None,
            comment=form.get("comment", "").strip()[:1000],
        )

    def fields(self) -> dict[str, str]:
        """The proposal as hidden form fields (Apply re-sends what was validated)."""
        out = {"mode": self.mode, "base_version": "" if self.base_version is None else str(self.base_version)}
        if self.mode == "route":
            out |= {
                "route": self.route,
                "candidates": self.candidates,
                "quality": self.quality,
                "strong_fraction": self.strong_fraction,
            }
        else:
            out["document"] = self.document
        return out


def _fraction(text: str, name: str) -> float | None:
    if not text:
        return None
    try:
        value = float(text)
    except ValueError:
        raise ProposalError(f"{name} must be a number from 0 to 1, or empty") from None
    return value  # the range is the config validation's to check (and list with the rest)


def route_entry(existing: dict[str, Any] | None, p: Proposal) -> dict[str, Any]:
    """The route as edited: the existing entry's other settings kept, the three fields replaced (an
    empty quality or strong_fraction: the default)."""
    entry = {k: v for k, v in (existing or {}).items() if k not in ("quality", "strong_fraction")}
    entry["candidates"] = [c.strip() for c in p.candidates.replace("\n", ",").split(",") if c.strip()]
    for name, text in (("quality", p.quality), ("strong_fraction", p.strong_fraction)):
        value = _fraction(text, name)
        if value is not None:
            entry[name] = value
    return entry


def parse_document(text: str) -> Any:
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ProposalError(f"the document is not valid YAML or JSON: {exc}".splitlines()[0]) from None
    if not isinstance(document, dict):
        raise ProposalError("the document must be a mapping with models and routes")
    return document


async def proposed(service: ConfigService, p: Proposal) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """The whole document the proposal makes of the newest version, and (a route's edit) the entry."""
    if p.mode == "document":
        return parse_document(p.document), None
    if not p.route:
        raise ProposalError("name the route")
    document = dict((await service.current()).document)
    routes = dict(document.get("routes") or {})
    entry = route_entry(routes.get(p.route), p)
    routes[p.route] = entry
    return {**document, "routes": routes}, entry


# -- the page -------------------------------------------------------------------------------------


@dataclass
class Outcome:
    """What a form post comes back to: a validation's result, or why nothing was changed."""

    status: int = 200
    proposal: Proposal | None = None
    result: dict[str, Any] | None = None
    error: str | None = None
    errors: list[dict[str, str]] = field(default_factory=list)
    conflict: dict[str, int | None] | None = None


def _service(request: Request) -> ConfigService:
    service: ConfigService | None = getattr(request.app.state, "config_service", None)
    if service is None:
        raise PageError(503, "Live config is not available on this gateway.")
    return service


@asynccontextmanager
async def _database() -> AsyncIterator[None]:
    try:
        yield
    except (SQLAlchemyError, OSError, TimeoutError):
        raise PageError(503, "The database is unreachable; try again shortly.") from None


def _yaml(document: dict[str, Any]) -> str:
    return yaml.safe_dump(document, sort_keys=False, allow_unicode=True, default_flow_style=False)


async def show(request: Request, viewer: Viewer, outcome: Outcome | None = None) -> Response:
    if not viewer.admin:
        raise PageError(403, "The routing config is for admins.")
    outcome = outcome or Outcome()
    view = await build_view(request, viewer)
    service = _service(request)
    async with _database():
        current = await service.current()
        versions = await service.history(VERSIONS_SHOWN) if service.mode != "pinned" else []
        quality = await _quality(request)
    applied = request.query_params.get("applied", "")
    return render(
        "routing.html",
        view,
        status=outcome.status,
        title="Routing",
        current=current,
        running=service.live.version,
        mode=service.mode,
        versions=versions,
        routes=current.document.get("routes") or {},
        document_text=_yaml(current.document),
        applied=int(applied) if applied.isdigit() else None,
        outcome=outcome,
        quality=quality,
        quality_days=QUALITY_DAYS,
    )


async def _quality(request: Request) -> list[dict[str, Any]]:
    """The quality estimate (gateway.quality.report) of the last QUALITY_DAYS, for its panel."""
    end = datetime.now(UTC)
    async with request.app.state.sessions() as session:
        rows = await quality_rows(session, start=end - timedelta(days=QUALITY_DAYS), end=end)
    return [r.to_json() for r in rows if sum(r.judged.values()) or r.feedback_count]


async def _form(request: Request, viewer: Viewer) -> dict[str, str]:
    if not viewer.admin:
        raise PageError(403, "The routing config is for admins.")
    form = await read_form(request, MAX_FORM_BYTES)
    if not viewer.csrf or not hmac.compare_digest(form.get("csrf", "").encode(), viewer.csrf.encode()):
        raise PageError(403, "The form did not come from this site (or your session changed): reload it.")
    return form


@router.get("")
async def routing(request: Request, viewer: PageViewer) -> Response:
    return await show(request, viewer)


@router.post("/validate")
async def validate(request: Request, viewer: PageViewer) -> Response:
    form = await _form(request, viewer)
    service = _service(request)
    try:
        p = Proposal.of(form)
        async with _database():
            document, _ = await proposed(service, p)
            dry = await service.validate(document)
    except ProposalError as exc:
        return await show(request, viewer, Outcome(400, None, error=str(exc)))
    p.base_version = dry.base_version
    diff = [{"op": d["op"], "path": d["path"], "old": d.get("old"), "new": d.get("new")} for d in dry.diff]
    result: dict[str, Any] = {"valid": dry.validation.valid, "diff": diff, "preview": None}
    if not dry.validation.valid:
        return await show(request, viewer, Outcome(400, p, result, errors=list(dry.validation.errors)))
    options = {"route": p.route} if p.mode == "route" else None
    try:
        async with _database():
            result["preview"] = await request.app.state.config_preview(dry, options)
    except GatewayError as exc:
        return await show(request, viewer, Outcome(400, p, result, error=f"No preview: {exc.message}"))
    return await show(request, viewer, Outcome(200, p, result))


async def _changed(request: Request, viewer: Viewer, p: Proposal | None, change: Any) -> Response:
    """Run a change; the page again with what went wrong, or on to the page showing the new version."""
    try:
        async with _database():
            applied: Applied = await change()
    except StaleVersion as exc:
        conflict = {"expected": exc.expected, "current": exc.current}
        return await show(request, viewer, Outcome(409, p, conflict=conflict))
    except ConfigRejected as exc:
        return await show(request, viewer, Outcome(400, p, errors=list(exc.errors)))
    except (ConfigReadOnly, ConfigNotFound, ProposalError) as exc:
        status = 409 if isinstance(exc, ConfigReadOnly) else 404 if isinstance(exc, ConfigNotFound) else 400
        return await show(request, viewer, Outcome(status, p, error=str(exc)))
    return RedirectResponse(f"{PAGE}?applied={applied.current.version}", 303)


@router.post("/apply")
async def apply(request: Request, viewer: PageViewer) -> Response:
    form = await _form(request, viewer)
    service = _service(request)
    try:
        p = Proposal.of(form)
    except ProposalError as exc:
        return await show(request, viewer, Outcome(400, None, error=str(exc)))
    if p.base_version is None:
        return await show(request, viewer, Outcome(400, p, error="Validate the change first."))

    async def change() -> Applied:
        comment = p.comment or None
        if p.mode == "document":
            return await service.apply(parse_document(p.document), AUTHOR, comment, p.base_version)
        _, entry = await proposed(service, p)
        return await service.patch_route(p.route, entry, AUTHOR, comment, p.base_version)

    return await _changed(request, viewer, p, change)


@router.post("/rollback")
async def rollback(request: Request, viewer: PageViewer) -> Response:
    form = await _form(request, viewer)
    service = _service(request)
    version, base = form.get("version", ""), form.get("base_version", "")
    if not (version.isdigit() and base.isdigit()) or not 1 <= int(version) < 2**31:
        return await show(request, viewer, Outcome(400, None, error="Pick a listed version to roll back to."))
    comment = form.get("comment", "").strip()[:1000] or None
    return await _changed(
        request,
        viewer,
        None,
        lambda: service.rollback(int(version), AUTHOR, comment, int(base)),
    )
