"""Ranks as threads of one process: a communicator for tests that need no MPI.

:func:`run_ranks` runs ``fn(comm)`` in ``size`` threads, each with its own
:class:`ThreadComm`; their collectives meet at a barrier. One thread computes at a time (they
take turns at the collectives): autograd's grad mode is one global flag, so each thread's mode
is put back when its turn comes, as a task switch restores registers. Reductions add the ranks' arrays in
rank order, so every rank gets the very same bits, as an MPI allreduce does. Everything above
the five primitives (allreduce_grad, bcast_data, allreduce_obj...) is MpiCommunicator's own code.
"""
import copy
import threading

import numpy as np

from minigan import autograd, backend
from minigan.distributed import MpiCommunicator

TIMEOUT_S = 120   # a rank that never arrives fails the test instead of hanging it


class _Shared:
    def __init__(self, size):
        self.size = size
        self.barrier = threading.Barrier(size, timeout=TIMEOUT_S)
        self.turn = threading.Lock()
        self.slots = [None] * size


class ThreadComm(MpiCommunicator):
    def __init__(self, shared, rank):   # no MPI: the primitives below replace it
        self.shared, self.rank, self.size = shared, rank, shared.size
        self.local_rank, self.local_size = rank, shared.size
        self.calls = 0

    def _exchange(self, value):
        """Every rank's ``value``, in rank order, on every rank."""
        self.calls += 1
        grad_mode = autograd._grad_enabled
        self.shared.slots[self.rank] = value
        self.shared.turn.release()
        try:
            self.shared.barrier.wait()
            values = list(self.shared.slots)
            self.shared.barrier.wait()   # nobody overwrites a slot before all have read them
        finally:
            self.shared.turn.acquire()
            autograd._grad_enabled = grad_mode
        return values

    def allreduce(self, array, op="sum"):
        values = [backend.as_numpy(v).astype(np.asarray(array).dtype)
                  for v in self._exchange(np.array(backend.as_numpy(array)))]
        if op in ("sum", "mean"):
            out = values[0].copy()
            for v in values[1:]:
                out += v
            if op == "mean":
                out /= out.dtype.type(self.size)
        else:
            out = (np.maximum if op == "max" else np.minimum).reduce(values)
        return backend.to_device(out, backend.device_of(array))

    def bcast(self, array, root=0):
        return np.array(self._exchange(np.array(backend.as_numpy(array)))[root])

    def bcast_obj(self, obj, root=0):
        return copy.deepcopy(self._exchange(obj)[root])

    def gather_obj(self, obj, root=0):
        values = copy.deepcopy(self._exchange(obj))
        return values if self.rank == root else None

    def allgather_obj(self, obj):
        return copy.deepcopy(self._exchange(obj))

    def barrier(self):
        self._exchange(None)

    def abort(self, errorcode=1, message=None):
        raise RuntimeError(f"rank {self.rank} aborted ({errorcode}): {message}")


def run_ranks(size, fn):
    """[fn(comm_0), ..., fn(comm_{size-1})], each run in its own thread; the first exception
    (by rank) is raised again here."""
    shared = _Shared(size)
    results, errors = [None] * size, [None] * size

    grad_mode = autograd._grad_enabled

    def body(rank):
        shared.turn.acquire()
        autograd._grad_enabled = grad_mode
        try:
            results[rank] = fn(ThreadComm(shared, rank))
        except BaseException as e:   # noqa: BLE001 - handed to the test's thread
            errors[rank] = e
            shared.barrier.abort()   # the others would wait for this rank forever
        finally:
            autograd._grad_enabled = grad_mode
            shared.turn.release()

    threads = [threading.Thread(target=body, args=(r,)) for r in range(size)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for e in errors:
        if e is not None and not isinstance(e, threading.BrokenBarrierError):
            raise e
    for e in errors:
        if e is not None:
            raise e
    return results
