"""2-D convolution on NumPy arrays: forward, gradient in the input, gradient in the weight.

Shapes: x (N, C, H, W), w (O, C, kh, kw), y (N, O, Ho, Wo) with Ho = (H + 2ph - kh)//sh + 1 and
Wo likewise; y[n, o, i, j] = sum_{c, a, b} w[o, c, a, b] * x[n, c, i*sh - ph + a, j*sw - pw + b]
(cross-correlation, zero padding, like PyTorch). Arguments are assumed already checked by
``minigan.kernels`` (4-D, C-contiguous, one float dtype, matching channels).

How it is computed: every product is a GEMM per chunk of images, done by NumPy's BLAS, on an
im2col matrix that numba kernels build and take apart. Per chunk of m images (M' = m*Ho*Wo rows):

* ``cols`` (M', K), K = kh*kw*C: one row per output pixel (n, i, j), columns in the order (a, b, c)
  with c fastest. Each image is first copied channels-last (NHWC, by the same task, while it is
  in cache), so that a row is a few contiguous runs: for one kernel row a, the taps b that fall
  inside the image are neighbouring pixels, i.e. one run of (number of valid b) * C numbers,
  copied without any per-number index arithmetic.
* ``wk`` (O, K) is the weight in the same (a, b, c) order.
* gy is used in CNHW order, (O, M'), which is moved from NCHW in runs of Ho*Wo numbers (a cheap
  copy, unlike a channels-last transposition).
* forward:      y (M', O) = cols @ wk.T, transposed to NCHW
  grad input:   dcols (M', K) = gy.T @ wk, then summed back onto the input pixels ("col2im"),
                written straight to NCHW
  grad weight:  gw (O, K) = sum over chunks of gy (O, M') @ cols
* with few columns (K <= SMALL_K, e.g. a 1-channel image and a 4x4 kernel) the same products
  run one image at a time on the NCHW arrays themselves, with no layout copy before or after.

How it is shared over the cores: the batch is split into one contiguous range of images per core,
and each core's thread runs the whole pipeline on its own range, a chunk of images (CHUNK_BYTES of
cols) at a time: gather, product (NumPy's BLAS held to the calling thread, see cpu_gemm), scatter,
while the chunk is still in its cache. One multi-threaded product per pass over the whole batch
instead wrote and re-read the 12.8 MB im2col matrix of the DCGAN's 64->128 layer through memory
and left OpenBLAS's spinning threads fighting the gather threads for the cores (forward +
backward: 22.5-23.5 ms like that, 18-19 ms now).

Intermediates live in per-thread work buffers reused from call to call and results come from
cpu_memory's recycling pool: a freshly mapped multi-megabyte array costs a page fault per 4 KiB
touched, which on small machines costs about as much as the copy itself.

A kernel that covers the whole unpadded input (Ho = Wo = 1, e.g. the DCGAN's 7x7 layers on 7x7
maps) skips all that: the convolution is then a plain matrix product of the flattened arrays.
"""
import numba
import numpy as np

from . import cpu_memory, cpu_winograd
from .cpu_act import (leaky_relu_, leaky_relu_grad, leaky_relu_grad_on_this_thread,
                      leaky_relu_on_this_thread_)
from .cpu_gemm import blas_on_calling_threads, matmul
from .cpu_threads import run_tasks

# Bytes of cols per chunk of images, per thread: a chunk is gathered, multiplied and scattered while
# it is still in cache (the 32 MB L3 shared by the 2 cores here). Measured on the DCGAN's layers
# (forward + backward, batch 64, 2 threads): 64->128 conv 19.1 ms with 4 MB chunks, 18.9 with
# 2 MB, 19.4 with 1 MB, 21.1 with 0.5 MB (the products get too small) and 19.9 with one chunk per
# thread; 256->128 transposed conv 65.8 ms with 4 MB, 67.9 with 2 MB, 66.2 with one chunk.
CHUNK_BYTES = 4 << 20
# The largest im2col matrix conv2d keeps for the weight gradient (keep_patches=True): keeping it
# saves the weight gradient one gathering pass (2% of the DCGAN's 64->128 layer, forward and
# backward: 18.9 against 19.2 ms), at the price of holding the matrix from forward to backward.
KEEP_PATCHES_BYTES = 64 << 20
# Up to this many columns K = C*kh*kw, each image's products run straight on the NCHW arrays, one
# small product per image (y[n] = wk @ cols[n].T, dcols[n] = gy[n].T @ wk, gw += gy[n] @ cols[n]),
# instead of one product per chunk with a layout copy before or after it: at K = 16 (the DCGAN's
# 1-channel layers) the product is too short to hide the copy, which cost up to 4x the product;
# at K = 64 the chunk's one product is already faster for the forward, at K = 256 for all three.
SMALL_K = 32

# --- numba kernels ------------------------------------------------------------------------------
# Each compiles once per dtype (float32, float64) and is cached on disk. Each does the tasks
# t0 <= t < t1 of its loop, so that cpu_threads.run_tasks can share them out over the cores
# (nogil=True lets them run side by side in Python threads).
#
# Inner loops index flat arrays with unsigned integers (_u): numba adds a negative-index check to
# every signed index it cannot prove non-negative, and that check alone stops LLVM from
# vectorising a copy loop (about 6x slower here). Array slices would avoid it too but cost a
# reference-count update each.
_u = numba.uintp


@numba.njit(cache=True, inline="always")
def _tap_range(j, stride, pad, k, size):
    """For output column j: w0 = j*stride - pad and the taps [b0, b1) of a k-wide kernel that
    land inside [0, size) (on the neighbouring input columns w0+b0 .. w0+b1-1); always
    0 <= b0 <= b1 <= k, also when the padding is wider than the kernel."""
    w0 = j * stride - pad
    b0 = min(max(0, -w0), k)
    b1 = max(b0, min(k, size - w0))
    return w0, b0, b1


@numba.njit(cache=True, inline="always")
def _image_to_nhwc(xf, n, C, H, W, of, ln):
    """Image n of the flat NCHW xf, channels-last into slot ln of the flat NHWC of, one image row
    at a time: the row's C input rows stay in L1 while the output is written in order."""
    P = H * W
    for h in range(H):
        for w in range(W):
            dst = _u((ln * P + h * W + w) * C)
            src = _u(n * C * P + h * W + w)
            for c in range(_u(C)):
                of[dst + c] = xf[src + c * _u(P)]


@numba.njit(cache=True, nogil=True)
def _nhwc_to_nchw(src, out, t0, t1):
    """out[n, c, p] = src[n, p, c] for src (N, P, C), one image (which fits in L2) at a time."""
    N, P, C = src.shape
    sf = src.reshape(src.size)
    of = out.reshape(out.size)
    for n in range(t0, t1):
        for c in range(C):
            dst = _u((n * C + c) * P)
            s = _u(n * P * C + c)
            for p in range(_u(P)):
                of[dst + p] = sf[s + p * _u(C)]


@numba.njit(cache=True, nogil=True)
def _nchw_to_cnhw(a, n0, out, t0, t1):
    """out[o, t, p] = a[n0 + t, o, p] for a (N, O, P) and out (O, m, P): task t moves image
    n0 + t, as O runs of P contiguous numbers."""
    N, O, P = a.shape
    m = out.shape[1]
    af = a.reshape(a.size)
    of = out.reshape(out.size)
    for t in range(t0, t1):
        for o in range(O):
            src = _u(((n0 + t) * O + o) * P)
            dst = _u((o * m + t) * P)
            for p in range(_u(P)):
                of[dst + p] = af[src + p]


@numba.njit(cache=True, nogil=True)
def _im2col(x, n0, transpose, xh, kh, kw, sh, sw, ph, pw, Ho, Wo, cols, t0, t1):
    """Fill cols (nb*Ho*Wo, kh*kw*C) for images n0 .. n0+nb-1 of x (N, C, H, W):
    cols[((n - n0)*Ho + i)*Wo + j, (a*kw + b)*C + c] = x[n, c, i*sh-ph+a, j*sw-pw+b], zero where
    that pixel falls in the padding. Task t does image n0 + t: it first copies the image
    channels-last into xh[t] (xh (nb, H, W, C); skipped when ``transpose`` is False because x is
    already in that order, C == 1 or H*W == 1, and xh is x itself), then copies runs from there.
    """
    N, C, H, W = x.shape
    K = kh * kw * C
    P = H * W
    xf = x.reshape(x.size)
    hf = xh.reshape(xh.size)
    cf = cols.reshape(cols.size)
    for ln in range(t0, t1):
        n = n0 + ln
        if transpose:
            _image_to_nhwc(xf, n, C, H, W, hf, ln)
            img = ln * P * C
        else:
            img = n * P * C
        for i in range(Ho):
            for j in range(Wo):
                w0, b0, b1 = _tap_range(j, sw, pw, kw, W)
                row = (ln * Ho + i) * Wo + j
                for a in range(kh):
                    h = i * sh - ph + a
                    dst = _u(row * K + a * kw * C)
                    if h < 0 or h >= H:
                        for q in range(_u(kw * C)):
                            cf[dst + q] = 0
                        continue
                    # zeros | the run of valid taps, contiguous in xh | zeros
                    for q in range(_u(b0 * C)):
                        cf[dst + q] = 0
                    src = _u(img + (h * W + w0 + b0) * C)
                    d = dst + _u(b0 * C)
                    for q in range(_u((b1 - b0) * C)):
                        cf[d + q] = hf[src + q]
                    d = dst + _u(b1 * C)
                    for q in range(_u((kw - b1) * C)):
                        cf[d + q] = 0


@numba.njit(cache=True, nogil=True)
def _col2im(dcols, n0, kh, kw, sh, sw, ph, pw, Ho, Wo, out, t0, t1):
    """The adjoint of _im2col, written straight into NCHW: for images n0 .. n0+nb-1 (task
    t = (n - n0)*H + h does output row h of image n),
    out[n, c, h, w] = sum of dcols[((n - n0)*Ho + i)*Wo + j, (a*kw + b)*C + c] over all
    (i, j, a, b) with i*sh - ph + a = h and j*sw - pw + b = w.

    Gathered one output image row (n, h) at a time: the row is summed channels-last in ``acc``
    (each (i, j, a) adds one contiguous run, as in _im2col) and transposed on the way out.
    """
    N, C, H, W = out.shape
    K = kh * kw * C
    df = dcols.reshape(dcols.size)
    acc = np.empty(W * C, dcols.dtype)
    for t in range(t0, t1):  # t = (n - n0)*H + h
        ln = t // H
        h = t - ln * H
        n = n0 + ln
        acc[:] = 0
        for a in range(kh):
            ti = h + ph - a
            if ti < 0 or ti % sh != 0 or ti // sh >= Ho:
                continue
            i = ti // sh
            for j in range(Wo):
                w0, b0, b1 = _tap_range(j, sw, pw, kw, W)
                src = _u(((ln * Ho + i) * Wo + j) * K + (a * kw + b0) * C)
                dst = _u((w0 + b0) * C)
                for q in range(_u((b1 - b0) * C)):
                    acc[dst + q] += df[src + q]
        for c in range(C):
            for w in range(W):
                out[n, c, h, w] = acc[w * C + c]


# --- helpers ------------------------------------------------------------------------------------

def _out_size(size, k, s, p):
    return (size + 2 * p - k) // s + 1


def _is_dense(H, W, kh, kw, padding):
    """True when the kernel covers the whole unpadded input, so Ho = Wo = 1 and the convolution
    is a matrix product of the flattened arrays."""
    return (kh, kw) == (H, W) and padding == (0, 0)


def _images_per_chunk(n, per_image_elems, itemsize):
    """How many of n images to gather at a time so that one chunk of cols takes at most about
    CHUNK_BYTES, evened out (32 images as 11+11+10, not 15+15+2: a small product runs slower)."""
    most = max(1, min(n, CHUNK_BYTES // max(per_image_elems * itemsize, 1)))
    chunks = max(1, -(-n // most))
    return max(1, -(-n // chunks))


def _gather(x, n0, m, g, cols):
    """im2col of images n0 .. n0+m-1 of x into cols, on the calling thread, through its
    channels-last work buffer (not needed when x has one channel or one pixel: x is then
    channels-last already)."""
    N, C, H, W = x.shape
    kh, kw, sh, sw, ph, pw, Ho, Wo = g
    transpose = not (C == 1 or H * W == 1)
    xh = cpu_memory.work("conv_x_nhwc", (m, H, W, C), x.dtype) if transpose else x
    _im2col(x, n0, transpose, xh, kh, kw, sh, sw, ph, pw, Ho, Wo, cols, 0, m)


def _weight_taps_last(w):
    """w (O, C, kh, kw) as wk (O, kh*kw*C), columns in im2col's (a, b, c) order (a work array)."""
    O, C, kh, kw = w.shape
    if C == 1:
        return w.reshape(O, kh * kw)
    wk = cpu_memory.work("conv_wk", (O, kh, kw, C), w.dtype)
    np.copyto(wk, w.transpose(0, 2, 3, 1))
    return wk.reshape(O, kh * kw * C)


def _to_cnhw(a, n0, m):
    """Images n0 .. n0+m-1 of a (N, O, P) as an (O, m*P) array in CNHW order: a view where that
    is the same memory, else the calling thread's work array."""
    N, O, P = a.shape
    if O == 1 or m == 1:
        return a[n0:n0 + m].reshape(O, m * P) if O == 1 else a[n0].reshape(O, P)
    buf = cpu_memory.work("conv_cnhw", (O, m, P), a.dtype)
    _nchw_to_cnhw(a, n0, buf, 0, m)
    return buf.reshape(O, m * P)


# --- one thread's share of each product ---------------------------------------------------------
# Each function below does images t0 .. t1-1 on the calling thread, chunk by chunk, and is run by
# cpu_threads.run_tasks on every core at once (the BLAS computing each chunk's product on the
# thread that asks for it). A chunk's cols (at most CHUNK_BYTES) is gathered, multiplied and
# scattered while it is still in that core's cache. Geometry g = (kh, kw, sh, sw, ph, pw, Ho, Wo).

def _forward_images(x, wk, g, y3, patches, slope, t0, t1):
    """y3[n] (O, Ho*Wo) for images t0 <= n < t1; im2col rows go to ``patches`` when given;
    then leaky_relu(., slope) in place on each chunk unless slope is None."""
    O, K = wk.shape
    P = g[6] * g[7]  # Ho * Wo
    nb = _images_per_chunk(t1 - t0, K * P, x.itemsize)
    for n0 in range(t0, t1, nb):
        m = min(nb, t1 - n0)
        cols = (patches[n0 * P:(n0 + m) * P] if patches is not None
                else cpu_memory.work("conv_cols", (m * P, K), x.dtype))
        _gather(x, n0, m, g, cols)
        if O == 1:  # (m*P, 1) is already NCHW
            np.matmul(cols, wk.T, out=y3[n0:n0 + m].reshape(m * P, 1))
        elif K <= SMALL_K:  # one (O, P) = (O, K) @ (K, P) per image, written in place
            np.matmul(wk, cols.reshape(m, P, K).transpose(0, 2, 1), out=y3[n0:n0 + m])
        else:
            # (m*P, O) = cols @ wk.T runs ~15% faster in OpenBLAS than (O, m*P) = wk @ cols.T,
            # more than the channels-last -> NCHW transposition of the result costs.
            yc = cpu_memory.work("conv_out", (m, P, O), x.dtype)
            np.matmul(cols, wk.T, out=yc.reshape(m * P, O))
            _nhwc_to_nchw(yc, y3[n0:n0 + m], 0, m)
        if slope is not None:
            leaky_relu_on_this_thread_(y3[n0:n0 + m], slope)


def _gy_chunk(gy3, n0, m, activation):
    """Images n0 .. n0+m-1 of gy3 (N, O, P); with activation = (z3, slope), times the derivative
    of the LeakyReLU that followed the convolution, read from its output z3 (1 where z > 0,
    else slope): made in a work array while the chunk is in cache."""
    if activation is None:
        return gy3[n0:n0 + m]
    z3, slope = activation
    out = cpu_memory.work("conv_gy_act", (m,) + gy3.shape[1:], gy3.dtype)
    leaky_relu_grad_on_this_thread(gy3[n0:n0 + m], z3[n0:n0 + m], slope, out)
    return out


def _grad_input_images(gy3, wk, g, gx, activation, t0, t1):
    """gx[n] for images t0 <= n < t1: dcols = gy.T @ wk, summed back onto the pixels."""
    N, C, H, W = gx.shape
    kh, kw, sh, sw, ph, pw, Ho, Wo = g
    O, K = wk.shape
    P = Ho * Wo
    nb = _images_per_chunk(t1 - t0, K * P, gx.itemsize)
    for n0 in range(t0, t1, nb):
        m = min(nb, t1 - n0)
        gy = _gy_chunk(gy3, n0, m, activation)
        dcols = cpu_memory.work("conv_cols", (m * P, K), gx.dtype)
        if K <= SMALL_K:  # one (P, K) = (P, O) @ (O, K) per image, gy read in place
            np.matmul(gy.transpose(0, 2, 1), wk, out=dcols.reshape(m, P, K))
        else:
            np.matmul(_to_cnhw(gy, 0, m).T, wk, out=dcols)
        _col2im(dcols, n0, kh, kw, sh, sw, ph, pw, Ho, Wo, gx, 0, m * H)


def _grad_weight_images(x, gy3, g, patches, activation, t0, t1):
    """This thread's part of gwk (O, kh*kw*C): the sum over images t0 <= n < t1 of
    gy[n] (O, P) @ cols[n] (P, K), as a new array (not a work array: one pool thread may do
    two parts in turn)."""
    O, P = gy3.shape[1], g[6] * g[7]  # Ho * Wo
    K = x.shape[1] * g[0] * g[1]  # C * kh * kw
    # kept patches need no gathering: the thread's images are one product
    nb = (t1 - t0) if patches is not None else _images_per_chunk(t1 - t0, K * P, x.itemsize)
    total = cpu_memory.empty((O, K), x.dtype)
    for n0 in range(t0, t1, nb):
        m = min(nb, t1 - n0)
        if patches is not None:
            cols = patches[n0 * P:(n0 + m) * P]
        else:
            cols = cpu_memory.work("conv_cols", (m * P, K), x.dtype)
            _gather(x, n0, m, g, cols)
        # np.matmul cannot accumulate into its output (no BLAS beta), so chunks after the first
        # go to a partial sum that is then added.
        dst = total if n0 == t0 else cpu_memory.work("conv_gw_part", (O, K), x.dtype)
        gy = _gy_chunk(gy3, n0, m, activation)
        if K <= SMALL_K:  # one (O, K) = (O, P) @ (P, K) per image, gy read in place, then summed
            per_image = cpu_memory.work("conv_gw_images", (m, O, K), x.dtype)
            np.matmul(gy, cols.reshape(m, P, K), out=per_image)
            np.sum(per_image, axis=0, out=dst)
        else:
            np.matmul(_to_cnhw(gy, 0, m), cols, out=dst)
        if n0 != t0:
            total += dst
    return total


# --- the three products -------------------------------------------------------------------------

def conv2d(x, w, stride, padding, keep_patches=False, negative_slope=None):
    """y (N, O, Ho, Wo) = cross-correlation of x (N, C, H, W) with w (O, C, kh, kw), followed by
    leaky_relu(., negative_slope) unless that is None (on im2col's path chunk by chunk, while
    the chunk's output is in cache).

    keep_patches=True returns (y, patches): the im2col matrix (N*Ho*Wo, K) the forward built
    (or, on cpu_winograd's path, x's tiles at its 25 points, 3-D),
    for :func:`conv2d_grad_weight` to use instead of gathering the same patches again (None when
    there is none to keep: a dense kernel, or more than KEEP_PATCHES_BYTES of it)."""
    N, C, H, W = x.shape
    O, _, kh, kw = w.shape
    if cpu_winograd.applies((H, W), w.shape, stride, padding):
        y, kept = cpu_winograd.conv2d(x, w, KEEP_PATCHES_BYTES if keep_patches else 0)
        if negative_slope is not None:
            leaky_relu_(y, negative_slope)
        return (y, kept) if keep_patches else y
    Ho, Wo = _out_size(H, kh, stride[0], padding[0]), _out_size(W, kw, stride[1], padding[1])
    K, P = C * kh * kw, Ho * Wo
    y = cpu_memory.empty((N, O, Ho, Wo), x.dtype)
    if _is_dense(H, W, kh, kw, padding):
        matmul(x.reshape(N, K), w.reshape(O, K).T, y.reshape(N, O))
        if negative_slope is not None:
            leaky_relu_(y, negative_slope)
        return (y, None) if keep_patches else y
    # A kept matrix is a result array (recycled once the caller drops it), not a work buffer
    # that the next convolution would overwrite.
    keep = keep_patches and N * P * K * x.itemsize <= KEEP_PATCHES_BYTES
    patches = cpu_memory.empty((N * P, K), x.dtype) if keep else None
    g = (kh, kw, *stride, *padding, Ho, Wo)
    wk = _weight_taps_last(w)
    with blas_on_calling_threads() as parts:
        run_tasks(_forward_images, N, N * P * K, x, wk, g, y.reshape(N, O, P), patches,
                  negative_slope, max_parts=parts)
    return (y, patches) if keep_patches else y


def conv2d_grad_input(gy, w, input_hw, stride, padding, activation=None):
    """gx (N, C, H, W) = adjoint of conv2d in x applied to gy (N, O, Ho, Wo).

    gx[n, c, h, w] = sum_{o, i, j, a, b : i*sh-ph+a = h, j*sw-pw+b = w} gy[n, o, i, j] w[o, c, a, b];
    this is also ConvTranspose2d's forward with the weight read as (in=O, out=C, kh, kw).
    activation = (z, slope): gy is the gradient at z = leaky_relu(conv2d(x, w), slope), and the
    activation's derivative is applied to it first (on im2col's path chunk by chunk).
    """
    N, O, Ho, Wo = gy.shape
    _, C, kh, kw = w.shape
    H, W = input_hw
    winograd = (cpu_winograd.applies((H, W), w.shape, stride, padding)
                and (H, W) == (2 * Ho, 2 * Wo))
    if activation is not None and (winograd or _is_dense(H, W, kh, kw, padding)):
        gy, activation = leaky_relu_grad(gy, *activation), None
    if winograd:
        return cpu_winograd.conv2d_grad_input(gy, w)
    K, P = C * kh * kw, Ho * Wo
    gx = cpu_memory.empty((N, C, H, W), gy.dtype)
    if _is_dense(H, W, kh, kw, padding):
        matmul(gy.reshape(N, O), w.reshape(O, K), gx.reshape(N, K))
        return gx
    g = (kh, kw, *stride, *padding, Ho, Wo)
    wk = _weight_taps_last(w)
    with blas_on_calling_threads() as parts:
        run_tasks(_grad_input_images, N, N * P * K, gy.reshape(N, O, P), wk, g, gx,
                  _activation3(activation, N, O, P), max_parts=parts)
    return gx


def _activation3(activation, N, O, P):
    """(z, slope) with z seen as (N, O, P), or None."""
    return None if activation is None else (activation[0].reshape(N, O, P), activation[1])


def conv2d_grad_weight(x, gy, kernel_hw, stride, padding, patches=None, activation=None):
    """gw (O, C, kh, kw): gw[o, c, a, b] = sum_{n, i, j} gy[n, o, i, j] x[n, c, i*sh-ph+a, j*sw-pw+b].

    patches: the im2col matrix of x that ``conv2d(..., keep_patches=True)`` returned, or None to
    gather it here. activation: as for :func:`conv2d_grad_input`."""
    N, C, H, W = x.shape
    _, O, Ho, Wo = gy.shape
    kh, kw = kernel_hw
    # patches kept by Winograd's forward are its transformed tiles (3-D), im2col's are 2-D
    winograd_tiles = patches is not None and patches.ndim == 3
    if winograd_tiles and ((kh, kw), tuple(stride), tuple(padding)) != ((4, 4), (2, 2), (1, 1)):
        raise ValueError(f"conv2d_grad_weight: patches {patches.shape} are Winograd's, for 4x4 "
                         f"kernels with stride 2 and padding 1, not {kernel_hw} {stride} {padding}")
    winograd = winograd_tiles or (patches is None and
                                  cpu_winograd.applies((H, W), (O, C, kh, kw), stride, padding))
    if activation is not None and (winograd or _is_dense(H, W, kh, kw, padding)):
        gy, activation = leaky_relu_grad(gy, *activation), None   # a pass of its own there
    if winograd:
        return cpu_winograd.conv2d_grad_weight(x, gy, patches)
    K, P = C * kh * kw, Ho * Wo
    gw = cpu_memory.empty((O, C, kh, kw), x.dtype)
    if _is_dense(H, W, kh, kw, padding):
        matmul(gy.reshape(N, O).T, x.reshape(N, K), gw.reshape(O, K))
        return gw
    if N == 0:
        gw[...] = 0
        return gw
    if patches is not None and (patches.shape != (N * P, K) or patches.dtype != x.dtype):
        raise ValueError(f"conv2d_grad_weight: patches {patches.shape} {patches.dtype} do not "
                         f"belong to x {x.shape} {x.dtype} with kernel {kernel_hw}")
    g = (kh, kw, *stride, *padding, Ho, Wo)
    with blas_on_calling_threads() as parts:
        sums = run_tasks(_grad_weight_images, N, N * P * K, x, gy.reshape(N, O, P), g, patches,
                         _activation3(activation, N, O, P), max_parts=parts)
    # gw in im2col's (a, b, c) column order, permuted to (O, C, kh, kw)
    for part in sums[1:]:
        sums[0] += part
    np.copyto(gw, sums[0].reshape(O, kh, kw, C).transpose(0, 3, 1, 2))
    return gw
