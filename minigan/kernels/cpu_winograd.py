"""The DCGAN's convolution (4x4 kernel, stride 2, padding 1) with Winograd's F(4x4, 2x2): half the
multiplications of im2col + GEMM.

Why it applies: a stride-2 4x4 kernel is four 2x2 kernels, one per phase (r, s) of the input
grid. With a = 2*alpha + r, b = 2*beta + s and the phase image
z_rs[u, v] = x[2u + r - 1, 2v + s - 1] (zero outside x),

    y[i, j] = sum_{c, r, s, alpha, beta} w[o, c, 2*alpha + r, 2*beta + s]
                                         * z_rs[c, i + alpha, j + beta],

a stride-1 2x2 correlation summed over 4*C input planes. Winograd's F(4, 2) computes 4 outputs of
a 2-tap correlation y_i = sum_alpha g_alpha d_{i + alpha} from d (5 numbers) with 5 products
instead of 8:  y = AT [(G g) * (BT d)];  in 2-D, a 4x4 output tile from a 5x5 input tile with 25
products instead of 64:  Y = AT [(G g G^T) * (BT d B)] A. The products of all channels and phases
at one of the 25 points xi = (k, l) form one matrix product, so a layer becomes 25 GEMMs

    M[xi] (tiles, O) = V[xi] (tiles, 4C) @ U[xi] (4C, O),   V = BT d B per tile, U = G g G^T,

followed by Y = AT M A per tile. A 7x7 output takes 2x2 tiles of 4x4, so the GEMMs do
25 * 4 / (49 * 4) = 0.51 of im2col's multiply-adds (the 8th row and column are discarded).

The same matrices serve all three passes:
* the transposed convolution (the gradient in x, and ConvTranspose2d's forward): output phase
  (r, s), gx[2v + r - 1, 2v' + s - 1] = sum_{o, alpha', beta'} w[o, c, 2(1 - alpha') + r, ...]
  * gy[o, v + alpha' - 1, v' + beta' - 1], again a 2x2 correlation, now of gy, with the phases
  on the output side: M[xi] (tiles, 4C) = V[xi] (tiles, O) @ U[xi] (O, 4C);
* the gradient in w is the adjoint of g -> Y, so g = G^T [(A gy A^T) * (BT d B)] G: the
  4x4 tiles of gy transformed by A = AT^T, the x tiles exactly as in the forward, and
  M[xi] (O, 4C) = sum over tiles of Vgy[xi]^T @ V[xi].

The points are 0, 1, -1, 2 and infinity (Lavin & Gray 2016, "Fast algorithms for convolutional
neural networks"); their float32 error on a 512-channel sum is ~2e-6 of the output's scale
(tests/test_winograd.py checks it against the direct convolution).

Work is shared over the cores like cpu_conv's: for the two correlations each core takes a
contiguous range of images and runs transform, 25 products and inverse transform on chunks of
them while they are in its cache; the weight gradient transforms per image, then gives each core
its share of the 25 points, each a product over the whole batch.
"""
import numba
import numpy as np

from . import cpu_memory
from .cpu_gemm import blas_on_calling_threads
from .cpu_threads import run_phases

# F(4, 2) at the points 0, 1, -1, 2, infinity: y (4) = AT @ ((G @ g (2)) * (BT @ d (5))).
AT = np.array([[1, 1, 1, 1, 0],
               [0, 1, -1, 2, 0],
               [0, 1, 1, 4, 0],
               [0, 1, -1, 8, 1]], dtype=np.float64)
G = np.array([[1 / 2, 0],
              [-1 / 2, -1 / 2],
              [-1 / 6, 1 / 6],
              [1 / 6, 1 / 3],
              [0, 1]], dtype=np.float64)
BT = np.array([[2, -1, -2, 1, 0],
               [0, -2, -1, 1, 0],
               [0, 2, -3, 1, 0],
               [0, -1, 0, 1, 0],
               [0, 2, -1, -2, 1]], dtype=np.float64)

# (G kron G)[k*5 + l, alpha*2 + beta] = G[k, alpha] G[l, beta]: a 2x2 kernel -> its 25 points
_GG = {np.dtype(t).char: np.kron(G, G).astype(t) for t in (np.float32, np.float64)}

# On by default; False keeps these layers on im2col. Its float32 results differ from the exact
# sum by ~4x im2col's rounding (~1.5e-6 of the output's scale): the GEMMs accumulate the points'
# larger values, which the inverse transform cancels. Like cuDNN's Winograd, a speed for
# accuracy trade well inside float32 training's noise (benchmarks/RESULTS.md, issue 16).
ENABLED = True

# Layers with fewer channels on either side stay on im2col: the 25 products are then too thin
# for the BLAS (the DCGAN's 1-channel first and last layers).
MIN_CHANNELS = 16
# Bytes of V per chunk of images per thread (as cpu_conv.CHUNK_BYTES); a chunk holds at least
# MIN_TILES tiles so that each of the 25 products has rows enough to run near the BLAS's speed.
CHUNK_BYTES = 4 << 20
MIN_TILES = 128


def applies(x_hw, w_shape, stride, padding):
    """True when ENABLED and for the geometry this module computes: kernel 4x4, stride 2,
    padding 1, an even input (H = 2*Ho), at least MIN_CHANNELS channels in and out."""
    O, C, kh, kw = w_shape
    H, W = x_hw
    return (ENABLED and (kh, kw) == (4, 4) and tuple(stride) == (2, 2) and tuple(padding) == (1, 1)
            and H % 2 == 0 and W % 2 == 0 and H >= 2 and W >= 2
            and min(O, C) >= MIN_CHANNELS)


# --- the 1-D transforms, written out -----------------------------------------------------------
# (the matrices above, one row per term; tests/test_winograd.py checks them against the matrices;
# the weights' G g G^T is one small product with G kron G, _GG). The hot three (_bt, _a, _at) use
# additions only: a literal 2 would be an int64 to numba and turn float32 arithmetic into
# float64, at half the vector width. _gt, on the weight gradient's small array, computes in
# float64.

@numba.njit(cache=True, inline="always")
def _bt(d0, d1, d2, d3, d4):
    """BT @ d: an input tile's 5 values -> its 5 points."""
    a, b, e = d0 - d2, d1 - d2, d1 - d3
    return a + a - d1 + d3, d3 - d2 - d1 - d1, b + b - d2 + d3, d3 - d1, e + e - d2 + d4


@numba.njit(cache=True, inline="always")
def _a(e0, e1, e2, e3):
    """AT.T @ e: a 4-value tile of gy -> its 5 points (the weight gradient's transform)."""
    u = e2 + e3 + e3
    u = e1 + u + u                      # e1 + 2 e2 + 4 e3
    return e0, e0 + e1 + e2 + e3, e0 - e1 + e2 - e3, e0 + u + u, e3


@numba.njit(cache=True, inline="always")
def _at(m0, m1, m2, m3, m4):
    """AT @ m: 5 points -> 4 outputs."""
    a, b, m3x2 = m1 - m2, m1 + m2, m3 + m3
    m3x4 = m3x2 + m3x2
    return m0 + b + m3, a + m3x2, b + m3x4, a + m3x4 + m3x4 + m4


@numba.njit(cache=True, inline="always")
def _gt(m0, m1, m2, m3, m4):
    """G.T @ m: 5 points -> the 2 taps (the adjoint of _g)."""
    return 0.5 * (m0 - m1) + (m3 - m2) / 6, (m2 - 3 * m1) / 6 + m3 / 3 + m4


@numba.njit(cache=True, inline="always")
def _points(L, x0, x1, x2, x3, x4):
    """An input tile's L values -> its 5 points: BT for the data (L = 5), AT.T for gy (L = 4,
    x4 unused)."""
    return _bt(x0, x1, x2, x3, x4) if L == 5 else _a(x0, x1, x2, x3)


# --- numba kernels ------------------------------------------------------------------------------
# Each does tasks t0 <= t < t1 (run by cpu_threads.run_phases, nogil) and keeps channels innermost,
# so that every arithmetic loop runs over C contiguous numbers; images are moved channels-last
# into a zero-bordered buffer first, so that tiles need no bounds checks. Flat arrays and
# unsigned indices (_u) as in cpu_conv: they let LLVM vectorise those loops. Each loop writes
# one output stream (the transform is recomputed per stream and the unused terms fall away):
# with five streams LLVM's run-time overlap checks exceed its limit and the loop stays scalar
# (the input transform took 17 us an image of 64 channels like that, 11 like this).
_u = numba.uintp
_FIVE = (0, 1, 2, 3, 4)
_FOUR = (0, 1, 2, 3)


@numba.njit(cache=True, nogil=True)
def _transform_in(src, n0, S, off, L, TH, TW, V, tile0, img, tmp, t0, t1):
    """V[k*5 + l, tile0 + (t*TH + p)*TW + q, ph*C + c] = (B z B^T)[k, l] for images t0 <= t < t1
    of the chunk (image n0 + t of src (N, C, H, W)), tile (p, q) and phase ph = r*S + s, where z
    is the L x L tile z[u, v] = src[n0 + t, c, S*(4p + u) + r + off, S*(4q + v) + s + off]
    (0 outside) and B is BT (L = 5) or AT.T (L = 4). img and tmp are the calling thread's
    scratch: img holds (S*(4*TH + 1), S*(4*TW + 1), C) numbers, tmp 5*L*S*C.

    The phases s = 0 .. S-1 of one row phase r are neighbouring pixels of img and neighbouring
    columns of V, so each loop runs over their S*C numbers at once."""
    N, C, H, W = src.shape
    T, K = V.shape[1], V.shape[2]
    Hb, Wb = S * (4 * TH + 1), S * (4 * TW + 1)
    sf = src.reshape(src.size)
    vf = V.reshape(V.size)
    uC, SC = _u(C), _u(S * C)
    du = _u(S * Wb * C)          # z[u + 1, v] - z[u, v] in img
    lsc = _u(L) * SC             # tmp[k + 1, v] - tmp[k, v]
    point = _u(T * K)            # V[xi + 1] - V[xi]
    img[:Hb * Wb * C] = 0
    for t in range(t0, t1):
        # image n0 + t channels-last at rows h - off, columns w - off of the zeroed border
        P = _u(H * W)
        for h in range(H):
            for w in range(W):
                row = _u(((h - off) * Wb + w - off) * C)
                s0 = _u(((n0 + t) * C * H + h) * W + w)
                for c in range(uC):
                    img[row + c] = sf[s0 + c * P]
        for p in range(TH):
            for q in range(TW):
                tile = tile0 + (t * TH + p) * TW + q
                for r in range(S):
                    z = _u(((S * 4 * p + r) * Wb + S * 4 * q) * C)   # z[0, 0], phase s = 0
                    for v in range(L):   # down the columns: tmp[k, v] = (B z)[k, v]
                        a0 = z + _u(v) * SC
                        # (for L = 4 the fifth read repeats the fourth and goes unused)
                        a1, a2, a3 = a0 + du, a0 + _u(2) * du, a0 + _u(3) * du
                        a4 = a0 + _u(L - 1) * du
                        o0 = _u(v) * SC
                        for k in numba.literal_unroll(_FIVE):   # one store stream a loop
                            o = o0 + _u(k) * lsc
                            for c in range(SC):
                                b = _points(L, img[a0 + c], img[a1 + c], img[a2 + c], img[a3 + c],
                                            img[a4 + c])
                                tmp[o + c] = b[k]
                    for k in range(5):   # along the rows: V[k, l] = (tmp B^T)[k, l]
                        a0 = _u(k) * lsc
                        a1, a2, a3 = a0 + SC, a0 + _u(2) * SC, a0 + _u(3) * SC
                        a4 = a0 + _u(L - 1) * SC
                        o0 = _u((k * 5 * T + tile) * K + r * S * C)
                        for l in numba.literal_unroll(_FIVE):
                            o = o0 + _u(l) * point
                            for c in range(SC):
                                b = _points(L, tmp[a0 + c], tmp[a1 + c], tmp[a2 + c], tmp[a3 + c],
                                            tmp[a4 + c])
                                vf[o + c] = b[l]


@numba.njit(cache=True, nogil=True)
def _transform_out(M, n0, S, off, TH, TW, out, img, tmp, t0, t1):
    """The inverse transform: for images t0 <= t < t1 of the chunk, tile (p, q) and phase
    ph = r*S + s, Y = AT m AT^T with m[k, l] = M[k*5 + l, (t*TH + p)*TW + q, ph*C + c], written
    to out[n0 + t, c, S*(4p + i) + r + off, S*(4q + j) + s + off] where that lies inside out.
    img ((4*S*TH) * (4*S*TW) * C numbers) and tmp (4*5*S*C) are scratch: each image is built
    channels-last, whole tiles, then its part inside out is moved to NCHW. As in _transform_in,
    each loop covers the S phases s of one row phase r."""
    N, C, H, W = out.shape
    T, K = M.shape[1], M.shape[2]
    Wb = 4 * S * TW
    mf = M.reshape(M.size)
    of = out.reshape(out.size)
    uC, SC = _u(C), _u(S * C)
    point = _u(T * K)
    for t in range(t0, t1):
        for p in range(TH):
            for q in range(TW):
                tile = (t * TH + p) * TW + q
                for r in range(S):
                    for l in range(5):   # down the columns: tmp[i, l] = (AT m)[i, l]
                        a0 = _u((l * T + tile) * K + r * S * C)
                        a1, a2 = a0 + _u(5) * point, a0 + _u(10) * point
                        a3, a4 = a0 + _u(15) * point, a0 + _u(20) * point
                        for i in numba.literal_unroll(_FOUR):
                            o = _u(i * 5 + l) * SC
                            for c in range(SC):
                                y = _at(mf[a0 + c], mf[a1 + c], mf[a2 + c], mf[a3 + c],
                                        mf[a4 + c])
                                tmp[o + c] = y[i]
                    for i in range(4):   # along the rows, into img[S*(4p + i) + r, S*4q + ...]
                        a0 = _u(i * 5) * SC
                        a1, a2, a3, a4 = a0 + SC, a0 + _u(2) * SC, a0 + _u(3) * SC, a0 + _u(4) * SC
                        o0 = _u(((S * (4 * p + i) + r) * Wb + S * 4 * q) * C)
                        for j in numba.literal_unroll(_FOUR):
                            o = o0 + _u(j) * SC
                            for c in range(SC):
                                y = _at(tmp[a0 + c], tmp[a1 + c], tmp[a2 + c], tmp[a3 + c],
                                        tmp[a4 + c])
                                img[o + c] = y[j]
        for c in range(C):   # the image's part inside out, to NCHW
            for h in range(H):
                row = _u(((h - off) * Wb - off) * C + c)
                d0 = _u((((n0 + t) * C + c) * H + h) * W)
                for w in range(_u(W)):
                    of[d0 + w] = img[row + w * uC]


@numba.njit(cache=True, nogil=True)
def _kernel_points_task(w, transposed, GG, U, t0, t1):
    """U at the 25 points of each phase's 2x2 kernel (the layouts of :func:`_empty_points`),
    for input channels t0 <= c < t1 of w (O, C, 4, 4) (the convolution) or output channels
    t0 <= o < t1 (the transposed one). A phase's four taps are first gathered into one
    contiguous run each, then each point is one loop over that run."""
    O, C = w.shape[0], w.shape[1]
    n = C if transposed else O          # U's last axis runs over c (transposed) or o
    uf = U.reshape(U.size)
    point = _u(U.shape[1] * U.shape[2])
    taps = np.empty((4, n), w.dtype)
    for t in range(t0, t1):
        for r in range(2):
            for s in range(2):
                for ab in range(4):
                    a, b = ab // 2, ab % 2
                    for i in range(n):
                        if transposed:   # t = o, i = c, the taps flipped
                            taps[ab, i] = w[t, i, 2 * (1 - a) + r, 2 * (1 - b) + s]
                        else:            # t = c, i = o
                            taps[ab, i] = w[i, t, 2 * a + r, 2 * b + s]
                ph = r * 2 + s
                base = _u(t * 4 * C + ph * C) if transposed else _u((ph * C + t) * O)
                for xi in range(25):
                    g0, g1, g2, g3 = GG[xi, 0], GG[xi, 1], GG[xi, 2], GG[xi, 3]
                    o = _u(xi) * point + base
                    for i in range(_u(n)):
                        uf[o + i] = (g0 * taps[0, i] + g1 * taps[1, i] + g2 * taps[2, i]
                                     + g3 * taps[3, i])


@numba.njit(cache=True, nogil=True)
def _points_to_taps(M, gw, t0, t1):
    """gw[o, c, 2*alpha + r, 2*beta + s] = (G^T m G)[alpha, beta] with
    m[k, l] = M[k*5 + l, o, (r*2 + s)*C + c], for t0 <= o < t1: over the 4C contiguous columns
    of o's row at each point, one output stream a loop."""
    C = gw.shape[1]
    J = 4 * C
    mf = M.reshape(M.size)
    point = _u(M.shape[1] * J)
    uJ = _u(J)
    rows = np.empty(10 * J)   # (G^T m)[alpha, l, j], float64 like _gt
    taps = np.empty(4 * J)    # (G^T m G)[alpha, beta, j]
    for o in range(t0, t1):
        for l in range(5):
            a0 = _u(o * J) + _u(l) * point
            a1, a2 = a0 + _u(5) * point, a0 + _u(10) * point
            a3, a4 = a0 + _u(15) * point, a0 + _u(20) * point
            for alpha in numba.literal_unroll((0, 1)):
                d = _u((alpha * 5 + l) * J)
                for j in range(uJ):
                    g = _gt(mf[a0 + j], mf[a1 + j], mf[a2 + j], mf[a3 + j], mf[a4 + j])
                    rows[d + j] = g[alpha]
        for alpha in range(2):
            a0 = _u(alpha * 5 * J)
            for beta in numba.literal_unroll((0, 1)):
                d = _u((alpha * 2 + beta) * J)
                for j in range(uJ):
                    g = _gt(rows[a0 + j], rows[a0 + uJ + j], rows[a0 + _u(2) * uJ + j],
                            rows[a0 + _u(3) * uJ + j], rows[a0 + _u(4) * uJ + j])
                    taps[d + j] = g[beta]
        for alpha in range(2):
            for beta in range(2):
                for r in range(2):
                    for s in range(2):
                        src = ((alpha * 2 + beta) * 4 + r * 2 + s) * C
                        for c in range(C):
                            gw[o, c, 2 * alpha + r, 2 * beta + s] = taps[src + c]


def _tiles(size):
    """Tiles of 4 covering an output phase of ``size`` rows."""
    return -(-size // 4)


def _images_per_chunk(n, tiles_per_image, width, itemsize):
    """Images per chunk: V (25, tiles, width) within CHUNK_BYTES, but at least MIN_TILES tiles."""
    per_image = 25 * tiles_per_image * width * itemsize
    most = max(CHUNK_BYTES // per_image, -(-MIN_TILES // tiles_per_image), 1)
    most = min(n, most)
    chunks = -(-n // most)
    return -(-n // chunks)


def _scratch(name, S, TH, TW, L, C, dtype):
    """_transform_in's or _transform_out's scratch on the calling thread: the image buffer (room
    for the zero border: S*(4*TH + 1) rows) and a half-transformed tile."""
    return (cpu_memory.work(name + "_img", (S * (4 * TH + 1) * S * (4 * TW + 1) * C,), dtype),
            cpu_memory.work(name + "_tmp", (5 * L * S * C,), dtype))


# --- weights at the 25 points -------------------------------------------------------------------

def _empty_points(w, transposed):
    """An array for U (25, K, N) of w (O, C, 4, 4): the 2x2 kernels of the four phases at the
    25 points.

    conv (transposed=False):  U[xi, (r, s, c), o]  from w[o, c, 2*alpha + r, 2*beta + s];
    transposed:               U[xi, o, (r, s, c)]  from w[o, c, 2*(1 - alpha) + r,
                                                            2*(1 - beta) + s].
    """
    O, C = w.shape[:2]
    return cpu_memory.empty((25, O, 4 * C) if transposed else (25, 4 * C, O), w.dtype)


def _points_phase(w, transposed, U):
    """The run_phases phase that fills U (:func:`_empty_points`): a task per channel."""
    return (_kernel_points_task, U.shape[1] if transposed else U.shape[1] // 4,
            (w, transposed, _GG[w.dtype.char], U))


# --- one thread's images ------------------------------------------------------------------------

def _correlate_images(src, U, geo, out, kept, t0, t1):
    """out for images t0 <= n < t1: transform, 25 products, inverse transform, chunk by chunk.
    geo = (S_in, off_in, S_out, off_out, TH, TW); kept: None, or the (25, N*TH*TW, K) array
    the transformed input goes to (for the weight gradient) instead of a work buffer."""
    S_in, off_in, S_out, off_out, TH, TW = geo
    K, Nc = U.shape[1], U.shape[2]
    T = TH * TW
    dt = src.dtype
    nb = _images_per_chunk(t1 - t0, T, K, src.itemsize)
    scratch_in = _scratch("wino_in", S_in, TH, TW, 5, src.shape[1], dt)
    scratch_out = _scratch("wino_out", S_out, TH, TW, 4, out.shape[1], dt)
    for n0 in range(t0, t1, nb):
        m = min(nb, t1 - n0)
        M = cpu_memory.work("wino_M", (25, m * T, Nc), dt)
        if kept is None:
            V = cpu_memory.work("wino_V", (25, m * T, K), dt)
            _transform_in(src, n0, S_in, off_in, 5, TH, TW, V, 0, *scratch_in, 0, m)
        else:
            _transform_in(src, n0, S_in, off_in, 5, TH, TW, kept, n0 * T, *scratch_in, 0, m)
            V = kept[:, n0 * T:(n0 + m) * T]
        np.matmul(V, U, out=M)
        _transform_out(M, n0, S_out, off_out, TH, TW, out, *scratch_out, 0, m)


def _weight_grad_tiles(x, gy, TH, TW, Vx, Vg, t0, t1):
    """gy's tiles at the 25 points into Vg (A = AT.T), and x's into Vx unless Vx is None (kept
    by the forward), for images t0 <= n < t1, into their rows of the whole batch's arrays."""
    T, dt = TH * TW, x.dtype
    if Vx is not None:
        _transform_in(x, t0, 2, -1, 5, TH, TW, Vx, t0 * T,
                      *_scratch("wino_in", 2, TH, TW, 5, x.shape[1], dt), 0, t1 - t0)
    _transform_in(gy, t0, 1, 0, 4, TH, TW, Vg, t0 * T,
                  *_scratch("wino_gy", 1, TH, TW, 4, gy.shape[1], dt), 0, t1 - t0)


def _point_products(Vg, Vx, M, t0, t1):
    """M[xi] (O, 4C) = Vg[xi]^T @ Vx[xi] for the points t0 <= xi < t1: each a sum over the whole
    batch's tiles, so that no thread's partial sum has to be added to another's."""
    np.matmul(Vg[t0:t1].transpose(0, 2, 1), Vx[t0:t1], out=M[t0:t1])


# --- the three products -------------------------------------------------------------------------

def conv2d(x, w, keep_bytes=0):
    """(y, kept): y (N, O, H/2, W/2) = conv2d(x (N, C, H, W), w (O, C, 4, 4), stride 2,
    padding 1); kept: x's tiles at the 25 points, (25, N*tiles, 4C), which
    :func:`conv2d_grad_weight` can use instead of transforming x again, when they take at most
    keep_bytes (else None)."""
    N, C, H, W = x.shape
    O = w.shape[0]
    Ho, Wo = H // 2, W // 2
    y = cpu_memory.empty((N, O, Ho, Wo), x.dtype)
    TH, TW = _tiles(Ho), _tiles(Wo)
    shape = (25, N * TH * TW, 4 * C)
    kept = (cpu_memory.empty(shape, x.dtype)
            if 0 < N and 25 * N * TH * TW * 4 * C * x.itemsize <= keep_bytes else None)
    if N == 0:
        return y, kept
    U = _empty_points(w, transposed=False)
    with blas_on_calling_threads() as parts:
        run_phases([_points_phase(w, False, U),
                    (_correlate_images, N, (x, U, (2, -1, 1, 0, TH, TW), y, kept))],
                   max_parts=parts)
    return y, kept


def conv2d_grad_input(gy, w):
    """gx (N, C, 2*Ho, 2*Wo): the adjoint of :func:`conv2d` applied to gy (N, O, Ho, Wo)."""
    N, O, Ho, Wo = gy.shape
    C = w.shape[1]
    gx = cpu_memory.empty((N, C, 2 * Ho, 2 * Wo), gy.dtype)
    if N == 0:
        return gx
    U = _empty_points(w, transposed=True)
    # output phase v covers rows 2v + r - 1 for v in [0, Ho], so Ho + 1 rows of tiles
    TH, TW = _tiles(Ho + 1), _tiles(Wo + 1)
    with blas_on_calling_threads() as parts:
        run_phases([_points_phase(w, True, U),
                    (_correlate_images, N, (gy, U, (1, -1, 2, -1, TH, TW), gx, None))],
                   max_parts=parts)
    return gx


def conv2d_grad_weight(x, gy, kept=None):
    """gw (O, C, 4, 4) of :func:`conv2d` for x (N, C, H, W) and gy (N, O, H/2, W/2); kept: what
    conv2d(x, ...) kept of x, or None to transform x here."""
    N, C, H, W = x.shape
    O, Ho, Wo = gy.shape[1:]
    TH, TW = _tiles(Ho), _tiles(Wo)
    if kept is not None and (kept.shape != (25, N * TH * TW, 4 * C) or kept.dtype != x.dtype):
        raise ValueError(f"conv2d_grad_weight: kept tiles {kept.shape} {kept.dtype} do not "
                         f"belong to x {x.shape} {x.dtype} (Winograd's need "
                         f"{(25, N * TH * TW, 4 * C)})")
    gw = cpu_memory.empty((O, C, 4, 4), x.dtype)
    if N == 0:
        gw[...] = 0
        return gw
    NT = N * TH * TW
    Vx = kept if kept is not None else cpu_memory.empty((25, NT, 4 * C), x.dtype)
    Vg = cpu_memory.empty((25, NT, O), x.dtype)
    M = cpu_memory.empty((25, O, 4 * C), x.dtype)
    with blas_on_calling_threads() as parts:
        run_phases([(_weight_grad_tiles, N, (x, gy, TH, TW, None if kept is not None else Vx,
                                             Vg)),
                    (_point_products, 25, (Vg, Vx, M)),
                    (_points_to_taps, O, (M, gw))], max_parts=parts)
    return gw
