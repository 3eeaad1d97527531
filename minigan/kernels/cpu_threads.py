"""Run a numba kernel over a range of independent tasks on all cores, with plain Python threads.

Why not numba's ``parallel=True``: its default OpenMP layer keeps idle workers spinning for a
while after each parallel loop. Our kernels run between multi-threaded BLAS calls, so those
spinning workers take cores from the next GEMM, and on a machine whose cores other processes also
use, a parallel loop waits for a scheduler time slice (~16-20 ms measured for a 0.5 ms loop).
minigan's own pool threads instead wait for the next call only briefly awake (SPIN_SECONDS,
yielding the core to anything else that wants it), then asleep on a lock; numba kernels compiled
with ``nogil=True`` run truly in parallel in them.

A kernel used here takes ``(..., t0, t1)`` as its last two arguments and does tasks t0 <= t < t1;
tasks must write disjoint outputs.
"""
import ctypes
import os
import threading
import time

import numba
import numpy as np

# Below this many array elements touched, a call runs on the calling thread only: handing work
# to another thread and waiting for it costs 30-100 us on these virtual machines.
MIN_PARALLEL_ELEMENTS = 1 << 16

_sched_yield = ctypes.CDLL(None).sched_yield
_sched_yield.restype = ctypes.c_int
_sched_yield.argtypes = []


# --- the pool -----------------------------------------------------------------------------------
# Why its threads wait awake first, and why without the GIL: a thread asleep on a lock takes
# ~70 us to run again once woken on these virtual machines (its virtual core was halted), so a
# call whose parts are handed out and collected through locks pays that twice. A pool thread
# therefore first watches its flags in numba code that holds no GIL, as does the caller waiting
# for the parts; and each side raises its flag only from inside such code, once it has let go of
# the GIL, so that the other can take the GIL at once instead of sleeping on it
# (benchmarks/RESULTS.md, issue 16). A pool thread that sees no call for SPIN_SECONDS sleeps.
SPIN_SECONDS = 2e-3


# (not cached on disk: numba cannot cache a function that calls through a ctypes pointer; it
# compiles in ~0.1 s on first use)
@numba.njit(nogil=True)
def _await(flags, i, value, looks):
    """Wait, yielding the core between looks, until flags[i] == value (True) or ``looks`` looks
    have not seen it (False). The call into the C library also makes LLVM load flags[i] afresh
    on every look."""
    for _ in range(looks):
        if flags[i] == value:
            return True
        _sched_yield()
    return flags[i] == value


@numba.njit(nogil=True)
def _raise_and_await(flags, i, value, j, want, looks):
    """flags[i] = value, then :func:`_await` (flags, j, want, looks): the flag goes up only once
    the calling thread has let go of the GIL."""
    flags[i] = value
    return _await(flags, j, want, looks)


_look_seconds = None


def _spin_looks():
    """How many looks of :func:`_await` take about SPIN_SECONDS here (a look's time is measured
    once)."""
    global _look_seconds
    if _look_seconds is None:
        flags = np.zeros(1, np.int64)
        _await(flags, 0, 1, 10)    # compile
        start = time.perf_counter()
        _await(flags, 0, 1, 2000)
        _look_seconds = max((time.perf_counter() - start) / 2000, 1e-8)
    return max(1, int(SPIN_SECONDS / _look_seconds))


class _Worker:
    """One pool thread. flags[0] is the number of the last call handed to it, flags[1] that of
    the last it has finished; the call itself and its outcome pass through attributes, written
    before the flag that announces them goes up."""

    def __init__(self, index):
        self.flags = np.zeros(2, np.int64)
        self.call = None
        self.outcome = None
        self.asleep = False
        self.wake = threading.Condition()
        self.thread = threading.Thread(target=self._loop, name=f"minigan-cpu-{index}",
                                       daemon=True)
        self.thread.start()

    def _loop(self):
        number = 1
        came = _await(self.flags, 0, number, _spin_looks())
        while True:
            if not came:
                with self.wake:
                    self.asleep = True
                    while self.flags[0] != number:
                        self.wake.wait()
                    self.asleep = False
            kernel, args = self.call
            self.call = None
            try:
                self.outcome = (True, kernel(*args))
            except BaseException as e:   # handed to the caller (_split)
                self.outcome = (False, e)
            came = _raise_and_await(self.flags, 1, number, 0, number + 1, _spin_looks())
            number += 1

    def submit(self, kernel, *args):
        """Start kernel(*args) on this thread; returns the number to pass to :meth:`outcome_of`."""
        while self.flags[1] != self.flags[0]:   # a call whose caller was interrupted
            time.sleep(1e-4)
        number = int(self.flags[0]) + 1
        self.call = (kernel, args)
        self.flags[0] = number
        if self.asleep:
            with self.wake:
                self.wake.notify()
        return number

    def outcome_of(self, number):
        """Wait for call ``number``; its outcome, (True, value) or (False, error)."""
        while not _await(self.flags, 1, number, _spin_looks()):
            time.sleep(1e-4)   # a long part: look less often
        outcome, self.outcome = self.outcome, None
        return outcome


_workers = []
_pool_lock = threading.Lock()   # creating workers
_busy = threading.Lock()        # one call's parts at a time on the pool


def num_threads():
    """Cores this process may use (its CPU affinity), at least 1."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


def _get_workers(n):
    with _pool_lock:
        while len(_workers) < n:
            _workers.append(_Worker(len(_workers)))
        return _workers[:n]


def _forget_pool_after_fork():
    # A forked child has none of the parent's threads; make it start its own pool.
    global _workers, _pool_lock, _busy
    _workers = []
    _pool_lock = threading.Lock()
    _busy = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_pool_after_fork)


def _outcome(fn, *args):
    try:
        return True, fn(*args)
    except BaseException as e:
        return False, e


def _split(calls):
    """calls[0] (fn, args) on the calling thread, the others on the pool's threads; once every
    one has ended, their outcomes in order, each (True, value) or (False, error). None, having run
    nothing, while another call holds the pool."""
    if not _busy.acquire(blocking=False):
        return None
    try:
        workers = _get_workers(len(calls) - 1)
        numbers = [w.submit(fn, *args) for w, (fn, args) in zip(workers, calls[1:])]
        return ([_outcome(calls[0][0], *calls[0][1])]
                + [w.outcome_of(number) for w, number in zip(workers, numbers)])
    finally:
        _busy.release()


def run_tasks(kernel, ntasks, elements, *args, scale=1, max_parts=None):
    """kernel(*args, t0, t1) over tasks [0, ntasks), split in equal contiguous parts over the
    cores (at most ``max_parts`` of them) when the call touches at least
    ``scale * MIN_PARALLEL_ELEMENTS`` array elements (scale > 1 for kernels doing so little per
    element that splitting pays only on larger arrays). Returns the parts' return values, in
    task order.

    While another call holds the pool (another thread of the program, or a kernel run here that
    calls run_tasks itself), the parts run one after another on the calling thread."""
    parts = min(num_threads(), ntasks, max_parts or ntasks)
    if parts <= 1 or elements < scale * MIN_PARALLEL_ELEMENTS:
        return [kernel(*args, 0, ntasks)]
    bounds = [ntasks * p // parts for p in range(parts + 1)]
    outcomes = _split([(kernel, args + (bounds[p], bounds[p + 1])) for p in range(parts)])
    if outcomes is None:
        return [kernel(*args, bounds[p], bounds[p + 1]) for p in range(parts)]
    for ok, value in outcomes:
        if not ok:
            raise value
    return [value for _, value in outcomes]


# --- several phases on the same threads -------------------------------------------------------
# A kernel made of phases that each need all of the one before (Winograd's weights, then its
# images) runs them with run_phases: one hand-off to the pool for all of them, the threads
# meeting at a barrier in numba code that holds no GIL after each phase (benchmarks/RESULTS.md,
# issue 16).

PHASES_TOGETHER = True


# (not cached on disk, as _await)
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

    outcomes = _split([(thread, (p,)) for p in range(parts)])
    if outcomes is None:   # the pool is taken: the phases in turn, here
        return [[kernel(*args, 0, n)] for kernel, n, args in phases]
    errors = [value for ok, value in outcomes if not ok]
    if errors:
        raise next((e for e in errors if not isinstance(e, _PeerFailed)), errors[0])
    return [[value[i] for _, value in outcomes] for i in range(len(phases))]
