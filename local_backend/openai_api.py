"""OpenAI request bodies to engine calls, engine deltas to OpenAI responses and chunks.

Shared by the standalone server and the gateway's in-process provider, so both answer identically."""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

from local_backend.async_engine import AsyncEngine, RequestError
from local_backend.engine import RequestOutput
from local_backend.generation import TEXT_MAX_TOKENS, GenerationDefaults
from local_backend.sampler import TokenLogprobs
from local_backend.sequence import SamplingParams
from local_backend.tokenizer import TextTokenizer


def _number(body: dict[str, Any], name: str, default: float, low: float, high: float) -> float:
    value = body.get(name)
    if value is None:
        return default
    if not isinstance(value, int | float) or isinstance(value, bool) or not low <= value <= high:
        raise RequestError(f"{name} must be a number in [{low}, {high}]", name)
    return float(value)


def sampling_params(body: dict[str, Any], text: bool, defaults: GenerationDefaults) -> SamplingParams:
    """The request's own values, the model's `defaults` for what it leaves out."""
    if int(body.get("n") or 1) != 1:
        raise RequestError("the local engine serves n=1 only", "n")
    if text and body.get("echo"):
        raise RequestError("echo is not supported by the local engine", "echo")
    stop = body.get("stop") or []
    stop = [stop] if isinstance(stop, str) else list(stop)
    if not all(isinstance(s, str) for s in stop):
        raise RequestError("stop must be a string or a list of strings", "stop")
    max_tokens = (
        body.get("max_completion_tokens")
        or body.get("max_tokens")
        or (TEXT_MAX_TOKENS if text else defaults.max_tokens)
    )
    if not isinstance(max_tokens, int) or max_tokens < 1:
        raise RequestError("max_tokens must be a positive integer", "max_tokens")
    if text:
        top = body.get("logprobs")
        want_logprobs, top_logprobs = top is not None, int(top or 0)
    else:
        want_logprobs, top_logprobs = bool(body.get("logprobs")), int(body.get("top_logprobs") or 0)
    if not 0 <= top_logprobs <= 20:
        raise RequestError("top_logprobs must be between 0 and 20", "top_logprobs")
    seed = body.get("seed")
    return SamplingParams(
        max_tokens=max_tokens,
        temperature=_number(body, "temperature", defaults.temperature, 0.0, 2.0),
        top_p=_number(body, "top_p", defaults.top_p, 0.0, 1.0),
        top_k=max(0, int(_number(body, "top_k", defaults.top_k, -1, 1e9))),  # vLLM's -1 and 0 both mean off
        min_p=_number(body, "min_p", defaults.min_p, 0.0, 1.0),
        seed=int(seed) if seed is not None else None,
        presence_penalty=_number(body, "presence_penalty", 0.0, -2.0, 2.0),
        frequency_penalty=_number(body, "frequency_penalty", 0.0, -2.0, 2.0),
        repetition_penalty=_number(body, "repetition_penalty", defaults.repetition_penalty, 0.01, 10.0),
        stop=stop,
        stop_token_ids=[int(t) for t in body.get("stop_token_ids") or []],
        ignore_eos=bool(body.get("ignore_eos", False)),
        logprobs=want_logprobs,
        top_logprobs=top_logprobs,
    )


def prompt_ids(body: dict[str, Any], text: bool, tokenizer: TextTokenizer) -> list[int]:
    if not text:
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages:
            raise RequestError("messages must be a non-empty list", "messages")
        try:
            return tokenizer.encode_chat(messages, add_generation_prompt=True)
        except Exception as exc:  # template errors are the request's fault (bad roles, order)
            raise RequestError(f"chat template failed: {exc}", "messages") from exc
    prompt = body.get("prompt")
    if isinstance(prompt, list) and len(prompt) == 1 and isinstance(prompt[0], str | list):
        prompt = prompt[0]
    if isinstance(prompt, str):
        return tokenizer.encode(prompt)
    if isinstance(prompt, list) and prompt and all(isinstance(t, int) for t in prompt):
        return prompt
    raise RequestError("prompt must be a string or a list of token ids (one prompt per request)", "prompt")


class OpenAIFrontend:
    def __init__(self, engine: AsyncEngine, model_name: str) -> None:
        self.engine = engine
        self.model_name = model_name

    async def _start(
        self, body: dict[str, Any], text: bool
    ) -> tuple[AsyncIterator[RequestOutput], TextTokenizer]:
        engine = await self.engine.wait_ready()
        params = sampling_params(body, text, engine.generation_defaults)
        ids = prompt_ids(body, text, engine.tokenizer)
        if len(ids) >= engine.max_model_len:
            raise RequestError(
                f"prompt is {len(ids)} tokens; the local model takes {engine.max_model_len - 1}",
                "messages" if not text else "prompt",
            )
        return self.engine.generate(ids, params), engine.tokenizer

    async def complete(self, body: dict[str, Any], text: bool) -> dict[str, Any]:
        outputs, tokenizer = await self._start(body, text)
        content, logprobs, last = [], [], None
        async for out in outputs:
            content.append(out.text)
            logprobs.extend(zip(out.token_ids, out.logprobs, strict=False))
            last = out
        assert last is not None
        model = body.get("model") or self.model_name
        answer = "".join(content)
        lp = _logprobs(tokenizer, logprobs, text) if logprobs else None
        if text:
            choice = {"index": 0, "text": answer, "logprobs": lp, "finish_reason": last.finish_reason}
        else:
            choice = {
                "index": 0,
                "message": {"role": "assistant", "content": answer},
                "logprobs": lp,
                "finish_reason": last.finish_reason,
            }
        return {
            "id": _id("cmpl" if text else "chatcmpl"),
            "object": "text_completion" if text else "chat.completion",
            "created": int(time.time()),
            "model": model,
            "choices": [choice],
            "usage": _usage(last),
        }

    async def stream(self, body: dict[str, Any], text: bool) -> AsyncIterator[dict[str, Any]]:
        """Chunk payloads; the usage chunk comes last when stream_options.include_usage is set."""
        outputs, tokenizer = await self._start(body, text)
        # The engine accepts or refuses the request (too long for its KV cache) with its first output:
        # wait for it, so a refusal is a plain 400 and not an error after the stream began.
        first = await anext(outputs, None)
        include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
        model = body.get("model") or self.model_name
        base = {
            "id": _id("cmpl" if text else "chatcmpl"),
            "object": "text_completion" if text else "chat.completion.chunk",
            "created": int(time.time()),
            "model": model,
        }
        if not text:
            yield {
                **base,
                "choices": [
                    {
                        "index": 0,
                        "delta": {"role": "assistant", "content": ""},
                        "logprobs": None,
                        "finish_reason": None,
                    }
                ],
            }
        last = None
        async for out in _prepend(first, outputs):
            last = out
            lp = (
                _logprobs(tokenizer, list(zip(out.token_ids, out.logprobs, strict=False)), text)
                if out.logprobs
                else None
            )
            if not out.text and not lp and not out.finished:
                continue
            reason = out.finish_reason if out.finished else None
            if text:
                choice = {"index": 0, "text": out.text, "logprobs": lp, "finish_reason": reason}
            else:
                delta = {"content": out.text} if out.text or not out.finished else {}
                choice = {"index": 0, "delta": delta, "logprobs": lp, "finish_reason": reason}
            yield {**base, "choices": [choice]}
        if include_usage and last is not None:
            yield {**base, "choices": [], "usage": _usage(last)}


def _id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:24]}"


def _usage(out: RequestOutput) -> dict[str, Any]:
    return {
        "prompt_tokens": out.prompt_tokens,
        "completion_tokens": out.completion_tokens,
        "total_tokens": out.prompt_tokens + out.completion_tokens,
        "prompt_tokens_details": {"cached_tokens": out.cached_tokens},
    }


def _logprobs(tokenizer: TextTokenizer, items: list[tuple[int, TokenLogprobs]], text: bool) -> dict[str, Any]:
    if text:
        return {
            "tokens": [tokenizer.token_text(t) for t, _ in items],
            "token_logprobs": [lp.logprob for _, lp in items],
            "top_logprobs": [{tokenizer.token_text(i): v for i, v in lp.top} for _, lp in items],
        }

    def entry(token_id: int, logprob: float) -> dict[str, Any]:
        return {
            "token": tokenizer.token_text(token_id),
            "logprob": logprob,
            "bytes": list(tokenizer.token_bytes[token_id]),
        }

    return {
        "content": [
            {**entry(t, lp.logprob), "top_logprobs": [entry(i, v) for i, v in lp.top]} for t, lp in items
        ]
    }


async def _prepend(
    first: RequestOutput | None, rest: AsyncIterator[RequestOutput]
) -> AsyncIterator[RequestOutput]:
    if first is None:
        return
    yield first
    async for out in rest:
        yield out
