"""Hypothesis strategies shared by the tests: small shapes (broadcasting and matmul pairs
included) and float64 arrays whose values stay away from the points where an op has a kink.

Sizes are kept small (at most ``MAX_SIZE`` elements per array) because a finite-difference
gradient check evaluates the function twice per input element.
"""
import math

import numpy as np
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

MAX_SIZE = 30


def _small(shape, max_size=MAX_SIZE):
    return math.prod(shape) <= max_size


def shapes(min_dims=0, max_dims=3, min_side=1, max_side=4, max_size=MAX_SIZE):
    """Array shapes with at most ``max_size`` elements."""
    return hnp.array_shapes(min_dims=min_dims, max_dims=max_dims, min_side=min_side,
                            max_side=max_side).filter(lambda s: _small(s, max_size))


def broadcastable_pairs(min_dims=0, max_dims=3, max_side=3, max_size=MAX_SIZE):
    """(shape_a, shape_b) that broadcast together (NumPy rules: size-1 and missing axes)."""
    return hnp.mutually_broadcastable_shapes(
        num_shapes=2, min_dims=min_dims, max_dims=max_dims, max_side=max_side,
    ).filter(lambda b: _small(b.result_shape, max_size)).map(lambda b: b.input_shapes)


def broadcast_targets(max_dims=3, max_side=3, max_size=MAX_SIZE):
    """(shape, target): ``shape`` broadcasts to ``target`` (target is the full result shape)."""
    return hnp.mutually_broadcastable_shapes(
        num_shapes=2, min_dims=0, max_dims=max_dims, max_side=max_side,
    ).filter(lambda b: _small(b.result_shape, max_size)).map(
        lambda b: (b.input_shapes[0], b.result_shape))


def matmul_pairs(max_dims=3, max_side=3, max_size=MAX_SIZE):
    """(shape_a, shape_b) valid for ``a @ b``: 1-D operands and batch broadcasting included
    (NumPy's matmul signature with optional core dimensions)."""
    return hnp.mutually_broadcastable_shapes(
        signature="(m?,n),(n,p?)->(m?,p?)", max_dims=max_dims, max_side=max_side,
    ).filter(lambda b: all(_small(s, max_size) for s in b.input_shapes)
             and _small(b.result_shape, max_size)).map(lambda b: b.input_shapes)


def axes(ndim):
    """An ``axis`` argument for a reduction over ``ndim`` axes: None, one int (negative ones
    included) or a tuple of distinct axes."""
    if ndim == 0:
        return st.none()
    single = st.integers(-ndim, ndim - 1)
    several = st.lists(st.integers(0, ndim - 1), min_size=1, max_size=ndim,
                       unique=True).map(tuple)
    return st.one_of(st.none(), single, several)


def reduced_count(shape, axis):
    """How many elements each reduction over ``axis`` combines."""
    if axis is None:
        return math.prod(shape)
    axis = (axis,) if isinstance(axis, int) else axis
    return math.prod(shape[a] for a in axis)


def _elements(low, high, min_abs):
    values = st.floats(low, high, allow_nan=False, allow_infinity=False, allow_subnormal=False)
    if min_abs > 0:
        values = values.filter(lambda v: abs(v) >= min_abs)
    return values


def arrays(shape, low=-2.0, high=2.0, min_abs=0.0):
    """float64 arrays of ``shape`` with values in [low, high] and ``|v| >= min_abs`` (keeps
    relu, abs and friends away from their kink at 0)."""
    return hnp.arrays(np.float64, shape, elements=_elements(low, high, min_abs))


def distinct_arrays(shape, low=-2.0, high=2.0, step=1 / 32):
    """float64 arrays of ``shape`` whose values are all different and at least ``step`` apart
    (a grid offset by half a step, so never exactly 0): max/min have no ties, clip has no value
    on its bounds, and a finite-difference step cannot swap two values."""
    grid = st.integers(int(math.floor(low / step)), int(math.ceil(high / step)) - 1)
    return hnp.arrays(np.float64, shape, elements=grid.map(lambda k: (k + 0.5) * step),
                      unique=True)


def positive_arrays(shape, low=0.2, high=3.0):
    """float64 arrays for log, sqrt and pow bases: values in [low, high]."""
    return arrays(shape, low, high)
