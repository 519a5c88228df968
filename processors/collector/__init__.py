"""The collector service: OTLP trace receivers (gRPC, HTTP) feeding the signal engine, and
``/metrics`` plus health endpoints. ``spansignals collector`` runs :func:`run`; tests and embedders
use :class:`Collector`. Forwarding, queues, auth and TLS arrive with issue #6.
"""

from .app import Collector, CollectorSettings, run
from .endpoints import Endpoint, ListenError, parse_endpoint
from .pipeline import TracePipeline
from .receiver import OtlpGrpcReceiver, OtlpHttpReceiver
from .server import MetricsServer, PrometheusExposition

__all__ = [
    "Collector",
    "CollectorSettings",
    "Endpoint",
    "ListenError",
    "MetricsServer",
    "OtlpGrpcReceiver",
    "OtlpHttpReceiver",
    "PrometheusExposition",
    "TracePipeline",
    "parse_endpoint",
    "run",
]
