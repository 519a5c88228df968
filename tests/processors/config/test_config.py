"""Tests of configuration loading: the DESIGN.md example, error paths and lines, secrets."""

from __future__ import annotations

import re
from decimal import Decimal
from pathlib import Path

import pytest

from spansignals.processors.config import ConfigError, SpansignalsConfig, load_config, loads_config
from spansignals.processors.config._types import parse_duration

ROOT = Path(__file__).resolve().parents[3]
EXAMPLE = ROOT / "examples" / "config" / "spansignals.yaml"
CASES = sorted((ROOT / "tests" / "testdata" / "config").glob("*.yaml"))
_EXPECT = re.compile(r"^# expect: (?P<path>.+?) @ (?P<line>\d+) :: (?P<msg>.+)$")


def test_design_example_loads_and_means_what_it_says():
    """The DESIGN.md configuration example validates with the values it shows."""
    cfg = load_config(EXAMPLE, env={"SLACK_WEBHOOK_URL": "https://hooks.slack.com/services/T/B/X"})
    assert cfg.service.name == "checkout-api"
    assert cfg.providers[0].name == "internal-llm" and cfg.providers[0].dialect == "openai"
    assert cfg.pricing.models[0].cache_read_per_mtok == Decimal("0.30")
    assert cfg.pricing.apis[0].per_request == Decimal("0.0079")
    budget = cfg.budgets[0]
    assert budget.period == "month" and budget.limit_usd == Decimal(1000)
    assert (budget.thresholds.warning, budget.thresholds.critical, budget.thresholds.emergency) == (
        0.75,
        0.90,
        0.95,
    )
    assert cfg.ratelimits.breaker.window == 60.0 and cfg.ratelimits.breaker.open_for == 30.0
    assert cfg.ratelimits.guard.mode == "reject" and cfg.ratelimits.guard.max_wait == 10.0
    assert cfg.slos[1].latency_threshold == 2.0 and cfg.slos[1].period == 30 * 86400
    assert cfg.alerts.rules[0].condition == ">= 2" and cfg.alerts.rules[0].for_ == 0.0
    assert cfg.alerts.routes[0].repeat_interval == 4 * 3600
    slack = cfg.alerts.receivers[1].slack
    assert slack is not None and slack.webhook_url.get_secret_value().startswith("https://hooks.slack.com/")
    assert "hooks.slack.com" not in repr(cfg)
    assert cfg.collector.exporters is not None and cfg.collector.exporters["otlp"].protocol == "grpc"


@pytest.mark.parametrize("case", CASES, ids=[c.stem for c in CASES])
def test_invalid_configs_name_the_field_and_line(case: Path):
    """Each bad config in tests/testdata/config fails naming its field path, line and rule."""
    expect = _EXPECT.match(case.read_text().splitlines()[0])
    assert expect, f"{case.name} needs an '# expect:' first line"
    with pytest.raises(ConfigError) as info:
        load_config(case, env={})
    found = [(path, line, msg) for path, line, msg in info.value.errors if path == expect["path"]]
    assert found, f"no error for {expect['path']} in {info.value.errors}"
    _, line, msg = found[0]
    assert line == int(expect["line"])
    assert expect["msg"] in msg
    assert f"{case}:{expect['line']}: {expect['path']}:" in str(info.value)


def test_defaults_are_the_embedded_collector_config():
    """No source and no SPANSIGNALS_CONFIG gives the DESIGN.md embedded defaults."""
    cfg = load_config(None, env={})
    assert cfg == SpansignalsConfig()
    assert cfg.collector.receivers.otlp.grpc is not None
    assert cfg.collector.receivers.otlp.grpc.endpoint == "127.0.0.1:4317"
    assert cfg.collector.receivers.otlp.http is not None
    assert cfg.collector.receivers.otlp.http.endpoint == "127.0.0.1:4318"
    assert cfg.collector.prometheus.endpoint == "127.0.0.1:9464"
    assert cfg.collector.exporters is None


def test_env_var_names_the_config_file(tmp_path: Path):
    """SPANSIGNALS_CONFIG is used when no source is passed."""
    path = tmp_path / "c.yaml"
    path.write_text("service: {name: from-env-file}\n")
    assert load_config(None, env={"SPANSIGNALS_CONFIG": str(path)}).service.name == "from-env-file"


def test_env_interpolation_default_and_escape():
    """${VAR:-default} falls back; $${ is a literal ${."""
    cfg = loads_config(
        "service: {name: '${SVC:-fallback}', resource_attributes: {a: '$${literal}', b: 'x-${B}'}}",
        env={"B": "bee"},
    )
    assert cfg.service.name == "fallback"
    assert cfg.service.resource_attributes == {"a": "${literal}", "b": "x-bee"}


def test_secret_values_are_never_echoed_in_errors():
    """An invalid value in a secret-bearing field is not repeated in the error message."""
    with pytest.raises(ConfigError) as info:
        loads_config("alerts:\n  receivers: [{name: s, slack: {webhook_url: [sup3rs3cret]}}]\n", env={})
    assert "sup3rs3cret" not in str(info.value)
    assert "alerts.receivers[0].slack.webhook_url" in str(info.value)


def test_unreadable_file_is_a_config_error(tmp_path: Path):
    """A missing file is reported as a config error, not a traceback."""
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "nope.yaml")


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("30s", 30), ("100ms", 0.1), ("5m", 300), ("1h30m", 5400), ("30d", 2592000), ("2w", 1209600), (7, 7)],
)
def test_durations(text: object, seconds: float):
    """Durations accept unit suffixes, compounds and plain seconds."""
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("bad", ["", "5", "1x", "-5s", "s5", True, None])
def test_bad_durations(bad: object):
    """Anything but a well-formed non-negative duration is refused."""
    with pytest.raises(ValueError):
        parse_duration(bad)
