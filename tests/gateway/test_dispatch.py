"""The dispatch policy on stand-in adapters (the HTTP behaviour is covered end to end in tests/e2e)."""

from collections.abc import AsyncIterator

import pytest

from gateway.dispatch import Dispatcher, Skip
from gateway.settings import Settings
from providers.base import Chunk, UpstreamCall, UpstreamError, UpstreamResponse, http_error
from providers.deployment import Deployment
from routing.capabilities import needs_of


class Scripted:
    """Answers from a script of outcomes: an exception to raise, or a string to return."""

    native_text = True

    def __init__(self, deployment: Deployment, script: list[object]) -> None:
        self.deployment = deployment
        self.script = script
        self.calls = 0

    async def complete(self, call: UpstreamCall) -> UpstreamResponse:
        step = self.script[min(self.calls, len(self.script) - 1)]
        self.calls += 1
        if isinstance(step, Exception):
            raise step
        return UpstreamResponse.from_data({"answer": step})

    async def stream(self, call: UpstreamCall) -> AsyncIterator[Chunk]:
        raise NotImplementedError
        yield  # pragma: no cover

    async def embed(self, call: UpstreamCall) -> UpstreamResponse:
        return await self.complete(call)

    async def aclose(self) -> None:
        return None


def make(specs: list[tuple[str, list[object]]], **settings: object) -> tuple[Dispatcher, list[Scripted]]:
    deps = []
    for i, (name, _) in enumerate(specs):
        deps.append(Deployment(name=name, model=f"m{i}", id=f"{name}#{i}"))
    providers = [Scripted(d, script) for d, (_, script) in zip(deps, specs, strict=True)]
    s = Settings(_env_file=None, retry_backoff_s=0.0, **settings)
    return Dispatcher({p.deployment.id: p for p in providers}, deps, s), providers


async def call(provider: Scripted) -> UpstreamResponse:
    return await provider.complete(UpstreamCall({}))


async def test_retry_then_success() -> None:
    d, (p,) = make([("a", [http_error(500, "boom"), "ok"])])
    served = await d.run(["a"], call)
    assert served.result.data == {"answer": "ok"} and served.attempts == 2 and p.calls == 2
    assert served.fallbacks == 0  # a retry at the same deployment is not a fallback


async def test_client_error_is_not_retried() -> None:
    d, (p,) = make([("a", [http_error(400, "bad"), "ok"])])
    with pytest.raises(UpstreamError) as err:
        await d.run(["a"], call)
    assert err.value.status == 400 and p.calls == 1


async def test_falls_back_to_same_name_then_next_candidate() -> None:
    down = UpstreamError(502, "refused", retryable=True)
    d, (a1, a2, b) = make([("a", [down]), ("a", [down]), ("b", ["from b"])], retries=1)
    served = await d.run(["a", "b"], call)
    assert served.result.data == {"answer": "from b"}
    assert served.deployment.name == "b" and served.fallbacks == 2
    assert a1.calls == 2 and a2.calls == 2 and b.calls == 1


async def test_auth_error_moves_on_without_retry() -> None:
    d, (a, _b) = make([("a", [http_error(401, "bad key")]), ("b", ["ok"])])
    served = await d.run(["a", "b"], call)
    assert served.deployment.name == "b" and a.calls == 1


async def test_cooldown_skips_failing_deployment() -> None:
    down = UpstreamError(502, "refused", retryable=True)
    d, (a, _b) = make([("a", [down]), ("b", ["ok"])], retries=0, cooldown_failures=2, cooldown_s=60)
    for _ in range(2):
        await d.run(["a", "b"], call)
    assert a.calls == 2
    await d.run(["a", "b"], call)
    assert a.calls == 2, "a cooled-down deployment is skipped while a healthy one exists"


async def test_all_failing_raises_last_error() -> None:
    d, _ = make([("a", [http_error(429, "slow down", retry_after=0)])], retries=1)
    with pytest.raises(UpstreamError) as err:
        await d.run(["a"], call)
    assert err.value.status == 429


async def test_round_robin_between_same_name() -> None:
    d, (_a1, _a2) = make([("a", ["1"]), ("a", ["2"])])
    answers = [(await d.run(["a"], call)).result.data["answer"] for _ in range(4)]
    assert sorted(answers) == ["1", "1", "2", "2"]


async def test_deployments_lacking_a_needed_capability_are_passed_over() -> None:
    down = UpstreamError(502, "refused", retryable=True)
    plain = Deployment(name="a", model="plain", id="a#1", capabilities=[])
    full = Deployment(name="a", model="full", id="a#2")
    providers = [Scripted(plain, ["plain"]), Scripted(full, [down, down, "full"])]
    s = Settings(_env_file=None, retry_backoff_s=0.0, retries=0, cooldown_failures=1, cooldown_s=60)
    d = Dispatcher({p.deployment.id: p for p in providers}, [plain, full], s)
    tools = needs_of({"tools": [{"type": "function", "function": {"name": "f"}}]})
    with pytest.raises(UpstreamError):
        await d.run(["a"], call, tools)
    assert providers[0].calls == 0
    # `full` is cooling down and `plain` is healthy, but only `full` can serve: it is still tried.
    assert not d.healthy(full)
    with pytest.raises(UpstreamError):
        await d.run(["a"], call, tools)
    assert (await d.run(["a"], call, tools)).deployment is full
    assert providers[0].calls == 0 and providers[1].calls == 3
    assert (await d.run(["a"], call)).deployment is plain


async def test_a_skipped_deployment_is_passed_over_without_counting_against_it() -> None:
    d, (a, _b) = make([("a", ["from a"]), ("b", ["from b"])], cooldown_failures=1)
    refusal = ValueError("too dear")

    async def skip_a(provider: Scripted) -> UpstreamResponse:
        if provider.deployment.name == "a":
            raise Skip(refusal)
        return await call(provider)

    served = await d.run(["a", "b"], skip_a)
    assert served.deployment.name == "b" and (served.attempts, served.fallbacks) == (1, 0)
    assert a.calls == 0 and d.healthy(a.deployment), "no retry, no cooldown"
    with pytest.raises(ValueError) as err:
        await d.run(["a"], skip_a)
    assert err.value is refusal
    # The last thing to go wrong is what the caller gets: a failure after a skip, a skip after one.
    down = UpstreamError(503, "down", retryable=True)
    d, _ = make([("a", ["from a"]), ("b", [down])], retries=0)
    with pytest.raises(UpstreamError):
        await d.run(["a", "b"], skip_a)
    with pytest.raises(ValueError):
        await d.run(["b", "a"], skip_a)


async def test_deployments_the_caller_rules_out_are_passed_over() -> None:
    down = UpstreamError(502, "refused", retryable=True)
    d, (a1, a2) = make([("a", ["a1"]), ("a", [down, "a2"])], retries=0, cooldown_failures=1, cooldown_s=60)

    def only_a2(dep: Deployment) -> bool:
        return dep is a2.deployment

    with pytest.raises(UpstreamError):
        await d.run(["a"], call, (), only_a2)
    # a2 cools down; a1 is healthy but ruled out, so a2 is still the one tried.
    assert (await d.run(["a"], call, (), only_a2)).deployment is a2.deployment
    assert a1.calls == 0
