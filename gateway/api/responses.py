"""OpenAI's Responses API: create (the pipeline's third door), and the stored responses a key made."""

from __future__ import annotations

from typing import Annotated, Any, Literal

import orjson
from fastapi import APIRouter, Depends, Query, Request
from starlette.responses import Response

from gateway.api.deps import PipelineDep, PrincipalDep
from gateway.api.openapi_schemas import RESPONSES_REQUEST, error_responses, v1_operation
from gateway.errors import bad_request
from gateway.responses.door import ResponsesDoor
from gateway.responses.store import ResponseStore, owner_of

router = APIRouter(prefix="/v1", tags=["responses"])


async def get_store(request: Request) -> ResponseStore:
    return request.app.state.responses


StoreDep = Annotated[ResponseStore, Depends(get_store)]
_STORED = error_responses(401, 404, 503)


def _json(doc: Any) -> Response:
    return Response(orjson.dumps(doc), media_type="application/json")


@router.post("/responses", **v1_operation(RESPONSES_REQUEST, "responses", streams=True))
async def create_response(
    request: Request, pipeline: PipelineDep, principal: PrincipalDep, store: StoreDep
) -> Response:
    return await pipeline.handle(request, ResponsesDoor(store, principal), principal)


@router.get("/responses/{response_id}", responses=_STORED)
async def get_response(response_id: str, principal: PrincipalDep, store: StoreDep) -> Response:
    stored = await store.get(owner_of(principal), response_id)
    return _json(stored.response)


@router.delete("/responses/{response_id}", responses=_STORED)
async def delete_response(response_id: str, principal: PrincipalDep, store: StoreDep) -> Response:
    await store.delete(owner_of(principal), response_id)
    return _json({"id": response_id, "object": "response.deleted", "deleted": True})


def _item(item: dict[str, Any], item_id: str) -> dict[str, Any]:
    """A stored input item as input_items lists it: with an id, a message's content as parts."""
    out = {"id": item_id, **item}
    if out.get("type", "message") == "message":
        out["type"] = "message"
        out.setdefault("status", "completed")
        if isinstance(out.get("content"), str):
            kind = "output_text" if out.get("role") == "assistant" else "input_text"
            out["content"] = [{"type": kind, "text": out["content"]}]
    return out


@router.get("/responses/{response_id}/input_items", responses=_STORED)
async def list_input_items(
    response_id: str,
    principal: PrincipalDep,
    store: StoreDep,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    order: Literal["asc", "desc"] = "desc",
    after: str | None = None,
) -> Response:
    stored = await store.get(owner_of(principal), response_id)
    # Items without an id get one from their place in the conversation, the same at every read.
    base = response_id.removeprefix("resp_")
    items = [_item(it, it.get("id") or f"msg_{base}_{i:04d}") for i, it in enumerate(stored.context)]
    if order == "desc":
        items.reverse()
    if after is not None:
        ids = [it["id"] for it in items]
        if after not in ids:
            raise bad_request(f"after: no input item {after[:100]!r} in this response", param="after")
        items = items[ids.index(after) + 1 :]
    page = items[:limit]
    return _json(
        {
            "object": "list",
            "data": page,
            "first_id": page[0]["id"] if page else None,
            "last_id": page[-1]["id"] if page else None,
            "has_more": len(items) > limit,
        }
    )
