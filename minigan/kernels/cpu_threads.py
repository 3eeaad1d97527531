"""Run a numba kernel over a range of independent tasks on all cores, with plain Python threads.

Why not numba's ``parallel=True``: its default OpenMP layer keeps idle workers spinning for a
while after each parallel loop. Our kernels run between multi-threaded BLAS calls, so those
spinning workers take cores from the next GEMM, and on a machine whose cores other processes also
use, a parallel loop waits for a scheduler time slice (~16-20 ms measured for a 0.5 ms loop).
Threads from a ``ThreadPoolExecutor`` sleep on a lock between calls instead, and numba kernels
compiled with ``nogil=True`` run truly in parallel in them.

A kernel used here takes ``(..., t0, t1)`` as its last two arguments and does tasks t0 <= t < t1;
tasks must write disjoint outputs.
"""
import ctypes
import os
import threading
from concurrent.futures import ThreadPoolExecutor

import numba
import numpy as np

# Below this many array elements touched, a call runs on the calling thread only: handing work
# to another thread and waiting for it costs two cross-thread wake-ups (~70 us each inside a
# DCGAN iteration on these virtual machines, where the woken thread also waits for the GIL).
MIN_PARALLEL_ELEMENTS = 1 << 16

_pool = None
_pool_workers = 0
_pool_lock = threading.Lock()


def num_threads():
    """Cores this process may use (its CPU affinity), at least 1."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


def _get_pool(workers):
    global _pool, _pool_workers
    with _pool_lock:
        if _pool is None or _pool_workers < workers:
            # A smaller old pool is left to finish its queue; its idle threads just sleep.
            _pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="minigan-cpu")
            _pool_workers = workers
        return _pool


def _forget_pool_after_fork():
    # A forked child has none of the parent's threads; make it start its own pool.
    global _pool, _pool_workers, _pool_lock
    _pool = None
    _pool_workers = 0
    _pool_lock = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_pool_after_fork)


def run_tasks(kernel, ntasks, elements, *args, scale=1, max_parts=None):
    """kernel(*args, t0, t1) over tasks [0, ntasks), split in equal contiguous parts over the
    cores (at most ``max_parts`` of them) when the call touches at least
    ``scale * MIN_PARALLEL_ELEMENTS`` array elements (scale > 1 for kernels doing so little per
    element that splitting pays only on larger arrays). Returns the parts' return values, in
    task order.

    A kernel run here must not call run_tasks itself: the pool's threads would wait on each
    other."""
    parts = min(num_threads(), ntasks, max_parts or ntasks)
    if parts <= 1 or elements < scale * MIN_PARALLEL_ELEMENTS:
        return [kernel(*args, 0, ntasks)]
    bounds = [ntasks * p // parts for p in range(parts + 1)]
    pool = _get_pool(parts - 1)
    futures = [pool.submit(kernel, *args, bounds[p], bounds[p + 1]) for p in range(1, parts)]
    try:
        first = kernel(*args, bounds[0], bounds[1])
    finally:
        rest = [f.result() for f in futures]
    return [first] + rest


# --- several phases on the same threads -------------------------------------------------------
# A call of run_tasks hands its parts to the pool and waits for them; the threads, asleep between
# calls, take ~70 us each way to start and to report back on these virtual machines. A kernel
# made of phases that each need all of the one before (Winograd's weights, then its images) runs
# them with run_phases instead: the threads wait for each other between phases awake, at a
# barrier in numba code that holds no GIL (benchmarks/RESULTS.md, issue 16).

PHASES_TOGETHER = True

_sched_yield = ctypes.CDLL(None).sched_yield
_sched_yield.restype = ctypes.c_int
_sched_yield.argtypes = []


# (not cached on disk: numba cannot cache a function that calls through a ctypes pointer; it
# compiles in ~0.1 s on first use)
@numba.njit(nogil=True)
def _barrier(done, p, phase):
    """Thread p has finished ``phase``: say so in done[p], then wait, yielding the core, until
    every thread has (True) or one has failed (done[q] = -1: False). The call into the C
    library also makes LLVM load done[q] afresh on every look."""
    done[p] = phase
    while True:
        ready = True
        for q in range(done.shape[0]):
            if done[q] < 0:
                return False
            if done[q] < phase:
                ready = False
        if ready:
            return True
        _sched_yield()


class _PeerFailed(RuntimeError):
    """Raised in a thread of run_phases whose partner failed (the partner's error is raised)."""


def run_phases(phases, max_parts=None):
    """Each phase (kernel, ntasks, args) as ``run_tasks(kernel, ntasks, ..., *args)`` would run
    it, in order, all split over the same threads (at most ``max_parts``), which meet at a
    barrier after each phase. Returns each phase's parts' return values."""
    if not PHASES_TOGETHER:   # each phase a run_tasks call of its own (for A/B timings)
        return [run_tasks(kernel, n, MIN_PARALLEL_ELEMENTS, *args, max_parts=max_parts)
                for kernel, n, args in phases]
    parts = min([num_threads(), max_parts or num_threads()] + [n for _, n, _ in phases])
    if parts <= 1:
        return [[kernel(*args, 0, n)] for kernel, n, args in phases]
    done = np.zeros(parts, np.int64)

    def thread(p):
        try:
            out = []
            for phase, (kernel, n, args) in enumerate(phases, 1):
                out.append(kernel(*args, n * p // parts, n * (p + 1) // parts))
                if phase < len(phases) and not _barrier(done, p, phase):
                    raise _PeerFailed("another thread of this call failed")
            return out
        except BaseException:
            done[p] = -1
            raise

    pool = _get_pool(parts - 1)
    futures = [pool.submit(thread, p) for p in range(1, parts)]
    results, errors = [], []
    for get in [lambda: thread(0)] + [f.result for f in futures]:
        try:
            results.append(get())
        except BaseException as e:
            errors.append(e)
    if errors:
        raise next((e for e in errors if not isinstance(e, _PeerFailed)), errors[0])
    return [[r[i] for r in results] for i in range(len(phases))]
