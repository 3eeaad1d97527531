"""Raw-array kernels: convolution, batch normalisation, LeakyReLU, on NumPy or CuPy arrays.

Arrays in, new arrays out, no autograd. Images are NCHW, weights (O, C, kh, kw); every array of a
call must be float32 or float64, all the same. Each function here checks what would otherwise
give a silently wrong answer (number of dimensions, dtypes, channel counts, sizes that do not fit
together), makes its arguments C-contiguous, then calls the implementation for the arrays' device:
``cpu`` (NumPy + numba) or ``gpu`` (CuPy, imported only when a CuPy array arrives).

Functions (shapes: x (N, C, H, W), w (O, C, kh, kw), gy (N, O, Ho, Wo),
Ho = (H + 2*ph - kh)//sh + 1, Wo likewise):

* ``conv2d(x, w, stride, padding) -> y``: cross-correlation, zero padding, no bias; with
  ``keep_patches=True`` -> (y, patches), patches for conv2d_grad_weight to reuse (or None);
  with ``negative_slope`` a LeakyReLU (slope >= 0) applied to y in the same pass.
* ``conv2d_grad_input(gy, w, input_hw, stride, padding) -> gx``: the adjoint of conv2d in x; also
  ConvTranspose2d's forward with weight (in=O, out=C, kh, kw), ``input_hw`` picking the output size.
* ``conv2d_grad_weight(x, gy, kernel_hw, stride, padding, patches=None) -> gw`` (O, C, kh, kw).
  Both gradients take ``activation=(z, slope)`` when gy is the gradient at z, the output of
  conv2d(..., negative_slope=slope): the activation's derivative is applied to gy first.
* ``batchnorm_stats(x) -> (mean, var)`` per channel, shapes (C,), var biased; x (N, C) or NCHW.
* ``batchnorm_forward(x, mean, invstd, weight, bias) -> y = (x - mean)*invstd*weight + bias``.
* ``batchnorm_backward(gy, x, mean, invstd, weight) -> (gx, gweight, gbias)``, training mode.
* ``leaky_relu(x, slope) -> y``; ``leaky_relu_grad(gy, x, slope) -> gx`` (ReLU is slope 0).
* ``batchnorm_leaky_relu_forward(x, mean, invstd, weight, bias, slope) -> z`` and
  ``batchnorm_leaky_relu_backward(gz, z, x, mean, invstd, weight, slope) -> (gx, gw, gb)``:
  batch norm and a LeakyReLU with slope >= 0 in one pass each way.
* ``batchnorm_train_forward(x, weight, bias, eps, slope=1) -> (z, mean, var, invstd)``: the
  statistics and the forward above in one call (training mode; slope 1: no activation).
* ``adam_step(p, g, exp_avg, exp_avg_sq, lr, beta1, beta2, eps, weight_decay, step)``: Adam's
  update in place, in one pass (NumPy arrays only).
"""
import numpy as np

from .. import backend

# native-order float32 and float64, compared as dtypes: str(dtype) costs ~6 us in NumPy 2.4,
# which made this check alone ~1.5 ms of each DCGAN iteration (~110 arrays); == ~0.07 us
_FLOATS = (np.dtype("float32"), np.dtype("float64"))


def _impl(*arrays):
    """The module that runs these arrays: cpu for NumPy, gpu for CuPy."""
    if any(backend.is_cupy_array(a) for a in arrays):
        from . import gpu
        return gpu
    from . import cpu
    return cpu


def _prepare(names, arrays, ndims=None, writeable=False):
    """Check that the arrays share one device and one float dtype (and their ndims), return them
    C-contiguous (any layout comes in: Fortran order, negative strides, views; a copy is made
    only where needed), and writeable too when ``writeable`` (kernels that may use an input as a
    work buffer: numba refuses to compile them for a read-only array)."""
    xp = backend.array_module(*arrays)
    devices = {backend.device_of(a) for a in arrays}
    if len(devices) > 1:
        where = ", ".join(f"{n} on {backend.device_of(a)}" for n, a in zip(names, arrays))
        raise ValueError(f"arrays are on different devices: {where}")
    first = None
    out = []
    for i, (name, a) in enumerate(zip(names, arrays)):
        if not hasattr(a, "dtype") or not hasattr(a, "shape"):
            raise TypeError(f"{name} must be an array, got {type(a).__name__}")
        if a.dtype not in _FLOATS:
            raise TypeError(f"{name} must be float32 or float64, got {a.dtype}")
        if first is None:
            first = (name, a.dtype)
        elif a.dtype != first[1]:
            raise TypeError(f"dtype mismatch: {first[0]} is {first[1]} but {name} is {a.dtype}")
        if ndims is not None and a.ndim not in ndims[i]:
            want = " or ".join(f"{d}-D" for d in ndims[i])
            raise ValueError(f"{name} must be {want}, got shape {tuple(a.shape)}")
        a = xp.asarray(a, order="C")  # ascontiguousarray would turn 0-d into (1,)
        if writeable and xp is np and not a.flags.writeable:   # CuPy arrays always are
            a = a.copy()   # np.load(mmap_mode="r"), np.frombuffer, a broadcast...
        out.append(a)
    return out


def _pair(v, name, minimum):
    """(int, int) from an int or a pair of ints, each >= minimum."""
    try:
        t = (v, v) if hasattr(v, "__index__") else tuple(v)
        ok = len(t) == 2 and all(hasattr(e, "__index__") for e in t)
    except TypeError:
        ok = False
    if not ok:
        raise ValueError(f"{name} must be an int or a pair of ints, got {v!r}")
    t = (t[0].__index__(), t[1].__index__())
    if min(t) < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {t}")
    return t


def _conv_out_hw(input_hw, kernel_hw, stride, padding):
    """(Ho, Wo), or ValueError when the kernel does not fit in the padded input."""
    (H, W), (kh, kw), (sh, sw), (ph, pw) = input_hw, kernel_hw, stride, padding
    if H + 2 * ph < kh or W + 2 * pw < kw:
        raise ValueError(f"kernel {kh}x{kw} is larger than the padded input "
                         f"{H + 2 * ph}x{W + 2 * pw} (input {H}x{W}, padding {ph},{pw})")
    return (H + 2 * ph - kh) // sh + 1, (W + 2 * pw - kw) // sw + 1


def _check_gy(gy, N, O, out_hw, what):
    if tuple(gy.shape) != (N, O) + tuple(out_hw):
        raise ValueError(f"gy has shape {tuple(gy.shape)} but {what} gives output shape "
                         f"{(N, O) + tuple(out_hw)}")


# --- convolution --------------------------------------------------------------------------------

def conv2d(x, w, stride=(1, 1), padding=(0, 0), keep_patches=False, negative_slope=None):
    """y (N, O, Ho, Wo) = sum_{c,a,b} w[o,c,a,b] * x[n, c, i*sh-ph+a, j*sw-pw+b] (zero padded).

    keep_patches=True returns (y, patches): what conv2d_grad_weight(x, ...) can reuse instead of
    gathering x's patches again (None where the kernel keeps nothing: the GPU, dense kernels).
    negative_slope (>= 0): y is leaky_relu(conv2d(x, w), negative_slope) instead, applied on the
    CPU while each chunk of images is still in cache."""
    x, w = _prepare(("x", "w"), (x, w), ((4,), (4,)), writeable=True)
    stride, padding = _pair(stride, "stride", 1), _pair(padding, "padding", 0)
    if x.shape[1] != w.shape[1]:
        raise ValueError(f"conv2d: input x {tuple(x.shape)} has {x.shape[1]} channels but weight "
                         f"{tuple(w.shape)} expects {w.shape[1]}")
    _conv_out_hw(x.shape[2:], w.shape[2:], stride, padding)
    if negative_slope is not None:
        negative_slope = _check_fusable_slope(negative_slope, "conv2d")
    return _impl(x, w).conv2d(x, w, stride, padding, keep_patches=keep_patches,
                              negative_slope=negative_slope)


def _activation_arg(op, gy, activation):
    """activation = (z, negative_slope), checked: gy is the gradient at z, the output of
    leaky_relu(conv2d(...), negative_slope) (slope >= 0), and the kernel applies the
    activation's derivative (1 where z > 0, else the slope) to gy first."""
    if activation is None:
        return None
    z, slope = activation
    _, z = _prepare(("gy", "z"), (gy, z), ((4,), (4,)))   # one device, one dtype
    if z.shape != gy.shape:
        raise ValueError(f"{op}: the activation's output z {tuple(z.shape)} does not match gy "
                         f"{tuple(gy.shape)}")
    return z, _check_fusable_slope(slope, "conv2d")


def conv2d_grad_input(gy, w, input_hw, stride=(1, 1), padding=(0, 0), activation=None):
    """gx (N, C, H, W), the adjoint of conv2d in x applied to gy; (H, W) = input_hw.
    activation = (z, negative_slope): gy is the gradient at z = leaky_relu(conv2d(x, w)), whose
    derivative is applied to gy first (on the CPU chunk by chunk, while it is in cache)."""
    gy, w = _prepare(("gy", "w"), (gy, w), ((4,), (4,)), writeable=True)
    stride, padding = _pair(stride, "stride", 1), _pair(padding, "padding", 0)
    input_hw = _pair(input_hw, "input_hw", 1)
    if gy.shape[1] != w.shape[0]:
        raise ValueError(f"conv2d_grad_input: gy {tuple(gy.shape)} has {gy.shape[1]} channels but "
                         f"weight {tuple(w.shape)} has {w.shape[0]} output channels")
    out_hw = _conv_out_hw(input_hw, w.shape[2:], stride, padding)
    _check_gy(gy, gy.shape[0], w.shape[0], out_hw,
              f"input {input_hw} with weight {tuple(w.shape)}, stride {stride}, padding {padding}")
    activation = _activation_arg("conv2d_grad_input", gy, activation)
    return _impl(gy, w).conv2d_grad_input(gy, w, input_hw, stride, padding, activation=activation)


def conv2d_grad_weight(x, gy, kernel_hw, stride=(1, 1), padding=(0, 0), patches=None,
                       activation=None):
    """gw (O, C, kh, kw) = sum_{n,i,j} gy[n,o,i,j] * x[n, c, i*sh-ph+a, j*sw-pw+b].

    patches: what conv2d(x, ..., keep_patches=True) returned with the same x, or None.
    activation: as for conv2d_grad_input."""
    x, gy = _prepare(("x", "gy"), (x, gy), ((4,), (4,)), writeable=True)
    stride, padding = _pair(stride, "stride", 1), _pair(padding, "padding", 0)
    kernel_hw = _pair(kernel_hw, "kernel_hw", 1)
    out_hw = _conv_out_hw(x.shape[2:], kernel_hw, stride, padding)
    _check_gy(gy, x.shape[0], gy.shape[1], out_hw,
              f"input {tuple(x.shape)} with kernel {kernel_hw}, stride {stride}, padding {padding}")
    activation = _activation_arg("conv2d_grad_weight", gy, activation)
    return _impl(x, gy).conv2d_grad_weight(x, gy, kernel_hw, stride, padding, patches=patches,
                                           activation=activation)


# --- batch normalisation ------------------------------------------------------------------------

def _check_not_empty(x):
    if x.size == 0:
        raise ValueError(f"batchnorm needs at least one value per channel, got shape {tuple(x.shape)}")


def _check_channel_vectors(C, x_shape, **vectors):
    for name, v in vectors.items():
        if v is not None and tuple(v.shape) != (C,):
            raise ValueError(f"{name} has shape {tuple(v.shape)} but x {tuple(x_shape)} has "
                             f"{C} channels: expected ({C},)")


def batchnorm_stats(x):
    """(mean, var) per channel of x (N, C) or (N, C, H, W), shapes (C,), var biased."""
    (x,) = _prepare(("x",), (x,), ((2, 4),))
    _check_not_empty(x)
    return _impl(x).batchnorm_stats(x)


def batchnorm_forward(x, mean, invstd, weight=None, bias=None):
    """y = (x - mean[c]) * invstd[c] * weight[c] + bias[c]; weight/bias None mean 1/0."""
    names = ["x", "mean", "invstd"] + [n for n, v in (("weight", weight), ("bias", bias)) if v is not None]
    given = [v for v in (x, mean, invstd, weight, bias) if v is not None]
    arrays = dict(zip(names, _prepare(names, given, [(2, 4)] + [(1,)] * (len(given) - 1))))
    x = arrays["x"]
    _check_not_empty(x)
    _check_channel_vectors(x.shape[1], x.shape, mean=arrays["mean"], invstd=arrays["invstd"],
                           weight=arrays.get("weight"), bias=arrays.get("bias"))
    return _impl(x).batchnorm_forward(x, arrays["mean"], arrays["invstd"], arrays.get("weight"),
                                      arrays.get("bias"))


def batchnorm_backward(gy, x, mean, invstd, weight=None):
    """(gx, gweight, gbias) of training-mode batchnorm, xhat = (x - mean)*invstd, M = N*H*W:
    gbias = sum gy, gweight = sum gy*xhat, gx = weight*invstd/M * (M*gy - gbias - xhat*gweight)."""
    names = ["gy", "x", "mean", "invstd"] + (["weight"] if weight is not None else [])
    given = [v for v in (gy, x, mean, invstd, weight) if v is not None]
    arrays = dict(zip(names, _prepare(names, given, [(2, 4), (2, 4)] + [(1,)] * (len(given) - 2))))
    gy, x = arrays["gy"], arrays["x"]
    if gy.shape != x.shape:
        raise ValueError(f"gy shape {tuple(gy.shape)} differs from x shape {tuple(x.shape)}")
    _check_not_empty(x)
    _check_channel_vectors(x.shape[1], x.shape, mean=arrays["mean"], invstd=arrays["invstd"],
                           weight=arrays.get("weight"))
    return _impl(gy, x).batchnorm_backward(gy, x, arrays["mean"], arrays["invstd"],
                                           arrays.get("weight"))


# --- activations --------------------------------------------------------------------------------

def leaky_relu(x, negative_slope=0.01):
    """y = x if x > 0 else negative_slope * x, elementwise."""
    (x,) = _prepare(("x",), (x,))
    return _impl(x).leaky_relu(x, float(negative_slope))


def leaky_relu_grad(gy, x, negative_slope=0.01):
    """gx = gy * (1 if x > 0 else negative_slope), elementwise."""
    gy, x = _prepare(("gy", "x"), (gy, x))
    if gy.shape != x.shape:
        raise ValueError(f"gy shape {tuple(gy.shape)} differs from x shape {tuple(x.shape)}")
    return _impl(gy, x).leaky_relu_grad(gy, x, float(negative_slope))


# --- batch normalisation followed by LeakyReLU, fused ---------------------------------------------

def _check_fusable_slope(negative_slope, op="batchnorm"):
    slope = float(negative_slope)
    if not slope >= 0:
        raise ValueError(f"the fused {op} + leaky_relu needs negative_slope >= 0 (its "
                         f"backward reads the activation's sign from its output), got "
                         f"{negative_slope}")
    return slope


def batchnorm_leaky_relu_forward(x, mean, invstd, weight=None, bias=None, negative_slope=0.0):
    """z = leaky_relu(batchnorm_forward(x, mean, invstd, weight, bias), negative_slope) in one
    pass; negative_slope >= 0 (0 is ReLU)."""
    slope = _check_fusable_slope(negative_slope)
    names = ["x", "mean", "invstd"] + [n for n, v in (("weight", weight), ("bias", bias))
                                       if v is not None]
    given = [v for v in (x, mean, invstd, weight, bias) if v is not None]
    arrays = dict(zip(names, _prepare(names, given, [(2, 4)] + [(1,)] * (len(given) - 1))))
    x = arrays["x"]
    _check_not_empty(x)
    _check_channel_vectors(x.shape[1], x.shape, mean=arrays["mean"], invstd=arrays["invstd"],
                           weight=arrays.get("weight"), bias=arrays.get("bias"))
    return _impl(x).batchnorm_leaky_relu_forward(x, arrays["mean"], arrays["invstd"],
                                                 arrays.get("weight"), arrays.get("bias"), slope)


def batchnorm_train_forward(x, weight=None, bias=None, eps=1e-5, negative_slope=1.0):
    """Training-mode batch norm with the batch's own statistics, then leaky_relu(negative_slope)
    (1, the default: none; 0: ReLU), in one call: returns (z, mean, var, invstd), each in x's
    dtype, var biased and invstd = 1/sqrt(var + eps): the numbers batchnorm_stats, that invstd
    and batchnorm_leaky_relu_forward give, with one pass of the threads instead of two."""
    slope = _check_fusable_slope(negative_slope)
    if not eps >= 0:
        raise ValueError(f"batchnorm_train_forward: eps must be >= 0, got {eps}")
    names = ["x"] + [n for n, v in (("weight", weight), ("bias", bias)) if v is not None]
    given = [v for v in (x, weight, bias) if v is not None]
    arrays = dict(zip(names, _prepare(names, given, [(2, 4)] + [(1,)] * (len(given) - 1))))
    x = arrays["x"]
    _check_not_empty(x)
    _check_channel_vectors(x.shape[1], x.shape, weight=arrays.get("weight"),
                           bias=arrays.get("bias"))
    return _impl(x).batchnorm_train_forward(x, arrays.get("weight"), arrays.get("bias"),
                                            float(eps), slope)


def batchnorm_leaky_relu_backward(gz, z, x, mean, invstd, weight=None, negative_slope=0.0):
    """(gx, gweight, gbias) of z = leaky_relu(batchnorm(x)) in training mode, from z's gradient
    gz and the forward's output z (the activation's gradient is 1 where z > 0, else the slope)."""
    slope = _check_fusable_slope(negative_slope)
    names = ["gz", "z", "x", "mean", "invstd"] + (["weight"] if weight is not None else [])
    given = [v for v in (gz, z, x, mean, invstd, weight) if v is not None]
    arrays = dict(zip(names, _prepare(names, given, [(2, 4)] * 3 + [(1,)] * (len(given) - 3))))
    gz, z, x = arrays["gz"], arrays["z"], arrays["x"]
    if gz.shape != x.shape or z.shape != x.shape:
        raise ValueError(f"gz {tuple(gz.shape)} and z {tuple(z.shape)} must have x's shape "
                         f"{tuple(x.shape)}")
    _check_not_empty(x)
    _check_channel_vectors(x.shape[1], x.shape, mean=arrays["mean"], invstd=arrays["invstd"],
                           weight=arrays.get("weight"))
    return _impl(gz, z, x).batchnorm_leaky_relu_backward(gz, z, x, arrays["mean"],
                                                         arrays["invstd"], arrays.get("weight"),
                                                         slope)


# --- optimizers ---------------------------------------------------------------------------------

def adam_step(p, g, exp_avg, exp_avg_sq, lr, beta1, beta2, eps, weight_decay, step):
    """Adam's update (PyTorch's Adam: L2 weight decay added to the gradient) at step number
    ``step`` >= 1, in place on the parameter p and its moments exp_avg (m) and exp_avg_sq (v):
    g' = g + weight_decay p, m = beta1 m + (1-beta1) g', v = beta2 v + (1-beta2) g'^2,
    p -= lr/(1-beta1^step) * m / (sqrt(v)/sqrt(1-beta2^step) + eps). All four arrays one shape,
    one float dtype; p, exp_avg and exp_avg_sq C-contiguous and writeable (they are updated in
    place). NumPy arrays only: CuPy's are updated by the optimizer's own array code."""
    names = ("p", "g", "exp_avg", "exp_avg_sq")
    arrays = (p, g, exp_avg, exp_avg_sq)
    if any(backend.is_cupy_array(a) for a in arrays):
        raise TypeError("adam_step runs on NumPy arrays only; got "
                        + ", ".join(f"{n} {type(a).__module__}.{type(a).__name__}"
                                    for n, a in zip(names, arrays)))
    for name, a in zip(names, arrays):
        if a.shape != p.shape:
            raise ValueError(f"adam_step: {name} has shape {tuple(a.shape)}, p {tuple(p.shape)}")
        if name != "g" and not (a.flags.c_contiguous and a.flags.writeable):
            raise ValueError(f"adam_step: {name} {tuple(a.shape)} must be C-contiguous and "
                             "writeable (it is updated in place)")
    if int(step) < 1:
        raise ValueError(f"adam_step: step must be >= 1, got {step}")
    p, g, exp_avg, exp_avg_sq = _prepare(names, arrays)   # dtypes checked; g made contiguous
    from . import cpu
    cpu.adam_step(p, g, exp_avg, exp_avg_sq, float(lr), float(beta1), float(beta2), float(eps),
                  float(weight_decay), int(step))
