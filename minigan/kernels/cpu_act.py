"""LeakyReLU (and ReLU, slope 0) on NumPy arrays, elementwise over the flattened array.

A hand-off to the other thread costs tens of microseconds (it passes the GIL twice), about what
one thread takes for a few hundred thousand elements, so only bigger arrays are split
(_SPLIT_SCALE).
"""
import numba

from . import cpu_memory
from .cpu_threads import run_tasks

# Elements per task: big enough that splitting costs nothing, small enough to share out evenly.
_BLOCK = 1 << 14
# Unsigned loop indices: numba checks every signed index for negative values, which stops LLVM
# from vectorising these loops (10x slower measured).
_u = numba.uintp
# Split over threads from 4 * cpu_threads.MIN_PARALLEL_ELEMENTS = 2^18 elements: on 2 cores an
# 0.8-million-element forward + backward then takes 0.72x the time on one thread.
_SPLIT_SCALE = 4


@numba.njit(cache=True, nogil=True)
def _leaky(x, slope, y, t0, t1):
    """y = x where x > 0, else slope * x, for elements [t0*_BLOCK, t1*_BLOCK); relu (slope 0)
    gives 0 at -inf (not -inf * 0 = nan) and keeps NaN, as PyTorch does."""
    for i in range(_u(t0 * _BLOCK), _u(min(t1 * _BLOCK, x.size))):
        v = x[i]
        y[i] = v if v > 0 else (v * slope if slope != 0 or v != v else slope)


@numba.njit(cache=True, nogil=True)
def _leaky_inplace(x, slope, t0, t1):
    """_leaky with y = x: one array, so that LLVM vectorises the loop (with two, its run-time
    overlap check finds them the same and takes the scalar loop)."""
    for i in range(_u(t0 * _BLOCK), _u(min(t1 * _BLOCK, x.size))):
        v = x[i]
        if not v > 0:
            x[i] = v * slope if slope != 0 or v != v else slope


@numba.njit(cache=True, nogil=True)
def _leaky_grad(gy, x, slope, gx, t0, t1):
    """gx = gy where x > 0, else slope * gy, for elements [t0*_BLOCK, t1*_BLOCK)."""
    for i in range(_u(t0 * _BLOCK), _u(min(t1 * _BLOCK, x.size))):
        g = gy[i]
        gx[i] = g if x[i] > 0 else g * slope


def _tasks(n):
    return (n + _BLOCK - 1) // _BLOCK


def leaky_relu(x, negative_slope):
    """y = x if x > 0 else negative_slope * x, elementwise; same shape and dtype as x."""
    y = cpu_memory.empty_like(x)
    run_tasks(_leaky, _tasks(x.size), x.size, x.reshape(-1), x.dtype.type(negative_slope),
              y.reshape(-1), scale=_SPLIT_SCALE)
    return y


def leaky_relu_(x, negative_slope):
    """x = leaky_relu(x, negative_slope), in place (x C-contiguous)."""
    flat = x.reshape(-1)
    run_tasks(_leaky_inplace, _tasks(flat.size), flat.size, flat, x.dtype.type(negative_slope),
              scale=_SPLIT_SCALE)


def leaky_relu_on_this_thread_(x, negative_slope):
    """:func:`leaky_relu_` on the calling thread alone: for a kernel that already runs on the
    pool's threads (a chunk of a convolution's output while it is in cache)."""
    flat = x.reshape(-1)
    _leaky_inplace(flat, x.dtype.type(negative_slope), 0, _tasks(flat.size))


def leaky_relu_grad(gy, x, negative_slope):
    """gx = gy * (1 if x > 0 else negative_slope), elementwise."""
    gx = cpu_memory.empty_like(x)
    run_tasks(_leaky_grad, _tasks(x.size), x.size, gy.reshape(-1), x.reshape(-1),
              x.dtype.type(negative_slope), gx.reshape(-1), scale=_SPLIT_SCALE)
    return gx


def leaky_relu_grad_on_this_thread(gy, x, negative_slope, gx):
    """:func:`leaky_relu_grad` into gx, on the calling thread alone (all C-contiguous, the same
    shape): for a kernel that already runs on the pool's threads."""
    _leaky_grad(gy.reshape(-1), x.reshape(-1), x.dtype.type(negative_slope), gx.reshape(-1), 0,
                _tasks(x.size))
