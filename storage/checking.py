"""Where message checks run: worker processes, so checking uses every core.

Checking a message is pure CPU (decode, canonical form, Ed25519, schema). In threads
it does not scale here: libsodium releases the GIL, but decoding holds it, and the
two convoy. Worker processes check a chunk each and send back their verdicts; the
writer stores the messages. The node checks a small batch (or everything, on one core)
on a thread instead (``node.syncer.Ingestor``).
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import select
import threading
import time
from collections.abc import Sequence
from concurrent.futures import Executor, ProcessPoolExecutor

__all__ = [
    "BACKGROUND_NICENESS",
    "default_workers",
    "lower_priority",
    "make_check_pool",
]


def default_workers() -> int:
    return max(1, min(8, os.cpu_count() or 1))


#: In each worker, set by :func:`_start_worker`: the barrier :func:`_ready` waits at.
_warm_up: dict[str, threading.Barrier] = {}

#: How long a starting pool waits for all its workers.
START_TIMEOUT = 120.0


def _ready(_: int) -> None:
    """Wait until every worker of the pool holds one of these calls: only then may any
    of them finish (see :func:`make_check_pool`)."""
    barrier = _warm_up.pop("barrier", None)  # once: a later call never waits
    if barrier is not None:
        barrier.wait(START_TIMEOUT)


#: How much lower than the node's the priority of its background work is (``nice``):
#: the check workers and the checkpoint thread. The writer thread, the one stage of an
#: ingest that cannot run in parallel, and the event loop that serves pages come first;
#: the background takes what CPU is left.
BACKGROUND_NICENESS = 10


def lower_priority() -> None:
    """Lower the calling thread's priority by :data:`BACKGROUND_NICENESS` (Linux keeps
    a priority per thread; threads it starts later inherit it). Where that is not
    allowed or not supported, it runs at the node's priority."""
    with contextlib.suppress(AttributeError, OSError):
        me = threading.get_native_id()
        now = os.getpriority(os.PRIO_PROCESS, me)
        os.setpriority(os.PRIO_PROCESS, me, min(19, now + BACKGROUND_NICENESS))


def _exit_with(parent: int) -> None:
    """End this worker when ``parent`` (the process that made the pool) ends.

    A worker's parent is the fork server, not the node; and each worker holds the
    write end of the pipes it waits on (the fork server's liveness pipe among them), so
    when the node is killed (``kill -9``) neither the workers nor the fork server see
    it: they would wait forever. So each worker watches the node itself."""
    try:
        handle = os.pidfd_open(parent)
    except (AttributeError, OSError):
        handle = None
    if handle is not None:
        select.select([handle], [], [])  # readable once the process has ended
        os._exit(0)
    while True:  # no pidfd here: look every second
        time.sleep(1.0)
        try:
            os.kill(parent, 0)
        except ProcessLookupError:
            os._exit(0)
        except PermissionError:  # alive, and ours no longer to signal: keep going
            pass


def _start_worker(parent: int, started: threading.Barrier) -> None:
    _warm_up["barrier"] = started
    lower_priority()
    threading.Thread(target=_exit_with, args=(parent,), name="watch-node", daemon=True).start()


#: Imported once by the fork server, so each worker forked from it starts with the
#: checking code loaded instead of importing it (a quarter of a second of CPU each).
PRELOAD = ("storage.messages",)


def make_check_pool(workers: int | None = None, preload: Sequence[str] = PRELOAD) -> Executor:
    """A process pool for :func:`storage.messages.check_all` (``forkserver``: safe to
    start from a process that already runs threads, such as the node).

    The workers are started here, before the pool is returned, so that submitting
    work later never spawns a process (a node calls this off its event loop; spawning
    there blocks it). ``ProcessPoolExecutor`` spawns a worker on ``submit`` only when
    none is idle: if the first warm-up call finished before the second was submitted,
    the pool would keep one worker and spawn the next one later, under load, on the
    loop. So the warm-up calls wait at a barrier of ``n`` parties: none finishes until
    ``n`` distinct workers each hold one.
    ``preload`` names modules the fork server imports before forking workers; it
    takes effect when this process starts its fork server (its first pool). Name the
    modules the main script imports too: multiprocessing re-imports a ``__main__``
    given by path in each worker, which is then cheap.
    """
    n = default_workers() if workers is None else workers
    if n <= 0:
        raise ValueError(f"a check pool needs a worker at least, not {n}")
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(list(preload))
    started = context.Barrier(n)
    pool = ProcessPoolExecutor(
        max_workers=n,
        mp_context=context,
        initializer=_start_worker,
        initargs=(os.getpid(), started),
    )
    try:
        list(pool.map(_ready, range(n)))  # a worker that does not start breaks the barrier
    except BaseException:
        pool.shutdown(wait=True, cancel_futures=True)
        raise
    return pool
