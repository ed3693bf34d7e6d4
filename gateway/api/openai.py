"""OpenAI's surface: chat completions, legacy completions, embeddings, models."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from starlette.responses import Response

from gateway.api.deps import PipelineDep, PrincipalDep, authenticate
from gateway.api.openapi_schemas import (
    CHAT_REQUEST,
    COMPLETION_REQUEST,
    EMBEDDING_REQUEST,
    error_responses,
    v1_operation,
)
from gateway.errors import model_not_found
from gateway.live import CONFIG_VERSION_HEADER
from gateway.pipeline.openai_door import OpenAIDoor
from providers.base import Endpoint

router = APIRouter(prefix="/v1", tags=["openai"])
_CHAT, _TEXT, _EMBED = (OpenAIDoor(e) for e in (Endpoint.CHAT, Endpoint.TEXT, Endpoint.EMBED))


@router.post("/chat/completions", **v1_operation(CHAT_REQUEST, "chat", streams=True))
async def chat_completions(request: Request, pipeline: PipelineDep, principal: PrincipalDep) -> Response:
    return await pipeline.handle(request, _CHAT, principal)


@router.post("/completions", **v1_operation(COMPLETION_REQUEST, "text", streams=True))
async def completions(request: Request, pipeline: PipelineDep, principal: PrincipalDep) -> Response:
    return await pipeline.handle(request, _TEXT, principal)


@router.post("/embeddings", **v1_operation(EMBEDDING_REQUEST, "embed", streams=False))
async def embeddings(request: Request, pipeline: PipelineDep, principal: PrincipalDep) -> Response:
    return await pipeline.handle(request, _EMBED, principal)


def _model(name: str, created: int) -> dict[str, object]:
    return {"id": name, "object": "model", "created": created, "owned_by": "switchyard"}


@router.get("/models", dependencies=[Depends(authenticate)], responses=error_responses(401))
async def list_models(pipeline: PipelineDep, response: Response) -> dict[str, object]:
    snap = pipeline.live.current
    response.headers[CONFIG_VERSION_HEADER] = str(snap.version)
    return {"object": "list", "data": [_model(n, pipeline.started_at) for n in snap.names]}


@router.get("/models/{model:path}", dependencies=[Depends(authenticate)], responses=error_responses(401, 404))
async def get_model(model: str, pipeline: PipelineDep, response: Response) -> dict[str, object]:
    snap = pipeline.live.current
    if model not in snap.names:
        raise model_not_found(model)
    response.headers[CONFIG_VERSION_HEADER] = str(snap.version)
    return _model(model, pipeline.started_at)
