"""Matrix products: matmul and the fused linear layer ``y = x W^T + b``."""
from .. import backend
from ..autograd import Function, as_tensor
from .shape import reshape, sum_to, transpose
from .reduce import sum as _sum


class MatMul(Function):
    """``a @ b`` for a (..., n, k) and b (..., k, m); leading axes broadcast like NumPy."""

    def forward(self, a, b):
        if a.shape[-1] != b.shape[-2]:
            raise ValueError(f"matmul: shapes {a.shape} and {b.shape} are not aligned "
                             f"({a.shape[-1]} != {b.shape[-2]})")
        return backend.array_module(a, b).matmul(a, b)

    def backward(self, gy):
        a, b = self.inputs
        ga = sum_to(matmul(gy, transpose(b)), a.shape) if self.needs_input_grad[0] else None
        gb = sum_to(matmul(transpose(a), gy), b.shape) if self.needs_input_grad[1] else None
        return ga, gb


def matmul(a, b):
    """Matrix product with NumPy's rules; a 1-D operand is treated as a row (a) or column (b)."""
    a, b = as_tensor(a), as_tensor(b)
    if a.ndim == 0 or b.ndim == 0:
        raise ValueError(f"matmul needs tensors with at least 1 dimension, got shapes "
                         f"{a.shape} and {b.shape}; use * for scalars")
    if a.ndim == 1 and b.ndim == 1:
        return reshape(MatMul.apply(reshape(a, (1, -1)), reshape(b, (-1, 1))), ())
    if a.ndim == 1:
        y = MatMul.apply(reshape(a, (1, -1)), b)
        return reshape(y, y.shape[:-2] + y.shape[-1:])
    if b.ndim == 1:
        return reshape(MatMul.apply(a, reshape(b, (-1, 1))), a.shape[:-1])
    return MatMul.apply(a, b)


class Linear(Function):
    """``y = x W^T + b`` for x (N, in), W (out, in), b (out,): one op instead of three, since
    per-op overhead matters for small MLPs."""
    saved_inputs = (0, 1)   # x and W; the bias gradient needs only gy

    def forward(self, x, w, b=None):
        if x.ndim != 2 or w.ndim != 2 or x.shape[1] != w.shape[1]:
            raise ValueError(f"linear: input of shape {x.shape} does not fit a weight of shape "
                             f"{w.shape} (expected input (N, {w.shape[1] if w.ndim == 2 else '?'}))")
        if b is not None and b.shape != (w.shape[0],):
            raise ValueError(f"linear: bias of shape {b.shape} does not match {w.shape[0]} "
                             "output features")
        y = x @ w.T
        if b is not None:
            y += b
        return y

    def backward(self, gy):
        x, w = self.inputs[:2]
        need = self.needs_input_grad
        gx = matmul(gy, w) if need[0] else None
        gw = matmul(transpose(gy), x) if need[1] else None
        if len(self.inputs) == 2:
            return gx, gw
        return gx, gw, (_sum(gy, axis=0) if need[2] else None)


def linear(x, weight, bias=None):
    """``x @ weight.T + bias`` (``torch.nn.functional.linear``); x of shape (..., in)."""
    x = as_tensor(x)
    lead = x.shape[:-1]
    if x.ndim != 2:
        x = reshape(x, (-1, x.shape[-1]))
    y = Linear.apply(x, weight) if bias is None else Linear.apply(x, weight, bias)
    return y if len(lead) == 1 else reshape(y, lead + (y.shape[-1],))
