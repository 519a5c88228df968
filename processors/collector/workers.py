"""Scale-out on one host: N worker processes sharing the receiver ports with SO_REUSEPORT.

``spansignals collector --workers N`` (or ``collector.workers: N``) makes the process a small
supervisor: it starts N copies of ``spansignals collector`` with ``SPANSIGNALS_WORKER_INDEX=i``,
each a complete collector (receivers, engine, forwarding) on one core. The gRPC and HTTP receivers
of every worker bind the *same* ports with ``SO_REUSEPORT`` (grpc option ``grpc.so_reuseport``,
our own socket for aiohttp) and the kernel spreads incoming connections over them.

``/metrics``: each worker serves its own on ``metrics port + i`` (worker 0 on the configured
port). Scrape all N. Every derived counter and histogram is a per-worker partial sum, so
``sum by (service_name, ...)`` over the workers is the host's total, exactly as for several
instances; gauges are per worker (see processors/collector/README.md, "Scale-out").

Ports must be explicit (not 0) when N > 1. The supervisor forwards SIGTERM/SIGINT to the workers
and waits for them to drain; a worker that crashes is restarted (at most ``MAX_RESTARTS`` times
per minute per worker); a worker that cannot listen or rejects the configuration stops them all
with its exit code.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections import deque
from dataclasses import replace
from typing import Any

__all__ = ["MAX_RESTARTS", "WORKER_INDEX_ENV", "run_workers", "worker_index", "worker_settings"]

_logger = logging.getLogger(__name__)

WORKER_INDEX_ENV = "SPANSIGNALS_WORKER_INDEX"
MAX_RESTARTS = 5
_FATAL_EXITS = (1, 2)  # cannot listen, invalid configuration: restarting will not help


def worker_index() -> int | None:
    """This process's worker index when it runs under a supervisor, else ``None``."""
    raw = os.environ.get(WORKER_INDEX_ENV)
    return int(raw) if raw is not None and raw.isdigit() else None


def worker_settings(settings: Any, index: int) -> Any:
    """``settings`` for worker ``index``: ports shared (SO_REUSEPORT), ``/metrics`` on port + index."""
    metrics = settings.metrics_endpoint
    return replace(settings, reuse_port=True, metrics_endpoint=metrics.with_port(metrics.port + index))


def check_workers(settings: Any, workers: int) -> str | None:
    """Why ``workers`` processes cannot run with ``settings`` (a port 0), or ``None``."""
    if workers <= 1:
        return None
    for name in ("grpc_endpoint", "http_endpoint", "metrics_endpoint"):
        endpoint = getattr(settings, name)
        if endpoint is not None and endpoint.port == 0:
            return f"--workers {workers} needs explicit ports; {name.replace('_', ' ')} is port 0"
    return None


def run_workers(config_path: str | None, workers: int, *, log_level: str = "INFO") -> int:
    """Supervise ``workers`` collector processes until SIGINT/SIGTERM; returns the exit code."""
    argv = [sys.executable, "-m", "spansignals", "--log-level", log_level, "collector"]
    if config_path:
        argv += ["--config", config_path]
    stop = threading.Event()
    previous = {s: signal.signal(s, lambda *_: stop.set()) for s in (signal.SIGINT, signal.SIGTERM)}
    procs: dict[int, subprocess.Popen[bytes]] = {}
    restarts: dict[int, deque[float]] = {i: deque() for i in range(workers)}

    def spawn(index: int) -> None:
        procs[index] = subprocess.Popen(argv, env={**os.environ, WORKER_INDEX_ENV: str(index)})

    exit_code = 0
    try:
        for index in range(workers):
            spawn(index)
        print(
            f"spansignals collector: {workers} workers (pids {', '.join(str(p.pid) for p in procs.values())})"
            " sharing the receiver ports; /metrics of worker i on the metrics port + i",
            file=sys.stderr,
            flush=True,
        )
        while not stop.is_set():
            for index, proc in list(procs.items()):
                code = proc.poll()
                if code is None:
                    continue
                if code in _FATAL_EXITS:
                    print(
                        f"spansignals collector: worker {index} exited with {code}; stopping", file=sys.stderr
                    )
                    exit_code = code
                    stop.set()
                    break
                now = time.monotonic()
                recent = restarts[index]
                while recent and now - recent[0] > 60:
                    recent.popleft()
                if len(recent) >= MAX_RESTARTS:
                    print(
                        f"spansignals collector: worker {index} crashed {MAX_RESTARTS} times in a minute;"
                        " stopping",
                        file=sys.stderr,
                    )
                    exit_code = 1
                    stop.set()
                    break
                recent.append(now)
                print(
                    f"spansignals collector: worker {index} exited with {code}; restarting", file=sys.stderr
                )
                spawn(index)
            stop.wait(0.2)
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 30
        for proc in procs.values():
            try:
                proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    return exit_code
