"""The DCGAN's convolution (4x4 kernel, stride 2, padding 1) with Winograd's F(4x4, 2x2): half the
multiplications of im2col + GEMM, or less.

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

followed by Y = AT M A per tile.

A phase whose size is not a multiple of 4 ends in a short tile: the 7x7 output of the DCGAN's
14 -> 7 takes 2x2 tiles, and the last row and column of them need only 3 outputs. Those use
F(3, 2): the points 0, 1, -1 and infinity of F(4, 2) with the same rows of G, so that U is the
same, and 4 points instead of 5. The point 2 (k = 3 down, l = 3 along) then has fewer tiles than
the others, so the points are stored in groups (_slot, _groups), each product taking only the
tiles that have its points. A 7x7 output costs 5*5 + 5*4 + 4*5 + 4*4 = 81 products for each
plane instead of 100, and the GEMMs do 81 / (49 * 4) = 0.41 of im2col's multiply-adds.

The same matrices serve all three passes:
* the transposed convolution (the gradient in x, and ConvTranspose2d's forward): output phase
  (r, s), gx[2v + r - 1, 2v' + s - 1] = sum_{o, alpha', beta'} w[o, c, 2(1 - alpha') + r, ...]
  * gy[o, v + alpha' - 1, v' + beta' - 1], again a 2x2 correlation, now of gy, with the phases
  on the output side: M[xi] (tiles, 4C) = V[xi] (tiles, O) @ U[xi] (O, 4C) (whole tiles only:
  the phases r = 0 and 1 need the first and the last of its Ho + 1 rows);
* the gradient in w is the adjoint of g -> Y, so g = G^T [(A gy A^T) * (BT d B)] G: the
  4x4 tiles of gy transformed by A = AT^T (AT3^T for a short side), the x tiles exactly as in
  the forward, and M[xi] (O, 4C) = sum over tiles of Vgy[xi]^T @ V[xi].

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

# F(3, 2) for a phase's last tile when fewer than 4 outputs are left: the points 0, 1, -1 and
# infinity of F(4, 2) with the same rows of G (G[[0, 1, 2, 4]]), so that one U serves both tiles;
# AT3 and BT3 follow from them (tests/test_winograd.py checks the identity).
AT3 = np.array([[1, 1, 1, 0],
                [0, 1, -1, 0],
                [0, 1, 1, 1]], dtype=np.float64)
BT3 = np.array([[2, 0, -2, 0],
                [0, -1, -1, 0],
                [0, 3, -3, 0],
                [0, -1, 0, 1]], dtype=np.float64)


@numba.njit(cache=True, inline="always")
def _slot(k, l):
    """Where U, V and M hold the point (k, l): first the 16 that every tile has, then the 4 with
    k = 3 (the point 2 down the rows, which a short last row of tiles lacks), the 4 with l = 3
    and (3, 3), so that each group is one slice (_groups). Computed rather than looked up: a load
    from a table in the kernels' loops cost them 30%."""
    ka, la = k - (k > 3), l - (l > 3)
    if k == 3:
        return 24 if l == 3 else 16 + la
    return 20 + ka if l == 3 else ka * 4 + la


# the points (k*5 + l) in the order of their places
_ORDER = np.argsort([_slot.py_func(xi // 5, xi % 5) for xi in range(25)])

# (G kron G)[k*5 + l, alpha*2 + beta] = G[k, alpha] G[l, beta]: a 2x2 kernel -> its 25 points,
# here in _ORDER
_GG = {np.dtype(t).char: np.kron(G, G)[_ORDER].astype(t) for t in (np.float32, np.float64)}

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
# float64, at half the vector width; _gt takes its one fraction, 1/6, in the data's type.

@numba.njit(cache=True, inline="always")
def _bt(d0, d1, d2, d3, d4):
    """BT @ d: an input tile's 5 values -> its 5 points."""
    a, b, e = d0 - d2, d1 - d2, d1 - d3
    return a + a - d1 + d3, d3 - d2 - d1 - d1, b + b - d2 + d3, d3 - d1, e + e - d2 + d4


@numba.njit(cache=True, inline="always")
def _a(e0, e1, e2, e3, last):
    """AT.T @ e: a 4-value tile of gy -> its 5 points (the weight gradient's transform), the
    point infinity being its last value e3. For a short tile (3 values, e3 = 0 from the zero
    border) last = e2 gives AT3.T @ e in the places of its 4 points."""
    u = e2 + e3 + e3
    u = e1 + u + u                      # e1 + 2 e2 + 4 e3
    return e0, e0 + e1 + e2 + e3, e0 - e1 + e2 - e3, e0 + u + u, last


@numba.njit(cache=True, inline="always")
def _at(m0, m1, m2, m3, m4):
    """AT @ m: 5 points -> 4 outputs."""
    a, b, m3x2 = m1 - m2, m1 + m2, m3 + m3
    m3x4 = m3x2 + m3x2
    return m0 + b + m3, a + m3x2, b + m3x4, a + m3x4 + m3x4 + m4


@numba.njit(cache=True, inline="always")
def _bt3(d0, d1, d2, d3):
    """BT3 @ d: a short tile's 4 values -> its points 0, 1, -1, infinity, in the places _bt gives
    them (the point 2's place holds d3, unused)."""
    a, b = d0 - d2, d1 - d2
    return a + a, -d1 - d2, b + b + b, d3, d3 - d1


@numba.njit(cache=True, inline="always")
def _at3(m0, m1, m2, m4):
    """AT3 @ m: a short tile's 4 points -> its 3 outputs."""
    b = m1 + m2
    return m0 + b, m1 - m2, b + m4


@numba.njit(cache=True, inline="always")
def _gt(m0, m1, m2, m3, m4, sixth):
    """G.T @ m: 5 points -> the 2 taps (the adjoint of _g); sixth = 1/6."""
    d = m0 - m1
    return sixth * (d + d + d + m3 - m2), sixth * (m2 - m1 - m1 - m1 + m3 + m3) + m4


@numba.njit(cache=True, inline="always")
def _points(L, short, x0, x1, x2, x3, x4):
    """An input tile's values -> its 5 points: BT for the data (L = 5), BT3 if short (4 values;
    the point 2's place unused); AT.T for gy (L = 4) with the point infinity from x4 (_a)."""
    if L == 5:
        return _bt3(x0, x1, x2, x3) if short else _bt(x0, x1, x2, x3, x4)
    return _a(x0, x1, x2, x3, x4)


@numba.njit(cache=True, inline="always")
def _outputs(short, m0, m1, m2, m3, m4):
    """5 points -> 4 outputs by AT; a short side's 4 (m3 unused) -> 3 by AT3 (the 4th place
    unused)."""
    if short:
        y0, y1, y2 = _at3(m0, m1, m2, m4)
        return y0, y1, y2, y2
    return _at(m0, m1, m2, m3, m4)


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
def _transform_in(src, n0, S, off, TH, TW, sh, sw, V, row0, img, tmp, t0, t1):
    """The tiles of the correlations' input at the 25 points: :func:`_tiles_in` with B = BT."""
    _tiles_in(src, n0, S, off, 5, TH, TW, sh, sw, V, row0, img, tmp, t0, t1)


@numba.njit(cache=True, nogil=True)
def _transform_gy(gy, n0, TH, TW, sh, sw, V, row0, img, tmp, t0, t1):
    """gy's tiles at the 25 points for the weight gradient: :func:`_tiles_in` with B = AT.T."""
    _tiles_in(gy, n0, 1, 0, 4, TH, TW, sh, sw, V, row0, img, tmp, t0, t1)


@numba.njit(cache=True, inline="always")
def _tiles_in(src, n0, S, off, L, TH, TW, sh, sw, V, row0, img, tmp, t0, t1):
    """V[_slot(k, l), row, ph*C + c] = (B z B^T)[k, l] for images t0 <= t < t1 of the chunk
    (image n0 + t of src (N, C, H, W)), tile (p, q) and phase ph = r*S + s, where z is the tile
    z[u, v] = src[n0 + t, c, S*(4p + u) + r + off, S*(4q + v) + s + off] (0 outside) and B is BT
    (L = 5) or AT.T (L = 4), BT3 or AT3.T along a short side (the last row of tiles when sh = 1,
    the last column when sw = 1); row = ((row0 + t)*THg + p)*TWg + q, with THg x TWg the tiles of
    the point's group (_groups). img and tmp are the calling thread's scratch: img holds
    (S*(4*TH + 1), S*(4*TW + 1), C) numbers, tmp 5*L*S*C.

    The phases s = 0 .. S-1 of one row phase r are neighbouring pixels of img and neighbouring
    columns of V, so each loop runs over their S*C numbers at once. Inlined into one kernel
    for each B (L a constant there), so that each compiles only its own loops."""
    N, C, H, W = src.shape
    T, K = V.shape[1], V.shape[2]
    Hb, Wb = S * (4 * TH + 1), S * (4 * TW + 1)
    sf = src.reshape(src.size)
    vf = V.reshape(V.size)
    uC, SC = _u(C), _u(S * C)
    du = _u(S * Wb * C)          # z[u + 1, v] - z[u, v] in img
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
            short_p = sh == 1 and p == TH - 1
            for q in range(TW):
                short_q = sw == 1 and q == TW - 1
                for r in range(S):
                    z = _u(((S * 4 * p + r) * Wb + S * 4 * q) * C)   # z[0, 0], phase s = 0
                    # The data's passes are inlined once for whole and once for short sides (BT3),
                    # so that no loop branches on it; gy's differ only in where the point
                    # infinity is read (_a), its last value in the tile.
                    if L == 5 and short_p:
                        _down(img, z, du, L, True, 4, tmp, SC)
                    else:
                        _down(img, z, du, L, False, 2 if short_p else L - 1, tmp, SC)
                    for k in range(5):
                        if short_p and k == 3:
                            continue
                        row = (row0 + t) * (TH - sh if k == 3 else TH) + p
                        if L == 5 and short_q:
                            _along(tmp, k, L, True, True, 4, vf, T, K, row, TW, sw, q, r * S * C,
                                   SC)
                        else:
                            _along(tmp, k, L, False, short_q, 2 if short_q else L - 1, vf, T, K,
                                   row, TW, sw, q, r * S * C, SC)


@numba.njit(cache=True, inline="always")
def _down(img, z, du, L, short, last, tmp, SC):
    """tmp[k, v] = (B z)[k, v]: a tile's points down its columns (_transform_in), z its corner in
    img, du the step to the next row there, B BT3 if short; gy's point infinity from its row
    ``last`` (_a)."""
    for v in range(L):
        a0 = z + _u(v) * SC
        # (reads past a short tile's rows fall in img and go unused)
        a1, a2, a3 = a0 + du, a0 + _u(2) * du, a0 + _u(3) * du
        a4 = a0 + _u(last) * du
        for k in numba.literal_unroll(_FIVE):   # one store stream a loop
            if not (short and k == 3):
                o = (_u(k) * _u(L) + _u(v)) * SC
                for c in range(SC):
                    b = _points(L, short, img[a0 + c], img[a1 + c], img[a2 + c], img[a3 + c],
                                img[a4 + c])
                    tmp[o + c] = b[k]


@numba.njit(cache=True, inline="always")
def _along(tmp, k, L, short, skip3, last, vf, T, K, row, TW, sw, q, col, SC):
    """V[_slot(k, l), row*TWg + q, col + c] = (tmp B^T)[k, l] for every l (but 3 if skip3): row k
    of a tile's points along its rows (_transform_in), TWg the tile columns of (k, l)'s group,
    B^T BT3^T if short; gy's point infinity from its column ``last`` (_a)."""
    a0 = _u(k) * _u(L) * SC
    a1, a2, a3 = a0 + SC, a0 + _u(2) * SC, a0 + _u(3) * SC
    a4 = a0 + _u(last) * SC
    for l in numba.literal_unroll(_FIVE):
        if not (skip3 and l == 3):
            o = _u((_slot(k, l) * T + row * (TW - sw if l == 3 else TW) + q) * K + col)
            for c in range(SC):
                b = _points(L, short, tmp[a0 + c], tmp[a1 + c], tmp[a2 + c], tmp[a3 + c],
                            tmp[a4 + c])
                vf[o + c] = b[l]


@numba.njit(cache=True, nogil=True)
def _transform_out(M, n0, S, off, TH, TW, sh, sw, out, img, tmp, t0, t1):
    """The inverse transform: for images t0 <= t < t1 of the chunk, tile (p, q) and phase
    ph = r*S + s, Y = AT m AT^T (AT3 along a short side) with m[k, l] =
    M[_slot(k, l), row, ph*C + c] (row as in _transform_in, row0 = 0), written to
    out[n0 + t, c, S*(4p + i) + r + off, S*(4q + j) + s + off] where that lies inside out (a short
    tile's 4th row or column never does). img ((4*S*TH) * (4*S*TW) * C numbers) and tmp
    (4*5*S*C) are scratch: each image is built channels-last, whole tiles, then its part inside
    out is moved to NCHW. As in _transform_in, each loop covers the S phases s of one row phase
    r, and each pass is inlined once for whole and once for short sides."""
    N, C, H, W = out.shape
    T, K = M.shape[1], M.shape[2]
    Wb = 4 * S * TW
    mf = M.reshape(M.size)
    of = out.reshape(out.size)
    uC, SC = _u(C), _u(S * C)
    for t in range(t0, t1):
        for p in range(TH):
            short_p = sh == 1 and p == TH - 1
            for q in range(TW):
                short_q = sw == 1 and q == TW - 1
                for r in range(S):
                    col = r * S * C
                    for l in range(5):   # down the columns: tmp[i, l] = (AT m)[i, l]
                        if short_q and l == 3:
                            continue
                        cols = TW - sw if l == 3 else TW
                        row = (t * TH + p) * cols + q             # the tile in k != 3's groups
                        a0 = _u((_slot(0, l) * T + row) * K + col)
                        a1 = _u((_slot(1, l) * T + row) * K + col)
                        a2 = _u((_slot(2, l) * T + row) * K + col)
                        a4 = _u((_slot(4, l) * T + row) * K + col)
                        if short_p:   # (no point k = 3: m3 unused)
                            _up(mf, a0, a1, a2, a0, a4, l, True, tmp, SC)
                        else:
                            row = (t * (TH - sh) + p) * cols + q  # and in k = 3's
                            a3 = _u((_slot(3, l) * T + row) * K + col)
                            _up(mf, a0, a1, a2, a3, a4, l, False, tmp, SC)
                    o = _u(((S * 4 * p + r) * Wb + S * 4 * q) * C)   # Y[0, 0] in img, s = 0
                    du = _u(S * Wb * C)
                    for i in range(3 if short_p else 4):   # along the rows, into img
                        if short_q:
                            _back_along(tmp, i, True, img, o + _u(i) * du, SC)
                        else:
                            _back_along(tmp, i, False, img, o + _u(i) * du, SC)
        for c in range(C):   # the image's part inside out, to NCHW
            for h in range(H):
                row = _u(((h - off) * Wb - off) * C + c)
                d0 = _u((((n0 + t) * C + c) * H + h) * W)
                for w in range(_u(W)):
                    of[d0 + w] = img[row + w * uC]


@numba.njit(cache=True, inline="always")
def _up(mf, a0, a1, a2, a3, a4, l, short, tmp, SC):
    """tmp[i, l] = (AT m)[i, l] for every i, from the points m[k, l] at mf[a_k + c] (AT3 if
    short): a tile's outputs down its column l (_transform_out)."""
    for i in numba.literal_unroll(_FOUR):
        if not (short and i == 3):
            d = _u(i * 5 + l) * SC
            for c in range(SC):
                y = _outputs(short, mf[a0 + c], mf[a1 + c], mf[a2 + c], mf[a3 + c], mf[a4 + c])
                tmp[d + c] = y[i]


@numba.njit(cache=True, inline="always")
def _back_along(tmp, i, short, img, o, SC):
    """img[o + j*SC + c] = (tmp AT^T)[i, j] for every j (AT3 if short): row i of a tile's outputs
    (_transform_out)."""
    a0 = _u(i * 5) * SC
    a1, a2, a3, a4 = a0 + SC, a0 + _u(2) * SC, a0 + _u(3) * SC, a0 + _u(4) * SC
    for j in numba.literal_unroll(_FOUR):
        if not (short and j == 3):
            d = o + _u(j) * SC
            for c in range(SC):
                y = _outputs(short, tmp[a0 + c], tmp[a1 + c], tmp[a2 + c], tmp[a3 + c],
                             tmp[a4 + c])
                img[d + c] = y[j]


@numba.njit(cache=True, nogil=True)
def _kernel_points_task(w, transposed, GG, U, t0, t1):
    """U at the 25 points of each phase's 2x2 kernel (the layouts of :func:`_empty_points`, the
    points in _ORDER like GG's rows), for input channels t0 <= c < t1 of w (O, C, 4, 4) (the
    convolution) or output channels t0 <= o < t1 (the transposed one).

    A block of channels at a time: their taps are first gathered into contiguous runs, reading
    each w[o, c] (16 neighbouring numbers) once; then each point is one loop per phase and
    channel over such a run. The forward's layout takes blocks of 16 channels, which lie side by
    side in U, so that each point's writes are 4 runs of 16*O numbers instead of runs of O after
    reads at a stride of C*16 numbers (benchmarks/RESULTS.md, issue 16). The transposed layout's
    phases lie side by side already; there blocks were no faster than one channel."""
    O, C = w.shape[0], w.shape[1]
    n = C if transposed else O          # U's last axis runs over c (transposed) or o
    uf = U.reshape(U.size)
    point = _u(U.shape[1] * U.shape[2])
    B = 1 if transposed else 16
    taps = np.empty((B, 16, n), w.dtype)   # [channel in block, (r*2 + s)*4 + alpha*2 + beta, i]
    for b0 in range(t0, t1, B):
        nb = min(B, t1 - b0)
        for tb in range(nb):
            t = b0 + tb
            for i in range(n):   # t = o, i = c (transposed), or t = c, i = o
                for kh in range(4):
                    for kw in range(4):
                        # phase (kh % 2, kw % 2), tap (kh // 2, kw // 2), flipped if transposed
                        a, b = kh // 2, kw // 2
                        if transposed:
                            a, b = 1 - a, 1 - b
                        j = (kh % 2 * 2 + kw % 2) * 4 + a * 2 + b
                        taps[tb, j, i] = w[t, i, kh, kw] if transposed else w[i, t, kh, kw]
        for slot in range(25):
            g0, g1, g2, g3 = GG[slot, 0], GG[slot, 1], GG[slot, 2], GG[slot, 3]
            for j in range(4 * nb):   # U's order: channel, then phase (transposed), or the reverse
                tb, ph = (j // 4, j % 4) if transposed else (j % nb, j // nb)
                t = b0 + tb
                base = _u(t * 4 * C + ph * C) if transposed else _u((ph * C + t) * O)
                o = _u(slot) * point + base
                p0, p1 = taps[tb, ph * 4], taps[tb, ph * 4 + 1]
                p2, p3 = taps[tb, ph * 4 + 2], taps[tb, ph * 4 + 3]
                for i in range(_u(n)):
                    uf[o + i] = g0 * p0[i] + g1 * p1[i] + g2 * p2[i] + g3 * p3[i]


@numba.njit(cache=True, nogil=True)
def _points_to_taps(M, gw, sixth, t0, t1):
    """gw[o, c, 2*alpha + r, 2*beta + s] = (G^T m G)[alpha, beta] with
    m[k, l] = M[_slot(k, l), o, (r*2 + s)*C + c], for t0 <= o < t1: over the 4C contiguous columns
    of o's row at each point, one output stream a loop; sixth: 1/6 in M's type (a 1-element
    array), so that the arithmetic stays in it."""
    C = gw.shape[1]
    J = 4 * C
    mf = M.reshape(M.size)
    point = _u(M.shape[1] * J)
    uJ = _u(J)
    s6 = sixth[0]
    rows = np.empty(10 * J, M.dtype)   # (G^T m)[alpha, l, j]
    taps = np.empty(4 * J, M.dtype)    # (G^T m G)[alpha, beta, j]
    for o in range(t0, t1):
        for l in range(5):
            o0 = _u(o * J)   # o's row at each point
            a0, a1 = o0 + _u(_slot(0, l)) * point, o0 + _u(_slot(1, l)) * point
            a2, a3 = o0 + _u(_slot(2, l)) * point, o0 + _u(_slot(3, l)) * point
            a4 = o0 + _u(_slot(4, l)) * point
            for alpha in numba.literal_unroll((0, 1)):
                d = _u((alpha * 5 + l) * J)
                for j in range(uJ):
                    g = _gt(mf[a0 + j], mf[a1 + j], mf[a2 + j], mf[a3 + j], mf[a4 + j], s6)
                    rows[d + j] = g[alpha]
        for alpha in range(2):
            a0 = _u(alpha * 5 * J)
            for beta in numba.literal_unroll((0, 1)):
                d = _u((alpha * 2 + beta) * J)
                for j in range(uJ):
                    g = _gt(rows[a0 + j], rows[a0 + uJ + j], rows[a0 + _u(2) * uJ + j],
                            rows[a0 + _u(3) * uJ + j], rows[a0 + _u(4) * uJ + j], s6)
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


def _tiling(Ho, Wo):
    """(TH, TW, sh, sw) for the correlation to an Ho x Wo output phase and its weight gradient:
    the tiles down and along, and whether the last of them is short (fewer than 4 outputs left:
    F(3, 2))."""
    return _tiles(Ho), _tiles(Wo), int(Ho % 4 != 0), int(Wo % 4 != 0)


def _groups(TH, TW, sh, sw):
    """The point groups of a TH x TW grid of tiles, as (first slot, end slot, tile rows, tile
    columns): the tiles that have those points, all of them but for the points k = 3 when the last
    row of tiles is short (sh = 1) and l = 3 when the last column is (sw = 1). One group of all
    25 points when no tile is short."""
    if not (sh or sw):
        return ((0, 25, TH, TW),)
    return ((0, 16, TH, TW), (16, 20, TH - sh, TW), (20, 24, TH, TW - sw),
            (24, 25, TH - sh, TW - sw))


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
    """out for images t0 <= n < t1: transform, 25 products (over the tiles that have each point),
    inverse transform, chunk by chunk. geo = (S_in, off_in, S_out, off_out, TH, TW, sh, sw);
    kept: None, or the (25, N*TH*TW, K) array the transformed input goes to (for the weight
    gradient) instead of a work buffer."""
    S_in, off_in, S_out, off_out, TH, TW, sh, sw = geo
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
            V, first = cpu_memory.work("wino_V", (25, m * T, K), dt), 0
        else:
            V, first = kept, n0
        _transform_in(src, n0, S_in, off_in, TH, TW, sh, sw, V, first, *scratch_in, 0, m)
        for a, b, THg, TWg in _groups(TH, TW, sh, sw):
            rows = slice(first * THg * TWg, (first + m) * THg * TWg)
            np.matmul(V[a:b, rows], U[a:b], out=M[a:b, :m * THg * TWg])
        _transform_out(M, n0, S_out, off_out, TH, TW, sh, sw, out, *scratch_out, 0, m)


def _weight_grad_tiles(x, gy, TH, TW, sh, sw, Vx, Vg, t0, t1):
    """gy's tiles at the 25 points into Vg (A = AT.T), and x's into Vx unless Vx is None (kept
    by the forward), for images t0 <= n < t1, into their rows of the whole batch's arrays."""
    dt = x.dtype
    if Vx is not None:
        _transform_in(x, t0, 2, -1, TH, TW, sh, sw, Vx, t0,
                      *_scratch("wino_in", 2, TH, TW, 5, x.shape[1], dt), 0, t1 - t0)
    _transform_gy(gy, t0, TH, TW, sh, sw, Vg, t0,
                  *_scratch("wino_gy", 1, TH, TW, 4, gy.shape[1], dt), 0, t1 - t0)


def _point_products(Vg, Vx, M, groups, n, t0, t1):
    """M[slot] (O, 4C) = Vg[slot]^T @ Vx[slot] over the tiles of all n images that have the point
    (groups: :func:`_groups`): each a sum over the whole batch, so that no thread's partial sum
    has to be added to another's. A task is one tile position at one point (its rows in all n
    images), so a slot counts as many tasks as its group has tile positions (_product_tasks),
    and this call takes the slots that start at tasks t0 <= t < t1: threads given equal ranges
    of tasks get equal work even when some points have fewer tiles (D2's split by slots left one
    thread 1.5x the other's rows)."""
    start = 0
    for a, b, THg, TWg in groups:
        per = THg * TWg
        if per == 0:   # no tile has these points (a phase under 4 outputs): the first part's zeros
            if t0 == 0:
                M[a:b] = 0
            continue
        lo = a + min(b - a, max(0, -(-(t0 - start) // per)))   # first slot starting >= t0
        hi = a + min(b - a, max(0, -(-(t1 - start) // per)))   # first slot starting >= t1
        if lo < hi:
            rows = n * per
            np.matmul(Vg[lo:hi, :rows].transpose(0, 2, 1), Vx[lo:hi, :rows], out=M[lo:hi])
        start += (b - a) * per


def _product_tasks(groups):
    """The tasks of :func:`_point_products`: every slot's tile positions."""
    return sum((b - a) * THg * TWg for a, b, THg, TWg in groups)


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
    TH, TW, sh, sw = _tiling(Ho, Wo)
    shape = (25, N * TH * TW, 4 * C)
    kept = (cpu_memory.empty(shape, x.dtype)
            if 0 < N and 25 * N * TH * TW * 4 * C * x.itemsize <= keep_bytes else None)
    if N == 0:
        return y, kept
    U = _empty_points(w, transposed=False)
    with blas_on_calling_threads() as parts:
        run_phases([_points_phase(w, False, U),
                    (_correlate_images, N, (x, U, (2, -1, 1, 0, TH, TW, sh, sw), y, kept))],
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
    # output phase v covers rows 2v + r - 1 for v in [0, Ho], so Ho + 1 rows of tiles, all whole:
    # the phases r = 0 and 1 need the first and the last of those rows
    TH, TW = _tiles(Ho + 1), _tiles(Wo + 1)
    with blas_on_calling_threads() as parts:
        run_phases([_points_phase(w, True, U),
                    (_correlate_images, N, (gy, U, (1, -1, 2, -1, TH, TW, 0, 0), gx, None))],
                   max_parts=parts)
    return gx


def conv2d_grad_weight(x, gy, kept=None):
    """gw (O, C, 4, 4) of :func:`conv2d` for x (N, C, H, W) and gy (N, O, H/2, W/2); kept: what
    conv2d(x, ...) kept of x, or None to transform x here."""
    N, C, H, W = x.shape
    O, Ho, Wo = gy.shape[1:]
    TH, TW, sh, sw = _tiling(Ho, Wo)
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
    groups = _groups(TH, TW, sh, sw)
    with blas_on_calling_threads() as parts:
        run_phases([(_weight_grad_tiles, N, (x, gy, TH, TW, sh, sw,
                                             None if kept is not None else Vx, Vg)),
                    (_point_products, _product_tasks(groups), (Vg, Vx, M, groups, N)),
                    (_points_to_taps, O, (M, gw, np.array([1 / 6], x.dtype)))], max_parts=parts)
    return gw
