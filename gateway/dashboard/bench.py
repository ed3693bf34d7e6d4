"""Dashboard speed: `python -m gateway.dashboard.bench --url postgresql://... [--seed-requests N]`.

Serves a gateway on the database at URL (uvicorn on 127.0.0.1), then times every /dashboard/api
endpoint over HTTP, each --runs times with the parameters varied (org-wide and three teams of
different sizes, ranges of 1, 7 and 30 days ending at the data's last day, four time zones), and
prints p50 / p95 / max per endpoint against the 150 ms p95 target. With chromium (Debian's, by
path; Playwright drives it, nothing is downloaded) it then loads each page --page-runs times and
times it until complete (every data-testid figure filled: <body data-ready="1">), against 1 s.

--seed-requests N first seeds the empty database as the issue's benchmark does (gateway.accounting.
seed_demo: 200 teams, 2,000 keys, 30 models, 90 days). Not a test: the figures depend on the
machine and its load; --json FILE keeps them.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import shutil
import socket
import statistics
import tempfile
import threading
import time
from collections.abc import Iterator
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import httpx
import uvicorn
from sqlalchemy import func, select

from gateway.accounting import seed_demo
from gateway.app import create_app
from gateway.db.engine import make_engine, normalize_url, session_factory
from gateway.db.models import DailyKeyTotals, DailyTeamTotals
from gateway.settings import Settings

API_TARGET_MS = 150.0
PAGE_TARGET_MS = 1000.0
MASTER = "sk-dashboard-bench-master"
ZONES = ("UTC", "Europe/Berlin", "America/New_York", "Asia/Kolkata")
DAYS = (1, 7, 30)
HOUR_DAYS = (1, 2, 7)
# The charts' series: the ten costliest groups, the rest as one.
TEN = {"limit": "10"}


class Server:
    """The gateway on a loopback port, in a thread of its own (its own event loop)."""

    def __init__(self, app: Any) -> None:
        self._sock = socket.socket()
        # asyncio sets TCP_NODELAY only on sockets made with proto=IPPROTO_TCP, which accept() on
        # this one does not give: without it every keep-alive answer waits ~40 ms on a delayed ACK.
        self._sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._sock.bind(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self._sock.getsockname()[1]}"
        self._server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
        self._server.install_signal_handlers = lambda: None  # type: ignore[method-assign]
        self._thread = threading.Thread(target=lambda: asyncio.run(self._server.serve([self._sock])))

    def __enter__(self) -> Server:
        self._thread.start()
        deadline = time.monotonic() + 60
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError("the gateway did not start")
            time.sleep(0.05)
        return self

    def __exit__(self, *_: object) -> None:
        self._server.should_exit = True
        self._thread.join(30)


async def sample(url: str) -> dict[str, Any]:
    """What the data holds: its last day, and teams (largest, middling, small) and a key of each."""
    engine = make_engine(url)
    try:
        async with session_factory(engine)() as s:
            last = (await s.execute(select(func.max(DailyTeamTotals.day)))).scalar()
            if last is None:
                raise SystemExit("no rollups: seed the database first (--seed-requests N)")
            by_size = (
                await s.execute(
                    select(DailyTeamTotals.team_id)
                    .group_by(DailyTeamTotals.team_id)
                    .order_by(func.sum(DailyTeamTotals.requests).desc())
                )
            ).scalars()
            ranked = list(by_size)
            teams = [ranked[0], ranked[len(ranked) // 2], ranked[-1]]
            keys = {}
            for team in teams:
                keys[team] = (
                    await s.execute(
                        select(DailyKeyTotals.key_id)
                        .where(DailyKeyTotals.team_id == team)
                        .group_by(DailyKeyTotals.key_id)
                        .order_by(func.sum(DailyKeyTotals.requests).desc())
                        .limit(1)
                    )
                ).scalar_one()
    finally:
        await engine.dispose()
    return {"last": last, "teams": teams, "keys": keys}


def variants(data: dict[str, Any], days: tuple[int, ...] = DAYS) -> Iterator[dict[str, str]]:
    """Ranges x zones, endlessly, each ending on the data's last day."""
    last: date = data["last"]
    for n, tz in itertools.cycle(itertools.product(days, ZONES)):
        yield {"start": (last - timedelta(days=n - 1)).isoformat(), "end": last.isoformat(), "tz": tz}


def calls(data: dict[str, Any]) -> dict[str, list[dict[str, str]]]:
    """Endpoint -> the scopes and options it is asked with, as the pages ask (the ranges vary on top;
    hourly buckets over ranges of up to a week, HOUR_DAYS)."""
    teams, keys = data["teams"], data["keys"]
    org_and_teams = [{}, *({"team_id": t} for t in teams)]
    return {
        "totals": org_and_teams + [{"team_id": t, "key_id": keys[t]} for t in teams[:1]],
        "spend (day)": [{"by": "team", **TEN}, {"by": "model", **TEN}]
        + [{"team_id": t, "by": by, **TEN} for t in teams for by in ("model", "tier", "key")],
        "spend (hour)": [
            {"by": "team", "bucket": "hour", **TEN},
            {"team_id": teams[0], "bucket": "hour", "by": "model", **TEN},
        ],
        "top": [{"by": by} for by in ("team", "key", "model")] + [{"team_id": teams[0], "by": "key"}],
        "latency": [*org_and_teams, {"team_id": teams[0], "key_id": keys[teams[0]]}],
        "errors": org_and_teams,
        "routing": org_and_teams,
        "savings": org_and_teams,
        "budgets": [{"team_id": t} for t in teams],
        "requests": [{"team_id": t} for t in teams] + [{"team_id": teams[0], "status": "error"}],
        "teams": [{}],
        "keys": [{"team_id": t} for t in teams],
        "config": [{}],
    }


def _path(endpoint: str) -> str:
    return endpoint.split(" ")[0]


def _figures(times: list[float], target: float) -> dict[str, Any]:
    times = sorted(times)
    p95 = times[min(len(times) - 1, max(0, round(0.95 * len(times)) - 1))]
    return {
        "runs": len(times),
        "p50_ms": round(statistics.median(times), 1),
        "p95_ms": round(p95, 1),
        "max_ms": round(times[-1], 1),
        "target_ms": target,
        "ok": p95 <= target,
    }


def time_api(base: str, data: dict[str, Any], runs: int) -> dict[str, dict[str, Any]]:
    out = {}
    headers = {"authorization": f"Bearer {MASTER}"}
    with httpx.Client(base_url=base, headers=headers, timeout=60) as client:
        for endpoint, scopes in calls(data).items():
            ranges = variants(data, HOUR_DAYS if "hour" in endpoint else DAYS)
            asks = itertools.cycle(scopes)
            times = []
            client.get(f"/dashboard/api/{_path(endpoint)}", params=next(asks)).raise_for_status()  # warm
            for _ in range(runs):
                params = {**next(asks), **next(ranges)}
                t = time.perf_counter()
                r = client.get(f"/dashboard/api/{_path(endpoint)}", params=params)
                times.append((time.perf_counter() - t) * 1000)
                r.raise_for_status()
            out[endpoint] = _figures(times, API_TARGET_MS)
            f = out[endpoint]
            print(
                f"  {endpoint:14s} p50 {f['p50_ms']:7.1f} ms  p95 {f['p95_ms']:7.1f} ms  "
                f"max {f['max_ms']:7.1f} ms  {'ok' if f['ok'] else 'MISS'}"
            )
    return out


async def time_pages(base: str, data: dict[str, Any], runs: int, chromium: str) -> dict[str, dict[str, Any]]:
    from playwright.async_api import async_playwright

    team, key = data["teams"][0], data["keys"][data["teams"][0]]
    pages = {
        "overview": "/dashboard/overview",
        "team": f"/dashboard/teams/{team}",
        "key": f"/dashboard/teams/{team}/keys/{key}",
        "requests": f"/dashboard/teams/{team}/requests",
        "routing": "/dashboard/routing",
    }
    out = {}
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=chromium, headless=True)
        page = await (await browser.new_context(viewport={"width": 1280, "height": 900})).new_page()
        await page.goto(base + "/dashboard/login")
        await page.get_by_test_id("key").fill(MASTER)
        await page.get_by_test_id("sign-in").click()
        await page.wait_for_selector("body[data-ready]")
        for name, path in pages.items():
            ranges = variants(data)
            times = []
            for i in range(runs + 1):
                query = "&".join(f"{k}={v}" for k, v in next(ranges).items())
                t = time.perf_counter()
                await page.goto(f"{base}{path}?{query}")
                await page.wait_for_selector("body[data-ready]", timeout=60_000)
                elapsed = (time.perf_counter() - t) * 1000
                if await page.get_attribute("body", "data-ready") != "1":
                    raise RuntimeError(f"{name}: a figure failed to load")
                if i:  # the first load warms the browser's cache of scripts
                    times.append(elapsed)
            out[name] = f = _figures(times, PAGE_TARGET_MS)
            print(
                f"  {name:14s} p50 {f['p50_ms']:7.1f} ms  p95 {f['p95_ms']:7.1f} ms  "
                f"max {f['max_ms']:7.1f} ms  {'ok' if f['ok'] else 'MISS'}"
            )
        await browser.close()
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m gateway.dashboard.bench", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--url", required=True, help="postgresql://... (or sqlite:///path.db)")
    parser.add_argument("--seed-requests", type=int, default=0, help="seed the empty database first")
    parser.add_argument("--runs", type=int, default=40, help="calls per endpoint (default 40)")
    parser.add_argument("--page-runs", type=int, default=12, help="loads per page (default 12)")
    parser.add_argument("--chromium", default=shutil.which("chromium"), help="chromium's path")
    parser.add_argument("--json", type=Path, help="write the figures here too")
    args = parser.parse_args(argv)
    url = normalize_url(args.url)
    figures: dict[str, Any] = {}
    if args.seed_requests:
        figures["seed"] = asyncio.run(
            seed_demo.seed(url, requests=args.seed_requests, teams=200, keys=2000, models=30, days=90)
        )
    data = asyncio.run(sample(url))
    with tempfile.TemporaryDirectory() as spool:
        settings = Settings(
            _env_file=None,  # type: ignore[call-arg]
            database_url=url,
            master_key=MASTER,
            spool_dir=Path(spool),
            local_model=False,
        )
        with Server(create_app(settings)) as server:
            print(f"dashboard API ({args.runs} calls each; target p95 <= {API_TARGET_MS:.0f} ms):")
            figures["api"] = time_api(server.url, data, args.runs)
            if args.chromium:
                print(
                    f"pages in {args.chromium} (complete: every figure filled; "
                    f"target <= {PAGE_TARGET_MS:.0f} ms):"
                )
                figures["pages"] = asyncio.run(time_pages(server.url, data, args.page_runs, args.chromium))
            else:
                print("pages: no chromium found (--chromium PATH)")
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2, default=str))


if __name__ == "__main__":
    main()
