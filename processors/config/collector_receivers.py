"""Config models for locking down and bounding the collector's receivers (part of ``collector``).

``collector.receivers.otlp.{grpc,http}.tls`` (:class:`TlsServerConfig`), ``collector.auth``
(:class:`AuthConfig`), ``collector.limits`` (:class:`ReceiverLimitsConfig`),
``collector.redaction`` (:class:`RedactionConfig`). Every key and default is documented in
processors/collector/README.md; all are off or generous by default so the DESIGN.md example keeps
its behaviour.
"""

from __future__ import annotations

from pydantic import Field, SecretStr, field_validator

from ._types import Duration, StrictModel

__all__ = ["AuthConfig", "ReceiverLimitsConfig", "RedactionConfig", "TlsServerConfig"]


class TlsServerConfig(StrictModel):
    """Serve TLS with ``cert_file`` + ``key_file`` (PEM); ``client_ca_file`` requires client
    certificates signed by that CA (mTLS)."""

    cert_file: str
    key_file: str
    client_ca_file: str | None = None


class AuthConfig(StrictModel):
    """``Authorization: Bearer <token>`` required on the OTLP receivers (gRPC metadata and HTTP).

    ``bearer_token`` is usually ``"${SPANSIGNALS_RECEIVER_TOKEN}"``. ``protect_metrics`` /
    ``protect_health`` (default false) require it on ``/metrics`` / ``/health/*`` too.
    """

    bearer_token: SecretStr
    protect_metrics: bool = False
    protect_health: bool = False

    @field_validator("bearer_token")
    @classmethod
    def _not_blank(cls, v: SecretStr) -> SecretStr:
        value = v.get_secret_value()
        if not value.strip():
            raise ValueError("bearer_token must not be empty (is its ${ENV_VAR} set?)")
        if any(c.isspace() for c in value):
            raise ValueError("bearer_token must not contain whitespace")
        return v


class ReceiverLimitsConfig(StrictModel):
    """Per-span caps (invalid spans go to ``partial_success``), memory budgets that turn into
    retryable refusals, and protocol limits against slow or oversized clients."""

    max_attributes: int = Field(1024, ge=1)
    max_attribute_value_bytes: int = Field(1024 * 1024, ge=64)
    max_inflight_bytes: int = Field(128 * 1024 * 1024, ge=1024)
    memory_limit_mib: int = Field(1024, ge=0, description="0 turns the RSS limit off")
    retry_after: Duration = 1.0
    read_timeout: Duration = 30.0
    max_header_bytes: int = Field(16 * 1024, ge=1024)
    max_connections: int = Field(4096, ge=0, description="open connections per receiver; 0 = no cap")
    max_concurrent_streams: int = Field(
        100, ge=0, description="HTTP/2 streams (calls) per gRPC connection; 0 = grpc's default (no cap)"
    )


class RedactionConfig(StrictModel):
    """Rewrite credentials in incoming span attributes before derivation and forwarding."""

    enabled: bool = False
