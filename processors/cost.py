"""Cost, tokens and unpriced usage derived from spans: :class:`CostSpanProcessor`.

Reads GenAI semantic-convention attributes set by our httpx hooks *or* any other
instrumentation (OpenLLMetry, the contrib openai instrumentation, other languages through the
collector):

- provider: ``spansignals.provider``, ``gen_ai.provider.name`` (or the older ``gen_ai.system``),
  else the request host (:func:`~.providers.resolve_view`), else ``spansignals.usage.provider``
  (usage report spans, below);
- models: ``gen_ai.response.model`` (what was served and billed; also the ``model`` label),
  then ``gen_ai.request.model`` (``llm.response.model`` / ``llm.request.model`` as fallbacks);
- operation: ``gen_ai.operation.name`` (``llm.request.type`` as fallback);
- price variant: ``openai.response.service_tier`` (``flex`` is half price, ``priority`` more);
- usage: ``gen_ai.usage.input_tokens`` (which *includes* cached tokens),
  ``gen_ai.usage.output_tokens`` (includes reasoning), ``gen_ai.usage.cache_read.input_tokens``,
  ``gen_ai.usage.cache_creation.input_tokens``, ``gen_ai.usage.reasoning.output_tokens``, and the
  older or vendor names: ``gen_ai.usage.prompt_tokens`` / ``completion_tokens``,
  ``llm.usage.prompt_tokens`` / ``completion_tokens``, ``gen_ai.usage.cache_read_input_tokens``,
  ``gen_ai.usage.cache_creation_input_tokens``, ``gen_ai.usage.input_tokens.cached``,
  ``gen_ai.usage.input_tokens.cache_write``, ``gen_ai.usage.output_tokens.reasoning``.

Metrics (all labelled ``service_name`` too):

- ``spansignals_cost_usd_total{provider, model, operation}``: exact sums (Decimal inside, float
  only when exported); for per-request API prices ``operation`` is ``METHOD route-template``;
- ``spansignals_tokens_total{provider, model, token_type}``: ``input`` (cached included),
  ``output`` (reasoning included), ``cache_read``, ``cache_write``, ``reasoning``;
- ``spansignals_cost_unpriced_total{provider, model}``: spans with usage but no known price (or
  contradictory counts), with one warning log per provider + model. Never a silent $0.

A ``gen_ai.usage.cost`` attribute set by another instrumentation is not trusted (its prices may
differ); the cost is always computed from the counts. In the app, the usage enricher prices a
call before its span ends (:meth:`CostSpanProcessor.price_call`) and the span's derivation
charges that exact price when the span's attributes give the same pricing inputs, so each call
is priced once. A streamed call's usage is counted by :meth:`CostSpanProcessor.record_usage` and
exported on a usage report span (``gen_ai.usage``, a child of the client span), which a
collector downstream prices and this process skips. Per-request API prices apply to spans
without token usage whose provider has ``pricing.apis`` entries and whose response was not an
error (``http.response.status_code`` < 400 and no ``error.type``); on OTLP spans, those that are
neither client spans nor name their provider are ruled out without reading their attributes.
Spans with a sampling weight count for their adjusted count.

On the collector's span path, the price plan of an LLM span comes from a cache keyed by its
provider, models, price context and price validity period
(:meth:`~.pricing.PriceCatalog.plan_at`), not from a genai-prices lookup per span.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from decimal import Decimal
from typing import Any

from .budgets import BudgetTracker
from .engine import SignalSpanProcessor
from .events import EventBus
from .families import DEFAULT_MAX_SERIES, CounterFamily, MetricFamily
from .pricing import InvalidUsage, PriceCatalog, TokenUsage
from .providers import ProviderTable, host_of_url, resolve_view
from .view import KIND_CLIENT, KIND_INTERNAL, SpanView, views_that_might_hold

__all__ = [
    "ATTR_USAGE_PROVIDER",
    "USAGE_SPAN_NAME",
    "CostSpanProcessor",
    "MoneyCounterFamily",
    "usage_from_attributes",
]

USAGE_SPAN_NAME = "gen_ai.usage"
"""Name of the usage report span the in-app enricher emits when a streamed body completes."""
ATTR_USAGE_PROVIDER = "spansignals.usage.provider"
"""The provider of a usage report span. Not ``spansignals.provider`` or ``gen_ai.provider.name``:
selectors by provider (SLOs, rate limits) must not count the report as another call to the
provider; only the cost derivation reads it, when no other attribute names a provider."""

_logger = logging.getLogger(__name__)

_INPUT = ("gen_ai.usage.input_tokens", "gen_ai.usage.prompt_tokens", "llm.usage.prompt_tokens")
_OUTPUT = ("gen_ai.usage.output_tokens", "gen_ai.usage.completion_tokens", "llm.usage.completion_tokens")
_CACHE_READ = (
    "gen_ai.usage.cache_read.input_tokens",
    "gen_ai.usage.cache_read_input_tokens",
    "gen_ai.usage.input_tokens.cached",
)
_CACHE_WRITE = (
    "gen_ai.usage.cache_creation.input_tokens",
    "gen_ai.usage.cache_creation_input_tokens",
    "gen_ai.usage.input_tokens.cache_write",
)
_REASONING = (
    "gen_ai.usage.reasoning.output_tokens",
    "gen_ai.usage.reasoning_tokens",
    "gen_ai.usage.output_tokens.reasoning",
)
_CACHE_WRITE_1H = "spansignals.usage.cache_creation_1h.input_tokens"
_TOTAL_KEYS = frozenset(_INPUT + _OUTPUT)
_USAGE_FRAGMENT = b"usage."  # in every key of _TOTAL_KEYS (a test pins it)
_PROVIDER_KEY_FRAGMENT = b"spansignals.provider"
_DETAIL_KEYS = frozenset((*_CACHE_READ, *_CACHE_WRITE, *_REASONING, _CACHE_WRITE_1H))
_TOKEN_TYPES = ("input", "output", "cache_read", "cache_write", "reasoning")
_WARNED_MAX = 1024
_LABELS_CACHE_MAX = 4096
_HANDED_MAX = 4096
"""In-app hand-overs waiting for their span's derivation (deferred derivation may hold thousands of
spans in a burst): past this, the oldest is forgotten and its span is priced from its counts."""


def _count(attrs: Mapping[str, Any], keys: tuple[str, ...]) -> int | None:
    for key in keys:
        value = attrs.get(key)
        if value is not None:
            if type(value) is int:
                return value if value >= 0 else None
            if type(value) is float and value >= 0 and value.is_integer():
                return int(value)
            return None
    return None


def usage_from_attributes(attrs: Mapping[str, Any]) -> TokenUsage | None:
    """The token usage a span's attributes report, or ``None`` when there is none.

    On the span path :meth:`CostSpanProcessor.observe` first asks the view whether any key holds
    ``usage.`` (:meth:`~.view.SpanView.might_hold_key`), so OTLP spans without usage are ruled
    out without building their attribute index.
    """
    # Usage spans rarely carry the detailed counts: one C-level pass over the span's keys (dict
    # or OtlpAttributes) answers for all the keys of each group, where a lookup per key costs a
    # method call per miss (~0.1 µs each on OTLP attributes).
    if _TOTAL_KEYS.isdisjoint(attrs):
        return None
    inp = _count(attrs, _INPUT)
    out = _count(attrs, _OUTPUT)
    if inp is None and out is None:
        return None
    if _DETAIL_KEYS.isdisjoint(attrs):
        return TokenUsage(inp, out)
    return TokenUsage(
        inp,
        out,
        _count(attrs, _CACHE_READ),
        _count(attrs, _CACHE_WRITE),
        _count(attrs, _REASONING),
        _count(attrs, (_CACHE_WRITE_1H,)),
    )


class MoneyCounterFamily(CounterFamily):
    """A counter of exact :class:`~decimal.Decimal` sums, exported as floats."""

    def add(self, labels: tuple[Any, ...], amount: Decimal | float = 1) -> None:
        """Add an exact amount (negative amounts are ignored)."""
        super().add(labels, amount)  # type: ignore[arg-type]

    def snapshot(self) -> list[tuple[tuple[Any, ...], float]]:
        with self._lock:
            return [(labels, float(v)) for labels, v in self._series.items()]

    def exact(self, labels: tuple[Any, ...]) -> Decimal:
        """The exact sum of one series."""
        return Decimal(self._series.get(labels, 0))


class _TokenCounterFamily(CounterFamily):
    """``spansignals.tokens``: the counts of one call added under one lock acquisition, with the
    five label tuples of a (service, provider, model) built once, not per span."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._labels_of: dict[tuple[Any, ...], tuple[tuple[Any, ...], ...]] = {}

    def add_usage(self, labels: tuple[Any, ...], usage: TokenUsage, weight: float) -> None:
        """Add each reported count of ``usage`` (times ``weight``) to ``labels + (token_type,)``."""
        keys = self._labels_of.get(labels)
        if keys is None:
            keys = tuple((*labels, token_type) for token_type in _TOKEN_TYPES)
            if len(self._labels_of) >= _LABELS_CACHE_MAX:
                self._labels_of.clear()
            self._labels_of[labels] = keys
        with self._lock:
            series = self._series
            for key, value in zip(keys, usage, strict=False):  # usage's first five fields
                if value is not None:
                    amount = value * weight
                    if not amount >= 0:
                        continue
                    if key in series:
                        series[key] += amount
                    else:
                        cut = self._key(key)  # long values cut, or the overflow series
                        series[cut] = series.get(cut, 0) + amount


def _forget_oldest(entries: OrderedDict[Any, Any]) -> None:
    """Drop the oldest entry, in O(1) (``del d[next(iter(d))]`` on a plain dict scans the slots
    freed at its front, a cost that grows with every entry dropped until the dict is resized);
    never raises under concurrent use (another thread emptying it meanwhile only makes the bound
    approximate)."""
    with contextlib.suppress(KeyError):
        entries.popitem(last=False)


def _str_attr(attrs: Mapping[str, Any], first: str, second: str | None = None) -> str | None:
    value = attrs.get(first)
    if isinstance(value, str) and value:
        return value
    if second is None:
        return None
    value = attrs.get(second)
    if isinstance(value, str) and value:
        return value
    return None


class CostSpanProcessor(SignalSpanProcessor):
    """Cost per provider, model and operation; tokens by type; unpriced usage; budgets.

    ``catalog`` prices usage (default: genai-prices alone); ``budgets`` receives every cost
    (default: none); ``table`` resolves providers by host (default: the built-in table);
    ``preload`` loads genai-prices' table on a background thread at construction (default: true).
    """

    processor_name = "cost"

    def __init__(
        self,
        catalog: PriceCatalog | None = None,
        *,
        budgets: BudgetTracker | None = None,
        table: ProviderTable | None = None,
        max_series: int = DEFAULT_MAX_SERIES,
        preload: bool = True,
    ) -> None:
        super().__init__()
        self.catalog = catalog if catalog is not None else PriceCatalog()
        if preload:
            self.catalog.preload()
        self.budgets = budgets
        if budgets is not None:
            budgets.events = self._events
        self.table = table
        self._api_providers = self.catalog.api_providers()
        labels = ("service.name", "provider", "model")
        self.cost = MoneyCounterFamily(
            "spansignals.cost.usd",
            "Cost of API and LLM calls in USD.",
            "{USD}",
            (*labels, "operation"),
            max_series=max_series,
        )
        self.tokens = _TokenCounterFamily(
            "spansignals.tokens",
            "LLM tokens by type (input includes cached tokens).",
            "{token}",
            (*labels, "token_type"),
            max_series=max_series,
        )
        self.unpriced = CounterFamily(
            "spansignals.cost.unpriced",
            "Spans with token usage but no known price.",
            "{span}",
            labels,
            max_series=max_series,
        )
        self._warned: set[tuple[str, str]] = set()
        self._warn_lock = threading.Lock()
        # Prices computed in-app before a span ended (price_call), by their pricing inputs.
        self._handed: OrderedDict[tuple[Any, ...], Decimal] = OrderedDict()
        # Usage report spans whose usage record_usage counted, by the same inputs.
        self._counted: OrderedDict[tuple[Any, ...], bool] = OrderedDict()

    def _events_changed(self, bus: EventBus) -> None:
        budgets = getattr(self, "budgets", None)
        if budgets is not None:
            budgets.events = bus

    def metric_families(self) -> list[MetricFamily]:
        families: list[MetricFamily] = [self.cost, self.tokens, self.unpriced]
        if self.budgets is not None:
            families.extend(self.budgets.families)
        return families

    def observe_batch(self, views: Sequence[SpanView]) -> None:
        if self._api_providers:  # every client span may carry a per-request price: ask each span
            super().observe_batch(views)
            return
        # Only spans that may hold a usage key can be priced: on the collector's scanned requests
        # one search of the request's bytes rules out the rest (see views_that_might_hold).
        try:
            candidates = views_that_might_hold(views, _USAGE_FRAGMENT)
        except Exception as exc:  # a view that is not one (never seen): ask span by span
            self.errors.record(self.processor_name, exc)
            super().observe_batch(views)
            return
        self._observe_each(candidates, self._observe_usage)  # no second search per span

    def observe(self, view: SpanView) -> None:
        # On OTLP spans might_hold_key answers without building the attribute mapping at all.
        if view.might_hold_key(_USAGE_FRAGMENT) and self._observe_usage(view):
            return
        if self._api_providers and (view.kind == KIND_CLIENT or view.might_hold_key(_PROVIDER_KEY_FRAGMENT)):
            # only a client span, or one naming its provider, can have a per-request price: on
            # OTLP spans the others are ruled out without indexing their attributes
            self._observe_api(view, view.attributes)

    # --- LLM ------------------------------------------------------------------------------------

    def _observe_usage(self, view: SpanView) -> bool:
        """Derive from the token usage ``view`` reports; False when it reports none."""
        attrs = view.attributes
        usage = usage_from_attributes(attrs)
        if usage is None:
            return False
        self._observe_llm(view, attrs, usage)
        return True

    def _llm_inputs(
        self, view: SpanView, attrs: Mapping[str, Any]
    ) -> tuple[str, tuple[str | None, str | None], tuple[tuple[str, str], ...]]:
        """Provider, (response model, request model) and price context of an LLM span."""
        info = resolve_view(view, self.table)
        if info is not None:
            provider = info.name.lower()
        else:  # a usage report span names its provider apart (see ATTR_USAGE_PROVIDER)
            named = attrs.get(ATTR_USAGE_PROVIDER)
            provider = named.lower() if isinstance(named, str) and named else "unknown"
        models = (
            _str_attr(attrs, "gen_ai.response.model", "llm.response.model"),
            _str_attr(attrs, "gen_ai.request.model", "llm.request.model"),
        )
        tier = _str_attr(attrs, "openai.response.service_tier", "gen_ai.openai.response.service_tier")
        return provider, models, ((("service_tier", tier),) if tier is not None else ())

    def _observe_llm(self, view: SpanView, attrs: Mapping[str, Any], usage: TokenUsage) -> None:
        provider, models, context = self._llm_inputs(view, attrs)
        at_ns = view.start_ns or view.end_ns
        key = (provider, models, context, usage, at_ns)
        if self._counted and self._counted.pop(key, None) is not None:
            return  # an in-app usage report span: record_usage counted its usage already
        response_model, request_model = models
        model = response_model or request_model or "unknown"
        service = view.service_name
        self.tokens.add_usage((service, provider, model), usage, view.weight)
        amount = self._handed.pop(key, None) if self._handed else None
        if amount is None:
            found = self.catalog.plan_at(provider, models, at_ns, context)
            if found is None:
                self.unpriced.add((service, provider, model), view.weight)
                self._warn_once(provider, model, "no price is known; add it under pricing.models")
                return
            try:
                amount = found[0].cost(usage)
            except InvalidUsage as exc:
                self.unpriced.add((service, provider, model), view.weight)
                self._warn_once(provider, model, f"its token counts cannot be priced ({exc})")
                return
        operation = _str_attr(attrs, "gen_ai.operation.name", "llm.request.type")
        self._charge(
            view, attrs, amount, provider, model, operation, (response_model or "", request_model or "")
        )

    def price_call(
        self,
        provider: str,
        response_model: str | None,
        request_model: str | None,
        service_tier: str | None,
        usage: TokenUsage,
        start_ns: int,
    ) -> Decimal | None:
        """USD for one in-app LLM call whose span has not ended yet, or ``None`` when unpriced.

        For the usage enricher (``gen_ai.usage.cost`` on the span). The price is kept, keyed by
        exactly what it was computed from (provider, models, service tier, counts, start time),
        and the span's derivation takes it from there when the attributes it reads give the same
        inputs: each call is priced once, and the derivation never trusts a cost attribute (in
        the collector nothing is handed over; any difference in the inputs prices again).
        """
        provider = provider.lower()
        models = (response_model or None, request_model or None)
        context = (("service_tier", service_tier),) if service_tier else ()
        found = self.catalog.plan_at(provider, models, start_ns, context)
        if found is None:
            return None
        try:
            amount = found[0].cost(usage)
        except InvalidUsage:
            return None  # the derivation counts it as unpriced, with its warning
        handed = self._handed
        if len(handed) >= _HANDED_MAX:
            _forget_oldest(handed)  # e.g. spans never derived (no engine on their provider)
        handed[(provider, models, context, usage, start_ns)] = amount
        return amount

    def _charge(
        self,
        view: SpanView,
        attrs: Mapping[str, Any],
        amount: Decimal,
        provider: str,
        model: str | None,
        operation: str | None,
        models: tuple[str, ...],
    ) -> None:
        weight = view.weight
        if weight != 1.0:
            amount = amount * Decimal(repr(weight))
        self.cost.add((view.service_name, provider, model, operation), amount)
        if self.budgets is not None:
            self.budgets.record(
                amount,
                provider=provider,
                models=models,
                service=view.service_name,
                attributes=attrs,
                resource=view.resource,
            )

    def _warn_once(self, provider: str, model: str, why: str) -> None:
        key = (provider, model)
        if key in self._warned:
            return
        with self._warn_lock:
            if key in self._warned or len(self._warned) >= _WARNED_MAX:
                return
            self._warned.add(key)
        _logger.warning(
            "spansignals: usage of %s model %r is not priced: %s; counted in spansignals_cost_unpriced_total",
            provider,
            model,
            why,
        )

    # --- per-request API prices -----------------------------------------------------------------

    def _observe_api(self, view: SpanView, attrs: Mapping[str, Any]) -> None:
        name = attrs.get("spansignals.provider")
        if not isinstance(name, str):
            if view.kind != KIND_CLIENT:
                return
            info = resolve_view(view, self.table)
            if info is None:
                return
            name = info.name
        if name not in self._api_providers:
            return
        status = attrs.get("http.response.status_code", attrs.get("http.status_code"))
        if (isinstance(status, int) and status >= 400) or attrs.get("error.type") is not None:
            return
        method = _str_attr(attrs, "http.request.method", "http.method")
        path = _str_attr(attrs, "url.path")
        if path is None:
            url = _str_attr(attrs, "url.full", "http.url")
            if url is not None and host_of_url(url) is not None:
                rest = url.split("://", 1)[1]
                slash = rest.find("/")
                path = rest[slash:].split("?", 1)[0].split("#", 1)[0] if slash >= 0 else "/"
            else:
                path = _str_attr(attrs, "http.target", "http.route")
                if path is not None:
                    path = path.split("?", 1)[0]
        if method is None or path is None:
            return
        price = self.catalog.api_price(name, method, path)
        if price is None:
            return
        self._charge(view, attrs, price.per_request, name, None, price.operation, ())

    # --- late usage (streams) -------------------------------------------------------------------

    def record_usage(
        self,
        attributes: Mapping[str, Any],
        resource: Mapping[str, Any],
        *,
        start_ns: int,
        end_ns: int,
        service_name: str | None = None,
        report_attributes: Mapping[str, Any] | None = None,
    ) -> None:
        """Count usage that arrived after its span ended (a streamed body); never raises.

        ``attributes`` are the client span's attributes plus the usage attributes.
        ``report_attributes`` are those of a usage report span the caller is about to end (a
        child of the client span starting at ``start_ns``, carrying the usage for exporters): its
        usage is counted here, once, so that span's own derivation in this process is skipped
        (matched by provider, models, tier, counts and start time), while a collector downstream,
        which sees only the exported span, counts it from there.
        """
        try:
            self.observe(
                SpanView(
                    "gen_ai.usage",
                    KIND_CLIENT,
                    start_ns,
                    end_ns,
                    0,
                    attributes,
                    resource,
                    service_name=service_name,
                )
            )
            if report_attributes is not None:
                usage = usage_from_attributes(report_attributes)
                if usage is not None:
                    report = SpanView(
                        USAGE_SPAN_NAME, KIND_INTERNAL, start_ns, end_ns, 0, report_attributes, resource
                    )
                    counted = self._counted
                    if len(counted) >= _HANDED_MAX:
                        _forget_oldest(counted)  # e.g. reports that went to another provider
                    provider, models, context = self._llm_inputs(report, report_attributes)
                    counted[(provider, models, context, usage, start_ns)] = True
        except Exception as exc:
            self.errors.record(self.processor_name, exc)

    def shutdown(self) -> None:
        if self.budgets is not None:
            self.budgets.shutdown()
