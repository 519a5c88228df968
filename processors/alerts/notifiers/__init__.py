"""Notifiers: Alertmanager API v2, Slack, PagerDuty Events v2, signed webhooks, email, log."""

from .alertmanager import AlertmanagerFeed, AlertmanagerNotifier
from .base import DeliveryError, HttpPoster, Notifier
from .log import LogNotifier
from .pagerduty import PagerDutyNotifier
from .slack import SlackNotifier
from .smtp import EmailNotifier
from .ssrf import SsrfError, SsrfPolicy
from .webhook import WebhookNotifier

__all__ = [
    "AlertmanagerFeed",
    "AlertmanagerNotifier",
    "DeliveryError",
    "EmailNotifier",
    "HttpPoster",
    "LogNotifier",
    "Notifier",
    "PagerDutyNotifier",
    "SlackNotifier",
    "SsrfError",
    "SsrfPolicy",
    "WebhookNotifier",
]
