"""Anthropic's surface: POST /v1/messages."""

from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.responses import Response

from gateway.api.deps import PipelineDep, PrincipalDep
from gateway.api.openapi_schemas import MESSAGES_REQUEST, v1_operation
from gateway.pipeline.anthropic_door import AnthropicDoor

router = APIRouter(prefix="/v1", tags=["anthropic"])
_MESSAGES = AnthropicDoor()


@router.post("/messages", **v1_operation(MESSAGES_REQUEST, "messages", streams=True))
async def create_message(request: Request, pipeline: PipelineDep, principal: PrincipalDep) -> Response:
    return await pipeline.handle(request, _MESSAGES, principal)
