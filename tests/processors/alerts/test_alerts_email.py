"""Email notifier through a local SMTP server (aiosmtpd): text + HTML, AUTH, STARTTLS, failures."""

from __future__ import annotations

import shutil
import ssl
import subprocess
from email import message_from_bytes
from email.message import Message

import pytest
from peers import free_port

from spansignals.processors.alerts.notification import AlertSnapshot, Notification
from spansignals.processors.alerts.notifiers.base import DeliveryError
from spansignals.processors.alerts.notifiers.smtp import EmailNotifier

aiosmtpd_controller = pytest.importorskip("aiosmtpd.controller")
from aiosmtpd.smtp import AuthResult, LoginPassword  # noqa: E402


class Inbox:
    """aiosmtpd handler keeping every message; rejects recipients at ``reject@``."""

    def __init__(self) -> None:
        self.messages: list[tuple[str, list[str], Message]] = []

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if address.startswith("reject@"):
            return "550 no such user"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        self.messages.append(
            (envelope.mail_from, list(envelope.rcpt_tos), message_from_bytes(envelope.content))
        )
        return "250 Message accepted"


def _authenticator(server, session, envelope, mechanism, auth_data):
    ok = (
        isinstance(auth_data, LoginPassword)
        and auth_data.login == b"alerts"
        and auth_data.password == b"s3cret"
    )
    return AuthResult(success=ok, handled=False)


def _note() -> Notification:
    alert = AlertSnapshot(
        "f",
        {"alertname": "LLMBudgetCritical", "severity": "critical"},
        {"summary": "budget <llm> is at state 2"},
        "firing",
        1_790_000_000.0,
        None,
    )
    return Notification("mail", "g", (alert,), {"alertname": "LLMBudgetCritical"}, at=1_790_000_001.0)


@pytest.fixture
def smtp_server(request):
    inbox = Inbox()
    kwargs = getattr(request, "param", {})
    port = free_port()
    controller = aiosmtpd_controller.Controller(inbox, hostname="127.0.0.1", port=port, **kwargs)
    controller.start()
    yield inbox, port
    controller.stop()


def test_plain_smtp_delivers_text_and_html(smtp_server):
    """A message with a subject line, a text part and an escaped HTML part reaches the server."""
    inbox, port = smtp_server
    EmailNotifier(f"127.0.0.1:{port}", "alerts@example.com", ["oncall@example.com"], starttls=False).send(
        _note()
    )
    [(sender, rcpts, msg)] = inbox.messages
    assert sender == "alerts@example.com" and rcpts == ["oncall@example.com"]
    assert msg["Subject"] == "[FIRING:1] alertname=LLMBudgetCritical"
    parts = {
        p.get_content_type(): p.get_payload(decode=True).decode() for p in msg.walk() if not p.is_multipart()
    }
    assert "budget <llm> is at state 2" in parts["text/plain"]
    assert "budget &lt;llm&gt; is at state 2" in parts["text/html"]


@pytest.mark.parametrize(
    "smtp_server", [{"authenticator": _authenticator, "auth_require_tls": False}], indirect=True
)
def test_auth_login_and_bad_password_is_permanent(smtp_server):
    """AUTH with the right password delivers; a wrong one fails without retry."""
    inbox, port = smtp_server
    good = EmailNotifier(
        f"127.0.0.1:{port}",
        "a@example.com",
        ["b@example.com"],
        username="alerts",
        password="s3cret",
        starttls=False,
    )
    good.send(_note())
    assert len(inbox.messages) == 1
    bad = EmailNotifier(
        f"127.0.0.1:{port}",
        "a@example.com",
        ["b@example.com"],
        username="alerts",
        password="wrong",
        starttls=False,
    )
    with pytest.raises(DeliveryError) as err:
        bad.send(_note())
    assert not err.value.retryable and "wrong" not in str(err.value)


def test_refused_recipient_is_permanent_and_dead_server_is_retryable(smtp_server):
    """550 on RCPT is not retried; a server that is not there is."""
    _inbox, port = smtp_server
    with pytest.raises(DeliveryError) as err:
        EmailNotifier(f"127.0.0.1:{port}", "a@example.com", ["reject@example.com"], starttls=False).send(
            _note()
        )
    assert not err.value.retryable
    with pytest.raises(DeliveryError) as err:
        EmailNotifier(f"127.0.0.1:{free_port()}", "a@example.com", ["b@example.com"], starttls=False).send(
            _note()
        )
    assert err.value.retryable


def test_starttls_upgrades_before_sending(tmp_path):
    """With starttls on, the notifier upgrades the connection (self-signed cert trusted by the test)."""
    if shutil.which("openssl") is None:
        pytest.skip("openssl CLI not available to make a test certificate")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            str(key),
            "-out",
            str(cert),
            "-days",
            "1",
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
        ],
        check=True,
        capture_output=True,
    )
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_ctx.load_cert_chain(cert, key)
    inbox, port = Inbox(), free_port()
    controller = aiosmtpd_controller.Controller(
        inbox, hostname="127.0.0.1", port=port, tls_context=server_ctx, require_starttls=True
    )
    controller.start()
    try:
        client_ctx = ssl.create_default_context(cafile=str(cert))
        EmailNotifier(f"127.0.0.1:{port}", "a@example.com", ["b@example.com"], tls_context=client_ctx).send(
            _note()
        )
        assert len(inbox.messages) == 1
        with pytest.raises(DeliveryError):  # the server insists on STARTTLS
            EmailNotifier(f"127.0.0.1:{port}", "a@example.com", ["b@example.com"], starttls=False).send(
                _note()
            )
        assert len(inbox.messages) == 1
    finally:
        controller.stop()
