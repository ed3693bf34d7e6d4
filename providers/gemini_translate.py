"""Pure OpenAI <-> Gemini (generateContent REST, v1beta) translation: no I/O, so it is tested on its own.

Gemini's wire format is proto3 JSON in camelCase. Requests: `contents` (turns with `role` user|model and
`parts`), `systemInstruction`, `tools[].functionDeclarations`, `toolConfig.functionCallingConfig`,
`generationConfig`. Responses: `candidates[]` (`content.parts`, `finishReason`, `index`),
`usageMetadata`, `promptFeedback`, `responseId`, `modelVersion`; a stream sends the same document per
SSE event, each holding only the new parts.
"""

from __future__ import annotations

import base64
import struct
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import orjson

from providers.base import UpstreamError, http_error, parse_retry_after

# Gemini has no tool call ids, but Gemini 3 needs each functionCall part's `thoughtSignature` echoed
# back with the call; carrying it inside the OpenAI tool call id lets clients round-trip it unknowingly.
THOUGHT_SIGNATURE_SEP = "__thought__"

FINISH_REASONS: dict[str, str] = {
    "STOP": "stop",
    "MAX_TOKENS": "length",
    "SAFETY": "content_filter",
    "RECITATION": "content_filter",
    "BLOCKLIST": "content_filter",
    "PROHIBITED_CONTENT": "content_filter",
    "SPII": "content_filter",
    "IMAGE_SAFETY": "content_filter",
    "IMAGE_PROHIBITED_CONTENT": "content_filter",
    "IMAGE_RECITATION": "content_filter",
    "LANGUAGE": "stop",
    "OTHER": "stop",
    "MALFORMED_FUNCTION_CALL": "stop",
    "UNEXPECTED_TOOL_CALL": "stop",
    "TOO_MANY_TOOL_CALLS": "stop",
}

# The OpenAPI-3 subset Gemini's `Schema` accepts; anything else (additionalProperties, $schema, strict,
# const, patternProperties...) is rejected with a 400, so it is dropped rather than forwarded.
_SCHEMA_KEYS = frozenset(
    {
        "type",
        "format",
        "title",
        "description",
        "nullable",
        "enum",
        "items",
        "minItems",
        "maxItems",
        "properties",
        "required",
        "minProperties",
        "maxProperties",
        "minLength",
        "maxLength",
        "pattern",
        "example",
        "anyOf",
        "propertyOrdering",
        "default",
        "minimum",
        "maximum",
    }
)
# Gemini rejects other string formats ("uri", "email"...) outright.
_FORMATS = frozenset({"enum", "date-time", "int32", "int64", "float", "double"})
_MAX_SCHEMA_DEPTH = 32


def bad_request(message: str, param: str | None = None) -> UpstreamError:
    return http_error(400, message, param=param)


# ---------------------------------------------------------------- JSON schema


def clean_schema(schema: Any) -> dict[str, Any]:
    """An OpenAI/JSON-schema object reduced to what Gemini's Schema accepts; local `$ref`s are inlined
    because Gemini has no `$defs`."""
    if not isinstance(schema, dict):
        return {}
    defs = {**(schema.get("definitions") or {}), **(schema.get("$defs") or {})}
    return _clean(schema, defs, 0)


def _clean(node: dict[str, Any], defs: dict[str, Any], depth: int) -> dict[str, Any]:
    if depth > _MAX_SCHEMA_DEPTH:
        raise bad_request("JSON schema nested too deeply (or a recursive $ref) for Gemini")
    ref = node.get("$ref")
    if isinstance(ref, str):
        target = defs.get(ref.rsplit("/", 1)[-1])
        if not isinstance(target, dict):
            raise bad_request(f"JSON schema $ref {ref!r} cannot be resolved")
        merged = {**target, **{k: v for k, v in node.items() if k != "$ref"}}
        return _clean(merged, defs, depth + 1)
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key == "properties" and isinstance(value, dict):
            out[key] = {
                name: _clean(sub, defs, depth + 1) for name, sub in value.items() if isinstance(sub, dict)
            }
        elif key == "items" and isinstance(value, dict):
            out[key] = _clean(value, defs, depth + 1)
        elif key in ("anyOf", "oneOf") and isinstance(value, list):
            options = [_clean(sub, defs, depth + 1) for sub in value if isinstance(sub, dict)]
            non_null = [o for o in options if o.get("type") != "null"]
            if len(non_null) < len(options):
                out["nullable"] = True
            if len(non_null) == 1:
                out.update({k: v for k, v in non_null[0].items() if k not in out})
            elif non_null:
                out["anyOf"] = non_null
        elif key == "type" and isinstance(value, list):
            types = [t for t in value if t != "null"]
            if len(types) < len(value):
                out["nullable"] = True
            if len(types) == 1:
                out["type"] = types[0]
            elif types:
                out["anyOf"] = [{"type": t} for t in types]
        elif key == "allOf" and isinstance(value, list):
            # pydantic wraps a described $ref as allOf: [ref]; Gemini has no allOf, so the parts merge.
            for sub in value:
                if isinstance(sub, dict):
                    out.update({k: v for k, v in _clean(sub, defs, depth + 1).items() if k not in out})
        elif key == "const":
            out["enum"] = [value]
        elif key == "format":
            if value in _FORMATS:
                out[key] = value
        elif key in _SCHEMA_KEYS:
            out[key] = value
    if "enum" in out:
        if out.get("type", "string") == "string":
            # Gemini enums are strings only.
            out["enum"] = [v if isinstance(v, str) else orjson.dumps(v).decode() for v in out["enum"]]
            out["type"] = "string"
        else:
            del out["enum"]  # a numeric enum would be rejected; keeping the type matters more
    return out


# ---------------------------------------------------------------- request


def _text_of(content: Any) -> str:
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(p.get("text", "") for p in content if isinstance(p, dict) and p.get("type") == "text")
    return str(content)


def _data_url_part(url: str) -> dict[str, Any]:
    header, _, data = url.partition(",")
    mime = header[5:].split(";", 1)[0] or "application/octet-stream"
    if ";base64" not in header:
        data = base64.b64encode(data.encode()).decode()
    return {"inlineData": {"mimeType": mime, "data": data}}


_EXT_MIME = {
    "png": "image/png",
    "jpg": "image/jpeg",
    "jpeg": "image/jpeg",
    "webp": "image/webp",
    "gif": "image/gif",
    "heic": "image/heic",
    "pdf": "application/pdf",
}


def _url_part(url: str) -> dict[str, Any]:
    if url.startswith("data:"):
        return _data_url_part(url)
    ext = url.split("?", 1)[0].rsplit(".", 1)[-1].lower()
    return {"fileData": {"mimeType": _EXT_MIME.get(ext, "image/jpeg"), "fileUri": url}}


def content_parts(content: Any) -> list[dict[str, Any]]:
    """OpenAI message content (string or typed parts) -> Gemini parts."""
    if content is None:
        return []
    if isinstance(content, str):
        return [{"text": content}] if content else []
    if not isinstance(content, list):
        raise bad_request("message content must be a string or a list of parts", "messages")
    parts: list[dict[str, Any]] = []
    for item in content:
        kind = item.get("type") if isinstance(item, dict) else None
        if kind == "text":
            if item.get("text"):
                parts.append({"text": item["text"]})
        elif kind == "image_url":
            image = item.get("image_url")
            url = image.get("url") if isinstance(image, dict) else image
            if not isinstance(url, str) or not url:
                raise bad_request("image_url part without a url", "messages")
            parts.append(_url_part(url))
        elif kind == "input_audio":
            audio = item.get("input_audio") or {}
            parts.append(
                {
                    "inlineData": {
                        "mimeType": f"audio/{audio.get('format', 'wav')}",
                        "data": audio.get("data", ""),
                    }
                }
            )
        elif kind == "file":
            file = item.get("file") or {}
            data = file.get("file_data")
            if not isinstance(data, str) or not data.startswith("data:"):
                raise bad_request("file parts must carry file_data as a data: URL for Gemini", "messages")
            parts.append(_data_url_part(data))
        else:
            raise bad_request(f"unsupported content part type {kind!r} for Gemini", "messages")
    return parts


def _split_call_id(call_id: str) -> str | None:
    _, sep, signature = call_id.partition(THOUGHT_SIGNATURE_SEP)
    return signature if sep and signature else None


def _function_call_part(call: dict[str, Any]) -> dict[str, Any]:
    function = call.get("function") or {}
    raw = function.get("arguments") or "{}"
    try:
        args = orjson.loads(raw) if isinstance(raw, str | bytes) else raw
    except orjson.JSONDecodeError as exc:
        raise bad_request("tool_calls arguments must be a JSON object", "messages") from exc
    if not isinstance(args, dict):
        args = {"value": args}
    part: dict[str, Any] = {"functionCall": {"name": function.get("name", ""), "args": args}}
    signature = _split_call_id(str(call.get("id") or ""))
    if signature:
        part["thoughtSignature"] = signature
    return part


def _function_response_part(message: dict[str, Any], names: dict[str, str]) -> dict[str, Any]:
    call_id = message.get("tool_call_id") or ""
    name = names.get(call_id) or message.get("name")
    if not name:
        raise bad_request(f"tool message {call_id!r} answers no earlier tool call", "messages")
    text = _text_of(message.get("content"))
    try:
        parsed = orjson.loads(text) if text else None
    except orjson.JSONDecodeError:
        parsed = None
    # Gemini wants a JSON object (a Struct) as the function's response.
    response = parsed if isinstance(parsed, dict) else {"content": text}
    return {"functionResponse": {"name": name, "response": response}}


def build_contents(messages: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], dict[str, Any] | None]:
    """OpenAI messages -> (Gemini contents, systemInstruction)."""
    system_parts: list[dict[str, Any]] = []
    contents: list[dict[str, Any]] = []
    call_names: dict[str, str] = {}

    def add(role: str, parts: list[dict[str, Any]]) -> None:
        if not parts:
            return
        # Gemini rejects two consecutive turns of the same role (e.g. several tool results in a row).
        if contents and contents[-1]["role"] == role:
            contents[-1]["parts"].extend(parts)
        else:
            contents.append({"role": role, "parts": parts})

    for message in messages:
        if not isinstance(message, dict):
            raise bad_request("each message must be an object", "messages")
        role = message.get("role")
        if role in ("system", "developer"):
            text = _text_of(message.get("content"))
            if text:
                system_parts.append({"text": text})
        elif role == "user":
            add("user", content_parts(message.get("content")))
        elif role == "assistant":
            parts = content_parts(message.get("content"))
            for call in message.get("tool_calls") or []:
                call_names[str(call.get("id"))] = (call.get("function") or {}).get("name", "")
                parts.append(_function_call_part(call))
            add("model", parts)
        elif role == "tool":
            add("user", [_function_response_part(message, call_names)])
        elif role == "function":  # the deprecated OpenAI function-calling message
            add("user", [_function_response_part({**message, "tool_call_id": ""}, call_names)])
        else:
            raise bad_request(f"unsupported message role {role!r}", "messages")
    if not contents:
        raise bad_request("Gemini needs at least one user or assistant message with content", "messages")
    system = {"parts": system_parts} if system_parts else None
    return contents, system


def _tools(tools: list[dict[str, Any]], allowed: set[str] | None) -> list[dict[str, Any]]:
    declarations: list[dict[str, Any]] = []
    for tool in tools:
        if tool.get("type", "function") != "function":
            raise bad_request(f"tool type {tool.get('type')!r} is not supported for Gemini", "tools")
        function = tool.get("function") or {}
        name = function.get("name")
        if not name or (allowed is not None and name not in allowed):
            continue
        declaration: dict[str, Any] = {"name": name}
        if function.get("description"):
            declaration["description"] = function["description"]
        params = clean_schema(function.get("parameters"))
        # An empty-object schema is rejected ("properties: should be non-empty for OBJECT type").
        if params and params.get("properties"):
            declaration["parameters"] = params
        declarations.append(declaration)
    return [{"functionDeclarations": declarations}] if declarations else []


def _tool_config(choice: Any) -> tuple[dict[str, Any] | None, set[str] | None]:
    """(toolConfig, allowed function names or None for all)."""
    if choice is None:
        return None, None
    if isinstance(choice, str):
        mode = {"auto": "AUTO", "none": "NONE", "required": "ANY"}.get(choice)
        if mode is None:
            raise bad_request(f"unsupported tool_choice {choice!r}", "tool_choice")
        return {"functionCallingConfig": {"mode": mode}}, None
    if isinstance(choice, dict):
        if choice.get("type") == "function":
            name = (choice.get("function") or {}).get("name")
            if not name:
                raise bad_request("tool_choice function needs a name", "tool_choice")
            return {"functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": [name]}}, None
        if choice.get("type") == "allowed_tools":
            spec = choice.get("allowed_tools") or {}
            names = {(t.get("function") or {}).get("name") for t in spec.get("tools") or []}
            mode = "ANY" if spec.get("mode") == "required" else "AUTO"
            # allowedFunctionNames is only honoured in ANY mode, so narrowing the declarations instead
            # gives the same restriction in both modes.
            return {"functionCallingConfig": {"mode": mode}}, {n for n in names if n}
    raise bad_request("unsupported tool_choice", "tool_choice")


def _generation_config(body: dict[str, Any]) -> dict[str, Any]:
    config: dict[str, Any] = {}
    for src, dst in (
        ("temperature", "temperature"),
        ("top_p", "topP"),
        ("top_k", "topK"),
        ("n", "candidateCount"),
        ("seed", "seed"),
        ("presence_penalty", "presencePenalty"),
        ("frequency_penalty", "frequencyPenalty"),
    ):
        if body.get(src) is not None:
            config[dst] = body[src]
    max_tokens = body.get("max_completion_tokens") or body.get("max_tokens")
    if max_tokens is not None:
        config["maxOutputTokens"] = max_tokens
    stop = body.get("stop")
    if stop:
        config["stopSequences"] = [stop] if isinstance(stop, str) else list(stop)
    if body.get("logprobs"):
        config["responseLogprobs"] = True
        if body.get("top_logprobs") is not None:
            config["logprobs"] = body["top_logprobs"]
    fmt = body.get("response_format")
    if isinstance(fmt, dict):
        kind = fmt.get("type")
        if kind == "json_object":
            config["responseMimeType"] = "application/json"
        elif kind == "json_schema":
            config["responseMimeType"] = "application/json"
            schema = (fmt.get("json_schema") or {}).get("schema")
            if schema:
                config["responseSchema"] = clean_schema(schema)
    return config


def build_request(body: dict[str, Any], options: dict[str, Any] | None = None) -> dict[str, Any]:
    """An OpenAI chat.completions body -> a Gemini generateContent body."""
    messages = body.get("messages")
    if not isinstance(messages, list):
        raise bad_request("messages must be a list", "messages")
    options = options or {}
    contents, system = build_contents(messages)
    request: dict[str, Any] = {"contents": contents}
    if system:
        request["systemInstruction"] = system
    tool_config, allowed = _tool_config(body.get("tool_choice"))
    tools = _tools(body.get("tools") or [], allowed)
    if tools:
        request["tools"] = tools
        if tool_config:
            request["toolConfig"] = tool_config
    config = {**_generation_config(body), **(options.get("generation_config") or {})}
    if config:
        request["generationConfig"] = config
    if options.get("safety_settings"):
        request["safetySettings"] = options["safety_settings"]
    return request


# ---------------------------------------------------------------- response


def new_call_id(signature: str | None = None) -> str:
    base = f"call_{uuid.uuid4().hex[:24]}"
    return f"{base}{THOUGHT_SIGNATURE_SEP}{signature}" if signature else base


def tool_call(part: dict[str, Any]) -> dict[str, Any]:
    call = part["functionCall"]
    return {
        "id": new_call_id(part.get("thoughtSignature")),
        "type": "function",
        "function": {
            "name": call.get("name", ""),
            "arguments": orjson.dumps(call.get("args") or {}).decode(),
        },
    }


def finish_reason(native: str | None, has_tool_calls: bool) -> str | None:
    if native is None:
        return None
    reason = FINISH_REASONS.get(native, "stop")
    return "tool_calls" if has_tool_calls and reason == "stop" else reason


def usage(meta: dict[str, Any] | None) -> dict[str, Any] | None:
    if not meta:
        return None
    # Tool-use prompt tokens (built-in tools) are billed as input, thoughts as output.
    prompt = int(meta.get("promptTokenCount") or 0) + int(meta.get("toolUsePromptTokenCount") or 0)
    thoughts = int(meta.get("thoughtsTokenCount") or 0)
    completion = int(meta.get("candidatesTokenCount") or 0) + thoughts
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "prompt_tokens_details": {"cached_tokens": int(meta.get("cachedContentTokenCount") or 0)},
        "completion_tokens_details": {"reasoning_tokens": thoughts},
    }


def logprobs(result: dict[str, Any] | None) -> dict[str, Any] | None:
    if not result:
        return None
    chosen = result.get("chosenCandidates") or []
    tops = result.get("topCandidates") or []
    content = []
    for i, candidate in enumerate(chosen):
        token = candidate.get("token", "")
        alternatives = (tops[i].get("candidates") or []) if i < len(tops) else []
        content.append(
            {
                "token": token,
                "logprob": candidate.get("logProbability", 0.0),
                "bytes": list(token.encode()),
                "top_logprobs": [
                    {
                        "token": t.get("token", ""),
                        "logprob": t.get("logProbability", 0.0),
                        "bytes": list(t.get("token", "").encode()),
                    }
                    for t in alternatives
                ],
            }
        )
    return {"content": content}


def _split_parts(parts: list[dict[str, Any]]) -> tuple[str, str, list[dict[str, Any]]]:
    """(answer text, thought text, tool calls)."""
    text, thoughts, calls = [], [], []
    for part in parts:
        if "functionCall" in part:
            calls.append(tool_call(part))
        elif isinstance(part.get("text"), str):
            (thoughts if part.get("thought") else text).append(part["text"])
    return "".join(text), "".join(thoughts), calls


def completion_id(data: dict[str, Any]) -> str:
    return f"chatcmpl-{data.get('responseId') or uuid.uuid4().hex}"


def build_response(data: dict[str, Any], model: str) -> dict[str, Any]:
    """A Gemini GenerateContentResponse -> an OpenAI chat.completion."""
    choices = []
    for position, candidate in enumerate(data.get("candidates") or []):
        text, thoughts, calls = _split_parts((candidate.get("content") or {}).get("parts") or [])
        message: dict[str, Any] = {"role": "assistant", "content": text if text or not calls else None}
        if calls:
            message["tool_calls"] = calls
        if thoughts:
            message["reasoning_content"] = thoughts
        choices.append(
            {
                "index": candidate.get("index", position),
                "message": message,
                "finish_reason": finish_reason(candidate.get("finishReason") or "STOP", bool(calls)),
                "logprobs": logprobs(candidate.get("logprobsResult")),
            }
        )
    if not choices and (data.get("promptFeedback") or {}).get("blockReason"):
        # The prompt itself was blocked: there is no candidate, which OpenAI expresses as a filtered answer.
        choices.append(
            {
                "index": 0,
                "message": {"role": "assistant", "content": None},
                "finish_reason": "content_filter",
                "logprobs": None,
            }
        )
    out: dict[str, Any] = {
        "id": completion_id(data),
        "object": "chat.completion",
        "created": int(time.time()),
        "model": data.get("modelVersion") or model,
        "choices": choices,
    }
    u = usage(data.get("usageMetadata"))
    if u:
        out["usage"] = u
    return out


@dataclass(slots=True)
class StreamState:
    """Turns successive Gemini stream events into OpenAI chunk payloads for one response."""

    model: str
    id: str = ""
    created: int = field(default_factory=lambda: int(time.time()))
    started: set[int] = field(default_factory=set)
    tool_counts: dict[int, int] = field(default_factory=dict)
    finished: set[int] = field(default_factory=set)
    usage_meta: dict[str, Any] | None = None

    def _chunk(self, choices: list[dict[str, Any]]) -> dict[str, Any]:
        return {
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
            "choices": choices,
        }

    def feed(self, event: dict[str, Any]) -> list[dict[str, Any]]:
        if not self.id:
            self.id = completion_id(event)
        if event.get("modelVersion"):
            self.model = event["modelVersion"]
        if event.get("usageMetadata"):
            # Gemini repeats running totals on every event; the last one is the answer's usage.
            self.usage_meta = event["usageMetadata"]
        out: list[dict[str, Any]] = []
        candidates = event.get("candidates") or []
        for position, candidate in enumerate(candidates):
            index = candidate.get("index", position)
            text, thoughts, calls = _split_parts((candidate.get("content") or {}).get("parts") or [])
            delta: dict[str, Any] = {}
            if index not in self.started:
                self.started.add(index)
                delta["role"] = "assistant"
                delta["content"] = text if text or not calls else None
            elif text:
                delta["content"] = text
            if thoughts:
                delta["reasoning_content"] = thoughts
            if calls:
                base = self.tool_counts.get(index, 0)
                delta["tool_calls"] = [{"index": base + i, **call} for i, call in enumerate(calls)]
                self.tool_counts[index] = base + len(calls)
            if delta:
                choice: dict[str, Any] = {"index": index, "delta": delta, "finish_reason": None}
                lp = logprobs(candidate.get("logprobsResult"))
                if lp:
                    choice["logprobs"] = lp
                out.append(self._chunk([choice]))
            native = candidate.get("finishReason")
            if native and index not in self.finished:
                self.finished.add(index)
                reason = finish_reason(native, self.tool_counts.get(index, 0) > 0)
                out.append(self._chunk([{"index": index, "delta": {}, "finish_reason": reason}]))
        if (
            not candidates
            and (event.get("promptFeedback") or {}).get("blockReason")
            and 0 not in self.finished
        ):
            self.started.add(0)
            self.finished.add(0)
            delta = {"role": "assistant", "content": ""}
            out.append(self._chunk([{"index": 0, "delta": delta, "finish_reason": "content_filter"}]))
        return out

    def close(self) -> list[dict[str, Any]]:
        """The chunks that end the stream: any missing finish, then one usage-only chunk."""
        out = [
            self._chunk(
                [
                    {
                        "index": i,
                        "delta": {},
                        "finish_reason": "tool_calls" if self.tool_counts.get(i) else "stop",
                    }
                ]
            )
            for i in sorted(self.started - self.finished)
        ]
        u = usage(self.usage_meta)
        if u:
            out.append({**self._chunk([]), "usage": u})
        return out


# ---------------------------------------------------------------- errors


def _retry_delay(error: dict[str, Any]) -> float | None:
    for detail in error.get("details") or []:
        if isinstance(detail, dict) and str(detail.get("@type", "")).endswith("google.rpc.RetryInfo"):
            delay = str(detail.get("retryDelay") or "")
            return parse_retry_after(delay.removesuffix("s"))
    return None


def error_from_body(status: int, body: bytes, retry_after_header: str | None = None) -> UpstreamError:
    """A Google error body `{"error": {"code", "message", "status", "details"}}` -> UpstreamError."""
    message, code, delay = body.decode(errors="replace")[:500] or f"HTTP {status}", None, None
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        data = None
    if isinstance(data, list) and data:  # streamGenerateContent without alt=sse wraps errors in an array
        data = data[0]
    error = data.get("error") if isinstance(data, dict) else None
    if isinstance(error, dict):
        message = str(error.get("message") or message)
        code = error.get("status")
        delay = _retry_delay(error)
    retry_after = parse_retry_after(retry_after_header)
    return http_error(
        status, message, code=code, retry_after=retry_after if retry_after is not None else delay
    )


# ---------------------------------------------------------------- embeddings


def embed_inputs(body: dict[str, Any]) -> list[str]:
    value = body.get("input")
    if isinstance(value, str):
        return [value]
    if isinstance(value, list) and value and all(isinstance(v, str) for v in value):
        return value
    if isinstance(value, list) and value:
        raise bad_request("Gemini embeddings take text input only, not token arrays", "input")
    raise bad_request("input must be a non-empty string or list of strings", "input")


def build_embed_request(
    texts: list[str], model: str, body: dict[str, Any], options: dict[str, Any] | None = None
) -> dict[str, Any]:
    extra: dict[str, Any] = {}
    if body.get("dimensions"):
        extra["outputDimensionality"] = body["dimensions"]
    if (options or {}).get("task_type"):
        extra["taskType"] = options["task_type"]  # type: ignore[index]
    return {
        "requests": [
            {"model": f"models/{model}", "content": {"parts": [{"text": text}]}, **extra} for text in texts
        ]
    }


def _encode_base64(values: list[float]) -> str:
    return base64.b64encode(struct.pack(f"<{len(values)}f", *values)).decode()


def build_embed_response(
    data: dict[str, Any], model: str, prompt_tokens: int, encoding_format: str | None = None
) -> dict[str, Any]:
    items = []
    for i, embedding in enumerate(data.get("embeddings") or []):
        values = embedding.get("values") or []
        items.append(
            {
                "object": "embedding",
                "index": i,
                "embedding": _encode_base64(values) if encoding_format == "base64" else values,
            }
        )
    return {
        "object": "list",
        "data": items,
        "model": model,
        "usage": {"prompt_tokens": prompt_tokens, "total_tokens": prompt_tokens},
    }
