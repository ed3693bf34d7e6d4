"""Every failure leaves as an OpenAI error object (or Anthropic's, on /v1/messages) with its status."""

from __future__ import annotations

import logging
from typing import Any

import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response

from providers.anthropic_translate_stream import anthropic_error_body
from providers.base import UpstreamError

log = logging.getLogger("switchyard")


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


def bad_request(message: str, param: str | None = None) -> GatewayError:
    return GatewayError(400, message, param=param)


def model_not_found(model: str) -> GatewayError:
    return GatewayError(
        404, f"The model `{model}` does not exist on this gateway", code="model_not_found", param="model"
    )


def error_body(
    status: int, message: str, type_: str, code: str | None, param: str | None, anthropic: bool
) -> bytes:
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


def from_upstream(
    exc: UpstreamError, headers: dict[str, str] | None = None, anthropic: bool = False
) -> Response:
    headers = dict(headers or {})
    if exc.retry_after is not None:
        headers["retry-after"] = str(max(0, round(exc.retry_after)))
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


def install_handlers(app: FastAPI) -> None:
    async def gateway_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, GatewayError)
        return error_response(
            exc.status,
            exc.message,
            type_=exc.type,
            code=exc.code,
            param=exc.param,
            headers=exc.headers,
            anthropic=_is_anthropic(request),
        )

    async def upstream_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, UpstreamError)
        return from_upstream(exc, anthropic=_is_anthropic(request))

    async def validation_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, RequestValidationError)
        first: dict[str, Any] = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ()) if p != "body")
        message = f"{where}: {first.get('msg', 'invalid request')}" if where else "invalid request"
        return error_response(400, message, param=where or None, anthropic=_is_anthropic(request))

    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, StarletteHTTPException)
        kind = "not_found_error" if exc.status_code == 404 else "invalid_request_error"
        return error_response(
            exc.status_code,
            str(exc.detail),
            type_=kind,
            headers=dict(exc.headers or {}),
            anthropic=_is_anthropic(request),
        )

    async def unexpected(request: Request, exc: Exception) -> Response:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return error_response(
            500, "internal gateway error", type_="api_error", anthropic=_is_anthropic(request)
        )

    app.add_exception_handler(GatewayError, gateway_error)
    app.add_exception_handler(UpstreamError, upstream_error)
    app.add_exception_handler(RequestValidationError, validation_error)
    app.add_exception_handler(StarletteHTTPException, http_error)
    app.add_exception_handler(Exception, unexpected)
