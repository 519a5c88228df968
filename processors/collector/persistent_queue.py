"""A persistent export queue: one sqlite database per exporter, in WAL mode, written before ack.

Why sqlite (WAL) rather than append-only segment files: a committed transaction is atomic and, in
WAL mode, survives SIGKILL of the process as soon as ``commit`` returns (and power loss too with
``synchronous=FULL``, the default here); deleting a delivered batch is one indexed ``DELETE``
instead of segment compaction and a separate read-offset file whose own torn writes would need
handling; and the standard library ships it. What sqlite does not do is checksum page content, so
each row carries the CRC-32 of its payload: a batch whose bytes were damaged on disk is detected
when it is read, removed, and counted as dropped (reason ``corrupt``) instead of being sent as
garbage. A file sqlite cannot open at all (header destroyed, not a database) is moved aside as
``<name>.corrupt-<unix time>`` (never deleted), the rows still readable from it are salvaged into a
fresh database, and the collector starts; the log says how many batches were salvaged.

The promise (RELIABILITY.md #8): a request is acknowledged only after its batch is committed, so
everything acknowledged is delivered after a restart; a batch is deleted only after the downstream
answered for it, so a crash re-sends at most the batches that were in flight (one per consumer).
A full disk or an I/O error on write raises :class:`~.queue.QueueUnavailable`: the client gets a
retryable refusal and nothing is acknowledged.

All sqlite work runs on one dedicated thread, so the event loop never waits on ``fsync``. Puts and
deletes waiting at the same moment share one transaction (group commit: one ``fsync`` for many
requests); each caller still returns only after its own commit. Batches put in this run are kept in
memory until acknowledged (the queue's ``max_bytes`` bounds that), so they are never read back;
only batches recovered from a previous run are read from disk.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import os
import sqlite3
import time
import zlib
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TypeVar

from .queue import Admit, Batch, QueueFull, QueueUnavailable, Waiters

__all__ = ["SqliteQueue"]

_T = TypeVar("_T")
_logger = logging.getLogger(__name__)

_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS batches ("
    " id INTEGER PRIMARY KEY, signal TEXT NOT NULL, items INTEGER NOT NULL,"
    " crc INTEGER NOT NULL, payload BLOB NOT NULL)"
)


class SqliteQueue:
    """Same interface as :class:`~.queue.MemoryQueue`, stored in ``directory/<name>.sqlite``.

    ``synchronous`` ``"full"`` (default) fsyncs every commit; ``"normal"`` survives a process crash
    but not a power loss. ``on_corrupt(batch)`` is called for a batch whose payload failed its CRC
    (the caller counts it as dropped).
    """

    def __init__(
        self,
        directory: str | os.PathLike[str],
        name: str,
        *,
        max_items: int = 200_000,
        max_bytes: int = 256 * 1024 * 1024,
        retry_after: float = 1.0,
        synchronous: str = "full",
        on_corrupt: Callable[[Batch], None] | None = None,
    ) -> None:
        self.path = Path(directory) / f"{name}.sqlite"
        self.max_items = max_items
        self.max_bytes = max_bytes
        self.retry_after = retry_after
        self.synchronous = synchronous.upper()
        self.on_corrupt = on_corrupt
        self.items = 0
        self.size_bytes = 0
        self.recovered_items = 0
        self._index: collections.OrderedDict[int, tuple[str, int, int]] = collections.OrderedDict()
        self.ready_bytes = 0  # queued and not in flight
        self._ready: collections.deque[int] = collections.deque()
        self._waiters = Waiters()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"spansignals-queue-{name}")
        self._db: sqlite3.Connection | None = None
        self._payloads: dict[int, bytes] = {}  # batches put in this run: never read back
        self._pending_puts: list[tuple[Batch, asyncio.Future[None]]] = []
        self._pending_deletes: list[tuple[int, asyncio.Future[None]]] = []
        self._committer: asyncio.Task[None] | None = None
        self._unwritable_until = 0.0

    # --- lifecycle -------------------------------------------------------------------------------

    async def open(self) -> None:
        """Open (or recover) the database and index what it holds; those batches are sent first."""
        rows = await self._run(self._open_sync)
        for row_id, signal, items, size in rows:
            self._index[row_id] = (signal, items, size)
            self._ready.append(row_id)
            self.items += items
            self.size_bytes += size
            self.ready_bytes += size
        self.recovered_items = self.items
        if rows:
            _logger.warning(
                "spansignals collector: persistent queue %s holds %d batches (%d items) from a previous"
                " run; sending them first",
                self.path,
                len(rows),
                self.items,
            )

    async def close(self) -> None:
        """Close the database (what is still queued stays on disk for the next start)."""
        if self._committer is not None and not self._committer.done():
            await asyncio.wait([self._committer], timeout=10)
        if self._db is not None:
            await self._run(self._db.close)
            self._db = None
        self._executor.shutdown(wait=True)

    # --- queue interface -------------------------------------------------------------------------

    def fits(self, items: int, nbytes: int) -> bool:
        """Also false for ``retry_after`` seconds after a failed write (disk full): receivers then
        refuse before deriving anything, and readiness reports it."""
        if self._unwritable_until and time.monotonic() < self._unwritable_until:
            return False
        if self.items == 0:
            return True
        return self.items + items <= self.max_items and self.size_bytes + nbytes <= self.max_bytes

    def empty(self) -> bool:
        return self.items == 0

    async def put(self, batch: Batch) -> None:
        """Commit ``batch`` durably, then queue it; raises ``QueueFull`` / ``QueueUnavailable``."""
        if not self.fits(batch.items, batch.size):
            raise QueueFull("the collector's export queue is full; retry later", self.retry_after)
        # Reserve before the await so concurrent requests cannot overshoot the bound.
        self.items += batch.items
        self.size_bytes += batch.size
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._pending_puts.append((batch, done))
        self._schedule_commit()
        try:
            await done
        except sqlite3.Error as exc:
            self.items -= batch.items
            self.size_bytes -= batch.size
            self._unwritable_until = time.monotonic() + self.retry_after
            _logger.error(
                "spansignals collector: persistent queue %s cannot store a batch: %s", self.path, exc
            )
            raise QueueUnavailable(
                "the collector cannot store the request durably right now; retry later", self.retry_after
            ) from None
        self._index[batch.id] = (batch.signal, batch.items, batch.size)
        self._payloads[batch.id] = batch.payload
        self._ready.append(batch.id)
        self.ready_bytes += batch.size
        self._waiters.wake_one()

    async def get(self, admit: Admit | None = None) -> Batch:
        """The oldest batch not in flight, once one is ready and ``admit(ready_bytes)`` (if given)
        allows; read back from disk and CRC-checked."""
        while True:
            while not (self._ready and (admit is None or admit(self.ready_bytes))):
                await self._waiters.wait()
            row_id = self._ready.popleft()
            signal, items, size = self._index[row_id]
            self.ready_bytes -= size
            payload = self._payloads.get(row_id)
            if payload is None:  # recovered from a previous run: read back and CRC-checked
                try:
                    payload = await self._run(self._read_sync, row_id)
                except sqlite3.Error as exc:
                    _logger.error("spansignals collector: reading queued batch %d failed: %s", row_id, exc)
                    payload = None
            batch = Batch(signal, payload or b"", items, id=row_id)
            if payload is not None:
                return batch
            await self.ack(batch)
            if self.on_corrupt is not None:
                self.on_corrupt(batch)

    def try_get(self, signal: str, max_bytes: int) -> Batch | None:
        """The next batch without waiting, if it is ready, in memory, of ``signal``, and fits."""
        if not self._ready:
            return None
        row_id = self._ready[0]
        entry_signal, items, size = self._index[row_id]
        payload = self._payloads.get(row_id)
        if entry_signal != signal or size > max_bytes or payload is None:
            return None
        self._ready.popleft()
        self.ready_bytes -= size
        return Batch(signal, payload, items, id=row_id)

    def release(self, batch: Batch) -> None:
        self._ready.appendleft(batch.id)
        entry = self._index.get(batch.id)
        self.ready_bytes += entry[2] if entry is not None else batch.size

    def wake(self) -> None:
        """Have every consumer waiting in :meth:`get` ask its ``admit`` gate again."""
        self._waiters.wake_all()

    async def ack(self, batch: Batch) -> None:
        """Delete the batch (delivered, or dropped and counted); returns once the delete is
        committed, so a crash re-sends at most the batches in flight."""
        await self.ack_many([batch])

    async def ack_many(self, batches: list[Batch]) -> None:
        """Delete several batches in one commit. The in-memory bookkeeping happens before the
        first suspension, so a cancellation cannot leave a delivered batch counted as queued."""
        futures = []
        loop = asyncio.get_running_loop()
        for batch in batches:
            entry = self._index.pop(batch.id, None)
            if entry is None:
                continue
            self._payloads.pop(batch.id, None)
            self.items -= entry[1]
            self.size_bytes -= entry[2]
            done: asyncio.Future[None] = loop.create_future()
            self._pending_deletes.append((batch.id, done))
            futures.append(done)
        if not futures:
            return
        self._schedule_commit()
        try:
            await asyncio.gather(*futures)
        except sqlite3.Error as exc:  # re-sent after a restart: a bounded duplicate
            _logger.error("spansignals collector: deleting delivered batches failed: %s", exc)

    def _schedule_commit(self) -> None:
        if self._committer is None or self._committer.done():
            self._committer = asyncio.get_running_loop().create_task(self._commit_pending())

    async def _commit_pending(self) -> None:
        """Group commit: every put and delete waiting now goes into one transaction (one fsync)."""
        while self._pending_puts or self._pending_deletes:
            puts, self._pending_puts = self._pending_puts, []
            deletes, self._pending_deletes = self._pending_deletes, []
            try:
                ids = await self._run(self._commit_sync, [b for b, _ in puts], [i for i, _ in deletes])
            except sqlite3.Error as exc:
                for _, done in (*puts, *deletes):
                    if not done.done():
                        done.set_exception(exc)
                continue
            for (batch, done), row_id in zip(puts, ids, strict=True):
                batch.id = row_id
                if not done.done():
                    done.set_result(None)
            for _, done in deletes:
                if not done.done():
                    done.set_result(None)

    def take_all(self) -> list[Batch]:
        """Nothing to take: queued batches stay on disk for the next start."""
        return []

    # --- sqlite, on the queue's own thread -------------------------------------------------------

    async def _run(self, fn: Callable[..., _T], *args: object) -> _T:
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    def _connect(self, path: Path) -> sqlite3.Connection:
        db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute(f"PRAGMA synchronous={self.synchronous}")
        db.execute(_SCHEMA)
        return db

    def _open_sync(self) -> list[tuple[int, str, int, int]]:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            db = self._connect(self.path)
            check = db.execute("PRAGMA quick_check").fetchone()
            if check is None or check[0] != "ok":
                db.close()
                raise sqlite3.DatabaseError(f"quick_check: {check[0] if check else 'no answer'}")
            rows = db.execute("SELECT id, signal, items, length(payload) FROM batches ORDER BY id").fetchall()
        except sqlite3.DatabaseError as exc:
            db = self._quarantine_sync(exc)
            rows = db.execute("SELECT id, signal, items, length(payload) FROM batches ORDER BY id").fetchall()
        self._db = db
        return rows

    def _quarantine_sync(self, error: Exception) -> sqlite3.Connection:
        aside = self.path.with_name(f"{self.path.name}.corrupt-{int(time.time())}")
        for suffix in ("", "-wal", "-shm"):
            source = Path(f"{self.path}{suffix}")
            if source.exists():
                os.replace(source, f"{aside}{suffix}")
        salvaged = self._salvage_sync(aside)
        db = self._connect(self.path)
        for signal, items, crc, payload in salvaged:
            db.execute(
                "INSERT INTO batches (signal, items, crc, payload) VALUES (?, ?, ?, ?)",
                (signal, items, crc, payload),
            )
        _logger.error(
            "spansignals collector: persistent queue %s was unreadable (%s); moved aside to %s,"
            " %d batches salvaged into a fresh queue",
            self.path,
            error,
            aside,
            len(salvaged),
        )
        return db

    @staticmethod
    def _salvage_sync(path: Path) -> list[tuple[str, int, int, bytes]]:
        out: list[tuple[str, int, int, bytes]] = []
        try:
            db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        except sqlite3.Error:
            return out
        try:
            ids = [r[0] for r in db.execute("SELECT id FROM batches ORDER BY id")]
        except sqlite3.Error:
            ids = []
        for row_id in ids:
            try:
                row = db.execute(
                    "SELECT signal, items, crc, payload FROM batches WHERE id=?", (row_id,)
                ).fetchone()
            except sqlite3.Error:
                continue
            if row is not None and zlib.crc32(row[3]) == row[2]:
                out.append((row[0], row[1], row[2], bytes(row[3])))
        db.close()
        return out

    def _commit_sync(self, batches: list[Batch], deletes: list[int]) -> list[int]:
        db = self._db
        assert db is not None
        ids = []
        db.execute("BEGIN IMMEDIATE")
        try:
            for batch in batches:
                cursor = db.execute(
                    "INSERT INTO batches (signal, items, crc, payload) VALUES (?, ?, ?, ?)",
                    (batch.signal, batch.items, zlib.crc32(batch.payload), batch.payload),
                )
                ids.append(int(cursor.lastrowid or 0))
            if deletes:
                db.executemany("DELETE FROM batches WHERE id=?", [(i,) for i in deletes])
            db.execute("COMMIT")
        except BaseException:
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise
        return ids

    def _read_sync(self, row_id: int) -> bytes | None:
        assert self._db is not None
        row = self._db.execute("SELECT crc, payload FROM batches WHERE id=?", (row_id,)).fetchone()
        if row is None:
            return None
        payload = bytes(row[1])
        if zlib.crc32(payload) != row[0]:
            _logger.error("spansignals collector: queued batch %d failed its CRC check; dropping it", row_id)
            return None
        return payload
