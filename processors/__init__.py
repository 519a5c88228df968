"""The signal engine (derivations over a span view) and the collector service."""

from .breaker import CircuitBreaker
from .budgets import BudgetTracker
from .cost import CostSpanProcessor
from .engine import EngineSpanProcessor, ProcessorErrors, SignalEngine, SignalSpanProcessor
from .events import EventBus, SignalEvent
from .families import CounterFamily, GaugeFamily, HistogramFamily, MetricFamily
from .pricing import PriceCatalog, TokenUsage
from .producer import SignalMetricProducer, attach_producer
from .ratelimit import RateLimitSpanProcessor
from .red import Dimension, RedSpanProcessor
from .schedule import MaintenanceWindow
from .slo import SloSpanProcessor, SloStatus
from .view import SpanView, view_from_otlp_span, view_from_readable_span

__all__ = [
    "BudgetTracker",
    "CircuitBreaker",
    "CostSpanProcessor",
    "CounterFamily",
    "Dimension",
    "EngineSpanProcessor",
    "EventBus",
    "GaugeFamily",
    "HistogramFamily",
    "MaintenanceWindow",
    "MetricFamily",
    "PriceCatalog",
    "ProcessorErrors",
    "RateLimitSpanProcessor",
    "RedSpanProcessor",
    "SignalEngine",
    "SignalEvent",
    "SignalMetricProducer",
    "SignalSpanProcessor",
    "SloSpanProcessor",
    "SloStatus",
    "SpanView",
    "TokenUsage",
    "attach_producer",
    "view_from_otlp_span",
    "view_from_readable_span",
]
