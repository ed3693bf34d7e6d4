"""`/admin/config`: the routing config, read and changed live. Master key only.

Every answer carries the version it is about in `ETag` ("<n>") and the version this replica runs in
`x-switchyard-config-version`. A change sends `If-Match: <version it was based on>` (required on PUT,
honoured on the others): when another change came first the answer is 409 with `current_version`.
A document that does not validate is a 400 whose `errors` lists every problem, and changes nothing.
Secrets never come back: a value written as such reads as "********" (send that back to keep it),
a `${ENV_VAR}` reference as written.

The dry run (`POST /admin/config/validate`) has a `preview` field for what the change would do to
routing and cost (gateway/live/preview.py), run by `app.state.config_preview`.
"""

from __future__ import annotations

import logging
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Annotated, Any, Literal

import orjson
from fastapi import APIRouter, Depends, FastAPI, Header, Path, Query, Request, Response
from pydantic import BaseModel, ConfigDict, Field
from pydantic.json_schema import models_json_schema
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError

from gateway.api.admin import DB_RETRY_AFTER_S, DetailedError, reject_nul, rejected, require_master
from gateway.api.openapi_schemas import ADMIN_ERRORS, JSON, OPENAI_ERROR
from gateway.body import read_json
from gateway.config import Route
from gateway.db.engine import is_unreachable
from gateway.errors import GatewayError, bad_request
from gateway.live.preview_api import PreviewOptions, PreviewOut
from gateway.live.secrets import MASK
from gateway.live.service import (
    Applied,
    ConfigNotFound,
    ConfigReadOnly,
    ConfigRejected,
    ConfigService,
    Current,
    StaleVersion,
)
from providers.deployment import Deployment

log = logging.getLogger("switchyard.admin")

ACTOR = "master"
VERSION_HEADER = "x-switchyard-config-version"
# A config document is small; this bounds what a client can make the gateway parse.
MAX_DOCUMENT_BYTES = 4 * 1024 * 1024


# -- bodies ---------------------------------------------------------------------------------------


class ConfigDocument(BaseModel):
    """The routing config, the shape of the YAML file: deployments and routed names. A secret is
    a `${ENV_VAR}` reference or the value itself (stored encrypted, read back as "********")."""

    model_config = ConfigDict(extra="forbid")

    models: list[Deployment] = Field(default_factory=list)
    routes: dict[str, Route] = Field(default_factory=dict)


class ConfigIssue(BaseModel):
    loc: str = Field(description="Where, e.g. models.2.api_key (empty: the whole document)")
    message: str


class DiffEntry(BaseModel):
    op: Literal["added", "removed", "changed"]
    path: str = Field(description="Model entries by name (or id), e.g. models.gpt-4o.tier")
    old: Any = None
    new: Any = None


class VersionInfo(BaseModel):
    version: int = Field(description="0: not recorded in the database (it was unreachable at start)")
    author: str | None
    comment: str | None
    created_at: datetime | None
    hash: str | None = Field(description="SHA-256 of the stored document")


class ConfigVersionOut(VersionInfo):
    document: dict[str, Any] = Field(description="The document, secrets masked (a ConfigDocument)")


class ConfigState(ConfigVersionOut):
    running_version: int = Field(description="The version this replica runs")
    mode: Literal["database", "file", "pinned"] = Field(
        description="database: changed through this API; file: --config FILE is the source of truth; "
        "pinned: fixed at start"
    )


class VersionPage(BaseModel):
    data: list[VersionInfo] = Field(description="Newest first")
    next_before: int | None = Field(description="Pass as `before` for the next page; null on the last")


class ApplyResult(BaseModel):
    created: bool = Field(description="False: the document was the newest version already")
    version: int
    running_version: int
    diff: list[DiffEntry]


class ValidateRequest(BaseModel):
    """The dry run's body: a ConfigDocument, or this wrapper around one with preview options."""

    model_config = ConfigDict(extra="forbid")

    document: ConfigDocument
    preview: PreviewOptions | None = Field(None, description="What to preview the change on")


class ValidateResult(BaseModel):
    valid: bool
    base_version: int = Field(description="The version the document was compared with (the newest)")
    errors: list[ConfigIssue]
    diff: list[DiffEntry]
    preview: PreviewOut | None = Field(
        None,
        description="What the change would do: the share per tier and the estimated cost before and "
        "after, for recent requests or given prompts (null when the document is invalid)",
    )


# -- errors ---------------------------------------------------------------------------------------


def _error_schema(**more: Any) -> dict[str, Any]:
    schema = {**OPENAI_ERROR, "properties": {**OPENAI_ERROR["properties"]}}
    error = schema["properties"]["error"]
    schema["properties"]["error"] = {**error, "properties": {**error["properties"], **more}}
    return schema


_ISSUES = {"type": "array", "items": {"$ref": "#/components/schemas/ConfigIssue"}}
CONFIG_ERRORS: dict[int | str, dict[str, Any]] = {
    400: {
        "description": "Invalid config: `errors` lists every problem; nothing was changed",
        "content": {JSON: {"schema": _error_schema(errors=_ISSUES)}},
    },
    404: {"description": "No such version, route or model", "content": {JSON: {"schema": OPENAI_ERROR}}},
    413: {"description": "The document is over the size limit", "content": {JSON: {"schema": OPENAI_ERROR}}},
    409: {
        "description": "If-Match is not the newest version (`current_version` is), or the config is "
        "not changed through the API here (file mode: edit the file)",
        "content": {JSON: {"schema": _error_schema(current_version={"type": ["integer", "null"]})}},
    },
}


@asynccontextmanager
async def _answering() -> AsyncIterator[None]:
    """The service's failures as HTTP errors."""
    try:
        yield
    except ConfigRejected as exc:
        raise rejected(exc.errors) from None
    except StaleVersion as exc:
        raise DetailedError(
            409,
            f"the config changed: version {exc.current} is the newest, not {exc.expected}; "
            "read it again and re-apply your change",
            code="config_version_conflict",
            current_version=exc.current,
        ) from None
    except ConfigReadOnly as exc:
        raise GatewayError(409, str(exc), code="config_read_only") from None
    except ConfigNotFound as exc:
        raise GatewayError(404, str(exc), type="not_found_error", code="config_not_found") from None
    except (OperationalError, InterfaceError, DBAPIError, OSError, TimeoutError) as exc:
        down = isinstance(exc, OperationalError | InterfaceError) or is_unreachable(exc)
        if not down:
            raise
        log.warning("config call failed, database unreachable: %s", type(exc).__name__)
        raise GatewayError(
            503,
            "the database is unavailable; retry later",
            type="service_unavailable",
            code="database_unavailable",
            headers={"retry-after": str(DB_RETRY_AFTER_S)},
        ) from None


# -- plumbing -------------------------------------------------------------------------------------


def get_service(request: Request) -> ConfigService:
    service: ConfigService | None = getattr(request.app.state, "config_service", None)
    if service is None:
        raise GatewayError(503, "live config is not available on this gateway", type="api_error")
    return service


Service = Annotated[ConfigService, Depends(get_service)]
_ETAG = re.compile(r'\s*(?:W/)?"?(\d+)"?\s*')
IfMatch = Annotated[
    str | None,
    Header(description='The version the change is based on ("7" or 7, as ETag gave it); * : any'),
]
Author = Annotated[str | None, Query(max_length=100, description="Who is making the change (audit log)")]
Comment = Annotated[str | None, Query(max_length=1000, description="Why (kept with the version)")]
Name = Annotated[str, Path(min_length=1, max_length=200)]
# Version numbers are 32-bit integers in the database.
MAX_VERSION = 2**31 - 1
VersionNumber = Annotated[int, Path(ge=1, le=MAX_VERSION)]


def expected_version(if_match: str | None, required: bool = False) -> int | None:
    if if_match is None or if_match.strip() == "*":
        if required and if_match is None:
            raise GatewayError(
                428,
                "If-Match is required: send the version the document is based on (the ETag of GET "
                "/admin/config), or * to replace whatever is current",
                code="if_match_required",
            )
        return None
    m = _ETAG.fullmatch(if_match)
    if m is None:
        raise bad_request('If-Match must be a config version, e.g. "7"', param="if-match")
    return int(m.group(1))


def _who(author: str | None) -> str:
    return ACTOR if not author else f"{ACTOR} ({author})"


def _headers(response: Response, service: ConfigService, version: int) -> None:
    response.headers["etag"] = f'"{version}"'
    response.headers[VERSION_HEADER] = str(service.live.version)


def _info(v: Current) -> dict[str, Any]:
    return {
        "version": v.version,
        "author": v.author,
        "comment": v.comment,
        "created_at": v.created_at,
        "hash": v.hash,
    }


def _applied(result: Applied, service: ConfigService, response: Response) -> ApplyResult:
    _headers(response, service, result.current.version)
    return ApplyResult(
        created=result.created,
        version=result.current.version,
        running_version=service.live.version,
        diff=[DiffEntry(**d) for d in result.diff],
    )


def _document_body(description: str, schema: str = "ConfigDocument") -> dict[str, Any]:
    ref = {"$ref": f"#/components/schemas/{schema}"}
    return {"requestBody": {"required": True, "description": description, "content": {JSON: {"schema": ref}}}}


router = APIRouter(
    prefix="/admin/config",
    tags=["config"],
    dependencies=[Depends(require_master), Depends(reject_nul)],
    responses={**ADMIN_ERRORS, **CONFIG_ERRORS},
)


# -- routes ---------------------------------------------------------------------------------------


@router.get("", response_model=ConfigState, summary="The newest config version (secrets masked)")
async def get_config(service: Service, response: Response) -> ConfigState:
    async with _answering():
        current = await service.current()
    _headers(response, service, current.version)
    return ConfigState(
        **_info(current), document=current.document, running_version=service.live.version, mode=service.mode
    )


@router.get("/versions", response_model=VersionPage, summary="Config versions, newest first")
async def list_versions(
    service: Service,
    response: Response,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    before: Annotated[
        int | None, Query(ge=1, le=MAX_VERSION, description="next_before of the previous page")
    ] = None,
) -> VersionPage:
    async with _answering():
        rows = await service.history(limit + 1, before)
    response.headers[VERSION_HEADER] = str(service.live.version)
    page = rows[:limit]
    return VersionPage(
        data=[VersionInfo(**_info(v)) for v in page],
        next_before=page[-1].version if len(rows) > limit else None,
    )


@router.get("/versions/{n}", response_model=ConfigVersionOut, summary="One config version (secrets masked)")
async def get_version(n: VersionNumber, service: Service, response: Response) -> ConfigVersionOut:
    async with _answering():
        found = await service.get(n)
    _headers(response, service, found.version)
    return ConfigVersionOut(**_info(found), document=found.document)


@router.put(
    "",
    response_model=ApplyResult,
    summary="Replace the whole config (If-Match required)",
    openapi_extra=_document_body(f'The whole document; a secret sent as "{MASK}" keeps the stored one'),
    responses={428: {"description": "If-Match is missing", "content": {JSON: {"schema": OPENAI_ERROR}}}},
)
async def put_config(
    request: Request,
    service: Service,
    response: Response,
    if_match: IfMatch = None,
    author: Author = None,
    comment: Comment = None,
) -> ApplyResult:
    expected = expected_version(if_match, required=True)
    document = await read_json(request, MAX_DOCUMENT_BYTES)
    async with _answering():
        result = await service.apply(document, _who(author), comment, expected)
    return _applied(result, service, response)


@router.patch(
    "/routes/{name:path}",
    response_model=ApplyResult,
    summary="Create or replace one route",
    openapi_extra=_document_body("The route", "Route"),
)
async def patch_route(
    name: Name,
    request: Request,
    service: Service,
    response: Response,
    if_match: IfMatch = None,
    author: Author = None,
    comment: Comment = None,
) -> ApplyResult:
    entry = await read_json(request, MAX_DOCUMENT_BYTES)
    async with _answering():
        result = await service.patch_route(name, entry, _who(author), comment, expected_version(if_match))
    return _applied(result, service, response)


@router.delete("/routes/{name:path}", response_model=ApplyResult, summary="Remove one route")
async def delete_route(
    name: Name,
    service: Service,
    response: Response,
    if_match: IfMatch = None,
    author: Author = None,
    comment: Comment = None,
) -> ApplyResult:
    async with _answering():
        result = await service.patch_route(name, None, _who(author), comment, expected_version(if_match))
    return _applied(result, service, response)


@router.patch(
    "/models/{name:path}",
    response_model=ApplyResult,
    summary="Create or replace the deployments of one model name",
    openapi_extra={
        "requestBody": {
            "required": True,
            "description": "One deployment, or a list (several deployments share the name); `name` may "
            f'be left out. A secret sent as "{MASK}" keeps the stored one',
            "content": {
                JSON: {
                    "schema": {
                        "oneOf": [
                            {"$ref": "#/components/schemas/Deployment"},
                            {"type": "array", "items": {"$ref": "#/components/schemas/Deployment"}},
                        ]
                    }
                }
            },
        }
    },
)
async def patch_model(
    name: Name,
    request: Request,
    service: Service,
    response: Response,
    if_match: IfMatch = None,
    author: Author = None,
    comment: Comment = None,
) -> ApplyResult:
    entry = await _read_any(request)
    if not isinstance(entry, dict | list):
        raise bad_request("request body must be a JSON object or a list of them")
    async with _answering():
        result = await service.patch_model(name, entry, _who(author), comment, expected_version(if_match))
    return _applied(result, service, response)


@router.delete("/models/{name:path}", response_model=ApplyResult, summary="Remove the deployments of a name")
async def delete_model(
    name: Name,
    service: Service,
    response: Response,
    if_match: IfMatch = None,
    author: Author = None,
    comment: Comment = None,
) -> ApplyResult:
    async with _answering():
        result = await service.patch_model(name, None, _who(author), comment, expected_version(if_match))
    return _applied(result, service, response)


@router.post(
    "/validate",
    response_model=ValidateResult,
    summary="Dry run: every error, the diff against the newest version, and a preview",
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                JSON: {
                    "schema": {
                        "oneOf": [
                            {"$ref": "#/components/schemas/ConfigDocument"},
                            {"$ref": "#/components/schemas/ValidateRequest"},
                        ]
                    }
                }
            },
        }
    },
)
async def validate_config(request: Request, service: Service, response: Response) -> ValidateResult:
    body = await read_json(request, MAX_DOCUMENT_BYTES)
    options = None
    if "document" in body:  # the wrapper (a document has no `document` section)
        extra = set(body) - {"document", "preview"}
        if extra:
            raise bad_request(f"unknown field(s) {sorted(extra)}: send document and preview")
        document, options = body["document"], body.get("preview")
    else:
        document = body
    async with _answering():
        dry = await service.validate(document)
    _headers(response, service, dry.base_version)
    result = ValidateResult(
        valid=dry.validation.valid,
        base_version=dry.base_version,
        errors=[ConfigIssue(**e) for e in dry.validation.errors],
        diff=[DiffEntry(**d) for d in dry.diff],
    )
    if result.valid:
        async with _answering():
            found = await request.app.state.config_preview(dry, options)
        result.preview = PreviewOut.model_validate(found)
    return result


@router.post(
    "/rollback/{n}",
    response_model=ApplyResult,
    summary="Make version n's document the newest version again (a new version)",
)
async def rollback(
    n: VersionNumber,
    service: Service,
    response: Response,
    if_match: IfMatch = None,
    author: Author = None,
    comment: Comment = None,
) -> ApplyResult:
    async with _answering():
        result = await service.rollback(n, _who(author), comment, expected_version(if_match))
    return _applied(result, service, response)


async def _read_any(request: Request) -> Any:
    raw = await request.body()
    if len(raw) > MAX_DOCUMENT_BYTES:
        raise GatewayError(413, "request body too large", code="request_too_large")
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise bad_request("request body is not valid JSON") from None


def install_schemas(app: FastAPI) -> None:
    """Add the schemas the request bodies above name ($ref) to `app`'s OpenAPI document: FastAPI
    adds only the models it sees in signatures, and these bodies are read as raw JSON (to list every
    error, not the first)."""
    base = app.openapi

    def openapi() -> dict[str, Any]:
        doc = base()
        schemas = doc.setdefault("components", {}).setdefault("schemas", {})
        if "ConfigDocument" not in schemas:
            models = [(m, "validation") for m in (ConfigDocument, ValidateRequest, Deployment, Route)]
            _, defs = models_json_schema(models, ref_template="#/components/schemas/{model}")
            for name, schema in defs.get("$defs", {}).items():
                schemas.setdefault(name, schema)
        return doc

    app.openapi = openapi  # type: ignore[method-assign]
