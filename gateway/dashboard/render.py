"""Jinja2 templates and the headers every dashboard page goes out with."""

from __future__ import annotations

from functools import cache
from importlib.resources import files
from typing import Any
from urllib.parse import urlencode

from fastapi.responses import HTMLResponse
from jinja2 import Environment, FileSystemLoader, select_autoescape

from gateway.dashboard.params import zone_names

PREFIX = "/dashboard"
API = f"{PREFIX}/api"
STATIC = f"{PREFIX}/static"
# Nothing is loaded from elsewhere, no inline script runs, no other site may frame a page or take a
# form's post. uPlot sizes its canvas through the style property (CSSOM), which style-src allows.
CSP = "; ".join(
    (
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data:",
        "connect-src 'self'",
        "frame-ancestors 'none'",
        "form-action 'self'",
        "base-uri 'none'",
        "object-src 'none'",
    )
)
HEADERS = {
    "content-security-policy": CSP,
    "cache-control": "no-store",
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
    "referrer-policy": "same-origin",
}


def api_url(endpoint: str, **params: Any) -> str:
    """/dashboard/api/<endpoint>?<params without the None ones>."""
    query = urlencode({k: v for k, v in params.items() if v is not None and v != ""})
    return f"{API}/{endpoint}" + (f"?{query}" if query else "")


@cache
def environment() -> Environment:
    env = Environment(
        loader=FileSystemLoader(str(files("gateway.dashboard") / "templates")),
        autoescape=select_autoescape(default=True, default_for_string=True),
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.globals.update(api_url=api_url, STATIC=STATIC, PREFIX=PREFIX, ZONES=sorted(zone_names()))
    return env


def page(template: str, status: int = 200, **context: Any) -> HTMLResponse:
    html = environment().get_template(template).render(**context)
    return HTMLResponse(html, status_code=status, headers=HEADERS)
