"""OTLP load generator for the collector load tests, run as its own process.

Run:  python tests/load_generator.py --grpc HOST:PORT [--http URL] --rate SPANS_PER_S
                                     --duration S [--concurrency N] [--http-share F] [--first-id N]

It reuses the throughput benchmark's pre-serialized 512-span request (realistic span mix, see
``benchmarks/collector_throughput.py``) and patches a per-request counter into every trace id, so
every (trace_id, span_id) sent is unique; ``--first-id`` starts that counter elsewhere so several
runs against one collector never collide. The load is paced (open loop) at ``--rate`` spans/s over
``--concurrency`` senders; ``--http-share`` of the senders post the same bytes over OTLP/HTTP
protobuf instead of gRPC.

It prints ``started <epoch>`` on stdout when the load begins (so a test can sample the target's
CPU exactly over the load), then one JSON line when done: acknowledged spans and requests, request
latencies (p50/p99 ms of acknowledged requests), and every answer counted by kind, e.g.
``grpc:OK``, ``grpc:UNAVAILABLE+RetryInfo``, ``http:200``, ``http:503+Retry-After``, with the
epoch of the last refusal and the first detail of each kind.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

from collector_throughput import EXPORT_METHOD, build_template, percentile, stamp

STATUS_DETAILS = "grpc-status-details-bin"


def _grpc_kind(exc: Any) -> str:
    """``grpc:<CODE>`` plus ``+RetryInfo`` when the trailers carry a RetryInfo detail."""
    from google.rpc import error_details_pb2, status_pb2

    kind = f"grpc:{exc.code().name}"
    for key, value in exc.trailing_metadata() or ():
        if key == STATUS_DETAILS:
            status = status_pb2.Status.FromString(value)
            if any(d.Is(error_details_pb2.RetryInfo.DESCRIPTOR) for d in status.details):
                kind += "+RetryInfo"
    return kind


async def generate(args: argparse.Namespace) -> dict[str, Any]:
    """Send paced requests for ``args.duration`` seconds and return the tallies."""
    import aiohttp
    import grpc

    template, offsets = build_template(args.spans_per_request)
    spans = len(offsets)
    counter = args.first_id
    interval = spans / args.rate * args.concurrency  # seconds between two sends of one sender
    answers: collections.Counter[str] = collections.Counter()
    details: dict[str, str] = {}
    latencies: list[float] = []
    tally = {"acked_spans": 0, "acked_requests": 0, "last_refusal_at": 0.0}

    def next_body() -> bytes:
        nonlocal counter
        counter += 1
        return stamp(template, offsets, counter)

    def answered(kind: str, detail: str, sent: float) -> None:
        answers[kind] += 1
        if kind in ("grpc:OK", "http:200"):
            tally["acked_spans"] += spans
            tally["acked_requests"] += 1
            latencies.append((time.perf_counter() - sent) * 1000)
        else:
            tally["last_refusal_at"] = time.time()
            details.setdefault(kind, detail[:300])

    channel = grpc.aio.insecure_channel(args.grpc, options=[("grpc.max_send_message_length", 64 << 20)])
    export = channel.unary_unary(EXPORT_METHOD)
    await asyncio.wait_for(channel.channel_ready(), 30)
    http_senders = round(args.concurrency * args.http_share) if args.http else 0
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session:
        start = time.time()
        end = start + args.duration
        print(f"started {start}", flush=True)

        async def sender(slot: int) -> None:
            use_http = slot < http_senders
            next_send = start + slot * interval / args.concurrency
            while True:
                now = time.time()
                if now >= end:
                    return
                if next_send > now:
                    await asyncio.sleep(next_send - now)
                next_send = max(next_send + interval, time.time())  # behind: no catch-up burst
                body = next_body()
                sent = time.perf_counter()
                if use_http:
                    headers = {"Content-Type": "application/x-protobuf"}
                    try:
                        async with session.post(args.http, data=body, headers=headers) as resp:
                            text = (await resp.read())[:200].decode(errors="replace")
                            kind = f"http:{resp.status}"
                            if resp.status != 200 and "Retry-After" in resp.headers:
                                kind += "+Retry-After"
                    except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
                        kind, text = f"http:{type(exc).__name__}", str(exc)
                    answered(kind, text, sent)
                else:
                    try:
                        await export(body, timeout=30)
                    except grpc.aio.AioRpcError as exc:
                        answered(_grpc_kind(exc), exc.details() or "", sent)
                    else:
                        answered("grpc:OK", "", sent)

        await asyncio.gather(*(sender(i) for i in range(args.concurrency)))
        finished = time.time()
    await channel.close()
    latencies.sort()
    return {
        **tally,
        "started_at": start,
        "finished_at": finished,
        "last_id": counter,
        "answers": dict(answers),
        "details": details,
        "p50_ms": percentile(latencies, 0.50),
        "p99_ms": percentile(latencies, 0.99),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--grpc", required=True, help="collector OTLP gRPC host:port")
    parser.add_argument("--http", default=None, help="collector OTLP/HTTP traces URL")
    parser.add_argument("--rate", type=float, required=True, help="spans per second (paced)")
    parser.add_argument("--duration", type=float, required=True, help="seconds of load")
    parser.add_argument("--concurrency", type=int, default=4, help="senders (default 4)")
    parser.add_argument("--http-share", type=float, default=0.0, help="fraction of senders on HTTP")
    parser.add_argument("--first-id", type=int, default=0, help="request counter start (default 0)")
    parser.add_argument("--spans-per-request", type=int, default=512)
    args = parser.parse_args(argv)
    result = asyncio.run(generate(args))
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
