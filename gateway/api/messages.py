"""Anthropic's surface: POST /v1/messages."""

from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.responses import Response

from gateway import messages as anthropic_messages
from gateway.api.deps import PrincipalDep, ProxyDep
from gateway.api.openapi_schemas import MESSAGES_REQUEST, v1_operation
from gateway.body import read_json

router = APIRouter(prefix="/v1", tags=["anthropic"])


@router.post("/messages", **v1_operation(MESSAGES_REQUEST, "messages", streams=True))
async def create_message(request: Request, proxy: ProxyDep, principal: PrincipalDep) -> Response:
    body = await read_json(request, proxy.max_body_bytes)
    return await anthropic_messages.messages(proxy, request, body, principal)
