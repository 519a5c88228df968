"""Slack incoming-webhook notifier: a readable ``blocks`` message with a ``text`` fallback.

Slack answers 200 ``ok``; 429 carries ``Retry-After`` (honoured by the delivery worker); 400
(``invalid_payload``), 403, 404 and 410 are permanent. The webhook URL is a secret: it never
appears in logs or errors.
"""

from __future__ import annotations

from typing import Any

from ..notification import Notification
from ._format import text_lines
from .base import HttpPoster

__all__ = ["SlackNotifier"]

_MAX_SECTION = 2900  # Slack's section text limit is 3000 characters


class SlackNotifier:
    """Posts to one Slack incoming webhook."""

    kind = "slack"

    def __init__(self, webhook_url: str, *, poster: HttpPoster | None = None) -> None:
        self._url = webhook_url
        self._poster = poster or HttpPoster()

    def payload(self, notification: Notification) -> dict[str, Any]:
        """The JSON body: header, one section per alert (capped), and a context line."""
        emoji = ":red_circle:" if notification.status == "firing" else ":large_green_circle:"
        title = notification.title
        blocks: list[dict[str, Any]] = [
            {"type": "header", "text": {"type": "plain_text", "text": title[:150], "emoji": True}}
        ]
        for line in text_lines(notification)[:20]:
            blocks.append(
                {"type": "section", "text": {"type": "mrkdwn", "text": f"{emoji} {line}"[:_MAX_SECTION]}}
            )
        if len(notification.alerts) > 20:
            blocks.append(
                {
                    "type": "context",
                    "elements": [{"type": "mrkdwn", "text": f"and {len(notification.alerts) - 20} more"}],
                }
            )
        blocks.append(
            {
                "type": "context",
                "elements": [{"type": "mrkdwn", "text": f"spansignals · receiver {notification.receiver}"}],
            }
        )
        return {"text": title, "blocks": blocks}

    def send(self, notification: Notification) -> None:
        self._poster.post_json(self._url, self.payload(notification), what="slack")

    def close(self) -> None:
        self._poster.close()
