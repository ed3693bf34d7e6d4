"""OpenAI's surface: chat completions, legacy completions, embeddings, models."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from starlette.responses import Response

from gateway.api.deps import PrincipalDep, ProxyDep, authenticate
from gateway.api.openapi_schemas import (
    CHAT_REQUEST,
    COMPLETION_REQUEST,
    EMBEDDING_REQUEST,
    error_responses,
    v1_operation,
)
from gateway.body import read_json
from gateway.errors import model_not_found
from providers.base import Endpoint

router = APIRouter(prefix="/v1", tags=["openai"])


@router.post("/chat/completions", **v1_operation(CHAT_REQUEST, "chat", streams=True))
async def chat_completions(request: Request, proxy: ProxyDep, principal: PrincipalDep) -> Response:
    body = await read_json(request, proxy.max_body_bytes)
    return await proxy.openai(request, body, Endpoint.CHAT, principal)


@router.post("/completions", **v1_operation(COMPLETION_REQUEST, "text", streams=True))
async def completions(request: Request, proxy: ProxyDep, principal: PrincipalDep) -> Response:
    body = await read_json(request, proxy.max_body_bytes)
    return await proxy.openai(request, body, Endpoint.TEXT, principal)


@router.post("/embeddings", **v1_operation(EMBEDDING_REQUEST, "embed", streams=False))
async def embeddings(request: Request, proxy: ProxyDep, principal: PrincipalDep) -> Response:
    body = await read_json(request, proxy.max_body_bytes)
    return await proxy.openai(request, body, Endpoint.EMBED, principal)


def _model(name: str, created: int) -> dict[str, object]:
    return {"id": name, "object": "model", "created": created, "owned_by": "switchyard"}


@router.get("/models", dependencies=[Depends(authenticate)], responses=error_responses(401))
async def list_models(proxy: ProxyDep) -> dict[str, object]:
    return {"object": "list", "data": [_model(n, proxy.started_at) for n in proxy.config.names()]}


@router.get("/models/{model:path}", dependencies=[Depends(authenticate)], responses=error_responses(401, 404))
async def get_model(model: str, proxy: ProxyDep) -> dict[str, object]:
    if model not in proxy.config.names():
        raise model_not_found(model)
    return _model(model, proxy.started_at)
