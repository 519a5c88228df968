"""Email notifier over SMTP: STARTTLS (default on), optional AUTH, text and HTML parts.

``smarthost`` is ``host:port`` (port 587 when omitted). Permanent SMTP answers (5xx, refused
recipients, failed authentication) are not retried; connection failures, timeouts and 4xx are.
The password is a secret: never logged.
"""

from __future__ import annotations

import html
import smtplib
import ssl
from collections.abc import Sequence
from email.message import EmailMessage

from ..notification import Notification
from ._format import text_lines
from .base import DeliveryError

__all__ = ["EmailNotifier"]


class EmailNotifier:
    """Sends one message per notification to ``to``."""

    kind = "email"

    def __init__(
        self,
        smarthost: str,
        sender: str,
        to: Sequence[str],
        *,
        username: str | None = None,
        password: str | None = None,
        starttls: bool = True,
        timeout: float = 10.0,
        tls_context: ssl.SSLContext | None = None,
    ) -> None:
        host, _, port = smarthost.rpartition(":")
        if not host or not port.isdigit():
            host, port = smarthost, "587"
        self.host, self.port = host.strip("[]"), int(port)
        self.sender = sender
        self.to = list(to)
        self._username = username
        self._password = password
        self._starttls = starttls
        self._timeout = timeout
        self._tls = tls_context

    def message(self, notification: Notification) -> EmailMessage:
        """The MIME message (multipart/alternative: text, then HTML)."""
        msg = EmailMessage()
        msg["Subject"] = notification.title
        msg["From"] = self.sender
        msg["To"] = ", ".join(self.to)
        lines = text_lines(notification)
        msg.set_content("\n".join([notification.title, "", *lines, "", "-- spansignals"]))
        items = "".join(f"<li>{html.escape(line)}</li>" for line in lines)
        footer = f"spansignals · receiver {html.escape(notification.receiver)}"
        msg.add_alternative(
            f"<html><body><h2>{html.escape(notification.title)}</h2><ul>{items}</ul>"
            f'<p style="color:#888">{footer}</p></body></html>',
            subtype="html",
        )
        return msg

    def send(self, notification: Notification) -> None:
        msg = self.message(notification)
        try:
            with smtplib.SMTP(self.host, self.port, timeout=self._timeout) as smtp:
                smtp.ehlo()
                if self._starttls:
                    smtp.starttls(context=self._tls or ssl.create_default_context())
                    smtp.ehlo()
                if self._username:
                    self._login(smtp)
                smtp.send_message(msg)
        except smtplib.SMTPNotSupportedError as exc:
            raise DeliveryError(f"email: {exc}", retryable=False) from None
        except smtplib.SMTPAuthenticationError as exc:
            raise DeliveryError(f"email: authentication failed ({exc.smtp_code})", retryable=False) from None
        except smtplib.SMTPRecipientsRefused:
            raise DeliveryError("email: recipients refused", retryable=False) from None
        except smtplib.SMTPResponseException as exc:
            raise DeliveryError(f"email: SMTP {exc.smtp_code}", retryable=exc.smtp_code < 500) from None
        except (OSError, smtplib.SMTPException) as exc:
            raise DeliveryError(f"email: {type(exc).__name__}", retryable=True) from None

    def _login(self, smtp: smtplib.SMTP) -> None:
        """AUTH with one mechanism (smtplib's login() tries every mechanism in turn, and servers
        that drop the connection after a failed attempt then hide the real 535 answer)."""
        offered = smtp.esmtp_features.get("auth", "").upper().split()
        mechanism = next((m for m in ("PLAIN", "LOGIN", "CRAM-MD5") if m in offered), None)
        if mechanism is None:
            raise smtplib.SMTPNotSupportedError("the server offers no AUTH mechanism we support")
        smtp.user, smtp.password = self._username or "", self._password or ""
        smtp.auth(mechanism, getattr(smtp, "auth_" + mechanism.lower().replace("-", "_")))

    def close(self) -> None:
        pass
