"""LeakyReLU (and ReLU, slope 0) on NumPy arrays, elementwise over the flattened array."""
import numba
import numpy as np


@numba.njit(parallel=True, cache=True)
def _leaky(x, slope, y):
    """y = x where x > 0, else slope * x."""
    for i in numba.prange(x.size):
        v = x[i]
        y[i] = v if v > 0 else v * slope


@numba.njit(parallel=True, cache=True)
def _leaky_grad(gy, x, slope, gx):
    """gx = gy where x > 0, else slope * gy."""
    for i in numba.prange(x.size):
        g = gy[i]
        gx[i] = g if x[i] > 0 else g * slope


def leaky_relu(x, negative_slope):
    """y = x if x > 0 else negative_slope * x, elementwise; same shape and dtype as x."""
    y = np.empty_like(x)
    _leaky(x.reshape(-1), x.dtype.type(negative_slope), y.reshape(-1))
    return y


def leaky_relu_grad(gy, x, negative_slope):
    """gx = gy * (1 if x > 0 else negative_slope), elementwise."""
    gx = np.empty_like(x)
    _leaky_grad(gy.reshape(-1), x.reshape(-1), x.dtype.type(negative_slope), gx.reshape(-1))
    return gx
