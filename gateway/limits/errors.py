"""A denied admission as the client sees it: OpenAI's error object, status and headers."""

from __future__ import annotations

import math
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from gateway.limits.model import Admission

_KINDS = {"key": "key", "team": "team", "dep": "deployment"}
_DIMENSION = {"rpm": "requests per min (RPM)", "tpm": "tokens per min (TPM)"}


@dataclass(frozen=True, slots=True)
class Denial:
    status: int
    type: str
    code: str
    message: str
    headers: dict[str, str]

    def body(self) -> dict[str, Any]:
        return {"error": {"message": self.message, "type": self.type, "param": None, "code": self.code}}


def describe_subject(subject: str | None) -> str:
    """`team:abc` -> `team abc`; the id is the record's id, never the secret key."""
    if not subject:
        return "this gateway"
    kind, _, ident = subject.partition(":")
    return f"{_KINDS.get(kind, kind)} {ident}" if ident else subject


def _usd(value: Decimal | int | None) -> str:
    if value is None:
        return "?"
    d = Decimal(value)
    # Cents when exact, else enough digits that a tiny reservation does not read as $0.00.
    return f"${d:.2f}" if d == d.quantize(Decimal("0.01")) else f"${d.normalize():f}"


def _retry_text(seconds: float) -> str:
    if not math.isfinite(seconds):
        return ""
    return (
        f" Please try again in {seconds:.3g}s."
        if seconds < 60
        else f" Please try again in {seconds / 60:.1f}m."
    )


def denial_error(adm: Admission, least_tokens: int | None = None) -> Denial:
    """The error for an admission that was not allowed; `Denial.headers` already holds the
    x-ratelimit-* and retry-after headers to send with it. `least_tokens`: the request asked for the
    least of its reservation only, the prompt and an answer capped at that many tokens."""
    headers = adm.headers()
    who = describe_subject(adm.subject)
    if adm.reason == "budget":
        limit = adm.limit if isinstance(adm.limit, Decimal) else None
        msg = f"Budget exceeded for {who}: limit {_usd(limit)}, spent or reserved {_usd(adm.used)},"
        over = limit is not None and adm.requested is not None and Decimal(adm.requested) > limit
        if least_tokens is None:
            msg += f" this request may cost up to {_usd(adm.requested)}."
            if over:
                msg += " The request's worst case exceeds the whole budget; lower max_tokens."
        else:
            msg += (
                f" this request needs at least {_usd(adm.requested)} (its prompt and an answer"
                f" of {least_tokens} tokens)."
            )
            if over:
                msg += " That exceeds the whole budget; shorten the prompt."
        return Denial(429, "budget_exceeded", "budget_exceeded", msg, headers)
    if adm.reason in ("rpm", "tpm"):
        msg = (
            f"Rate limit reached for {who} on {_DIMENSION[adm.reason]}: Limit {adm.limit},"
            f" Used {adm.used}, Requested {adm.requested}.{_retry_text(adm.retry_after)}"
        )
        return Denial(429, "rate_limit_error", "rate_limit_exceeded", msg, headers)
    headers.setdefault("retry-after", str(max(1, math.ceil(adm.retry_after))))
    return Denial(
        503,
        "service_unavailable",
        "rate_limiter_unavailable",
        "Rate limiting is unavailable and this gateway is configured to fail closed; retry shortly.",
        headers,
    )
