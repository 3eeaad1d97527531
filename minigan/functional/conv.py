"""2-D convolution and transposed convolution, NCHW, with PyTorch's signatures.

Three ops close under differentiation, which is what makes gradients of gradients work through
convolutions (a WGAN-GP critic needs them):

    Conv2d(x, w)               y  = x (*) w                      (cross-correlation)
    ConvTranspose2d(y, w)      x' = the adjoint of x -> x (*) w   (also conv2d's input gradient)
    Conv2dWeightGrad(x, gy)    gw = the adjoint of w -> x (*) w   (conv2d's weight gradient)

Each one's backward is written with the other two. The raw array work is in ``minigan.kernels``.
"""
import math
import operator

from .. import autograd, kernels
from ..autograd import Function, Tensor, as_tensor
from .activation import LeakyReLUGrad, leaky_relu
from .reduce import sum as _sum


def _pair(value, name, op="conv2d"):
    """(int, int) from an int (Python or NumPy) or a pair of them; floats and bools are refused
    (a stride of 1.5 has no meaning, PyTorch refuses it too)."""
    try:
        pair = (value, value) if hasattr(value, "__index__") else tuple(value)
    except TypeError:
        pair = ()
    if len(pair) != 2 or any(isinstance(v, bool) or not hasattr(v, "__index__") for v in pair):
        raise TypeError(f"{op}: {name} must be an int or a pair of ints, got {value!r} "
                        f"({type(value).__name__})")
    pair = (operator.index(pair[0]), operator.index(pair[1]))
    if min(pair) < 0:
        raise ValueError(f"{op}: {name} must be a non-negative int or a pair of them, got "
                         f"{value!r}")
    return pair


# Larger than any address space (2^62 bytes): a padding of 2^40 would otherwise fail deep in
# NumPy with "array is too big", which does not say which argument was wrong.
_MAX_BYTES = 1 << 62


def _check_size(op, shape, itemsize, stride, padding):
    if math.prod(shape) * itemsize > _MAX_BYTES:
        raise ValueError(f"{op}: stride {stride} and padding {padding} give an output of shape "
                         f"{shape}, too large to allocate")


def _check_kernel(op, w):
    if 0 in w.shape:
        raise ValueError(f"{op}: weight of shape {w.shape} is empty; kernel sizes and channel "
                         "counts must be positive")


def _add_bias(y, b):
    if b is not None:
        y += b.reshape(1, -1, 1, 1)
    return y


def _bias_grad(gy):
    return _sum(gy, axis=(0, 2, 3))


class Conv2d(Function):
    saved_inputs = (0, 1)   # x and w; the bias gradient needs only gy

    def forward(self, x, w, b=None, stride=(1, 1), padding=(0, 0)):
        self.stride, self.padding = stride, padding
        # When w will want a gradient, keep x's gathered patches (im2col) for it: the weight
        # gradient multiplies exactly those, so gathering them again would repeat the work.
        if self.needs_input_grad[1]:
            y, self.patches = kernels.conv2d(x, w, stride, padding, keep_patches=True)
        else:
            y, self.patches = kernels.conv2d(x, w, stride, padding), None
        return _add_bias(y, b)

    def backward(self, gy):
        x, w = self.inputs[:2]
        need = self.needs_input_grad
        patches, self.patches = self.patches, None   # used once; the memory goes back now
        gx = (ConvTranspose2d.apply(gy, w, stride=self.stride, padding=self.padding,
                                    out_hw=x.shape[2:]) if need[0] else None)
        gw = (Conv2dWeightGrad.apply(x, gy, kernel_hw=w.shape[2:], stride=self.stride,
                                     padding=self.padding, patches=patches) if need[1] else None)
        if len(self.inputs) == 2:
            return gx, gw
        return gx, gw, (_bias_grad(gy) if need[2] else None)


class Conv2dLeakyReLU(Conv2d):
    """z = leaky_relu(conv2d(x, w), negative_slope), slope >= 0, no bias: the activation is
    applied to each chunk of the convolution's output while it is in cache, instead of in a
    pass of its own. Backward: gy = gz where z > 0, else slope * gz (z > 0 exactly where the
    convolution's output is), then Conv2d's backward; without create_graph the kernels apply
    that derivative to each chunk of gz as they read it."""

    def forward(self, x, w, stride=(1, 1), padding=(0, 0), negative_slope=0.0):
        self.stride, self.padding, self.slope = stride, padding, negative_slope
        if self.needs_input_grad[1]:
            self.z, self.patches = kernels.conv2d(x, w, stride, padding, keep_patches=True,
                                                  negative_slope=negative_slope)
        else:
            self.z = kernels.conv2d(x, w, stride, padding, negative_slope=negative_slope)
            self.patches = None
        return self.z

    def backward(self, gz):
        if autograd.is_grad_enabled():
            return super().backward(LeakyReLUGrad.apply(gz, x=self.z, negative_slope=self.slope))
        x, w = self.inputs
        need = self.needs_input_grad
        patches, self.patches = self.patches, None
        activation = (self.z, self.slope)
        gx = (kernels.conv2d_grad_input(gz.data, w.data, x.shape[2:], self.stride, self.padding,
                                        activation=activation) if need[0] else None)
        gw = (kernels.conv2d_grad_weight(x.data, gz.data, w.shape[2:], self.stride,
                                         self.padding, patches=patches, activation=activation)
              if need[1] else None)
        return tuple(None if g is None else Tensor._wrap(g) for g in (gx, gw))


class ConvTranspose2d(Function):
    """y (N, Cout, out_hw) from x (N, Cin, H, W) and w (Cin, Cout, kh, kw)."""
    saved_inputs = (0, 1)

    def forward(self, x, w, b=None, stride=(1, 1), padding=(0, 0), out_hw=None):
        self.stride, self.padding = stride, padding
        return _add_bias(kernels.conv2d_grad_input(x, w, tuple(out_hw), stride, padding), b)

    def backward(self, gy):
        x, w = self.inputs[:2]
        need = self.needs_input_grad
        if need[0] and need[1] and not autograd.is_grad_enabled():
            # Both gradients gather the same patches of gy (the input gradient is conv2d(gy, w),
            # the weight gradient multiplies gy's patches by x): gather them once, as Conv2d
            # does for its forward and weight gradient. With create_graph the ops below run.
            gx, patches = kernels.conv2d(gy.data, w.data, self.stride, self.padding,
                                         keep_patches=True)
            gw = kernels.conv2d_grad_weight(gy.data, x.data, w.shape[2:], self.stride,
                                            self.padding, patches=patches)
            gx, gw = Tensor._wrap(gx), Tensor._wrap(gw)
        else:
            gx = Conv2d.apply(gy, w, stride=self.stride, padding=self.padding) if need[0] else None
            gw = (Conv2dWeightGrad.apply(gy, x, kernel_hw=w.shape[2:], stride=self.stride,
                                         padding=self.padding) if need[1] else None)
        if len(self.inputs) == 2:
            return gx, gw
        return gx, gw, (_bias_grad(gy) if need[2] else None)


class Conv2dWeightGrad(Function):
    """gw[o, c, i, j] = sum over n, p, q of gy[n, o, p, q] * x_padded[n, c, p*s + i, q*s + j].

    Bilinear in (x, gy), so its backward is a convolution in each argument."""

    def forward(self, x, gy, kernel_hw, stride, padding, patches=None):
        self.kernel_hw, self.stride, self.padding = tuple(kernel_hw), stride, padding
        return kernels.conv2d_grad_weight(x, gy, self.kernel_hw, stride, padding, patches=patches)

    def backward(self, ggw):
        x, gy = self.inputs
        need = self.needs_input_grad
        gx = (ConvTranspose2d.apply(gy, ggw, stride=self.stride, padding=self.padding,
                                    out_hw=x.shape[2:]) if need[0] else None)
        ggy = Conv2d.apply(x, ggw, stride=self.stride, padding=self.padding) if need[1] else None
        return gx, ggy


def _check(name, x, w, b, weight_in_axis):
    if x.ndim != 4:
        raise ValueError(f"{name} expects a 4-D input (N, C, H, W), got shape {x.shape}")
    if w.ndim != 4:
        raise ValueError(f"{name} expects a 4-D weight, got shape {w.shape}")
    if x.shape[1] != w.shape[weight_in_axis]:
        raise ValueError(f"{name}: input has {x.shape[1]} channels but the weight of shape "
                         f"{w.shape} expects {w.shape[weight_in_axis]}")
    if x.dtype != w.dtype:
        raise TypeError(f"{name}: input dtype {x.dtype} and weight dtype {w.dtype} differ")
    out_channels = w.shape[1 - weight_in_axis]
    if b is not None and b.shape != (out_channels,):
        raise ValueError(f"{name}: bias of shape {b.shape} does not match {out_channels} "
                         "output channels")


def conv2d(input, weight, bias=None, stride=1, padding=0):  # noqa: A002 - PyTorch's names
    """Cross-correlate (N, C, H, W) with weight (O, C, kh, kw) -> (N, O, Ho, Wo),
    Ho = (H + 2 ph - kh) // sh + 1."""
    x, w, b, stride, padding = _conv2d_args(input, weight, bias, stride, padding)
    args = (x, w) if b is None else (x, w, b)
    return Conv2d.apply(*args, stride=stride, padding=padding)


def conv2d_leaky_relu(input, weight, bias=None, stride=1, padding=0,  # noqa: A002
                      negative_slope=0.0):
    """``leaky_relu(conv2d(input, weight, bias, stride, padding), negative_slope)`` (ReLU:
    slope 0), the same numbers; without a bias and with negative_slope >= 0 computed by one
    fused op (no pass of its own for the activation), otherwise by the two ops in turn."""
    slope = float(negative_slope)
    if bias is not None or not slope >= 0:
        return leaky_relu(conv2d(input, weight, bias, stride, padding), slope)
    x, w, _, stride, padding = _conv2d_args(input, weight, None, stride, padding)
    return Conv2dLeakyReLU.apply(x, w, stride=stride, padding=padding, negative_slope=slope)


def _conv2d_args(input, weight, bias, stride, padding):  # noqa: A002
    """conv2d's arguments as (x, w, b or None, stride, padding) once every check has passed."""
    x, w = as_tensor(input), as_tensor(weight)
    b = None if bias is None else as_tensor(bias)
    stride, padding = _pair(stride, "stride"), _pair(padding, "padding")
    _check("conv2d", x, w, b, weight_in_axis=1)
    _check_kernel("conv2d", w)
    if 0 in stride:
        raise ValueError(f"conv2d: stride must be positive, got {stride}")
    out_hw = []
    for d, dim in enumerate(("height", "width")):
        padded = x.shape[2 + d] + 2 * padding[d]
        if w.shape[2 + d] > padded:
            raise ValueError(f"conv2d: kernel {dim} {w.shape[2 + d]} is larger than the padded "
                             f"input {dim} {padded} (input {x.shape[2 + d]}, padding {padding[d]})")
        out_hw.append((padded - w.shape[2 + d]) // stride[d] + 1)
    _check_size("conv2d", (x.shape[0], w.shape[0], *out_hw), x.dtype.itemsize, stride, padding)
    _check_size("conv2d", (x.shape[0], x.shape[1], x.shape[2] + 2 * padding[0],
                           x.shape[3] + 2 * padding[1]), x.dtype.itemsize, stride, padding)
    return x, w, b, stride, padding


def conv_transpose2d(input, weight, bias=None, stride=1, padding=0,  # noqa: A002
                     output_padding=0):
    """The adjoint of conv2d: (N, Cin, H, W) with weight (Cin, Cout, kh, kw) -> (N, Cout, Ho, Wo),
    Ho = (H - 1) sh - 2 ph + kh + output_padding (PyTorch's rule)."""
    x, w = as_tensor(input), as_tensor(weight)
    b = None if bias is None else as_tensor(bias)
    stride = _pair(stride, "stride", "conv_transpose2d")
    padding = _pair(padding, "padding", "conv_transpose2d")
    output_padding = _pair(output_padding, "output_padding", "conv_transpose2d")
    _check("conv_transpose2d", x, w, b, weight_in_axis=0)
    _check_kernel("conv_transpose2d", w)
    if 0 in stride:
        raise ValueError(f"conv_transpose2d: stride must be positive, got {stride}")
    out_hw = []
    for d in range(2):
        if output_padding[d] >= stride[d]:
            raise ValueError(f"conv_transpose2d: output_padding {output_padding} must be smaller "
                             f"than stride {stride} in each dimension")
        size = (x.shape[2 + d] - 1) * stride[d] - 2 * padding[d] + w.shape[2 + d] + output_padding[d]
        if size <= 0:
            raise ValueError(f"conv_transpose2d: output size {size} is not positive (input "
                             f"{x.shape[2:]}, kernel {w.shape[2:]}, stride {stride}, "
                             f"padding {padding})")
        out_hw.append(size)
    _check_size("conv_transpose2d", (x.shape[0], w.shape[1], *out_hw), x.dtype.itemsize, stride,
                padding)
    args = (x, w) if b is None else (x, w, b)
    return ConvTranspose2d.apply(*args, stride=stride, padding=padding, out_hw=tuple(out_hw))
