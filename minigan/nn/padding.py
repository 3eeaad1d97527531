"""Padding layers with PyTorch's names: ``ReflectionPad2d``, ``ReplicationPad2d``, ``ZeroPad2d``,
``ConstantPad2d``; each is :func:`minigan.functional.pad` with its mode."""
from .. import functional as F
from .module import Module


def _four(padding, name):
    if isinstance(padding, int):
        return (padding,) * 4
    padding = tuple(int(p) for p in padding)
    if len(padding) != 4:
        raise ValueError(f"{name}: padding must be an int or (left, right, top, bottom), "
                         f"got {padding}")
    return padding


class _Pad2d(Module):
    mode = "constant"

    def __init__(self, padding, value=None):
        super().__init__()
        self.padding = _four(padding, type(self).__name__)
        self.value = value

    def forward(self, x):
        if x.ndim not in (3, 4):
            raise ValueError(f"{type(self).__name__} expects a 3-D or 4-D input, got shape "
                             f"{x.shape}")
        return F.pad(x, self.padding, self.mode, self.value)

    def extra_repr(self):
        return f"{self.padding}"


class ReflectionPad2d(_Pad2d):
    """Pad H and W by mirroring about the edge pixel: (left, right, top, bottom), or one int."""
    mode = "reflect"

    def __init__(self, padding):
        super().__init__(padding)


class ReplicationPad2d(_Pad2d):
    """Pad H and W by repeating the edge pixel."""
    mode = "replicate"

    def __init__(self, padding):
        super().__init__(padding)


class ConstantPad2d(_Pad2d):
    """Pad H and W with ``value``."""

    def __init__(self, padding, value):
        super().__init__(padding, float(value))


class ZeroPad2d(ConstantPad2d):
    def __init__(self, padding):
        super().__init__(padding, 0.0)
