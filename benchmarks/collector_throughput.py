"""Collector ingest throughput: spansignals collector vs rotel's blackhole, under the same load.

Run:  python benchmarks/collector_throughput.py [--duration 10] [--concurrency 8,32] [--connections 4]
                                              [--rate SPANS_PER_S] [--workers N]

A load generator in its own process sends pre-serialized 512-span ``ExportTraceServiceRequest``s
over OTLP gRPC. Each request gets unique (trace_id, span_id) pairs without re-encoding: the
template's trace ids hold a per-request counter in their first 8 bytes, patched in place at known
offsets. The span mix is realistic: mostly server spans across a few services and routes, some
HTTP client spans to API providers with rate-limit response headers, some LLM spans with
``gen_ai`` usage.

Targets, one after the other in the same run, each as a child process pinned to one CPU (the load
generator gets another CPU when there is one):

1. ``spansignals collector`` with the default configuration (every derivation the config enables
   by default), forwarding everything over OTLP gRPC to a sink: a second ``rotel-agent --exporter
   blackhole`` on the load generator's CPU (``--no-forward``: no downstream, spans dropped after
   derivation);
2. ``rotel-agent --exporter blackhole`` when the ``rotel`` wheel is installed.

With ``--workers N`` a third target runs ``spansignals collector --workers N`` (N processes sharing
the port with SO_REUSEPORT, unpinned: the scheduler shares the machine's CPUs between them and the
load generator) and the scaling factor against the one-worker run is printed. The load is spread
over ``--connections`` gRPC connections (the kernel balances connections, not requests).

Each target is measured, freshly started, at every ``--concurrency`` (requests in flight; default
8 and 32): targets peak at different depths (rotel is latency-bound at 8 in flight, while the
spansignals collector merges back-to-back requests and gains from more), so every row is printed
and ratios compare each target's best row.

For each: acknowledged spans/s over the measured window (after a warm-up), CPU share of the target
(100% = one core, from psutil, summed over worker processes), RSS at the end (summed), request
latency p50/p99, errors, and the load generator's own CPU share (near 100% means the generator,
not the target, was the limit). Then the ratio spansignals / rotel. With ``--rate`` the load is
paced (open loop) instead of closed-loop as fast as acknowledgements come back, which is how "CPU
share at 10k spans/s" is measured.
The spansignals run ends with an accounting check: spans the collector counted as accepted must
equal spans acknowledged to the generator.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import multiprocessing as mp
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

SPANS_PER_REQUEST = 512
EXPORT_METHOD = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"
_BASE_NS = 1_700_000_000_000_000_000


# --- request template ----------------------------------------------------------------------------


def _attr(span: Any, key: str, value: object) -> None:
    from opentelemetry.proto.common.v1.common_pb2 import AnyValue

    kv = span.attributes.add()
    kv.key = key
    if isinstance(value, bool):
        kv.value.bool_value = value
    elif isinstance(value, int):
        kv.value.int_value = value
    elif isinstance(value, float):
        kv.value.double_value = value
    elif isinstance(value, tuple):  # captured headers are string arrays, as the SDK records them
        kv.value.array_value.values.extend(AnyValue(string_value=str(v)) for v in value)
    else:
        kv.value.string_value = str(value)


def build_template(spans_per_request: int) -> tuple[bytes, list[int]]:
    """A serialized request and the byte offsets of every span's 8-byte trace-id counter.

    Mix per request: ~85% server spans (4 services x 8 routes, 2% errors), ~10% HTTP client spans
    to API providers with rate-limit headers, ~5% LLM client spans with token usage.
    """
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

    request = ExportTraceServiceRequest()
    services = ["checkout", "catalog", "search", "assistant"]
    per_service = [spans_per_request // len(services)] * len(services)
    per_service[0] += spans_per_request - sum(per_service)
    index = 0
    for service, count in zip(services, per_service, strict=True):
        rs = request.resource_spans.add()
        for key, value in (("service.name", service), ("service.version", "1.4.2"), ("host.name", "bench-1")):
            _attr(rs.resource, key, value)
        ss = rs.scope_spans.add()
        ss.scope.name = "opentelemetry.instrumentation.asgi"
        for _ in range(count):
            span = ss.spans.add()
            span.trace_id = b"\x00" * 8 + index.to_bytes(8, "big")
            span.span_id = (index + 1).to_bytes(8, "big")
            span.start_time_unix_nano = _BASE_NS + index * 1_000_000
            span.end_time_unix_nano = span.start_time_unix_nano + (1 + index % 97) * 1_000_000
            bucket = index % 20
            if bucket < 17:
                route = f"/api/v1/{service}/{index % 8}"
                span.name = f"GET {route}"
                span.kind = 2  # type: ignore[assignment]
                _attr(span, "http.request.method", "GET")
                _attr(span, "http.route", route)
                _attr(span, "http.response.status_code", 500 if index % 50 == 0 else 200)
                _attr(span, "url.scheme", "https")
                if index % 50 == 0:
                    span.status.code = 2  # type: ignore[assignment]
            elif bucket < 19:
                span.name = "POST"
                span.kind = 3  # type: ignore[assignment]
                _attr(span, "http.request.method", "POST")
                _attr(span, "server.address", "api.stripe.com")
                _attr(span, "url.full", "https://api.stripe.com/v1/charges")
                # ~2.5% of these calls are throttled (index % 40 == 0 never lands in this bucket)
                _attr(span, "http.response.status_code", 429 if index % 400 == 17 else 200)
                _attr(span, "http.response.header.x-ratelimit-limit", ("100",))
                _attr(span, "http.response.header.x-ratelimit-remaining", (str(100 - index % 100),))
            else:
                span.name = "chat gpt-4o-mini"
                span.kind = 3  # type: ignore[assignment]
                _attr(span, "http.request.method", "POST")
                _attr(span, "server.address", "api.openai.com")
                _attr(span, "gen_ai.system", "openai")
                _attr(span, "gen_ai.operation.name", "chat")
                _attr(span, "gen_ai.request.model", "gpt-4o-mini")
                _attr(span, "gen_ai.response.model", "gpt-4o-mini-2024-07-18")
                _attr(span, "gen_ai.usage.input_tokens", 1200 + index % 300)
                _attr(span, "gen_ai.usage.output_tokens", 200 + index % 50)
                _attr(span, "http.response.status_code", 200)
            index += 1
    body = request.SerializeToString()
    # Search for the whole trace_id field (tag 0x0a, length 16), in span order: the bare 16 bytes
    # also occur across field boundaries (span 0's zero id followed by the span_id tag 0x12 reads
    # as span 18's), which left spans unpatched and so duplicated in every request.
    offsets = []
    start = 0
    for i in range(index):
        offset = body.find(b"\x0a\x10" + b"\x00" * 8 + i.to_bytes(8, "big"), start)
        if offset < 0:
            raise RuntimeError("trace id not found in the serialized template")
        offsets.append(offset + 2)
        start = offset + 18
    return body, offsets


# --- load generator (its own process) ----------------------------------------------------------


@dataclass
class LoadResult:
    spans_in_window: int
    requests_in_window: int
    spans_total: int
    errors: int
    first_error: str
    p50_ms: float
    p99_ms: float
    cpu_share: float


def _int_list(text: str) -> list[int]:
    values = [int(part) for part in text.split(",") if part.strip()]
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"expected positive integers separated by commas, got {text!r}")
    return values


def stamp(template: bytes, offsets: list[int], request_id: int) -> bytes:
    """``template`` with ``request_id`` written into every span's trace-id counter (from
    :func:`build_template`), so every (trace_id, span_id) of every request is unique."""
    buf = bytearray(template)
    value = request_id.to_bytes(8, "big")
    for off in offsets:
        buf[off : off + 8] = value
    return bytes(buf)


def percentile(sorted_values: Sequence[float], q: float) -> float:
    if not sorted_values:
        return float("nan")
    return sorted_values[min(len(sorted_values) - 1, int(q * len(sorted_values)))]


async def _generate(
    target: str,
    template: bytes,
    offsets: list[int],
    start_at: float,
    window: tuple[float, float],
    concurrency: int,
    rate: float | None,
    connections: int = 1,
) -> LoadResult:
    import grpc

    spans = len(offsets)
    counter = 0
    latencies: list[float] = []
    state = {"in_window": 0, "total": 0, "errors": 0, "first_error": ""}
    interval = spans / rate * concurrency if rate else 0.0

    def next_body() -> bytes:
        nonlocal counter
        counter += 1
        return stamp(template, offsets, counter)

    # One connection per channel: a local subchannel pool stops grpc from sharing one connection.
    options = [("grpc.max_send_message_length", 64 << 20), ("grpc.use_local_subchannel_pool", 1)]
    channels = [grpc.aio.insecure_channel(target, options=options) for _ in range(max(1, connections))]
    try:
        exports = [ch.unary_unary(EXPORT_METHOD) for ch in channels]
        for ch in channels:
            await asyncio.wait_for(ch.channel_ready(), 30)
        while time.time() < start_at:
            await asyncio.sleep(0.001)

        async def worker(slot: int) -> None:
            export = exports[slot % len(exports)]
            next_send = start_at + slot * interval / concurrency
            while True:
                now = time.time()
                if now >= window[1]:
                    return
                if rate:
                    if next_send > now:
                        await asyncio.sleep(next_send - now)
                    next_send += interval
                body = next_body()
                sent = time.perf_counter()
                try:
                    await export(body, timeout=30)
                except grpc.aio.AioRpcError as exc:
                    state["errors"] += 1
                    state["first_error"] = state["first_error"] or f"{exc.code().name}: {exc.details()}"
                    continue
                done = time.time()
                state["total"] += spans
                if window[0] <= done < window[1]:
                    state["in_window"] += spans
                    latencies.append((time.perf_counter() - sent) * 1000)

        await asyncio.gather(*(worker(i) for i in range(concurrency)))
    finally:
        for ch in channels:
            await ch.close()
    latencies.sort()
    return LoadResult(
        spans_in_window=state["in_window"],
        requests_in_window=len(latencies),
        spans_total=state["total"],
        errors=state["errors"],
        first_error=state["first_error"],
        p50_ms=percentile(latencies, 0.50),
        p99_ms=percentile(latencies, 0.99),
        cpu_share=0.0,
    )


def _load_process(args: tuple[Any, ...], results: Any) -> None:
    target, template, offsets, start_at, window, concurrency, rate, cpu, connections = args
    if cpu is not None:
        os.sched_setaffinity(0, {cpu})
    cpu0 = time.process_time()
    result = asyncio.run(
        _generate(target, template, offsets, start_at, window, concurrency, rate, connections)
    )
    result.cpu_share = (time.process_time() - cpu0) / max(1e-9, window[1] - start_at)
    results.put(result)


# --- targets -------------------------------------------------------------------------------------


def _free_ports(n: int) -> list[int]:
    socks = []
    for _ in range(n):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        socks.append(s)
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def _wait(probe: Any, proc: subprocess.Popen[bytes], what: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.returncode}")
        try:
            if probe():
                return
        except OSError:
            pass
        time.sleep(0.05)
    raise TimeoutError(f"{what} not ready after {timeout}s")


def _connectable(port: int) -> bool:
    with socket.create_connection(("127.0.0.1", port), timeout=0.5):
        return True


def _http_ok(url: str) -> bool:
    with urllib.request.urlopen(url, timeout=1) as resp:
        return resp.status == 200


@dataclass
class Target:
    name: str
    proc: subprocess.Popen[bytes]
    grpc_endpoint: str
    metrics_urls: list[str] | None = None
    workers: int = 1


def _pin(cpu: int | None) -> Any:
    return (lambda: os.sched_setaffinity(0, {cpu})) if cpu is not None else None


def _consecutive_free_ports(count: int) -> int:
    for _ in range(100):
        (first,) = _free_ports(1)
        socks = []
        try:
            for port in range(first, first + count):
                s = socket.socket()
                socks.append(s)
                s.bind(("127.0.0.1", port))
            return first
        except OSError:
            continue
        finally:
            for s in socks:
                s.close()
    raise RuntimeError(f"no {count} consecutive free ports")


def start_spansignals(
    workdir: Path, cpu: int | None, base_config: dict[str, Any], workers: int = 1
) -> Target:
    grpc_port, http_port = _free_ports(2)
    metrics_port = _consecutive_free_ports(workers)
    config = dict(base_config)
    config["collector"] = {
        **config.get("collector", {}),
        "receivers": {
            "otlp": {
                "grpc": {"endpoint": f"127.0.0.1:{grpc_port}"},
                "http": {"endpoint": f"127.0.0.1:{http_port}"},
            }
        },
        "prometheus": {"endpoint": f"127.0.0.1:{metrics_port}"},
    }
    alerts = dict(config.get("alerts") or {})
    alerts.setdefault("api", {"enabled": False})  # a fixed port (9466) another process may hold
    config["alerts"] = alerts
    path = workdir / "spansignals.yaml"
    path.write_text(json.dumps(config))
    argv = [sys.executable, "-m", "spansignals", "--log-level", "WARNING", "collector", "--config", str(path)]
    argv += ["--workers", str(workers)]
    with open(workdir / f"spansignals-{workers}.log", "wb") as log:
        proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, preexec_fn=_pin(cpu))
    bases = [f"http://127.0.0.1:{metrics_port + i}" for i in range(workers)]
    for base in bases:
        _wait(lambda base=base: _http_ok(f"{base}/health/ready"), proc, "spansignals collector")
    name = "spansignals collector" if workers == 1 else f"spansignals x{workers} workers"
    return Target(name, proc, f"127.0.0.1:{grpc_port}", [f"{b}/metrics" for b in bases], workers)


def rotel_binary() -> str | None:
    try:
        import rotel
    except ImportError:
        return None
    path = os.path.join(os.path.dirname(rotel.__file__), "rotel-agent")
    return path if os.access(path, os.X_OK) else None


def start_rotel(binary: str, workdir: Path, cpu: int | None) -> Target:
    grpc_port, http_port = _free_ports(2)
    argv = [binary, "start", "--otlp-grpc-endpoint", f"127.0.0.1:{grpc_port}"]
    argv += ["--otlp-http-endpoint", f"127.0.0.1:{http_port}", "--exporter", "blackhole"]
    with open(workdir / "rotel.log", "wb") as log:
        proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, preexec_fn=_pin(cpu))
    _wait(lambda: _connectable(grpc_port), proc, "rotel-agent")
    return Target("rotel blackhole", proc, f"127.0.0.1:{grpc_port}")


def stop(target: Target) -> None:
    if target.proc.poll() is None:
        target.proc.terminate()
        try:
            target.proc.wait(10)
        except subprocess.TimeoutExpired:
            target.proc.kill()
            target.proc.wait(5)


def _cpu_seconds(procs: list[Any]) -> float:
    total = 0.0
    for p in procs:
        times = p.cpu_times()
        total += times.user + times.system
    return total


def _scrape(metrics_url: str, attempts: int = 3, timeout: float = 10.0) -> str:
    """The collector's /metrics text. A scrape that gets no answer within ``timeout`` is tried
    again (on a loaded machine one can wait that long for CPU); the collector's own
    ``loop_stalls`` line in the accounting tells whether its event loop was the one late."""
    for attempt in range(attempts):
        try:
            with urllib.request.urlopen(metrics_url, timeout=timeout) as resp:
                return str(resp.read().decode())
        except (TimeoutError, urllib.error.URLError) as exc:
            if attempt == attempts - 1:
                raise RuntimeError(
                    f"{metrics_url} gave no answer in {attempts} tries of {timeout:g} s ({exc})"
                ) from None
            print(
                f"  (a scrape of {metrics_url} got no answer in {timeout:g} s: trying again)", file=sys.stderr
            )
    raise AssertionError("unreachable")


def _accepted(
    metrics_url: str, name: str = "spansignals_receiver_spans_total", outcome: str | None = "accepted"
) -> float | None:
    from prometheus_client.parser import text_string_to_metric_families

    total = None
    for family in text_string_to_metric_families(_scrape(metrics_url)):
        for s in family.samples:
            if s.name == name and (outcome is None or s.labels.get("outcome") == outcome):
                total = (total or 0.0) + s.value
    return total


def _handler_ms(metrics_url: str) -> float | None:
    """Mean time the collector's trace receivers spent per request (their own histogram)."""
    from prometheus_client.parser import text_string_to_metric_families

    text = _scrape(metrics_url)
    total = count = 0.0
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == "spansignals_receiver_request_duration_seconds_sum":
                total += s.value
            elif s.name == "spansignals_receiver_request_duration_seconds_count":
                count += s.value
    return total / count * 1000 if count else None


def _forwarded(metrics_url: str, acked: int, timeout: float = 30.0) -> str:
    """Wait for the queue to drain; then sent + dropped must equal what was acknowledged."""
    deadline = time.monotonic() + timeout
    while True:
        sent = _accepted(metrics_url, "spansignals_exporter_spans_total", "sent") or 0.0
        dropped = _accepted(metrics_url, "spansignals_exporter_spans_total", "dropped") or 0.0
        if int(sent + dropped) >= acked or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    verdict = "ok" if int(sent + dropped) == acked else "MISMATCH"
    return f"{verdict}: forwarded {int(sent):,} sent + {int(dropped):,} dropped of {acked:,} acknowledged"


@dataclass
class Measurement:
    target: str
    spans_per_s: float
    requests_per_s: float
    cpu_share: float
    rss_mb: float
    load: LoadResult
    accounting: str
    concurrency: int = 0


def measure(
    target: Target,
    template: bytes,
    offsets: list[int],
    args: argparse.Namespace,
    load_cpu: int | None,
    concurrency: int,
) -> Measurement:
    import psutil

    ctx = mp.get_context("spawn")
    results = ctx.Queue()
    start_at = time.time() + 2.0  # lets the spawned generator import and connect first
    window = (start_at + args.warmup, start_at + args.warmup + args.duration)
    generator = ctx.Process(
        target=_load_process,
        args=(
            (
                target.grpc_endpoint,
                template,
                offsets,
                start_at,
                window,
                concurrency,
                args.rate,
                load_cpu,
                args.connections,
            ),
            results,
        ),
    )
    generator.start()
    root = psutil.Process(target.proc.pid)
    procs = [root, *root.children(recursive=True)]  # the supervisor and its workers
    time.sleep(max(0.0, window[0] - time.time()))  # a benchmark waits for its measuring window
    cpu_start = _cpu_seconds(procs)
    wall_start = time.time()
    time.sleep(max(0.0, window[1] - time.time()))
    cpu_end = _cpu_seconds(procs)
    wall = time.time() - wall_start
    rss_mb = sum(p.memory_info().rss for p in procs) / 1e6
    load: LoadResult = results.get(timeout=120)
    generator.join(30)
    busy = cpu_end - cpu_start
    accounting = "n/a"
    if target.metrics_urls:
        parts = [_accepted(url) for url in target.metrics_urls]
        # A worker the kernel gave no connection has no sample yet: it accepted nothing.
        accepted = None if all(p is None for p in parts) else sum(p or 0.0 for p in parts)
        if accepted is not None and int(accepted) == load.spans_total:
            accounting = f"ok: collector accepted {int(accepted):,} = {load.spans_total:,} acknowledged"
        else:
            accounting = (
                f"MISMATCH: collector accepted {accepted}, generator saw {load.spans_total:,} acknowledged"
            )
        if args.forwarding and target.workers == 1:
            accounting += "; " + _forwarded(target.metrics_urls[0], load.spans_total)
        if target.workers == 1 and load.requests_in_window:
            handler = _handler_ms(target.metrics_urls[0])
            cpu_per_request = busy / load.requests_in_window * 1000
            if handler is not None:
                accounting += (
                    f"; receiver handler {handler:.2f} ms per request of {cpu_per_request:.2f} ms CPU per"
                    " request (the rest: grpc, forwarding, the event loop)"
                )
            stalls = _accepted(target.metrics_urls[0], "spansignals_collector_loop_stalls_total", None)
            accounting += f"; event-loop stalls (a tick >= 1 s late): {int(stalls or 0)}"
    return Measurement(
        target.name,
        load.spans_in_window / args.duration,
        load.requests_in_window / args.duration,
        busy / wall,
        rss_mb,
        load,
        accounting,
        concurrency,
    )


@contextlib.contextmanager
def _collector_gc() -> Any:
    """The collector process's garbage-collector settings (gc_tuning) while timing in-process."""
    import gc

    from spansignals.processors.collector.gc_tuning import GEN0_THRESHOLD

    thresholds = gc.get_threshold()
    gc.collect()
    gc.freeze()
    gc.set_threshold(GEN0_THRESHOLD, *thresholds[1:])
    try:
        yield
    finally:
        gc.unfreeze()
        gc.set_threshold(*thresholds)


def derivation_costs(
    template: bytes, base_config: dict[str, Any], rounds: int = 40, repeats: int = 5
) -> list[tuple[str, float]]:
    """In-process µs per span of each step of the collector's span path on ``template``: the
    native wire check (or upb's parse when that is not built), span views (built by the native
    scanner when it is built and takes the request, else with the request-bytes hint the receivers
    give), then each derivation of the default engine on its own over the request's views as one
    batch; the median of ``repeats`` timings of ``rounds`` requests, under the collector's GC
    settings."""
    import statistics

    from spansignals.processors.collector.decoding import parse_protobuf_request
    from spansignals.processors.collector.span_offsets import EncodedSpans
    from spansignals.processors.collector.spanscan import NATIVE, WIRECHECK, scan_views
    from spansignals.processors.collector.validation import (
        DEFAULT_MAX_ATTRIBUTE_VALUE_BYTES,
        DEFAULT_MAX_ATTRIBUTES,
    )
    from spansignals.processors.config import load_config
    from spansignals.processors.factory import build_engine
    from spansignals.processors.view import OtlpAttributes, OtlpSpanView, SpanView

    request = parse_protobuf_request(template)
    pairs = []
    for rs in request.resource_spans:
        resource = OtlpAttributes(rs.resource.attributes)
        service = str(resource.get("service.name", "unknown_service"))
        pairs.extend((span, resource, service) for ss in rs.scope_spans for span in ss.spans)
    n = rounds * len(pairs)

    def views() -> list[SpanView]:  # as the pipeline builds them
        if NATIVE:
            scanned = scan_views(template, DEFAULT_MAX_ATTRIBUTES, DEFAULT_MAX_ATTRIBUTE_VALUE_BYTES)
            if scanned is not None:
                return scanned
        hint = EncodedSpans(template, len(pairs))
        return [
            OtlpSpanView(
                s.name,
                s.kind,
                s.start_time_unix_nano,
                s.end_time_unix_nano,
                s.status.code,
                s.attributes,
                s,
                hint,
                i,
                r,
                name,
                1.0,
            )
            for i, (s, r, name) in enumerate(pairs)
        ]

    def timed(fn: Any) -> float:
        fn()  # warm-up: first lookups (price catalogues, series creation) are not per-span costs
        runs = []
        for _ in range(repeats):
            start = time.process_time()
            for _ in range(rounds):
                fn()
            runs.append((time.process_time() - start) / n * 1e6)
        return statistics.median(runs)

    with _collector_gc():
        if WIRECHECK:  # what the receivers run before the scanner instead of upb's parse
            from spansignals.processors import _wirecheck

            costs = [("wire check", timed(lambda: _wirecheck.trace_spans(template)))]
        else:
            costs = [("parse", timed(lambda: parse_protobuf_request(template)))]
        view_cost = timed(views)
        costs.append(("span view", view_cost))
        for processor in build_engine(load_config(base_config)).processors:
            total = timed(lambda processor=processor: processor.observe_batch(views()))
            costs.append((processor.processor_name, total - view_cost))
    return costs


def ingest_cost(template: bytes, base_config: dict[str, Any], rounds: int = 40, repeats: int = 5) -> float:
    """In-process µs per span of what the gRPC handler runs per request: decoding (the wire check
    and scanner, or upb's parse), validation, views and every derivation sharing one attribute
    index per span, with the request's bytes, under the collector process's garbage-collector
    settings (:mod:`~spansignals.processors.collector.gc_tuning`);
    the median of ``repeats`` runs of ``rounds`` requests. The per-derivation figures each pay the
    attribute index on their own but leave out validation and the engine's dispatch, so the two do
    not add up exactly."""
    import statistics

    from spansignals.processors.collector.pipeline import TracePipeline
    from spansignals.processors.config import load_config
    from spansignals.processors.factory import build_engine

    pipeline = TracePipeline(build_engine(load_config(base_config)))
    pipeline.ingest_received(pipeline.receive(template), "grpc")
    spans = pipeline.ingest_received(pipeline.receive(template), "grpc").accepted
    with _collector_gc():
        runs = []
        for _ in range(repeats):
            start = time.process_time()
            for _ in range(rounds):
                pipeline.ingest_received(pipeline.receive(template), "grpc")
            runs.append((time.process_time() - start) / (rounds * spans) * 1e6)
    return statistics.median(runs)


# --- main ----------------------------------------------------------------------------------------


def _cpus() -> tuple[int | None, int | None]:
    try:
        available = sorted(os.sched_getaffinity(0))
    except AttributeError:
        return None, None
    if len(available) >= 2:
        return available[0], available[1]
    return None, None


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument(
        "--duration", type=float, default=10.0, help="measured seconds per target (default 10)"
    )
    parser.add_argument("--warmup", type=float, default=2.0, help="unmeasured seconds first (default 2)")
    parser.add_argument(
        "--concurrency",
        type=_int_list,
        default=[8, 32],
        help="requests in flight; a comma list measures each target at each (default 8,32)",
    )
    parser.add_argument("--connections", type=int, default=4, help="gRPC connections (default 4)")
    parser.add_argument("--rate", type=float, default=None, help="pace to SPANS_PER_S instead of closed loop")
    parser.add_argument(
        "--workers", type=int, default=1, help="also run `collector --workers N` and print the scaling factor"
    )
    parser.add_argument("--spans-per-request", type=int, default=SPANS_PER_REQUEST)
    parser.add_argument("--config", metavar="FILE", help="spansignals YAML config (endpoints are replaced)")
    parser.add_argument("--no-rotel", action="store_true", help="skip the rotel blackhole target")
    parser.add_argument(
        "--no-forward",
        action="store_true",
        help="no downstream for spansignals (spans dropped after derivation)",
    )
    parser.add_argument("--no-breakdown", action="store_true", help="skip the in-process µs/span breakdown")
    args = parser.parse_args(argv)

    template, offsets = build_template(args.spans_per_request)
    base_config: dict[str, Any] = {}
    if args.config:
        import yaml

        base_config = yaml.safe_load(Path(args.config).read_text()) or {}
    target_cpu, load_cpu = _cpus()
    rotel = None if args.no_rotel else rotel_binary()
    sink_binary = None if args.no_forward else rotel_binary()
    args.forwarding = sink_binary is not None
    from spansignals.processors.config import load_config
    from spansignals.processors.factory import build_engine

    derivations = (
        ", ".join(p.processor_name for p in build_engine(load_config(base_config)).processors) or "none"
    )
    if args.rate:
        args.concurrency = args.concurrency[:1]
    depths = ", ".join(str(c) for c in args.concurrency)
    mode = f"paced at {args.rate:,.0f} spans/s" if args.rate else f"closed loop, {depths} in flight"
    pinning = (
        f"target pinned to CPU {target_cpu}, load generator on CPU {load_cpu}"
        if target_cpu is not None
        else "no CPU pinning (fewer than 2 CPUs available)"
    )
    print(
        f"collector throughput: {len(offsets)}-span requests ({len(template):,} bytes) over OTLP gRPC, {mode}"
    )
    print(f"  {args.duration:g} s measured after {args.warmup:g} s warm-up per target; {pinning}")
    source = args.config or "default configuration"
    downstream = (
        "forwarding over OTLP gRPC to a rotel blackhole sink on the generator's CPU"
        if args.forwarding
        else "no downstream (spans dropped after derivation)"
    )
    print(f"  spansignals ({source}) derivations: {derivations}; {downstream}")
    from spansignals.processors.collector.spanscan import NATIVE, WIRECHECK

    if not NATIVE:
        span_path = "Python only (native module not built)"
    elif WIRECHECK:
        span_path = "native scanner, requests checked without a protobuf parse"
    else:
        span_path = "native scanner, requests parsed by upb first (wire check not built)"
    print(f"  span path: {span_path}")
    if rotel is None:
        print("  rotel: not installed (pip install rotel==0.0.1a15) or --no-rotel: skipped")
    if not args.no_breakdown:
        # as sent: the bare template's first span has an all-zero trace id, which the collector
        # rejects (and which sends the whole request down the Python span path)
        sent = stamp(template, offsets, 1)
        costs = derivation_costs(sent, base_config)
        parts = ", ".join(f"{name} {us:.2f}" for name, us in costs)
        print(f"  in-process µs/span: {parts} (sum {sum(us for _, us in costs):.2f})")
        print(
            "  in-process parse + ingest per request, as the gRPC handler runs it (collector GC settings):"
            f" {ingest_cost(sent, base_config):.2f} µs/span"
        )

    measurements = []
    with tempfile.TemporaryDirectory(prefix="spansignals-bench-") as tmp:
        workdir = Path(tmp)
        sink = None
        if sink_binary is not None:
            (workdir / "sink").mkdir()
            sink = start_rotel(sink_binary, workdir / "sink", load_cpu)
            collector = dict(base_config.get("collector", {}))
            collector["exporters"] = {"sink": {"endpoint": sink.grpc_endpoint, "protocol": "grpc"}}
            base_config = {**base_config, "collector": collector}
        starters = [(lambda: start_spansignals(workdir, target_cpu, base_config), load_cpu)]
        if rotel is not None:
            starters.append((lambda: start_rotel(rotel, workdir, target_cpu), load_cpu))
        if args.workers > 1:  # unpinned: N workers and the generator share every CPU
            starters.append((lambda: start_spansignals(workdir, None, base_config, args.workers), None))
        for start, generator_cpu in starters:
            for concurrency in args.concurrency:
                target = start()  # fresh per depth: the accounting check reads totals since start
                try:
                    measurements.append(measure(target, template, offsets, args, generator_cpu, concurrency))
                finally:
                    stop(target)
        if sink is not None:
            stop(sink)

    header = f"{'target':<24}{'inflight':>9}{'spans/s':>12}{'req/s':>9}{'CPU':>8}{'RSS MB':>9}{'p50 ms':>9}"
    print()
    print(header + f"{'p99 ms':>9}{'errors':>8}{'gen CPU':>9}{'spans/CPU-s':>13}")
    for m in measurements:
        print(
            f"{m.target:<24}{m.concurrency:>9}{m.spans_per_s:>12,.0f}{m.requests_per_s:>9,.1f}{m.cpu_share:>8.0%}"
            f"{m.rss_mb:>9.1f}{m.load.p50_ms:>9.1f}{m.load.p99_ms:>9.1f}{m.load.errors:>8}{m.load.cpu_share:>9.0%}"
            f"{m.spans_per_s / m.cpu_share if m.cpu_share > 0 else 0.0:>13,.0f}"
        )
    for m in measurements:
        if not args.rate and m.cpu_share < 0.9:
            print(
                f"  {m.target} at {m.concurrency} in flight: used {m.cpu_share:.0%} of its core, so it was"
                " latency-bound, not saturated"
            )
        if m.load.first_error:
            print(f"  {m.target} at {m.concurrency} in flight: first error: {m.load.first_error}")
        if m.accounting != "n/a":
            print(f"  {m.target} at {m.concurrency} in flight: accounting {m.accounting}")
    by_name: dict[str, Measurement] = {}  # each target's best row
    for m in measurements:
        if m.target not in by_name or m.spans_per_s > by_name[m.target].spans_per_s:
            by_name[m.target] = m
    single = by_name.get("spansignals collector")
    rotel_m = by_name.get("rotel blackhole")
    if single is not None and rotel_m is not None and rotel_m.spans_per_s > 0:
        ratio = single.spans_per_s / rotel_m.spans_per_s
        print(
            f"\nratio spansignals / rotel blackhole, best rows ({single.concurrency} and"
            f" {rotel_m.concurrency} in flight): {ratio:.2f}x  (issue #6 goal: >= 0.45x with forwarding)"
        )
    scaled = by_name.get(f"spansignals x{args.workers} workers")
    if single is not None and scaled is not None and single.spans_per_s > 0:
        cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
        print(
            f"scaling {args.workers} workers / 1 worker: {scaled.spans_per_s / single.spans_per_s:.2f}x"
            f" on {cpus} CPUs shared with the load generator (goal >= 1.8x for 2 workers on 2 free cores)"
        )
        if single.cpu_share > 0 and scaled.cpu_share > 0:
            efficiency = (scaled.spans_per_s / scaled.cpu_share) / (single.spans_per_s / single.cpu_share)
            print(
                f"  per CPU-second, {args.workers} workers do {efficiency:.2f}x what one does: with"
                f" {args.workers} free cores the scaling would be about {args.workers * efficiency:.2f}x"
                " if each worker got a whole core"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
