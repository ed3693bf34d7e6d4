"""Policy decisions on a hand-made artifact (difficulty = prompt length, see conftest)."""

from __future__ import annotations

import pytest

from providers.deployment import Deployment, Price
from routing.artifact import RouterArtifact
from routing.capabilities import Unroutable
from routing.features import extract
from routing.policy import Candidate, RouteContext, Router, RouteSpec

LOCAL = Candidate("smollm2", "local", 0.0, 0.0)
SMALL = Candidate("mini", "small", 0.15, 0.6)
SMALL_PRICEY = Candidate("mini-b", "small", 0.3, 1.2)
MEDIUM = Candidate("mid", "medium", 1.0, 4.0)
LARGE = Candidate("big", "large", 2.5, 10.0)
LADDER = [LARGE, SMALL, LOCAL]  # deliberately unordered: the policy sorts by tier

SHORT = {"messages": [{"role": "user", "content": "hi"}]}
MEDIUM_PROMPT = {"messages": [{"role": "user", "content": "word " * 19}]}
LONG = {"messages": [{"role": "user", "content": "word " * 1000}]}


@pytest.fixture
def router(artifact: RouterArtifact) -> Router:
    return Router(artifact)


def test_quality_knob_picks_cheapest_candidate_that_meets_it(router: Router) -> None:
    route = RouteSpec(quality=0.9)
    assert router.decide(SHORT, route, LADDER).chosen is LOCAL
    assert router.decide(LONG, route, LADDER).chosen is LARGE
    assert router.decide(MEDIUM_PROMPT, route, LADDER).chosen is LARGE
    assert router.decide(MEDIUM_PROMPT, RouteSpec(quality=0.8), LADDER).chosen is SMALL
    assert router.decide(LONG, RouteSpec(quality=0.0), LADDER).chosen is LOCAL
    assert router.decide(SHORT, RouteSpec(quality=1.0), LADDER).chosen is LARGE


def test_difficulty_and_success_are_reported(router: Router) -> None:
    easy, hard = router.decide(SHORT, RouteSpec(), LADDER), router.decide(LONG, RouteSpec(), LADDER)
    assert 0.0 <= easy.difficulty < hard.difficulty <= 1.0
    assert easy.success["local"] < easy.success["small"] < easy.success["large"]
    assert hard.success["large"] > hard.success["small"]


def test_strong_fraction_threshold_is_the_training_percentile(router: Router) -> None:
    route = RouteSpec(strong_fraction=0.3)
    hard = router.decide(LONG, route, LADDER)
    assert hard.chosen is LARGE and hard.reason == "strong_fraction" and hard.mode == "strong_fraction"
    # difficulty of the medium prompt is about 0.34: above a 0.7 fraction's bar, below a 0.3 one's
    assert router.decide(MEDIUM_PROMPT, route, LADDER).chosen is not LARGE
    assert router.decide(MEDIUM_PROMPT, RouteSpec(strong_fraction=0.7), LADDER).chosen is LARGE
    assert router.decide(SHORT, route, LADDER).chosen is LOCAL


def test_strong_fraction_calibration_matches_share_of_reference_prompts(router: Router) -> None:
    # Scores spread evenly over the artifact's quantile range: a 25% fraction sends ~25% strong.
    model = router.model
    scores = [model.score_at(i / 200) for i in range(201)]
    strong = sum(model.difficulty(s) >= 1.0 - 0.25 for s in scores)
    assert strong / len(scores) == pytest.approx(0.25, abs=0.01)


def test_team_overrides_win_over_the_route(router: Router) -> None:
    route = RouteSpec(quality=0.9)
    assert router.decide(MEDIUM_PROMPT, route, LADDER, RouteContext(quality=0.8)).chosen is SMALL
    assert router.decide(LONG, route, LADDER, RouteContext(max_tier="small")).chosen is SMALL
    assert router.decide(LONG, route, LADDER, RouteContext(strong_fraction=0.0)).chosen is not LARGE


def test_pins_tools_header_and_unsatisfiable(router: Router) -> None:
    ladder = [LOCAL, SMALL, MEDIUM, LARGE]
    tools = {**SHORT, "tools": [{"type": "function", "function": {"name": "f"}}]}
    d = router.decide(tools, RouteSpec(), ladder)
    assert d.chosen is MEDIUM and "tools>=medium" in d.pins
    d = router.decide(SHORT, RouteSpec(), ladder, RouteContext(min_tier="large"))
    assert d.chosen is LARGE and "header>=large" in d.pins
    assert router.decide(tools, RouteSpec(tools_min_tier=None), ladder).chosen is LOCAL
    # The tools pin is the admin's preference: with no candidate at it, the strongest one serves.
    d = router.decide(tools, RouteSpec(), [LOCAL, SMALL])
    assert d.chosen is SMALL and d.pins == ("tools>=medium", "tools_unmet")


def test_tier_pins_no_candidate_meets_are_refused_not_downgraded(router: Router) -> None:
    with pytest.raises(Unroutable) as header:
        router.decide(SHORT, RouteSpec(), [LOCAL, SMALL], RouteContext(min_tier="large"))
    assert header.value.param == "x-switchyard-min-tier"
    assert header.value.message == (
        "no candidate of `auto` meets x-switchyard-min-tier large: it offers smollm2 (local), mini (small)"
    )
    with pytest.raises(Unroutable, match="the team's min_tier medium") as team:
        router.decide(SHORT, RouteSpec(), [LOCAL, SMALL], RouteContext(team_min_tier="medium"))
    assert team.value.param is None
    with pytest.raises(Unroutable, match="the team's max_tier small"):
        router.decide(SHORT, RouteSpec(), [MEDIUM, LARGE], RouteContext(max_tier="small"))
    # The header and the team's cap contradict each other: nothing is in between.
    with pytest.raises(Unroutable, match="x-switchyard-min-tier large and the team's max_tier small"):
        router.decide(SHORT, RouteSpec(), LADDER, RouteContext(min_tier="large", max_tier="small"))
    d = router.decide(SHORT, RouteSpec(), LADDER, RouteContext(team_min_tier="small", max_tier="small"))
    assert d.candidates == (SMALL,) and d.pins == ("team>=small", "team<=small")


def test_budget_pressure_leans_cheaper(router: Router) -> None:
    route = RouteSpec(quality=0.9)
    calm = router.decide(MEDIUM_PROMPT, route, LADDER, RouteContext(budget_pressure=0.4))
    tight = router.decide(MEDIUM_PROMPT, route, LADDER, RouteContext(budget_pressure=1.0))
    assert calm.chosen is LARGE and calm.target == pytest.approx(0.9)
    assert tight.chosen is SMALL and tight.target == pytest.approx(0.63)
    assert "+budget" in tight.reason and "budget=1.00" in tight.explain()
    sf = router.decide(
        MEDIUM_PROMPT, RouteSpec(strong_fraction=0.7), LADDER, RouteContext(budget_pressure=1.0)
    )
    assert sf.target == pytest.approx(0.49) and sf.chosen is not LARGE


def test_fallback_ladder_goes_up_from_the_choice(router: Router) -> None:
    ladder = [LARGE, MEDIUM, SMALL_PRICEY, SMALL, LOCAL]
    d = router.decide(MEDIUM_PROMPT, RouteSpec(quality=0.8), ladder)
    assert [c.name for c in d.candidates] == ["mini", "mini-b", "mid", "big"]
    top = router.decide(LONG, RouteSpec(), ladder)
    assert top.candidates == (LARGE,)


def test_explain_is_one_ascii_header_line(router: Router) -> None:
    d = router.decide(
        MEDIUM_PROMPT, RouteSpec(quality=0.8), [LOCAL, SMALL, Candidate("wéird name\n", "large", 1.0, 1.0)]
    )
    header = d.explain()
    assert header.isascii() and "\n" not in header and len(header) < 400
    for part in (
        "tier=small",
        "model=mini",
        "difficulty=",
        "p=local:",
        "q=0.80",
        "reason=quality",
        "fallback=w_ird_name_",
        "est_usd=",
    ):
        assert part in header


def test_cost_estimate_uses_prior_and_max_tokens(router: Router) -> None:
    d = router.decide(SHORT, RouteSpec(quality=1.0), [LARGE])
    prompt_tokens = router.predict(SHORT)[1].prompt_tokens
    assert d.estimated_cost_usd == pytest.approx((prompt_tokens * 2.5 + 199 * 10.0) / 1e6)
    capped = router.decide({**SHORT, "max_tokens": 10}, RouteSpec(quality=1.0), [LARGE])
    assert capped.estimated_cost_usd == pytest.approx((prompt_tokens * 2.5 + 10 * 10.0) / 1e6)


def test_candidate_from_deployment() -> None:
    price = Price(input_per_mtok=2.5, output_per_mtok=10)
    dep = Deployment(name="gpt-4o", model="gpt-4o", tier="large", price=price)
    assert Candidate.from_deployment(dep) == Candidate("gpt-4o", "large", 2.5, 10.0)
    local = Deployment(name="x", model="x", tier="local", provider="local")
    assert Candidate.from_deployment(local).input_per_mtok == 0.0
    assert Candidate.from_deployment(local).capabilities == {"logprobs"}
    assert Candidate.from_deployment(Deployment(name="y", model="y", tier="small")).input_per_mtok is None


def test_unknown_price_is_reported_unknown_and_sorted_last_in_its_tier(router: Router) -> None:
    unpriced = Candidate("mystery", "small")
    d = router.decide(MEDIUM_PROMPT, RouteSpec(quality=0.8), [unpriced, SMALL, LARGE])
    assert [c.name for c in d.candidates] == ["mini", "mystery", "big"]
    alone = router.decide(MEDIUM_PROMPT, RouteSpec(quality=0.8), [unpriced])
    assert alone.estimated_cost_usd is None and "est_usd=unknown" in alone.explain()


def test_no_candidates_is_an_error(router: Router) -> None:
    with pytest.raises(ValueError, match="no candidates"):
        router.decide(SHORT, RouteSpec(), [])


def test_decide_at_a_recorded_difficulty_is_the_choice_decide_made(router: Router) -> None:
    """A logged request replayed by its difficulty and prompt length (the config preview) gets the
    candidate its body got, under either knob and with two candidates in one tier priced apart."""
    ladder = [LARGE, SMALL_PRICEY, SMALL, MEDIUM, LOCAL]
    specs = [RouteSpec(quality=q) for q in (0.0, 0.5, 0.8, 0.9, 0.97, 1.0)]
    specs += [RouteSpec(strong_fraction=f) for f in (0.0, 0.1, 0.3, 0.7, 1.0)]
    checked = 0
    for words in (2, 5, 10, 19, 30, 60, 120, 250, 500, 900):
        body = {"messages": [{"role": "user", "content": "word " * words}]}
        for spec in specs:
            made = router.decide(body, spec, ladder)
            assert 0.0 < made.difficulty < 1.0  # within the artifact's score range
            replayed = router.decide_at(made.difficulty, extract(body).prompt_tokens, spec, ladder)
            assert replayed.chosen is made.chosen and replayed.reason == made.reason
            assert replayed.candidates == made.candidates and replayed.costs == made.costs
            checked += 1
    assert checked == 110
    with pytest.raises(ValueError, match="no candidates"):
        router.decide_at(0.5, 10, RouteSpec(), [])


def test_prediction_at_a_saturated_difficulty_takes_the_end_of_the_range(router: Router) -> None:
    model = router.model
    assert model.at(1.0).score == pytest.approx(4.0) and model.at(0.0).score == pytest.approx(-2.0)
    assert model.at(0.25).success == model.success(model.score_at(0.25))
    assert model.at(1.5).difficulty == 1.5 and model.at(1.5).score == pytest.approx(4.0)
