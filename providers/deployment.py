"""What one upstream deployment is: the config entry every adapter is built from."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

ProviderName = Literal["openai", "openai_compatible", "azure", "anthropic", "gemini", "litellm", "local"]
Tier = Literal["local", "small", "medium", "large"]
TIER_RANK: dict[str, int] = {"local": 0, "small": 1, "medium": 2, "large": 3}


class Price(BaseModel):
    model_config = ConfigDict(extra="forbid")

    input_per_mtok: float = Field(ge=0)
    output_per_mtok: float = Field(ge=0)
    cached_input_per_mtok: float | None = Field(default=None, ge=0)


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
    price: Price | None = None
    rpm: int | None = Field(default=None, ge=1)
    tpm: int | None = Field(default=None, ge=1)
    timeout: float = Field(default=600.0, gt=0)
    connect_timeout: float = Field(default=5.0, gt=0)
    headers: dict[str, str] = Field(default_factory=dict)
    # Adapter-specific options passed through untouched (litellm params, local engine knobs...).
    options: dict[str, Any] = Field(default_factory=dict)
    # Filled by the config loader: unique among deployments, used in headers, records and cooldowns.
    id: str = ""
