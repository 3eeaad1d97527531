"""Memory for the CPU kernels: reused scratch buffers, and result arrays recycled once unreferenced.

Why: on small virtual machines a freshly mapped page costs a fault when first written, and the C
allocator hands large blocks straight back to the system when they are freed (and maps them anew
on the next request). A 12 MB result made and dropped every training step then costs ~3000 page
faults a step, measured to make a whole convolution 1.5x slower.

* ``work(name, shape, dtype)``: a scratch array owned by the calling thread, overwritten by the
  next call with the same name. Never handed to a caller.
* ``empty(shape, dtype)``: an uninitialised array for a result. A large one comes from a small
  per-thread pool of arrays this module handed out before and that nobody references any more
  (their reference count shows only the pool's own reference), so the caller owns the array
  exactly as if it were new: nothing else can see or change it.
"""
import sys
import threading

import numpy as np

# Results smaller than this come from np.empty (the C allocator reuses small blocks itself).
MIN_RECYCLE_BYTES = 1 << 20
# Arrays kept per (shape, dtype); beyond that, extra ones are left to the garbage collector.
KEEP_PER_SHAPE = 4

_local = threading.local()


def _size(shape):
    n = 1
    for s in shape:
        n *= int(s)
    return n


def work(name, shape, dtype):
    """A scratch array of this shape, owned by the calling thread and reused by later calls.

    Contents are undefined; the next call with the same ``name`` overwrites it.
    """
    bufs = getattr(_local, "work", None)
    if bufs is None:
        bufs = _local.work = {}
    dtype = np.dtype(dtype)
    size = _size(shape)
    buf = bufs.get((name, dtype))
    if buf is None or buf.size < size:
        buf = np.empty(max(size, 1), dtype)
        bufs[(name, dtype)] = buf
    return buf[:size].reshape(shape)


def _refs_when_free():
    """sys.getrefcount of a pooled array that nobody else holds, as seen from _take_free."""
    probe = [np.empty(1)]
    return _count_in_pool(probe, 0)


def _count_in_pool(pool, i):
    return sys.getrefcount(pool[i])


def _recycling_possible():
    # Reference counts are exact only with the GIL (free-threaded builds defer them).
    is_gil_enabled = getattr(sys, "_is_gil_enabled", None)
    return is_gil_enabled is None or is_gil_enabled()


_FREE_REFS = _refs_when_free()
_RECYCLE = _recycling_possible()


def empty(shape, dtype):
    """An uninitialised array for a result, owned by the caller (see the module notes)."""
    dtype = np.dtype(dtype)
    shape = tuple(int(s) for s in shape)
    if not _RECYCLE or _size(shape) * dtype.itemsize < MIN_RECYCLE_BYTES:
        return np.empty(shape, dtype)
    pools = getattr(_local, "results", None)
    if pools is None:
        pools = _local.results = {}
    pool = pools.setdefault((shape, dtype), [])
    for i in range(len(pool)):
        if _count_in_pool(pool, i) == _FREE_REFS:
            return pool[i]
    out = np.empty(shape, dtype)
    if len(pool) >= KEEP_PER_SHAPE:
        pool.pop(0)
    pool.append(out)
    return out


def empty_like(a):
    return empty(a.shape, a.dtype)


def clear():
    """Drop this thread's scratch buffers and pooled result arrays (re-made when next needed)."""
    _local.work = {}
    _local.results = {}
