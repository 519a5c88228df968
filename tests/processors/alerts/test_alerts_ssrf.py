"""SSRF: webhook-style receivers refuse loopback/link-local/private targets at load and at send."""

from __future__ import annotations

import pytest
from alerting_fakes import FakeHttpServer

from spansignals.processors.alerts.notification import AlertSnapshot, Notification
from spansignals.processors.alerts.notifiers.base import DeliveryError, HttpPoster
from spansignals.processors.alerts.notifiers.ssrf import SsrfError, SsrfPolicy
from spansignals.processors.alerts.notifiers.webhook import WebhookNotifier
from spansignals.processors.config import ConfigError, load_config


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:8080/x",
        "http://localhost/x",
        "http://[::1]/x",
        "http://169.254.169.254/latest/meta-data",
        "http://10.0.0.5/x",
        "http://192.168.1.1/x",
        "http://172.16.0.1/x",
        "http://100.64.0.1/x",
        "http://0.0.0.0/x",
        "http://[fe80::1]/x",
        "http://[::ffff:127.0.0.1]/x",
        "ftp://example.com/x",
        "file:///etc/passwd",
    ],
)
def test_non_public_targets_refused_at_load(url):
    """Loopback, link-local, private, shared, unspecified and mapped addresses (and non-HTTP) are refused."""
    with pytest.raises(SsrfError):
        SsrfPolicy().check_at_load(url)


@pytest.mark.parametrize(
    ("allow", "url"),
    [
        (["127.0.0.1"], "http://127.0.0.1:9/x"),
        (["127.0.0.0/8"], "http://127.0.0.2/x"),
        (["localhost"], "http://localhost:1/x"),
        (["10.0.0.0/8"], "http://10.1.2.3/x"),
    ],
)
def test_allowlist_admits(allow, url):
    """An allowlisted IP, CIDR or hostname passes."""
    SsrfPolicy(allow).check_at_load(url)


def test_public_names_pass_at_load_and_are_resolved_at_send():
    """A hostname passes at load; at send it is refused if any address it resolves to is private."""
    policy = SsrfPolicy(resolver=lambda host, port: ["93.184.216.34", "10.0.0.1"])
    policy.check_at_load("https://hooks.example.com/x")
    with pytest.raises(SsrfError, match=r"10\.0\.0\.1"):
        policy.check_at_send("https://hooks.example.com/x")
    SsrfPolicy(resolver=lambda host, port: ["93.184.216.34"]).check_at_send("https://hooks.example.com/x")


def test_send_time_check_blocks_the_request():
    """A name that resolves to loopback at send time (DNS rebinding) gets no request at all."""
    server = FakeHttpServer()
    try:
        rebinding = SsrfPolicy(resolver=lambda host, port: ["127.0.0.1"])
        url = f"http://rebind.example:{server.port}/hook"
        notifier = WebhookNotifier(url, poster=HttpPoster(ssrf=rebinding))
        alert = AlertSnapshot("f", {"alertname": "A"}, {}, "firing", 0.0, None)
        with pytest.raises(DeliveryError) as err:
            notifier.send(Notification("r", "g", (alert,)))
        assert not err.value.retryable and "SSRF" in str(err.value)
        assert server.requests == []
    finally:
        server.close()


def _config(receiver: dict, allow: list[str] | None = None) -> dict:
    alerts: dict = {"receivers": [{"name": "r", **receiver}]}
    if allow is not None:
        alerts["ssrf_allowlist"] = allow
    return {"alerts": alerts}


@pytest.mark.parametrize(
    "receiver",
    [
        {"webhook": {"url": "http://169.254.169.254/latest"}},
        {"slack": {"webhook_url": "http://127.0.0.1/services/T0/B0/SECRETTOKEN"}},
        {"pagerduty": {"routing_key": "k", "url": "http://10.0.0.1/v2/enqueue"}},
    ],
)
def test_config_refuses_internal_webhook_targets_naming_the_field(receiver):
    """Config load fails naming alerts.receivers[0].<kind>; the secret URL path is never echoed."""
    with pytest.raises(ConfigError) as err:
        load_config(_config(receiver))
    text = str(err.value)
    assert "receivers[0]" in text and "ssrf_allowlist" in text and "SECRETTOKEN" not in text


def test_config_allowlist_and_operator_infrastructure():
    """Allowlisted targets load; Alertmanager and SMTP targets on loopback load as written."""
    load_config(_config({"webhook": {"url": "http://127.0.0.1:9000/hook"}}, ["127.0.0.1"]))
    load_config(_config({"alertmanager": {"urls": ["http://127.0.0.1:9093"]}}))
    load_config(
        _config({"email": {"to": ["a@example.com"], "from": "b@example.com", "smarthost": "127.0.0.1:25"}})
    )
