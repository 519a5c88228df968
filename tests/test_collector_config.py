"""Structural checks of the OTel Collector configs we ship (no otelcol binary runs here)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
OTELCOL = sorted((ROOT / "collector-config").rglob("otelcol*/*.yaml"))
SECTIONS = ("receivers", "processors", "exporters", "connectors", "extensions")


@pytest.mark.parametrize("path", OTELCOL, ids=[p.name for p in OTELCOL])
def test_otelcol_config_is_consistent(path: Path):
    """Every pipeline names defined components; endpoints are explicit; a version is stated."""
    text = path.read_text()
    assert "written against v" in text, "state the collector version the config targets"
    cfg = yaml.safe_load(text)
    assert set(cfg) <= {*SECTIONS, "service"}, f"unknown top-level keys {set(cfg) - {*SECTIONS, 'service'}}"
    defined = {section: set(cfg.get(section) or {}) for section in SECTIONS}
    pipelines = cfg["service"]["pipelines"]
    assert pipelines
    for name, pipeline in pipelines.items():
        assert name.split("/")[0] in ("traces", "metrics", "logs")
        for key, section in (
            ("receivers", "receivers"),
            ("processors", "processors"),
            ("exporters", "exporters"),
        ):
            for component in pipeline.get(key, []):
                assert component in defined[section] | defined["connectors"], (
                    f"{path.name}: pipeline {name} uses undefined {key[:-1]} {component}"
                )
    for extension in cfg["service"].get("extensions", []):
        assert extension in defined["extensions"]

    def endpoints(node: object) -> list[str]:
        if isinstance(node, dict):
            found = [v for k, v in node.items() if k == "endpoint" and isinstance(v, str)]
            for v in node.values():
                found += endpoints(v)
            return found
        if isinstance(node, list):
            return [e for item in node for e in endpoints(item)]
        return []

    for endpoint in endpoints(cfg):
        assert ":" in endpoint and not endpoint.startswith("0.0.0.0"), (
            f"endpoint {endpoint!r} must be explicit"
        )


def test_there_is_at_least_one_otelcol_config():
    """The agent config ships."""
    assert OTELCOL


def _gateway() -> dict:
    return yaml.safe_load((ROOT / "collector-config" / "otelcol" / "gateway-load-balancing.yaml").read_text())


def test_gateway_routes_by_service_to_explicit_spansignals_instances():
    """The load-balancing gateway routes by service over a static list of explicit host:port instances."""
    exporter = _gateway()["exporters"]["loadbalancing"]
    assert exporter["routing_key"] == "service"
    hostnames = exporter["resolver"]["static"]["hostnames"]
    assert len(hostnames) >= 2
    for hostname in hostnames:
        host, _, port = hostname.rpartition(":")
        assert host and host != "0.0.0.0" and port.isdigit(), (
            f"hostname {hostname!r} must be explicit host:port"
        )
    assert len(set(hostnames)) == len(hostnames)
    assert "otlp" in exporter["protocol"]


def test_gateway_keeps_the_backend_and_sends_traces_through_the_balancer():
    """The traces pipeline exports to the balancer and still to the tracing backend."""
    pipeline = _gateway()["service"]["pipelines"]["traces"]
    assert "loadbalancing" in pipeline["exporters"]
    assert any(name.startswith("otlp/") for name in pipeline["exporters"])
    assert pipeline["processors"][0] == "memory_limiter"
