"""The deployments' own API keys never reach a client, whatever an upstream puts in its error messages.

Each fake upstream here quotes the credentials it received (`tests.fakes.echo_faults`) in 400, 401 and
500 answers and in an error event after a stream started. The gateway is driven through the official
`openai` and `anthropic` SDKs on both doors, streamed and not, and nothing the client receives (status
body, headers, SSE events, the SDK's exception) may hold a key.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from typing import Any

import anthropic
import openai
import pytest

from gateway.app import create_app
from gateway.config import parse_config
from tests.e2e.gateway_harness import CLIENT_TIMEOUT_S, MASTER_KEY, gateway_settings
from tests.fakes import anthropic_upstream, gemini_upstream, openai_upstream
from tests.fakes.server import ServerThread

# Key-shaped keys, and one no pattern could recognise: only the deployment's own key tells it apart.
# Each is assembled at run time, so no source file holds text a secret scanner takes for a real key.
KEYS = {
    "oa": "sk-" + "proj-UPSTREAMopenaiSECRET0123456789",
    "opaque": "opaque.credential.42-xyzzy",
    "an": "sk-" + "ant-api03-UPSTREAManthropicSECRET0123",
    "ge": "AIza" + "SyUPSTREAMgeminiSECRET0123456789ab",
}
PROVIDERS = {"oa": "openai_compatible", "opaque": "openai_compatible", "an": "anthropic", "ge": "gemini"}
FAULTS = ("echo-key-400", "echo-key-401", "echo-key-500", "echo-key-midstream")
HELLO = [{"role": "user", "content": "Say hello"}]


@pytest.fixture(scope="module")
def gateway_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with (
        ServerThread(openai_upstream.create_app()) as oa,
        ServerThread(anthropic_upstream.create_app()) as an,
        ServerThread(gemini_upstream.create_app()) as ge,
    ):
        bases = {"oa": oa.url + "/v1", "opaque": oa.url + "/v1", "an": an.url, "ge": ge.url}
        models = [
            {
                "name": f"{backend}-{fault}",
                "provider": PROVIDERS[backend],
                "model": fault,
                "api_base": bases[backend],
                "api_key": KEYS[backend],
                "timeout": 5.0,
                "connect_timeout": 1.0,
            }
            for backend in KEYS
            for fault in FAULTS
        ]
        config = parse_config({"models": models}, env={})
        settings = gateway_settings(tmp_path_factory.mktemp("secrets-gateway"))
        with ServerThread(create_app(settings, config)) as gw:
            yield gw.url


def _assert_no_key(seen: str) -> None:
    for name, key in KEYS.items():
        assert key not in seen, f"the {name} deployment's key reached the client: {seen}"
        assert key[-12:] not in seen, f"part of the {name} deployment's key reached the client: {seen}"


def _exception_text(exc: Exception) -> str:
    parts = [str(exc), json.dumps(getattr(exc, "body", None), default=str)]
    response = getattr(exc, "response", None)
    if response is not None:
        parts.append(json.dumps(dict(response.headers)))
        # A streamed answer's body was read as events: the SDK hands the error event over as `body`.
        with contextlib.suppress(Exception):
            parts.append(response.text)
    return "\n".join(parts)


def _via_openai(url: str, model: str, stream: bool) -> str:
    """Everything the openai SDK hands its caller for this call, as one text."""
    client = openai.OpenAI(base_url=url + "/v1", api_key=MASTER_KEY, max_retries=0, timeout=CLIENT_TIMEOUT_S)
    seen: list[str] = []
    try:
        if not stream:
            raw = client.chat.completions.with_raw_response.create(model=model, messages=HELLO)
            seen += [json.dumps(dict(raw.headers)), raw.http_response.text]
        else:
            with client.chat.completions.with_streaming_response.create(
                model=model, messages=HELLO, stream=True
            ) as response:
                seen.append(json.dumps(dict(response.headers)))
                seen += [chunk.model_dump_json() for chunk in response.parse()]
    except openai.APIError as exc:
        seen.append(_exception_text(exc))
    finally:
        client.close()
    return "\n".join(seen)


def _via_anthropic(url: str, model: str, stream: bool) -> str:
    """Everything the anthropic SDK hands its caller for this call, as one text."""
    client = anthropic.Anthropic(base_url=url, api_key=MASTER_KEY, max_retries=0, timeout=CLIENT_TIMEOUT_S)
    seen: list[str] = []
    try:
        if not stream:
            raw = client.messages.with_raw_response.create(model=model, max_tokens=64, messages=HELLO)
            seen += [json.dumps(dict(raw.headers)), raw.http_response.text]
        else:
            with client.messages.with_streaming_response.create(
                model=model, max_tokens=64, messages=HELLO, stream=True
            ) as response:
                seen.append(json.dumps(dict(response.headers)))
                seen += [event.model_dump_json() for event in response.parse()]
    except anthropic.APIError as exc:
        seen.append(_exception_text(exc))
    finally:
        client.close()
    return "\n".join(seen)


CASES = [
    pytest.param(backend, fault, stream, id=f"{backend}-{fault}-{'stream' if stream else 'json'}")
    for backend in KEYS
    for fault in FAULTS
    for stream in (False, True)
    if stream or fault != "echo-key-midstream"
]


@pytest.mark.parametrize(("backend", "fault", "stream"), CASES)
def test_openai_door_never_relays_a_key(gateway_url: str, backend: str, fault: str, stream: bool) -> None:
    seen = _via_openai(gateway_url, f"{backend}-{fault}", stream)
    _assert_no_key(seen)
    assert "REDACTED" in seen or fault == "echo-key-401", seen  # the echo arrived, cleaned


@pytest.mark.parametrize(("backend", "fault", "stream"), CASES)
def test_anthropic_door_never_relays_a_key(gateway_url: str, backend: str, fault: str, stream: bool) -> None:
    seen = _via_anthropic(gateway_url, f"{backend}-{fault}", stream)
    _assert_no_key(seen)
    assert "REDACTED" in seen or fault == "echo-key-401", seen


@pytest.mark.parametrize("backend", list(KEYS))
def test_upstream_rejecting_our_key_is_a_gateway_fault(gateway_url: str, backend: str) -> None:
    """The client did nothing wrong when the gateway's own key is refused: 502, not its 401."""
    client = openai.OpenAI(
        base_url=gateway_url + "/v1", api_key=MASTER_KEY, max_retries=0, timeout=CLIENT_TIMEOUT_S
    )
    with client, pytest.raises(openai.APIStatusError) as err:
        client.chat.completions.create(model=f"{backend}-echo-key-401", messages=HELLO)
    assert err.value.status_code == 502
    error: dict[str, Any] = err.value.body  # type: ignore[assignment]
    assert error["type"] == "api_error" and error["code"] == "upstream_auth_error"
    assert f"{backend}-echo-key-401" in error["message"] and "credentials" in error["message"]

    claude = anthropic.Anthropic(base_url=gateway_url, api_key=MASTER_KEY, max_retries=0)
    with claude, pytest.raises(anthropic.APIStatusError) as aerr:
        claude.messages.create(model=f"{backend}-echo-key-401", max_tokens=64, messages=HELLO)
    assert aerr.value.status_code == 502
    assert aerr.value.body["error"]["type"] == "api_error"  # type: ignore[index]
