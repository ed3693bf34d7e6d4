"""Request and response bodies of the admin API (they are its OpenAPI document), shared with the CLI.

Money is exact: requests take a JSON number or string (at most 10 decimal places) and responses send a
string in plain notation, so no float ever touches a budget. Request bodies forbid unknown fields: a
mistyped `"budget": 10` is a 400, not a silently ignored limit. A team's `routing` is
`routing.overrides.TeamRouting`, checked the same way.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Annotated, Any, ClassVar, Literal

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    PlainSerializer,
    StringConstraints,
    model_validator,
)

from gateway.accounting.queries import format_usd
from gateway.quality.capture import DEFAULT_RETENTION_DAYS
from routing.overrides import TeamRouting

BudgetPeriod = Literal["daily", "weekly", "monthly", "total"]

# On SQLite money is an int64 count of 1e-10 USD, so ~$922M is the ceiling; $100M is far past any budget.
MoneyIn = Annotated[Decimal, Field(ge=0, le=Decimal(100_000_000), max_digits=20, decimal_places=10)]
MoneyOut = Annotated[Decimal, PlainSerializer(format_usd, return_type=str, when_used="json")]
# Integer columns: 32-bit on PostgreSQL.
PerMinute = Annotated[int, Field(gt=0, le=2**31 - 1)]
RetentionDays = Annotated[int, Field(ge=1, le=3650)]


def no_nul(value: Any) -> Any:
    """PostgreSQL text and jsonb cannot hold NUL: refused here (400) rather than by the driver (500)."""
    if isinstance(value, str) and "\x00" in value:
        raise ValueError("must not contain NUL characters")
    if isinstance(value, dict):
        for k, v in value.items():
            no_nul(k)
            no_nul(v)
    elif isinstance(value, list):
        for v in value:
            no_nul(v)
    return value


Name = Annotated[
    str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200), AfterValidator(no_nul)
]


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid")


class _Patch(_Request):
    """PATCH bodies: an absent field is left alone, an explicit null clears it."""

    not_nullable: ClassVar[tuple[str, ...]] = ()

    @model_validator(mode="after")
    def _required_stay_set(self) -> Any:
        for name in self.not_nullable:
            if name in self.model_fields_set and getattr(self, name) is None:
                raise ValueError(f"{name} cannot be null")
        return self

    def changes(self) -> dict[str, Any]:
        values = {name: getattr(self, name) for name in self.model_fields_set}
        return {k: v.model_dump() if isinstance(v, BaseModel) else v for k, v in values.items()}


class TeamCreate(_Request):
    name: Name
    budget_usd: MoneyIn | None = Field(None, description="Spend cap per budget_period (USD)")
    budget_period: BudgetPeriod | None = Field(
        None, description="daily | weekly | monthly | total; a budget without one is a total budget"
    )
    rpm: PerMinute | None = Field(None, description="Requests per minute, all the team's keys together")
    tpm: PerMinute | None = Field(None, description="Tokens per minute, all the team's keys together")
    routing: TeamRouting | None = Field(None, description="Routing overrides for this team's requests")
    capture_prompts: bool = Field(
        False, description="Keep this team's prompts and answers (retraining the router on them)"
    )
    capture_retention_days: RetentionDays | None = Field(
        None, description=f"Days captured prompts are kept (default {DEFAULT_RETENTION_DAYS})"
    )
    shadow_budget_usd: MoneyIn | None = Field(
        None, description="Monthly cap on shadow and judge calls (USD); unset: no cap"
    )


class TeamUpdate(_Patch):
    not_nullable = ("name", "capture_prompts")

    name: Name | None = None
    budget_usd: MoneyIn | None = None
    budget_period: BudgetPeriod | None = None
    rpm: PerMinute | None = None
    tpm: PerMinute | None = None
    routing: TeamRouting | None = None
    capture_prompts: bool | None = None
    capture_retention_days: RetentionDays | None = None
    shadow_budget_usd: MoneyIn | None = None


class TeamOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str
    name: str
    budget_usd: MoneyOut | None
    budget_period: BudgetPeriod | None
    rpm: int | None
    tpm: int | None
    routing: dict[str, Any] | None = Field(
        description="The team's routing overrides as stored (written as TeamRouting)"
    )
    capture_prompts: bool = False
    capture_retention_days: int | None = None
    shadow_budget_usd: MoneyOut | None = None
    created_at: datetime
    updated_at: datetime
    deleted_at: datetime | None = None


class TeamPage(BaseModel):
    data: list[TeamOut]
    next_cursor: str | None = Field(description="Pass as `cursor` for the next page; null on the last")


class KeyCreate(_Request):
    team_id: Annotated[str, Field(min_length=1, max_length=32), AfterValidator(no_nul)]
    name: Name | None = None
    rpm: PerMinute | None = None
    tpm: PerMinute | None = None
    budget_usd: MoneyIn | None = None
    budget_period: BudgetPeriod | None = None
    expires_at: AwareDatetime | None = Field(None, description="ISO 8601 with a UTC offset")


class KeyUpdate(_Patch):
    name: Name | None = None
    rpm: PerMinute | None = None
    tpm: PerMinute | None = None
    budget_usd: MoneyIn | None = None
    budget_period: BudgetPeriod | None = None
    expires_at: AwareDatetime | None = None


class KeyOut(BaseModel):
    """A key as stored: its display prefix, never the key or its hash."""

    model_config = ConfigDict(from_attributes=True)

    id: str
    team_id: str
    name: str | None
    prefix: str = Field(description="The key's first characters, to recognise it by")
    rpm: int | None
    tpm: int | None
    budget_usd: MoneyOut | None
    budget_period: BudgetPeriod | None
    expires_at: datetime | None
    revoked: bool
    revoked_at: datetime | None
    created_at: datetime
    updated_at: datetime
    last_used_at: datetime | None


class KeyCreated(KeyOut):
    key: str = Field(description="The key itself: shown in this response only, never again")


class KeyPage(BaseModel):
    data: list[KeyOut]
    next_cursor: str | None = Field(description="Pass as `cursor` for the next page; null on the last")


class SpendRow(BaseModel):
    """One group's totals; exactly one of day/model/key/tier/team is present (the group_by)."""

    day: str | None = Field(None, description="UTC day, YYYY-MM-DD (group_by=day)")
    model: str | None = Field(None, description="Deployment that answered, else the model asked for")
    key: str | None = Field(None, description="API key id (group_by=key); null: no key")
    tier: str | None = None
    team: str | None = Field(None, description="Team id (group_by=team); null: no team")
    requests: int
    prompt_tokens: int
    completion_tokens: int
    cached_tokens: int = Field(description="Prompt tokens read from a prompt cache")
    cache_write_tokens: int = Field(description="Prompt tokens written to a prompt cache (both lifetimes)")
    errors: int
    cost_usd: str = Field(description="Exact decimal USD", examples=["0.0123"])


class SpendPage(BaseModel):
    rows: list[SpendRow]
    next_cursor: str | None = Field(description="Pass as `cursor` for the next page; null on the last")
