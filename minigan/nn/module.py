"""``Module`` and ``Parameter``: the containers that hold a model's weights and buffers.

A Module finds its parameters, buffers and sub-modules from its attributes, so
``self.fc = Linear(2, 3)`` is all it takes to register one, as in PyTorch.
"""
from collections import OrderedDict

import numpy as np

from .. import backend
from ..autograd import Tensor


class Parameter(Tensor):
    """A Tensor that is a model weight: a leaf that requires a gradient by default."""

    def __init__(self, data, requires_grad=True):
        super().__init__(data.data if isinstance(data, Tensor) else data,
                         requires_grad=requires_grad)

    def __repr__(self):
        return "Parameter containing:\n" + super().__repr__()


class _HookHandle:
    def __init__(self, hooks, key):
        self.hooks, self.key = hooks, key

    def remove(self):
        self.hooks.pop(self.key, None)


class Module:
    """Base class of every layer and model: subclasses define ``forward``."""

    def __init__(self):
        object.__setattr__(self, "_parameters", OrderedDict())
        object.__setattr__(self, "_buffers", OrderedDict())
        object.__setattr__(self, "_modules", OrderedDict())
        object.__setattr__(self, "training", True)
        object.__setattr__(self, "_forward_pre_hooks", OrderedDict())

    # --- registration through attributes ------------------------------------------------------
    def __setattr__(self, name, value):
        if "_parameters" not in self.__dict__:
            raise AttributeError(f"call super().__init__() in {type(self).__name__}.__init__ "
                                 "before assigning attributes")
        for table in (self._parameters, self._buffers, self._modules):
            table.pop(name, None)
        if isinstance(value, Parameter):
            self._parameters[name] = value
        elif isinstance(value, Module):
            self._modules[name] = value
        else:
            object.__setattr__(self, name, value)

    def __getattr__(self, name):
        for table in ("_parameters", "_buffers", "_modules"):
            entries = self.__dict__.get(table)
            if entries is not None and name in entries:
                return entries[name]
        raise AttributeError(f"'{type(self).__name__}' object has no attribute '{name}'")

    def __delattr__(self, name):
        for table in (self._parameters, self._buffers, self._modules):
            if name in table:
                del table[name]
                return
        object.__delattr__(self, name)

    def register_buffer(self, name, tensor):
        """A state tensor that is saved in ``state_dict`` but is not trained (running means)."""
        if tensor is not None and not isinstance(tensor, Tensor):
            tensor = Tensor(tensor)
        self.__dict__.pop(name, None)
        self._buffers[name] = tensor

    def register_parameter(self, name, param):
        if param is not None and not isinstance(param, Parameter):
            raise TypeError(f"register_parameter('{name}') needs a Parameter, got {type(param)}")
        self.__dict__.pop(name, None)
        self._parameters[name] = param

    # --- walking the tree ----------------------------------------------------------------------
    def named_modules(self, prefix=""):
        yield prefix, self
        for name, module in self._modules.items():
            if module is not None:
                yield from module.named_modules(f"{prefix}.{name}" if prefix else name)

    def modules(self):
        return (m for _, m in self.named_modules())

    def children(self):
        return (m for m in self._modules.values() if m is not None)

    def named_parameters(self, prefix="", recurse=True):
        seen = set()
        modules = self.named_modules(prefix) if recurse else [(prefix, self)]
        for mod_name, module in modules:
            for name, p in module._parameters.items():
                if p is not None and id(p) not in seen:
                    seen.add(id(p))
                    yield (f"{mod_name}.{name}" if mod_name else name), p

    def parameters(self, recurse=True):
        return (p for _, p in self.named_parameters(recurse=recurse))

    def named_buffers(self, prefix=""):
        for mod_name, module in self.named_modules(prefix):
            for name, b in module._buffers.items():
                if b is not None:
                    yield (f"{mod_name}.{name}" if mod_name else name), b

    def buffers(self):
        return (b for _, b in self.named_buffers())

    def apply(self, fn):
        """Call ``fn(module)`` on every sub-module and then on this one (used for init)."""
        for module in self.children():
            module.apply(fn)
        fn(self)
        return self

    # --- modes and gradients -------------------------------------------------------------------
    def train(self, mode=True):
        for module in self.modules():
            object.__setattr__(module, "training", bool(mode))
        return self

    def eval(self):
        return self.train(False)

    def zero_grad(self, set_to_none=True):
        """Drop every parameter's gradient (or zero it in place with ``set_to_none=False``)."""
        for p in self.parameters():
            if set_to_none or p.grad is None:
                p.grad = None
            else:
                p.grad.data[...] = 0

    def requires_grad_(self, requires_grad=True):
        for p in self.parameters():
            p.requires_grad_(requires_grad)
        return self

    # --- saving and loading --------------------------------------------------------------------
    def state_dict(self):
        """Parameters and buffers by dotted name, as NumPy arrays (copies, on the host), so a
        checkpoint written on a GPU loads on a CPU."""
        state = OrderedDict()
        for name, p in self.named_parameters():
            state[name] = backend.as_numpy(p.data).copy()
        for name, b in self.named_buffers():
            state[name] = backend.as_numpy(b.data).copy()
        return state

    def load_state_dict(self, state_dict, strict=True):
        """Copy arrays into the parameters and buffers in place (optimizers keep their references).

        Raises KeyError listing missing and unexpected keys (when ``strict``), and ValueError
        naming the key and both shapes on a shape mismatch."""
        own = OrderedDict(list(self.named_parameters()) + list(self.named_buffers()))
        missing = [k for k in own if k not in state_dict]
        unexpected = [k for k in state_dict if k not in own]
        if strict and (missing or unexpected):
            raise KeyError(f"load_state_dict for {type(self).__name__}: missing keys {missing}, "
                           f"unexpected keys {unexpected}")
        # every value is checked and converted before the first one is copied in: a refused
        # state_dict leaves the module exactly as it was
        arrays = []
        for name, target in own.items():
            if name not in state_dict:
                continue
            value = state_dict[name]
            value = value.data if isinstance(value, Tensor) else value
            if not (isinstance(value, (np.ndarray, np.generic)) or backend.is_cupy_array(value)):
                raise TypeError(f"load_state_dict for {type(self).__name__}: '{name}' must be an "
                                f"array or Tensor, got {type(value).__name__}")
            if value.dtype.kind not in "biuf":
                raise TypeError(f"load_state_dict for {type(self).__name__}: '{name}' has dtype "
                                f"{value.dtype}, expected numbers ({target.dtype})")
            if tuple(value.shape) != target.shape:
                raise ValueError(f"load_state_dict: '{name}' has shape {tuple(value.shape)} in the "
                                 f"checkpoint but {target.shape} in the model")
            array = backend.to_device(np.asarray(backend.as_numpy(value)), target.device)
            arrays.append((target, array.astype(target.dtype, copy=False)))
        for target, array in arrays:
            target.data[...] = array
            target._bump_version()
        return missing, unexpected

    # --- devices and dtypes --------------------------------------------------------------------
    def _map_arrays(self, fn):
        for t in list(self.parameters()) + list(self.buffers()):
            t.data = fn(t.data)
            t._bump_version()
            if t.grad is not None:
                t.grad.data = fn(t.grad.data)
        return self

    def to(self, device=None, dtype=None):
        """Move every parameter and buffer in place (the Parameter objects stay the same)."""
        if device is not None:
            self._map_arrays(lambda a: backend.to_device(a, device))
        if dtype is not None:
            self._map_arrays(lambda a: a.astype(dtype) if a.dtype.kind == "f" else a)
        return self

    def cpu(self):
        return self.to("cpu")

    def cuda(self):
        return self.to("cuda")

    def float(self):
        return self.to(dtype=np.float32)

    def double(self):
        return self.to(dtype=np.float64)

    # --- calling ---------------------------------------------------------------------------------
    def forward(self, *args, **kwargs):
        raise NotImplementedError(f"{type(self).__name__} has no forward()")

    def register_forward_pre_hook(self, hook):
        """Call ``hook(module, args)`` before every forward (spectral_norm recomputes the weight
        there); a non-None return value replaces the positional arguments. Returns a handle
        whose ``remove()`` unregisters it."""
        key = object()
        self._forward_pre_hooks[key] = hook
        return _HookHandle(self._forward_pre_hooks, key)

    def __call__(self, *args, **kwargs):
        for hook in list(self.__dict__.get("_forward_pre_hooks", {}).values()):
            result = hook(self, args)
            if result is not None:
                args = result if isinstance(result, tuple) else (result,)
        return self.forward(*args, **kwargs)

    def extra_repr(self):
        return ""

    def __repr__(self):
        lines = [f"{type(self).__name__}({self.extra_repr()}"]
        for name, module in self._modules.items():
            body = repr(module).replace("\n", "\n  ")
            lines.append(f"  ({name}): {body}")
        return lines[0] + ")" if len(lines) == 1 else "\n".join(lines) + "\n)"
