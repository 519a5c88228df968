"""Forwarding to a scriptable fake downstream: retries, hints, permanent errors, partial success,
timeouts, queue bounds, readiness and shutdown — with the accounting check after every test."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import grpc
import pytest
from fake_otlp import Delay, Fail, FakeOtlpServer, Partial
from fault_proxy import FaultProxy
from otlp_builders import build_request

from spansignals.processors.collector.exporter import parse_retry_after
from spansignals.processors.collector.forwarding import (
    SEND_EARLY_BYTES,
    SEND_LINGER_S,
    Forwarder,
    RetryPolicy,
)
from spansignals.processors.collector.queue import QueueFull
from spansignals.processors.config.collector import CollectorConfig

PROTOCOLS = ["grpc", "http/protobuf"]


def _config(fake: FakeOtlpServer, protocol: str, **exporter: Any) -> CollectorConfig:
    queue = exporter.pop("queue", None)
    extra = exporter.pop("collector", {})
    retry = {"initial_interval": 0.02, "max_interval": 0.1, **exporter.pop("retry", {})}
    endpoint = fake.grpc_endpoint if protocol == "grpc" else fake.http_url
    # One send per submitted request unless a test asks for merging.
    block: dict[str, Any] = {
        "endpoint": endpoint, "protocol": protocol, "retry": retry, "max_request_bytes": 0, **exporter
    }  # fmt: skip
    collector: dict[str, Any] = {"exporters": {"down": block}, **extra}
    if queue is not None:
        collector["queue"] = queue
    return CollectorConfig.model_validate(collector)


class Sent:
    """What was submitted, to check ``acked = sent + dropped + still queued``."""

    def __init__(self) -> None:
        self.acked = 0
        self.next_id = 1

    def request(self, spans: int = 3) -> tuple[bytes, int]:
        request = build_request(spans=[("GET /", 2, 0)] * spans)
        for span in request.resource_spans[0].scope_spans[0].spans:
            span.trace_id = self.next_id.to_bytes(16, "big")
            self.next_id += 1
        return request.SerializeToString(), spans

    async def submit(self, forwarder: Forwarder, spans: int = 3) -> None:
        payload, n = self.request(spans)
        await forwarder.submit("traces", payload, n)
        self.acked += n


def _totals(forwarder: Forwarder) -> dict[str, float]:
    out = {outcome: value for (_, outcome), value in forwarder.families.spans.snapshot()}
    out["queued"] = sum(w.queue.items for w in forwarder.workers)
    return out


def _check_accounting(forwarder: Forwarder, sent: Sent, fake: FakeOtlpServer) -> dict[str, float]:
    totals = _totals(forwarder)
    assert sent.acked == totals.get("sent", 0) + totals.get("dropped", 0) + totals["queued"], totals
    assert fake.delivered_spans() == totals.get("sent", 0), (fake.delivered_spans(), totals)
    return totals


async def _until(predicate: Any, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError("condition not reached")
        await asyncio.sleep(0.01)  # polling the forwarder's progress, not waiting for time


@pytest.fixture
async def started() -> Any:
    """Start forwarders built in the test and stop them at teardown."""
    made: list[Forwarder] = []

    async def start(config: CollectorConfig) -> Forwarder:
        forwarder = Forwarder.from_config(config)
        await forwarder.start()
        made.append(forwarder)
        return forwarder

    yield start
    for forwarder in made:
        await forwarder.stop(0.5)


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_delivers_received_bytes_with_headers_and_gzip(
    fake_otlp: FakeOtlpServer, started: Any, protocol: str
) -> None:
    """Every submitted span reaches the downstream once, with the configured header, gzip-compressed."""
    forwarder = await started(_config(fake_otlp, protocol, compression="gzip", headers={"x-api-key": "k1"}))
    sent = Sent()
    for _ in range(5):
        await sent.submit(forwarder)
    await _until(lambda: forwarder.workers[0].queue.empty())
    totals = _check_accounting(forwarder, sent, fake_otlp)
    assert totals["sent"] == 15 and fake_otlp.duplicates() == 0
    assert all(seen.headers.get("x-api-key") == "k1" for seen in fake_otlp.requests)
    if protocol != "grpc":
        assert fake_otlp.requests[0].headers.get("content-encoding") == "gzip"


@pytest.mark.parametrize(
    ("protocol", "http_status"), [("grpc", 0), ("http/protobuf", 429), ("http/protobuf", 503)]
)
async def test_throttling_hint_replaces_backoff(
    fake_otlp: FakeOtlpServer, started: Any, protocol: str, http_status: int
) -> None:
    """A RetryInfo / Retry-After (429, 503) hint is waited for instead of the much longer backoff."""
    hint = 1.0  # Retry-After carries whole seconds
    forwarder = await started(
        _config(fake_otlp, protocol, retry={"initial_interval": 30, "max_interval": 30})
    )
    fake_otlp.script(Fail(grpc.StatusCode.UNAVAILABLE, http_status or 503, retry_after=hint))
    sent = Sent()
    await sent.submit(forwarder)
    await _until(lambda: forwarder.workers[0].queue.empty(), timeout=8)
    first, second = fake_otlp.requests[0].at, fake_otlp.requests[1].at
    assert hint * 0.9 <= second - first < 5  # the 30 s backoff was not used
    assert _check_accounting(forwarder, sent, fake_otlp)["failed"] == 3


@pytest.mark.parametrize(
    ("protocol", "failure"),
    [
        ("grpc", Fail(grpc.StatusCode.INVALID_ARGUMENT, 400)),
        ("grpc", Fail(grpc.StatusCode.RESOURCE_EXHAUSTED, 400)),  # no RetryInfo: permanent
        ("grpc", Fail(grpc.StatusCode.UNAUTHENTICATED, 401)),
        ("http/protobuf", Fail(grpc.StatusCode.INVALID_ARGUMENT, 400)),
        ("http/protobuf", Fail(grpc.StatusCode.INVALID_ARGUMENT, 413)),
    ],
)
async def test_permanent_errors_are_not_retried(
    fake_otlp: FakeOtlpServer, started: Any, protocol: str, failure: Fail
) -> None:
    """Permanent errors are sent once and counted as dropped (reason permanent)."""
    forwarder = await started(_config(fake_otlp, protocol))
    fake_otlp.script(failure)
    sent = Sent()
    await sent.submit(forwarder)
    await sent.submit(forwarder)
    await _until(lambda: forwarder.workers[0].queue.empty())
    assert fake_otlp.answers() == ["Fail", "Ok"]
    totals = _check_accounting(forwarder, sent, fake_otlp)
    assert totals["dropped"] == 3 and "failed" not in totals
    assert dict(forwarder.families.dropped.snapshot()) == {("down", "permanent"): 3}


async def test_resource_exhausted_with_hint_is_retried(fake_otlp: FakeOtlpServer, started: Any) -> None:
    """RESOURCE_EXHAUSTED with RetryInfo is throttling: retried after the hint."""
    forwarder = await started(_config(fake_otlp, "grpc"))
    fake_otlp.script(Fail(grpc.StatusCode.RESOURCE_EXHAUSTED, 429, retry_after=0.05))
    sent = Sent()
    await sent.submit(forwarder)
    await _until(lambda: forwarder.workers[0].queue.empty())
    assert fake_otlp.answers() == ["Fail", "Ok"]
    assert _check_accounting(forwarder, sent, fake_otlp)["sent"] == 3


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_partial_success_counts_rejected_as_dropped(
    fake_otlp: FakeOtlpServer, started: Any, protocol: str
) -> None:
    """Items a downstream rejects in partial_success are dropped (reason rejected), the rest sent."""
    forwarder = await started(_config(fake_otlp, protocol))
    fake_otlp.script(Partial(2))
    sent = Sent()
    await sent.submit(forwarder, spans=5)
    await _until(lambda: forwarder.workers[0].queue.empty())
    totals = _check_accounting(forwarder, sent, fake_otlp)
    assert (totals["sent"], totals["dropped"]) == (3, 2)
    assert dict(forwarder.families.dropped.snapshot()) == {("down", "rejected"): 2}


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_slow_downstream_attempt_times_out_and_is_retried(
    fake_otlp: FakeOtlpServer, started: Any, protocol: str, caplog: pytest.LogCaptureFixture
) -> None:
    """An attempt longer than ``timeout`` is abandoned and retried (counted failed once); the
    timeout is visible: counted, logged with what was in flight, and in the send-duration histogram."""
    forwarder = await started(_config(fake_otlp, protocol, timeout="200ms"))
    fake_otlp.script(Delay(1.0))
    sent = Sent()
    began = time.monotonic()
    await sent.submit(forwarder)
    await _until(lambda: forwarder.workers[0].queue.empty())
    totals = _totals(forwarder)
    assert totals["failed"] == 3 and totals["sent"] == 3
    families = forwarder.families
    assert families.timeouts.value(("down",)) == 1
    assert caplog.text.count("exporter down: no answer within 0.2 s") == 1, caplog.text
    assert "a request of 3 traces" in caplog.text
    ((labels, (_, count, total, _, longest)),) = families.send_duration.snapshot()
    assert labels == ("down",) and count == 2  # the timed-out attempt and the retry
    assert 0.2 <= longest < 1.0 and total >= 0.2
    # The second attempt started after the timeout, not after the slow answer.
    await _until(lambda: len(fake_otlp.requests) >= 2)
    arrivals = sorted(seen.at for seen in fake_otlp.requests)
    assert arrivals[1] - began < 0.9
    # The slow first request was also accepted by the fake after we gave up: one duplicate at most.
    assert fake_otlp.duplicates() <= 3


async def test_retries_exhausted_are_dropped(fake_otlp: FakeOtlpServer, started: Any) -> None:
    """A downstream down for longer than max_elapsed_time: the batch is dropped and counted."""
    fake_otlp.down()
    forwarder = await started(_config(fake_otlp, "grpc", retry={"max_elapsed_time": "300ms"}))
    sent = Sent()
    await sent.submit(forwarder)
    await _until(lambda: forwarder.workers[0].queue.empty())
    totals = _check_accounting(forwarder, sent, fake_otlp)
    assert totals["dropped"] == 3 and totals["failed"] >= 3
    assert dict(forwarder.families.dropped.snapshot()) == {("down", "retries_exhausted"): 3}


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_down_beyond_queue_capacity_refuses_then_recovers(
    fake_otlp: FakeOtlpServer, started: Any, protocol: str
) -> None:
    """Downstream down: the queue fills, submit refuses (retryably, with the hint), readiness
    drops; back up: everything queued is delivered and submit accepts again."""
    fake_otlp.down()
    config = _config(
        fake_otlp, protocol, queue={"max_items": 9, "retry_after": "2s"}, collector={"unready_after": 60}
    )
    forwarder = await started(config)
    sent = Sent()
    for _ in range(3):
        await sent.submit(forwarder)
    with pytest.raises(QueueFull) as refused:
        await sent.submit(forwarder)
    assert refused.value.retry_after == 2.0
    assert not forwarder.ready()
    fake_otlp.up()
    await _until(lambda: forwarder.workers[0].queue.empty())
    assert forwarder.ready()
    await sent.submit(forwarder)
    await _until(lambda: forwarder.workers[0].queue.empty())
    assert _check_accounting(forwarder, sent, fake_otlp)["sent"] == 12


async def test_a_failure_streak_is_logged_once_and_does_not_make_it_unready(
    fake_otlp: FakeOtlpServer, started: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """Failing for longer than unready_after with room in the queue: still ready (submit
    accepts), the streak is logged once, and its end is logged when a send succeeds."""
    fake_otlp.down()
    forwarder = await started(_config(fake_otlp, "grpc", collector={"unready_after": 0}))
    sent = Sent()
    await sent.submit(forwarder)
    await _until(lambda: _totals(forwarder).get("failed", 0) >= 9)  # three failed attempts
    assert forwarder.ready()
    await sent.submit(forwarder)
    assert caplog.text.count("no successful send for") == 1
    fake_otlp.up()
    await _until(lambda: forwarder.workers[0].queue.empty())
    assert forwarder.ready()
    assert caplog.text.count("sending again after") == 1
    _check_accounting(forwarder, sent, fake_otlp)


async def test_shutdown_counts_what_it_could_not_send(fake_otlp: FakeOtlpServer, caplog: Any) -> None:
    """Stopping with the downstream down drains for the timeout, then counts the rest as dropped
    (reason shutdown) and logs how many."""
    fake_otlp.down()
    forwarder = Forwarder.from_config(_config(fake_otlp, "grpc"))
    await forwarder.start()
    sent = Sent()
    for _ in range(4):
        await sent.submit(forwarder)
    began = time.monotonic()
    left = await forwarder.stop(0.3)
    assert time.monotonic() - began < 2.0
    assert left == 12
    totals = _check_accounting(forwarder, sent, fake_otlp)
    assert totals["dropped"] == 12 and totals["queued"] == 0
    assert dict(forwarder.families.dropped.snapshot()) == {("down", "shutdown"): 12}
    assert "12 items not delivered" in caplog.text


async def test_two_exporters_each_get_everything(started: Any) -> None:
    """With two downstreams, each receives every span (its own queue and worker)."""
    first, second = FakeOtlpServer(), FakeOtlpServer()
    try:
        config = CollectorConfig.model_validate(
            {
                "exporters": {
                    "a": {"endpoint": first.grpc_endpoint},
                    "b": {"endpoint": second.http_url, "protocol": "http/protobuf"},
                }
            }
        )
        forwarder = await started(config)
        sent = Sent()
        for _ in range(3):
            await sent.submit(forwarder)
        await _until(lambda: all(w.queue.empty() for w in forwarder.workers))
        assert first.delivered_spans() == second.delivered_spans() == 9
    finally:
        first.stop()
        second.stop()


def test_backoff_grows_with_jitter_and_caps() -> None:
    """Backoff is initial x multiplier^n within +-randomization, capped at max_interval."""
    config = CollectorConfig.model_validate(
        {"exporters": {"x": {"endpoint": "127.0.0.1:1", "retry": {"initial_interval": 1, "max_interval": 4}}}}
    )
    retry = config.exporters["x"].retry  # type: ignore[index]
    low, high = RetryPolicy(retry, rand=lambda: 0.0), RetryPolicy(retry, rand=lambda: 1.0)
    assert [low.backoff(n) for n in (1, 2, 3)] == [0.5, 0.75, 1.125]
    assert [high.backoff(n) for n in (1, 2, 5, 9)] == [1.5, 2.25, 6.0, 6.0]


async def test_queued_requests_are_merged_into_one_send(fake_otlp: FakeOtlpServer) -> None:
    """Requests queued behind each other go out as one concatenated request (no re-encoding)."""
    forwarder = Forwarder.from_config(_config(fake_otlp, "grpc", max_request_bytes=1 << 20))
    sent = Sent()
    for _ in range(3):
        await sent.submit(forwarder)
    await forwarder.start()
    try:
        await _until(lambda: forwarder.workers[0].queue.empty())
        assert [seen.items for seen in fake_otlp.requests] == [9]
        assert _check_accounting(forwarder, sent, fake_otlp)["sent"] == 9
    finally:
        await forwarder.stop(0.5)


async def test_permanent_error_on_a_merged_send_retries_each_request_alone(fake_otlp: FakeOtlpServer) -> None:
    """A permanent error on merged requests sends each one alone, so one bad request cannot
    take the others with it."""
    forwarder = Forwarder.from_config(_config(fake_otlp, "grpc", max_request_bytes=1 << 20))
    fake_otlp.script(Fail(grpc.StatusCode.INVALID_ARGUMENT, 400), Fail(grpc.StatusCode.INVALID_ARGUMENT, 400))
    sent = Sent()
    for _ in range(3):
        await sent.submit(forwarder)
    await forwarder.start()
    try:
        await _until(lambda: forwarder.workers[0].queue.empty())
        assert [(seen.answer, seen.items) for seen in fake_otlp.requests] == [
            ("Fail", 9), ("Fail", 3), ("Ok", 3), ("Ok", 3)
        ]  # fmt: skip
        totals = _check_accounting(forwarder, sent, fake_otlp)
        assert (totals["sent"], totals["dropped"]) == (6, 3)
    finally:
        await forwarder.stop(0.5)


async def test_requests_queued_behind_a_send_in_flight_go_out_merged_when_it_answers(
    fake_otlp: FakeOtlpServer, started: Any
) -> None:
    """With four consumers, requests arriving one by one while a send awaits its answer are not
    each sent by an idle consumer: they wait and go out as one send when the answer comes."""
    forwarder = await started(_config(fake_otlp, "grpc", max_request_bytes=1 << 20))
    worker = forwarder.workers[0]
    assert worker.consumers == 4
    worker.send_linger = 5.0  # longer than the slow answer: only the answer releases them
    fake_otlp.script(Delay(0.5))
    sent = Sent()
    await sent.submit(forwarder)
    await _until(lambda: worker.in_flight == 1)
    for _ in range(4):
        await sent.submit(forwarder)
        await asyncio.sleep(0.02)  # one by one, as requests arrive
    assert worker.in_flight == 1
    await _until(lambda: worker.queue.empty())
    assert [seen.items for seen in fake_otlp.requests] == [3, 12]
    assert _check_accounting(forwarder, sent, fake_otlp)["sent"] == 15


async def test_enough_bytes_waiting_start_another_send_beside_the_one_in_flight(
    fake_otlp: FakeOtlpServer, started: Any
) -> None:
    """Once 512 KiB (here ``max_request_bytes``, smaller) are waiting, a second send starts
    without waiting for the first answer or the linger: a slow downstream gets sends in parallel
    before much piles up."""
    sent = Sent()
    size = len(sent.request()[0])
    assert 2 * size < SEND_EARLY_BYTES
    forwarder = await started(_config(fake_otlp, "grpc", max_request_bytes=2 * size))
    worker = forwarder.workers[0]
    worker.send_linger = 5.0
    fake_otlp.script(Delay(1.0))
    await sent.submit(forwarder)
    await _until(lambda: worker.in_flight == 1)
    await sent.submit(forwarder)
    await asyncio.sleep(0.05)
    assert worker.in_flight == 1  # half a request's worth waits behind the slow send
    await sent.submit(forwarder)
    await _until(lambda: fake_otlp.delivered_spans() == 6, timeout=0.5)  # not after the 1 s answer
    assert worker.in_flight == 1  # the slow one
    await _until(lambda: worker.queue.empty())
    assert sorted(seen.items for seen in fake_otlp.requests) == [3, 6]
    _check_accounting(forwarder, sent, fake_otlp)


async def test_a_stalled_send_holds_the_requests_behind_it_back_for_the_linger_only(
    fake_otlp: FakeOtlpServer, started: Any
) -> None:
    """A send the downstream sits on (5 s here, within the 10 s timeout) delays the requests
    behind it by the linger (20 ms), not by the stall: another consumer sends them."""
    forwarder = await started(_config(fake_otlp, "grpc", max_request_bytes=1 << 20))
    worker = forwarder.workers[0]
    assert worker.send_linger == SEND_LINGER_S == 0.02
    fake_otlp.script(Delay(5.0))
    sent = Sent()
    await sent.submit(forwarder)
    await _until(lambda: worker.in_flight == 1)
    began = time.monotonic()
    await sent.submit(forwarder)
    await _until(lambda: fake_otlp.delivered_spans() == 3, timeout=2.0)
    assert time.monotonic() - began < 1.0
    await _until(lambda: worker.in_flight == 1, timeout=1.0)  # the stalled one, still out
    await _until(lambda: worker.queue.empty(), timeout=10)
    _check_accounting(forwarder, sent, fake_otlp)


@pytest.mark.parametrize(
    ("header", "seconds"),
    [("3", 3.0), ("1.5", 1.5), ("-1", None), ("nan", None), ("junk", None), (None, None),
     ("Wed, 21 Oct 2015 07:28:00 GMT", 0.0), ("Wed, 21 Oct 2015 07:28:10 GMT", 10.0)],
)  # fmt: skip
def test_retry_after_header_forms(header: str | None, seconds: float | None) -> None:
    """Retry-After as delta-seconds or an HTTP date (relative to now); nonsense is no hint."""
    now = 1445412480.0  # 2015-10-21 07:28:00 UTC
    assert parse_retry_after(header, now=now) == seconds


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_connection_resets_are_retried_without_loss(
    fake_otlp: FakeOtlpServer, started: Any, protocol: str
) -> None:
    """Connections reset by the network before reaching the downstream are retried: every span
    arrives once."""
    port = fake_otlp.grpc_port if protocol == "grpc" else fake_otlp.http_port
    proxy = FaultProxy("127.0.0.1", port)
    try:
        proxy.reset_next(2)
        endpoint = proxy.endpoint if protocol == "grpc" else f"http://{proxy.endpoint}"
        config = CollectorConfig.model_validate(
            {
                "exporters": {
                    "down": {
                        "endpoint": endpoint,
                        "protocol": protocol,
                        "timeout": "2s",
                        "max_request_bytes": 0,
                        "retry": {"initial_interval": "20ms", "max_interval": "100ms"},
                    }
                }
            }
        )
        forwarder = await started(config)
        sent = Sent()
        for _ in range(4):
            await sent.submit(forwarder)
        await _until(lambda: forwarder.workers[0].queue.empty(), timeout=20)
        assert proxy.resets == 2
        totals = _check_accounting(forwarder, sent, fake_otlp)
        assert totals["sent"] == 12 and totals["failed"] >= 3 and fake_otlp.duplicates() == 0
    finally:
        proxy.stop()


async def test_one_exporter_down_does_not_hold_back_the_other_until_its_queue_fills(started: Any) -> None:
    """Exporter a keeps delivering while b is down; once b's queue is full every request is
    refused (nothing acked that b could lose); b back up receives everything acked."""
    healthy, broken = FakeOtlpServer(), FakeOtlpServer()
    broken.down()
    try:
        retry = {"initial_interval": "20ms", "max_interval": "50ms"}
        config = CollectorConfig.model_validate(
            {
                "exporters": {
                    "a": {"endpoint": healthy.grpc_endpoint, "retry": retry, "max_request_bytes": 0},
                    "b": {"endpoint": broken.grpc_endpoint, "retry": retry, "queue": {"max_items": 6}},
                }
            }
        )
        forwarder = await started(config)
        sent = Sent()
        await sent.submit(forwarder)
        await sent.submit(forwarder)
        await _until(lambda: healthy.delivered_spans() == 6)
        with pytest.raises(QueueFull):
            await sent.submit(forwarder)
        broken.up()
        await _until(lambda: all(w.queue.empty() for w in forwarder.workers), timeout=15)
        assert healthy.delivered_spans() == broken.delivered_spans() == sent.acked == 6
    finally:
        healthy.stop()
        broken.stop()


@pytest.mark.parametrize("keepalive", [True, False])
async def test_a_silently_dead_connection_is_replaced_before_the_attempt_times_out(
    fake_otlp: FakeOtlpServer, started: Any, keepalive: bool
) -> None:
    """The downstream connection turns into a black hole (no FIN, no RST: a crashed host, a lost
    NAT entry). With keepalive (the default) the next send finds out within keepalive.timeout,
    reconnects and delivers well before its 30 s attempt timeout; without it the send hangs for
    the whole timeout (the retry would then meet the same dead connection)."""
    proxy = FaultProxy("127.0.0.1", fake_otlp.grpc_port)
    try:
        exporter: dict[str, Any] = {
            "endpoint": proxy.endpoint,
            "timeout": "30s",
            "max_request_bytes": 0,
            "retry": {"initial_interval": "20ms", "max_interval": "100ms"},
            "keepalive": {"time": "1s", "timeout": "1s"} if keepalive else None,
        }
        forwarder = await started(CollectorConfig.model_validate({"exporters": {"down": exporter}}))
        sent = Sent()
        await sent.submit(forwarder)
        # Delivered *and answered*: silencing between the downstream's receipt and its answer
        # would lose the answer, and the retry would rightly deliver those spans twice.
        await _until(lambda: _totals(forwarder).get("sent", 0) == 3)
        assert fake_otlp.delivered_spans() == 3
        proxy.silence_open()
        began = time.monotonic()
        await sent.submit(forwarder)
        if keepalive:
            await _until(lambda: _totals(forwarder).get("sent", 0) == 6, timeout=10)  # answered too
            assert time.monotonic() - began < 10
            assert _totals(forwarder)["failed"] == 3  # one attempt lost to the dead connection
            assert forwarder.families.timeouts.value(("down",)) == 0  # found out before the timeout
            _check_accounting(forwarder, sent, fake_otlp)
        else:
            await asyncio.sleep(5)
            assert fake_otlp.delivered_spans() == 3  # still hanging on the dead connection
    finally:
        proxy.stop()


def test_keepalive_defaults_follow_the_otel_collector() -> None:
    """Default keepalive: 10 s pings while a send is in flight, 10 s to answer (configgrpc's
    client defaults), and the outstanding-ping timeout bounded the same way; null turns it off."""
    from spansignals.processors.collector.exporter import _keepalive_options

    config = CollectorConfig.model_validate({"exporters": {"down": {"endpoint": "127.0.0.1:4317"}}})
    options = dict(_keepalive_options(config.exporters["down"].keepalive))  # type: ignore[index]
    assert options == {
        "grpc.keepalive_time_ms": 10_000,
        "grpc.keepalive_timeout_ms": 10_000,
        "grpc.http2.ping_timeout_ms": 10_000,
        "grpc.keepalive_permit_without_calls": 0,
    }
    off = CollectorConfig.model_validate({"exporters": {"down": {"endpoint": "x:1", "keepalive": None}}})
    assert _keepalive_options(off.exporters["down"].keepalive) == []  # type: ignore[index]
