"""``configure()``: wire the signal engine into the app's OpenTelemetry setup (or create one)."""

from __future__ import annotations

import atexit
import logging
import os
import threading
import weakref
from collections.abc import Mapping, Sequence
from typing import Any

from opentelemetry import metrics, trace
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.sampling import Sampler

from spansignals.processors.alerts import start_alerting
from spansignals.processors.config import load_config
from spansignals.processors.engine import EngineSpanProcessor
from spansignals.processors.factory import build_engine
from spansignals.processors.producer import SignalMetricProducer, attach_producer, readers_of
from spansignals.processors.providers import ProviderTable

from . import _env
from ._pipeline import build_meter_provider, build_resource, build_tracer_provider
from ._telemetry import Telemetry
from .httpx_hooks import HttpxHooks, build_enrichers

__all__ = ["active_telemetry", "configure"]

_logger = logging.getLogger(__name__)

_lock = threading.RLock()
_active: Telemetry | None = None


def active_telemetry() -> Telemetry | None:
    """The handle of the last ``configure()`` call that has not been shut down, if any."""
    return _active


def _exporter_list(
    name: str, value: str | Sequence[str] | None, env: str, choices: frozenset[str], default: tuple[str, ...]
) -> tuple[str, ...]:
    if value is not None and not isinstance(value, str):
        value = ",".join(value) if value else "none"
    return _env.resolve(name, value, (env,), default, _env.parse_choices(choices))


def configure(
    config: str | os.PathLike[str] | Mapping[str, Any] | Any | None = None,
    *,
    service_name: str | None = None,
    traces_exporter: str | Sequence[str] | None = None,
    metrics_exporter: str | Sequence[str] | None = None,
    otlp_protocol: str | None = None,
    otlp_endpoint: str | None = None,
    prometheus_host: str | None = None,
    prometheus_port: int | None = None,
    sampler: Sampler | None = None,
    instrument_httpx: bool | None = None,
    tracer_provider: TracerProvider | None = None,
    meter_provider: MeterProvider | None = None,
    set_global_providers: bool = True,
) -> Telemetry:
    """Install spansignals in this process and return its :class:`Telemetry` handle.

    ``config``: a YAML path, a mapping, a loaded ``SpansignalsConfig``, or ``None`` (the file
    named by ``SPANSIGNALS_CONFIG``, else defaults). Invalid configuration raises ``ConfigError``.

    Providers: ``tracer_provider`` / ``meter_provider`` when given (SDK providers, used as they
    are and never set global); else the app's global SDK providers when it has set them up; else
    new ones built from the standard variables and set global (unless ``set_global_providers``
    is false): resource from ``service_name`` (default: config ``service.name``, then
    ``OTEL_SERVICE_NAME``) and ``OTEL_RESOURCE_ATTRIBUTES``; span exporters from
    ``traces_exporter`` (default ``OTEL_TRACES_EXPORTER``, then ``otlp``); metric readers from
    ``metrics_exporter`` (default ``OTEL_METRICS_EXPORTER``, then ``otlp``; ``prometheus`` serves
    ``/metrics`` on ``prometheus_host``:``prometheus_port``, default
    ``OTEL_EXPORTER_PROMETHEUS_HOST/PORT``, then localhost:9464); OTLP over ``otlp_protocol``
    (default ``OTEL_EXPORTER_OTLP_{TRACES,METRICS}_PROTOCOL``, ``OTEL_EXPORTER_OTLP_PROTOCOL``,
    then ``grpc``) to ``otlp_endpoint`` (default: the exporters' own ``OTEL_EXPORTER_OTLP_*``
    variables); sampling by ``RecordAllSampler(sampler)`` (default delegate:
    ``OTEL_TRACES_SAMPLER``/``_ARG``), so derived signals count every span.

    httpx: every client, sync and async, is instrumented with spansignals' hooks unless
    ``instrument_httpx`` is false (default ``SPANSIGNALS_INSTRUMENT_HTTPX``, then true).

    A second call while a handle is active returns that handle (and logs a warning) instead of
    installing twice; call ``shutdown()`` first to reconfigure. ``OTEL_SDK_DISABLED=true``
    returns an inactive handle. Bad arguments raise ``ValueError`` naming the argument; bad
    environment values log a warning and use the default.
    """
    global _active
    with _lock:
        if _active is not None and not _active.is_shutdown:
            _logger.warning(
                "spansignals: configure() was already called; returning the active handle "
                "(call shutdown() on it first to reconfigure)"
            )
            return _active
        cfg = load_config(config)
        if _env.env_flag(_env.OTEL_SDK_DISABLED, False):
            _logger.info("spansignals: OTEL_SDK_DISABLED is true; nothing installed")
            return Telemetry(
                config=cfg,
                engine=build_engine(cfg),
                producer=None,
                tracer_provider=None,
                meter_provider=None,
                owns_tracer_provider=False,
                owns_meter_provider=False,
                span_processor=None,
                hooks=None,
                httpx_instrumented=False,
                enabled=False,
            )
        telemetry = _install(
            cfg,
            service_name=service_name,
            traces_exporter=traces_exporter,
            metrics_exporter=metrics_exporter,
            otlp_protocol=otlp_protocol,
            otlp_endpoint=otlp_endpoint,
            prometheus_host=prometheus_host,
            prometheus_port=prometheus_port,
            sampler=sampler,
            instrument_httpx=instrument_httpx,
            tracer_provider=tracer_provider,
            meter_provider=meter_provider,
            set_global_providers=set_global_providers,
        )
        _active = telemetry
        return telemetry


def _forget(telemetry: Telemetry) -> None:
    global _active
    with _lock:
        if _active is telemetry:
            _active = None


def _check_arguments(
    tracer_provider: Any, meter_provider: Any, sampler: Any, prometheus_port: Any, service_name: Any
) -> None:
    if tracer_provider is not None and not isinstance(tracer_provider, TracerProvider):
        raise ValueError(
            f"tracer_provider: must be an opentelemetry.sdk TracerProvider, "
            f"got {type(tracer_provider).__name__}"
        )
    if meter_provider is not None and not isinstance(meter_provider, MeterProvider):
        raise ValueError(
            f"meter_provider: must be an opentelemetry.sdk MeterProvider, got {type(meter_provider).__name__}"
        )
    if sampler is not None and not isinstance(sampler, Sampler):
        raise ValueError(f"sampler: must be an opentelemetry Sampler, got {type(sampler).__name__}")
    if prometheus_port is not None and (
        isinstance(prometheus_port, bool)
        or not isinstance(prometheus_port, int)
        or not 0 <= prometheus_port <= 65535
    ):
        raise ValueError(f"prometheus_port: must be an int in 0..65535, got {prometheus_port!r}")
    if service_name is not None and (not isinstance(service_name, str) or not service_name):
        raise ValueError(f"service_name: must be a non-empty string, got {service_name!r}")


def _install(
    cfg: Any,
    *,
    service_name: str | None,
    traces_exporter: str | Sequence[str] | None,
    metrics_exporter: str | Sequence[str] | None,
    otlp_protocol: str | None,
    otlp_endpoint: str | None,
    prometheus_host: str | None,
    prometheus_port: int | None,
    sampler: Sampler | None,
    instrument_httpx: bool | None,
    tracer_provider: TracerProvider | None,
    meter_provider: MeterProvider | None,
    set_global_providers: bool,
) -> Telemetry:
    _check_arguments(tracer_provider, meter_provider, sampler, prometheus_port, service_name)
    protocols = _env.parse_choice(_env.OTLP_PROTOCOLS)
    if otlp_protocol is not None:
        otlp_protocol = _env.resolve("otlp_protocol", otlp_protocol, (), "grpc", protocols)
    traces = _exporter_list(
        "traces_exporter", traces_exporter, _env.OTEL_TRACES_EXPORTER, _env.TRACES_EXPORTERS, ("otlp",)
    )
    metric_exporters = _exporter_list(
        "metrics_exporter", metrics_exporter, _env.OTEL_METRICS_EXPORTER, _env.METRICS_EXPORTERS, ("otlp",)
    )
    do_httpx = (
        instrument_httpx
        if instrument_httpx is not None
        else _env.env_flag(_env.SPANSIGNALS_INSTRUMENT_HTTPX, True)
    )

    engine = build_engine(cfg)
    resource = None

    def get_resource() -> Any:
        nonlocal resource
        if resource is None:
            resource = build_resource(service_name or cfg.service.name, cfg.service.resource_attributes)
        return resource

    # Traces: the given provider, the app's global SDK provider, or a new one.
    owns_tp = False
    tp: Any = tracer_provider
    if tp is None:
        current = trace.get_tracer_provider()
        if isinstance(current, TracerProvider):
            tp = current
            _warn_if_sampler_drops(tp)
            if sampler is not None or traces_exporter is not None:
                _logger.warning(
                    "spansignals: sampler/traces_exporter are ignored: the app's tracer provider keeps its "
                    "own sampler and exporters"
                )
        else:
            tp = build_tracer_provider(get_resource(), traces, sampler, otlp_protocol, otlp_endpoint)
            owns_tp = True
            if set_global_providers:
                if _is_proxy(current):
                    trace.set_tracer_provider(tp)
                else:
                    _logger.warning(
                        "spansignals: the global tracer provider is not an SDK TracerProvider "
                        "(%s); spansignals uses its own for httpx spans",
                        type(current).__name__,
                    )
    # Derivation is deferred off the span path (processors/deferred.py); the rate-limit
    # derivation still runs on it for client spans, because guard() reads its breakers.
    span_processor = EngineSpanProcessor(engine, deferred=True)
    tp.add_span_processor(span_processor)

    # Metrics: the same choice; our pre-aggregated families join every reader's collection.
    owns_mp = False
    server = None
    mp: Any = meter_provider
    if mp is None:
        current_mp = metrics.get_meter_provider()
        if isinstance(current_mp, MeterProvider):
            mp = current_mp
            if metrics_exporter is not None or prometheus_port is not None or prometheus_host is not None:
                _logger.warning(
                    "spansignals: metrics_exporter/prometheus_* are ignored: the app's meter provider keeps "
                    "its own readers (spansignals' metrics join them)"
                )
        else:
            mp, server = build_meter_provider(
                get_resource(),
                metric_exporters,
                otlp_protocol,
                otlp_endpoint,
                prometheus_host,
                prometheus_port,
            )
            owns_mp = True
            if set_global_providers and _is_proxy(current_mp):
                metrics.set_meter_provider(mp)
    producer = SignalMetricProducer()
    producer.register(*engine.metric_families())
    producer.add_before_produce(engine.flush)
    readers = readers_of(mp)
    for reader in readers:
        attach_producer(reader, producer)
    if not readers:
        _logger.warning(
            "spansignals: the meter provider has no metric reader; derived metrics are not exported"
        )

    # In-process alerting: rules over the derived signals, notifications on its own workers.
    alerts = start_alerting(cfg, engine, producer=producer)

    table = ProviderTable.from_config(cfg.providers)
    hooks = HttpxHooks(table, errors=engine.errors, enrichers=build_enrichers(cfg, engine))
    for enricher in hooks.enrichers:
        # Enrichers that emit spans of their own (the usage enricher's streamed-usage reports)
        # emit them through the provider the app's httpx spans go to, global or not.
        if getattr(enricher, "tracer_provider", False) is None:
            enricher.tracer_provider = tp  # type: ignore[attr-defined]
    httpx_instrumented = False
    if do_httpx:
        httpx_instrumented = _instrument_httpx(hooks, tp, mp)

    telemetry = Telemetry(
        config=cfg,
        engine=engine,
        producer=producer,
        tracer_provider=tp,
        meter_provider=mp,
        owns_tracer_provider=owns_tp,
        owns_meter_provider=owns_mp,
        span_processor=span_processor,
        hooks=hooks,
        httpx_instrumented=httpx_instrumented,
        prometheus_server=server,
        on_shutdown=_forget,
        alerts=alerts,
    )
    if owns_tp or owns_mp:
        # The SDK's own exit hooks wait without limit on a hanging exporter; ours has a deadline.
        atexit.register(_shutdown_at_exit, weakref.ref(telemetry))
    _logger.info(
        "spansignals: configured (%d derivations, httpx %s, /metrics %s)",
        len(engine.processors),
        "instrumented" if httpx_instrumented else "not instrumented",
        telemetry.prometheus_address,
    )
    return telemetry


EXIT_TIMEOUT_S = 10.0
"""How long the exit hook waits for providers spansignals created to flush (the OTLP exporters'
default timeout)."""


def _shutdown_at_exit(ref: weakref.ReferenceType[Telemetry]) -> None:
    telemetry = ref()
    if telemetry is not None:
        telemetry.shutdown(timeout=EXIT_TIMEOUT_S)


def _is_proxy(provider: Any) -> bool:
    """Whether a global provider is still the API's placeholder (so it may be set)."""
    return type(provider).__name__.startswith(("Proxy", "_Proxy", "NoOp", "_NoOp"))


def _warn_if_sampler_drops(tp: TracerProvider) -> None:
    from .sampling import RecordAllSampler

    sampler = getattr(tp, "sampler", None)
    if sampler is None or isinstance(sampler, RecordAllSampler):
        return
    description = sampler.get_description()
    if "AlwaysOnSampler" not in description or "Ratio" in description:
        _logger.info(
            "spansignals: the app's sampler (%s) may drop spans, and derived signals only see "
            "recorded ones; wrap it in spansignals.sdk.RecordAllSampler to keep them exact",
            description,
        )


def _instrument_httpx(hooks: HttpxHooks, tp: Any, mp: Any) -> bool:
    """Instrument every httpx client with ``hooks``; ``False`` when someone else already did."""
    try:
        from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor
    except ImportError:
        _logger.warning(
            "spansignals: opentelemetry-instrumentation-httpx is not installed; httpx not instrumented"
        )
        return False
    instrumentor = HTTPXClientInstrumentor()
    if instrumentor.is_instrumented_by_opentelemetry:
        _logger.warning(
            "spansignals: httpx was already instrumented without spansignals' hooks; provider "
            "attributes and redaction are missing from its spans (let configure() instrument it)"
        )
        return False
    instrumentor.instrument(tracer_provider=tp, meter_provider=mp, **hooks.instrument_kwargs())
    return True
