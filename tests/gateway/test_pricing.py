from decimal import Decimal

from gateway.pricing import format_usd, load_price_map, price_for
from providers.base import Usage
from providers.deployment import Deployment, Price


def test_config_price_is_exact() -> None:
    dep = Deployment(name="a", model="m", price=Price(input_per_mtok=0.15, output_per_mtok=0.6))
    price = price_for(dep, {})
    assert price is not None
    assert price.cost(Usage(1_000_000, 1_000_000)) == Decimal("0.75")
    assert price.cost(Usage(5, 20)) == Decimal("0.00001275")


def test_cached_tokens_billed_at_cached_rate() -> None:
    dep = Deployment(
        name="a", model="m", price=Price(input_per_mtok=2, output_per_mtok=8, cached_input_per_mtok=0.5)
    )
    price = price_for(dep, {})
    assert price is not None
    assert price.cost(Usage(1000, 0, cached_tokens=400)) == Decimal("0.0014")


def test_litellm_price_map_lookup() -> None:
    prices = load_price_map()
    assert prices, "litellm's bundled price map should be readable offline"
    dep = Deployment(name="x", provider="openai", model="gpt-4o-mini")
    price = price_for(dep, prices)
    assert price is not None and price.input == Decimal("1.5E-7")
    gem = price_for(Deployment(name="g", provider="gemini", model="gemini-2.5-flash"), prices)
    assert gem is not None and gem.output > 0


def test_unknown_price_is_none_not_zero() -> None:
    assert price_for(Deployment(name="x", model="no-such-model-anywhere"), {}) is None
    assert format_usd(None) == "unknown"


def test_local_is_free() -> None:
    price = price_for(Deployment(name="s", provider="local", model="smollm2"), {})
    assert price is not None and price.cost(Usage(10, 10)) == 0
