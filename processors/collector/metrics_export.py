"""Push the collector's derived metrics over OTLP as well as serving ``/metrics``.

With ``collector.metrics_export: {endpoint, protocol, interval}`` the collector runs the official
OTel ``PeriodicExportingMetricReader`` with the OTLP metric exporter (``grpc`` or
``http/protobuf``) on a private ``MeterProvider``, and
:func:`~spansignals.processors.producer.attach_producer` merges the same pre-aggregated families
that ``/metrics`` renders into each collection. Cumulative temporality (the SDK default), so a
Prometheus-compatible backend that ingests OTLP sees the same counters as a scrape. The
provider's resource is the collector's (``service.name``).
"""

from __future__ import annotations

import logging
from typing import Any

from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
from opentelemetry.sdk.resources import Resource

from ..producer import SignalMetricProducer, attach_producer

__all__ = ["OtlpMetricsPush"]

_logger = logging.getLogger(__name__)


class OtlpMetricsPush:
    """A running periodic OTLP export of ``producer``'s families (``config``: a
    ``MetricsExportConfig``); :meth:`shutdown` exports once more and stops."""

    def __init__(self, producer: SignalMetricProducer, config: Any, *, resource: Resource) -> None:
        headers = {k: v.get_secret_value() for k, v in config.headers.items()} or None
        endpoint: str = config.endpoint
        if config.protocol == "grpc":
            from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import (
                OTLPMetricExporter as GrpcExporter,
            )

            insecure = config.insecure if config.insecure is not None else not endpoint.startswith("https://")
            exporter: Any = GrpcExporter(
                endpoint=endpoint, insecure=insecure, headers=headers, timeout=config.timeout
            )
        else:
            from opentelemetry.exporter.otlp.proto.http.metric_exporter import (
                OTLPMetricExporter as HttpExporter,
            )

            if "://" not in endpoint:
                endpoint = f"http://{endpoint}"
            if not endpoint.rstrip("/").endswith("/v1/metrics"):
                endpoint = endpoint.rstrip("/") + "/v1/metrics"
            exporter = HttpExporter(endpoint=endpoint, headers=headers, timeout=config.timeout)
        self.endpoint = endpoint
        self.reader = PeriodicExportingMetricReader(
            exporter,
            export_interval_millis=config.interval * 1000,
            export_timeout_millis=config.timeout * 1000,
        )
        self.meter_provider = MeterProvider(resource=resource, metric_readers=[self.reader])
        attach_producer(self.reader, producer)

    def shutdown(self) -> None:
        """Final export and stop; never raises."""
        try:
            self.meter_provider.shutdown()
        except Exception:
            _logger.debug("OTLP metrics push shutdown failed", exc_info=True)
