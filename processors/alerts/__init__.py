"""Alerting over derived signals: rules, lifecycle, routing, silences, escalation, notifiers.

Front doors call :func:`start_alerting` with the config, the signal engine and their producer
(it builds the engine, registers its families, starts the worker and, when ``alerts.api.enabled``,
the management API of :mod:`.api`), and ``stop()`` on the result at shutdown. Tests and custom
wiring use :func:`build_alert_engine` and drive :meth:`AlertEngine.tick` themselves.
"""

from .engine import AlertEngine
from .factory import build_alert_engine, compile_rule, start_alerting
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
    "start_alerting",
]
