"""/dashboard/api and sign-in against a real gateway over seeded data (SQLite and PostgreSQL): figures
equal the records, a time zone moves requests between days and keeps the total, CSV equals JSON, a team
member sees their team only, sessions and CSRF hold."""

from __future__ import annotations

import csv
import io
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from gateway.app import create_app
from gateway.config import parse_config
from gateway.dashboard import schemas
from gateway.dashboard.api import csv_text
from gateway.dashboard.pages import LOGIN_CSRF_COOKIE
from gateway.dashboard.session import COOKIE, Sessions
from gateway.settings import Settings
from tests.gateway.dashboard.conftest import Dash, login_csrf, signed_in
from tests.gateway.dashboard.seed import (
    MASTER,
    p95_latency,
    per_local_day,
    savings,
    savings_by_model,
    total_cost,
    usd,
    within_one_bucket,
)

ADMIN = {"authorization": f"Bearer {MASTER}"}
ENDPOINTS = ("totals", "spend", "top?by=team", "latency", "errors", "routing", "savings", "requests")


def get(dash: Dash, path: str, headers: dict[str, str] | None = None, **params: Any) -> httpx.Response:
    return httpx.get(dash.url + "/dashboard/api/" + path, params=params, headers=headers or ADMIN)


def test_figures_equal_the_seeded_records(dash: Dash) -> None:
    s = dash.seeded
    for team in (None, "alpha", "beta"):
        records = s.of(team)
        team_id = None if team is None else s.teams[team]
        totals = get(dash, "totals", team_id=team_id, **dash.range()).json()["rows"]
        assert [r["period"] for r in totals] == ["current", "previous"]
        now, before = totals
        assert now["cost_usd"] == usd(total_cost(records))
        assert now["requests"] == len(records)
        assert now["errors"] == sum(r.status >= 400 for r in records)
        assert now["refusals"] == sum(r.error_type == "budget_exceeded" for r in records)
        assert now["savings_usd"] == usd(savings(s, records))
        assert before["requests"] == 0 and before["cost_usd"] == "0"
        latency = get(dash, "latency", team_id=team_id, **dash.range()).json()["rows"]
        assert latency[0]["model"] is None
        assert within_one_bucket(latency[0]["latency_p95_ms"], p95_latency(records))
        assert latency[0]["requests"] == sum(r.status < 400 for r in records)
        by_model = get(dash, "savings", team_id=team_id, **dash.range()).json()["rows"]
        assert {r["model"]: r["savings_usd"] for r in by_model} == savings_by_model(s, records)
    # The same UTC range gives what /admin/spend gives.
    admin = httpx.get(
        dash.url + "/admin/spend",
        params={"group_by": "team", "start": dash.start, "end": dash.end},
        headers=ADMIN,
    ).json()["rows"]
    top = get(dash, "top", by="team", **dash.range()).json()["rows"]
    assert {r["team"]: r["cost_usd"] for r in admin} == {r["id"]: r["cost_usd"] for r in top}
    budgets = get(dash, "budgets", team_id=s.teams["alpha"]).json()["rows"]
    assert budgets[0]["spent_usd"] == usd(total_cost(s.of("alpha")))
    by_key = {r["label"]: r for r in budgets[1:]}
    assert by_key["a1"]["binding"] == "key" and by_key["a1"]["effective_remaining_usd"] == "0"
    assert by_key["a2"]["limit_usd"] is None and by_key["a2"]["binding"] == "team"


@pytest.mark.parametrize("tz", ["America/New_York", "Asia/Dubai"])
def test_a_time_zone_moves_requests_between_days_and_keeps_the_total(dash: Dash, tz: str) -> None:
    utc = get(dash, "spend", bucket="day", **dash.range()).json()
    local = get(dash, "spend", bucket="day", **dash.range(tz)).json()
    days_utc = {r["bucket"]: r["requests"] for r in utc["rows"]}
    days_local = {r["bucket"]: r["requests"] for r in local["rows"]}
    assert days_utc == per_local_day(dash.seeded.records, "UTC")
    assert days_local == per_local_day(dash.seeded.records, tz)
    assert days_local != days_utc
    assert sum(days_local.values()) == sum(days_utc.values()) == len(dash.seeded.records)
    cost = [get(dash, "totals", **dash.range(z)).json()["rows"][0]["cost_usd"] for z in ("UTC", tz)]
    assert cost[0] == cost[1]
    assert local["range"]["tz"] == tz and len(local["axis"]) == 3


def test_spend_keeps_the_costliest_groups_and_sums_the_rest(dash: Dash) -> None:
    s = dash.seeded
    every = get(dash, "spend", by="team", **dash.range()).json()["rows"]
    two = get(dash, "spend", by="team", limit=1, **dash.range()).json()["rows"]
    costliest = max(s.teams.values(), key=lambda t: total_cost([r for r in s.records if r.team_id == t]))
    assert {r["group"] for r in two} == {costliest, "(other)"}
    assert {r["label"] for r in two if r["group"] == "(other)"} == {"other teams"}
    for field in ("requests", "errors", "prompt_tokens", "cached_tokens", "cache_write_tokens"):
        assert sum(r[field] for r in two) == sum(r[field] for r in every)
    assert sum(r["requests"] for r in two) == len(s.records)
    # The token chart's cache series: reads, and writes of both lifetimes.
    assert sum(r["cached_tokens"] for r in every) == sum(r.cached_tokens for r in s.records)
    written = sum(r.cache_write_5m_tokens + r.cache_write_1h_tokens for r in s.records)
    assert written > 0 and sum(r["cache_write_tokens"] for r in every) == written
    # A limit no smaller than the number of groups changes nothing.
    assert get(dash, "spend", by="team", limit=2, **dash.range()).json()["rows"] == every


def _csv_rows(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text)))


def _as_csv(value: Any) -> str:
    return "" if value is None else ("true" if value is True else "false" if value is False else str(value))


def test_csv_equals_json(dash_sqlite: Dash) -> None:
    team = dash_sqlite.seeded.teams["alpha"]
    for endpoint in (*ENDPOINTS, "budgets", "teams", "keys", "config"):
        path, _, extra = endpoint.partition("?")
        params: dict[str, Any] = {
            **dash_sqlite.range(),
            "team_id": team,
            **dict([extra.split("=")] if extra else []),
        }
        if path == "config":
            params = {}
        as_json = get(dash_sqlite, path, **params)
        as_csv = get(dash_sqlite, path, format="csv", **params)
        assert as_json.status_code == as_csv.status_code == 200, (endpoint, as_csv.text)
        assert as_csv.headers["content-type"].startswith("text/csv")
        rows = as_json.json()["rows"]
        assert rows, endpoint
        parsed = _csv_rows(as_csv.text)
        assert parsed == [{k: _as_csv(v) for k, v in row.items() if k in parsed[0]} for row in rows], endpoint
        assert set(parsed[0]) == set(rows[0]), endpoint


def test_csv_keeps_a_name_from_running_as_a_formula() -> None:
    row = {"id": "t1", "name": '=HYPERLINK("x")', "budget_usd": "-0.5", "budget_period": None}
    assert _csv_rows(csv_text(schemas.TeamRow, [row])) == [
        {"id": "t1", "name": '\'=HYPERLINK("x")', "budget_usd": "-0.5", "budget_period": ""}
    ]


def test_request_explorer_pages_by_keyset_and_filters(dash_sqlite: Dash) -> None:
    s = dash_sqlite.seeded
    seen: list[str] = []
    cursor = None
    while True:
        page = get(
            dash_sqlite, "requests", team_id=s.teams["alpha"], limit=7, cursor=cursor, **dash_sqlite.range()
        )
        body = page.json()
        seen += [r["request_id"] for r in body["rows"]]
        cursor = body["next_cursor"]
        if cursor is None:
            break
    expected = sorted(s.of("alpha"), key=lambda r: (r.ts, r.request_id), reverse=True)
    assert seen == [r.request_id for r in expected]
    refusals = get(dash_sqlite, "requests", status="refusal", **dash_sqlite.range()).json()["rows"]
    assert {r["request_id"] for r in refusals} == {r.request_id for r in s.records if r.status == 429}
    one_key = get(dash_sqlite, "requests", key_id=s.keys["b1"], model="large-b", **dash_sqlite.range()).json()
    assert {r["request_id"] for r in one_key["rows"]} == {
        r.request_id for r in s.of("beta") if (r.deployment or r.requested_model) == "large-b"
    }
    # Token counts only: no field of a row holds what was asked or answered.
    assert not {"messages", "prompt", "input", "content", "response"} & set(one_key["rows"][0])


def test_team_member_sees_only_their_team(dash_sqlite: Dash) -> None:
    s = dash_sqlite.seeded
    alpha, beta = s.teams["alpha"], s.teams["beta"]
    with signed_in(dash_sqlite, s.secrets["a2"]) as member:
        assert member.get(f"/dashboard/teams/{alpha}").status_code == 200
        for page in (
            f"/dashboard/teams/{beta}",
            f"/dashboard/teams/{beta}/requests",
            "/dashboard/overview",
            "/dashboard/routing",
            f"/dashboard/teams/{beta}/keys/{s.keys['b1']}",
        ):
            r = member.get(page)
            assert r.status_code == 403, page
            assert s.secrets["b1"] not in r.text
        for endpoint in ENDPOINTS:
            path, _, extra = endpoint.partition("?")
            for fmt in ("json", "csv"):
                params = {**dash_sqlite.range(), "format": fmt, **dict([extra.split("=")] if extra else [])}
                assert (
                    member.get(f"/dashboard/api/{path}", params={**params, "team_id": beta}).status_code
                    == 403
                )
                r = member.get(f"/dashboard/api/{path}", params={**params, "key_id": s.keys["b1"]})
                assert r.status_code == 403, endpoint
        assert member.get("/dashboard/api/budgets", params={"team_id": beta}).status_code == 403
        assert member.get("/dashboard/api/config").status_code == 403
        # Without a team the member's own is meant: alpha's figures, not the organisation's.
        totals = member.get("/dashboard/api/totals", params=dash_sqlite.range()).json()["rows"][0]
        assert totals["requests"] == len(s.of("alpha"))
        assert [t["name"] for t in member.get("/dashboard/api/teams").json()["rows"]] == ["alpha"]
    # A key header works the same way (for scripts): its own team only.
    b1 = {"authorization": f"Bearer {s.secrets['b1']}"}
    assert get(dash_sqlite, "totals", headers=b1, team_id=beta).status_code == 200
    assert get(dash_sqlite, "totals", headers=b1, team_id=alpha).status_code == 403


def _flags(response: httpx.Response, name: str) -> set[str]:
    cookie = next(c for c in response.headers.get_list("set-cookie") if c.startswith(name + "="))
    return {f.strip().lower() for f in cookie.split(";")[1:]}


def test_session_cookie_and_no_key_in_any_page(dash_sqlite: Dash) -> None:
    s = dash_sqlite.seeded
    secret = s.secrets["a1"]
    # Behind a TLS proxy both cookies are Secure (so a plain-HTTP client would not send them back).
    behind_tls = {"x-forwarded-proto": "https"}
    form = httpx.get(dash_sqlite.url + "/dashboard/login", headers=behind_tls)
    token = form.cookies[LOGIN_CSRF_COOKIE]
    assert {"httponly", "samesite=strict", "secure", "path=/dashboard"} <= _flags(form, LOGIN_CSRF_COOKIE)
    r = httpx.post(
        dash_sqlite.url + "/dashboard/login",
        data={"csrf": token, "key": secret},
        headers={**behind_tls, "cookie": f"{LOGIN_CSRF_COOKIE}={token}"},
    )
    assert r.status_code == 303 and r.headers["location"] == f"/dashboard/teams/{s.teams['alpha']}"
    assert {"httponly", "samesite=strict", "secure", "path=/dashboard"} <= _flags(r, COOKIE)
    session = r.cookies[COOKIE]
    assert secret not in session and secret[6:] not in session
    # Over plain HTTP: not Secure; and no page shows the key.
    with signed_in(dash_sqlite, secret) as client:
        for page in (f"/dashboard/teams/{s.teams['alpha']}", f"/dashboard/teams/{s.teams['alpha']}/requests"):
            html = client.get(page)
            assert html.status_code == 200 and secret[6:] not in html.text
            csp = html.headers["content-security-policy"]
            assert "script-src 'self'" in csp and "unsafe-inline" not in csp and "unsafe-eval" not in csp


def test_sign_in_and_out_need_this_sites_csrf_token(dash_sqlite: Dash) -> None:
    with httpx.Client(base_url=dash_sqlite.url) as client:
        token = login_csrf(client)
        # No token, another token, and a token without its cookie: all refused, no session made.
        for form, cookies in (({"key": MASTER}, None), ({"key": MASTER, "csrf": "x.y"}, None)):
            r = client.post("/dashboard/login", data=form, cookies=cookies)
            assert r.status_code == 403 and COOKIE not in r.headers.get("set-cookie", "")
        r = httpx.post(dash_sqlite.url + "/dashboard/login", data={"key": MASTER, "csrf": token})
        assert r.status_code == 403
        assert client.post("/dashboard/login", data={"key": "sk-sy-wrong", "csrf": token}).status_code == 401
    with signed_in(dash_sqlite, MASTER) as admin:
        assert admin.post("/dashboard/logout", data={"csrf": "forged"}).status_code == 403
        assert admin.get("/dashboard/overview").status_code == 200  # still signed in
        page = admin.get("/dashboard/overview").text
        csrf = page.split('name="csrf" value="')[1].split('"')[0]
        assert admin.post("/dashboard/logout", data={"csrf": csrf}).status_code == 303
        assert admin.get("/dashboard/overview").status_code == 303  # to the sign-in form
        assert admin.get("/dashboard/api/totals").status_code == 401


def test_revoking_a_key_ends_its_sessions(dash_sqlite: Dash) -> None:
    team = dash_sqlite.seeded.teams["beta"]
    new = httpx.post(
        dash_sqlite.url + "/admin/keys", json={"team_id": team, "name": "temp"}, headers=ADMIN
    ).json()
    with signed_in(dash_sqlite, new["key"]) as member:
        assert member.get("/dashboard/api/totals").status_code == 200
        httpx.post(dash_sqlite.url + f"/admin/keys/{new['id']}/revoke", headers=ADMIN).raise_for_status()
        assert member.get("/dashboard/api/totals").status_code == 401
        assert member.get(f"/dashboard/teams/{team}").status_code == 303


def test_sessions_expire_and_survive_no_tampering(monkeypatch: pytest.MonkeyPatch) -> None:
    sessions = Sessions(b"master", None, ttl_s=60)
    token = sessions.issue("admin")
    assert sessions.read(token) is not None
    # A middle character: the last ones before "=" may be padding bits that decode the same.
    mid = len(token) // 2
    assert sessions.read(token[:mid] + ("A" if token[mid] != "A" else "B") + token[mid + 1 :]) is None
    assert Sessions(b"another master", None, ttl_s=60).read(token) is None
    later = time.time() + 61
    monkeypatch.setattr(time, "time", lambda: later)
    assert sessions.read(token) is None


@pytest.mark.parametrize(
    "params",
    [
        {"tz": "Mars/Olympus"},
        {"tz": "../../etc/passwd"},
        {"start": "2026-03-02", "end": "2026-03-01"},
        {"start": "2020-01-01", "end": "2026-01-01"},
        {"start": "0001-01-01"},
    ],
)
def test_bad_ranges_are_400(dash_sqlite: Dash, params: dict[str, str]) -> None:
    r = get(dash_sqlite, "totals", **params)
    assert r.status_code == 400 and r.json()["error"]["type"] == "invalid_request_error"


def test_bad_explorer_queries_are_400(dash_sqlite: Dash) -> None:
    assert get(dash_sqlite, "requests", cursor="nonsense").status_code == 400
    assert get(dash_sqlite, "requests", status="teapot").status_code == 400


def test_openapi_documents_every_endpoint_and_its_csv(dash_sqlite: Dash) -> None:
    doc = httpx.get(dash_sqlite.url + "/openapi.json").json()
    paths = {p for p in doc["paths"] if p.startswith("/dashboard")}
    assert paths == {
        f"/dashboard/api/{e}"
        for e in (
            "totals",
            "spend",
            "top",
            "latency",
            "errors",
            "routing",
            "savings",
            "budgets",
            "requests",
            "teams",
            "keys",
            "config",
        )
    }
    for path in paths:
        op = doc["paths"][path]["get"]
        assert {"application/json", "text/csv"} <= set(op["responses"]["200"]["content"]), path
        assert {"400", "401", "403"} <= set(op["responses"]), path


async def test_without_a_master_key_the_dashboard_is_off(tmp_path: Path) -> None:
    settings = Settings(
        _env_file=None,  # type: ignore[call-arg]
        database_url=f"sqlite+aiosqlite:///{tmp_path / 'gw.db'}",
        spool_dir=tmp_path / "spool",
        local_model=False,
    )
    app = create_app(settings, parse_config({"models": []}, env={}))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://127.0.0.1") as client:
        assert (await client.get("/dashboard/login")).status_code == 403
        assert (await client.get("/dashboard/api/totals")).status_code == 403
