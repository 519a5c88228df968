"""The sqlite persistent queue: durable before ack, recovery after reopen, CRC-checked payloads,
unreadable files moved aside with what can be salvaged, and a full disk refused retryably."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from spansignals.processors.collector.persistent_queue import SqliteQueue
from spansignals.processors.collector.queue import Batch, QueueFull, QueueUnavailable


def _batch(n: int, size: int = 64) -> Batch:
    return Batch("traces", bytes([n % 251]) * size + f"batch-{n:06d}".encode(), 3)


async def _open(path: Path, **kwargs: object) -> SqliteQueue:
    queue = SqliteQueue(path, "down", **kwargs)  # type: ignore[arg-type]
    await queue.open()
    return queue


async def test_acked_batches_are_gone_and_the_rest_survive_a_reopen(tmp_path: Path) -> None:
    """What was put and not acked is there, in order, after closing and opening again."""
    queue = await _open(tmp_path)
    for n in range(5):
        await queue.put(_batch(n))
    first = await queue.get()
    await queue.ack(first)
    in_flight = await queue.get()  # taken, never acked: must come back
    await queue.close()
    assert in_flight.payload.endswith(b"batch-000001")

    again = await _open(tmp_path)
    assert (again.items, again.recovered_items) == (12, 12)
    payloads = [(await again.get()).payload for _ in range(4)]
    assert [p[-12:] for p in payloads] == [f"batch-{n:06d}".encode() for n in (1, 2, 3, 4)]
    await again.close()


async def test_bounds_refuse_with_queue_full(tmp_path: Path) -> None:
    """Past max_items the put raises QueueFull with the configured hint and stores nothing."""
    queue = await _open(tmp_path, max_items=6, retry_after=3.0)
    await queue.put(_batch(1))
    await queue.put(_batch(2))
    with pytest.raises(QueueFull) as info:
        await queue.put(_batch(3))
    assert info.value.retry_after == 3.0 and queue.items == 6
    await queue.close()


def _flip_inside(path: Path, marker: bytes) -> None:
    data = bytearray(path.read_bytes())
    at = data.find(marker)
    assert at >= 0, "marker not found in the database file"
    data[at : at + len(marker)] = bytes(b ^ 0xFF for b in marker)
    path.write_bytes(bytes(data))


async def test_damaged_payload_is_dropped_as_corrupt_and_the_rest_delivered(tmp_path: Path) -> None:
    """A payload whose bytes changed on disk fails its CRC: dropped and reported, others intact."""
    queue = await _open(tmp_path)
    for n in range(3):
        await queue.put(_batch(n, size=2000))
    await queue.close()  # checkpoints the WAL into the main file
    _flip_inside(tmp_path / "down.sqlite", b"batch-000001")

    corrupt: list[Batch] = []
    again = await _open(tmp_path)
    again.on_corrupt = corrupt.append
    good = [await again.get(), await again.get()]
    assert [b.payload[-12:] for b in good] == [b"batch-000000", b"batch-000002"]
    assert [b.id for b in corrupt] == [2] and corrupt[0].items == 3
    assert again.items == 6  # the two good ones, still unacked
    await again.close()


async def test_unreadable_file_is_moved_aside_and_the_collector_starts(tmp_path: Path) -> None:
    """A file sqlite cannot open is kept as *.corrupt-<time>, and the queue starts empty."""
    (tmp_path / "down.sqlite").write_bytes(b"this is not a database" * 100)
    queue = await _open(tmp_path)
    assert queue.items == 0
    await queue.put(_batch(1))
    assert len(list(tmp_path.glob("down.sqlite.corrupt-*"))) == 1
    await queue.close()


@pytest.fixture
def tiny_fs(tmp_path: Path) -> Iterator[Path]:
    """A 1 MiB tmpfs (needs root; skipped otherwise)."""
    mount = tmp_path / "tiny"
    mount.mkdir()
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("mounting a tmpfs needs root")
    result = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mount)], capture_output=True
    )
    if result.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs: {result.stderr.decode().strip()}")
    try:
        yield mount
    finally:
        with contextlib.suppress(Exception):
            subprocess.run(["umount", "-l", str(mount)], check=False)


async def test_disk_full_refuses_retryably_and_loses_nothing_acknowledged(tiny_fs: Path) -> None:
    """On a full disk put raises QueueUnavailable (a retryable refusal); everything that was
    stored before is delivered after a reopen."""
    queue = await _open(tiny_fs, max_items=10**9, max_bytes=10**12, retry_after=60.0)
    stored = 0
    with pytest.raises(QueueUnavailable):
        for n in range(10_000):
            await queue.put(_batch(n, size=16 * 1024))
            stored += 1
    assert stored > 10 and queue.items == stored * 3
    # For retry_after seconds the queue takes nothing: refused before any derivation, unready.
    assert not queue.fits(1, 10)
    with pytest.raises(QueueFull):
        await queue.put(_batch(0))
    await queue.close()

    again = await _open(tiny_fs)
    got = []
    while again.items:
        batch = await asyncio.wait_for(again.get(), 5)
        got.append(batch.payload[-12:])
        await again.ack(batch)
    assert got == [f"batch-{n:06d}".encode() for n in range(stored)]
    await again.close()


def test_each_worker_process_owns_its_queue_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Under --workers, worker i's persistent queue is <exporter>.worker<i>.sqlite (never shared)."""
    from spansignals.processors.collector.forwarding import Forwarder
    from spansignals.processors.collector.workers import WORKER_INDEX_ENV
    from spansignals.processors.config.collector import CollectorConfig

    config = CollectorConfig.model_validate(
        {
            "exporters": {"sink": {"endpoint": "127.0.0.1:1"}},
            "queue": {"kind": "persistent", "path": str(tmp_path)},
        }
    )

    async def queue_path() -> Path:
        forwarder = Forwarder.from_config(config)
        queue = forwarder.workers[0].queue
        await forwarder.workers[0].sender.close()
        assert isinstance(queue, SqliteQueue)
        return queue.path

    assert asyncio.run(queue_path()) == tmp_path / "sink.sqlite"
    monkeypatch.setenv(WORKER_INDEX_ENV, "1")
    assert asyncio.run(queue_path()) == tmp_path / "sink.worker1.sqlite"
