"""Config block ``collector``: receivers, downstream exporters with their queue and retries, the
/metrics endpoint, OTLP export of the derived metrics, and shutdown.

Defaults follow the OTel Collector's exporterhelper where it has one (retry: 5 s initial, 30 s max
interval, 300 s max elapsed; a bounded in-memory queue) and DESIGN.md's embedded config otherwise.
Everything documented key by key in processors/collector/README.md.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, SecretStr, field_validator, model_validator

from ._types import Duration, StrictModel
from .collector_receivers import AuthConfig, ReceiverLimitsConfig, RedactionConfig, TlsServerConfig

__all__ = [
    "CollectorConfig",
    "EndpointConfig",
    "KeepaliveConfig",
    "MetricsExportConfig",
    "OtlpExporterConfig",
    "QueueConfig",
    "RetryConfig",
    "TlsClientConfig",
]

ACTIVE = True


def _host_port(value: str) -> str:
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"expected host:port, got {value!r}")
    return value


def _url_or_host_port(value: str) -> str:
    text = value.strip()
    rest = text.split("://", 1)[1] if "://" in text else text
    if "://" in text and not text.startswith(("http://", "https://")):
        raise ValueError(f"endpoint scheme must be http or https, got {value!r}")
    _host_port(rest.split("/", 1)[0])
    return text


class EndpointConfig(StrictModel):
    """A listening address ``host:port`` (loopback by default), optionally serving TLS."""

    endpoint: str
    tls: TlsServerConfig | None = None

    @field_validator("endpoint")
    @classmethod
    def _check(cls, v: str) -> str:
        return _host_port(v)


class OtlpReceiversConfig(StrictModel):
    grpc: EndpointConfig | None = Field(default_factory=lambda: EndpointConfig(endpoint="127.0.0.1:4317"))
    http: EndpointConfig | None = Field(default_factory=lambda: EndpointConfig(endpoint="127.0.0.1:4318"))


class ReceiversConfig(StrictModel):
    otlp: OtlpReceiversConfig = Field(default_factory=OtlpReceiversConfig)


class TlsClientConfig(StrictModel):
    """TLS towards a downstream: CA bundle to trust, and a client certificate for mTLS."""

    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None

    @model_validator(mode="after")
    def _pair(self) -> TlsClientConfig:
        if (self.cert_file is None) != (self.key_file is None):
            raise ValueError("tls.cert_file and tls.key_file go together (client certificate for mTLS)")
        return self


class RetryConfig(StrictModel):
    """Exponential backoff with jitter; a server's RetryInfo / Retry-After replaces the backoff."""

    enabled: bool = True
    initial_interval: Duration = 5.0
    max_interval: Duration = 30.0
    max_elapsed_time: Duration = 300.0
    multiplier: float = Field(1.5, ge=1.0)
    randomization_factor: float = Field(0.5, ge=0.0, le=1.0)


class KeepaliveConfig(StrictModel):
    """gRPC keepalive towards a downstream (the OTel Collector's ``configgrpc`` client defaults:
    10 s and 10 s): while a send is in flight, a ping every ``time``; no answer within ``timeout``
    closes the connection, so the retry reconnects instead of waiting on a dead one."""

    time: Duration = 10.0
    timeout: Duration = 10.0


class QueueConfig(StrictModel):
    """Per-exporter queue between the receivers (which acknowledge) and the sender."""

    kind: Literal["memory", "persistent"] = "memory"
    max_items: int = Field(100_000, ge=1)
    max_bytes: int = Field(24 * 1024 * 1024, ge=1024)
    """The bound that is memory: a full queue costs about this much RSS plus ~20-25 MB of sends in
    flight and refused requests (``benchmarks/collector_queue_memory.py``). 24 MiB meets
    ``max_items`` at ~250 bytes per span (the benchmark's 512-span requests: 219), so typical
    spans stop at the item bound and heavier ones at this one: full-queue RSS 143-149 MB either
    way, against 191 MB with the former 64 MiB once spans average over ~670 bytes."""
    path: str | None = None
    synchronous: Literal["full", "normal"] = "full"
    consumers: int | None = Field(None, ge=1, le=64)
    """Batches in flight per exporter: default 4 for memory, 1 for persistent (it bounds the
    duplicates a crash can cause to one batch)."""
    retry_after: Duration = 1.0

    @model_validator(mode="after")
    def _path(self) -> QueueConfig:
        if self.kind == "persistent" and not self.path:
            raise ValueError("queue.path (a directory) is required when queue.kind is persistent")
        return self


class OtlpExporterConfig(StrictModel):
    """A downstream OTLP endpoint: traces, metrics and logs are forwarded to it."""

    endpoint: str
    protocol: Literal["grpc", "http/protobuf", "http"] = "grpc"
    headers: dict[str, SecretStr] = Field(default_factory=dict)
    compression: Literal["gzip", "none"] = "none"
    timeout: Duration = 10.0
    insecure: bool | None = None
    tls: TlsClientConfig = Field(default_factory=TlsClientConfig)
    retry: RetryConfig = Field(default_factory=RetryConfig)
    keepalive: KeepaliveConfig | None = Field(default_factory=KeepaliveConfig)
    """gRPC only; ``null`` turns keepalive off."""
    queue: QueueConfig | None = None
    max_request_bytes: int = Field(4 * 1024 * 1024, ge=0)
    """Queued requests of one signal are merged into one send up to this size (0: never merge)."""

    @field_validator("endpoint")
    @classmethod
    def _check(cls, v: str) -> str:
        return _url_or_host_port(v)


class MetricsExportConfig(StrictModel):
    """Push the derived metrics over OTLP too (besides ``/metrics``)."""

    endpoint: str
    protocol: Literal["grpc", "http/protobuf", "http"] = "grpc"
    interval: Duration = 60.0
    timeout: Duration = 10.0
    headers: dict[str, SecretStr] = Field(default_factory=dict)
    insecure: bool | None = None

    @field_validator("endpoint")
    @classmethod
    def _check(cls, v: str) -> str:
        return _url_or_host_port(v)


class PrometheusConfig(StrictModel):
    """Where ``/metrics`` and the health endpoints are served."""

    endpoint: str = "127.0.0.1:9464"

    @field_validator("endpoint")
    @classmethod
    def _check(cls, v: str) -> str:
        return _host_port(v)


class CollectorConfig(StrictModel):
    """``collector``: defaults are the embedded config of DESIGN.md (OTLP gRPC 127.0.0.1:4317,
    HTTP 127.0.0.1:4318, /metrics on 127.0.0.1:9464, no downstream)."""

    receivers: ReceiversConfig = Field(default_factory=ReceiversConfig)
    exporters: dict[str, OtlpExporterConfig] | None = None
    queue: QueueConfig = Field(default_factory=QueueConfig)
    prometheus: PrometheusConfig = Field(default_factory=PrometheusConfig)
    metrics_export: MetricsExportConfig | None = None
    max_request_bytes: int = Field(16 * 1024 * 1024, ge=1024)
    auth: AuthConfig | None = None
    limits: ReceiverLimitsConfig = Field(default_factory=ReceiverLimitsConfig)
    redaction: RedactionConfig = Field(default_factory=RedactionConfig)
    workers: int = Field(1, ge=1, le=64, description="worker processes sharing the ports (SO_REUSEPORT)")
    shutdown_timeout: Duration = 5.0
    unready_after: Duration = 30.0
