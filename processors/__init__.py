"""The signal engine (derivations over a span view) and the collector service."""

from .breaker import CircuitBreaker
from .engine import EngineSpanProcessor, ProcessorErrors, SignalEngine, SignalSpanProcessor
from .events import EventBus, SignalEvent
from .families import CounterFamily, GaugeFamily, HistogramFamily, MetricFamily
from .producer import SignalMetricProducer, attach_producer
from .ratelimit import RateLimitSpanProcessor
from .red import Dimension, RedSpanProcessor
from .schedule import MaintenanceWindow
from .slo import SloSpanProcessor, SloStatus
from .view import SpanView, view_from_otlp_span, view_from_readable_span

__all__ = [
    "CircuitBreaker",
    "CounterFamily",
    "Dimension",
    "EngineSpanProcessor",
    "EventBus",
    "GaugeFamily",
    "HistogramFamily",
    "MaintenanceWindow",
    "MetricFamily",
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
    "attach_producer",
    "view_from_otlp_span",
    "view_from_readable_span",
]
