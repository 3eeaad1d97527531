"""LeakyReLU (and ReLU, slope 0) on NumPy arrays, elementwise over the flattened array.

Small arrays take a serial loop: waking numba's thread pool costs more than the work below
about 2^16 elements, and far more when the cores are busy with other processes.
"""
import numba
import numpy as np

PARALLEL_MIN_SIZE = 1 << 16


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


# The same loops compiled twice: prange runs serially in the non-parallel build.
_leaky_serial = numba.njit(cache=True)(_leaky_loop)
_leaky_parallel = numba.njit(parallel=True, cache=True)(_leaky_loop)
_leaky_grad_serial = numba.njit(cache=True)(_leaky_grad_loop)
_leaky_grad_parallel = numba.njit(parallel=True, cache=True)(_leaky_grad_loop)


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
