"""Rate limits: every provider's headers as one metric set, a breaker that opens, a guard that blocks.

Run:   python examples/rate_limits.py          (about 8 seconds)
Needs: spansignals installed (``pip install -e .``); Linux loopback aliases 127.0.0.2-5 (any
       Linux has them); no network.

What it does: starts local servers standing in for four providers, one per header dialect
(OpenAI ``x-ratelimit-*-requests``, Anthropic ``anthropic-ratelimit-*`` with RFC 3339 resets,
GitHub ``x-ratelimit-*`` with epoch resets, IETF ``RateLimit-Policy`` / ``RateLimit``), calls
``configure()`` with the app's ``/metrics`` on a free port, and then:

1. calls each provider once and prints ``spansignals_ratelimit_{limit,remaining,reset_seconds}``:
   the same series for all four dialects;
2. gets a 429 with ``Retry-After: 5`` from "openai": the breaker opens (state 2) and a guarded
   client raises ``RequestBlocked`` without sending anything;
3. a guarded client in ``wait`` mode waits out the 5 s, its request is the half-open probe, it
   succeeds and the breaker closes (state 0);
4. gets three 500s in a row from "anthropic": the breaker opens on consecutive failures, the guard
   rejects, and after ``open_for`` (2 s) a probe closes it again.

Expect lines like ``spansignals_breaker_state{...provider="openai"...} 2.0``, ``blocked: request to
openai blocked by spansignals: rate limited (Retry-After); retry after 4.99s``, ``waited 5.0s, then
200`` and a final ``ok: breaker opened, guard blocked, probes recovered``.
"""

from __future__ import annotations

import http.server
import re
import socket
import threading
import time
import urllib.request
from datetime import datetime, timedelta, timezone

import httpx

from spansignals.sdk import RequestBlocked, configure, guard

HOSTS = {"openai": "127.0.0.2", "anthropic": "127.0.0.3", "github": "127.0.0.4", "ietf": "127.0.0.5"}


def _rfc3339(seconds_from_now: float) -> str:
    at = datetime.now(timezone.utc) + timedelta(seconds=seconds_from_now)
    return at.isoformat(timespec="seconds").replace("+00:00", "Z")


def dialect_headers(dialect: str) -> dict[str, str]:
    """The rate-limit headers each provider documents, with plausible values."""
    if dialect == "openai":
        return {
            "x-ratelimit-limit-requests": "60",
            "x-ratelimit-remaining-requests": "59",
            "x-ratelimit-reset-requests": "1s",
            "x-ratelimit-limit-tokens": "150000",
            "x-ratelimit-remaining-tokens": "149984",
            "x-ratelimit-reset-tokens": "6m0s",
        }
    if dialect == "anthropic":
        return {
            "anthropic-ratelimit-requests-limit": "50",
            "anthropic-ratelimit-requests-remaining": "49",
            "anthropic-ratelimit-requests-reset": _rfc3339(60),
            "anthropic-ratelimit-input-tokens-limit": "80000",
            "anthropic-ratelimit-input-tokens-remaining": "79000",
            "anthropic-ratelimit-input-tokens-reset": _rfc3339(2),
        }
    if dialect == "github":
        return {
            "x-ratelimit-limit": "5000",
            "x-ratelimit-remaining": "4999",
            "x-ratelimit-used": "1",
            "x-ratelimit-reset": str(int(time.time()) + 3600),
            "x-ratelimit-resource": "core",
        }
    return {"ratelimit-policy": '"default";q=100;w=60', "ratelimit": '"default";r=98;t=42'}


class FakeProvider(http.server.BaseHTTPRequestHandler):
    """``/limited`` answers 429 + Retry-After: 5, ``/fail`` 500, anything else 200; all with the
    dialect's headers (the dialect is chosen by the server's address)."""

    protocol_version = "HTTP/1.1"
    dialect = "openai"

    def do_GET(self) -> None:
        status = {"/limited": 429, "/fail": 500}.get(self.path, 200)
        self.send_response(status)
        for key, value in dialect_headers(self.server.dialect).items():  # type: ignore[attr-defined]
            self.send_header(key, value)
        if status == 429:
            self.send_header("retry-after", "5")
        self.send_header("content-type", "application/json")
        self.send_header("content-length", "2")
        self.end_headers()
        self.wfile.write(b"{}")

    def log_message(self, format: str, *args: object) -> None:
        """Quiet."""


def start_servers() -> dict[str, str]:
    """One server per dialect on its loopback alias; returns provider -> base URL."""
    bases = {}
    for dialect, ip in HOSTS.items():
        server = http.server.ThreadingHTTPServer((ip, 0), FakeProvider)
        server.dialect = dialect  # type: ignore[attr-defined]
        server.daemon_threads = True
        threading.Thread(target=server.serve_forever, daemon=True).start()
        bases[dialect] = f"http://{ip}:{server.server_address[1]}"
    return bases


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def metrics(port: int, *names: str) -> list[str]:
    """Lines of the app's own /metrics for the given series names."""
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    return [line for line in text.splitlines() if line.startswith(names)]


def show(port: int, *names: str) -> None:
    for line in metrics(port, *names):
        print("   ", re.sub(r'otel_scope_\w+="[^"]*",', "", line))


def breaker_state(port: int, provider: str) -> float:
    for line in metrics(port, "spansignals_breaker_state{"):
        if f'provider="{provider}"' in line:
            return float(line.rsplit(" ", 1)[1])
    return -1.0


def main() -> None:
    bases = start_servers()
    port = free_port()
    telemetry = configure(
        {
            "service": {"name": "rate-limit-demo"},
            "providers": [{"name": d, "hosts": [ip], "dialect": d} for d, ip in HOSTS.items()],
            "ratelimits": {
                "breaker": {"consecutive_failures": 3, "open_for": "2s"},
                "guard": {"mode": "reject"},
            },
        },
        traces_exporter="none",
        metrics_exporter="prometheus",
        prometheus_port=port,
    )
    plain = httpx.Client()
    rejecting = guard(httpx.Client())
    waiting = guard(httpx.Client(), mode="wait", max_wait=10)

    print("1. one call per dialect; the same series for all of them:")
    for base in bases.values():
        plain.get(base + "/v1/ok")
    show(port, *(f"spansignals_ratelimit_{n}{{" for n in ("limit", "remaining", "reset_seconds")))

    print("2. a 429 with Retry-After: 5 from openai opens its breaker; the guard blocks:")
    print("   status", plain.get(bases["openai"] + "/limited").status_code)
    show(port, "spansignals_ratelimit_throttled_total{", "spansignals_breaker_state{")
    opened = breaker_state(port, "openai") == 2
    try:
        rejecting.get(bases["openai"] + "/v1/ok")
        blocked = False
    except RequestBlocked as exc:
        print("   blocked:", exc)
        blocked = True

    print("3. a waiting guard sleeps until the reset, then its request is the probe:")
    started = time.monotonic()
    status = waiting.get(bases["openai"] + "/v1/ok").status_code
    print(f"   waited {time.monotonic() - started:.1f}s, then {status}")
    recovered = breaker_state(port, "openai") == 0
    show(port, "spansignals_breaker_state{", "spansignals_guard_decisions_total{")

    print("4. three 500s in a row from anthropic open its breaker; after open_for (2 s) a probe closes it:")
    for _ in range(3):
        plain.get(bases["anthropic"] + "/fail")
    opened = opened and breaker_state(port, "anthropic") == 2
    try:
        rejecting.get(bases["anthropic"] + "/v1/ok")
    except RequestBlocked as exc:
        print("   blocked:", exc)
        blocked = blocked and exc.reason == "circuit breaker open"
    status = waiting.get(bases["anthropic"] + "/v1/ok").status_code
    print(f"   probe answered {status}")
    recovered = recovered and breaker_state(port, "anthropic") == 0
    show(port, "spansignals_breaker_state{", "spansignals_guard_decisions_total{")

    for client in (plain, rejecting, waiting):
        client.close()
    telemetry.shutdown(timeout=5)
    if opened and blocked and recovered:
        print("ok: breaker opened, guard blocked, probes recovered")
    else:
        raise SystemExit(f"unexpected: opened={opened} blocked={blocked} recovered={recovered}")


if __name__ == "__main__":
    main()
