"""2-D convolution on NumPy arrays: forward, gradient in the input, gradient in the weight.

Shapes: x (N, C, H, W), w (O, C, kh, kw), y (N, O, Ho, Wo) with Ho = (H + 2ph - kh)//sh + 1 and
Wo likewise; y[n, o, i, j] = sum_{c, a, b} w[o, c, a, b] * x[n, c, i*sh - ph + a, j*sw - pw + b]
(cross-correlation, zero padding, like PyTorch). Arguments are assumed already checked by
``minigan.kernels`` (4-D, C-contiguous, one float dtype, matching channels).

How it is computed: every product is one GEMM done by NumPy's BLAS, over im2col matrices in a
channels-last ("NHWC") order, which numba kernels build and take apart:

* ``cols`` has one row per output pixel (n, i, j), M = N*Ho*Wo rows, and K = kh*kw*C columns in the
  order (a, b, c): c varies fastest. With the image first turned channels-last, each kernel tap
  (a, b) of a row is then one contiguous run of C numbers copied from one input pixel, so the
  gather is a few long memcpy-like moves instead of one scattered load per number.
* the weight goes to the same (a, b, c) order, ``wk`` = w.transpose(0, 2, 3, 1) as (O, K).
* forward:      y_nhwc (M, O) = cols @ wk.T, then transposed back to NCHW.
  grad input:   dcols (M, K) = gy_nhwc @ wk, then summed back onto the input pixels ("col2im").
  grad weight:  gw (O, K) = gy_nhwc.T @ cols.

Large intermediates (channels-last copies, cols) live in per-thread work buffers reused from call
to call: a freshly allocated multi-megabyte array costs a page fault per 4 KiB touched, which on
this kind of machine costs about as much as the copy itself. Results are always new arrays.
The batch is cut into chunks of images so that one chunk of cols stays cache-sized.

Two shapes skip im2col: a kernel that covers the whole unpadded input (Ho = Wo = 1, e.g. the
DCGAN's 7x7 layers on 7x7 maps) is a plain matrix product on the flattened arrays.
"""
import threading

import numba
import numpy as np

# Rows of cols per chunk are chosen so one chunk takes about this many bytes: big enough that the
# GEMM on it runs at full speed, small enough to stay in the last-level cache between the gather
# that writes it and the GEMM that reads it.
CHUNK_BYTES = 4 << 20

_local = threading.local()


def _work(name, shape, dtype):
    """A scratch array of this shape, owned by the calling thread and reused by later calls.

    Contents are undefined. Never returned to the caller: the next call with the same ``name``
    overwrites it.
    """
    bufs = getattr(_local, "bufs", None)
    if bufs is None:
        bufs = _local.bufs = {}
    dtype = np.dtype(dtype)
    size = 1
    for s in shape:
        size *= int(s)
    buf = bufs.get((name, dtype))
    if buf is None or buf.size < size:
        buf = np.empty(max(size, 1), dtype)
        bufs[(name, dtype)] = buf
    return buf[:size].reshape(shape)


def clear_work_buffers():
    """Free this thread's cached scratch arrays (they are re-made on the next call)."""
    _local.bufs = {}


# --- numba kernels ------------------------------------------------------------------------------
# Each compiles once per dtype (float32, float64) and is cached on disk.

@numba.njit(parallel=True, cache=True)
def _nchw_to_nhwc(x, out):
    """out[n, h, w, c] = x[n, c, h, w]; one task per image row (n, h)."""
    N, C, H, W = x.shape
    for t in numba.prange(N * H):
        n = t // H
        h = t - n * H
        for w in range(W):
            for c in range(C):
                out[n, h, w, c] = x[n, c, h, w]


@numba.njit(parallel=True, cache=True)
def _nhwc_to_nchw(src, out):
    """out[n, c, p] = src[n, p, c] for src (N, P, C); one task per image (an image fits in L2)."""
    N, P, C = src.shape
    for n in numba.prange(N):
        for c in range(C):
            for p in range(P):
                out[n, c, p] = src[n, p, c]


@numba.njit(parallel=True, cache=True)
def _im2col(xh, n0, nb, kh, kw, sh, sw, ph, pw, Ho, Wo, cols):
    """Fill cols (nb*Ho*Wo, kh*kw*C) for images n0 .. n0+nb-1 of the channels-last xh (N, H, W, C).

    Row ((n - n0)*Ho + i)*Wo + j, column (a*kw + b)*C + c holds x[n, c, i*sh-ph+a, j*sw-pw+b],
    zero where that pixel falls in the padding. One task per output row (n, i).
    """
    N, H, W, C = xh.shape
    for t in numba.prange(nb * Ho):
        ln = t // Ho
        i = t - ln * Ho
        n = n0 + ln
        for j in range(Wo):
            row = t * Wo + j
            for a in range(kh):
                h = i * sh - ph + a
                for b in range(kw):
                    w = j * sw - pw + b
                    k0 = (a * kw + b) * C
                    if h < 0 or h >= H or w < 0 or w >= W:
                        for c in range(C):
                            cols[row, k0 + c] = 0
                    else:
                        for c in range(C):
                            cols[row, k0 + c] = xh[n, h, w, c]


@numba.njit(parallel=True, cache=True)
def _col2im(dcols, n0, nb, kh, kw, sh, sw, ph, pw, Ho, Wo, out):
    """The adjoint of _im2col, written straight into NCHW: for images n0 .. n0+nb-1,
    out[n, c, h, w] = sum of dcols[row(n, i, j), (a*kw + b)*C + c] over all (i, j, a, b) with
    i*sh - ph + a = h and j*sw - pw + b = w.

    Gathered per output pixel rather than scattered per cols row, so tasks (one per image row
    (n, h)) never write the same number and need no zeroing pass; the sum for a row is built
    channels-last in ``acc`` and transposed on the way out.
    """
    N, C, H, W = out.shape
    for t in numba.prange(nb * H):
        ln = t // H
        h = t - ln * H
        n = n0 + ln
        acc = np.zeros((W, C), dcols.dtype)
        for a in range(kh):
            ti = h + ph - a
            if ti < 0 or ti % sh != 0 or ti // sh >= Ho:
                continue
            i = ti // sh
            for w in range(W):
                for b in range(kw):
                    tj = w + pw - b
                    if tj < 0 or tj % sw != 0 or tj // sw >= Wo:
                        continue
                    row = (ln * Ho + i) * Wo + tj // sw
                    k0 = (a * kw + b) * C
                    for c in range(C):
                        acc[w, c] += dcols[row, k0 + c]
        for c in range(C):
            for w in range(W):
                out[n, c, h, w] = acc[w, c]


# --- helpers ------------------------------------------------------------------------------------

def _out_size(size, k, s, p):
    return (size + 2 * p - k) // s + 1


def _is_dense(H, W, kh, kw, padding):
    """True when the kernel covers the whole unpadded input, so Ho = Wo = 1 and the convolution
    is a matrix product of the flattened arrays."""
    return (kh, kw) == (H, W) and padding == (0, 0)


def _channels_last(x, name):
    """x (N, C, H, W) as a channels-last (N, H, W, C) array: a view when C == 1 or H*W == 1
    (same memory order), else a transposed copy in a work buffer."""
    N, C, H, W = x.shape
    if C == 1 or H * W == 1:
        return x.reshape(N, H, W, C)
    out = _work(name, (N, H, W, C), x.dtype)
    _nchw_to_nhwc(x, out)
    return out


def _weight_taps_last(w):
    """w (O, C, kh, kw) as wk (O, kh*kw*C) with columns in im2col's (a, b, c) order."""
    O, C, kh, kw = w.shape
    return np.ascontiguousarray(w.transpose(0, 2, 3, 1)).reshape(O, kh * kw * C)


def _chunk_images(N, rows_per_image, K, itemsize):
    """How many images per chunk so one chunk of cols is about CHUNK_BYTES."""
    per_image = max(rows_per_image * K * itemsize, 1)
    return max(1, min(N, CHUNK_BYTES // per_image))


# --- the three products -------------------------------------------------------------------------

def conv2d(x, w, stride, padding):
    """y (N, O, Ho, Wo) = cross-correlation of x (N, C, H, W) with w (O, C, kh, kw)."""
    N, C, H, W = x.shape
    O, _, kh, kw = w.shape
    sh, sw = stride
    ph, pw = padding
    Ho, Wo = _out_size(H, kh, sh, ph), _out_size(W, kw, sw, pw)
    if _is_dense(H, W, kh, kw, padding):
        y = np.empty((N, O, 1, 1), x.dtype)
        np.matmul(x.reshape(N, C * H * W), w.reshape(O, C * H * W).T, out=y.reshape(N, O))
        return y
    K, P = kh * kw * C, Ho * Wo
    xh = _channels_last(x, "conv_x")
    wk = _weight_taps_last(w)
    # GEMM output channels-last; straight into y when O == 1 (same memory order).
    y = np.empty((N, O, Ho, Wo), x.dtype)
    ynhwc = y.reshape(N * P, O) if O == 1 else _work("conv_y", (N * P, O), x.dtype)
    nb = _chunk_images(N, P, K, x.itemsize)
    cols_buf = _work("conv_cols", (nb * P, K), x.dtype)
    for n0 in range(0, N, nb):
        m = min(nb, N - n0)
        cols = cols_buf[:m * P]
        _im2col(xh, n0, m, kh, kw, sh, sw, ph, pw, Ho, Wo, cols)
        np.matmul(cols, wk.T, out=ynhwc[n0 * P:(n0 + m) * P])
    if O != 1:
        _nhwc_to_nchw(ynhwc.reshape(N, P, O), y.reshape(N, O, P))
    return y


def conv2d_grad_input(gy, w, input_hw, stride, padding):
    """gx (N, C, H, W) = adjoint of conv2d in x applied to gy (N, O, Ho, Wo).

    gx[n, c, h, w] = sum_{o, i, j, a, b : i*sh-ph+a = h, j*sw-pw+b = w} gy[n, o, i, j] w[o, c, a, b];
    this is also ConvTranspose2d's forward with the weight read as (in=O, out=C, kh, kw).
    """
    N, O, Ho, Wo = gy.shape
    _, C, kh, kw = w.shape
    H, W = input_hw
    sh, sw = stride
    ph, pw = padding
    if _is_dense(H, W, kh, kw, padding):
        gx = np.empty((N, C, H, W), gy.dtype)
        np.matmul(gy.reshape(N, O), w.reshape(O, C * H * W), out=gx.reshape(N, C * H * W))
        return gx
    K, P = kh * kw * C, Ho * Wo
    gyh = _channels_last(gy, "conv_gy").reshape(N * P, O)
    wk = _weight_taps_last(w)
    gx = np.empty((N, C, H, W), gy.dtype)
    nb = _chunk_images(N, P, K, gy.itemsize)
    dcols_buf = _work("conv_cols", (nb * P, K), gy.dtype)
    for n0 in range(0, N, nb):
        m = min(nb, N - n0)
        dcols = dcols_buf[:m * P]
        np.matmul(gyh[n0 * P:(n0 + m) * P], wk, out=dcols)
        _col2im(dcols, n0, m, kh, kw, sh, sw, ph, pw, Ho, Wo, gx)
    return gx


def conv2d_grad_weight(x, gy, kernel_hw, stride, padding):
    """gw (O, C, kh, kw): gw[o, c, a, b] = sum_{n, i, j} gy[n, o, i, j] x[n, c, i*sh-ph+a, j*sw-pw+b]."""
    N, C, H, W = x.shape
    _, O, Ho, Wo = gy.shape
    kh, kw = kernel_hw
    sh, sw = stride
    ph, pw = padding
    if _is_dense(H, W, kh, kw, padding):
        gw = np.empty((O, C, kh, kw), x.dtype)
        np.matmul(gy.reshape(N, O).T, x.reshape(N, C * H * W), out=gw.reshape(O, C * H * W))
        return gw
    K, P = kh * kw * C, Ho * Wo
    xh = _channels_last(x, "conv_x")
    gyh = _channels_last(gy, "conv_gy").reshape(N * P, O)
    gwk = np.zeros((O, K), x.dtype)
    part = _work("conv_gw_part", (O, K), x.dtype)
    nb = _chunk_images(N, P, K, x.itemsize)
    cols_buf = _work("conv_cols", (nb * P, K), x.dtype)
    for n0 in range(0, N, nb):
        m = min(nb, N - n0)
        cols = cols_buf[:m * P]
        _im2col(xh, n0, m, kh, kw, sh, sw, ph, pw, Ho, Wo, cols)
        # BLAS cannot accumulate through np.matmul, so each chunk after the first adds a partial.
        dst = gwk if n0 == 0 else part
        np.matmul(gyh[n0 * P:(n0 + m) * P].T, cols, out=dst)
        if n0 != 0:
            gwk += part
    return np.ascontiguousarray(gwk.reshape(O, kh, kw, C).transpose(0, 3, 1, 2))
