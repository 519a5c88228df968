"""Exact prices for LLM token usage and per-request API calls: :class:`PriceCatalog`.

LLM prices come from `genai-prices` (cache read/write prices, long-context tiers, price history by
date), with ``pricing.models`` config entries as additions or overrides (an override wins for
its provider + model from its ``valid_from`` date on). Non-LLM APIs are priced per request by
provider + HTTP method + route template (``pricing.apis``).

Money is a :class:`~decimal.Decimal` everywhere here; floats appear only at the metric boundary.

Why not call ``genai_prices.calc_price`` per span: it costs ~95 µs on these machines (it
re-validates the price table on every call), against a per-LLM-call budget of 70 µs for all of
spansignals. So a :class:`PricePlan` is compiled once per price set (per model and price period)
and replays genai-prices' own algorithm: every priced unit is charged its *leaf* count (its
reported count minus the counts of its priced, more specific units — ``input_tokens`` includes
``cache_read_tokens``, so cached tokens are counted once, at the cache price), tiers are chosen
by the total input tokens with genai-prices' threshold rule, and each unit costs
``price * count / per``. Tests pin plan == ``calc_price`` to the last digit over the whole
bundled price table.

Lookups are cached: per (provider, model) the genai-prices model (misses included), per price
set the compiled plan, per (provider, method, path) the API price. Every cache is bounded.
"""

from __future__ import annotations

import datetime as dt
import logging
import re
import threading
from bisect import bisect_right
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, NamedTuple

__all__ = [
    "GENAI_PRICES_PROVIDER_IDS",
    "ApiRoutePrice",
    "InvalidUsage",
    "PriceCatalog",
    "PricePlan",
    "TokenUsage",
    "datetime_of_ns",
]

_logger = logging.getLogger(__name__)

_CACHE_MAX = 4096
_ZERO = Decimal(0)
_NS_PER_DAY = 86_400 * 10**9
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)
_MISSING: Any = object()

GENAI_PRICES_PROVIDER_IDS: Mapping[str, str] = {
    # our provider name (processors/providers.py) or a gen_ai.provider.name value -> genai-prices id
    "openai": "openai",
    "anthropic": "anthropic",
    "gemini": "google",
    "gcp.gemini": "google",
    "vertex_ai": "google",
    "gcp.vertex_ai": "google",
    "google": "google",
    "azure_openai": "azure",
    "azure.ai.openai": "azure",
    "azure_ai_inference": "azure",
    "azure.ai.inference": "azure",
    "bedrock": "aws",
    "aws.bedrock": "aws",
    "mistral_ai": "mistral",
    "mistral": "mistral",
    "groq": "groq",
    "deepseek": "deepseek",
    "x_ai": "x-ai",
    "xai": "x-ai",
    "cohere": "cohere",
    "perplexity": "perplexity",
    "together": "together",
    "openrouter": "openrouter",
    "fireworks": "fireworks",
    "cerebras": "cerebras",
    "voyage": "voyageai",
    "moonshot": "moonshotai",
}
"""How provider names map to genai-prices provider ids; other names are tried as ids directly."""


class InvalidUsage(ValueError):
    """Reported counts that cannot be priced (e.g. cached tokens exceeding input tokens)."""


class TokenUsage(NamedTuple):
    """Token counts of one call, as the GenAI conventions define them; ``None`` means not reported.

    ``input`` includes ``cache_read`` and ``cache_write``; ``output`` includes ``reasoning``.
    ``cache_write_1h`` is the part of ``cache_write`` written with a 1-hour lifetime (Anthropic
    prices it apart). A named tuple rather than a frozen dataclass: one is built per LLM span and
    priced field by field, and a tuple is built ~3x faster and read by index (the order above is
    the one :meth:`PricePlan.cost` relies on).
    """

    input: int | None = None
    output: int | None = None
    cache_read: int | None = None
    cache_write: int | None = None
    reasoning: int | None = None
    cache_write_1h: int | None = None

    def is_empty(self) -> bool:
        """Whether nothing at all was reported."""
        return (
            self.input is None
            and self.output is None
            and self.cache_read is None
            and self.cache_write is None
            and self.reasoning is None
        )

    def as_genai_prices(self) -> dict[str, int]:
        """The reported counts under genai-prices usage keys."""
        return {key: value for key, value in zip(_USAGE_KEYS, self, strict=True) if value is not None}


_USAGE_KEYS = (  # genai-prices' names of TokenUsage's fields, in order
    "input_tokens",
    "output_tokens",
    "cache_read_tokens",
    "cache_write_tokens",
    "output_reasoning_tokens",
    "cache_write_1h_tokens",
)


_PICO = 10**12
"""Prices are replayed in integer pico-USD per unit whenever that is exact (it is for every price
with at most 6 decimals per million tokens): integer sums are exact and ~3x cheaper than Decimal."""
_PICO_DECIMAL = Decimal(_PICO)


def _pico(price: Decimal, per: int) -> int | None:
    scaled = Decimal(price) * _PICO / per
    return int(scaled) if scaled == scaled.to_integral_value() else None


class _Unit:
    __slots__ = ("descendants", "key", "per", "pico", "pico_tiers", "price", "slot", "tiered")

    def __init__(self, key: str, price: Any, per: int, tiered: bool) -> None:
        self.key = key
        # index of this unit's count in TokenUsage (a tuple); None: a count we never report (0)
        self.slot: int | None = _USAGE_KEYS.index(key) if key in _USAGE_KEYS else None
        self.price = price
        self.per = per
        self.tiered = tiered
        self.descendants: tuple[int, ...] = ()
        # exact integer pico-USD per unit (base price, then (start, price) tiers, highest first)
        self.pico: int | None
        self.pico_tiers: tuple[tuple[int, int | None], ...] = ()
        if tiered:
            self.pico = _pico(price.base, per)
            self.pico_tiers = tuple((t.start, _pico(t.price, per)) for t in reversed(price.tiers))
        else:
            self.pico = _pico(price, per)

    @property
    def integral(self) -> bool:
        return self.pico is not None and all(p is not None for _, p in self.pico_tiers)


class PricePlan:
    """A compiled price set: ``cost(usage)`` in USD, exactly as genai-prices computes it.

    Built from genai-prices price keys (``input_mtok``, ``cache_read_mtok``, tiers …) by
    :meth:`from_price_keys`. Usage kinds the plan does not price (audio, images …) are never
    reported by our parsers, so their counts are 0; a plan whose price set needs a count we
    cannot have (``requests_kcount`` aside) still works, those units just cost 0 as in
    genai-prices.
    """

    __slots__ = (
        "_fast",
        "_integral",
        "_order",
        "_pico_extra",
        "_requests",
        "_units",
        "has_tiers",
        "per_request",
        "source",
    )

    def __init__(
        self,
        units: Sequence[_Unit],
        order: Sequence[int],
        requests: Decimal | None,
        per_request: Decimal | None,
        source: str,
    ) -> None:
        self._units = tuple(units)
        self._order = tuple(order)  # price-key order, the order genai-prices sums in
        self._requests = requests
        self.per_request = per_request
        self.has_tiers = any(u.tiered for u in units)
        self.source = source
        self._pico_extra: int | None = 0
        for extra, per in ((requests, 1000), (per_request, 1)):
            if extra is not None and self._pico_extra is not None:
                scaled = _pico(extra, per)
                self._pico_extra = None if scaled is None else self._pico_extra + scaled
        self._integral = self._pico_extra is not None and all(u.integral for u in self._units)
        # Most calls report input and output counts only: then every other unit's leaf is 0 and
        # input's and output's are their counts (when neither is a more specific unit of another).
        self._fast: tuple[tuple[_Unit, int], ...] | None = None
        if self._integral and not any(
            self._units[j].slot in (0, 1) for u in self._units for j in u.descendants
        ):
            self._fast = tuple((u, u.slot) for u in self._units if u.slot in (0, 1))

    @classmethod
    def from_price_keys(
        cls, prices: Mapping[str, Any], *, per_request: Decimal | None = None, source: str = "genai-prices"
    ) -> PricePlan:
        """Compile ``{price_key: Decimal | TieredPrices}``; raises ``ValueError`` for an invalid set."""
        from genai_prices.types import TieredPrices
        from genai_prices.units import _get_registry  # the unit table genai-prices prices with
        from genai_prices.validation import validate_priced_units

        registry = _get_registry()
        known = [(k, v) for k, v in prices.items() if v is not None and not k.startswith("_")]
        resolved = []
        for key, value in known:
            try:
                resolved.append((registry.unit_for_price_key(key), value))
            except KeyError:
                continue  # genai-prices warns and skips unknown keys too
        validate_priced_units(tuple(u for u, _ in resolved), registry)
        requests: Decimal | None = None
        token_units = []
        for unit, value in resolved:
            if unit.usage_key == "requests":
                requests = value
                continue
            token_units.append((unit, value))
        # Most specific first (genai-prices' decomposition order), each with its priced descendants.
        ordered = sorted(token_units, key=lambda uv: (-len(uv[0].dimensions), uv[0].usage_key))
        units = [_Unit(u.usage_key, v, u.per, isinstance(v, TieredPrices)) for u, v in ordered]
        for i, (unit, _) in enumerate(ordered):
            units[i].descendants = tuple(
                j
                for j, (other, _) in enumerate(ordered)
                if j != i and unit.dimensions.items() <= other.dimensions.items()
            )
        position = {u.usage_key: i for i, (u, _) in enumerate(ordered)}
        order = [position[u.usage_key] for u, _ in token_units]
        return cls(units, order, requests, per_request, source)

    def cost(self, usage: TokenUsage) -> Decimal:
        """USD for ``usage``; raises :class:`InvalidUsage` when the counts contradict each other."""
        # On the span path of every LLM call: counts are read from the tuple by precomputed slot
        # (no dict of the reported counts unless an error message needs it).
        fast = self._fast
        if fast is not None and not usage[2] and not usage[3] and not usage[4] and not usage[5]:
            # Input and output alone (the others unreported or 0, as OpenAI reports them when
            # nothing was cached): the same sum as below, every other leaf being 0.
            total_input = usage[0] or 0
            output = usage[1] or 0
            if total_input >= 0 and output >= 0:
                pico = self._pico_extra or 0
                for unit, slot in fast:
                    price = unit.pico
                    for start, tier_price in unit.pico_tiers:
                        if total_input > start:
                            price = tier_price
                            break
                    pico += price * (total_input if slot == 0 else output)  # type: ignore[operator]
                return Decimal(pico) / _PICO_DECIMAL
        units = self._units
        leaves: list[int] = [0] * len(units)
        for i, unit in enumerate(units):
            reported = usage[unit.slot] if unit.slot is not None else None
            value = reported if reported is not None else self._inferred(unit, usage)
            leaf = value
            for j in unit.descendants:
                leaf -= leaves[j]
            if leaf < 0:
                raise InvalidUsage(
                    f"more specific token counts exceed {unit.key} ({value}): {usage.as_genai_prices()}"
                )
            leaves[i] = leaf
        total_input = 0
        if self.has_tiers:
            if usage[0] is not None:
                total_input = usage[0]
            elif (usage[2] or 0) > 0 or (usage[3] or 0) > 0:
                raise InvalidUsage(f"cached token counts without input_tokens: {usage.as_genai_prices()}")
        if self._integral:
            pico = self._pico_extra or 0
            for i, unit in enumerate(units):
                price = unit.pico
                for start, tier_price in unit.pico_tiers:
                    if total_input > start:
                        price = tier_price
                        break
                pico += price * leaves[i]  # type: ignore[operator]
            return Decimal(pico) / _PICO_DECIMAL
        total = _ZERO
        for i in self._order:
            unit = units[i]
            price = unit.price
            if unit.tiered:
                applicable = price.base
                for tier in reversed(price.tiers):
                    if total_input > tier.start:
                        applicable = tier.price
                        break
                price = applicable
            total += price * Decimal(leaves[i]) / unit.per
        if self._requests is not None:
            total += self._requests * Decimal(1) / 1000
        if self.per_request is not None:
            total += self.per_request
        return total

    @staticmethod
    def _inferred(unit: _Unit, usage: TokenUsage) -> int:
        # genai-prices refuses to guess an unreported total when a more specific count was reported.
        # usage by index: input, output, cache_read, cache_write, reasoning, cache_write_1h.
        key = unit.key
        if key == "input_tokens" and ((usage[2] or 0) > 0 or (usage[3] or 0) > 0):
            raise InvalidUsage(f"cached token counts without input_tokens: {usage.as_genai_prices()}")
        if key == "cache_write_tokens" and (usage[5] or 0) > 0:
            raise InvalidUsage(f"1-hour cache writes without cache_write_tokens: {usage.as_genai_prices()}")
        if key == "output_tokens" and (usage[4] or 0) > 0:
            raise InvalidUsage(f"reasoning tokens without output_tokens: {usage.as_genai_prices()}")
        return 0


@dataclass(frozen=True, slots=True)
class ApiRoutePrice:
    """A compiled ``pricing.apis`` entry."""

    provider: str
    method: str  # upper case, "*" for any
    route: str  # the template as configured, "*" for any; the ``operation`` label
    per_request: Decimal
    pattern: re.Pattern[str] | None  # None: any path

    @property
    def operation(self) -> str:
        """The ``operation`` label: ``METHOD route`` (a template, so low-cardinality)."""
        return f"{self.method} {self.route}"


def compile_route(route: str) -> re.Pattern[str] | None:
    """``/2010-04-01/Accounts/{sid}/Messages.json`` → a regex; ``{name}`` is one path segment,
    ``*`` any characters; ``"*"`` alone (or empty) matches every path (``None``)."""
    route = route.strip()
    if route in ("", "*"):
        return None
    out = []
    for piece in re.split(r"(\{[^/{}]*\}|\*)", route):
        if piece == "*":
            out.append(".*")
        elif piece.startswith("{") and piece.endswith("}"):
            out.append("[^/]+")
        else:
            out.append(re.escape(piece))
    return re.compile("".join(out) + r"/?\Z")


def datetime_of_ns(ns: int) -> dt.datetime:
    """The aware UTC datetime of a Unix time in nanoseconds, truncated to the microsecond (integer
    arithmetic: a float of seconds rounds, and could move a span across midnight)."""
    return _EPOCH + dt.timedelta(microseconds=ns // 1000)


class _Intraday:
    """Marks a cached price lookup whose answer changes within a UTC day (genai-prices
    time-of-day prices, e.g. off-peak discounts): answers are cached per slot between
    ``boundaries`` (ns since midnight UTC, sorted); no boundaries: not cacheable at all."""

    __slots__ = ("boundaries",)

    def __init__(self, boundaries: tuple[int, ...]) -> None:
        self.boundaries = boundaries


def _time_of_day_ns(value: dt.time) -> int:
    """A (possibly aware) time of day as ns since midnight UTC, as genai-prices compares it."""
    if value.tzinfo is not None:
        value = dt.datetime.combine(dt.date(1970, 1, 1), value).astimezone(dt.timezone.utc).time()
    micros = ((value.hour * 60 + value.minute) * 60 + value.second) * 1_000_000 + value.microsecond
    return micros * 1000


def _intraday_boundaries(info: Any) -> tuple[int, ...] | None:
    """Where a genai-prices model's prices may change within a UTC day: ``()`` when they depend
    on the date alone (start dates), ns-since-midnight boundaries for time-of-day constraints,
    ``None`` for a constraint this module does not know (never cached)."""
    from genai_prices.types import StartDateConstraint, TimeOfDateConstraint

    constraints: list[Any] = []
    prices = getattr(info, "prices", None)
    if isinstance(prices, list):
        constraints.extend(getattr(p, "constraint", None) for p in prices)
    constraints.extend(getattr(v, "constraint", None) for v in getattr(info, "price_variants", None) or ())
    boundaries: set[int] = set()
    for constraint in constraints:
        if constraint is None or type(constraint) is StartDateConstraint:
            continue
        if type(constraint) is TimeOfDateConstraint:
            boundaries.add(_time_of_day_ns(constraint.start_time))
            boundaries.add(_time_of_day_ns(constraint.end_time))
            continue
        return None
    return tuple(sorted(boundaries))


class PriceCatalog:
    """Prices for LLM usage (genai-prices + overrides) and API requests (per-request table).

    ``models`` are ``pricing.models`` entries, ``apis`` ``pricing.apis`` entries (config models
    or anything with the same attributes). ``snapshot`` is a genai-prices ``DataSnapshot``
    (default: the one genai-prices is using, bundled or auto-updated).
    """

    def __init__(self, models: Iterable[Any] = (), apis: Iterable[Any] = (), *, snapshot: Any = None) -> None:
        self._snapshot = snapshot
        self._overrides: dict[tuple[str, str], list[tuple[dt.date, PricePlan]]] = {}
        for m in models:
            plan = PricePlan.from_price_keys(
                {
                    "input_mtok": m.input_per_mtok,
                    "output_mtok": m.output_per_mtok,
                    "cache_read_mtok": m.cache_read_per_mtok,
                    "cache_write_mtok": m.cache_write_per_mtok,
                    "output_reasoning_mtok": m.reasoning_per_mtok,
                },
                per_request=m.per_request,
                source="config",
            )
            since = m.valid_from or dt.date.min
            key = (m.provider.lower(), m.model.lower())
            self._overrides.setdefault(key, []).append((since, plan))
        for entries in self._overrides.values():
            entries.sort(key=lambda e: e[0])
        self._apis: dict[str, list[ApiRoutePrice]] = {}
        for a in apis:
            method = (a.method or "*").upper()
            entry = ApiRoutePrice(
                a.provider, method, a.route or "*", a.per_request, compile_route(a.route or "*")
            )
            self._apis.setdefault(a.provider, []).append(entry)
        self._models: dict[tuple[str, str], Any] = {}
        self._plans: dict[Any, tuple[Any, PricePlan | None]] = {}
        self._api_cache: dict[tuple[str, str, str], ApiRoutePrice | None] = {}
        self._resolved: dict[tuple[Any, ...], Any] = {}
        self._lock = threading.Lock()

    def preload(self, *, background: bool = True) -> None:
        """Load genai-prices' price table now (~0.4 s of imports), by default on a daemon thread,
        so the first priced span does not pay for it on the app's thread."""

        def load() -> None:
            try:
                from genai_prices.data_snapshot import get_snapshot

                get_snapshot()
            except Exception:
                _logger.warning("spansignals: loading genai-prices failed", exc_info=True)

        if background:
            threading.Thread(target=load, name="spansignals-genai-prices", daemon=True).start()
        else:
            load()

    @property
    def has_api_prices(self) -> bool:
        """Whether any ``pricing.apis`` entry is configured."""
        return bool(self._apis)

    def api_providers(self) -> frozenset[str]:
        """Providers with per-request prices."""
        return frozenset(self._apis)

    # --- LLM ------------------------------------------------------------------------------------

    def plan(
        self, provider: str, model: str, at: dt.datetime, context: tuple[tuple[str, str], ...] = ()
    ) -> PricePlan | None:
        """The price plan for ``model`` of ``provider`` at time ``at`` (aware), or ``None`` if unknown.

        ``context`` selects genai-prices price variants, e.g. ``(("service_tier", "flex"),)`` for
        OpenAI's flex processing (half price); as in genai-prices, variants apply only to a
        provider's own models, not to models priced through a fallback provider.
        """
        overrides = self._overrides.get((provider.lower(), model.lower()))
        if overrides:
            day = at.astimezone(dt.timezone.utc).date()
            chosen = None
            for since, override in overrides:
                if since <= day:
                    chosen = override
            if chosen is not None:
                return chosen
        found = self._model_info(provider, model)
        if found is None:
            return None
        info, own = found
        try:
            model_price = info.get_prices(at)
        except Exception:
            return None
        key: Any = id(model_price)
        if context and own and info.price_variants:
            key = (key, context, at.astimezone(dt.timezone.utc).date())  # variants can be date-bound
        cached = self._plans.get(key)
        if cached is not None and cached[0] is model_price:
            return cached[1]
        plan: PricePlan | None
        try:
            prices = model_price if not isinstance(key, tuple) else info.get_prices(at, dict(context))
            plan = PricePlan.from_price_keys(prices.__dict__)
        except Exception as exc:
            _logger.warning(
                "spansignals: genai-prices has an unusable price set for %s/%s: %s", provider, model, exc
            )
            plan = None
        with self._lock:
            if len(self._plans) >= _CACHE_MAX:
                self._plans.clear()
            self._plans[key] = (model_price, plan)
        return plan

    def plan_for(
        self,
        provider: str,
        models: Sequence[str | None],
        at: dt.datetime,
        context: tuple[tuple[str, str], ...] = (),
    ) -> tuple[PricePlan, str] | None:
        """The first of ``models`` (e.g. response model, then request model) that has a price."""
        for model in models:
            if model:
                plan = self.plan(provider, model, at, context)
                if plan is not None:
                    return plan, model
        return None

    def plan_at(
        self,
        provider: str,
        models: tuple[str | None, ...],
        at_ns: int,
        context: tuple[tuple[str, str], ...] = (),
    ) -> tuple[PricePlan, str] | None:
        """:meth:`plan_for` at a Unix time in ns, answered from a cache of resolved plans.

        The span path's lookup (every LLM span): keyed by provider, models, context and the price
        validity period — the UTC day (configured overrides and genai-prices' start dates change
        prices at midnight UTC), or the slot between two time-of-day boundaries for models with
        off-peak prices. Misses (unknown models) are cached too. A model whose prices have a
        constraint of another kind is looked up every time, so answers are always those of
        :meth:`plan_for` at :func:`datetime_of_ns` ``(at_ns)``.
        """
        key: tuple[Any, ...] = (provider, models, context, at_ns // _NS_PER_DAY)
        found = self._resolved.get(key, _MISSING)
        if found is _MISSING:
            found = self._period(key, provider, models)
        if type(found) is _Intraday:
            if not found.boundaries:  # a constraint we cannot bound: never cached
                return self.plan_for(provider, models, datetime_of_ns(at_ns), context)
            key = (*key, bisect_right(found.boundaries, at_ns // 1000 * 1000 % _NS_PER_DAY))
            found = self._resolved.get(key, _MISSING)
        if found is _MISSING:
            found = self.plan_for(provider, models, datetime_of_ns(at_ns), context)
            self._remember(key, found)
        return found

    def _period(self, key: tuple[Any, ...], provider: str, models: tuple[str | None, ...]) -> Any:
        """Whether :meth:`plan_at`'s answer for ``key`` holds for the whole day (``_MISSING``: to
        be looked up once) or changes within it (an :class:`_Intraday` marker, remembered)."""
        boundaries: set[int] = set()
        for model in models:
            found = self._model_info(provider, model) if model else None
            if found is None:
                continue
            bounds = _intraday_boundaries(found[0])
            if bounds is None:
                marker = _Intraday(())
                self._remember(key, marker)
                return marker
            boundaries.update(bounds)
        if not boundaries:
            return _MISSING
        marker = _Intraday(tuple(sorted(boundaries)))
        self._remember(key, marker)
        return marker

    def _remember(self, key: tuple[Any, ...], value: Any) -> None:
        with self._lock:
            if len(self._resolved) >= _CACHE_MAX:
                self._resolved.clear()  # price sets are few in practice; a flood just resets
            self._resolved[key] = value

    def _model_info(self, provider: str, model: str) -> Any:
        key = (provider, model)
        try:
            return self._models[key]
        except KeyError:
            pass
        info = self._lookup_model(provider, model)
        with self._lock:
            if len(self._models) >= _CACHE_MAX:
                self._models.clear()
            self._models[key] = info
        return info

    def _lookup_model(self, provider: str, model: str) -> Any:
        from genai_prices.data_snapshot import find_provider_by_id, get_snapshot

        snapshot = self._snapshot or get_snapshot()
        provider_id = GENAI_PRICES_PROVIDER_IDS.get(provider.lower(), provider.lower())
        try:
            gp_provider = find_provider_by_id(snapshot.providers, provider_id)
            if gp_provider is None:
                return None
            info = gp_provider.find_model(model, all_providers=snapshot.providers)
            if info is None:
                return None
            return info, any(info is m for m in gp_provider.models)
        except Exception:
            return None

    # --- APIs -----------------------------------------------------------------------------------

    def api_price(self, provider: str, method: str, path: str) -> ApiRoutePrice | None:
        """The per-request price of ``method path`` at ``provider``, or ``None``; first entry wins."""
        entries = self._apis.get(provider)
        if not entries:
            return None
        key = (provider, method, path)
        try:
            return self._api_cache[key]
        except KeyError:
            pass
        upper = method.upper()
        found = None
        for entry in entries:
            if entry.method != "*" and entry.method != upper:
                continue
            if entry.pattern is not None and not entry.pattern.match(path):
                continue
            found = entry
            break
        with self._lock:
            if len(self._api_cache) >= _CACHE_MAX:
                self._api_cache.clear()
            self._api_cache[key] = found
        return found
