"""The collector's forwarding path on its own: CPU per forwarded request, and sends per request.

Run:  python benchmarks/collector_forward.py [--requests 800] [--handler-ms 2.5] [--repeats 5]

In one process pinned to one CPU (as the collector runs), a :class:`Forwarder` with the default
exporter settings (memory queue, four consumers, merging up to 4 MiB) forwards
``benchmarks/collector_throughput.py``'s 512-span request over OTLP gRPC to a ``rotel-agent
--exporter blackhole`` sink on another CPU. Between two requests the event loop is kept busy for
``--handler-ms`` of CPU, standing in for the receiver's handler (parse and derivations) plus grpc's
server side, so sends complete and batches queue as they do in the collector, where handlers and
sends share the loop. The default 2.5 ms (400 requests/s, about the collector's rate in
``collector_throughput.py``) is a rate the sink keeps up with: at a rate it cannot, the queue
backs up and every variant merges whatever piled up, which hides the difference. A refused
request (queue full) is retried after 5 ms, as a client would.

Printed per variant: CPU per request of the whole process (every thread: grpc's own threads do
part of each send) minus the simulated handler, the median of ``--repeats`` rounds; received
requests per downstream send; refusals. Variants:

* ``held back`` (the default): a consumer starts a send only when none awaits an answer, a whole
  ``max_request_bytes`` is waiting, or the newest send has been out for the linger;
* ``all consumers at once``: ``send_linger`` 0, every idle consumer sends whatever is ready (the
  behaviour before sends were held back);
* ``no merging``: ``max_request_bytes`` 0, one send per request.

Needs the ``rotel`` wheel (the sink).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from collector_throughput import build_template, rotel_binary, start_rotel, stop

VARIANTS: dict[str, tuple[dict[str, Any], float | None]] = {
    "held back (default)": ({}, None),
    "all consumers at once": ({}, 0.0),
    "no merging": ({"max_request_bytes": 0}, None),
}


def _busy(seconds: float) -> None:
    """Keep this thread on the CPU for ``seconds`` of its own CPU time (the stand-in handler)."""
    end = time.thread_time() + seconds
    while time.thread_time() < end:
        pass


async def _measure(
    endpoint: str, payload: bytes, spans: int, exporter: dict[str, Any], linger: float | None, args: Any
) -> tuple[float, float, int]:
    from spansignals.processors.collector.forwarding import Forwarder
    from spansignals.processors.collector.gc_tuning import tune_gc
    from spansignals.processors.collector.queue import Backpressure
    from spansignals.processors.config import load_config

    config = load_config(
        {"collector": {"exporters": {"sink": {"endpoint": endpoint, "protocol": "grpc", **exporter}}}}
    )
    forwarder = Forwarder.from_config(config.collector)
    worker = forwarder.workers[0]
    if linger is not None:
        worker.send_linger = linger
    await forwarder.start()
    tune_gc()  # as the collector does once listening
    refused = 0
    per_request = []
    sends_before = 0
    try:
        for _ in range(args.repeats):
            started = time.process_time()
            busy = 0.0
            for _ in range(args.requests):
                before = time.thread_time()
                _busy(args.handler_ms / 1000)
                busy += time.thread_time() - before
                while True:
                    try:
                        await forwarder.submit("traces", payload, spans)
                        break
                    except Backpressure:
                        refused += 1
                        await asyncio.sleep(0.005)  # the client's retry
                await asyncio.sleep(0)  # the handler returns: the loop runs what is ready
            while not worker.queue.empty():
                await asyncio.sleep(0.001)  # the rest of the sends belong to this round
            per_request.append((time.process_time() - started - busy) / args.requests)
        ((_, (_, sends, *_)),) = forwarder.families.send_duration.snapshot()
        sends_before = sends
    finally:
        await forwarder.stop(5.0)
    return statistics.median(per_request), args.requests * args.repeats / max(1, sends_before), refused


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--requests", type=int, default=800, help="requests per round (default 800)")
    parser.add_argument("--repeats", type=int, default=5, help="rounds per variant (default 5)")
    parser.add_argument(
        "--handler-ms", type=float, default=2.5, help="stand-in handler CPU ms per request (default 2.5)"
    )
    args = parser.parse_args(argv)
    binary = rotel_binary()
    if binary is None:
        print("needs the rotel wheel for the sink: pip install rotel==0.0.1a15")
        return 1
    cpus = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
    if len(cpus) >= 2:
        os.sched_setaffinity(0, {cpus[0]})
    template, offsets = build_template(512)
    print(
        f"collector forwarding path: {len(offsets)}-span requests ({len(template):,} bytes) to a rotel"
        f" blackhole sink over OTLP gRPC; stand-in handler {args.handler_ms:g} ms CPU per request;"
        f" {args.requests} requests x {args.repeats} rounds per variant"
    )
    with tempfile.TemporaryDirectory(prefix="spansignals-forward-") as tmp:
        sink = start_rotel(binary, Path(tmp), cpus[1] if len(cpus) >= 2 else None)
        try:
            rows = []
            for name, (exporter, linger) in VARIANTS.items():
                cost, per_send, refused = asyncio.run(
                    _measure(sink.grpc_endpoint, template, len(offsets), exporter, linger, args)
                )
                rows.append((name, cost))
                print(
                    f"  {name:<24} {cost * 1e6:7.0f} µs CPU per request  {per_send:6.1f} requests per send"
                    f"  {refused:5d} refusals  (load average {os.getloadavg()[0]:.2f})",
                    flush=True,
                )
        finally:
            stop(sink)
    base = rows[0][1]
    for name, cost in rows[1:]:
        print(f"  {name} costs {cost / base:.2f}x the default")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
