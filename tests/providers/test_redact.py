"""Credentials never survive into an `UpstreamError`: the patterns alone, and every HTTP adapter (and the
litellm one) against fakes that quote the credentials they received (`tests.fakes.echo_faults`)."""

from __future__ import annotations

from typing import Any

import pytest

from providers.base import UpstreamCall, UpstreamError, http_error
from providers.deployment import Deployment
from providers.redact import REDACTED, credentials, redact
from tests.fakes.server import ServerThread

# Key-shaped texts below are assembled at run time (`"sk-" + "..."`), so no source file holds text a
# secret scanner takes for a real key.
SECRET = "opaque.credential.42-xyzzy"  # no pattern could tell it is a key: only its value gives it away


@pytest.mark.parametrize(
    ("text", "gone"),
    [
        ("Authorization: Bearer abcdef123456", "abcdef123456"),
        ("{'authorization': 'Bearer tok_live_998877'}", "tok_live_998877"),
        ('{"x-api-key": "whatever-it-is"}', "whatever-it-is"),
        ("x-goog-api-key: gemini-upstream-key", "gemini-upstream-key"),
        ("api-key=0123456789abcdef0123456789abcdef", "0123456789abcdef"),
        (
            "GET /v1beta/models/x?key=" + "AIza" + "SyA1234567890abcdefghijklmn&alt=sse",
            "AIza" + "SyA1234567890",
        ),
        ("token=abcdefghijklmnopqrstuvwxyz0123", "abcdefghijklmnop"),
        ("the key " + "sk-" + "proj-AAAABBBBCCCCDDDD1234 is invalid", "sk-" + "proj-AAAABBBB"),
        ("invalid x-api-key " + "sk-" + "ant-api03-abcdefghijklmnop", "sk-" + "ant-api03-abcd"),
        ("bad key " + "AIza" + "SyD-abcdefghijklmnopqrstuvwxyz1", "AIza" + "SyD-abcdef"),
        ("groq says " + "gsk_" + "abcdefghijklmnopqrstuvwxyz", "gsk_" + "abcdefghijk"),
        ("plain bearer token: Bearer " + "eyJ" + "hbGciOiJIUzI1NiJ9.e30.sig", "eyJ" + "hbGciOiJIUzI1NiJ9"),
    ],
)
def test_key_shaped_text_is_redacted(text: str, gone: str) -> None:
    cleaned = redact(text)
    assert gone not in cleaned and REDACTED in cleaned


@pytest.mark.parametrize(
    "text",
    [
        "Invalid value for 'temperature': must be at most 2.",
        "key: temperature",
        "max_tokens: 4096000 is too large",
        "Incorrect API key provided: sk-***. You can find your API key at https://platform.openai.com.",
        "task-scheduler-pipeline-abcdefghijk failed",
        "Request id req_0123456789abcdef0123456789abcdef",
    ],
)
def test_ordinary_text_is_left_alone(text: str) -> None:
    assert redact(text) == text


def test_the_bearer_scheme_survives_redaction() -> None:
    assert redact(f"Authorization: Bearer {SECRET}", [SECRET]) == f"Authorization: Bearer {REDACTED}"


def test_credentials_are_the_key_and_secret_looking_headers() -> None:
    dep = Deployment(
        name="d",
        model="m",
        api_key=SECRET,
        headers={"X-Custom-Auth": "Bearer another-secret", "OpenAI-Organization": "org-public", "X-Tok": "t"},
    )
    assert set(credentials(dep)) == {SECRET, "Bearer another-secret", "another-secret"}


def test_upstream_errors_are_redacted_when_built() -> None:
    exc = http_error(400, "rejected headers {'authorization': 'Bearer sk-live-0123456789abcdef'}")
    assert "sk-live" not in exc.message and "sk-live" not in str(exc)
    exc = UpstreamError(502, f"the key {SECRET} was refused").without([SECRET])
    assert SECRET not in exc.message and SECRET not in str(exc)


# --------------------------------------------------------------------------- adapters over real HTTP


def _deployment(provider: str, url: str, model: str) -> Deployment:
    bases = {"openai_compatible": url + "/v1", "litellm": url + "/v1", "anthropic": url, "gemini": url}
    return Deployment(
        name="echo",
        provider=provider,  # type: ignore[arg-type]
        model=f"openai/{model}" if provider == "litellm" else model,
        api_base=bases[provider],
        api_key=SECRET,
        timeout=5.0,
    )


def _provider(provider: str, url: str, model: str) -> Any:
    dep = _deployment(provider, url, model)
    if provider == "openai_compatible":
        from providers.openai_compatible import OpenAICompatibleProvider

        return OpenAICompatibleProvider(dep)
    if provider == "anthropic":
        from providers.anthropic import AnthropicProvider

        return AnthropicProvider(dep)
    if provider == "gemini":
        from providers.gemini import GeminiProvider

        return GeminiProvider(dep)
    from providers.litellm_sdk import LitellmProvider

    return LitellmProvider(dep)


def _call(model: str, stream: bool) -> UpstreamCall:
    # The gateway hands adapters the body with `model` already the upstream's id.
    body: dict[str, Any] = {"model": model, "messages": [{"role": "user", "content": "hi"}]}
    if stream:
        body.update(stream=True, stream_options={"include_usage": True})
    return UpstreamCall(body=body)


ADAPTERS = ["openai_compatible", "anthropic", "gemini", "litellm"]
FAKE_OF = {
    "openai_compatible": "openai_upstream",
    "litellm": "openai_upstream",
    "anthropic": "anthropic_upstream",
    "gemini": "gemini_upstream",
}


@pytest.mark.parametrize("adapter", ADAPTERS)
@pytest.mark.parametrize("fault", ["echo-key-400", "echo-key-401", "echo-key-500", "echo-key-midstream"])
async def test_adapters_take_their_key_out_of_upstream_errors(
    adapter: str, fault: str, request: pytest.FixtureRequest
) -> None:
    fake: ServerThread = request.getfixturevalue(FAKE_OF[adapter])
    provider = _provider(adapter, fake.url, fault)
    try:
        with pytest.raises(UpstreamError) as err:
            if fault == "echo-key-midstream":
                async for _chunk in provider.stream(_call(fault, stream=True)):
                    pass
            else:
                await provider.complete(_call(fault, stream=False))
    finally:
        await provider.aclose()
    seen = f"{err.value.message} {err.value.param} {err.value.code} {err.value!s}"
    assert SECRET not in seen and "xyzzy" not in seen, seen
    assert REDACTED in seen, seen  # the echo did arrive, and was cleaned
