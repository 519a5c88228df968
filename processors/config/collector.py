"""Config block ``collector``: receivers, downstream exporters and the /metrics endpoint."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, SecretStr, field_validator

from ._types import Duration, StrictModel
from .collector_receivers import AuthConfig, ReceiverLimitsConfig, RedactionConfig, TlsServerConfig

__all__ = ["CollectorConfig", "EndpointConfig", "OtlpExporterConfig"]

ACTIVE = True


def _host_port(value: str) -> str:
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"expected host:port, got {value!r}")
    return value


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


class OtlpExporterConfig(StrictModel):
    """A downstream OTLP endpoint (forwarding arrives with issue #6)."""

    endpoint: str
    protocol: Literal["grpc", "http/protobuf", "http"] = "grpc"
    headers: dict[str, SecretStr] = Field(default_factory=dict)
    compression: Literal["gzip", "none"] = "none"
    timeout: Duration = 10.0
    insecure: bool | None = None


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
    prometheus: PrometheusConfig = Field(default_factory=PrometheusConfig)
    max_request_bytes: int = Field(16 * 1024 * 1024, ge=1024)
    auth: AuthConfig | None = None
    limits: ReceiverLimitsConfig = Field(default_factory=ReceiverLimitsConfig)
    redaction: RedactionConfig = Field(default_factory=RedactionConfig)
    workers: int = Field(1, ge=1, le=64, description="worker processes sharing the ports (SO_REUSEPORT)")
