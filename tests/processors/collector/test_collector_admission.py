"""Memory limit as backpressure, and the retry hints the refusals carry."""

from __future__ import annotations

import pytest
from google.rpc import code_pb2, error_details_pb2, status_pb2

from spansignals.processors.collector.admission import AdmissionControl
from spansignals.processors.collector.refusals import Refused, http_unavailable, retry_status_details


class _Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_inflight_budget_refuses_while_full_and_admits_after_release() -> None:
    """A second request that would pass the in-flight budget is refused until the first finishes."""
    control = AdmissionControl(max_inflight_bytes=1000, memory_limit_bytes=None, retry_after_s=2.5)
    with control.hold(800):
        with pytest.raises(Refused) as info, control.hold(300):
            pass
        assert info.value.retry_after_s == 2.5
    with control.hold(300):
        assert control.inflight_bytes == 300
    assert control.inflight_bytes == 0
    assert control.refusals.value(("inflight_bytes",)) == 1


def test_one_request_larger_than_the_budget_is_admitted_alone() -> None:
    """The size limit bounds one request; the in-flight budget only bounds concurrency."""
    control = AdmissionControl(max_inflight_bytes=1000, memory_limit_bytes=None)
    with control.hold(5000):
        assert control.inflight_bytes == 5000


def test_rss_over_the_limit_refuses_after_trying_to_reclaim() -> None:
    """Over the RSS limit: reclaim once, re-read RSS, refuse while still over, recover below it."""
    clock, rss, reclaimed = _Clock(), [2000], []
    control = AdmissionControl(
        max_inflight_bytes=None,
        memory_limit_bytes=1000,
        rss=lambda: rss[0],
        clock=clock,
        reclaim=lambda: reclaimed.append(clock.now),
        rss_check_interval_s=0.2,
    )
    with pytest.raises(Refused, match="memory limit"):
        control.check()
    assert reclaimed == [0.0]
    clock.now = 0.1  # within the check interval: the last reading stands
    with pytest.raises(Refused):
        control.check()
    rss[0] = 500
    clock.now = 0.3
    control.check()
    assert control.refusals.value(("memory_limit",)) == 2


def test_reclaim_that_frees_enough_admits_the_request() -> None:
    """A past spike is not latched: when reclaiming brings RSS under the limit, the request passes."""
    rss = [2000]
    control = AdmissionControl(
        max_inflight_bytes=None,
        memory_limit_bytes=1000,
        rss=lambda: rss[0],
        reclaim=lambda: rss.__setitem__(0, 10),
    )
    control.check()
    assert control.refusals.value(("memory_limit",)) == 0


def test_grpc_refusal_details_carry_retry_info() -> None:
    """The grpc-status-details-bin payload is UNAVAILABLE with a RetryInfo of the given delay."""
    status = status_pb2.Status.FromString(retry_status_details("busy", 2.5))
    assert status.code == code_pb2.UNAVAILABLE
    info = error_details_pb2.RetryInfo()
    assert status.details[0].Unpack(info)
    assert (info.retry_delay.seconds, info.retry_delay.nanos) == (2, 500_000_000)


def test_http_refusal_is_503_with_retry_after_rounded_up() -> None:
    """HTTP refusals are 503 with Retry-After in whole seconds, at least 1."""
    response = http_unavailable("busy", 0.2, as_json=False)
    assert response.status == 503
    assert response.headers["Retry-After"] == "1"
    assert http_unavailable("busy", 2.1, as_json=True).headers["Retry-After"] == "3"
