"""Elementwise arithmetic: add, sub, mul, div, neg, pow, exp, log, sqrt, abs, where, clip.

Binary ops broadcast like NumPy; their backward sums each gradient back to its input's shape
(``sum_to``). Every backward is written with these same ops, so it can be differentiated again.
"""
import numpy as np

from .. import backend
from ..autograd import Function, Tensor, as_tensor
from .shape import sum_to


def _broadcast_shape(name, a, b):
    try:
        return np.broadcast_shapes(a.shape, b.shape)
    except ValueError:
        raise ValueError(f"{name}: shapes {a.shape} and {b.shape} cannot be broadcast "
                         "together") from None


def floating(x):
    """``x`` when it holds floats; integers and bools become the default dtype, as PyTorch
    promotes them for float ops (NumPy would hand sigmoid's float result back as ints)."""
    return x if x.dtype.kind == "f" else x.astype(backend.get_default_dtype())


def _common_dtype(a, b):
    """An integer operand takes the float operand's dtype (PyTorch: int64 * float32 is float32;
    NumPy would make it float64)."""
    if a.dtype.kind == "f" and b.dtype.kind != "f":
        return a, b.astype(a.dtype)
    if b.dtype.kind == "f" and a.dtype.kind != "f":
        return a.astype(b.dtype), b
    return a, b


class _Binary(Function):
    def forward(self, a, b):
        if a.shape != b.shape:
            _broadcast_shape(type(self).__name__.lower(), a, b)
        if a.dtype is not b.dtype:   # identity first: the usual case costs no comparison
            a, b = _common_dtype(a, b)
        return self.compute(a, b)


class Add(_Binary):
    saved_inputs = ()
    compute = staticmethod(lambda a, b: a + b)

    def backward(self, gy):
        a, b = self.inputs
        return sum_to(gy, a.shape), sum_to(gy, b.shape)


class Sub(_Binary):
    saved_inputs = ()
    compute = staticmethod(lambda a, b: a - b)

    def backward(self, gy):
        a, b = self.inputs
        return sum_to(gy, a.shape), (sum_to(-gy, b.shape) if self.needs_input_grad[1] else None)


class Mul(_Binary):
    compute = staticmethod(lambda a, b: a * b)
    # a's gradient reads b and b's reads a: an input's value matters only when the other one
    # wants a gradient (PyTorch saves no more; x.zero_() after (x * c).sum() is then allowed)
    saved_inputs = property(lambda self: tuple(i for i in (0, 1) if self.needs_input_grad[1 - i]))

    def backward(self, gy):
        a, b = self.inputs
        ga = sum_to(gy * b, a.shape) if self.needs_input_grad[0] else None
        gb = sum_to(gy * a, b.shape) if self.needs_input_grad[1] else None
        return ga, gb


class Div(_Binary):
    """a / b, true division: two integer operands give the default float dtype (PyTorch's rule)."""
    compute = staticmethod(lambda a, b: a / b if a.dtype.kind == "f" else floating(a) / floating(b))

    def backward(self, gy):
        a, b = self.inputs
        ga = sum_to(gy / b, a.shape) if self.needs_input_grad[0] else None
        gb = sum_to(-gy * a / (b * b), b.shape) if self.needs_input_grad[1] else None
        return ga, gb


class Neg(Function):
    saved_inputs = ()

    def forward(self, x):
        return -x

    def backward(self, gy):
        return -gy


def add(a, b):
    return Add.apply(a, b)


def sub(a, b):
    return Sub.apply(a, b)


def mul(a, b):
    return Mul.apply(a, b)


def div(a, b):
    return Div.apply(a, b)


def neg(x):
    return Neg.apply(x)


class PowScalar(Function):
    def forward(self, x, p):
        self.p = p
        return x ** x.dtype.type(p) if x.dtype.kind == "f" else x ** p

    def backward(self, gy):
        x, = self.inputs
        return gy * self.p * x ** (self.p - 1)


class Pow(_Binary):
    """a ** b with a tensor exponent: d/da = b a^(b-1), d/db = a^b log a (needs a > 0)."""
    saves_output = True
    compute = staticmethod(lambda a, b: a ** b)

    def backward(self, gy):
        a, b = self.inputs
        ga = sum_to(gy * b * a ** (b - 1), a.shape) if self.needs_input_grad[0] else None
        gb = sum_to(gy * self.output * log(a), b.shape) if self.needs_input_grad[1] else None
        return ga, gb


def pow(x, exponent):
    """``x ** exponent``; a number as exponent is a fixed parameter, a Tensor is differentiable."""
    if isinstance(exponent, Tensor):
        return Pow.apply(x, exponent)
    if isinstance(x, Tensor):
        return PowScalar.apply(x, p=exponent)
    return Pow.apply(as_tensor(x, like=exponent), exponent)


class Exp(Function):
    saved_inputs, saves_output = (), True

    def forward(self, x):
        return backend.array_module(x).exp(floating(x))

    def backward(self, gy):
        return gy * self.output


class Log(Function):
    def forward(self, x):
        return backend.array_module(x).log(floating(x))

    def backward(self, gy):
        return gy / self.inputs[0]


class Sqrt(Function):
    saved_inputs, saves_output = (), True

    def forward(self, x):
        return backend.array_module(x).sqrt(floating(x))

    def backward(self, gy):
        return gy / (2 * self.output)


def _constant(array):
    return Tensor._wrap(array)


class Abs(Function):
    def forward(self, x):
        return backend.array_module(x).abs(x)

    def backward(self, gy):
        x = self.inputs[0].data
        return gy * _constant(backend.array_module(x).sign(x))


def exp(x):
    return Exp.apply(x)


def log(x):
    return Log.apply(x)


def sqrt(x):
    return Sqrt.apply(x)


def abs(x):  # noqa: A001 - the name users look for (torch.abs)
    return Abs.apply(x)


class Where(Function):
    """``a`` where ``condition`` holds, else ``b`` (condition is a fixed boolean array)."""
    saved_inputs = ()

    def forward(self, a, b, condition):
        xp = backend.array_module(a, b)
        self.condition = condition
        return xp.where(condition, a, b)

    def backward(self, gy):
        a, b = self.inputs
        zero = _constant(backend.array_module(gy.data).zeros((), dtype=gy.dtype))
        ga = sum_to(where(self.condition, gy, zero), a.shape) if self.needs_input_grad[0] else None
        gb = sum_to(where(self.condition, zero, gy), b.shape) if self.needs_input_grad[1] else None
        return ga, gb


def where(condition, a, b):
    """Elementwise choice; the condition gets no gradient (it is a comparison's result)."""
    cond = condition.data if isinstance(condition, Tensor) else condition
    like = a if isinstance(a, Tensor) else b if isinstance(b, Tensor) else None
    return Where.apply(as_tensor(a, like), as_tensor(b, like), condition=cond)


class Clip(Function):
    def forward(self, x, min, max):  # noqa: A002 - PyTorch's argument names
        self.min, self.max = min, max
        return backend.array_module(x).clip(x, min, max)

    def backward(self, gy):
        x = self.inputs[0].data
        inside = (x >= self.min if self.min is not None else True)
        inside = inside & (x <= self.max) if self.max is not None else inside
        return gy * _constant(backend.array_module(x).asarray(inside, dtype=gy.dtype))


def clip(x, min=None, max=None):  # noqa: A002
    """Clamp values into [min, max]; gradient 1 inside, 0 where clamped (``torch.clamp``)."""
    if min is None and max is None:
        raise ValueError("clip needs min, max or both")
    return Clip.apply(x, min=min, max=max)


clamp = clip
