"""The seam where `routing/` decides: which candidates a routed name tries, in which order, and why."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from gateway.config import Route


@dataclass(slots=True)
class RoutePlan:
    names: list[str]
    explain: str
    difficulty: float | None = None


class RoutePlanner(Protocol):
    def plan(self, name: str, route: Route, body: dict[str, Any], headers: dict[str, str]) -> RoutePlan: ...


class InOrderPlanner:
    """Candidates as configured; the dispatcher skips cooled-down ones, so the first healthy one serves."""

    def plan(self, name: str, route: Route, body: dict[str, Any], headers: dict[str, str]) -> RoutePlan:
        return RoutePlan(list(route.candidates), f"route={name}; policy=first-healthy")
