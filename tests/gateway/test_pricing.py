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


def test_anthropic_cache_prices_default_to_its_multiples_of_the_input() -> None:
    dep = Deployment(
        name="c", provider="anthropic", model="m", price=Price(input_per_mtok=3, output_per_mtok=15)
    )
    price = price_for(dep, {})
    assert price is not None
    usage = Usage(1000, 100, cached_tokens=500, cache_write_5m_tokens=200, cache_write_1h_tokens=100)
    # 200 fresh x 3 + 500 reads x 0.3 + 200 x 3.75 + 100 x 6 + 100 out x 15, per Mtok.
    assert price.cost(usage) == Decimal("0.0036")


def test_configured_cache_prices_win() -> None:
    price = price_for(
        Deployment(
            name="c",
            provider="anthropic",
            model="m",
            price=Price(
                input_per_mtok=1,
                output_per_mtok=1,
                cached_input_per_mtok=0.2,
                cache_write_per_mtok=1.5,
                cache_write_1h_per_mtok=3,
            ),
        ),
        {},
    )
    assert price is not None
    assert price.cost(Usage(10, 0, 1, 2, 3)) == Decimal("0.0000162")  # 4 + 0.2 + 3 + 9, per Mtok


def test_cache_writes_elsewhere_cost_the_input_price() -> None:
    dep = Deployment(name="o", provider="openai", model="m", price=Price(input_per_mtok=2, output_per_mtok=8))
    price = price_for(dep, {})
    assert price is not None
    assert price.cost(Usage(10, 0, cache_write_5m_tokens=4)) == price.cost(Usage(10, 0))


def test_cache_parts_never_exceed_the_prompt() -> None:
    price = price_for(
        Deployment(
            name="c", provider="anthropic", model="m", price=Price(input_per_mtok=1, output_per_mtok=1)
        ),
        {},
    )
    assert price is not None
    # A usage whose parts add up past the prompt is charged for the prompt's tokens only.
    assert price.cost(Usage(10, 0, 8, 8, 8)) == (8 * Decimal("0.1") + 2 * Decimal("1.25")) / 1_000_000


def test_litellm_map_cache_prices() -> None:
    prices = load_price_map()
    price = price_for(Deployment(name="s", provider="anthropic", model="claude-sonnet-4-5"), prices)
    assert price is not None
    assert (price.cached_input, price.cache_write_5m, price.cache_write_1h) == (
        Decimal("3E-7"),
        Decimal("0.00000375"),
        Decimal("0.000006"),
    )


def test_usage_reads_cache_writes_by_lifetime() -> None:
    usage = Usage.from_openai(
        {
            "prompt_tokens": 100,
            "completion_tokens": 5,
            "prompt_tokens_details": {"cached_tokens": 40},
            "cache_creation_input_tokens": 30,
            "cache_creation": {"ephemeral_5m_input_tokens": 10, "ephemeral_1h_input_tokens": 20},
        }
    )
    assert usage == Usage(100, 5, 40, 10, 20)
    assert (
        Usage.from_openai({"prompt_tokens": 1, "completion_tokens": 1, "cache_creation_input_tokens": -1})
        is None
    )
