"""LLM cost from plain httpx calls: exact prices per call, streaming included, and a budget.

Run:   python examples/llm_cost.py          (about 2 seconds)
Needs: spansignals installed (``pip install -e .``); Linux loopback aliases 127.0.0.2-3; no network.

What it does: starts two local servers standing in for OpenAI (127.0.0.2) and Anthropic
(127.0.0.3) that answer in the providers' documented formats, calls ``configure()`` with those
hosts mapped to the two providers, a daily budget of $0.055 and the app's ``/metrics`` on a free
port, then makes four calls with a plain ``httpx.Client`` (no vendor SDK):

1. OpenAI Chat Completions, non-streaming, 2006 input tokens of which 1920 cached;
2. OpenAI Chat Completions, streaming with ``stream_options.include_usage``;
3. Anthropic Messages, non-streaming, with cache creation and cache read tokens;
4. Anthropic Messages, streaming (``message_start`` + ``message_delta`` usage).

For each call it prints the tokens and the cost: for non-streaming calls the ``gen_ai.usage.cost``
the hook put on the client span, for streams the cost counted when the stream ended (the span had
already ended). Then it prints the ``spansignals_cost_usd_total`` and ``spansignals_budget_*``
series from ``/metrics`` and the budget state events.

Expect lines like ``openai gpt-4o call: $0.005615 -- gen_ai.usage.cost on the span = 0.005615``,
``budget event: llm-daily -> critical (93%)``, ``spansignals_budget_state{budget="llm-daily",...} 2.0``
and a final ``ok: 4 calls priced, total $0.0510872; budget llm-daily is critical``.
"""

from __future__ import annotations

import http.server
import json
import socket
import threading
import urllib.request
from decimal import Decimal
from typing import Any

import httpx
from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor

from spansignals.sdk import configure

HOSTS = {"openai": "127.0.0.2", "anthropic": "127.0.0.3"}

OPENAI_CHAT = {
    "id": "chatcmpl-demo",
    "object": "chat.completion",
    "created": 1741569952,
    "model": "gpt-4o-2024-08-06",
    "choices": [{"index": 0, "message": {"role": "assistant", "content": "Hello!"}, "finish_reason": "stop"}],
    "usage": {
        "prompt_tokens": 2006,
        "completion_tokens": 300,
        "total_tokens": 2306,
        "prompt_tokens_details": {"cached_tokens": 1920, "audio_tokens": 0},
        "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0},
    },
}
OPENAI_STREAM = [
    {
        "id": "c1",
        "object": "chat.completion.chunk",
        "model": "gpt-4o-mini-2024-07-18",
        "choices": [{"index": 0, "delta": {"role": "assistant", "content": "Hi"}, "finish_reason": None}],
        "usage": None,
    },
    {
        "id": "c1",
        "object": "chat.completion.chunk",
        "model": "gpt-4o-mini-2024-07-18",
        "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}],
        "usage": None,
    },
    {
        "id": "c1",
        "object": "chat.completion.chunk",
        "model": "gpt-4o-mini-2024-07-18",
        "choices": [],
        "usage": {
            "prompt_tokens": 1200,
            "completion_tokens": 80,
            "total_tokens": 1280,
            "prompt_tokens_details": {"cached_tokens": 1024},
        },
    },
]
ANTHROPIC_MESSAGE = {
    "id": "msg_demo",
    "type": "message",
    "role": "assistant",
    "model": "claude-sonnet-4-5-20250929",
    "content": [{"type": "text", "text": "Hi!"}],
    "stop_reason": "end_turn",
    "stop_sequence": None,
    "usage": {
        "input_tokens": 50,
        "cache_creation_input_tokens": 1500,
        "cache_read_input_tokens": 3000,
        "output_tokens": 393,
    },
}
ANTHROPIC_STREAM = [
    {
        "type": "message_start",
        "message": {
            "id": "msg_s",
            "type": "message",
            "role": "assistant",
            "content": [],
            "model": "claude-sonnet-4-5-20250929",
            "stop_reason": None,
            "usage": {
                "input_tokens": 472,
                "cache_creation_input_tokens": 0,
                "cache_read_input_tokens": 0,
                "output_tokens": 2,
            },
        },
    },
    {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
    {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Okay"}},
    {"type": "content_block_stop", "index": 0},
    {"type": "message_delta", "delta": {"stop_reason": "end_turn"}, "usage": {"output_tokens": 2089}},
    {"type": "message_stop"},
]


class FakeProvider(http.server.BaseHTTPRequestHandler):
    """Answers ``POST /v1/chat/completions`` (OpenAI) or ``/v1/messages`` (Anthropic), streaming
    when the request body says ``"stream": true``."""

    protocol_version = "HTTP/1.1"

    def setup(self) -> None:
        super().setup()
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def do_POST(self) -> None:
        request = json.loads(self.rfile.read(int(self.headers.get("content-length") or 0)) or b"{}")
        anthropic = self.path.endswith("/messages")
        if not request.get("stream"):
            body = json.dumps(ANTHROPIC_MESSAGE if anthropic else OPENAI_CHAT).encode()
            self.send_response(200)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            return
        self.send_response(200)
        self.send_header("content-type", "text/event-stream")
        self.send_header("transfer-encoding", "chunked")
        self.end_headers()
        if anthropic:
            events = [f"event: {e['type']}\ndata: {json.dumps(e)}\n\n" for e in ANTHROPIC_STREAM]
        else:
            events = [f"data: {json.dumps(e)}\n\n" for e in OPENAI_STREAM] + ["data: [DONE]\n\n"]
        for event in events:
            data = event.encode()
            self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
            self.wfile.flush()
        self.wfile.write(b"0\r\n\r\n")

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet."""


def start_servers() -> dict[str, str]:
    bases = {}
    for name, ip in HOSTS.items():
        server = http.server.ThreadingHTTPServer((ip, 0), FakeProvider)
        server.daemon_threads = True
        threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
        bases[name] = f"http://{ip}:{server.server_address[1]}"
    return bases


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class LastClientSpan(SpanProcessor):
    """Keeps the last ended client span, to show the attributes the hooks set."""

    span: ReadableSpan | None = None

    def on_end(self, span: ReadableSpan) -> None:
        if span.kind.name == "CLIENT":
            self.span = span


def main() -> None:
    bases = start_servers()
    port = free_port()
    telemetry = configure(
        {
            "service": {"name": "llm-cost-demo"},
            "providers": [{"name": name, "hosts": [ip], "dialect": name} for name, ip in HOSTS.items()],
            "budgets": [
                {
                    "name": "llm-daily",
                    "period": "day",
                    "timezone": "UTC",
                    "limit_usd": 0.055,
                    "match": {"provider": ["openai", "anthropic"]},
                },
            ],
        },
        traces_exporter="none",
        metrics_exporter="prometheus",
        prometheus_port=port,
    )
    last = LastClientSpan()
    telemetry.tracer_provider.add_span_processor(last)
    cost = telemetry.engine.get("cost")
    assert cost is not None and cost.budgets is not None
    telemetry.engine.events.subscribe(
        lambda e: print(f"   budget event: {e.name} -> {e.state} ({e.value:.0%})")
    )

    def total() -> Decimal:
        telemetry.engine.flush()  # derive the spans the engine has queued
        return sum((cost.cost.exact(labels) for labels, _ in cost.cost.snapshot()), Decimal(0))

    client = httpx.Client()
    calls = [
        (
            "openai",
            "/v1/chat/completions",
            {"model": "gpt-4o", "messages": [{"role": "user", "content": "Hi"}]},
        ),
        (
            "openai",
            "/v1/chat/completions",
            {
                "model": "gpt-4o-mini",
                "stream": True,
                "stream_options": {"include_usage": True},
                "messages": [],
            },
        ),
        ("anthropic", "/v1/messages", {"model": "claude-sonnet-4-5", "max_tokens": 1024, "messages": []}),
        (
            "anthropic",
            "/v1/messages",
            {"model": "claude-sonnet-4-5", "max_tokens": 4096, "stream": True, "messages": []},
        ),
    ]
    for provider, path, body in calls:
        before = total()
        if body.get("stream"):
            with client.stream("POST", bases[provider] + path, json=body) as response:
                text = "".join(response.iter_text())
            where = f"counted when the stream ended ({len(text)} bytes streamed to the app)"
        else:
            response = client.post(bases[provider] + path, json=body)
            response.json()
            span_cost = last.span.attributes.get("gen_ai.usage.cost") if last.span is not None else None
            where = f"gen_ai.usage.cost on the span = {span_cost}"
        spent = total() - before
        print(f"{provider} {body['model']} {'stream' if body.get('stream') else 'call'}: ${spent} -- {where}")

    print("\ntokens by type:")
    for (_service, provider, model, token_type), value in sorted(cost.tokens.snapshot()):
        print(f"   {provider} {model} {token_type}: {value:g}")

    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    print("\nfrom /metrics:")
    for line in text.splitlines():
        if line.startswith(("spansignals_cost_usd_total", "spansignals_budget_")):
            print("  ", line)

    telemetry.engine.flush()  # the budget state read next includes every span
    budget = cost.budgets.get("llm-daily")
    assert budget is not None
    state = ("ok", "warning", "critical", "emergency")[budget.state]
    print(
        f"\nok: {len(calls)} calls priced, total ${total()}; budget llm-daily is {state} "
        f"(${budget.spent} of ${budget.limit})"
    )
    telemetry.shutdown()


if __name__ == "__main__":
    main()
