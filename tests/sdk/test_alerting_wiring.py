"""configure() runs the in-process alerting engine over the app's derived signals."""

from __future__ import annotations

from collections.abc import Callable

from sdk_fixtures import Providers

from spansignals.sdk import Telemetry


def test_configure_alerts_on_derived_signals_and_shutdown_stops_them(
    configured: Callable[..., Telemetry], providers: Providers
) -> None:
    """A rule on the RED counter fires from app spans (deferred derivation included); shutdown stops it."""
    telemetry = configured(
        {
            "alerts": {
                "rules": [
                    {
                        "name": "AnyCalls",
                        "signal": "traces_span_metrics_calls_total",
                        "match": {"span_name": "checkout"},
                        "condition": ">= 3",
                        "severity": "critical",
                    }
                ],
                "receivers": [{"name": "log", "log": True}],
                "routes": [{"receiver": "log", "group_wait": "0s"}],
            }
        },
        tracer_provider=providers.tracer_provider,
        meter_provider=providers.meter_provider,
        instrument_httpx=False,
    )
    assert telemetry.alerts is not None
    tracer = providers.tracer_provider.get_tracer("t")
    for _ in range(2):
        tracer.start_span("checkout").end()
    start = telemetry.alerts.now()
    telemetry.alerts.tick(start)
    assert [a for a in telemetry.alerts.list_alerts() if a["labels"]["alertname"] == "AnyCalls"] == []
    tracer.start_span("checkout").end()
    telemetry.alerts.tick(start + 60)  # the next evaluation (every evaluation_interval, 15 s)
    firing = [a for a in telemetry.alerts.list_alerts() if a["labels"]["alertname"] == "AnyCalls"]
    assert len(firing) == 1 and firing[0]["state"] == "firing"
    assert telemetry.shutdown(timeout=5) is True
