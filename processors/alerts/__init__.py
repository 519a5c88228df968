"""Alerting over derived signals: rules, lifecycle, routing, silences, escalation, notifiers.

Front doors call :func:`build_alert_engine` with the config and the signal engine, register
``alert_engine.metric_families()`` with their producer, then ``start()`` and, at shutdown,
``stop()``. :func:`serve_management_api` runs the HTTP management API for it.
"""

from .engine import AlertEngine
from .factory import build_alert_engine, compile_rule
from .lifecycle import Alert, AlertStore, fingerprint
from .notification import AlertSnapshot, Notification
from .routing import Dispatcher, InhibitRule, Route
from .rules import AlertRule, Condition
from .silences import Silence, SilenceStore

__all__ = [
    "Alert",
    "AlertEngine",
    "AlertRule",
    "AlertSnapshot",
    "AlertStore",
    "Condition",
    "Dispatcher",
    "InhibitRule",
    "Notification",
    "Route",
    "Silence",
    "SilenceStore",
    "build_alert_engine",
    "compile_rule",
    "fingerprint",
]
