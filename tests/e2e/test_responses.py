"""The Responses API end to end with the official openai SDK: served natively by an OpenAI deployment
(`gpt-native`, pass-through to the fake's /v1/responses) and translated to chat completions for a
chat-only server (`gpt-4o-mini`), Anthropic (`claude`) and Gemini (`gemini`)."""

from __future__ import annotations

import json
import uuid
from decimal import Decimal

import httpx
import openai
import pytest
from openai.types.responses import Response

from tests.e2e.gateway_harness import CLIENT_TIMEOUT_S, Gateway, error_of, expected_cost

NATIVE = "gpt-native"
BACKENDS = {
    NATIVE: "Hello from openai!",
    "gpt-4o-mini": "Hello from openai!",
    "claude": "Hello from anthropic!",
    "gemini": "Hello from gemini!",
}
WEATHER = {
    "type": "function",
    "name": "get_weather",
    "description": "Current weather in a city.",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
}
SCHEMA = {
    "type": "json_schema",
    "name": "verdict",
    "schema": {"type": "object", "properties": {"ok": {"type": "boolean"}}, "required": ["ok"]},
    "strict": True,
}


@pytest.fixture(params=list(BACKENDS))
def model(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture(scope="module")
def other_client(gateway: Gateway, raw: httpx.Client) -> openai.OpenAI:
    """A client with a virtual key of its own (not the master key)."""
    team = raw.post("/admin/teams", json={"name": f"responses-{uuid.uuid4().hex[:8]}"})
    assert team.status_code == 201, team.text
    key = raw.post("/admin/keys", json={"team_id": team.json()["id"]})
    assert key.status_code == 201, key.text
    return openai.OpenAI(
        base_url=gateway.url + "/v1", api_key=key.json()["key"], max_retries=0, timeout=CLIENT_TIMEOUT_S
    )


def test_create_with_text_input(client: openai.OpenAI, model: str) -> None:
    raw = client.responses.with_raw_response.create(
        model=model, input="Say hello to me", instructions="Be brief.", metadata={"case": "text"}
    )
    resp = raw.parse()
    # Every field the SDK's own type requires, with the type it requires (the SDK parses leniently).
    Response.model_validate(raw.http_response.json())
    Response.model_validate(client.responses.with_raw_response.retrieve(resp.id).http_response.json())
    assert resp.object == "response" and resp.status == "completed"
    assert resp.output_text == BACKENDS[model]
    assert resp.metadata == {"case": "text"} and resp.store is True
    assert resp.usage is not None and resp.usage.output_tokens > 0 and resp.usage.input_tokens > 0
    assert resp.usage.input_tokens_details.cached_tokens == 0
    assert resp.usage.output_tokens_details.reasoning_tokens == 0
    assert raw.headers["x-switchyard-model"].startswith(model)
    assert raw.headers["x-switchyard-request-id"].startswith("req_")


def test_native_is_passed_through_and_costed(client: openai.OpenAI, gateway: Gateway) -> None:
    raw = client.responses.with_raw_response.create(
        model=NATIVE, input="Say hello to me", reasoning={"effort": "low"}, max_output_tokens=50
    )
    resp = raw.parse()
    sent = [r for r in gateway.openai_requests if r.path == "/v1/responses"][-1].body
    assert sent["model"] == "gpt-native-upstream" and sent["store"] is False
    assert sent["reasoning"] == {"effort": "low"} and sent["max_output_tokens"] == 50
    assert sent["input"] == [{"type": "message", "role": "user", "content": "Say hello to me"}]
    assert "previous_response_id" not in sent
    # The upstream's own usage, billed as it gave it: 4 words in, 3 tokens out.
    assert resp.usage is not None and (resp.usage.input_tokens, resp.usage.output_tokens) == (4, 3)
    assert Decimal(raw.headers["x-switchyard-cost-usd"]) == expected_cost(4, 3)


def test_translated_request_reaches_chat(client: openai.OpenAI, gateway: Gateway) -> None:
    client.responses.create(
        model="gpt-4o-mini",
        input=[{"role": "developer", "content": "Terse."}, {"role": "user", "content": "Say hello"}],
        instructions="Be kind.",
        reasoning={"effort": "low"},
        max_output_tokens=40,
        parallel_tool_calls=False,
        user="responses-translated",
    )
    (sent,) = gateway.openai_sent("responses-translated")
    assert sent["messages"] == [
        {"role": "system", "content": "Be kind."},
        {"role": "system", "content": "Terse."},
        {"role": "user", "content": "Say hello"},
    ]
    assert sent["reasoning_effort"] == "low" and sent["max_tokens"] == 40
    assert "parallel_tool_calls" not in sent, "chat servers refuse it without tools"


def test_stream(client: openai.OpenAI, model: str) -> None:
    with client.responses.stream(model=model, input="Say hello to me") as stream:
        events = list(stream)
        final = stream.get_final_response()
    kinds = [e.type for e in events]
    assert kinds[:2] == ["response.created", "response.in_progress"]
    assert kinds[-1] == "response.completed"
    for kind in (
        "response.output_item.added",
        "response.content_part.added",
        "response.output_text.delta",
        "response.output_text.done",
        "response.output_item.done",
    ):
        assert kind in kinds, kinds
    assert [e.sequence_number for e in events] == sorted(e.sequence_number for e in events)
    deltas = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    assert deltas == final.output_text == BACKENDS[model]
    assert final.usage is not None and final.usage.output_tokens > 0
    # Stored like any other: GET gives the same response.
    assert client.responses.retrieve(final.id).output_text == BACKENDS[model]


def test_create_stream_true(client: openai.OpenAI, model: str) -> None:
    events = list(client.responses.create(model=model, input="Say hello to me", stream=True))
    done = events[-1]
    assert done.type == "response.completed"
    assert done.response.output_text == BACKENDS[model]


def test_tools_round_trip(client: openai.OpenAI, model: str) -> None:
    first = client.responses.create(model=model, input="Weather in Paris?", tools=[WEATHER])
    (call,) = [item for item in first.output if item.type == "function_call"]
    assert call.name == "get_weather" and json.loads(call.arguments) == {"city": "Paris"}
    second = client.responses.create(
        model=model,
        previous_response_id=first.id,
        tools=[WEATHER],
        input=[{"type": "function_call_output", "call_id": call.call_id, "output": "sunny"}],
    )
    assert second.output_text == "The tool said: sunny"
    assert second.previous_response_id == first.id


def test_streamed_tool_call(client: openai.OpenAI, model: str) -> None:
    with client.responses.stream(model=model, input="Weather in Paris?", tools=[WEATHER]) as stream:
        events = list(stream)
    kinds = [e.type for e in events]
    assert (
        "response.function_call_arguments.delta" in kinds and "response.function_call_arguments.done" in kinds
    )
    done = next(e for e in events if e.type == "response.function_call_arguments.done")
    assert json.loads(done.arguments) == {"city": "Paris"}
    (call,) = events[-1].response.output
    assert call.type == "function_call" and call.name == "get_weather"


def test_previous_response_id_chain(client: openai.OpenAI, gateway: Gateway) -> None:
    first = client.responses.create(model="gpt-4o-mini", input="My name is Ann", user="chain-1")
    second = client.responses.create(
        model="gpt-4o-mini", input="What is my name?", previous_response_id=first.id, user="chain-2"
    )
    (sent,) = gateway.openai_sent("chain-2")
    assert [m["role"] for m in sent["messages"]] == ["user", "assistant", "user"]
    assert sent["messages"][1]["content"] == first.output_text
    # The chain crosses providers: the third turn goes to Anthropic with the whole conversation.
    third = client.responses.create(model="claude", input="And again?", previous_response_id=second.id)
    assert third.output_text == "Hello from anthropic!"
    history = [m["role"] for m in gateway.anthropic_requests[-1]["body"]["messages"]]
    assert history == ["user", "assistant", "user", "assistant", "user"]
    items = client.responses.input_items.list(third.id, order="asc")
    assert [getattr(i, "role", None) for i in items.data] == [
        "user",
        "assistant",
        "user",
        "assistant",
        "user",
    ]


def test_native_chain_sends_the_whole_conversation(client: openai.OpenAI, gateway: Gateway) -> None:
    first = client.responses.create(model=NATIVE, input="My name is Ann")
    client.responses.create(model=NATIVE, input="What is my name?", previous_response_id=first.id)
    sent = [r for r in gateway.openai_requests if r.path == "/v1/responses"][-1].body
    assert "previous_response_id" not in sent
    assert [i.get("role") for i in sent["input"]] == ["user", "assistant", "user"]


def test_structured_output(client: openai.OpenAI, model: str, gateway: Gateway) -> None:
    resp = client.responses.create(model=model, input="Is it ok?", text={"format": SCHEMA})
    assert json.loads(resp.output_text) == {"ok": True}
    assert resp.text.format.type == "json_schema"
    if model == "gpt-4o-mini":
        sent = gateway.openai_requests[-1].body
        assert sent["response_format"]["type"] == "json_schema"
        assert sent["response_format"]["json_schema"]["schema"] == SCHEMA["schema"]


def test_get_delete_and_input_items(client: openai.OpenAI) -> None:
    resp = client.responses.create(model="gpt-4o-mini", input="Say hello to me")
    got = client.responses.retrieve(resp.id)
    assert got.id == resp.id and got.output_text == resp.output_text
    items = client.responses.input_items.list(resp.id)
    assert [i.type for i in items.data] == ["message"]
    assert items.data[0].content[0].text == "Say hello to me"  # type: ignore[union-attr]
    client.responses.delete(resp.id)
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve(resp.id)
    with pytest.raises(openai.NotFoundError):
        client.responses.delete(resp.id)


def test_store_false_is_not_kept(client: openai.OpenAI) -> None:
    resp = client.responses.create(model="gpt-4o-mini", input="Say hello to me", store=False)
    assert resp.store is False
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve(resp.id)


def test_another_keys_response_is_not_found(client: openai.OpenAI, other_client: openai.OpenAI) -> None:
    mine = client.responses.create(model="gpt-4o-mini", input="Say hello to me")
    for call in (
        lambda: other_client.responses.retrieve(mine.id),
        lambda: other_client.responses.delete(mine.id),
        lambda: other_client.responses.input_items.list(mine.id),
        lambda: other_client.responses.create(model="gpt-4o-mini", input="hi", previous_response_id=mine.id),
    ):
        with pytest.raises(openai.NotFoundError) as caught:
            call()
        assert caught.value.status_code == 404
    # Still there for its owner.
    assert client.responses.retrieve(mine.id).id == mine.id


def test_unknown_id_is_not_found(client: openai.OpenAI, raw: httpx.Client) -> None:
    for method in ("GET", "DELETE"):
        assert raw.request(method, "/v1/responses/a%00b").status_code == 404
    assert raw.get("/v1/responses/a%00b/input_items").status_code == 404
    with pytest.raises(openai.NotFoundError) as caught:
        client.responses.retrieve("resp_nope")
    assert "resp_nope" in caught.value.message
    with pytest.raises(openai.NotFoundError):
        client.responses.create(model="gpt-4o-mini", input="hi", previous_response_id="resp_nope")


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"model": "gpt-4o-mini"}, "input"),
        ({"model": "gpt-4o-mini", "input": 5}, "input"),
        (
            {"model": "gpt-4o-mini", "input": [{"type": "message", "role": "robot", "content": "x"}]},
            "input[0]",
        ),
        ({"model": "gpt-4o-mini", "input": "hi", "max_output_tokens": 0}, "max_output_tokens"),
        ({"model": "gpt-4o-mini", "input": "hi", "text": {"format": {"type": "xml"}}}, "text.format"),
        ({"model": "gpt-4o-mini", "input": "hi", "tools": [{"type": "function"}]}, "tools[0].name"),
        ({"model": "gpt-4o-mini", "input": "hi", "metadata": {"a": 1}}, "metadata"),
        ({"model": "gpt-4o-mini", "input": "hi", "background": True}, "background"),
        ({"model": "gpt-4o-mini", "input": [{"type": "function_call", "name": "f"}]}, "input[0]"),
        ({"model": "gpt-4o-mini", "input": [{"type": "function_call_output", "output": "x"}]}, "input[0]"),
        (
            {
                "model": "gpt-4o-mini",
                "input": [{"type": "function_call_output", "call_id": "c", "output": 5}],
            },
            "input[0].output",
        ),
        ({"model": "gpt-4o-mini", "input": "hi", "text": {"format": {"type": "json_schema"}}}, "text.format"),
        ({"model": "gpt-4o-mini", "input": "hi", "instructions": 7}, "instructions"),
        ({"model": "gpt-4o-mini", "input": "hi", "previous_response_id": 7}, "previous_response_id"),
        ({"model": "gpt-4o-mini", "input": "hi", "store": "yes"}, "store"),
        ({"model": "claude", "input": "hi", "tool_choice": {"type": "function", "name": {}}}, "tool_choice"),
        ({"model": "gpt-4o-mini", "input": [], "reasoning": {"effort": 1}}, "input"),
    ],
)
def test_bad_input_is_a_400(raw: httpx.Client, body: dict[str, object], param: str) -> None:
    resp = raw.post("/v1/responses", json=body)
    assert resp.status_code == 400, resp.text
    error = error_of(resp)
    assert error["type"] == "invalid_request_error" and error["param"] == param


def test_bad_input_through_the_sdk(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        client.responses.create(
            model="gpt-4o-mini", input=[{"type": "message", "role": "robot", "content": "x"}]
        )  # type: ignore[list-item]
    assert caught.value.status_code == 400 and caught.value.param == "input[0]"  # type: ignore[attr-defined]


@pytest.mark.parametrize("model", ["gpt-4o-mini", "claude", "gemini"])
def test_builtin_tool_on_a_translated_upstream_is_a_400(client: openai.OpenAI, model: str) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        client.responses.create(model=model, input="Search the news", tools=[{"type": "web_search"}])
    assert "web_search" in caught.value.message and "OpenAI's Responses API" in caught.value.message


def test_items_chat_cannot_carry_are_a_400_on_a_translated_upstream(
    client: openai.OpenAI, gateway: Gateway
) -> None:
    reference = [{"type": "item_reference", "id": "msg_123"}]
    with pytest.raises(openai.BadRequestError) as caught:
        client.responses.create(model="claude", input=reference)  # type: ignore[list-item]
    assert "item_reference" in caught.value.message
    pdf = [{"role": "user", "content": [{"type": "input_file", "file_id": "file-1"}]}]
    with pytest.raises(openai.BadRequestError) as caught:
        client.responses.create(model="gpt-4o-mini", input=pdf)  # type: ignore[list-item]
    assert "input_file" in caught.value.message
    # OpenAI's own Responses API is sent them as they are.
    client.responses.create(model=NATIVE, input=reference)  # type: ignore[list-item]
    sent = [r for r in gateway.openai_requests if r.path == "/v1/responses"][-1].body
    assert sent["input"] == reference


def test_input_items_paging_and_its_errors(client: openai.OpenAI, raw: httpx.Client) -> None:
    first = client.responses.create(model="gpt-4o-mini", input="one two")
    resp = client.responses.create(model="gpt-4o-mini", input="three", previous_response_id=first.id)
    page = client.responses.input_items.list(resp.id, limit=1, order="asc")
    assert len(page.data) == 1 and page.has_more is True
    rest = client.responses.input_items.list(resp.id, order="asc", after=page.data[0].id)
    assert [i.id for i in rest.data][:1] != [page.data[0].id] and len(rest.data) == 2
    for query in ("?limit=0", "?order=sideways", "?after=nope"):
        error = raw.get(f"/v1/responses/{resp.id}/input_items{query}")
        assert error.status_code == 400, error.text
        assert error_of(error)["type"] == "invalid_request_error"


def test_builtin_tool_goes_to_native(client: openai.OpenAI, gateway: Gateway) -> None:
    client.responses.create(model=NATIVE, input="Search the news", tools=[{"type": "web_search"}])
    sent = [r for r in gateway.openai_requests if r.path == "/v1/responses"][-1].body
    assert sent["tools"] == [{"type": "web_search"}]


def test_upstream_error_and_midstream_failure(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError):
        client.responses.create(model="native-fail-400", input="hi")
    with pytest.raises(openai.BadRequestError):
        client.responses.create(model="fail-400", input="hi")
    for model in ("native-die-midstream", "die-midstream"):
        events = list(client.responses.create(model=model, input="Say hello to me", stream=True))
        kinds = [e.type for e in events]
        assert kinds[-2:] == ["error", "response.failed"], kinds
        assert events[-1].response.status == "failed"


def _metric(text: str, line_start: str) -> Decimal:
    found = [line.rsplit(" ", 1)[1] for line in text.splitlines() if line.startswith(line_start)]
    return Decimal(found[0]) if found else Decimal(0)


def test_recorded_and_costed_as_chat_is(client: openai.OpenAI, gateway: Gateway) -> None:
    dep = f"{NATIVE}#0" if f'deployment="{NATIVE}#0"' in gateway.metrics() else NATIVE
    count = f'switchyard_requests_total{{model="{NATIVE}",deployment="{dep}",status="200"}}'
    cost = f'switchyard_cost_usd_total{{deployment="{dep}"}}'
    before = gateway.metrics()
    client.responses.create(model=NATIVE, input="Say hello to me")
    after = gateway.metrics()
    assert _metric(after, count) == _metric(before, count) + 1
    assert _metric(after, cost) == _metric(before, cost) + expected_cost(4, 3)
