"""Shape ops: reshape, permute/transpose, broadcast_to and its adjoint sum_to, concat, stack, getitem.

None of these change values, so each backward just moves the gradient back to where the value
came from: the adjoint of a broadcast is a sum, the adjoint of a gather is a scatter-add.
"""
import numpy as np

from .. import backend
from ..autograd import Function, Tensor, as_tensor


def _axis(axis, ndim, name="axis"):
    if isinstance(axis, bool) or not hasattr(axis, "__index__"):
        raise TypeError(f"{name} must be an int, got {axis!r} ({type(axis).__name__})")
    if not -ndim <= axis < max(ndim, 1):
        raise IndexError(f"{name} {axis} is out of range for a tensor with {ndim} dimensions")
    return axis % max(ndim, 1)


class Reshape(Function):
    saved_inputs, is_view = (), True

    def forward(self, x, shape):
        try:
            return x.reshape(shape)
        except ValueError:
            raise ValueError(f"reshape: cannot reshape a tensor of shape {x.shape} "
                             f"({x.size} elements) into shape {tuple(shape)}") from None

    def backward(self, gy):
        return reshape(gy, self.inputs[0].shape)


def reshape(x, *shape):
    """``x`` with a new shape holding the same elements (one entry may be -1)."""
    if len(shape) == 1 and isinstance(shape[0], (tuple, list)):
        shape = shape[0]
    shape = tuple(int(s) for s in shape)
    if isinstance(x, Tensor) and x.shape == shape:
        return x
    return Reshape.apply(x, shape=shape)


def flatten(x, start_dim=0, end_dim=-1):
    """Merge dimensions start_dim..end_dim into one (``torch.flatten``)."""
    x = as_tensor(x)
    shape = x.shape
    if x.ndim == 0:
        return reshape(x, (1,))
    start, end = _axis(start_dim, x.ndim, "start_dim"), _axis(end_dim, x.ndim, "end_dim")
    if start > end:
        raise ValueError(f"flatten: start_dim {start_dim} comes after end_dim {end_dim} for a "
                         f"tensor of shape {shape}")
    merged = int(np.prod(shape[start:end + 1], dtype=np.int64))
    return reshape(x, shape[:start] + (merged,) + shape[end + 1:])


def unsqueeze(x, dim):
    x = as_tensor(x)
    if isinstance(dim, bool) or not hasattr(dim, "__index__") or not -x.ndim - 1 <= dim <= x.ndim:
        raise IndexError(f"unsqueeze: dim {dim!r} is out of range for a tensor of shape {x.shape} "
                         f"(expected an int in [{-x.ndim - 1}, {x.ndim}])")
    dim = dim % (x.ndim + 1)
    return reshape(x, x.shape[:dim] + (1,) + x.shape[dim:])


def squeeze(x, dim=None):
    x = as_tensor(x)
    if dim is None:
        return reshape(x, tuple(s for s in x.shape if s != 1))
    dim = _axis(dim, x.ndim, "dim")
    if x.shape[dim] != 1:
        return x
    return reshape(x, x.shape[:dim] + x.shape[dim + 1:])


class Permute(Function):
    saved_inputs, is_view = (), True

    def forward(self, x, axes):
        if sorted(a % x.ndim for a in axes) != list(range(x.ndim)):
            raise ValueError(f"permute: {axes} is not a permutation of the {x.ndim} axes "
                             f"of a tensor of shape {x.shape}")
        self.axes = axes
        return x.transpose(axes)

    def backward(self, gy):
        inverse = tuple(np.argsort([a % gy.ndim for a in self.axes]))
        return permute(gy, inverse)


def permute(x, *axes):
    """Reorder the axes: ``y.shape[i] == x.shape[axes[i]]``."""
    if len(axes) == 1 and isinstance(axes[0], (tuple, list)):
        axes = axes[0]
    return Permute.apply(x, axes=tuple(int(a) for a in axes))


def transpose(x, dim0=-2, dim1=-1):
    """Swap two axes (``torch.transpose``); by default the last two, as matrices need."""
    x = as_tensor(x)
    axes = list(range(x.ndim))
    d0, d1 = _axis(dim0, x.ndim, "dim0"), _axis(dim1, x.ndim, "dim1")
    axes[d0], axes[d1] = axes[d1], axes[d0]
    return permute(x, axes)


class BroadcastTo(Function):
    saved_inputs, is_view = (), True

    def forward(self, x, shape):
        xp = backend.array_module(x)
        try:
            return xp.broadcast_to(x, shape)
        except ValueError:
            raise ValueError(f"broadcast_to: shape {x.shape} cannot be broadcast "
                             f"to {tuple(shape)}") from None

    def backward(self, gy):
        return sum_to(gy, self.inputs[0].shape)


def broadcast_to(x, shape):
    """``x`` repeated along size-1 (or missing leading) axes to ``shape``; a read-only view."""
    shape = tuple(shape)
    if isinstance(x, Tensor) and x.shape == shape:
        return x
    return BroadcastTo.apply(x, shape=shape)


class SumTo(Function):
    saved_inputs = ()

    def forward(self, x, shape):
        lead = x.ndim - len(shape)
        axes = tuple(range(lead)) + tuple(lead + i for i, s in enumerate(shape)
                                          if s == 1 and x.shape[lead + i] != 1)
        y = x.sum(axis=axes, keepdims=True) if axes else x
        return y.reshape(shape) if lead else y

    def backward(self, gy):
        return broadcast_to(gy, self.inputs[0].shape)


def sum_to(x, shape):
    """Sum ``x`` down to ``shape``, the adjoint of ``broadcast_to(., x.shape)``.

    Every binary op's backward uses it: an input that was broadcast receives the sum of the
    gradients of all the places it was copied to."""
    shape = tuple(shape)
    if x.shape == shape:
        return x
    lead = x.ndim - len(shape)
    if lead < 0 or any(s not in (1, t) for s, t in zip(shape, x.shape[lead:])):
        raise ValueError(f"sum_to: shape {x.shape} cannot be summed down to {shape} (it is not "
                         f"a broadcast of {shape})")
    return SumTo.apply(x, shape=shape)


class Concat(Function):
    saved_inputs = ()

    def forward(self, *xs, axis):
        xp = backend.array_module(*xs)
        self.axis = axis
        return xp.concatenate(xs, axis=axis)

    def backward(self, gy):
        grads, start = [], 0
        for x, need in zip(self.inputs, self.needs_input_grad):
            stop = start + x.shape[self.axis]
            index = (slice(None),) * self.axis + (slice(start, stop),)
            grads.append(gy[index] if need else None)
            start = stop
        return tuple(grads)


def concat(tensors, dim=0):
    """Join tensors along an existing axis (``torch.cat``); all other axes must match."""
    tensors = [as_tensor(t) for t in tensors]
    if not tensors:
        raise ValueError("concat needs at least one tensor")
    ndim = tensors[0].ndim
    axis = _axis(dim, ndim, "dim")
    for t in tensors[1:]:
        if t.ndim != ndim or any(a != b for i, (a, b) in enumerate(zip(t.shape, tensors[0].shape))
                                 if i != axis):
            raise ValueError(f"concat along dim {dim}: shapes {tensors[0].shape} and {t.shape} "
                             "differ outside that dimension")
    return Concat.apply(*tensors, axis=axis)


cat = concat


def stack(tensors, dim=0):
    """Join same-shape tensors along a new axis."""
    tensors = [as_tensor(t) for t in tensors]
    if not tensors:
        raise ValueError("stack expects a non-empty list of tensors, got an empty one")
    shapes = {t.shape for t in tensors}
    if len(shapes) != 1:
        raise ValueError(f"stack needs tensors of one shape, got {sorted(shapes)}")
    return concat([unsqueeze(t, dim) for t in tensors], dim=dim)


def _raw_index(index):
    """Tensors inside an index become their arrays (indexing itself is never differentiable)."""
    if isinstance(index, tuple):
        return tuple(_raw_index(i) for i in index)
    if isinstance(index, Tensor):
        return index.data
    if isinstance(index, list):
        return np.asarray(index)
    return index


class GetItem(Function):
    saved_inputs, is_view = (), True

    def forward(self, x, index):
        self.index = index
        return x[index]

    def backward(self, gy):
        return ScatterAdd.apply(gy, index=self.index, shape=self.inputs[0].shape)


class ScatterAdd(Function):
    """Zeros of ``shape`` with ``gy`` added at ``index`` (repeated indices add up): the adjoint
    of ``getitem``, and itself differentiable (its adjoint is ``getitem`` again)."""
    saved_inputs = ()

    def forward(self, gy, index, shape):
        xp = backend.array_module(gy)
        self.index = index
        gx = xp.zeros(shape, dtype=gy.dtype)
        xp.add.at(gx, index, gy)   # unbuffered: repeated indices add up (CuPy has add.at since v12)
        return gx

    def backward(self, ggx):
        return ggx[self.index]


def getitem(x, index):
    """``x[index]`` with NumPy's indexing rules (slices, ints, integer and boolean arrays)."""
    return GetItem.apply(x, index=_raw_index(index))
