"""PriceCatalog and PricePlan: exact prices, equal to genai-prices' own calc_price."""

from __future__ import annotations

import datetime as dt
import random
import warnings
from decimal import Decimal
from types import SimpleNamespace
from typing import Any

import pytest
from genai_prices import Usage, calc_price
from genai_prices.data_snapshot import get_snapshot

from spansignals.processors.pricing import (
    InvalidUsage,
    PriceCatalog,
    PricePlan,
    TokenUsage,
    compile_route,
    datetime_of_ns,
)

NOW = dt.datetime(2026, 11, 22, 12, 0, tzinfo=dt.timezone.utc)


def _usages(rng: random.Random) -> list[TokenUsage]:
    out = [
        TokenUsage(input=1000, output=50),
        TokenUsage(input=1000, output=50, cache_read=200),
        TokenUsage(input=1000, output=500, cache_read=200, cache_write=300, reasoning=100),
        TokenUsage(input=250_000, output=1000, cache_read=10_000),
        TokenUsage(input=12),
        TokenUsage(input=5000, output=10, cache_read=100, cache_write=3000, cache_write_1h=2000),
        # input and output alone (PricePlan.cost's fast path), below and above long-context tiers
        TokenUsage(input=300_000, output=2000),
        TokenUsage(input=200_001, output=7),
        TokenUsage(output=40),
        TokenUsage(input=0, output=0),
        TokenUsage(input=3000, output=20, cache_read=0, reasoning=0),  # OpenAI, nothing cached
        TokenUsage(input=250_000, output=9, cache_read=0, cache_write=0, reasoning=0, cache_write_1h=0),
    ]
    for _ in range(3):
        out.append(TokenUsage(input=rng.randint(0, 400_000), output=rng.randint(0, 20_000)))
    for _ in range(6):
        inp = rng.randint(0, 400_000)
        cr = rng.randint(0, inp // 2)
        cw = rng.randint(0, inp - cr)
        out_t = rng.randint(0, 20_000)
        out.append(
            TokenUsage(
                input=inp, output=out_t, cache_read=cr, cache_write=cw, reasoning=rng.randint(0, out_t)
            )
        )
    return out


def _calc_price(
    usage: TokenUsage, model_id: str, provider_id: str, at: dt.datetime, context: dict[str, str] | None = None
) -> Decimal:
    """genai-prices' own total for ``usage`` (the reference every plan is checked against)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return calc_price(
            Usage(**usage.as_genai_prices()),
            model_id,
            provider_id=provider_id,
            genai_request_timestamp=at,
            price_context=context,
        ).total_price


def test_plan_equals_genai_prices_for_every_bundled_model() -> None:
    """For every model in the bundled table, the compiled plan gives calc_price's total to the last digit."""
    rng = random.Random(7)
    usages = _usages(rng)
    checked = 0
    catalog = PriceCatalog()
    for provider in get_snapshot().providers:
        for model in provider.models:
            for usage in usages:
                try:
                    expected = _calc_price(usage, model.id, provider.id, NOW)
                except Exception:
                    expected = None
                plan = catalog.plan(provider.id, model.id, NOW)
                if expected is None:
                    if plan is not None:
                        with pytest.raises((ValueError, ArithmeticError)):
                            plan.cost(usage)
                    continue
                assert plan is not None, (provider.id, model.id)
                assert plan.cost(usage) == expected, (provider.id, model.id, usage)
                checked += 1
    assert checked > 1000


def test_cached_tokens_are_counted_once_at_the_cache_price() -> None:
    """input_tokens includes cache reads: 200 of 1000 cached cost 800 at input + 200 at cache price."""
    plan = PricePlan.from_price_keys(
        {"input_mtok": Decimal("2.5"), "output_mtok": Decimal("10"), "cache_read_mtok": Decimal("1.25")}
    )
    cost = plan.cost(TokenUsage(input=1000, output=50, cache_read=200))
    assert cost == Decimal("800") * Decimal("2.5") / 1_000_000 + Decimal("200") * Decimal(
        "1.25"
    ) / 1_000_000 + (Decimal("50") * 10 / 1_000_000)


def test_long_context_tier_applies_to_all_tokens_above_threshold() -> None:
    """A tiered model (claude-sonnet-4-5) uses the tier price once total input passes 200k."""
    plan = PriceCatalog().plan("anthropic", "claude-sonnet-4-5", NOW)
    assert plan is not None and plan.has_tiers
    small = plan.cost(TokenUsage(input=200_000, output=0))
    large = plan.cost(TokenUsage(input=200_001, output=0))
    assert small == Decimal("0.6")
    assert large > small * 2 - Decimal("0.01")


def test_invalid_usage_raises_invalid_usage() -> None:
    """Cache reads larger than the input total are refused, not priced negative."""
    plan = PriceCatalog().plan("openai", "gpt-4o", NOW)
    assert plan is not None
    with pytest.raises(InvalidUsage):
        plan.cost(TokenUsage(input=10, output=1, cache_read=20))
    with pytest.raises(InvalidUsage):
        plan.cost(TokenUsage(output=1, cache_read=20))


def test_unknown_model_and_provider_have_no_plan() -> None:
    """Unknown models and providers yield None (never a silent $0)."""
    catalog = PriceCatalog()
    assert catalog.plan("openai", "no-such-model-xyz", NOW) is None
    assert catalog.plan("internal-llm", "gpt-4o", NOW) is None


def test_provider_aliases_map_to_genai_prices_ids() -> None:
    """Our provider names and gen_ai.provider.name values both find genai-prices providers."""
    catalog = PriceCatalog()
    for name in ("gemini", "gcp.gemini", "vertex_ai"):
        assert catalog.plan(name, "gemini-2.5-flash", NOW) is not None, name
    assert catalog.plan("azure_openai", "gpt-4o", NOW) is not None
    assert catalog.plan("x_ai", "grok-3", NOW) is not None


def _override(**kw: object) -> SimpleNamespace:
    base = dict(
        provider="openai",
        model="my-finetune-1",
        input_per_mtok=Decimal("3"),
        output_per_mtok=Decimal("12"),
        cache_read_per_mtok=None,
        cache_write_per_mtok=None,
        reasoning_per_mtok=None,
        per_request=None,
        valid_from=None,
    )
    base.update(kw)
    return SimpleNamespace(**base)


def test_config_override_wins_and_follows_price_history() -> None:
    """pricing.models overrides genai-prices; the entry valid on the request's date is used."""
    catalog = PriceCatalog(
        models=[
            _override(model="gpt-4o", input_per_mtok=Decimal("1"), output_per_mtok=Decimal("1")),
            _override(
                model="gpt-4o",
                input_per_mtok=Decimal("2"),
                output_per_mtok=Decimal("2"),
                valid_from=dt.date(2026, 11, 22),
            ),
        ]
    )
    before = catalog.plan("openai", "GPT-4o", NOW - dt.timedelta(days=1))
    after = catalog.plan("openai", "gpt-4o", NOW)
    assert before is not None and after is not None
    assert before.cost(TokenUsage(input=1_000_000, output=0)) == Decimal(1)
    assert after.cost(TokenUsage(input=1_000_000, output=0)) == Decimal(2)
    assert after.source == "config"


def test_override_cache_price_and_per_request() -> None:
    """An override's cache-read price applies to cached tokens, uncached at input price, plus per_request."""
    catalog = PriceCatalog(
        models=[_override(cache_read_per_mtok=Decimal("0.30"), per_request=Decimal("0.001"))]
    )
    plan = catalog.plan("openai", "my-finetune-1", NOW)
    assert plan is not None
    cost = plan.cost(TokenUsage(input=1_000_000, output=1_000_000, cache_read=500_000))
    assert cost == Decimal("1.5") + Decimal("0.15") + Decimal("12") + Decimal("0.001")


def test_genai_prices_history_by_date() -> None:
    """A model whose price changed is priced by the request date (genai-prices conditional prices)."""
    catalog = PriceCatalog()
    found = False
    for provider in get_snapshot().providers:
        for model in provider.models:
            if isinstance(model.prices, list) and any(
                getattr(cp.constraint, "start_date", None) for cp in model.prices
            ):
                start = next(
                    cp.constraint.start_date
                    for cp in model.prices
                    if getattr(cp.constraint, "start_date", None)
                )
                at_before = dt.datetime.combine(start - dt.timedelta(days=1), dt.time(12), dt.timezone.utc)
                at_after = dt.datetime.combine(start, dt.time(12), dt.timezone.utc)
                usage = TokenUsage(input=1_000_000, output=1_000_000)
                for at in (at_before, at_after):
                    plan = catalog.plan(provider.id, model.id, at)
                    expected = _calc_price(usage, model.id, provider.id, at)
                    assert plan is not None and plan.cost(usage) == expected
                found = True
                break
        if found:
            break
    assert found


@pytest.mark.parametrize(
    ("route", "path", "matches"),
    [
        ("/2010-04-01/Accounts/{sid}/Messages.json", "/2010-04-01/Accounts/AC123/Messages.json", True),
        ("/2010-04-01/Accounts/{sid}/Messages.json", "/2010-04-01/Accounts/AC123/Calls.json", False),
        ("/2010-04-01/Accounts/{sid}/Messages.json", "/2010-04-01/Accounts/a/b/Messages.json", False),
        ("/v1/charges*", "/v1/charges/ch_1/refund", True),
        ("/v1/charges", "/v1/charges/", True),
    ],
)
def test_route_templates(route: str, path: str, matches: bool) -> None:
    """Route templates: {name} is one segment, * anything, a trailing slash is tolerated."""
    pattern = compile_route(route)
    assert pattern is not None
    assert bool(pattern.match(path)) is matches


def test_api_price_matches_method_and_route_first_entry_wins() -> None:
    """pricing.apis: method must match (or be *), the first matching entry wins."""
    apis = [
        SimpleNamespace(
            provider="twilio",
            method="POST",
            route="/2010-04-01/Accounts/{sid}/Messages.json",
            per_request=Decimal("0.0079"),
        ),
        SimpleNamespace(provider="twilio", method="*", route="*", per_request=Decimal("0.0001")),
    ]
    catalog = PriceCatalog(apis=apis)
    hit = catalog.api_price("twilio", "post", "/2010-04-01/Accounts/AC1/Messages.json")
    assert hit is not None and hit.per_request == Decimal("0.0079")
    assert hit.operation == "POST /2010-04-01/Accounts/{sid}/Messages.json"
    other = catalog.api_price("twilio", "GET", "/2010-04-01/Accounts/AC1/Messages.json")
    assert other is not None and other.per_request == Decimal("0.0001")
    assert catalog.api_price("stripe", "POST", "/v1/charges") is None


def test_price_variants_equal_genai_prices_with_price_context() -> None:
    """Every price variant (OpenAI service tiers, batch …) prices as calc_price(price_context=…) does."""
    catalog = PriceCatalog()
    usage = TokenUsage(input=100_000, output=20_000, cache_read=30_000)
    checked = 0
    for provider in get_snapshot().providers:
        for model in provider.models:
            for variant in model.price_variants or ():
                context = tuple(sorted(variant.when.items()))
                try:
                    expected = _calc_price(usage, model.id, provider.id, NOW, dict(context))
                except LookupError:
                    continue  # genai-prices cannot find this model by its own id
                plan = catalog.plan(provider.id, model.id, NOW, context)
                assert plan is not None and plan.cost(usage) == expected, (provider.id, model.id, context)
                checked += 1
    assert checked > 100
    flex = catalog.plan("openai", "gpt-5", NOW, (("service_tier", "flex"),))
    standard = catalog.plan("openai", "gpt-5", NOW)
    assert flex is not None and standard is not None and flex.cost(usage) < standard.cost(usage)


_NS_PER_DAY = 86_400 * 10**9


def _instants(info: Any, rng: random.Random) -> list[int]:
    """Unix ns around every date and time-of-day boundary of a genai-prices model's prices, plus
    random ones."""
    days = {NOW.date()}
    times: set[dt.time] = {dt.time(0)}
    constraints = (
        [getattr(p, "constraint", None) for p in info.prices] if isinstance(info.prices, list) else []
    )
    constraints += [v.constraint for v in info.price_variants or ()]
    for c in constraints:
        if getattr(c, "start_date", None):
            days.update((c.start_date, c.start_date - dt.timedelta(days=1)))
        for t in (getattr(c, "start_time", None), getattr(c, "end_time", None)):
            if t is not None:
                utc = dt.datetime.combine(NOW.date(), t).astimezone(dt.timezone.utc) if t.tzinfo else None
                times.add(utc.time() if utc else t)
    out = []
    for day in days:
        midnight = int(dt.datetime.combine(day, dt.time(0), dt.timezone.utc).timestamp()) * 10**9
        for t in times:
            at = midnight + ((t.hour * 60 + t.minute) * 60 + t.second) * 10**9 + t.microsecond * 1000
            out.extend((at - 1000, at - 1, at, at + 999, at + 1000))
        out.extend(midnight + rng.randrange(_NS_PER_DAY) for _ in range(4))
    return out


def test_plan_at_answers_as_plan_for_at_every_boundary() -> None:
    """plan_at's cache (per UTC day, per time-of-day slot) never changes an answer: at instants
    around every start date and off-peak boundary of genai-prices' models with conditional
    prices, and with a price variant context, it equals plan_for at the same instant."""
    rng = random.Random(11)
    catalog = PriceCatalog()
    usage = TokenUsage(input=1_000_000, output=1_000_000)
    checked = 0
    varies_within_a_day = set()
    contexts: tuple[tuple[tuple[str, str], ...], ...] = ((), (("service_tier", "flex"),))
    for provider in get_snapshot().providers:
        for model in provider.models:
            if not isinstance(model.prices, list) and not model.price_variants:
                continue
            costs_by_day: dict[int, set[Decimal]] = {}
            for at_ns in _instants(model, rng):
                for context in contexts:
                    expected = catalog.plan_for(provider.id, (model.id, None), datetime_of_ns(at_ns), context)
                    got = catalog.plan_at(provider.id, (model.id, None), at_ns, context)
                    assert (got is None) == (expected is None), (provider.id, model.id, at_ns)
                    if got is not None and expected is not None:
                        assert got[1] == expected[1]
                        assert got[0].cost(usage) == expected[0].cost(usage), (provider.id, model.id, at_ns)
                        costs_by_day.setdefault(at_ns // _NS_PER_DAY, set()).add(got[0].cost(usage))
                        checked += 1
            if any(len(costs) > 1 for costs in costs_by_day.values()):
                varies_within_a_day.add(model.id)
    assert checked > 1000
    assert varies_within_a_day  # off-peak prices were among the answers, slot by slot


def test_plan_at_follows_overrides_and_tries_models_in_order() -> None:
    """An override's valid_from starts at midnight UTC; the response model is tried before the
    request model; unknown models are cached as misses."""
    catalog = PriceCatalog(
        models=[
            _override(
                model="gpt-4o",
                input_per_mtok=Decimal("2"),
                output_per_mtok=Decimal("2"),
                valid_from=dt.date(2026, 11, 22),
            ),
        ]
    )
    midnight = int(dt.datetime(2026, 11, 22, tzinfo=dt.timezone.utc).timestamp()) * 10**9
    usage = TokenUsage(input=1_000_000, output=0)
    before = catalog.plan_at("openai", ("gpt-4o", None), midnight - 1000)
    after = catalog.plan_at("openai", ("gpt-4o", None), midnight)
    assert before is not None and after is not None
    assert before[0].source == "genai-prices" and after[0].cost(usage) == Decimal(2)
    assert catalog.plan_at("openai", ("no-such-model", "gpt-4o"), midnight + 5) == (after[0], "gpt-4o")
    lookups: list[Any] = []
    plan_for = catalog.plan_for
    catalog.plan_for = lambda *args: lookups.append(args) or plan_for(*args)  # type: ignore[method-assign]
    assert catalog.plan_at("openai", ("no-such-model", None), midnight) is None
    assert len(lookups) == 1
    assert catalog.plan_at("openai", ("no-such-model", None), midnight + 1) is None
    assert len(lookups) == 1  # the miss was cached for the day
