"""Activations: relu, leaky_relu (fused kernels), sigmoid, tanh, softplus, log_sigmoid,
log_softmax, softmax, dropout.

The sigmoid and softplus forwards are written in their numerically stable forms: exp is only ever
taken of a non-positive number, so logits of +-100 (or +-1000) give exact 0/1 and no overflow.
"""
from .. import backend, kernels
from ..autograd import Function, Tensor, as_tensor
from .elementwise import floating, where


class LeakyReLU(Function):
    def forward(self, x, negative_slope):
        self.slope = negative_slope
        return kernels.leaky_relu(floating(x), negative_slope)

    def backward(self, gy):
        return LeakyReLUGrad.apply(gy, x=self.inputs[0].data, negative_slope=self.slope)


class LeakyReLUGrad(Function):
    """``gy * (1 if x > 0 else slope)``: linear in gy, piecewise constant in x, so its own
    gradient is the same mask again (and zero with respect to x)."""
    saved_inputs = ()

    def forward(self, gy, x, negative_slope):
        self.x, self.slope = x, negative_slope
        return kernels.leaky_relu_grad(gy, x, negative_slope)

    def backward(self, ggx):
        return LeakyReLUGrad.apply(ggx, x=self.x, negative_slope=self.slope)


def leaky_relu(x, negative_slope=0.01):
    """max(x, 0) + negative_slope * min(x, 0)."""
    if type(negative_slope) is not float:   # the usual float skips the checks
        if isinstance(negative_slope, (str, bytes, bool)) or not hasattr(negative_slope,
                                                                         "__float__"):
            raise TypeError(f"leaky_relu: negative_slope must be a number, got "
                            f"{negative_slope!r}")
        negative_slope = float(negative_slope)
    return LeakyReLU.apply(x, negative_slope=negative_slope)


def relu(x):
    """max(x, 0); its gradient at exactly 0 is taken as 0, as in PyTorch."""
    return LeakyReLU.apply(x, negative_slope=0.0)


def _stable_sigmoid(x):
    xp = backend.array_module(x)
    e = xp.exp(-abs(x))                    # in (0, 1]: never overflows
    return xp.where(x >= 0, 1 / (1 + e), e / (1 + e)).astype(x.dtype, copy=False)


class Sigmoid(Function):
    saved_inputs, saves_output = (), True

    def forward(self, x):
        return _stable_sigmoid(floating(x))

    def backward(self, gy):
        y = self.output
        return gy * y * (1 - y)


class Tanh(Function):
    saved_inputs, saves_output = (), True

    def forward(self, x):
        return backend.array_module(x).tanh(floating(x))

    def backward(self, gy):
        y = self.output
        return gy * (1 - y * y)


class Softplus(Function):
    """log(1 + e^x) = max(x, 0) + log1p(e^-|x|); derivative sigmoid(x)."""

    def forward(self, x):
        xp = backend.array_module(x)
        x = floating(x)
        return (xp.maximum(x, 0) + xp.log1p(xp.exp(-abs(x)))).astype(x.dtype, copy=False)

    def backward(self, gy):
        return gy * sigmoid(self.inputs[0])


def sigmoid(x):
    """1 / (1 + e^-x)."""
    return Sigmoid.apply(x)


def tanh(x):
    return Tanh.apply(x)


def softplus(x):
    return Softplus.apply(x)


def log_sigmoid(x):
    """log(sigmoid(x)) = -softplus(-x), finite for any x."""
    return -softplus(-as_tensor(x))


class LogSoftmax(Function):
    """x - logsumexp(x) along ``axis``; backward gy - softmax(x) * sum(gy)."""
    saved_inputs, saves_output = (), True

    def forward(self, x, axis):
        xp = backend.array_module(x)
        self.axis = axis
        x = floating(x)
        shifted = x - x.max(axis=axis, keepdims=True)
        return shifted - xp.log(xp.exp(shifted).sum(axis=axis, keepdims=True))

    def backward(self, gy):
        softmax_x = self.output.exp()
        return gy - softmax_x * gy.sum(axis=self.axis, keepdims=True)


def log_softmax(x, dim=-1):
    x = as_tensor(x)
    if isinstance(dim, bool) or not hasattr(dim, "__index__") or not -x.ndim <= dim < max(x.ndim, 1):
        raise IndexError(f"log_softmax: dim {dim!r} is out of range for a tensor of shape "
                         f"{x.shape} (expected an int in [{-x.ndim}, {x.ndim - 1}])")
    return LogSoftmax.apply(x, axis=dim % max(x.ndim, 1))


def softmax(x, dim=-1):
    return log_softmax(x, dim).exp()


def dropout(x, p=0.5, training=True):
    """Zero each element with probability p and scale the rest by 1/(1-p) (inverted dropout),
    so evaluation needs no rescaling. Draws from minigan's seeded generator for x's device."""
    if not 0 <= p <= 1:
        raise ValueError(f"dropout probability must be in [0, 1], got {p}")
    x = as_tensor(x)
    if not training or p == 0:
        return x
    if p == 1:
        return x * 0
    keep = backend.rng(x.device).random(x.shape) >= p
    mask = Tensor._wrap((keep / (1 - p)).astype(x.dtype))
    return x * mask


__all__ = ["leaky_relu", "relu", "sigmoid", "tanh", "softplus", "log_sigmoid", "log_softmax",
           "softmax", "dropout", "where"]
