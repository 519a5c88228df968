"""Alert rules: conditions, matchers, templates, signal names as Prometheus renders them."""

from __future__ import annotations

import pytest
from opentelemetry.exporter.prometheus import PrometheusMetricReader
from opentelemetry.sdk.metrics import MeterProvider
from prometheus_client import CollectorRegistry, generate_latest

from spansignals.processors.alerts._promnames import prometheus_label, prometheus_name
from spansignals.processors.alerts.rules import AlertRule, Condition, render_template
from spansignals.processors.alerts.signals import EventTable, SignalSnapshot, read_families
from spansignals.processors.events import SignalEvent
from spansignals.processors.families import CounterFamily, GaugeFamily, HistogramFamily
from spansignals.processors.producer import SignalMetricProducer, attach_producer


@pytest.mark.parametrize(
    ("text", "value", "holds"),
    [
        (">= 2", 2.0, True),
        (">= 2", 1.9, False),
        ("< 0.1", 0.05, True),
        ("== 1", 1.0, True),
        ("!= 1", 1.0, False),
        ("> 1e3", 1001.0, True),
        ("== page", "page", True),
        ("== page", "ticket", False),
        ("!= ok", "page", True),
        (">= 2", "page", False),
        ("== page", 2.0, False),
    ],
)
def test_condition_table(text, value, holds):
    """Each comparison holds exactly when it should; numbers never equal words."""
    assert Condition.parse(text).holds(value) is holds


@pytest.mark.parametrize("text", ["> page", "~ 2", ">=", "2 >="])
def test_condition_rejects_nonsense(text):
    """Words only compare with ==/!=; a condition needs an operator and an operand."""
    with pytest.raises(ValueError):
        Condition.parse(text)


def test_templates_expand_labels_and_value():
    """{{ labels.x }}, {{ $labels.x }}, {{ value }} and {{ $value }} expand; unknown labels are empty."""
    text = "budget {{ labels.budget }} / {{ $labels.budget }} at {{ value }} ({{ $value }}){{ labels.nope }}"
    assert render_template(text, {"budget": "llm"}, 2.0) == "budget llm / llm at 2 (2)"
    assert render_template("{{ value }}", {}, 0.123456) == "0.1235"


def _prom_text(*families) -> str:
    registry = CollectorRegistry()
    reader = PrometheusMetricReader(registry=registry)
    provider = MeterProvider(metric_readers=[reader])
    producer = SignalMetricProducer()
    producer.register(*families)
    attach_producer(reader, producer)
    text = generate_latest(registry).decode()
    provider.shutdown()
    return text


def test_prometheus_names_match_the_real_exporter():
    """Our OTel→Prometheus name and label mapping equals what the OTel Prometheus exporter renders."""
    families = [
        CounterFamily("spansignals.cost.usd", "d", "{USD}", ("gen_ai.provider.name", "model")),
        GaugeFamily("spansignals.budget.state", "d", "1", ("budget",)),
        GaugeFamily("spansignals.ratelimit.reset", "d", "s", ("provider",)),
        CounterFamily("spansignals.notifications", "d", "{notification}", ("receiver", "outcome")),
        GaugeFamily("spansignals.budget.limit.usd", "d", "{USD}", ("budget",)),
        CounterFamily("spansignals.processor.errors", "d", "{error}", ("processor",)),
    ]
    families[0].add(("openai", "gpt"), 1.5)
    families[1].set(("llm",), 2)
    families[2].set(("openai",), 3)
    families[3].add(("oncall", "sent"), 1)
    families[4].set(("llm",), 1000)
    families[5].add(("red",), 1)
    text = _prom_text(*families)
    for family in families:
        name = prometheus_name(family.name, family.unit, family.kind)
        labels = [prometheus_label(k) for k in family.label_names]
        lines = [ln for ln in text.splitlines() if ln.startswith(name + "{")]
        assert lines, f"{name} not rendered; got:\n{text}"
        assert all(f'{label}="' in lines[0] for label in labels)
    assert prometheus_name("spansignals.cost.usd", "{USD}", "counter") == "spansignals_cost_usd_total"
    assert prometheus_label("gen_ai.provider.name") == "gen_ai_provider_name"


def test_read_families_skips_histograms_and_overflow():
    """Counters and gauges become samples by Prometheus name; histograms and overflow are left out."""
    g = GaugeFamily("spansignals.budget.state", "d", "1", ("budget",), max_series=1)
    g.set(("a",), 1)
    c = CounterFamily("x.calls", "d", "1", ("k",), max_series=1)
    c.add(("a",), 1)
    c.add(("b",), 1)  # overflow
    h = HistogramFamily("x.duration", "d", "s", ("k",), (1.0,))
    h.record(("a",), 0.5)
    samples = read_families([g, c, h])
    assert set(samples) == {"spansignals_budget_state", "x_calls_total"}
    assert [s.labels for s in samples["x_calls_total"]] == [{"k": "a"}]


def test_rule_matches_labels_and_sets_identity_labels():
    """Only matching samples are active; alert labels carry alertname, severity and priority."""
    g = GaugeFamily("spansignals.budget.state", "d", "1", ("budget", "period"))
    g.set(("llm", "month"), 2)
    g.set(("other", "month"), 3)
    rule = AlertRule(
        "LLMBudgetCritical",
        "spansignals_budget_state",
        Condition.parse(">= 2"),
        {"budget": "llm"},
        severity="critical",
        labels={"team": "{{ labels.budget }}-owners"},
        annotations={"summary": "budget {{ labels.budget }} is at state {{ value }}"},
    )
    [(labels, annotations, value)] = list(
        rule.evaluate(SignalSnapshot(read_families([g])), {"service_name": "svc"})
    )
    assert labels == {
        "service_name": "svc",
        "budget": "llm",
        "period": "month",
        "team": "llm-owners",
        "alertname": "LLMBudgetCritical",
        "severity": "critical",
        "priority": "P1",
    }
    assert annotations == {"summary": "budget llm is at state 2"} and value == 2.0


def test_compare_to_uses_the_other_signal_with_the_same_labels():
    """A rule with compare_to fires when its signal exceeds the other signal's same-labelled sample."""
    projected = GaugeFamily("spansignals.budget.projected.usd", "d", "{USD}", ("budget",))
    limit = GaugeFamily("spansignals.budget.limit.usd", "d", "{USD}", ("budget",))
    projected.set(("a",), 1200)
    limit.set(("a",), 1000)
    projected.set(("b",), 900)
    limit.set(("b",), 1000)
    projected.set(("c",), 5000)  # no limit known: never fires
    rule = AlertRule(
        "Over",
        "spansignals_budget_projected_usd",
        Condition.parse("> 0"),
        compare_to="spansignals_budget_limit_usd",
    )
    active = list(rule.evaluate(SignalSnapshot(read_families([projected, limit]))))
    assert [labels["budget"] for labels, _, _ in active] == ["a"]


def test_event_signals_expose_latest_state_per_instance():
    """event:<source> samples hold each instance's latest state, labelled by source and name."""
    table = EventTable()
    table.record(SignalEvent("slo", "checkout", "page", 1.0, 14.4))
    table.record(SignalEvent("slo", "checkout", "ok", 2.0, 0.5))
    table.record(SignalEvent("slo", "search", "ticket", 2.0, 3.0))
    snap = SignalSnapshot.take(list, table)
    rule = AlertRule("SloTicket", "event:slo", Condition.parse("== ticket"))
    [(labels, _, value)] = list(rule.evaluate(snap))
    assert labels["slo"] == "search" and value == "ticket"
    assert not list(AlertRule("SloPage", "event:slo", Condition.parse("== page")).evaluate(snap))


@pytest.mark.parametrize(
    ("matcher", "value", "holds"),
    [
        ("=~critical|warning", "warning", True),
        ("=~critical|warning", "info", False),
        ("=~crit", "critical", False),  # anchored, as in Alertmanager
        ("!~P[12]", "P3", True),
        ("!~P[12]", "P1", False),
        ("!=info", "warning", True),
        ("!=info", "info", False),
        ("=~.*", "", True),
        ("critical", "critical", True),
    ],
)
def test_alertmanager_style_matchers(matcher, value, holds):
    """=~ / !~ (anchored regexes) and != work in rule, route, silence and inhibit matchers."""
    from spansignals.processors.alerts.rules import labels_match

    assert labels_match({"x": value}, {"x": matcher}) is holds


def test_matcher_operators_are_literal_for_maintenance_windows():
    """Maintenance-window matches (shared with the SLO processor) compare values literally."""
    from spansignals.processors.alerts.rules import labels_match

    assert labels_match({"x": "=~a"}, {"x": "=~a"}, literal=True)
    assert not labels_match({"x": "a"}, {"x": "=~a"}, literal=True)


def test_bad_regex_is_a_config_error_naming_the_field():
    """An invalid regex in a route matcher fails config load at alerts.routes[0].match."""
    from spansignals.processors.config import ConfigError, load_config

    with pytest.raises(
        ConfigError, match=r"alerts\.routes\[0\]\.match: severity: invalid regular expression"
    ):
        load_config(
            {
                "alerts": {
                    "receivers": [{"name": "r", "log": True}],
                    "routes": [{"receiver": "r", "match": {"severity": "=~(critical"}}],
                }
            }
        )
