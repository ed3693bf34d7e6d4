"""What one upstream deployment is: the config entry every adapter is built from."""

from __future__ import annotations

from typing import Any, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, field_validator, model_validator

ProviderName = Literal["openai", "openai_compatible", "azure", "anthropic", "gemini", "litellm", "local"]
Tier = Literal["local", "small", "medium", "large"]
TIER_RANK: dict[str, int] = {"local": 0, "small": 1, "medium": 2, "large": 3}

# What a request may need from the model that serves it (routing.capabilities reads a body's needs):
# `tools` (function calling), `response_format` (json_object / json_schema output), `vision` (image
# parts in messages), `logprobs`.
Capability = Literal["tools", "response_format", "vision", "logprobs"]
ALL_CAPABILITIES: frozenset[str] = frozenset(get_args(Capability))
# What each adapter carries through. Anthropic drops logprobs (it has none); the bundled local engine
# has no tool calling, constrained decoding or image input, and would answer such a request with
# plain text.
PROVIDER_CAPABILITIES: dict[str, frozenset[str]] = {
    "openai": ALL_CAPABILITIES,
    "azure": ALL_CAPABILITIES,
    "openai_compatible": ALL_CAPABILITIES,
    "litellm": ALL_CAPABILITIES,
    "gemini": ALL_CAPABILITIES,
    "anthropic": ALL_CAPABILITIES - {"logprobs"},
    "local": frozenset({"logprobs"}),
}


class Price(BaseModel):
    model_config = ConfigDict(extra="forbid")

    input_per_mtok: float = Field(ge=0)
    output_per_mtok: float = Field(ge=0)
    # Prompt-cache prices: reads, and writes that live 5 minutes or 1 hour (Anthropic's two lifetimes).
    # Unset: Anthropic's multiples of input_per_mtok on an Anthropic deployment, else input_per_mtok.
    cached_input_per_mtok: float | None = Field(default=None, ge=0)
    cache_write_per_mtok: float | None = Field(default=None, ge=0)
    cache_write_1h_per_mtok: float | None = Field(default=None, ge=0)


class RequestDefaults(BaseModel):
    """A deployment's `defaults:`: what a request gets for each field it leaves out (the request's own
    value always wins). They reach the upstream as written, so name only fields it accepts: top_k,
    min_p and repetition_penalty are for local and vLLM-style servers; use max_completion_tokens
    rather than max_tokens for OpenAI's reasoning models."""

    model_config = ConfigDict(extra="forbid")

    temperature: float | None = Field(default=None, ge=0, le=2)
    top_p: float | None = Field(default=None, ge=0, le=1)
    top_k: int | None = Field(default=None, ge=0)
    min_p: float | None = Field(default=None, ge=0, le=1)
    presence_penalty: float | None = Field(default=None, ge=-2, le=2)
    frequency_penalty: float | None = Field(default=None, ge=-2, le=2)
    repetition_penalty: float | None = Field(default=None, gt=0, le=10)
    max_tokens: int | None = Field(default=None, ge=1)
    max_completion_tokens: int | None = Field(default=None, ge=1)

    @field_validator("*", mode="before")
    @classmethod
    def _not_a_bool(cls, value: Any) -> Any:
        if isinstance(value, bool):  # YAML `yes`/`true` would otherwise pass as 1
            raise ValueError("must be a number, not a boolean")
        return value

    @model_validator(mode="after")
    def _one_output_cap(self) -> RequestDefaults:
        if self.max_tokens is not None and self.max_completion_tokens is not None:
            raise ValueError("set max_tokens or max_completion_tokens, not both")
        return self


# A request that caps its output under either name keeps its cap: no default cap is added beside it.
_OUTPUT_CAPS = ("max_tokens", "max_completion_tokens")


class Deployment(BaseModel):
    """One upstream model behind a client-visible name; several may share a name (load-balanced)."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1)
    provider: ProviderName = "openai_compatible"
    model: str = Field(min_length=1)
    api_base: str | None = None
    # Kept as a plain string so adapters can use it; it is never logged or returned (see __repr__).
    api_key: str | None = Field(default=None, repr=False)
    api_version: str | None = None
    tier: Tier = "medium"
    # The provider's defaults unless the entry lists them (`capabilities: []`: none, e.g. a
    # self-hosted model without tool calling behind openai_compatible).
    capabilities: frozenset[Capability] = ALL_CAPABILITIES
    price: Price | None = None
    rpm: int | None = Field(default=None, ge=1)
    tpm: int | None = Field(default=None, ge=1)
    timeout: float = Field(default=600.0, gt=0)
    connect_timeout: float = Field(default=5.0, gt=0)
    headers: dict[str, str] = Field(default_factory=dict)
    # Adapter-specific options passed through untouched (litellm params, local engine knobs...).
    options: dict[str, Any] = Field(default_factory=dict)
    defaults: RequestDefaults = Field(default_factory=RequestDefaults)
    # Filled by the config loader: unique among deployments, used in headers, records and cooldowns.
    id: str = ""

    @model_validator(mode="before")
    @classmethod
    def _provider_capabilities(cls, data: Any) -> Any:
        if isinstance(data, dict) and "capabilities" not in data:
            provider = data.get("provider", "openai_compatible")
            # A provider that is not a known name fails its own validation; any set does here.
            known = isinstance(provider, str) and provider in PROVIDER_CAPABILITIES
            return {**data, "capabilities": PROVIDER_CAPABILITIES[provider] if known else ALL_CAPABILITIES}
        return data

    # `defaults` as the fields to add, built once rather than per request.
    _added: dict[str, Any] = PrivateAttr(default_factory=dict)

    def model_post_init(self, context: Any, /) -> None:
        self._added = self.defaults.model_dump(exclude_none=True)

    def upstream_body(self, body: dict[str, Any]) -> dict[str, Any]:
        """A chat, completion or messages `body` as this deployment receives it: its own model id,
        and its `defaults` for the fields the request leaves out (or sends as null)."""
        upstream = {**body, "model": self.model}
        for name, value in self._added.items():
            if upstream.get(name) is not None:
                continue
            if name in _OUTPUT_CAPS and any(upstream.get(cap) is not None for cap in _OUTPUT_CAPS):
                continue
            upstream[name] = value
        return upstream
