"""Matrix products for the CPU kernels: NumPy's BLAS, with the cores shared out by minigan's own
threads (cpu_threads: awake 2 ms after a call, then asleep) instead of by OpenBLAS's (which spin
for ~0.1 s).

Why: after a multi-threaded product OpenBLAS keeps its worker threads busy-waiting for the next
one (for about 0.1 s) instead of sleeping. The gather and scatter passes that run between a
convolution's products (im2col, col2im, layout copies) share the same cores through
cpu_threads, and a spinning BLAS worker takes a core from them. Measured on the 2-core machine,
the DCGAN's 64->128 convolution, forward + backward, took 22.5-23.5 ms like that and
19.3-21.2 ms when OpenBLAS's workers were told to sleep at once (the variable
OPENBLAS_THREAD_TIMEOUT=4, which a library must not set for its user).

So while our kernels run products, OpenBLAS is asked to stay on the calling thread
(:func:`blas_on_calling_threads`), and the cores are shared out by cpu_threads' pool, whose
threads can all call the BLAS at once (NumPy releases the GIL inside it): the convolutions
(cpu_conv) give each core its own images, and :func:`matmul` cuts one large product into one
slab per core (rows of the result, or columns when it is wider than tall). The user's thread
setting is restored as soon as the kernel is done, so NumPy code outside the kernels is
untouched. Two single-threaded slabs ran the DCGAN's conv products at 146-173 GFLOP/s, against
162-164 for one two-threaded OpenBLAS call.

The BLAS libraries and their thread controls are found by threadpoolctl (what scikit-learn
uses), so MKL, BLIS and FlexiBLAS builds of NumPy are covered as well as its own OpenBLAS. Where
none can be controlled, every product goes to np.matmul unchanged (and that BLAS shares out the
cores itself).
"""
import contextlib
import os
import threading

import numpy as np

from . import cpu_threads

# Products of fewer multiply-adds than this run on the calling thread alone: handing a slab to
# another thread costs ~40 us here, what ~4M multiply-adds take on one core.
MIN_SPLIT_MACS = 1 << 22


def _blas_controllers():
    """threadpoolctl's controllers of the BLAS libraries loaded now (NumPy's is: importing NumPy
    loads it), each able to get and set its thread count: OpenBLAS, MKL, BLIS or FlexiBLAS,
    wherever the library lives (pip wheels, conda, a system BLAS). Found once; a call through
    one costs ~2 us, against ~90 us for threadpoolctl's ``limit`` context and ~27 ms for
    ``threadpool_limits``, which look the libraries up again each time."""
    try:
        from threadpoolctl import ThreadpoolController
    except ImportError:   # not installed: the BLAS shares out each product itself
        return []
    return [c for c in ThreadpoolController().lib_controllers if c.user_api == "blas"]


_BLAS = _blas_controllers()


def _numpy_openblas():
    """NumPy's OpenBLAS as a ctypes library (dlopen hands back the handle NumPy already loaded),
    or None: the OpenBLAS threadpoolctl found inside NumPy's own folders, else the first one."""
    import ctypes
    paths = [c.filepath for c in _BLAS if c.internal_api == "openblas"]
    numpy_dir = os.path.dirname(os.path.dirname(np.__file__))
    paths.sort(key=lambda path: not os.path.abspath(path).startswith(numpy_dir + os.sep + "numpy"))
    for path in paths:
        try:
            return ctypes.CDLL(path)
        except OSError:
            continue
    return None


_LIB = _numpy_openblas()


def openblas_function(stem):
    """The function ``openblas_<stem>`` (e.g. "get_corename") of NumPy's OpenBLAS whatever its
    symbol prefix and suffix (scipy_openblas_..64_ in NumPy's wheels), or None. Its ctypes
    restype and argtypes are left for the caller to set."""
    if _LIB is None:
        return None
    for prefix, suffix in (("scipy_openblas_", "64_"), ("scipy_openblas_", ""),
                           ("openblas_", "64_"), ("openblas_", "")):
        fn = getattr(_LIB, f"{prefix}{stem}{suffix}", None)
        if fn is not None:
            return fn
    return None


# One product at a time holds the BLAS at one thread, so that two threads calling the kernels
# at once cannot restore each other's settings in the wrong order.
_lock = threading.Lock()


def _reset_after_fork():
    global _lock
    _lock = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reset_after_fork)


@contextlib.contextmanager
def blas_on_calling_threads():
    """Within this block NumPy's BLAS computes each product on the thread that calls it, so
    that the block's own threads can share out the cores; yields how many threads may run
    products side by side: all the cores, or 1 where the BLAS's threads cannot be controlled
    (it then shares out each product itself). The user's setting is restored on leaving."""
    parts = cpu_threads.num_threads()
    if not _BLAS or parts == 1:
        yield 1
        return
    with _lock:
        before = [c.get_num_threads() for c in _BLAS]
        for c in _BLAS:
            c.set_num_threads(1)
        try:
            yield parts
        finally:
            for c, n in zip(_BLAS, before):
                c.set_num_threads(n)


def _rows(a, b, out, t0, t1):
    np.matmul(a[t0:t1], b, out=out[t0:t1])


def _cols(a, b, out, t0, t1):
    np.matmul(a, b[:, t0:t1], out=out[:, t0:t1])


def matmul(a, b, out):
    """out (m, n) = a (m, k) @ b (k, n), one slab of the result per core; returns out."""
    m, k = a.shape
    n = b.shape[1]
    if k == 1:
        # an outer product (the DCGAN critic's last layer, backward): OpenBLAS's GEMM took
        # 0.43-0.60 ms on (64, 1) @ (1, 6272) here, a broadcast multiply 0.03
        return np.multiply(a, b, out=out)
    with blas_on_calling_threads() as parts:
        if parts == 1 or m * k * n < MIN_SPLIT_MACS:
            np.matmul(a, b, out=out)
        elif m >= n:
            cpu_threads.run_tasks(_rows, m, m * n * k, a, b, out, max_parts=parts)
        else:
            cpu_threads.run_tasks(_cols, n, m * n * k, a, b, out, max_parts=parts)
    return out
