"""Padding of the last one or two axes: ``F.pad(x, pad, mode)`` as ``torch.nn.functional.pad``.

Every mode is a gather: output position j along a padded axis reads input position src[j]

    constant   src[j] = j - before inside the input, none outside (the output there is ``value``)
    reflect    mirror about the edge pixel, which is not repeated: [a b c d] -> c b | a b c d | c b
    replicate  the edge pixel repeated:                            [a b c d] -> a a | a b c d | d d

so the backward is the adjoint, a scatter-add of the gradient back onto the sources (a border
pixel of a reflection receives its own gradient plus its mirror images'). ``PadGather`` and
``PadScatter`` are each other's backward, so second derivatives of padding are exact.
"""
from .. import backend
from ..autograd import Function, as_tensor

MODES = ("constant", "reflect", "replicate")


def _source(j, size, mode):
    """The input position output position j (counted from the first input pixel) reads."""
    if 0 <= j < size:
        return j
    if mode == "constant":
        return -1
    if mode == "replicate":
        return 0 if j < 0 else size - 1
    period = 2 * (size - 1)   # reflect: the index walks 0..size-1..1 and repeats
    k = j % period if period else 0
    return k if k < size else period - k


def _sources(size, before, after, mode):
    """The input position each of the before + size + after output positions reads (a tuple of
    host ints: the maps are tiny and CuPy indexes with them as well); -1 for a constant pad."""
    return tuple(_source(j, size, mode) for j in range(-before, size + after))


def _gather_axis(x, src, axis, value):
    xp = backend.array_module(x)
    y = xp.take(x, xp.asarray([max(s, 0) for s in src]), axis=axis)
    outside = [j for j, s in enumerate(src) if s < 0]
    if outside:
        index = [slice(None)] * x.ndim
        index[axis] = xp.asarray(outside)
        y[tuple(index)] = value
    return y


def _scatter_axis(g, src, before, size, axis):
    """The adjoint of :func:`_gather_axis`: out[..., i, ...] = sum of g[..., j, ...] over the j
    with src[j] == i. Positions before..before+size-1 (``before``: the pad in front) read the
    input in order: that block is added at once, the few border positions one by one."""
    xp = backend.array_module(g)
    shape = list(g.shape)
    shape[axis] = size
    out = xp.zeros(shape, dtype=g.dtype)
    view, g = xp.moveaxis(out, axis, 0), xp.moveaxis(g, axis, 0)
    view += g[before:before + size]
    for j in range(len(src)):
        if not before <= j < before + size and src[j] >= 0:
            view[src[j]] += g[j]
    return out


class PadGather(Function):
    """y = x gathered along the last axes by ``sources``, one (index map, pad in front) pair per
    padded axis, innermost first; ``value`` where a map says -1. (..., H, W) -> (..., H', W')."""

    def forward(self, x, sources, value=0.0):
        self.sources = sources
        y = x
        for k, (src, _) in enumerate(sources):
            y = _gather_axis(y, src, x.ndim - 1 - k, value)
        return y

    def backward(self, gy):
        shape = self.inputs[0].shape
        return PadScatter.apply(gy, sources=self.sources,
                                sizes=tuple(shape[-1 - k] for k in range(len(self.sources))))


class PadScatter(Function):
    """The adjoint of :class:`PadGather`: g (..., H', W') summed back onto (..., H, W)."""

    def forward(self, g, sources, sizes):
        self.sources = sources
        out = g
        for k, ((src, before), size) in enumerate(zip(sources, sizes)):
            out = _scatter_axis(out, src, before, size, g.ndim - 1 - k)
        return out

    def backward(self, gg):
        return PadGather.apply(gg, sources=self.sources, value=0.0)


def pad(input, pad, mode="constant", value=None):  # noqa: A002 - PyTorch's names
    """Pad the last ``len(pad) // 2`` axes (``torch.nn.functional.pad``).

    pad: (left, right) pads the last axis, (left, right, top, bottom) the last two; each >= 0.
    mode: "constant" (with ``value``, default 0), "reflect" (each pad smaller than its axis) or
    "replicate". (N, C, H, W) -> (N, C, top + H + bottom, left + W + right).
    """
    x = as_tensor(input)
    pad = tuple(int(p) for p in pad)
    if mode not in MODES:
        raise ValueError(f"pad: mode must be one of {MODES}, got {mode!r}")
    if len(pad) not in (2, 4):
        raise ValueError(f"pad: pad must be (left, right) or (left, right, top, bottom), got {pad}")
    if min(pad) < 0:
        raise ValueError(f"pad: negative padding (cropping) is not supported, got {pad}")
    axes = len(pad) // 2
    if x.ndim < axes + (1 if mode != "constant" else 0):
        raise ValueError(f"pad: {mode} padding of {axes} axes needs an input with at least "
                         f"{axes + 1} dimensions, got shape {x.shape}")
    if value is not None and mode != "constant":
        raise ValueError(f"pad: value is only used by mode='constant', got mode={mode!r}")
    sources = []
    for k in range(axes):
        before, after = pad[2 * k], pad[2 * k + 1]
        size = x.shape[x.ndim - 1 - k]
        if mode == "reflect" and max(before, after) >= size:
            raise ValueError(f"pad: reflect padding {(before, after)} must be smaller than the "
                             f"padded axis, of size {size} (input shape {x.shape})")
        if mode == "replicate" and size == 0 and before + after > 0:
            raise ValueError(f"pad: cannot replicate an empty axis (input shape {x.shape})")
        sources.append((_sources(size, before, after, mode), before))
    if not any(pad):
        return x
    return PadGather.apply(x, sources=tuple(sources), value=0.0 if value is None else float(value))
