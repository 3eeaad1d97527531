"""Operators and methods of ``Tensor``, attached here so that the Tensor class (in autograd.py)
does not import the ops above it: ``a + b`` calls ``functional.add(a, b)``, ``x.sum()`` calls
``functional.sum(x)``, and so on."""
from .. import backend
from ..autograd import Tensor, as_tensor
from . import activation as A
from . import elementwise as E
from . import linalg as L
from . import reduce as R
from . import shape as S


def _reflected(op):
    return lambda self, other: op(as_tensor(other, like=self), self)


def _compare(name):
    def compare(self, other):
        other = other.data if isinstance(other, Tensor) else other
        return Tensor._wrap(getattr(self.data, name)(other))
    compare.__name__ = name
    return compare


def _argmax(self, dim=None, keepdim=False):
    xp = backend.array_module(self.data)
    return Tensor._wrap(xp.argmax(self.data, axis=dim, keepdims=keepdim))


def _expand(self, *shape):
    if len(shape) == 1 and isinstance(shape[0], (tuple, list)):
        shape = tuple(shape[0])
    lead = len(shape) - self.ndim
    shape = tuple(self.shape[i - lead] if s == -1 else s for i, s in enumerate(shape))
    return S.broadcast_to(self, shape)


_METHODS = {
    "__add__": E.add, "__radd__": _reflected(E.add),
    "__sub__": E.sub, "__rsub__": _reflected(E.sub),
    "__mul__": E.mul, "__rmul__": _reflected(E.mul),
    "__truediv__": E.div, "__rtruediv__": _reflected(E.div),
    "__pow__": E.pow, "__rpow__": _reflected(E.pow),
    "__matmul__": L.matmul, "__rmatmul__": _reflected(L.matmul),
    "__neg__": E.neg, "__abs__": E.abs,
    "__getitem__": S.getitem,
    "__lt__": _compare("__lt__"), "__le__": _compare("__le__"),
    "__gt__": _compare("__gt__"), "__ge__": _compare("__ge__"),
    "__eq__": _compare("__eq__"), "__ne__": _compare("__ne__"),
    "add": E.add, "sub": E.sub, "mul": E.mul, "div": E.div, "neg": E.neg, "pow": E.pow,
    "exp": E.exp, "log": E.log, "sqrt": E.sqrt, "abs": E.abs, "clip": E.clip, "clamp": E.clip,
    "matmul": L.matmul,
    "sum": R.sum, "mean": R.mean, "max": R.max, "min": R.min, "var": R.var, "std": R.std,
    "reshape": S.reshape, "view": S.reshape, "flatten": S.flatten, "permute": S.permute,
    "transpose": S.transpose, "unsqueeze": S.unsqueeze, "squeeze": S.squeeze,
    "broadcast_to": S.broadcast_to, "expand": _expand,
    "relu": A.relu, "leaky_relu": A.leaky_relu, "sigmoid": A.sigmoid, "tanh": A.tanh,
    "softplus": A.softplus, "log_softmax": A.log_softmax, "softmax": A.softmax,
    "argmax": _argmax,
}

for _name, _fn in _METHODS.items():
    setattr(Tensor, _name, _fn)
Tensor.T = property(lambda self: S.permute(self, tuple(reversed(range(self.ndim)))))
