"""Garbage-collector settings for the collector process (never for an app: ``configure()`` leaves
the app's interpreter alone).

The collector's span path allocates several container objects per span (views, attribute
indexes, upb wrappers, tuples) that reference counting frees as soon as a request is done; almost
none of them end up in reference cycles. With CPython's default thresholds (a young collection
every 700 net allocations) that churn still triggers two or three young collections per 512-span
request, and every full collection walks everything built at startup (the price catalogue, the
config models, grpc and aiohttp): measured with ``gc.callbacks`` during
``benchmarks/collector_throughput.py``, collections took ~19% of the collector's CPU.

:func:`tune_gc`, called once the collector is listening:

- ``gc.freeze()`` moves everything alive after startup to a permanent generation that collections
  no longer traverse (what CPython documents for long-running servers);
- the young-generation threshold goes from 700 to :data:`GEN0_THRESHOLD` net allocations. Cyclic
  garbage still counts towards it, so at most about that many objects of cyclic garbage wait for
  a collection: a bounded few MB, against a one-off cost of one collection per many requests.

``SPANSIGNALS_GC=default`` keeps the interpreter's own settings.
"""

from __future__ import annotations

import gc
import logging
import os

__all__ = ["GEN0_THRESHOLD", "tune_gc"]

_logger = logging.getLogger(__name__)

GEN0_THRESHOLD = 50_000
"""Net allocations of container objects between young-generation collections."""


def tune_gc() -> bool:
    """Freeze what startup built and raise the young-generation threshold; returns False (and
    changes nothing) when ``SPANSIGNALS_GC=default``."""
    if os.environ.get("SPANSIGNALS_GC", "").strip().lower() == "default":
        return False
    gc.collect()
    gc.freeze()
    _, gen1, gen2 = gc.get_threshold()
    gc.set_threshold(GEN0_THRESHOLD, gen1, gen2)
    _logger.debug("gc: %d startup objects frozen, thresholds %s", gc.get_freeze_count(), gc.get_threshold())
    return True
