"""Alerting end to end: a budget and an SLO breach notify an Alertmanager endpoint and a signed webhook.

Run:   python examples/alerting.py          (about 3 seconds)
Needs: spansignals installed (``pip install -e .``); Linux loopback alias 127.0.0.2; no network.

What it does: starts a local server standing in for OpenAI (127.0.0.2, Chat Completions in its
documented format, answering 500 when asked to), a local Alertmanager-compatible endpoint
(``POST /api/v2/alerts``) and a local webhook receiver that verifies Standard Webhooks
signatures. It calls ``configure()`` with a daily LLM budget of $0.0075, an availability SLO on
the provider (99%), a rule ``OpenAIErrors`` on the RED error counter, and an alerts block
routing critical alerts to both the Alertmanager endpoint and the webhook, with a silence
on ``OpenAIErrors`` ("known provider incident"). Then:

1. two successful calls ($0.0035 each) take the budget to 93%: the default rule
   ``SpansignalsBudgetCritical`` fires;
2. six failing calls make the SLO burn its error budget far above 14.4x over 5m and 1h: the SLO
   processor reports ``page`` and ``SpansignalsSloBurnRatePage`` fires; ``OpenAIErrors`` fires too,
   but the silence keeps it out of every notification;
3. it waits until both endpoints have the two critical alerts, prints them, and lists the alerts
   as the management API would (state, mute reason). The five failures in a row also open the
   provider's circuit breaker: ``SpansignalsBreakerOpen`` (a warning, not routed here) may be
   listed too, depending on when the listing happens.

Expect lines like ``alertmanager <- SpansignalsBudgetCritical {budget=llm-daily} firing``,
``webhook <- [FIRING:1] ... (signature ok)``, ``OpenAIErrors firing muted by silence:…`` and a
final ``ok: 2 alerts at Alertmanager, 2 at the webhook, 1 silenced``.
"""

from __future__ import annotations

import http.server
import json
import threading
import time
from typing import Any

import httpx

from spansignals.processors.alerts import build_alert_engine
from spansignals.processors.alerts.notifiers.webhook import verify
from spansignals.sdk import configure

OPENAI_HOST = "127.0.0.2"
WEBHOOK_SECRET = "whsec_ZXhhbXBsZS13ZWJob29rLXNpZ25pbmcta2V5LTMyYnl0ZXM="
OPENAI_CHAT = {
    "id": "chatcmpl-demo",
    "object": "chat.completion",
    "model": "gpt-4o-2024-08-06",
    "choices": [{"index": 0, "message": {"role": "assistant", "content": "Hi"}, "finish_reason": "stop"}],
    "usage": {"prompt_tokens": 1000, "completion_tokens": 100, "total_tokens": 1100},
}


class FakeOpenAI(http.server.BaseHTTPRequestHandler):
    """``POST /v1/chat/completions``: a completion, or a 500 when the request says ``"fail": true``."""

    protocol_version = "HTTP/1.1"

    def do_POST(self) -> None:
        request = json.loads(self.rfile.read(int(self.headers.get("content-length") or 0)) or b"{}")
        failing = bool(request.get("fail"))
        body = json.dumps({"error": {"message": "overloaded"}} if failing else OPENAI_CHAT).encode()
        self.send_response(500 if failing else 200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet."""


class Recorder(http.server.BaseHTTPRequestHandler):
    """Keeps every POST (path, headers, body) on the server object; answers 200."""

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("content-length") or 0))
        self.server.received.append((self.path, {k.lower(): v for k, v in self.headers.items()}, body))  # type: ignore[attr-defined]
        self.send_response(200)
        self.send_header("content-length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet."""


def serve(handler: type[http.server.BaseHTTPRequestHandler], host: str = "127.0.0.1") -> Any:
    server = http.server.ThreadingHTTPServer((host, 0), handler)
    server.daemon_threads = True
    server.received = []  # type: ignore[attr-defined]
    threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
    return server


def url_of(server: Any) -> str:
    host, port = server.server_address[:2]
    return f"http://{host}:{port}"


def wait_for(probe: Any, timeout: float = 15.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = probe()
        if value:
            return value
        time.sleep(0.05)  # polling a background worker, not waiting for time to pass
    raise SystemExit("timed out waiting for the notifications")


def main() -> None:
    openai, alertmanager, webhook = serve(FakeOpenAI, OPENAI_HOST), serve(Recorder), serve(Recorder)
    config = {
        "service": {"name": "alerting-demo"},
        "providers": [{"name": "openai", "hosts": [OPENAI_HOST], "dialect": "openai"}],
        "budgets": [
            {"name": "llm-daily", "period": "day", "limit_usd": 0.0075, "match": {"provider": "openai"}}
        ],
        "slos": [{"name": "openai-availability", "match": {"provider": "openai"}, "objective": 0.99}],
        "alerts": {
            "evaluation_interval": "200ms",
            "ssrf_allowlist": ["127.0.0.1"],  # the demo webhook is local; real ones must be public
            "rules": [
                {
                    "name": "OpenAIErrors",
                    "signal": "traces_span_metrics_calls_total",
                    "match": {"status_code": "STATUS_CODE_ERROR", "span_kind": "SPAN_KIND_CLIENT"},
                    "condition": "> 0",
                    "severity": "critical",
                    "annotations": {"summary": "{{ value }} failed calls to {{ labels.server_address }}"},
                },
            ],
            "receivers": [
                {"name": "am", "alertmanager": {"urls": [url_of(alertmanager)], "resend_interval": "30s"}},
                {
                    "name": "oncall-hook",
                    "webhook": {"url": url_of(webhook) + "/alerts", "secret": WEBHOOK_SECRET},
                },
            ],
            "routes": [
                {"match": {"severity": "critical"}, "receiver": "am", "continue": True},
                {
                    "match": {"severity": "critical"},
                    "receiver": "oncall-hook",
                    "group_by": ["alertname"],
                    "group_wait": "0s",
                    "group_interval": "1s",
                },
            ],
            "silences": [
                {
                    "matchers": {"alertname": "OpenAIErrors"},
                    "starts_at": "2020-01-01T00:00:00Z",
                    "ends_at": "2099-01-01T00:00:00Z",
                    "author": "demo",
                    "comment": "known provider incident",
                }
            ],
        },
    }
    telemetry = configure(config, traces_exporter="none", metrics_exporter="none")
    # The front doors start the alerting engine for you once wired; here it is built explicitly.
    alerting = getattr(telemetry, "alerts", None) or build_alert_engine(telemetry.config, telemetry.engine)
    alerting.tick_interval = 0.1
    alerting.start()

    client = httpx.Client()
    base = url_of(openai)
    print("1. two successful calls ($0.0035 each) against a $0.0075 daily budget")
    for _ in range(2):
        client.post(f"{base}/v1/chat/completions", json={"model": "gpt-4o", "messages": []})
    print("2. six failing calls (HTTP 500) against a 99% availability SLO")
    for _ in range(6):
        client.post(f"{base}/v1/chat/completions", json={"model": "gpt-4o", "messages": [], "fail": True})

    wanted = {"SpansignalsBudgetCritical", "SpansignalsSloBurnRatePage"}

    def alertmanager_alerts() -> dict[str, dict[str, Any]]:
        seen = {}
        for _, _, body in list(alertmanager.received):
            for alert in json.loads(body):
                seen[alert["labels"]["alertname"]] = alert
        return seen if wanted <= set(seen) else {}

    def webhook_alerts() -> dict[str, Any]:
        seen = {}
        for _, headers, body in list(webhook.received):
            payload = json.loads(body)
            for alert in payload["alerts"]:
                seen[alert["labels"]["alertname"]] = (payload, headers, body)
        return seen if wanted <= set(seen) else {}

    print("3. notifications")
    at_am = wait_for(alertmanager_alerts)
    for name, alert in sorted(at_am.items()):
        scope = {k: v for k, v in alert["labels"].items() if k in ("budget", "slo")}
        status = "firing" if alert["endsAt"] > alert["startsAt"] else "resolved"
        print(
            f"   alertmanager <- {name} {{{','.join(f'{k}={v}' for k, v in scope.items())}}} {status}:"
            f" {alert['annotations'].get('summary', '')}"
        )
    at_hook = wait_for(webhook_alerts)
    for name, (payload, headers, body) in sorted(at_hook.items()):
        ok = "signature ok" if verify(WEBHOOK_SECRET, headers, body) else "BAD SIGNATURE"
        print(f"   webhook <- [{payload['status'].upper()}:{len(payload['alerts'])}] {name} ({ok})")

    print("4. alerts as the management API lists them")
    silenced = 0
    for a in alerting.list_alerts():
        note = f"muted by {a['muted_by']}" if a["muted_by"] else "routed to " + ",".join(a["receivers"])
        print(f"   {a['labels']['alertname']:<30} {a['state']:<8} {note}")
        silenced += bool(a["muted_by"] and a["muted_by"].startswith("silence:"))
    leaked = [n for n in ("OpenAIErrors",) if n in alertmanager_alerts() or n in webhook_alerts()]
    alerting.stop()
    telemetry.shutdown()
    if leaked or silenced != 1:
        raise SystemExit(f"unexpected: leaked={leaked} silenced={silenced}")
    print(
        f"ok: {len(wanted & set(at_am))} alerts at Alertmanager, {len(wanted & set(at_hook))} at the webhook,"
        f" {silenced} silenced"
    )


if __name__ == "__main__":
    main()
