"""Rolling event windows for SLOs in bounded memory: two time-bucketed rings per SLO.

Each ring holds ``(total, bad)`` weighted event counts per fixed-width time bucket, indexed by
``bucket number % size``; a slot is reused (zeroed) when a newer bucket claims it, so memory is
fixed at construction and does not grow with traffic.

- The **fine** ring has 10 s buckets and covers the longest window up to 6 h (5m, 30m, 1h, 2h, 6h
  by default: 2,160 buckets).
- The **coarse** ring has 5 min buckets and covers the period (30 d: 8,640 buckets); it serves
  the windows longer than 6 h (1d, 3d, the period). Periods over 30 d use wider buckets
  (period / 8,640, rounded up to a whole minute).

Resolution: a window of length ``W`` evaluated at ``now`` sums the bucket containing ``now`` and
the ``W / width - 1`` buckets before it, i.e. the events with time in
``[(floor(now / width) + 1) * width - W, now]``. It therefore covers between ``W - width`` and
``W`` of history: at most one bucket (10 s or 5 min) short at its old edge. ``W`` is rounded up
to a whole number of buckets. About 170 KB per SLO at the defaults (two arrays of doubles per
ring).
"""

from __future__ import annotations

import math
import threading
from array import array
from collections.abc import Sequence

__all__ = ["FINE_MAX_WINDOW_S", "FINE_WIDTH_S", "BucketRing", "SloWindows", "window_label"]

FINE_WIDTH_S = 10.0
FINE_MAX_WINDOW_S = 6 * 3600.0
COARSE_WIDTH_S = 300.0
_COARSE_MAX_BUCKETS = 8640


def window_label(seconds: float) -> str:
    """``300`` → ``5m``, ``86400`` → ``1d`` (the ``window`` label and Prometheus range syntax)."""
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{max(1, round(seconds * 1000))}ms"


class BucketRing:
    """Weighted ``(total, bad)`` sums per time bucket over a fixed horizon. Not locked: the owner
    (:class:`SloWindows`) serializes access.

    Invariant: slot ``k % size`` holds bucket ``k`` for every ``k`` in ``(newest - size, newest]``
    (slots are zeroed as ``newest`` advances), so a window's sum is one or two array slices.
    """

    __slots__ = ("bad", "newest", "size", "total", "width")

    def __init__(self, width: float, size: int) -> None:
        if width <= 0 or size < 1:
            raise ValueError(f"bucket ring needs width > 0 and size >= 1, got {width}, {size}")
        self.width = width
        self.size = size
        self.newest: int | None = None
        self.total = array("d", [0.0]) * size
        self.bad = array("d", [0.0]) * size

    def add(self, t: float, total: float, bad: float) -> bool:
        """Count events at time ``t``; False when ``t`` is older than what the ring still holds."""
        bucket = int(t // self.width)
        newest = self.newest
        if newest is None or bucket > newest:
            self._advance(bucket)
        elif bucket <= newest - self.size:
            return False
        slot = bucket % self.size
        self.total[slot] += total
        self.bad[slot] += bad
        return True

    def _advance(self, bucket: int) -> None:
        """Make ``bucket`` the newest, zeroing the slots of the buckets it skips over."""
        newest, size = self.newest, self.size
        if newest is None or bucket - newest >= size:
            self.total = array("d", [0.0]) * size
            self.bad = array("d", [0.0]) * size
        else:
            total, bad = self.total, self.bad
            for k in range(newest + 1, bucket + 1):
                slot = k % size
                total[slot] = 0.0
                bad[slot] = 0.0
        self.newest = bucket

    def copy(self) -> BucketRing:
        """A snapshot (for evaluating outside the owner's lock)."""
        other = BucketRing.__new__(BucketRing)
        other.width, other.size, other.newest = self.width, self.size, self.newest
        other.total, other.bad = array("d", self.total), array("d", self.bad)
        return other

    def _slice_sum(self, values: array, lo: int, hi: int) -> float:
        a, b = lo % self.size, hi % self.size
        if a <= b:
            return sum(values[a : b + 1])
        return sum(values[a:]) + sum(values[: b + 1])

    def sums(self, now: float, windows: Sequence[float]) -> dict[float, tuple[float, float]]:
        """``{window: (total, bad)}`` for windows (seconds, each <= the horizon) ending at ``now``."""
        current = int(now // self.width)
        out: dict[float, tuple[float, float]] = {}
        for window in windows:
            count = max(1, math.ceil(window / self.width - 1e-9))
            if self.newest is None:
                out[window] = (0.0, 0.0)
                continue
            lo = max(current - count + 1, self.newest - self.size + 1)
            hi = min(current, self.newest)
            if lo > hi:
                out[window] = (0.0, 0.0)
            else:
                out[window] = (self._slice_sum(self.total, lo, hi), self._slice_sum(self.bad, lo, hi))
        return out


class SloWindows:
    """The fine and coarse rings of one SLO, thread-safe.

    ``windows`` are the window lengths to evaluate (seconds); ``period`` the longest.
    """

    def __init__(self, windows: Sequence[float], period: float) -> None:
        self.windows = tuple(sorted(set(windows) | {period}))
        self.period = period
        fine = [w for w in self.windows if w <= FINE_MAX_WINDOW_S]
        coarse = [w for w in self.windows if w > FINE_MAX_WINDOW_S]
        self._fine_windows = tuple(fine)
        self._coarse_windows = tuple(coarse)
        self._fine = BucketRing(FINE_WIDTH_S, math.ceil(max(fine) / FINE_WIDTH_S)) if fine else None
        coarse_width = COARSE_WIDTH_S
        if coarse and max(coarse) / coarse_width > _COARSE_MAX_BUCKETS:
            coarse_width = math.ceil(max(coarse) / _COARSE_MAX_BUCKETS / 60) * 60.0
        self._coarse = BucketRing(coarse_width, math.ceil(max(coarse) / coarse_width)) if coarse else None
        self._rings = tuple(r for r in (self._fine, self._coarse) if r is not None)
        self._pending: list[float] = [-1, 0.0, 0.0]  # 10 s bucket number, total, bad
        self._lock = threading.Lock()

    def resolution(self, window: float) -> float:
        """Bucket width (seconds) used for ``window``."""
        ring = self._fine if window <= FINE_MAX_WINDOW_S else self._coarse
        return ring.width if ring is not None else 0.0

    def add(self, t: float, total: float, bad: float) -> None:
        """Count ``total`` events of which ``bad`` are bad, at time ``t`` (epoch seconds).

        The 10 s bucket being filled is kept aside (``_pending``: two float additions per event)
        and written into both rings when a later bucket starts or a reader asks; coarse widths are
        multiples of 10 s, so this changes no sum. Late events go straight into the rings.
        """
        bucket = int(t // FINE_WIDTH_S)
        with self._lock:
            pending = self._pending
            if bucket == pending[0]:
                pending[1] += total
                pending[2] += bad
            elif bucket > pending[0]:
                self._flush()
                self._pending = [bucket, total, bad]
            else:
                for ring in self._rings:
                    ring.add(t, total, bad)

    def _flush(self) -> None:
        """Write the pending bucket into the rings and zero it. Caller holds the lock."""
        bucket, total, bad = self._pending
        if bucket >= 0 and (total or bad):
            start = bucket * FINE_WIDTH_S
            for ring in self._rings:
                ring.add(start, total, bad)
        self._pending = [bucket, 0.0, 0.0]

    def sums(self, now: float) -> dict[float, tuple[float, float]]:
        """``{window: (total, bad)}`` for every window, ending at ``now``."""
        with self._lock:
            self._flush()
            fine = self._fine.copy() if self._fine is not None else None
            coarse = self._coarse.copy() if self._coarse is not None else None
        out: dict[float, tuple[float, float]] = {}
        if fine is not None:
            out.update(fine.sums(now, self._fine_windows))
        if coarse is not None:
            out.update(coarse.sums(now, self._coarse_windows))
        return out
