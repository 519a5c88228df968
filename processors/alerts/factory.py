"""Build an :class:`~.engine.AlertEngine` from a configuration: the one call both front doors make.

``build_alert_engine(config, signal_engine)`` compiles the ``alerts`` rules (plus the default
rules of budgets, SLOs and breakers, a user rule of the same name replacing a default), routes,
inhibit rules, silences and maintenance windows, and one receiver channel per receiver with its
delivery workers. It subscribes to ``signal_engine.events`` and reads ``signal_engine``'s
families. Nothing starts until :meth:`~.engine.AlertEngine.start`; register
:meth:`~.engine.AlertEngine.metric_families` with the front door's producer.

:func:`start_alerting` does all of it in one call for a front door (build, register the families,
start the worker, start the management API when ``alerts.api.enabled``); ``engine.stop()`` then
stops the API too.
"""

from __future__ import annotations

import datetime as dt
import random
import time
from collections.abc import Callable
from typing import Any

from ..schedule import MaintenanceWindow
from .channel import ReceiverChannel
from .defaults import default_rules
from .delivery import DeliveryWorker, RetryPolicy
from .engine import AlertEngine
from .notifiers.alertmanager import AlertmanagerFeed, AlertmanagerNotifier
from .notifiers.base import HttpPoster, Notifier
from .notifiers.log import LogNotifier
from .notifiers.pagerduty import PagerDutyNotifier
from .notifiers.slack import SlackNotifier
from .notifiers.smtp import EmailNotifier
from .notifiers.ssrf import SsrfPolicy
from .notifiers.webhook import WebhookNotifier
from .routing import InhibitRule, Route
from .rules import AlertRule, Condition
from .silences import Silence, SilenceStore

__all__ = ["build_alert_engine", "compile_rule", "start_alerting"]


def compile_rule(rc: Any) -> AlertRule:
    """An :class:`AlertRule` from an ``AlertRuleConfig``."""
    return AlertRule(
        rc.name,
        rc.signal,
        Condition.parse(rc.condition),
        dict(rc.match),
        for_s=rc.for_,
        keep_firing_for_s=rc.keep_firing_for,
        severity=rc.severity,
        priority=rc.priority,
        labels=dict(rc.labels),
        annotations=dict(rc.annotations),
    )


def _ts(value: dt.datetime | None) -> float | None:
    if value is None:
        return None
    if value.tzinfo is None:
        value = value.replace(tzinfo=dt.timezone.utc)
    return value.timestamp()


def _notifiers(rc: Any, alerts: Any, ssrf: SsrfPolicy) -> list[Notifier]:
    timeout = alerts.delivery.timeout
    if rc.alertmanager is not None:  # the operator's own infrastructure: no SSRF policy
        return [
            AlertmanagerNotifier(
                url, resend_interval=rc.alertmanager.resend_interval, poster=HttpPoster(timeout=timeout)
            )
            for url in rc.alertmanager.urls
        ]
    guarded = HttpPoster(timeout=timeout, ssrf=ssrf)
    if rc.slack is not None:
        return [SlackNotifier(rc.slack.webhook_url.get_secret_value(), poster=guarded)]
    if rc.pagerduty is not None:
        return [
            PagerDutyNotifier(rc.pagerduty.routing_key.get_secret_value(), rc.pagerduty.url, poster=guarded)
        ]
    if rc.webhook is not None:
        w = rc.webhook
        return [
            WebhookNotifier(
                w.url,
                secret=w.secret.get_secret_value() if w.secret else None,
                headers={k: v.get_secret_value() for k, v in w.headers.items()},
                poster=guarded,
            )
        ]
    if rc.email is not None:
        e = rc.email
        return [
            EmailNotifier(
                e.smarthost,
                e.sender,
                e.to,
                username=e.username,
                password=e.password.get_secret_value() if e.password else None,
                starttls=e.starttls,
                timeout=timeout,
            )
        ]
    return [LogNotifier(rc.name)]


def _kind(rc: Any) -> str:
    return next(
        k for k in ("alertmanager", "slack", "pagerduty", "webhook", "email", "log") if getattr(rc, k)
    )


def build_alert_engine(
    config: Any,
    signal_engine: Any = None,
    *,
    clock: Callable[[], float] = time.time,
    wait: Callable[[float], bool] | None = None,
    rand: Callable[[], float] = random.random,
) -> AlertEngine:
    """An alert engine for a whole ``SpansignalsConfig`` over ``signal_engine`` (not started).

    ``wait``/``rand`` replace the delivery workers' retry sleep and jitter (tests).
    """
    alerts = config.alerts
    user_rules = [compile_rule(r) for r in alerts.rules]
    names = {r.name for r in user_rules}
    rules = [r for r in default_rules(config) if r.name not in names] + user_rules

    routes = [
        Route(
            r.receiver,
            dict(r.match),
            tuple(r.group_by),
            r.group_wait,
            r.group_interval,
            r.repeat_interval,
            r.continue_,
            tuple((e.after, e.receiver) for e in r.escalation),
            index=i,
        )
        for i, r in enumerate(alerts.routes)
    ]

    silences = SilenceStore()
    for s in alerts.silences:
        schedule = None
        if s.schedule is not None:
            sc = s.schedule
            schedule = MaintenanceWindow(
                "silence", weekdays=sc.weekdays, start=sc.start, end=sc.end, timezone=sc.timezone
            )
        silences.add(
            Silence(dict(s.matchers), _ts(s.starts_at), _ts(s.ends_at), schedule, s.author, s.comment)
        )
    for m in alerts.maintenance:
        if m.mute:
            window = MaintenanceWindow.from_config(m)
            silences.add_maintenance(m.name, window, dict(m.match))

    engine = AlertEngine(
        rules,
        routes=routes,
        inhibit_rules=[
            InhibitRule(dict(i.source_match), dict(i.target_match), tuple(i.equal))
            for i in alerts.inhibit_rules
        ],
        silences=silences,
        default_receiver=alerts.default_receiver,
        extra_labels={"service_name": config.service.name} if config.service.name else None,
        evaluation_interval=alerts.evaluation_interval,
        resolved_retention=max(
            [900.0, *(r.alertmanager.resolved_resend_for for r in alerts.receivers if r.alertmanager)]
        ),
        families=signal_engine.fresh_families if signal_engine is not None else list,
        events=signal_engine.events if signal_engine is not None else None,
        errors=signal_engine.errors if signal_engine is not None else None,
        clock=clock,
    )

    ssrf = SsrfPolicy(alerts.ssrf_allowlist)
    d = alerts.delivery
    policy = RetryPolicy(d.max_attempts, d.initial_backoff, d.max_backoff)
    now = clock()
    for rc in alerts.receivers:
        workers = [
            DeliveryWorker(
                rc.name,
                n,
                queue_size=d.queue_size,
                policy=policy,
                on_outcome=engine.count_outcome,
                wait=wait,
                rand=rand,
            )
            for n in _notifiers(rc, alerts, ssrf)
        ]
        engine.receivers[rc.name] = ReceiverChannel(
            rc.name,
            workers,
            kind=_kind(rc),
            digest_interval=rc.digest,
            rate_limit_per_hour=rc.rate_limit_per_hour,
            on_outcome=engine.count_outcome,
            now=now,
        )
        if rc.alertmanager is not None:
            engine.feeds[rc.name] = AlertmanagerFeed(
                rc.name,
                resend_interval=rc.alertmanager.resend_interval,
                resolved_resend_for=rc.alertmanager.resolved_resend_for,
            )
    return engine


def start_alerting(
    config: Any,
    signal_engine: Any,
    *,
    producer: Any = None,
    api_by_default: bool = False,
    clock: Callable[[], float] = time.time,
) -> AlertEngine:
    """Build, register with ``producer`` (a ``SignalMetricProducer``, if any), start, and serve the
    management API if ``alerts.api.enabled`` (when the config does not say, ``api_by_default``:
    the collector passes ``True``, the app leaves it off). Call ``stop()`` on the result at
    shutdown (it never raises)."""
    from .api import serve_management_api

    engine = build_alert_engine(config, signal_engine, clock=clock)
    if producer is not None:
        producer.register(*engine.metric_families())
    engine.start()
    try:
        engine.api = serve_management_api(engine, config, default_enabled=api_by_default)
    except Exception:
        engine.stop()
        raise
    return engine
