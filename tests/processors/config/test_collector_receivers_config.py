"""collector.limits / auth / redaction / workers / receiver tls: defaults, mapping into the
collector's settings, and errors that name the field."""

from __future__ import annotations

import pytest

from spansignals.processors.collector import CollectorSettings
from spansignals.processors.collector.security import ServerTls
from spansignals.processors.collector.validation import SpanLimits
from spansignals.processors.config import ConfigError, load_config, loads_config

CONFIG = """
collector:
  receivers:
    otlp:
      grpc:
        endpoint: "127.0.0.1:4317"
        tls: {cert_file: /etc/s/server.pem, key_file: /etc/s/server.key, client_ca_file: /etc/s/ca.pem}
      http:
        endpoint: "127.0.0.1:4318"
        tls: {cert_file: /etc/s/server.pem, key_file: /etc/s/server.key}
  auth: {bearer_token: "${TOKEN}"}
  limits:
    max_attributes: 256
    max_attribute_value_bytes: 65536
    max_inflight_bytes: 33554432
    memory_limit_mib: 0
    retry_after: 5s
    read_timeout: 10s
    max_header_bytes: 8192
  redaction: {enabled: true}
  workers: 2
"""


def test_defaults_keep_everything_off_or_generous() -> None:
    """No collector keys: no auth, no TLS, no redaction, one worker, the documented limits."""
    settings = CollectorSettings.from_config(load_config({}))
    assert settings.bearer_token is None and settings.grpc_tls is None and settings.http_tls is None
    assert not settings.redact and settings.workers == 1 and not settings.reuse_port
    assert settings.span_limits == SpanLimits(1024, 1024 * 1024)
    assert settings.memory_limit_bytes == 1024 * 1024 * 1024
    assert settings.max_inflight_bytes == 128 * 1024 * 1024
    assert (settings.read_timeout_s, settings.max_header_bytes, settings.retry_after_s) == (30.0, 16384, 1.0)


def test_every_key_reaches_the_settings() -> None:
    """Each configured key lands in CollectorSettings (memory_limit_mib 0 turns the RSS limit off)."""
    settings = CollectorSettings.from_config(loads_config(CONFIG, env={"TOKEN": "t0ken"}))
    assert settings.grpc_tls == ServerTls("/etc/s/server.pem", "/etc/s/server.key", "/etc/s/ca.pem")
    assert settings.http_tls == ServerTls("/etc/s/server.pem", "/etc/s/server.key")
    assert settings.bearer_token == "t0ken"
    assert settings.span_limits == SpanLimits(256, 65536)
    assert (settings.max_inflight_bytes, settings.memory_limit_bytes) == (33554432, None)
    assert (settings.retry_after_s, settings.read_timeout_s, settings.max_header_bytes) == (5.0, 10.0, 8192)
    assert settings.redact and settings.workers == 2
    assert "t0ken" not in repr(settings)


@pytest.mark.parametrize(
    ("snippet", "field"),
    [
        ("collector: {workers: 0}", "collector.workers"),
        ("collector: {limits: {max_attributes: 0}}", "collector.limits.max_attributes"),
        ("collector: {limits: {bogus: 1}}", "collector.limits.bogus"),
        ("collector: {auth: {bearer_token: 'has space'}}", "collector.auth.bearer_token"),
        (
            "collector: {receivers: {otlp: {grpc: {endpoint: '127.0.0.1:1', tls: {cert_file: a}}}}}",
            "collector.receivers.otlp.grpc.tls.key_file",
        ),
    ],
)
def test_bad_values_name_the_field(snippet: str, field: str) -> None:
    """Invalid values are refused with the dotted path of the field."""
    with pytest.raises(ConfigError) as info:
        loads_config(snippet)
    assert field in str(info.value)
