"""Build the signal engine a configuration asks for: the one place both front doors call.

Each derivation appears here once, in the order it runs: RED first (cheapest), then the
derivations of later issues as they land.
"""

from __future__ import annotations

from .budgets import BudgetTracker
from .config import SpansignalsConfig
from .cost import CostSpanProcessor
from .engine import SignalEngine, SignalSpanProcessor
from .pricing import PriceCatalog
from .providers import ProviderTable
from .ratelimit import RateLimitSpanProcessor
from .red import DEFAULT_BUCKETS_S, Dimension, RedSpanProcessor
from .slo import SloSpanProcessor

__all__ = ["build_engine"]


def build_engine(config: SpansignalsConfig) -> SignalEngine:
    """A :class:`SignalEngine` with every derivation ``config`` enables."""
    processors: list[SignalSpanProcessor] = []
    if config.red.enabled:
        processors.append(
            RedSpanProcessor(
                dimensions=[Dimension(d.name, d.default) for d in config.red.dimensions],
                buckets_s=config.red.buckets or DEFAULT_BUCKETS_S,
                max_series=config.red.max_series,
            )
        )
    processors.append(
        CostSpanProcessor(
            PriceCatalog(config.pricing.models, config.pricing.apis),
            budgets=BudgetTracker(config.budgets) if config.budgets else None,
            table=ProviderTable.from_config(config.providers),
        )
    )
    if config.ratelimits.enabled:
        processors.append(
            RateLimitSpanProcessor(
                config.ratelimits,
                providers=ProviderTable.from_config(config.providers),
                service_name=config.service.name,
            )
        )
    if config.slos:
        processors.append(
            SloSpanProcessor(
                config.slos,
                maintenance=config.alerts.maintenance,
                providers=ProviderTable.from_config(config.providers),
                evaluation_interval=config.alerts.evaluation_interval,
            )
        )
    return SignalEngine(processors)
