"""Log notifier: one log record per notification (warning when firing, info when resolved)."""

from __future__ import annotations

import logging

from ..notification import Notification
from ._format import text_lines

__all__ = ["LogNotifier"]

_logger = logging.getLogger("spansignals.alerts")


class LogNotifier:
    """Writes notifications to the ``spansignals.alerts`` logger."""

    kind = "log"

    def __init__(self, receiver: str) -> None:
        self.receiver = receiver

    def send(self, notification: Notification) -> None:
        level = logging.WARNING if notification.status == "firing" else logging.INFO
        _logger.log(
            level,
            "%s (receiver %s): %s",
            notification.title,
            self.receiver,
            "; ".join(text_lines(notification)),
        )

    def close(self) -> None:
        pass
