"""How a ``fora`` process runs: its garbage collector's settings.

A node keeps many long-lived objects (its code, the reconciliation items of each
community it holds, cached pages) and makes many short-lived ones per message stored
(decoded bodies, rows, verdicts). With CPython's default thresholds a full collection,
which walks every long-lived object, comes every few thousand messages during a large
sync: ``scripts/bench_sync`` measured 10–18 µs per message spent in the collector, most
of it in full collections. :func:`tune_gc` moves what the process holds at start-up out
of the collector's sight (``gc.freeze``) and collects the youngest generation every
50,000 net allocations instead of 700, which makes full collections rare. Reference
counting frees almost everything as before; only garbage in reference cycles waits
longer (a few megabytes at most).
"""

from __future__ import annotations

import gc

__all__ = ["GC_THRESHOLDS", "tune_gc"]

#: (generation 0, 1, 2) thresholds of a fora process (CPython's defaults: 700, 10, 10).
GC_THRESHOLDS = (50_000, 20, 100)


def tune_gc() -> None:
    """Set this process's collector for a long-running node (idempotent)."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)
