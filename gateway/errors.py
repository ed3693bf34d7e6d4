"""Every failure leaves as an OpenAI error object (or Anthropic's, on /v1/messages) with its status."""

from __future__ import annotations

import logging
from typing import Any

import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gateway.live import CONFIG_VERSION_HEADER
from providers.anthropic_translate_stream import anthropic_error_body
from providers.base import UpstreamError

log = logging.getLogger("switchyard")

# Client input quoted back in an error message is cut here: a 30 MB model name must not come back.
ECHO_LIMIT = 200
# No error message, whoever wrote it (an upstream, or a validator quoting the body), is longer than this.
MESSAGE_LIMIT = 2000
# An upstream refusing these is refusing the gateway's own credentials, not the client's.
_UPSTREAM_AUTH = frozenset({401, 403})


def clip(text: str, limit: int = ECHO_LIMIT) -> str:
    """`text` cut to `limit` characters, with an ellipsis when something was cut."""
    return text if len(text) <= limit else text[:limit] + "…"


class GatewayError(Exception):
    def __init__(
        self,
        status: int,
        message: str,
        *,
        type: str = "invalid_request_error",
        code: str | None = None,
        param: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.type = type
        self.code = code
        self.param = param
        self.headers = headers or {}

    def response(self, headers: dict[str, str] | None = None, anthropic: bool = False) -> Response:
        """This error as the client receives it; `headers` go with the error's own."""
        return error_response(
            self.status,
            self.message,
            type_=self.type,
            code=self.code,
            param=self.param,
            headers={**(headers or {}), **self.headers},
            anthropic=anthropic,
        )


def bad_request(message: str, param: str | None = None) -> GatewayError:
    return GatewayError(400, message, param=param)


def model_not_found(model: str) -> GatewayError:
    return GatewayError(
        404,
        f"The model `{clip(model)}` does not exist on this gateway",
        code="model_not_found",
        param="model",
    )


def error_body(
    status: int, message: str, type_: str, code: str | None, param: str | None, anthropic: bool
) -> bytes:
    message = clip(message, MESSAGE_LIMIT)
    param = None if param is None else clip(param)
    if anthropic:
        # An upstream's own Anthropic error type (kept in `code`) wins over the one its status implies.
        return orjson.dumps(anthropic_error_body(status, message, code))
    return orjson.dumps({"error": {"message": message, "type": type_, "param": param, "code": code}})


def error_response(
    status: int,
    message: str,
    *,
    type_: str = "invalid_request_error",
    code: str | None = None,
    param: str | None = None,
    headers: dict[str, str] | None = None,
    anthropic: bool = False,
) -> Response:
    body = error_body(status, message, type_, code, param, anthropic)
    return Response(body, status_code=status, media_type="application/json", headers=headers)


def upstream_auth_failed(exc: UpstreamError) -> bool:
    """The upstream refused the gateway's own credentials: the client is told 502, not the status."""
    return exc.status in _UPSTREAM_AUTH


def from_upstream(
    exc: UpstreamError, headers: dict[str, str] | None = None, anthropic: bool = False
) -> Response:
    headers = dict(headers or {})
    if exc.retry_after is not None:
        headers["retry-after"] = str(max(0, round(exc.retry_after)))
    if upstream_auth_failed(exc):
        # The client did nothing wrong, and the upstream's words are about our key: a 502 that names
        # the deployment to fix, with the upstream's own message left to the log.
        where = f" for deployment {exc.deployment.id}" if exc.deployment is not None else ""
        log.warning("upstream refused the gateway's credentials%s (%s): %s", where, exc.status, exc.message)
        return error_response(
            502,
            f"the upstream provider rejected the gateway's credentials{where} (HTTP {exc.status})",
            type_="api_error",
            code="upstream_auth_error",
            headers=headers,
            anthropic=anthropic,
        )
    return error_response(
        exc.status,
        exc.message,
        type_=exc.type,
        code=exc.code,
        param=exc.param,
        headers=headers,
        anthropic=anthropic,
    )


def _is_anthropic(request: Request) -> bool:
    return request.url.path.startswith("/v1/messages")


def config_version_header(app: Any, path: str) -> dict[str, str]:
    """The running config version, for a /v1 response that no request pipeline answered (a refused
    key, an unknown path, a bug): every /v1 response says which version the replica runs."""
    live = getattr(getattr(app, "state", None), "live", None)
    if live is None or not path.startswith("/v1"):
        return {}
    return {CONFIG_VERSION_HEADER: str(live.version)}


def _version_of(request: Request) -> dict[str, str]:
    return config_version_header(request.app, request.url.path)


class UnhandledErrors:
    """An exception nothing else handled, as a clean 500 error object.

    Starlette's ServerErrorMiddleware answers such an exception too, but then re-raises it, and uvicorn
    closes the keep-alive connection under the response it already sent: the client's next request on
    that connection fails. Caught here instead (the outermost of the app's middleware), the connection
    stays usable. A response already under way cannot change its status: an event stream ends with an
    error event; any other body is cut off by re-raising, so the client sees it was incomplete."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start: Message | None = None
        finished = False

        async def tracked(message: Message) -> None:
            nonlocal start, finished
            if message["type"] == "http.response.start":
                start = message
            elif message["type"] == "http.response.body" and not message.get("more_body", False):
                finished = True
            await send(message)

        try:
            await self.app(scope, receive, tracked)
        except Exception:
            log.exception("unhandled error on %s %s", scope.get("method"), scope.get("path"))
            anthropic = str(scope.get("path", "")).startswith("/v1/messages")
            if start is None:
                path = str(scope.get("path", ""))
                response = error_response(
                    500,
                    "internal gateway error",
                    type_="api_error",
                    headers=config_version_header(scope.get("app"), path),
                    anthropic=anthropic,
                )
                await response(scope, receive, send)
            elif not finished:
                if not _is_event_stream(start):
                    raise
                await send(
                    {"type": "http.response.body", "body": _error_event(anthropic), "more_body": False}
                )


def _is_event_stream(start: Message) -> bool:
    return any(
        name.lower() == b"content-type" and value.startswith(b"text/event-stream")
        for name, value in start.get("headers", ())
    )


def _error_event(anthropic: bool) -> bytes:
    body = error_body(500, "internal gateway error", "api_error", None, None, anthropic)
    return (b"event: error\n" if anthropic else b"") + b"data: " + body + b"\n\n"


def install_handlers(app: FastAPI) -> None:
    async def gateway_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, GatewayError)
        return exc.response(_version_of(request), anthropic=_is_anthropic(request))

    async def upstream_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, UpstreamError)
        return from_upstream(exc, _version_of(request), anthropic=_is_anthropic(request))

    async def validation_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, RequestValidationError)
        first: dict[str, Any] = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ()) if p != "body")
        message = f"{where}: {first.get('msg', 'invalid request')}" if where else "invalid request"
        return error_response(
            400, message, param=where or None, headers=_version_of(request), anthropic=_is_anthropic(request)
        )

    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, StarletteHTTPException)
        kind = "not_found_error" if exc.status_code == 404 else "invalid_request_error"
        return error_response(
            exc.status_code,
            str(exc.detail),
            type_=kind,
            headers={**_version_of(request), **(exc.headers or {})},
            anthropic=_is_anthropic(request),
        )

    app.add_exception_handler(GatewayError, gateway_error)
    app.add_exception_handler(UpstreamError, upstream_error)
    app.add_exception_handler(RequestValidationError, validation_error)
    app.add_exception_handler(StarletteHTTPException, http_error)
    app.add_middleware(UnhandledErrors)
