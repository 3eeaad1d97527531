"""LeakyReLU (and ReLU, slope 0) on NumPy arrays, elementwise over the flattened array.

Small arrays take a serial loop: waking numba's thread pool costs more than the work below
about 2^18 elements, and far more when the cores are busy with other processes.
"""
import types

import numba
import numpy as np

PARALLEL_MIN_SIZE = 1 << 18


def _leaky_loop(x, slope, y):
    """y = x where x > 0, else slope * x."""
    for i in numba.prange(x.size):
        v = x[i]
        y[i] = v if v > 0 else v * slope


def _leaky_grad_loop(gy, x, slope, gx):
    """gx = gy where x > 0, else slope * gy."""
    for i in numba.prange(x.size):
        g = gy[i]
        gx[i] = g if x[i] > 0 else g * slope


def _compile(loop, parallel):
    """One loop, two builds (prange runs serially in the non-parallel one). Each build gets its
    own name: numba's on-disk cache is keyed by the function's name, and two builds of one name
    would load each other's machine code."""
    name = loop.__name__ + ("_parallel" if parallel else "_serial")
    fn = types.FunctionType(loop.__code__, loop.__globals__, name)
    fn.__qualname__ = fn.__name__
    return numba.njit(parallel=parallel, cache=True)(fn)


_leaky_serial = _compile(_leaky_loop, False)
_leaky_parallel = _compile(_leaky_loop, True)
_leaky_grad_serial = _compile(_leaky_grad_loop, False)
_leaky_grad_parallel = _compile(_leaky_grad_loop, True)


def leaky_relu(x, negative_slope):
    """y = x if x > 0 else negative_slope * x, elementwise; same shape and dtype as x."""
    y = np.empty_like(x)
    kernel = _leaky_parallel if x.size >= PARALLEL_MIN_SIZE else _leaky_serial
    kernel(x.reshape(-1), x.dtype.type(negative_slope), y.reshape(-1))
    return y


def leaky_relu_grad(gy, x, negative_slope):
    """gx = gy * (1 if x > 0 else negative_slope), elementwise."""
    gx = np.empty_like(x)
    kernel = _leaky_grad_parallel if x.size >= PARALLEL_MIN_SIZE else _leaky_grad_serial
    kernel(gy.reshape(-1), x.reshape(-1), x.dtype.type(negative_slope), gx.reshape(-1))
    return gx
