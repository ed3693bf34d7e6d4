"""`switchyard route score`: replay requests through the router offline (no network I/O).

Input: one JSON object a line, `{"id": ..., "messages": [...]}` (optionally `"model"`, and any other
chat-completions fields such as `max_tokens` or `tools`). Output: one a line,
`{"id", "difficulty", "tier", "model", "estimated_cost_usd"}`.

With `--config`, candidates come from the gateway config: the route named by the request's
`"model"` when it is a route, else the route `auto`, else the first route. Without it, a built-in
ladder (smollm2 local, gpt-4o-mini small, gpt-4o large) priced from litellm's bundled price map,
with `strong_fraction` 0.3: the hardest 30% (by the training prompts' difficulty) go to gpt-4o.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import IO, Any

import orjson

from gateway.pricing import load_price_map, price_for
from providers.deployment import Deployment
from routing.policy import Candidate, Router, RouteSpec

BUILTIN_STRONG_FRACTION = 0.3
BUILTIN_LADDER = (
    ("smollm2", "local", "smollm2-135m-instruct"),
    ("gpt-4o-mini", "small", "gpt-4o-mini"),
    ("gpt-4o", "large", "gpt-4o"),
)


class ScoreInputError(ValueError):
    """A request line or a config that cannot be scored; the message says which and why."""


def _candidate(dep: Deployment, price_map: dict[str, Any]) -> Candidate:
    price = price_for(dep, price_map)
    if price is None:
        return Candidate(dep.name, dep.tier)
    return Candidate(dep.name, dep.tier, float(price.input) * 1e6, float(price.output) * 1e6)


class RouteTable:
    """Route name -> (spec, candidates), resolved once before scoring."""

    def __init__(self, routes: Mapping[str, tuple[RouteSpec, list[Candidate]]]) -> None:
        if not routes:
            raise ScoreInputError("the config defines no routes to score against")
        self.routes = dict(routes)
        self.default = "auto" if "auto" in self.routes else next(iter(self.routes))

    def for_request(self, request: Mapping[str, Any]) -> tuple[RouteSpec, list[Candidate]]:
        model = request.get("model")
        return self.routes[model if isinstance(model, str) and model in self.routes else self.default]

    @classmethod
    def builtin(cls) -> RouteTable:
        price_map = load_price_map()
        deps = [
            Deployment(name=n, tier=t, model=m, provider="local" if t == "local" else "openai")
            for n, t, m in BUILTIN_LADDER
        ]
        return cls(
            {
                "auto": (
                    RouteSpec(name="auto", strong_fraction=BUILTIN_STRONG_FRACTION),
                    [_candidate(d, price_map) for d in deps],
                )
            }
        )

    @classmethod
    def from_config(cls, path: Path, env: Mapping[str, str]) -> RouteTable:
        from gateway.config import load_config

        config = load_config(path, env)
        price_map = load_price_map()
        first_by_name: dict[str, Deployment] = {}
        for dep in config.models:
            first_by_name.setdefault(dep.name, dep)
        routes = {
            name: (
                RouteSpec(name=name, quality=route.quality, strong_fraction=route.strong_fraction),
                [_candidate(first_by_name[c], price_map) for c in route.candidates],
            )
            for name, route in config.routes.items()
        }
        return cls(routes)


def score_requests(router: Router, table: RouteTable, lines: Iterator[str]) -> Iterator[dict[str, Any]]:
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            request = orjson.loads(line)
        except orjson.JSONDecodeError as exc:
            raise ScoreInputError(f"line {number}: invalid JSON: {exc}") from None
        if not isinstance(request, dict) or not isinstance(request.get("messages"), list):
            raise ScoreInputError(f"line {number}: expected an object with a `messages` list")
        spec, candidates = table.for_request(request)
        decision = router.decide(request, spec, candidates)
        cost = decision.estimated_cost_usd
        yield {
            "id": request.get("id"),
            "difficulty": round(decision.difficulty, 4),
            "tier": decision.chosen.tier,
            "model": decision.chosen.name,
            "estimated_cost_usd": None if cost is None else round(cost, 8),
        }


def run_score(
    input_path: Path,
    output: IO[bytes],
    config: Path | None,
    artifact: Path | None,
    env: Mapping[str, str],
) -> int:
    router = Router.load(artifact)
    table = RouteTable.from_config(config, env) if config else RouteTable.builtin()
    count = 0
    with input_path.open(encoding="utf-8") as handle:
        for record in score_requests(router, table, iter(handle)):
            output.write(orjson.dumps(record) + b"\n")
            count += 1
    return count
