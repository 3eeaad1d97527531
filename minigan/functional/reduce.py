"""Reductions: sum, mean, max, min, var over axes, with keepdims.

Backward of a reduction spreads the gradient back over the reduced axes: evenly for sum and mean,
to the arg-max positions for max (ties share it equally).
"""
import builtins

from ..autograd import Function, Tensor, as_tensor
from .elementwise import sqrt
from .shape import broadcast_to, reshape


def _axes(axis, ndim):
    if axis is None:
        return tuple(range(ndim))
    if hasattr(axis, "__index__"):
        axes = (axis,)
    elif isinstance(axis, (tuple, list)):
        axes = tuple(axis)
    else:
        raise TypeError(f"axis must be an int, a tuple of ints or None, got {axis!r}")
    for a in axes:
        if isinstance(a, bool) or not hasattr(a, "__index__"):
            raise TypeError(f"axis must be an int, a tuple of ints or None, got {axis!r}")
        if not -ndim <= a < builtins.max(ndim, 1):
            raise IndexError(f"axis {a} is out of range for a tensor with {ndim} dimensions")
    return tuple(sorted(a % builtins.max(ndim, 1) for a in axes))


def _keepdims_shape(shape, axes):
    return tuple(1 if i in axes else s for i, s in enumerate(shape))


class Sum(Function):
    saved_inputs = ()

    def forward(self, x, axes, keepdims):
        self.axes, self.keepdims = axes, keepdims
        return x.sum(axis=axes, keepdims=keepdims)

    def backward(self, gy):
        shape = self.inputs[0].shape
        if not self.keepdims:
            gy = reshape(gy, _keepdims_shape(shape, self.axes))
        return broadcast_to(gy, shape)


def sum(x, axis=None, keepdims=False, dim=None):  # noqa: A001 - torch.sum
    """Sum over ``axis`` (an int, a tuple, or None for all); ``dim`` is PyTorch's name for it."""
    x = as_tensor(x)
    axis = dim if dim is not None else axis
    return Sum.apply(x, axes=_axes(axis, x.ndim), keepdims=keepdims)


def mean(x, axis=None, keepdims=False, dim=None):
    x = as_tensor(x)
    axis = dim if dim is not None else axis
    axes = _axes(axis, x.ndim)
    count = 1
    for a in axes:
        count *= x.shape[a]
    # the mean of no values is NaN (NumPy, PyTorch), not the 0 an empty sum would give
    return sum(x, axes, keepdims) * (1.0 / count if count else float("nan"))


class Max(Function):
    saves_output = True

    def forward(self, x, axes, keepdims):
        if x.size == 0:
            raise ValueError("max of an empty tensor")
        self.axes, self.keepdims = axes, keepdims
        return x.max(axis=axes, keepdims=keepdims)

    def backward(self, gy):
        x = self.inputs[0]
        shape = _keepdims_shape(x.shape, self.axes)
        y = self.output.data.reshape(shape)
        hit = (x.data == y).astype(gy.dtype)
        share = Tensor._wrap(hit / hit.sum(axis=self.axes, keepdims=True))
        return broadcast_to(reshape(gy, shape), x.shape) * share


def max(x, axis=None, keepdims=False, dim=None):  # noqa: A001 - torch.max over a dim (values)
    x = as_tensor(x)
    axis = dim if dim is not None else axis
    return Max.apply(x, axes=_axes(axis, x.ndim), keepdims=keepdims)


def min(x, axis=None, keepdims=False, dim=None):  # noqa: A001
    return -max(-as_tensor(x), axis, keepdims, dim)


def var(x, axis=None, keepdims=False, unbiased=True, dim=None, correction=None):
    """Variance over ``axis``: mean((x - mean x)^2) * n / (n - correction).

    PyTorch's default is the unbiased estimate (correction 1); ``unbiased=False`` divides by n."""
    x = as_tensor(x)
    axis = dim if dim is not None else axis
    axes = _axes(axis, x.ndim)
    n = 1
    for a in axes:
        n *= x.shape[a]
    if correction is None:
        correction = 1 if unbiased else 0
    if n - correction <= 0:
        raise ValueError(f"var over {n} element(s) with correction {correction} is undefined")
    centred = x - mean(x, axes, keepdims=True)
    return sum(centred * centred, axes, keepdims) * (1.0 / (n - correction))


def std(x, axis=None, keepdims=False, unbiased=True, dim=None):
    return sqrt(var(x, axis, keepdims, unbiased, dim))
