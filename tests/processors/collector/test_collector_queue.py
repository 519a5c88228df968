"""Both export queues: a consumer's ``admit`` gate holds a ready batch back until it opens (asked
again on every put and on ``wake()``), and ``ready_bytes`` counts exactly the batches not in flight."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from spansignals.processors.collector.persistent_queue import SqliteQueue
from spansignals.processors.collector.queue import Batch, MemoryQueue


@pytest.fixture(params=["memory", "persistent"])
async def queue(request: Any, tmp_path: Path) -> Any:
    if request.param == "memory":
        yield MemoryQueue()
        return
    persistent = SqliteQueue(tmp_path, "down")
    await persistent.open()
    yield persistent
    await persistent.close()


def _batch(n: int, size: int = 100) -> Batch:
    return Batch("traces", bytes([n]) * size, 3)


async def test_ready_bytes_count_the_batches_not_in_flight(queue: Any) -> None:
    for n in range(3):
        await queue.put(_batch(n, 100 + n))
    assert queue.ready_bytes == 303
    first = await queue.get()
    assert queue.ready_bytes == 203
    second = queue.try_get("traces", 1 << 20)
    assert second is not None and queue.ready_bytes == 102
    queue.release(second)
    assert queue.ready_bytes == 203
    await queue.ack(first)
    assert queue.ready_bytes == 203 and queue.size_bytes == 203


async def test_a_closed_gate_holds_a_ready_batch_until_a_put_or_wake_opens_it(queue: Any) -> None:
    """The gate sees the ready bytes; a put asks it again (and it opens on enough bytes), and so
    does ``wake()`` (what the exporter calls when a send ends or its linger passes)."""
    is_open = False
    asked: list[int] = []

    def admit(ready_bytes: int) -> bool:
        asked.append(ready_bytes)
        return is_open or ready_bytes >= 200

    await queue.put(_batch(1))
    getter = asyncio.create_task(queue.get(admit))
    await asyncio.sleep(0.05)
    assert not getter.done() and asked == [100]
    await queue.put(_batch(2))  # 200 bytes ready: the gate opens
    batch = await asyncio.wait_for(getter, 1)
    assert batch.payload == _batch(1).payload and asked == [100, 200]

    getter = asyncio.create_task(queue.get(admit))  # 100 bytes ready: held back
    await asyncio.sleep(0.05)
    assert not getter.done()
    is_open = True
    queue.wake()
    batch = await asyncio.wait_for(getter, 1)
    assert batch.payload == _batch(2).payload and queue.ready_bytes == 0


async def test_a_cancelled_consumer_passes_its_wake_up_on(queue: Any) -> None:
    """A put's wake-up that lands on a consumer cancelled in the same moment goes to the next
    waiting consumer, so the batch does not wait for another put."""
    first = asyncio.create_task(queue.get())
    second = asyncio.create_task(queue.get())
    await asyncio.sleep(0.05)
    await queue.put(_batch(1))  # wakes the first consumer ...
    first.cancel()  # ... which is cancelled before it runs
    batch = await asyncio.wait_for(second, 1)
    assert batch.payload == _batch(1).payload
    with pytest.raises(asyncio.CancelledError):
        await first
