"""Config block ``alerts`` (issue #7): rules, receivers, routes, silences, maintenance, escalation."""

from __future__ import annotations

import datetime as dt
import re
from typing import Annotated, Literal

from pydantic import (
    AfterValidator,
    Field,
    SecretStr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import InitErrorDetails, PydanticCustomError

from ._types import Duration, StrictModel, TimeZoneName

__all__ = [
    "AlertRuleConfig",
    "AlertsConfig",
    "ApiConfig",
    "DeliveryConfig",
    "MaintenanceConfig",
    "ReceiverConfig",
    "RouteConfig",
    "ScheduleConfig",
    "SilenceConfig",
]

ACTIVE = True

_CONDITION = re.compile(r"^\s*(>=|<=|==|!=|>|<)\s*(-?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?)\s*$")
_STATE_CONDITION = re.compile(r"^\s*(==|!=)\s*([A-Za-z_][A-Za-z0-9_-]*)\s*$")
_HHMM = re.compile(r"^([01]\d|2[0-3]):[0-5]\d$")
Weekday = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
WEEKDAYS: tuple[Weekday, ...] = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


def _matchers(value: dict[str, str]) -> dict[str, str]:
    """Label matchers: ``value``, or Alertmanager-style ``=~regex``, ``!~regex``, ``!=value``."""
    from ..alerts.rules import check_matcher

    for key, want in value.items():
        try:
            check_matcher(want)
        except ValueError as exc:
            raise ValueError(f"{key}: {exc}") from None
    return value


Matchers = Annotated[dict[str, str], AfterValidator(_matchers)]


class AlertRuleConfig(StrictModel):
    """An ``alerts.rules`` entry: fire when ``signal`` (a catalogue metric) with labels matching
    ``match`` satisfies ``condition`` (e.g. ``">= 2"``) for ``for``."""

    name: str = Field(min_length=1, pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
    signal: str = Field(min_length=1)
    match: Matchers = Field(default_factory=dict)
    condition: str
    for_: Duration = Field(0.0, alias="for")
    keep_firing_for: Duration = 0.0
    severity: Literal["critical", "warning", "info"] = "warning"
    priority: Literal["P1", "P2", "P3", "P4"] | None = None
    """Default from severity: critical P1, warning P3, info P4."""
    labels: dict[str, str] = Field(default_factory=dict)
    annotations: dict[str, str] = Field(default_factory=dict)

    @field_validator("condition")
    @classmethod
    def _condition(cls, v: str, info: ValidationInfo) -> str:
        if str(info.data.get("signal", "")).startswith("event:"):
            if not (_STATE_CONDITION.match(v) or _CONDITION.match(v)):
                raise ValueError(f"expected '== state' or '!= state' for an event signal, got {v!r}")
        elif not _CONDITION.match(v):
            raise ValueError(f"expected a comparison and a number like '>= 2' or '< 0.1', got {v!r}")
        return v


class AlertmanagerTarget(StrictModel):
    """Alertmanager API v2 instances (all receive every alert, as its client contract asks)."""

    urls: list[str] = Field(min_length=1)
    resend_interval: Duration = 60.0
    resolved_resend_for: Duration = 900.0
    """How long resolved alerts keep being re-sent (Prometheus: 15m)."""


class SlackTarget(StrictModel):
    webhook_url: SecretStr


class PagerDutyTarget(StrictModel):
    routing_key: SecretStr
    url: str = "https://events.pagerduty.com/v2/enqueue"


class WebhookTarget(StrictModel):
    url: str
    secret: SecretStr | None = None
    headers: dict[str, SecretStr] = Field(default_factory=dict)


class EmailTarget(StrictModel):
    to: list[str] = Field(min_length=1)
    sender: str = Field(alias="from")
    smarthost: str
    username: str | None = None
    password: SecretStr | None = None
    starttls: bool = True


class ReceiverConfig(StrictModel):
    """A named notification destination; exactly one target kind."""

    name: str = Field(min_length=1)
    alertmanager: AlertmanagerTarget | None = None
    slack: SlackTarget | None = None
    pagerduty: PagerDutyTarget | None = None
    webhook: WebhookTarget | None = None
    email: EmailTarget | None = None
    log: bool | None = None
    digest: Duration | None = None
    rate_limit_per_hour: int | None = Field(None, ge=1)

    @model_validator(mode="after")
    def _one_target(self) -> ReceiverConfig:
        kinds = [
            k for k in ("alertmanager", "slack", "pagerduty", "webhook", "email", "log") if getattr(self, k)
        ]
        if len(kinds) != 1:
            raise ValueError(
                "a receiver needs exactly one of alertmanager, slack, pagerduty, webhook, email, log;"
                f" got {kinds or 'none'}"
            )
        return self


class ApiConfig(StrictModel):
    """``alerts.api``: the management API (list, acknowledge, resolve, silences, maintenance)."""

    enabled: bool = False
    endpoint: str = "127.0.0.1:9466"
    token: SecretStr | None = None
    """Bearer token; required unless the endpoint is loopback."""

    @model_validator(mode="after")
    def _token_beyond_loopback(self) -> ApiConfig:
        host = self.endpoint.rpartition(":")[0].strip("[]")
        if not host or not self.endpoint.rpartition(":")[2].isdigit():
            raise ValueError(f"endpoint must be host:port, got {self.endpoint!r}")
        if self.enabled and self.token is None and host not in ("127.0.0.1", "::1", "localhost"):
            raise ValueError("a token is required when the management API listens beyond loopback")
        return self


class DeliveryConfig(StrictModel):
    """``alerts.delivery``: the notifier worker's queue and retry policy."""

    queue_size: int = Field(1000, ge=1)
    max_attempts: int = Field(6, ge=1)
    initial_backoff: Duration = 1.0
    max_backoff: Duration = 60.0
    timeout: Duration = 10.0


class EscalationLevel(StrictModel):
    after: Duration
    receiver: str


class RouteConfig(StrictModel):
    """An ``alerts.routes`` entry (first match wins unless ``continue``)."""

    match: Matchers = Field(default_factory=dict)
    receiver: str
    group_by: list[str] = Field(default_factory=lambda: ["alertname"])
    group_wait: Duration = 30.0
    group_interval: Duration = 300.0
    repeat_interval: Duration = 14400.0
    continue_: bool = Field(False, alias="continue")
    escalation: list[EscalationLevel] = Field(default_factory=list)


class ScheduleConfig(StrictModel):
    """A recurring window: on ``weekdays`` (default every day) from ``start`` to ``end`` (HH:MM)."""

    weekdays: list[Weekday] = Field(default_factory=lambda: list(WEEKDAYS))
    start: str
    end: str
    timezone: TimeZoneName = "UTC"

    @field_validator("start", "end")
    @classmethod
    def _hhmm(cls, v: str) -> str:
        if not _HHMM.match(v):
            raise ValueError(f"expected HH:MM (24h), got {v!r}")
        return v


class MaintenanceConfig(StrictModel):
    """A maintenance window: one-off (``starts_at``/``ends_at``) or recurring (``schedule``)."""

    name: str = Field(min_length=1)
    schedule: ScheduleConfig | None = None
    starts_at: dt.datetime | None = None
    ends_at: dt.datetime | None = None
    match: dict[str, str] = Field(default_factory=dict)
    mute: bool = True

    @model_validator(mode="after")
    def _when(self) -> MaintenanceConfig:
        one_off = self.starts_at is not None or self.ends_at is not None
        if (self.schedule is None) == (not one_off):
            raise ValueError("give either schedule, or starts_at and ends_at")
        if one_off and (self.starts_at is None or self.ends_at is None or self.ends_at <= self.starts_at):
            raise ValueError("a one-off window needs starts_at < ends_at")
        return self


class SilenceConfig(StrictModel):
    matchers: Matchers = Field(min_length=1)
    starts_at: dt.datetime | None = None
    ends_at: dt.datetime | None = None
    schedule: ScheduleConfig | None = None
    author: str = "config"
    comment: str = ""


class InhibitRuleConfig(StrictModel):
    source_match: Matchers
    target_match: Matchers
    equal: list[str] = Field(default_factory=list)


class AlertsConfig(StrictModel):
    """``alerts``: rules, receivers, routes, inhibition, silences, maintenance, default rules."""

    rules: list[AlertRuleConfig] = Field(default_factory=list)
    receivers: list[ReceiverConfig] = Field(default_factory=list)
    routes: list[RouteConfig] = Field(default_factory=list)
    inhibit_rules: list[InhibitRuleConfig] = Field(default_factory=list)
    silences: list[SilenceConfig] = Field(default_factory=list)
    maintenance: list[MaintenanceConfig] = Field(default_factory=list)
    default_rules: bool = True
    default_receiver: str | None = None
    """Receiver for alerts no route matches (default: they are not notified, only listed)."""
    evaluation_interval: Duration = 15.0
    ssrf_allowlist: list[str] = Field(default_factory=list)
    """Hosts, IPs or CIDRs webhook-style receivers may reach although loopback/private."""
    api: ApiConfig = Field(default_factory=ApiConfig)
    delivery: DeliveryConfig = Field(default_factory=DeliveryConfig)

    @model_validator(mode="after")
    def _references(self) -> AlertsConfig:
        names = [r.name for r in self.receivers]
        dupes = {n for n in names if names.count(n) > 1}
        if dupes:
            raise ValueError(f"receiver names must be unique, repeated: {sorted(dupes)}")
        self._check_ssrf()
        if self.default_receiver is not None and self.default_receiver not in names:
            raise ValueError(f"default_receiver {self.default_receiver!r} is not defined (have {names})")
        for i, route in enumerate(self.routes):
            for target in [route.receiver, *(e.receiver for e in route.escalation)]:
                if target not in names:
                    raise ValueError(
                        f"routes[{i}] names receiver {target!r}, which is not defined (have {names})"
                    )
        return self

    def _check_ssrf(self) -> None:
        """Webhook-style targets must be public unless allowlisted (checked again at send time).

        Errors carry the field's own path (so the loader names its line) and only the host as
        the offending input: webhook URLs may embed tokens."""
        from urllib.parse import urlsplit

        from ..alerts.notifiers.ssrf import SsrfError, SsrfPolicy

        policy = SsrfPolicy(self.ssrf_allowlist)
        errors: list[InitErrorDetails] = []
        for i, r in enumerate(self.receivers):
            targets: list[tuple[tuple[str, str], str]] = []
            if r.slack is not None:
                targets.append((("slack", "webhook_url"), r.slack.webhook_url.get_secret_value()))
            if r.pagerduty is not None:
                targets.append((("pagerduty", "url"), r.pagerduty.url))
            if r.webhook is not None:
                targets.append((("webhook", "url"), r.webhook.url))
            for path, url in targets:
                try:
                    policy.check_at_load(url)
                except SsrfError as exc:  # the message names the host, never the full URL
                    try:
                        host = urlsplit(url).hostname or ""
                    except ValueError:
                        host = ""
                    errors.append(
                        InitErrorDetails(
                            type=PydanticCustomError("ssrf", "{reason}", {"reason": str(exc)}),
                            loc=("receivers", i, *path),
                            input=host,
                        )
                    )
        if errors:
            raise ValidationError.from_exception_data(type(self).__name__, errors)
