"""Request validation for the fake OpenAI upstream: auth, the model, numeric parameters, and the chat
messages, legacy prompt and embeddings input, answering the real API's 400s as `ApiError`."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request

from tests.fakes.openai_wire import ApiError

VALID_ROLES = ("system", "assistant", "user", "function", "tool", "developer")


def check_auth(request: Request) -> None:
    auth = request.headers.get("authorization", "")
    scheme, _, token = auth.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise ApiError(
            401,
            "You didn't provide an API key. You need to provide your API key in an Authorization header "
            "using Bearer auth (i.e. Authorization: Bearer YOUR_KEY).",
            code=None,
        )


def require_model(body: dict[str, Any]) -> str:
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise ApiError(400, "you must provide a model parameter", param=None, code=None)
    return model


def int_param(body: dict[str, Any], name: str, lo: int, hi: int, default: int) -> int:
    value = body.get(name)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int):
        raise ApiError(
            400, f"Invalid type for '{name}': expected an integer.", param=name, code="invalid_type"
        )
    if not lo <= value <= hi:
        raise ApiError(
            400,
            f"Invalid '{name}': integer out of range. Expected a value between {lo} and {hi}, got {value}.",
            param=name,
            code="integer_out_of_range" if value > hi else "integer_below_min_value",
        )
    return value


def max_tokens_param(body: dict[str, Any]) -> int | None:
    for name in ("max_completion_tokens", "max_tokens"):
        value = body.get(name)
        if value is not None:
            return int_param(body, name, 1, 1_000_000, 1)
    return None


def stream_usage(body: dict[str, Any]) -> bool:
    opts = body.get("stream_options")
    if opts is None:
        return False
    if not body.get("stream"):
        raise ApiError(
            400,
            "The 'stream_options' parameter is only allowed when 'stream' is enabled.",
            param="stream_options",
            code=None,
        )
    if not isinstance(opts, dict):
        raise ApiError(400, "Invalid type for 'stream_options': expected an object.", param="stream_options")
    return bool(opts.get("include_usage"))


def validate_chat(body: dict[str, Any]) -> list[dict[str, Any]]:
    if "messages" not in body or body["messages"] is None:
        raise ApiError(
            400,
            "Missing required parameter: 'messages'.",
            param="messages",
            code="missing_required_parameter",
        )
    messages = body["messages"]
    if not isinstance(messages, list):
        raise ApiError(
            400, "Invalid type for 'messages': expected an array.", param="messages", code="invalid_type"
        )
    if not messages:
        raise ApiError(
            400,
            "Invalid 'messages': empty array. Expected an array with minimum length 1, but got an empty "
            "array instead.",
            param="messages",
            code="empty_array",
        )
    # ids of the nearest preceding assistant `tool_calls` (while only tool messages followed it),
    # and those of them still without a tool message answering them
    answerable: set[str] | None = None
    pending: list[str] = []
    pending_from = -1
    for i, msg in enumerate(messages):
        if not isinstance(msg, dict):
            raise ApiError(
                400,
                f"Invalid type for 'messages[{i}]': expected an object.",
                param=f"messages[{i}]",
                code="invalid_type",
            )
        role = msg.get("role")
        if role is None:
            raise ApiError(
                400,
                f"Missing required parameter: 'messages[{i}].role'.",
                param=f"messages[{i}].role",
                code="missing_required_parameter",
            )
        if role not in VALID_ROLES:
            raise ApiError(
                400,
                f"Invalid value: '{role}'. Supported values are: 'system', 'assistant', 'user', "
                "'function', 'tool', and 'developer'.",
                param=f"messages[{i}].role",
                code="invalid_value",
            )
        content = msg.get("content")
        if role in ("system", "developer", "user") and content is None:
            raise ApiError(
                400,
                f"Missing required parameter: 'messages[{i}].content'.",
                param=f"messages[{i}].content",
                code="missing_required_parameter",
            )
        if content is not None and not isinstance(content, str | list):
            raise ApiError(
                400,
                f"Invalid type for 'messages[{i}].content': expected one of a string or array of objects.",
                param=f"messages[{i}].content",
                code="invalid_type",
            )
        if role == "tool":
            call_id = msg.get("tool_call_id")
            if not call_id:
                raise ApiError(
                    400,
                    f"Missing required parameter: 'messages[{i}].tool_call_id'.",
                    param=f"messages[{i}].tool_call_id",
                    code="missing_required_parameter",
                )
            if answerable is None:
                raise ApiError(
                    400,
                    "Invalid parameter: messages with role 'tool' must be a response to a preceeding "
                    "message with 'tool_calls'.",
                    param=f"messages.[{i}].role",
                )
            if call_id not in answerable:
                raise ApiError(
                    400,
                    f"Invalid parameter: 'tool_call_id' of '{call_id}' not found in 'tool_calls' of "
                    "previous message.",
                    param=f"messages.[{i}].tool_call_id",
                )
            if call_id in pending:
                pending.remove(call_id)
            continue
        if pending:
            raise _unanswered(pending, pending_from)
        answerable = None
        if role != "assistant":
            continue
        tool_calls = msg.get("tool_calls")
        if content is None and not tool_calls and msg.get("function_call") is None:
            raise ApiError(
                400,
                f"Invalid value for 'messages[{i}].content': expected a string, got null.",
                param=f"messages.[{i}].content",
            )
        if tool_calls:
            if not isinstance(tool_calls, list):
                raise ApiError(
                    400,
                    f"Invalid type for 'messages[{i}].tool_calls': expected an array.",
                    param=f"messages[{i}].tool_calls",
                    code="invalid_type",
                )
            for j, tc in enumerate(tool_calls):
                fn = tc.get("function") if isinstance(tc, dict) else None
                if (
                    not isinstance(tc, dict)
                    or not tc.get("id")
                    or not isinstance(fn, dict)
                    or not fn.get("name")
                    or not isinstance(fn.get("arguments"), str)
                ):
                    raise ApiError(
                        400,
                        f"Invalid 'messages[{i}].tool_calls[{j}]': expected "
                        "{id, type: 'function', function: {name, arguments: string}}.",
                        param=f"messages[{i}].tool_calls[{j}]",
                        code="invalid_value",
                    )
            answerable = {tc["id"] for tc in tool_calls}
            pending = [tc["id"] for tc in tool_calls]
            pending_from = i
    if pending:
        raise _unanswered(pending, pending_from)

    tools = body.get("tools")
    if tools is not None:
        if not isinstance(tools, list):
            raise ApiError(
                400, "Invalid type for 'tools': expected an array.", param="tools", code="invalid_type"
            )
        for j, tool in enumerate(tools):
            fn = tool.get("function") if isinstance(tool, dict) else None
            if (
                not isinstance(tool, dict)
                or tool.get("type") != "function"
                or not isinstance(fn, dict)
                or not fn.get("name")
            ):
                raise ApiError(
                    400,
                    f"Missing required parameter: 'tools[{j}].function'.",
                    param=f"tools[{j}].function",
                    code="missing_required_parameter",
                )
    if body.get("tool_choice") is not None and not tools:
        raise ApiError(
            400,
            "Invalid value for 'tool_choice': 'tool_choice' is only allowed when 'tools' are specified.",
            param="tool_choice",
        )
    fmt = body.get("response_format")
    if fmt is not None:
        kind = fmt.get("type") if isinstance(fmt, dict) else None
        if kind not in ("text", "json_object", "json_schema"):
            raise ApiError(
                400,
                f"Invalid value: '{kind}'. Supported values are: 'text', 'json_object', and 'json_schema'.",
                param="response_format.type",
                code="invalid_value",
            )
        if kind == "json_schema" and not (
            isinstance(fmt.get("json_schema"), dict) and fmt["json_schema"].get("name")
        ):
            raise ApiError(
                400,
                "Missing required parameter: 'response_format.json_schema.name'.",
                param="response_format.json_schema.name",
                code="missing_required_parameter",
            )
    if body.get("top_logprobs") is not None and not body.get("logprobs"):
        raise ApiError(
            400,
            "Invalid value for 'top_logprobs': 'logprobs' must be set to true when "
            "'top_logprobs' is specified.",
            param="top_logprobs",
        )
    return messages


def validate_prompt(body: dict[str, Any]) -> list[str]:
    prompt = body.get("prompt")
    if prompt is None:
        raise ApiError(
            400,
            "Missing required parameter: 'prompt'.",
            param="prompt",
            code="missing_required_parameter",
        )
    if isinstance(prompt, str):
        return [prompt]
    if isinstance(prompt, list) and prompt:
        if all(isinstance(p, str) for p in prompt):
            return list(prompt)
        if all(isinstance(t, int) for t in prompt):
            return [" ".join(map(str, prompt))]
        if all(isinstance(p, list) and p and all(isinstance(t, int) for t in p) for p in prompt):
            return [" ".join(map(str, p)) for p in prompt]
    raise ApiError(
        400,
        "Invalid type for 'prompt': expected a string, an array of strings, an array of "
        "tokens or an array of token arrays.",
        param="prompt",
        code="invalid_type",
    )


def validate_input(body: dict[str, Any]) -> list[str]:
    value = body.get("input")
    if value is None:
        raise ApiError(
            400, "Missing required parameter: 'input'.", param="input", code="missing_required_parameter"
        )
    if isinstance(value, str):
        value = [value]
    elif isinstance(value, list) and value and all(isinstance(t, int) for t in value):
        value = [" ".join(map(str, value))]
    elif isinstance(value, list) and value and all(isinstance(t, list) for t in value):
        value = [" ".join(map(str, t)) for t in value]
    if (
        not isinstance(value, list)
        or not value
        or not all(isinstance(v, str) for v in value)
        or any(v == "" for v in value)
    ):
        raise ApiError(
            400,
            "'$.input' is invalid. Please check the API reference: "
            "https://platform.openai.com/docs/api-reference.",
            param=None,
            code=None,
        )
    return value


def encoding_format(body: dict[str, Any]) -> str:
    fmt = body.get("encoding_format") or "float"
    if fmt not in ("float", "base64"):
        raise ApiError(
            400,
            f"Invalid value: '{fmt}'. Supported values are: 'float' and 'base64'.",
            param="encoding_format",
            code="invalid_value",
        )
    return fmt


def _unanswered(pending: list[str], index: int) -> ApiError:
    return ApiError(
        400,
        "An assistant message with 'tool_calls' must be followed by tool messages responding to each "
        f"'tool_call_id'. The following tool_call_ids did not have response messages: {', '.join(pending)}",
        param=f"messages.[{index}].role",
    )
