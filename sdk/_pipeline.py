"""Build the providers ``configure()`` creates when the app has none: resource, exporters, readers.

Exporters are imported only when chosen (the gRPC stack is slow to import). OTLP exporters are
built without arguments unless ``configure()`` got an endpoint, so they read their own
``OTEL_EXPORTER_OTLP_*`` variables (endpoint, headers, certificates, compression, timeout) with
the SDK's exact rules.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import MetricReader, PeriodicExportingMetricReader
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter
from opentelemetry.sdk.trace.sampling import Sampler

from . import _env
from .sampling import RecordAllSampler, sampler_from_env

__all__ = ["build_meter_provider", "build_resource", "build_tracer_provider"]

_logger = logging.getLogger(__name__)


def build_resource(service_name: str | None, extra: Mapping[str, str] | None = None) -> Resource:
    """The SDK resource (``OTEL_RESOURCE_ATTRIBUTES``, ``OTEL_SERVICE_NAME``), with ``extra`` and
    ``service_name`` (when given) on top."""
    attributes: dict[str, Any] = dict(extra or {})
    if service_name:
        attributes["service.name"] = service_name
    return Resource.create(attributes)


def _protocol(signal: str, explicit: str | None) -> str:
    if explicit is not None:
        return explicit
    return _env.resolve(
        "otlp_protocol",
        None,
        (f"OTEL_EXPORTER_OTLP_{signal.upper()}_PROTOCOL", _env.OTEL_EXPORTER_OTLP_PROTOCOL),
        "grpc",
        _env.parse_choice(_env.OTLP_PROTOCOLS),
    )


def _http_endpoint(endpoint: str, signal: str) -> str:
    path = f"/v1/{signal}"
    return endpoint if endpoint.rstrip("/").endswith(path) else endpoint.rstrip("/") + path


def otlp_span_exporter(protocol: str | None = None, endpoint: str | None = None) -> SpanExporter:
    """An OTLP span exporter over gRPC or HTTP/protobuf."""
    proto = _protocol("traces", protocol)
    if proto == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

        return OTLPSpanExporter(endpoint=endpoint) if endpoint else OTLPSpanExporter()
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HttpSpanExporter

    return HttpSpanExporter(endpoint=_http_endpoint(endpoint, "traces")) if endpoint else HttpSpanExporter()


def otlp_metric_exporter(protocol: str | None = None, endpoint: str | None = None) -> Any:
    """An OTLP metric exporter over gRPC or HTTP/protobuf."""
    proto = _protocol("metrics", protocol)
    if proto == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter

        return OTLPMetricExporter(endpoint=endpoint) if endpoint else OTLPMetricExporter()
    from opentelemetry.exporter.otlp.proto.http.metric_exporter import (
        OTLPMetricExporter as HttpMetricExporter,
    )

    return (
        HttpMetricExporter(endpoint=_http_endpoint(endpoint, "metrics")) if endpoint else HttpMetricExporter()
    )


def build_tracer_provider(
    resource: Resource,
    exporters: Sequence[str],
    sampler: Sampler | None,
    otlp_protocol: str | None,
    otlp_endpoint: str | None,
) -> TracerProvider:
    """A ``TracerProvider`` sampling with ``RecordAllSampler(sampler or the env's)`` and a batch
    processor per exporter (``otlp``, ``console``)."""
    # No SDK atexit hook: configure() registers one that shuts down within a deadline instead.
    tp = TracerProvider(
        resource=resource, sampler=RecordAllSampler(sampler or sampler_from_env()), shutdown_on_exit=False
    )
    for name in exporters:
        exporter: SpanExporter
        if name == "otlp":
            exporter = otlp_span_exporter(otlp_protocol, otlp_endpoint)
        elif name == "console":
            from opentelemetry.sdk.trace.export import ConsoleSpanExporter

            exporter = ConsoleSpanExporter()
        else:  # parse_choices only lets known names through
            continue
        tp.add_span_processor(BatchSpanProcessor(exporter))
    return tp


def build_meter_provider(
    resource: Resource,
    exporters: Sequence[str],
    otlp_protocol: str | None,
    otlp_endpoint: str | None,
    prometheus_host: str | None,
    prometheus_port: int | None,
) -> tuple[MeterProvider, Any]:
    """A ``MeterProvider`` with a reader per exporter (``otlp``, ``prometheus``, ``console``), and
    the ``/metrics`` HTTP server when ``prometheus`` is chosen (else ``None``).

    The Prometheus reader uses a private registry, so the app's own ``prometheus_client``
    metrics (default registry) are neither duplicated nor mixed in.
    """
    readers: list[MetricReader] = []
    server = None
    for name in exporters:
        if name == "otlp":
            readers.append(PeriodicExportingMetricReader(otlp_metric_exporter(otlp_protocol, otlp_endpoint)))
        elif name == "console":
            from opentelemetry.sdk.metrics.export import ConsoleMetricExporter

            readers.append(PeriodicExportingMetricReader(ConsoleMetricExporter()))
        elif name == "prometheus":
            reader, server = _prometheus_reader(prometheus_host, prometheus_port)
            readers.append(reader)
    return MeterProvider(resource=resource, metric_readers=readers, shutdown_on_exit=False), server


def _prometheus_reader(host: str | None, port: int | None) -> tuple[MetricReader, Any]:
    from opentelemetry.exporter.prometheus import PrometheusMetricReader
    from prometheus_client import CollectorRegistry, start_http_server

    addr = _env.resolve(
        "prometheus_host", host, (_env.OTEL_EXPORTER_PROMETHEUS_HOST,), _env.DEFAULT_PROMETHEUS_HOST, str
    )
    bind_port = _env.resolve(
        "prometheus_port",
        port,
        (_env.OTEL_EXPORTER_PROMETHEUS_PORT,),
        _env.DEFAULT_PROMETHEUS_PORT,
        _env.parse_port,
    )
    registry = CollectorRegistry(auto_describe=False)
    reader = PrometheusMetricReader(registry=registry)
    try:
        server, _thread = start_http_server(bind_port, addr=addr, registry=registry)
    except OSError as exc:
        # The app must start even when the port is taken; the metrics are still in the reader.
        _logger.error(
            "spansignals: cannot serve /metrics on %s:%s (%s); Prometheus scraping is off",
            addr,
            bind_port,
            exc,
        )
        return reader, None
    _logger.info(
        "spansignals: serving Prometheus /metrics on http://%s:%s/metrics", addr, server.server_address[1]
    )
    return reader, server
