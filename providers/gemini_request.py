"""OpenAI chat.completions request -> Gemini generateContent request (REST v1beta). Pure: no I/O.

Gemini's wire format is proto3 JSON in camelCase: `contents` (turns with `role` user|model and `parts`),
`systemInstruction`, `tools[].functionDeclarations`, `toolConfig.functionCallingConfig`,
`generationConfig`.
"""

from __future__ import annotations

import base64
from typing import Any

import orjson

from providers.gemini_errors import bad_request
from providers.gemini_schema import clean_schema
from providers.gemini_tool_ids import signature_of


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
    signature = signature_of(str(call.get("id") or ""))
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
