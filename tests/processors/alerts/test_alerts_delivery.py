"""Delivery worker: bounded queue, retries with backoff and jitter, Retry-After, no retry of 4xx."""

from __future__ import annotations

import threading

import pytest
from alerting_fakes import FakeHttpServer

from spansignals.processors.alerts.delivery import DeliveryWorker, RetryPolicy
from spansignals.processors.alerts.notification import AlertSnapshot, Notification
from spansignals.processors.alerts.notifiers.base import DeliveryError, HttpPoster, parse_retry_after
from spansignals.processors.alerts.notifiers.webhook import WebhookNotifier


def _note() -> Notification:
    alert = AlertSnapshot(
        "f1", {"alertname": "A", "severity": "critical"}, {"summary": "s"}, "firing", 1.0, None
    )
    return Notification("hook", "g", (alert,), {"alertname": "A"}, at=1.0)


@pytest.fixture
def server():
    srv = FakeHttpServer()
    yield srv
    srv.close()


def _worker(server, *, timeout=2.0, attempts=4, outcomes=None):
    waits: list[float] = []
    outcomes = outcomes if outcomes is not None else []
    notifier = WebhookNotifier(server.url + "/hook", poster=HttpPoster(timeout=timeout))
    worker = DeliveryWorker(
        "hook",
        notifier,
        policy=RetryPolicy(max_attempts=attempts, initial_backoff=1, max_backoff=8),
        on_outcome=lambda r, o: outcomes.append(o),
        wait=lambda s: waits.append(s) or False,
        rand=lambda: 1.0,
    )
    return worker, waits, outcomes


def test_5xx_is_retried_with_exponential_backoff(server):
    """503, 500, 502 then 200: three retries waiting 1, 2, 4 s (jitter at its top), then sent."""
    server.script = [(503, {}, b"", 0), (500, {}, b"", 0), (502, {}, b"", 0)]
    worker, waits, outcomes = _worker(server)
    assert worker.deliver(_note()) is True
    assert waits == [1, 2, 4] and len(server.requests) == 4
    assert outcomes == ["retried", "retried", "retried", "sent"]


def test_backoff_is_capped_and_jittered():
    """Backoff doubles up to max_backoff; jitter keeps each wait within 50-100% of it."""
    policy = RetryPolicy(initial_backoff=1, max_backoff=8)
    assert [policy.delay(n, None, lambda: 1.0) for n in range(1, 7)] == [1, 2, 4, 8, 8, 8]
    assert policy.delay(3, None, lambda: 0.0) == 2.0


def test_429_retry_after_is_honoured(server):
    """429 with Retry-After: 7 waits exactly 7 s before the next attempt."""
    server.script = [(429, {"retry-after": "7"}, b"slow down", 0)]
    worker, waits, outcomes = _worker(server)
    assert worker.deliver(_note()) is True
    assert waits == [7.0] and outcomes == ["retried", "sent"]


def test_retry_after_http_date():
    """Retry-After as an HTTP-date is turned into seconds from now."""
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now=1445412470.0) == 10.0
    assert parse_retry_after("garbage") is None and parse_retry_after("-3") == 0.0


@pytest.mark.parametrize("status", [400, 401, 403, 404, 410, 422])
def test_4xx_other_than_429_is_not_retried(server, status):
    """A 4xx other than 429 fails at once: one request, no wait, counted as failed."""
    server.default = (status, {}, b"no")
    worker, waits, outcomes = _worker(server)
    assert worker.deliver(_note()) is False
    assert len(server.requests) == 1 and waits == [] and outcomes == ["failed"]


def test_redirects_are_not_followed(server):
    """A 302 to elsewhere is a permanent failure; the redirect target is never requested."""
    server.default = (302, {"location": "http://169.254.169.254/latest/meta-data"}, b"")
    worker, _waits, outcomes = _worker(server)
    assert worker.deliver(_note()) is False
    assert len(server.requests) == 1 and outcomes == ["failed"]


def test_timeouts_are_retried_until_attempts_run_out(server):
    """A server slower than the timeout is retried; after max_attempts the notification fails."""
    server.default = (200, {}, b"ok")
    server.script = [(200, {}, b"", 1.0)] * 3
    worker, waits, outcomes = _worker(server, timeout=0.2, attempts=3)
    assert worker.deliver(_note()) is False
    assert outcomes == ["retried", "retried", "failed"] and len(waits) == 2


def test_full_queue_drops_and_counts_without_blocking(server):
    """submit() never blocks: past the queue size notifications are dropped and counted."""
    outcomes: list[str] = []
    notifier = WebhookNotifier(server.url, poster=HttpPoster(timeout=1))
    worker = DeliveryWorker("hook", notifier, queue_size=2, on_outcome=lambda r, o: outcomes.append(o))
    assert [worker.submit(_note()) for _ in range(4)] == [True, True, False, False]
    assert outcomes == ["dropped", "dropped"]


def test_worker_thread_delivers_in_background_and_stops(server):
    """A started worker delivers queued notifications on its own thread; stop() drains and joins."""
    done = threading.Event()
    outcomes: list[str] = []
    notifier = WebhookNotifier(server.url, poster=HttpPoster(timeout=1))

    def on_outcome(receiver: str, outcome: str) -> None:
        outcomes.append(outcome)
        if len(outcomes) == 3:
            done.set()

    worker = DeliveryWorker("hook", notifier, on_outcome=on_outcome)
    worker.start()
    for _ in range(3):
        worker.submit(_note())
    assert done.wait(10)
    worker.stop(timeout=2)
    assert outcomes == ["sent"] * 3 and len(server.requests) == 3


def test_notifier_bug_is_contained():
    """A notifier raising an unexpected exception counts a failure and the worker carries on."""

    class Broken:
        kind = "broken"

        def send(self, notification):
            raise RuntimeError("bug")

        def close(self):
            pass

    outcomes: list[str] = []
    worker = DeliveryWorker("b", Broken(), on_outcome=lambda r, o: outcomes.append(o))
    assert worker.deliver(_note()) is False and outcomes == ["failed"]
    with pytest.raises(DeliveryError):
        raise DeliveryError("x", retryable=False)


def test_stop_counts_what_could_not_be_delivered(server):
    """Notifications still queued when stop() gives up are counted as dropped, never lost silently."""
    server.script = [(200, {}, b"", -1.0)]  # the first request hangs until the server closes
    outcomes: list[str] = []
    notifier = WebhookNotifier(server.url, poster=HttpPoster(timeout=30))
    worker = DeliveryWorker("hook", notifier, on_outcome=lambda r, o: outcomes.append(o))
    worker.start()
    for _ in range(3):
        worker.submit(_note())
    worker.stop(timeout=0.3)
    assert outcomes.count("dropped") == 2  # one is in flight, two were waiting
