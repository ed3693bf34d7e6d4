"""`/dashboard/api`: the JSON (and, with ?format=csv, CSV) behind every number on the dashboard's pages.

A signed-in session (the cookie) or a key header (master key: everything; a virtual key: its team)
authenticates. Every query takes the reporting range: start and end (local days, inclusive; default the
last 7 days) in tz (IANA, default UTC). The figures come from gateway.dashboard.figures (the rollups),
budgets (daily_spend), explorer (the log, a keyset page) and lookups (names).
"""

from __future__ import annotations

import csv
import io
from datetime import date
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import Response
from pydantic import BaseModel
from sqlalchemy.ext.asyncio import AsyncSession

from gateway.accounting.queries import format_usd
from gateway.api.admin import get_session, reject_nul
from gateway.api.openapi_schemas import OPENAI_ERROR
from gateway.auth_store import now_utc
from gateway.dashboard import explorer, figures, lookups, schemas
from gateway.dashboard.access import admin_only, scope_for
from gateway.dashboard.answers import CachedRoute
from gateway.dashboard.budgets import budgets as budget_rows
from gateway.dashboard.params import Bucket, Range, make_range
from gateway.dashboard.session import Viewer, current_viewer
from gateway.errors import bad_request
from gateway.pricing import TokenPrice

_ERRORS: dict[int | str, dict[str, Any]] = {
    status: {"description": description, "content": {"application/json": {"schema": OPENAI_ERROR}}}
    for status, description in {
        400: "Malformed query: a bad date, range, time zone, cursor or filter",
        401: "Not signed in, and no valid key header",
        403: "Another team's data, an admin-only view, or the dashboard is off (no master key)",
        503: "The database is unreachable",
    }.items()
}
_CSV: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "The answer; with format=csv its rows as CSV (header: the row fields)",
        "content": {"text/csv": {"schema": {"type": "string"}}},
    }
}

router = APIRouter(
    prefix="/dashboard/api",
    tags=["dashboard"],
    dependencies=[Depends(reject_nul)],
    responses=_ERRORS,
    route_class=CachedRoute,
)

ViewerDep = Annotated[Viewer, Depends(current_viewer)]
Session = Annotated[AsyncSession, Depends(get_session, scope="function")]
Format = Annotated[Literal["json", "csv"], Query(alias="format", description="json, or csv: the rows")]
TeamId = Annotated[str | None, Query(description="A team (a team member: theirs, the default)")]
KeyId = Annotated[str | None, Query(description="A key of the team")]
Model = Annotated[str | None, Query(description="The deployment that answered, else the model asked for")]


def reporting_range(
    start: Annotated[date | None, Query(description="First local day, inclusive")] = None,
    end: Annotated[date | None, Query(description="Last local day, inclusive (default: today)")] = None,
    tz: Annotated[str, Query(description="Reporting time zone, IANA (e.g. Europe/Paris)")] = "UTC",
) -> Range:
    return make_range(start, end, tz)


RangeDep = Annotated[Range, Depends(reporting_range)]


# A spreadsheet runs a cell that starts with one of these as a formula ("CSV injection").
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str) and value.startswith(_FORMULA_START) and not _numeric(value):
        return "'" + value  # a name such as "=HYPERLINK(...)" stays text; numbers stay numbers
    return str(value)


def _numeric(value: str) -> bool:
    try:
        float(value)
    except ValueError:
        return False
    return True


def csv_text(row_model: type[BaseModel], rows: list[dict[str, Any]]) -> str:
    """Rows as CSV: a header of the row model's fields, then each row's values as in the JSON
    (None empty, booleans true/false, money the same exact decimal strings; a text that a spreadsheet
    would run as a formula gets a leading ')."""
    columns = list(row_model.model_fields)
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(columns)
    for row in rows:
        writer.writerow([_cell(row.get(c)) for c in columns])
    return out.getvalue()


def answer(page: type[BaseModel], row: type[BaseModel], body: dict[str, Any], fmt: str, name: str) -> Any:
    if fmt == "csv":
        return Response(
            csv_text(row, body["rows"]),
            media_type="text/csv; charset=utf-8",
            headers={
                "content-disposition": f'attachment; filename="{name}.csv"',
                "cache-control": "no-store",
            },
        )
    return page.model_validate(body)


async def _labels(session: AsyncSession, by: str, ids: set[str]) -> dict[str, str]:
    if by == "team":
        return await lookups.team_names(session, ids)
    if by == "key":
        return await lookups.key_names(session, ids)
    return {}


# -- endpoints --------------------------------------------------------------------------------------


@router.get(
    "/totals", response_model=schemas.TotalsPage, responses=_CSV, summary="Totals vs the previous period"
)
async def totals(
    viewer: ViewerDep,
    session: Session,
    rng: RangeDep,
    team_id: TeamId = None,
    key_id: KeyId = None,
    model: Model = None,
    fmt: Format = "json",
) -> Any:
    scope = await scope_for(session, viewer, team_id, key_id, model)
    rows = [
        {"period": "current", **await figures.totals(session, scope, rng)},
        {"period": "previous", **await figures.totals(session, scope, rng.previous())},
    ]
    return answer(
        schemas.TotalsPage, schemas.TotalsRow, {"range": rng.describe(), "rows": rows}, fmt, "totals"
    )


@router.get("/spend", response_model=schemas.SpendPage, responses=_CSV, summary="Spend over time, by group")
async def spend(
    viewer: ViewerDep,
    session: Session,
    rng: RangeDep,
    team_id: TeamId = None,
    key_id: KeyId = None,
    model: Model = None,
    bucket: Bucket = "day",
    by: figures.GroupBy = "total",
    limit: Annotated[
        int | None,
        Query(ge=1, le=100, description=f"The costliest groups keep theirs; the rest: {figures.OTHER}"),
    ] = None,
    fmt: Format = "json",
) -> Any:
    scope = await scope_for(session, viewer, team_id, key_id, model)
    rows = await figures.spend_series(session, scope, rng, bucket, by, limit)
    labels = await _labels(session, by, {r["group"] for r in rows} - {figures.OTHER})
    labels[figures.OTHER] = f"other {by}s"
    for r in rows:
        r["label"] = labels.get(r["group"], r["group"])
    body = {
        "range": rng.describe(),
        "bucket": bucket,
        "by": by,
        "axis": [int(t.timestamp()) for t in rng.axis(bucket)],
        "rows": rows,
    }
    return answer(schemas.SpendPage, schemas.SpendRow, body, fmt, "spend")


@router.get("/top", response_model=schemas.TopPage, responses=_CSV, summary="Largest spenders")
async def top(
    viewer: ViewerDep,
    session: Session,
    rng: RangeDep,
    by: figures.TopBy,
    team_id: TeamId = None,
    key_id: KeyId = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 10,
    fmt: Format = "json",
) -> Any:
    scope = await scope_for(session, viewer, team_id, key_id)
    rows = await figures.top(session, scope, rng, by, limit)
    labels = await _labels(session, by, {r["id"] for r in rows})
    for r in rows:
        r["label"] = labels.get(r["id"], r["id"] or "(none)")
    return answer(
        schemas.TopPage, schemas.TopRow, {"range": rng.describe(), "by": by, "rows": rows}, fmt, "top"
    )


@router.get(
    "/latency", response_model=schemas.LatencyPage, responses=_CSV, summary="Latency and TTFT percentiles"
)
async def latency(
    viewer: ViewerDep,
    session: Session,
    rng: RangeDep,
    team_id: TeamId = None,
    key_id: KeyId = None,
    fmt: Format = "json",
) -> Any:
    scope = await scope_for(session, viewer, team_id, key_id)
    rows = await figures.latency(session, scope, rng)
    return answer(
        schemas.LatencyPage, schemas.LatencyRow, {"range": rng.describe(), "rows": rows}, fmt, "latency"
    )


@router.get(
    "/errors", response_model=schemas.ErrorPage, responses=_CSV, summary="Errors and refusals by type"
)
async def errors(
    viewer: ViewerDep,
    session: Session,
    rng: RangeDep,
    team_id: TeamId = None,
    key_id: KeyId = None,
    fmt: Format = "json",
) -> Any:
    scope = await scope_for(session, viewer, team_id, key_id)
    rows = await figures.errors(session, scope, rng)
    return answer(schemas.ErrorPage, schemas.ErrorRow, {"range": rng.describe(), "rows": rows}, fmt, "errors")


@router.get(
    "/routing", response_model=schemas.RoutingPage, responses=_CSV, summary="Share per tier and difficulty"
)
async def routing(
    viewer: ViewerDep,
    session: Session,
    rng: RangeDep,
    team_id: TeamId = None,
    key_id: KeyId = None,
    fmt: Format = "json",
) -> Any:
    scope = await scope_for(session, viewer, team_id, key_id)
    rows = await figures.routing_mix(session, scope, rng)
    return answer(
        schemas.RoutingPage, schemas.RoutingRow, {"range": rng.describe(), "rows": rows}, fmt, "routing"
    )


@router.get("/savings", response_model=schemas.SavingsPage, responses=_CSV, summary="What routing saved")
async def savings(
    viewer: ViewerDep,
    session: Session,
    rng: RangeDep,
    team_id: TeamId = None,
    key_id: KeyId = None,
    fmt: Format = "json",
) -> Any:
    scope = await scope_for(session, viewer, team_id, key_id)
    rows = await figures.savings(session, scope, rng)
    return answer(
        schemas.SavingsPage, schemas.SavingsRow, {"range": rng.describe(), "rows": rows}, fmt, "savings"
    )


@router.get(
    "/budgets",
    response_model=schemas.BudgetPage,
    responses=_CSV,
    summary="Budget burn of a team and its keys (this UTC period)",
)
async def budgets(
    viewer: ViewerDep,
    session: Session,
    team_id: TeamId = None,
    key_id: KeyId = None,
    fmt: Format = "json",
) -> Any:
    scope = await scope_for(session, viewer, team_id, key_id, team_required=True)
    assert scope.team_id is not None
    rows = await budget_rows(session, scope.team_id, scope.key_id, now_utc())
    teams = await lookups.team_names(session, {scope.team_id})
    keys = await lookups.key_names(session, {r["id"] for r in rows if r["subject"] == "key"})
    for r in rows:
        r["label"] = (teams if r["subject"] == "team" else keys).get(r["id"], r["id"])
    body = {"team_id": scope.team_id, "rows": rows}
    return answer(schemas.BudgetPage, schemas.BudgetRow, body, fmt, "budgets")


@router.get(
    "/requests",
    response_model=schemas.RequestPage,
    responses=_CSV,
    summary="Recent requests (no prompt text)",
)
async def requests(
    viewer: ViewerDep,
    session: Session,
    rng: RangeDep,
    team_id: TeamId = None,
    key_id: KeyId = None,
    model: Model = None,
    status: Annotated[
        str | None, Query(description="ok, error, refusal, or an HTTP status code", max_length=16)
    ] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    cursor: Annotated[
        str | None, Query(description="next_cursor of the previous page", max_length=512)
    ] = None,
    fmt: Format = "json",
) -> Any:
    scope = await scope_for(session, viewer, team_id, key_id, model)
    wanted: explorer.StatusFilter | int | None
    if status in (None, ""):
        wanted = None
    elif status in ("ok", "error", "refusal"):
        wanted = status  # type: ignore[assignment]
    elif status.isdigit() and 100 <= int(status) <= 599:
        wanted = int(status)
    else:
        raise bad_request("status must be ok, error, refusal or an HTTP status code", "status")
    try:
        rows, next_cursor = await explorer.request_page(
            session, scope, rng, status=wanted, limit=limit, cursor=cursor or None
        )
    except explorer.InvalidCursorError as exc:
        raise bad_request(str(exc), "cursor") from exc
    body = {"range": rng.describe(), "rows": rows, "next_cursor": next_cursor}
    return answer(schemas.RequestPage, schemas.RequestRow, body, fmt, "requests")


@router.get("/teams", response_model=schemas.TeamList, responses=_CSV, summary="Teams this viewer may see")
async def teams(viewer: ViewerDep, session: Session, fmt: Format = "json") -> Any:
    rows = []
    for team in await lookups.visible_teams(session, None if viewer.admin else viewer.team_id):
        rows.append(
            {
                "id": team.id,
                "name": team.name,
                "budget_usd": None if team.budget_usd is None else format_usd(team.budget_usd),
                "budget_period": team.budget_period,
            }
        )
    return answer(schemas.TeamList, schemas.TeamRow, {"rows": rows}, fmt, "teams")


@router.get("/keys", response_model=schemas.KeyList, responses=_CSV, summary="A team's keys (never the keys)")
async def keys(viewer: ViewerDep, session: Session, team_id: TeamId = None, fmt: Format = "json") -> Any:
    scope = await scope_for(session, viewer, team_id)
    rows = [
        {
            "id": k.id,
            "name": k.name,
            "prefix": k.prefix,
            "team_id": k.team_id,
            "revoked": k.revoked,
            "budget_usd": None if k.budget_usd is None else format_usd(k.budget_usd),
            "budget_period": k.budget_period,
        }
        for k in await lookups.team_keys(session, scope.team_id)
    ]
    return answer(schemas.KeyList, schemas.KeyRow, {"rows": rows}, fmt, "keys")


def _per_mtok(price: TokenPrice | None, side: str) -> str | None:
    return None if price is None else format_usd(getattr(price, side) * 1_000_000)


@router.get(
    "/config",
    response_model=schemas.ConfigView,
    responses=_CSV,
    summary="The running routing config, read only (admins)",
)
async def config(request: Request, viewer: ViewerDep, fmt: Format = "json") -> Any:
    admin_only(viewer)
    snap = request.app.state.live.current
    routes = [
        {
            "name": n,
            "candidates": list(r.candidates),
            "quality": r.quality,
            "strong_fraction": r.strong_fraction,
        }
        for n, r in snap.config.routes.items()
    ]
    rows = [
        {
            "name": d.name,
            "id": d.id,
            "provider": d.provider,
            "model": d.model,
            "tier": d.tier,
            "input_per_mtok": _per_mtok(snap.prices.get(d.id), "input"),
            "output_per_mtok": _per_mtok(snap.prices.get(d.id), "output"),
        }
        for d in snap.config.models
    ]
    body = {"version": snap.version, "routes": routes, "rows": rows}
    return answer(schemas.ConfigView, schemas.ModelRow, body, fmt, "config")
