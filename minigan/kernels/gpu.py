"""GPU kernels on raw CuPy arrays: convolution (im2col + cuBLAS GEMM), batchnorm, leaky ReLU.

Same functions and meaning as :mod:`minigan.kernels.cpu`; ``minigan.kernels`` imports this module
only when a CuPy array arrives. Arrays are NCHW, float32 or float64, all arguments of one call of one
dtype; results have that dtype. The CUDA C sources are in :mod:`minigan.kernels.gpu_sources`; this
file checks arguments, picks the compiled variant and launches it.

Convolution, with K = C*kh*kw, L = Ho*Wo and cols = im2col(x) of shape (K, N*L):

* ``conv2d``:             y    = w(O, K) @ cols                 -> (O, N*L) -> NCHW
* ``conv2d_grad_input``:  gx   = col2im(w(O, K)^T @ gy(O, N*L))
* ``conv2d_grad_weight``: gw   = gy(O, N*L) @ cols^T           -> (O, C, kh, kw)

Each is one GEMM over the whole batch (``cupy.matmul`` calls cuBLAS; cuDNN is not used). col2im
gathers per input pixel instead of scattering with atomics, so every result is deterministic.
CuPy's memory pool recycles the cols buffers from call to call.
"""
import numpy as np

from .. import backend
from . import gpu_sources

_kernels = {}  # (kernel name, dtype, index type) -> cupy.RawKernel; CuPy compiles each on first launch
_INT_LIMIT = 2**31 - 1 - gpu_sources.BLOCK * gpu_sources.MAX_GRID
_cupy = None   # the cupy module, looked up once (require_cupy asks the driver for devices each time)


def _cp():
    global _cupy
    if _cupy is None:
        _cupy = backend.require_cupy()
    return _cupy


def _kernel(name, dtype, index_type):
    key = (name, np.dtype(dtype), index_type)
    k = _kernels.get(key)
    if k is None:
        k = _cp().RawKernel(gpu_sources.source(name, dtype, index_type), name)
        _kernels[key] = k
    return k


def _index_type(*sizes):
    """'int' when every flat index (and one grid stride past it) fits in int32, else 'long long'."""
    return "int" if max(sizes) <= _INT_LIMIT else "long long"


def _ints(index_type, *values):
    """Integer kernel arguments as NumPy scalars of exactly the kernel's index_t."""
    t = np.int32 if index_type == "int" else np.int64
    return tuple(t(v) for v in values)


def _grid(total):
    """Blocks for a grid-stride loop over ``total`` elements."""
    return (max(1, min(-(-total // gpu_sources.BLOCK), gpu_sources.MAX_GRID)),)


# --- argument checks ------------------------------------------------------------------------------

def _array(name, a, ndim=None, dtype=None):
    """``a`` as a C-contiguous CuPy float array (a copy only if it was not contiguous)."""
    cp = _cp()
    if not isinstance(a, cp.ndarray):
        raise TypeError(f"{name} must be a CuPy array on the GPU, got {type(a).__name__}")
    if a.dtype not in (np.float32, np.float64):
        raise TypeError(f"{name} must be float32 or float64, got {a.dtype}")
    if dtype is not None and a.dtype != dtype:
        raise TypeError(f"{name} has dtype {a.dtype} but the other arguments are {np.dtype(dtype)}")
    if ndim is not None and a.ndim != ndim:
        raise ValueError(f"{name} must have {ndim} dimensions, got shape {a.shape}")
    return cp.ascontiguousarray(a)


def _pair(name, v):
    """(a, b) from a pair of ints, or (v, v) from one int."""
    if isinstance(v, (int, np.integer)):
        return int(v), int(v)
    try:
        a, b = (int(t) for t in v)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a pair of ints, got {v!r}") from None
    return a, b


def _conv_geometry(H, W, kh, kw, stride, padding):
    sh, sw = _pair("stride", stride)
    ph, pw = _pair("padding", padding)
    if sh < 1 or sw < 1:
        raise ValueError(f"stride must be positive, got {(sh, sw)}")
    if ph < 0 or pw < 0:
        raise ValueError(f"padding must be non-negative, got {(ph, pw)}")
    if kh < 1 or kw < 1:
        raise ValueError(f"kernel size must be positive, got {(kh, kw)}")
    Ho = (H + 2 * ph - kh) // sh + 1
    Wo = (W + 2 * pw - kw) // sw + 1
    if Ho < 1 or Wo < 1:
        raise ValueError(
            f"kernel {(kh, kw)} does not fit input {(H, W)} with padding {(ph, pw)}: "
            f"output would be {(Ho, Wo)}")
    return sh, sw, ph, pw, Ho, Wo


# --- convolution ----------------------------------------------------------------------------------

def _im2col(x, kh, kw, sh, sw, ph, pw, Ho, Wo):
    """cols (C*kh*kw, N*Ho*Wo): see gpu_sources.IM2COL."""
    cp = _cp()
    N, C, H, W = x.shape
    cols = cp.empty((C * kh * kw, N * Ho * Wo), dtype=x.dtype)
    if cols.size:
        it = _index_type(cols.size, x.size)
        _kernel("im2col", x.dtype, it)(
            _grid(cols.size), (gpu_sources.BLOCK,),
            (x, cols) + _ints(it, N, C, H, W, kh, kw, sh, sw, ph, pw, Ho, Wo))
    return cols


def _col2im(cols, N, C, H, W, kh, kw, sh, sw, ph, pw, Ho, Wo):
    """x (N, C, H, W), the adjoint of _im2col: see gpu_sources.COL2IM."""
    cp = _cp()
    x = cp.empty((N, C, H, W), dtype=cols.dtype)
    if x.size:
        it = _index_type(cols.size, x.size)
        _kernel("col2im", cols.dtype, it)(
            _grid(x.size), (gpu_sources.BLOCK,),
            (cols, x) + _ints(it, N, C, H, W, kh, kw, sh, sw, ph, pw, Ho, Wo))
    return x


def _batch_major(a):
    """(O, N, L) flattened as (O, N*L) -> NCHW-ordered (N, O, L), one transposing copy."""
    return _cp().ascontiguousarray(a.transpose(1, 0, 2))


def conv2d(x, w, stride, padding, keep_patches=False, negative_slope=None):
    """Cross-correlation y[n, o, p, q] = sum_{c,i,j} w[o, c, i, j] * xpad[n, c, p*sh + i, q*sw + j].

    x (N, C, H, W), w (O, C, kh, kw), stride (sh, sw), padding (ph, pw) -> y (N, O, Ho, Wo) with
    Ho = (H + 2*ph - kh)//sh + 1, Wo likewise; xpad is x with ph/pw zero rows/columns on each side.
    """
    x = _array("x", x, 4)
    w = _array("w", w, 4, x.dtype)
    N, C, H, W = x.shape
    O, Cw, kh, kw = w.shape
    if Cw != C:
        raise ValueError(f"conv2d: x has {C} channels (shape {x.shape}) but w expects {Cw} "
                         f"(shape {w.shape})")
    sh, sw, ph, pw, Ho, Wo = _conv_geometry(H, W, kh, kw, stride, padding)
    cols = _im2col(x, kh, kw, sh, sw, ph, pw, Ho, Wo)
    y = _cp().matmul(w.reshape(O, C * kh * kw), cols)          # (O, N*L)
    y = _batch_major(y.reshape(O, N, Ho * Wo)).reshape(N, O, Ho, Wo)
    if negative_slope is not None:   # an activation after it: a pass of its own here
        y = leaky_relu(y, negative_slope)
    # keep_patches: the GPU keeps none (the weight gradient gathers them again), as (y, None)
    return (y, None) if keep_patches else y


def _gy_channel_major(gy):
    """gy (N, O, Ho, Wo) -> (O, N*Ho*Wo), the layout the GEMMs with cols need."""
    N, O, Ho, Wo = gy.shape
    cp = _cp()
    return cp.ascontiguousarray(gy.reshape(N, O, Ho * Wo).transpose(1, 0, 2)).reshape(O, N * Ho * Wo)


def conv2d_grad_input(gy, w, input_hw, stride, padding, activation=None):
    """The adjoint of conv2d in x: gx (N, C, H, W) from gy (N, O, Ho, Wo) and w (O, C, kh, kw).

    gx[n, c, h, w] = sum of w[o, c, i, j] * gy[n, o, p, q] over o and every (i, j, p, q) with
    p*sh - ph + i == h and q*sw - pw + j == w. This is also ConvTranspose2d's forward pass.
    ``input_hw`` = (H, W) is needed because several H give the same Ho when sh > 1.
    activation = (z, slope): the LeakyReLU's derivative at its output z is applied to gy first,
    in a pass of its own here.
    """
    if activation is not None:
        gy = leaky_relu_grad(gy, *activation)
    gy = _array("gy", gy, 4)
    w = _array("w", w, 4, gy.dtype)
    N, O, Ho, Wo = gy.shape
    Ow, C, kh, kw = w.shape
    if Ow != O:
        raise ValueError(f"conv2d_grad_input: gy has {O} channels (shape {gy.shape}) but w has "
                         f"{Ow} output channels (shape {w.shape})")
    H, W = _pair("input_hw", input_hw)
    sh, sw, ph, pw, Ho_x, Wo_x = _conv_geometry(H, W, kh, kw, stride, padding)
    if (Ho_x, Wo_x) != (Ho, Wo):
        raise ValueError(f"conv2d_grad_input: gy spatial size {(Ho, Wo)} does not match input "
                         f"{(H, W)} with kernel {(kh, kw)}, stride {(sh, sw)}, padding {(ph, pw)} "
                         f"(expected {(Ho_x, Wo_x)})")
    gcols = _cp().matmul(w.reshape(O, C * kh * kw).T, _gy_channel_major(gy))   # (K, N*L)
    return _col2im(gcols, N, C, H, W, kh, kw, sh, sw, ph, pw, Ho, Wo)


def conv2d_grad_weight(x, gy, kernel_hw, stride, padding, patches=None, activation=None):
    """gw[o, c, i, j] = sum_{n,p,q} gy[n, o, p, q] * xpad[n, c, p*sh + i, q*sw + j], shape (O, C, kh, kw).

    ``patches`` must be None here: conv2d on the GPU keeps none. activation: as for
    conv2d_grad_input."""
    if activation is not None:
        gy = leaky_relu_grad(gy, *activation)
    if patches is not None:
        raise ValueError("conv2d_grad_weight: the GPU kernels take no kept patches (got an array "
                         "from the CPU's conv2d?)")
    x = _array("x", x, 4)
    gy = _array("gy", gy, 4, x.dtype)
    N, C, H, W = x.shape
    Ng, O, Ho, Wo = gy.shape
    kh, kw = _pair("kernel_hw", kernel_hw)
    sh, sw, ph, pw, Ho_x, Wo_x = _conv_geometry(H, W, kh, kw, stride, padding)
    if Ng != N or (Ho_x, Wo_x) != (Ho, Wo):
        raise ValueError(f"conv2d_grad_weight: gy shape {gy.shape} does not match x shape {x.shape} "
                         f"with kernel {(kh, kw)}, stride {(sh, sw)}, padding {(ph, pw)} "
                         f"(expected ({N}, O, {Ho_x}, {Wo_x}))")
    cols = _im2col(x, kh, kw, sh, sw, ph, pw, Ho, Wo)
    gw = _cp().matmul(_gy_channel_major(gy), cols.T)                # (O, K)
    return gw.reshape(O, C, kh, kw)


# --- batchnorm ------------------------------------------------------------------------------------

def _bn_view(x):
    """(N, C, S) sizes of x viewed channel-wise; S = H*W, or 1 for an (N, C) input."""
    if x.ndim < 2:
        raise ValueError(f"batchnorm needs an (N, C) or (N, C, H, W) input, got shape {x.shape}")
    N, C = x.shape[0], x.shape[1]
    S = int(np.prod(x.shape[2:], dtype=np.int64))
    return N, C, S


def _per_channel(name, a, C, dtype):
    a = _array(name, a, 1, dtype)
    if a.shape[0] != C:
        raise ValueError(f"{name} must have shape ({C},) (one value per channel), got {a.shape}")
    return a


def batchnorm_stats(x):
    """Per-channel mean and biased variance over every axis but 1: two arrays of shape (C,).

    Sums are accumulated in double on the GPU (two passes: mean, then squared deviations).
    """
    x = _array("x", x)
    N, C, S = _bn_view(x)
    if N * S == 0:
        raise ValueError(f"batchnorm_stats needs at least one value per channel, got shape {x.shape}")
    cp = _cp()
    mean = cp.empty(C, dtype=x.dtype)
    var = cp.empty(C, dtype=x.dtype)
    if C:
        it = _index_type(x.size)
        # one block per channel, exactly BLOCK threads (the kernel's reduction assumes it)
        _kernel("bn_stats", x.dtype, it)((C,), (gpu_sources.BLOCK,), (x, mean, var) + _ints(it, N, C, S))
    return mean, var


def batchnorm_forward(x, mean, invstd, weight, bias):
    """y = (x - mean[c]) * invstd[c] * weight[c] + bias[c] per channel c; weight/bias may be None."""
    x = _array("x", x)
    N, C, S = _bn_view(x)
    mean = _per_channel("mean", mean, C, x.dtype)
    invstd = _per_channel("invstd", invstd, C, x.dtype)
    # an absent weight/bias is never read by the kernel; any array of the dtype fills its slot
    w = mean if weight is None else _per_channel("weight", weight, C, x.dtype)
    b = mean if bias is None else _per_channel("bias", bias, C, x.dtype)
    y = _cp().empty_like(x)
    if x.size:
        it = _index_type(x.size)
        _kernel("bn_forward", x.dtype, it)(
            _grid(x.size), (gpu_sources.BLOCK,),
            (x, mean, invstd, w, b, np.int32(weight is not None), np.int32(bias is not None), y)
            + _ints(it, x.size, C, S))
    return y


def batchnorm_backward(gy, x, mean, invstd, weight):
    """Training-mode batchnorm gradients (gx, gweight, gbias); weight may be None (taken as 1).

    With xhat = (x - mean)*invstd and M = N*H*W values per channel:
    gbias = sum gy, gweight = sum gy*xhat, gx = weight*invstd/M * (M*gy - gbias - xhat*gweight).
    """
    x = _array("x", x)
    gy = _array("gy", gy, x.ndim, x.dtype)
    if gy.shape != x.shape:
        raise ValueError(f"batchnorm_backward: gy shape {gy.shape} differs from x shape {x.shape}")
    N, C, S = _bn_view(x)
    if N * S == 0:
        raise ValueError(f"batchnorm_backward needs at least one value per channel, got shape {x.shape}")
    mean = _per_channel("mean", mean, C, x.dtype)
    invstd = _per_channel("invstd", invstd, C, x.dtype)
    w = mean if weight is None else _per_channel("weight", weight, C, x.dtype)
    cp = _cp()
    gx = cp.empty_like(x)
    gweight = cp.empty(C, dtype=x.dtype)
    gbias = cp.empty(C, dtype=x.dtype)
    if C:
        it = _index_type(x.size)
        _kernel("bn_backward", x.dtype, it)(
            (C,), (gpu_sources.BLOCK,),
            (gy, x, mean, invstd, w, np.int32(weight is not None), gx, gweight, gbias)
            + _ints(it, N, C, S))
    return gx, gweight, gbias


# --- leaky ReLU -----------------------------------------------------------------------------------

def leaky_relu(x, negative_slope):
    """y = x where x > 0, negative_slope * x elsewhere."""
    x = _array("x", x)
    y = _cp().empty_like(x)
    if x.size:
        it = _index_type(x.size)
        _kernel("leaky_relu", x.dtype, it)(
            _grid(x.size), (gpu_sources.BLOCK,),
            (x, y, x.dtype.type(negative_slope)) + _ints(it, x.size))
    return y


def leaky_relu_grad(gy, x, negative_slope):
    """gx = gy where x > 0, negative_slope * gy elsewhere."""
    x = _array("x", x)
    gy = _array("gy", gy, x.ndim, x.dtype)
    if gy.shape != x.shape:
        raise ValueError(f"leaky_relu_grad: gy shape {gy.shape} differs from x shape {x.shape}")
    gx = _cp().empty_like(x)
    if x.size:
        it = _index_type(x.size)
        _kernel("leaky_relu_grad", x.dtype, it)(
            _grid(x.size), (gpu_sources.BLOCK,),
            (gy, x, gx, x.dtype.type(negative_slope)) + _ints(it, x.size))
    return gx


# --- batchnorm + leaky ReLU ----------------------------------------------------------------------
# On the GPU the two stay separate kernels, called in turn: the fusion was made for the CPU's
# memory passes, and a fused CUDA kernel is left until it can be measured on a GPU.

def batchnorm_leaky_relu_forward(x, mean, invstd, weight, bias, negative_slope):
    """z = leaky_relu(batchnorm_forward(x, ...), negative_slope)."""
    return leaky_relu(batchnorm_forward(x, mean, invstd, weight, bias), negative_slope)


def batchnorm_train_forward(x, weight, bias, eps, negative_slope):
    """(z, mean, var, invstd) of training-mode batch norm with the batch's statistics, then
    leaky_relu(., negative_slope) (1: none): the statistics kernel, then the forward's."""
    mean, var = batchnorm_stats(x)
    invstd = (1.0 / _cp().sqrt(var + eps)).astype(x.dtype)
    if negative_slope == 1.0:
        z = batchnorm_forward(x, mean, invstd, weight, bias)
    else:
        z = batchnorm_leaky_relu_forward(x, mean, invstd, weight, bias, negative_slope)
    return z, mean, var, invstd


def batchnorm_leaky_relu_backward(gz, z, x, mean, invstd, weight, negative_slope):
    """(gx, gweight, gbias) of z = leaky_relu(batchnorm(x)), negative_slope >= 0: z > 0 exactly
    where the activation's input is, so its gradient mask is read from z."""
    return batchnorm_backward(leaky_relu_grad(gz, z, negative_slope), x, mean, invstd, weight)
