"""`/dashboard`: per-team cost pages served by the gateway itself (Jinja2 pages, uPlot charts shipped in
the package, no CDN), and the JSON/CSV API behind every figure on them (/dashboard/api).

    pages.py     sign-in/out and the pages        api.py      /dashboard/api (JSON, ?format=csv)
    routing.py   the routing page's editor        access.py   who may see which team
    session.py   encrypted cookie sessions        params.py   reporting range and time zone
    answers.py   a few seconds' cache of answers
    figures.py   charts and tables (rollups)      budgets.py  budget burn (daily_spend)
    explorer.py  the request explorer (the log)   lookups.py  team and key names
    templates/   Jinja2                           static/     the page script, styles, vendor/uplot
"""

from __future__ import annotations

from importlib.resources import files

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

from gateway.dashboard import api, pages, routing
from gateway.dashboard.answers import AnswerCache
from gateway.dashboard.render import STATIC
from gateway.dashboard.session import Sessions


def install_dashboard(app: FastAPI) -> None:
    """Mount /dashboard on an app built by create_app (app.state: settings, master_key, sessions,
    key_cache, live)."""
    settings = app.state.settings
    secret = settings.dashboard_secret.get_secret_value().encode() if settings.dashboard_secret else None
    app.state.dashboard_sessions = Sessions(app.state.master_key, secret, settings.dashboard_session_ttl_s)
    ttl = settings.dashboard_cache_s
    app.state.dashboard_answers = AnswerCache(ttl) if ttl > 0 else None
    app.mount(
        STATIC, StaticFiles(directory=str(files("gateway.dashboard") / "static")), name="dashboard-static"
    )
    app.include_router(api.router)
    app.include_router(pages.router)
    app.include_router(routing.router)
    app.add_exception_handler(pages.PageError, pages.handle_page_error)
    app.add_exception_handler(pages.SignInFirst, pages.handle_page_error)
