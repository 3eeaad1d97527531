"""minigan: a small, from-scratch GAN engine.

    import minigan as mg
    import minigan.functional as F
    from minigan import nn, optim

Read the source in this order: backend.py, autograd.py, functional/, kernels/, nn/, optim.py, gan/.
"""
import numpy as np

from . import backend
from .autograd import (Function, Tensor, backward, detect_anomaly, enable_grad, grad,
                       is_grad_enabled, no_grad, set_grad_enabled)
from . import functional, nn, optim
from .backend import cupy_available, get_default_dtype, manual_seed, set_default_dtype

__version__ = "0.1.0"


def tensor(data, requires_grad=False, dtype=None, device=None):
    """A new leaf Tensor holding a copy of ``data`` (``torch.tensor``): later changes to the
    caller's array do not reach it. ``as_tensor`` and ``from_numpy`` share memory instead."""
    if isinstance(data, Tensor):
        data = data.data
    if isinstance(data, np.ndarray) or backend.is_cupy_array(data):
        data = data.copy()
    return Tensor(data, requires_grad=requires_grad, dtype=dtype, device=device)


def as_tensor(data, dtype=None, device=None):
    """``data`` as a Tensor, sharing its memory when dtype and device already match
    (``torch.as_tensor``); a Tensor with the same dtype and device comes back as it is."""
    if isinstance(data, Tensor) and (dtype is None or data.dtype == np.dtype(dtype)) and (
            device is None or data.device == backend.normalize_device(device)):
        return data
    return Tensor(data, dtype=dtype, device=device)


def from_numpy(array):
    """A Tensor sharing ``array``'s memory (``torch.from_numpy``): changes show through both."""
    if not isinstance(array, np.ndarray):
        raise TypeError(f"from_numpy expects a numpy.ndarray, got {type(array).__name__}")
    return Tensor(array)


def _filled(fill, shape, dtype, device, requires_grad):
    if len(shape) == 1 and isinstance(shape[0], (tuple, list)):
        shape = tuple(shape[0])
    xp = backend.array_module()
    data = backend.to_device(xp.full(shape, fill, dtype=dtype or get_default_dtype()), device or "cpu")
    return Tensor(data, requires_grad=requires_grad)


def zeros(*shape, dtype=None, device=None, requires_grad=False):
    return _filled(0, shape, dtype, device, requires_grad)


def ones(*shape, dtype=None, device=None, requires_grad=False):
    return _filled(1, shape, dtype, device, requires_grad)


def randn(*shape, dtype=None, device="cpu", requires_grad=False):
    """Standard normal samples from minigan's seeded generator for that device."""
    if len(shape) == 1 and isinstance(shape[0], (tuple, list)):
        shape = tuple(shape[0])
    data = backend.rng(device).standard_normal(shape, dtype=dtype or get_default_dtype())
    return Tensor(data, requires_grad=requires_grad)


def rand(*shape, dtype=None, device="cpu", requires_grad=False):
    """Uniform samples in [0, 1) from minigan's seeded generator for that device."""
    if len(shape) == 1 and isinstance(shape[0], (tuple, list)):
        shape = tuple(shape[0])
    data = backend.rng(device).random(shape, dtype=dtype or get_default_dtype())
    return Tensor(data, requires_grad=requires_grad)
