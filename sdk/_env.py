"""The environment variables ``configure()`` reads, and the one way it resolves a setting.

Every setting resolves *argument → environment → default*, the OTel SDK habit: an invalid
argument raises ``ValueError`` naming it; an invalid environment value logs a warning and the
default is used.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Collection
from typing import TypeVar

_logger = logging.getLogger(__name__)

T = TypeVar("T")

OTEL_SDK_DISABLED = "OTEL_SDK_DISABLED"
"""``true`` turns ``configure()`` into a no-op handle."""
OTEL_SERVICE_NAME = "OTEL_SERVICE_NAME"
"""Service name (wins over ``service.name`` in ``OTEL_RESOURCE_ATTRIBUTES``; read by the SDK)."""
OTEL_TRACES_EXPORTER = "OTEL_TRACES_EXPORTER"
"""Comma-separated: ``otlp`` (default), ``console``, ``none``."""
OTEL_METRICS_EXPORTER = "OTEL_METRICS_EXPORTER"
"""Comma-separated: ``otlp`` (default), ``prometheus``, ``console``, ``none``."""
OTEL_EXPORTER_OTLP_PROTOCOL = "OTEL_EXPORTER_OTLP_PROTOCOL"
"""``grpc`` (default, as the Python SDK) or ``http/protobuf``."""
OTEL_EXPORTER_OTLP_TRACES_PROTOCOL = "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL"
OTEL_EXPORTER_OTLP_METRICS_PROTOCOL = "OTEL_EXPORTER_OTLP_METRICS_PROTOCOL"
OTEL_EXPORTER_PROMETHEUS_HOST = "OTEL_EXPORTER_PROMETHEUS_HOST"
"""Bind address of the app's ``/metrics`` (default ``localhost``)."""
OTEL_EXPORTER_PROMETHEUS_PORT = "OTEL_EXPORTER_PROMETHEUS_PORT"
"""Port of the app's ``/metrics`` (default 9464)."""
SPANSIGNALS_INSTRUMENT_HTTPX = "SPANSIGNALS_INSTRUMENT_HTTPX"
"""``false`` stops ``configure()`` from instrumenting every httpx client (default true)."""

TRACES_EXPORTERS = frozenset({"otlp", "console", "none"})
METRICS_EXPORTERS = frozenset({"otlp", "prometheus", "console", "none"})
OTLP_PROTOCOLS = frozenset({"grpc", "http/protobuf"})

DEFAULT_PROMETHEUS_HOST = "localhost"
DEFAULT_PROMETHEUS_PORT = 9464


def resolve(
    name: str,
    argument: T | str | None,
    env_names: tuple[str, ...],
    default: T,
    parse: Callable[[str], T],
) -> T:
    """``argument`` if given (``parse``/validation errors raise ``ValueError`` naming ``name``),
    else the first set variable of ``env_names`` (a bad value warns and yields ``default``),
    else ``default``."""
    if argument is not None:
        try:
            return parse(argument) if isinstance(argument, str) else argument
        except ValueError as exc:
            raise ValueError(f"{name}: {exc}") from None
    for env in env_names:
        raw = os.environ.get(env)
        if raw is None or not raw.strip():
            continue
        try:
            return parse(raw.strip())
        except ValueError as exc:
            _logger.warning("spansignals: ignoring %s=%r (%s); using the default %r", env, raw, exc, default)
            return default
    return default


def parse_choice(choices: Collection[str]) -> Callable[[str], str]:
    """A parser accepting one of ``choices`` (case-insensitive)."""

    def parse(raw: str) -> str:
        value = raw.strip().lower()
        if value not in choices:
            raise ValueError(f"must be one of {sorted(choices)}, got {raw!r}")
        return value

    return parse


def parse_choices(choices: Collection[str]) -> Callable[[str], tuple[str, ...]]:
    """A parser for a comma-separated list of ``choices``; ``none`` alone means the empty list."""
    one = parse_choice(choices)

    def parse(raw: str) -> tuple[str, ...]:
        items = tuple(dict.fromkeys(one(part) for part in raw.split(",") if part.strip()))
        if not items:
            raise ValueError(f"must be a comma-separated list of {sorted(choices)}, got {raw!r}")
        return tuple(i for i in items if i != "none")

    return parse


def parse_port(raw: str) -> int:
    """A TCP port, 0 (any free port) to 65535."""
    try:
        port = int(raw)
    except ValueError:
        raise ValueError(f"must be a port number, got {raw!r}") from None
    if not 0 <= port <= 65535:
        raise ValueError(f"must be in 0..65535, got {port}")
    return port


def parse_bool(raw: str) -> bool:
    """``true``/``false`` (also 1/0, yes/no, on/off), case-insensitive."""
    value = raw.strip().lower()
    if value in ("true", "1", "yes", "on"):
        return True
    if value in ("false", "0", "no", "off"):
        return False
    raise ValueError(f"must be true or false, got {raw!r}")


def env_flag(name: str, default: bool) -> bool:
    """A boolean environment variable (bad values warn and give ``default``)."""
    return resolve(name, None, (name,), default, parse_bool)
