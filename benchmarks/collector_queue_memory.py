"""Collector RSS when its forwarding queue fills: a downstream that falls behind (issue #6).

Run:  python benchmarks/collector_queue_memory.py [--baseline 5] [--full 10] [--after 5]
                                                  [--sink-delay-ms 2000] [--concurrency 32]
                                                  [--queue-max-bytes N] [--queue-max-items N]
                                                  [--collector-env KEY=VALUE ...]

Real processes on loopback, as ``collector_throughput.py`` runs them (and with its 512-span
requests, generator and collector start-up): the ``spansignals`` collector (default config, pinned
to one CPU) forwards over OTLP gRPC to a sink in its own process; a load generator sends closed
loop at ``--concurrency`` requests in flight over 4 connections and, as that benchmark's does,
sends its next request at once after a refusal (a client that ignores the retry hint: the worst
case for memory, since every refused body is still received).

Phases:

1. **baseline** (``--baseline`` s): the sink answers at once;
2. **full** (``--full`` s): the sink answers every request only after ``--sink-delay-ms``, so the
   collector's consumers (4 sends in flight, each up to ``max_request_bytes``) deliver far less
   than arrives; the queue fills to its bound and the collector refuses clients (retryably);
3. **drain**: the load stops, the sink answers at once again; the queue drains, then ``--after``
   seconds more.

Every 0.5 s it prints the collector's RSS, the queue (spans queued or in flight, from
``spansignals_exporter_queue_spans``), spans refused and sent so far. At the end of each phase it
prints where the resident memory is, from ``/proc/PID/smaps``: glibc's main heap (``[heap]``,
the malloc arena of the event-loop thread), glibc's thread arenas (anonymous mappings aligned to
their 64 MiB reservation: malloc of grpc's and other threads), other anonymous mappings
(pymalloc's arenas, blocks malloc mmaps directly, thread stacks) and file-backed pages (code).
The run ends with the accounting check ``acknowledged = sent + dropped`` once the queue is empty.

``--collector-env`` sets environment variables of the collector process only (e.g.
``MALLOC_ARENA_MAX=2`` to compare allocator settings); ``--queue-max-bytes`` /
``--queue-max-items`` override the queue bound (``collector.queue``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from collector_throughput import (  # the benchmark directory is not a package
    _accepted,
    _cpus,
    _free_ports,
    _load_process,
    build_template,
    start_spansignals,
    stop,
)

TRACE_EXPORT = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"
HEAP_ALIGN = 64 << 20  # glibc's HEAP_MAX_SIZE on 64-bit: every thread-arena heap starts aligned to it


# --- the sink (its own process) ------------------------------------------------------------------


def _sink_main(port: int, delay_s: float) -> None:
    """An OTLP gRPC trace sink that never parses: answers an empty (valid) response, after
    ``delay_s`` while slow. SIGUSR1 makes it slow, SIGUSR2 fast again (it starts fast)."""
    import grpc

    slow = False

    async def export(body: bytes, context: Any) -> bytes:
        if slow:
            await asyncio.sleep(delay_s)
        return b""

    def set_slow(value: bool) -> None:
        nonlocal slow
        slow = value

    async def serve() -> None:
        server = grpc.aio.server(options=[("grpc.max_receive_message_length", 64 << 20)])
        handler = grpc.unary_unary_rpc_method_handler(export)
        service, method = TRACE_EXPORT.rsplit("/", 1)
        server.add_generic_rpc_handlers(
            (grpc.method_handlers_generic_handler(service.lstrip("/"), {method: handler}),)
        )
        server.add_insecure_port(f"127.0.0.1:{port}")
        await server.start()
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGUSR1, set_slow, True)
        loop.add_signal_handler(signal.SIGUSR2, set_slow, False)
        stopping = asyncio.Event()
        loop.add_signal_handler(signal.SIGTERM, stopping.set)
        print("ready", flush=True)
        await stopping.wait()
        await server.stop(None)

    asyncio.run(serve())


def start_sink(delay_s: float, cpu: int | None) -> tuple[subprocess.Popen[bytes], str]:
    (port,) = _free_ports(1)
    code = f"import sys; sys.path.insert(0, {str(Path(__file__).parent)!r}); "
    code += f"import collector_queue_memory as m; m._sink_main({port}, {delay_s!r})"
    pin = (lambda: os.sched_setaffinity(0, {cpu})) if cpu is not None else None
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, preexec_fn=pin)
    assert proc.stdout is not None
    if proc.stdout.readline().strip() != b"ready":
        raise RuntimeError(f"sink did not start (exit {proc.poll()})")
    return proc, f"127.0.0.1:{port}"


# --- where the collector's memory is ------------------------------------------------------------


def smaps_shares(pid: int) -> dict[str, float]:
    """Resident MB of the process by kind of mapping (see the module docstring); ``arenas`` is
    the number of glibc thread-arena heaps."""
    shares = {"main heap": 0.0, "thread arenas": 0.0, "other anonymous": 0.0, "files": 0.0}
    arenas = 0
    kind = "files"
    with open(f"/proc/{pid}/smaps") as f:
        for line in f:
            first = line.split(None, 1)[0]
            if "-" in first and not first.endswith(":"):  # a mapping's header line
                fields = line.split()
                start = int(first.split("-", 1)[0], 16)
                path = fields[5] if len(fields) > 5 else ""
                if path == "[heap]":
                    kind = "main heap"
                elif path and not path.startswith("["):
                    kind = "files"
                elif not path and start % HEAP_ALIGN == 0 and fields[1].startswith("rw"):
                    kind = "thread arenas"
                    arenas += 1
                else:
                    kind = "other anonymous"
            elif first == "Rss:":
                shares[kind] += int(line.split()[1]) / 1024
    shares["arenas"] = arenas
    return shares


def _shares_line(shares: dict[str, float]) -> str:
    parts = [f"{name} {mb:.1f}" for name, mb in shares.items() if name != "arenas"]
    return ", ".join(parts) + f" MB ({int(shares['arenas'])} thread-arena heaps)"


def _metric(url: str, name: str, outcome: str | None = None) -> float:
    return _accepted(url, name, outcome) or 0.0


# --- the run ------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    import psutil

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--baseline", type=float, default=5.0, help="seconds with a fast sink (default 5)")
    parser.add_argument("--full", type=float, default=10.0, help="seconds with a slow sink (default 10)")
    parser.add_argument("--after", type=float, default=5.0, help="seconds after the drain (default 5)")
    parser.add_argument(
        "--sink-delay-ms", type=float, default=2000.0, help="slow sink's delay (default 2000)"
    )
    parser.add_argument("--concurrency", type=int, default=32, help="requests in flight (default 32)")
    parser.add_argument("--connections", type=int, default=4, help="gRPC connections (default 4)")
    parser.add_argument("--queue-max-bytes", type=int, default=None)
    parser.add_argument("--queue-max-items", type=int, default=None)
    parser.add_argument("--collector-env", action="append", default=[], metavar="KEY=VALUE")
    args = parser.parse_args(argv)

    template, offsets = build_template(512)
    target_cpu, load_cpu = _cpus()
    queue: dict[str, int] = {}
    if args.queue_max_bytes is not None:
        queue["max_bytes"] = args.queue_max_bytes
    if args.queue_max_items is not None:
        queue["max_items"] = args.queue_max_items
    sink, sink_endpoint = start_sink(args.sink_delay_ms / 1000, load_cpu)
    collector: dict[str, Any] = {"exporters": {"sink": {"endpoint": sink_endpoint, "protocol": "grpc"}}}
    if queue:
        collector["queue"] = queue
    print(
        f"collector queue memory: 512-span requests ({len(template):,} bytes), {args.concurrency} in flight"
        f" over {args.connections} connections; slow sink answers after {args.sink_delay_ms:g} ms"
    )
    print(f"  queue: {json.dumps(queue) if queue else 'default bound'}; collector env: {args.collector_env}")
    print(f"  load average at start: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")

    with tempfile.TemporaryDirectory(prefix="spansignals-qmem-") as tmp:
        for item in args.collector_env:
            key, _, value = item.partition("=")
            os.environ[key] = value
        try:
            target = start_spansignals(Path(tmp), target_cpu, {"collector": collector})
        finally:
            for item in args.collector_env:
                os.environ.pop(item.partition("=")[0], None)
        try:
            return _run(args, target, sink, template, offsets, load_cpu, psutil)
        finally:
            stop(target)
            sink.terminate()
            sink.wait(10)


def _run(
    args: argparse.Namespace,
    target: Any,
    sink: subprocess.Popen[bytes],
    template: bytes,
    offsets: list[int],
    load_cpu: int | None,
    psutil: Any,
) -> int:
    url = target.metrics_urls[0]
    proc = psutil.Process(target.proc.pid)
    rss_at_start = proc.memory_info().rss / 1e6
    print(f"  collector RSS after start-up, idle: {rss_at_start:.1f} MB")
    ctx = mp.get_context("spawn")
    results = ctx.Queue()
    start_at = time.time() + 2.0
    slow_at = start_at + args.baseline
    load_end = slow_at + args.full
    generator = ctx.Process(
        target=_load_process,
        args=(
            (
                target.grpc_endpoint,
                template,
                offsets,
                start_at,
                (start_at, load_end),
                args.concurrency,
                None,
                load_cpu,
                args.connections,
            ),
            results,
        ),
    )
    generator.start()
    print(f"\n{'t s':>6} {'phase':<9}{'RSS MB':>8}{'queue spans':>13}{'refused':>12}{'sent':>12}")
    peaks = {"baseline": 0.0, "full": 0.0, "drain": 0.0}
    shares: dict[str, dict[str, float]] = {}
    phase = "baseline"
    drained_at: float | None = None
    while time.time() < start_at:
        time.sleep(0.05)
    while True:
        now = time.time()
        if phase == "baseline" and now >= slow_at:
            shares["baseline"] = smaps_shares(proc.pid)
            sink.send_signal(signal.SIGUSR1)
            phase = "full"
        elif phase == "full" and now >= load_end:
            shares["full"] = smaps_shares(proc.pid)
            sink.send_signal(signal.SIGUSR2)
            phase = "drain"
        rss = proc.memory_info().rss / 1e6
        peaks[phase] = max(peaks[phase], rss)
        queued = _metric(url, "spansignals_exporter_queue_spans", None)
        refused = _metric(url, "spansignals_receiver_spans_total", "refused")
        sent = _metric(url, "spansignals_exporter_spans_total", "sent")
        print(f"{now - start_at:6.1f} {phase:<9}{rss:8.1f}{queued:13,.0f}{refused:12,.0f}{sent:12,.0f}")
        if phase == "drain" and queued == 0 and drained_at is None:
            drained_at = now
        if drained_at is not None and now - drained_at >= args.after:
            break
        if phase == "drain" and now - load_end > 120:
            print("  the queue did not drain within 120 s")
            break
        time.sleep(max(0.0, 0.5 - (time.time() - now)))
    shares["after drain"] = smaps_shares(proc.pid)
    rss_after = proc.memory_info().rss / 1e6
    load = results.get(timeout=60)
    generator.join(30)

    acked = load.spans_total
    sent = _metric(url, "spansignals_exporter_spans_total", "sent")
    dropped = _metric(url, "spansignals_exporter_spans_total", "dropped")
    accepted = _metric(url, "spansignals_receiver_spans_total", "accepted")
    print()
    print(f"RSS baseline (peak, fast sink):          {peaks['baseline']:.1f} MB")
    print(f"RSS with the queue full (peak):          {peaks['full']:.1f} MB")
    print(f"RSS while draining (peak):               {peaks['drain']:.1f} MB")
    print(f"RSS {args.after:g} s after the queue drained:     {rss_after:.1f} MB")
    for name, share in shares.items():
        print(f"  at the end of {name:<12} {_shares_line(share)}")
    print(
        f"generator: {acked:,} spans acknowledged, {load.errors:,} requests refused"
        f" (first: {load.first_error or 'none'})"
    )
    verdict = "ok" if int(sent + dropped) == acked == int(accepted) else "MISMATCH"
    print(
        f"accounting {verdict}: acknowledged {acked:,} = collector accepted {int(accepted):,}"
        f" = sent {int(sent):,} + dropped {int(dropped):,}"
    )
    print(f"load average at end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    return 0 if verdict == "ok" else 1


if __name__ == "__main__":
    raise SystemExit(main())
