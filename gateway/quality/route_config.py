"""A route's `shadow:` setting (read by gateway.config, acted on by gateway.quality.shadow)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from routing.overrides import Fraction


class Shadow(BaseModel):
    """Shadow judging of a route (gateway.quality.shadow): this share of its requests answered by a
    cheaper tier are also asked of the strongest candidate, and `judge` compares the two answers."""

    model_config = ConfigDict(extra="forbid")

    rate: Fraction
    # A model name of the config: the deployment that judges.
    judge: str = Field(min_length=1)
    against: Literal["strongest"] = "strongest"
