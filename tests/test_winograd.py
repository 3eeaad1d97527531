"""Winograd F(4x4, 2x2) for the DCGAN's stride-2 4x4 convolutions (minigan.kernels.cpu_winograd).

The transforms' written-out formulas against the matrices, the matrices' defining identity, and
the three products against the loop references of test_kernels_cpu (float64 to rounding, float32
to float32 accuracy), through the public kernels that route to them, also chunked and split over
threads; the geometry outside F(4x4, 2x2)'s reach keeps im2col.
"""
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import minigan.kernels as K
from minigan.kernels import cpu_winograd as wg
from test_kernels_cpu import ref_conv2d, ref_conv2d_grad_input, ref_conv2d_grad_weight

S2P1 = ((2, 2), (1, 1))


@pytest.fixture(autouse=True)
def winograd_on(monkeypatch):
    monkeypatch.setattr(wg, "ENABLED", True)


def test_on_by_default_and_off_keeps_im2col(monkeypatch):
    monkeypatch.undo()
    assert wg.ENABLED and wg.applies((14, 14), (128, 64, 4, 4), *S2P1)
    monkeypatch.setattr(wg, "ENABLED", False)
    assert not wg.applies((14, 14), (128, 64, 4, 4), *S2P1)


def test_written_out_transforms_are_the_matrices():
    rng = np.random.default_rng(0)
    d, e, m = (rng.standard_normal(n) for n in (5, 4, 5))
    np.testing.assert_allclose(wg._bt(*d), wg.BT @ d, rtol=1e-14, atol=1e-14)
    np.testing.assert_allclose(wg._a(*e, e[3]), wg.AT.T @ e, rtol=1e-14, atol=1e-14)
    np.testing.assert_allclose(wg._at(*m), wg.AT @ m, rtol=1e-14, atol=1e-14)
    np.testing.assert_allclose(wg._gt(*m, 1 / 6), wg.G.T @ m, rtol=1e-14, atol=1e-14)


def test_written_out_short_transforms_are_the_matrices():
    """F(3, 2)'s transforms, each in the places of F(4, 2)'s points 0, 1, -1, infinity (0, 1, 2,
    4): the point 2's place is left unused. gy's is _a with e3 = 0 and infinity's value e2."""
    rng = np.random.default_rng(7)
    d, e, m = (rng.standard_normal(n) for n in (4, 3, 4))
    short = [0, 1, 2, 4]
    np.testing.assert_allclose(np.array(wg._bt3(*d))[short], wg.BT3 @ d, rtol=1e-14, atol=1e-14)
    np.testing.assert_allclose(np.array(wg._a(*e, 0.0, e[2]))[short], wg.AT3.T @ e, rtol=1e-14,
                               atol=1e-14)   # gy's short tile: e3 = 0, the point infinity e2
    np.testing.assert_allclose(wg._at3(*m), wg.AT3 @ m, rtol=1e-14, atol=1e-14)


def test_short_tile_shares_the_weights_points():
    """AT3 [(G3 g) * (BT3 d)] = 3 outputs of the correlation, with G3 = the rows of G at F(4, 2)'s
    points 0, 1, -1, infinity, so one U serves whole and short tiles; and its adjoint in g."""
    rng = np.random.default_rng(8)
    G3 = wg.G[[0, 1, 2, 4]]
    for _ in range(5):
        d, g, gy = rng.standard_normal(4), rng.standard_normal(2), rng.standard_normal(3)
        direct = np.array([g[0] * d[i] + g[1] * d[i + 1] for i in range(3)])
        np.testing.assert_allclose(wg.AT3 @ ((G3 @ g) * (wg.BT3 @ d)), direct, atol=1e-13)
        grad_g = np.array([sum(gy[i] * d[i + a] for i in range(3)) for a in range(2)])
        np.testing.assert_allclose(G3.T @ ((wg.AT3.T @ gy) * (wg.BT3 @ d)), grad_g, atol=1e-13)


@pytest.mark.parametrize("transposed", [False, True])
def test_weights_points_in_blocks_and_parts(transposed):
    """U, filled by channel ranges of uneven sizes (blocks of channels and a partial last block
    in each), holds G g_ph G^T of each phase's 2x2 kernel at each point, in the documented
    layouts: U[slot, (r, s, c), o] for the convolution, U[slot, o, (r, s, c)] with the taps
    flipped for the transposed one."""
    rng = np.random.default_rng(9)
    O, C = 24, 40
    w = rng.standard_normal((O, C, 4, 4))
    U = wg._empty_points(w, transposed)
    kernel, n, args = wg._points_phase(w, transposed, U)
    for t0, t1 in ((0, 13), (13, n - 1), (n - 1, n)):
        kernel(*args, t0, t1)
    GG = np.kron(wg.G, wg.G)
    for r in range(2):
        for s in range(2):
            if transposed:   # g[o, c, alpha, beta] = w[o, c, 2(1 - alpha) + r, 2(1 - beta) + s]
                g = w[:, :, [2 + r, r]][:, :, :, [2 + s, s]]
            else:            # g[o, c, alpha, beta] = w[o, c, 2 alpha + r, 2 beta + s]
                g = w[:, :, [r, 2 + r]][:, :, :, [s, 2 + s]]
            points = np.einsum("xk,ock->xoc", GG, g.reshape(O, C, 4))   # (25, O, C)
            for xi in range(25):
                slot = wg._slot.py_func(xi // 5, xi % 5)
                ph = slice((r * 2 + s) * C, (r * 2 + s + 1) * C)
                got = U[slot][:, ph] if transposed else U[slot][ph].T
                np.testing.assert_allclose(got, points[xi], rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("tiling", [(2, 2, 1, 1), (1, 2, 1, 0), (1, 1, 1, 1), (3, 2, 0, 0)])
def test_weight_gradient_products_split_by_tiles(tiling):
    """The weight gradient's point products, split into any number of equal ranges of tasks
    (tiles, so that points with fewer tiles weigh less), give every slot once: each M[slot] the
    product over its group's tiles, zeros where no tile has the point."""
    rng = np.random.default_rng(10)
    n, O, K = 3, 5, 6
    groups = wg._groups(*tiling)
    rows = n * tiling[0] * tiling[1]
    Vg, Vx = rng.standard_normal((25, rows, O)), rng.standard_normal((25, rows, K))
    want = np.zeros((25, O, K))
    for a, b, THg, TWg in groups:
        for slot in range(a, b):
            want[slot] = Vg[slot, :n * THg * TWg].T @ Vx[slot, :n * THg * TWg]
    tasks = wg._product_tasks(groups)
    for parts in (1, 2, 3, 7):
        M = np.full((25, O, K), np.nan)
        for p in range(parts):
            wg._point_products(Vg, Vx, M, groups, n, tasks * p // parts, tasks * (p + 1) // parts)
        np.testing.assert_allclose(M, want, rtol=1e-12, atol=1e-12)


def test_points_are_stored_in_groups():
    """_slot puts the 16 points every tile has first, then k = 3, l = 3 and (3, 3), one place
    each; _groups gives each group the tiles that have its points."""
    slots = [[wg._slot(k, l) for l in range(5)] for k in range(5)]
    assert sorted(sum(slots, [])) == list(range(25))
    assert sorted(slots[k][l] for k in range(5) for l in range(5) if 3 not in (k, l)) == \
        list(range(16))
    assert [slots[3][l] for l in (0, 1, 2, 4)] == [16, 17, 18, 19]
    assert [slots[k][3] for k in (0, 1, 2, 4)] == [20, 21, 22, 23] and slots[3][3] == 24
    assert list(wg._ORDER[[slots[k][l] for k in range(5) for l in range(5)]]) == list(range(25))
    assert wg._groups(2, 3, 0, 0) == ((0, 25, 2, 3),)
    assert wg._groups(2, 3, 1, 1) == ((0, 16, 2, 3), (16, 20, 1, 3), (20, 24, 2, 2),
                                      (24, 25, 1, 2))


def test_matrices_compute_four_outputs_of_a_two_tap_correlation():
    """AT [(G g) * (BT d)] = (sum_a g[a] d[i + a])_i, and its adjoint in g is the weight gradient
    G^T [(A gy) * (BT d)]."""
    rng = np.random.default_rng(1)
    for _ in range(5):
        d, g, gy = rng.standard_normal(5), rng.standard_normal(2), rng.standard_normal(4)
        direct = np.array([g[0] * d[i] + g[1] * d[i + 1] for i in range(4)])
        np.testing.assert_allclose(wg.AT @ ((wg.G @ g) * (wg.BT @ d)), direct, atol=1e-13)
        grad_g = np.array([sum(gy[i] * d[i + a] for i in range(4)) for a in range(2)])
        np.testing.assert_allclose(wg.G.T @ ((wg.AT.T @ gy) * (wg.BT @ d)), grad_g, atol=1e-13)


def _arrays(rng, N, C, O, H, W, dtype):
    x = rng.standard_normal((N, C, H, W)).astype(dtype)
    w = rng.standard_normal((O, C, 4, 4)).astype(dtype)
    g = rng.standard_normal((N, O, H // 2, W // 2)).astype(dtype)
    return x, w, g


def _check(x, w, g, tol):
    H, W = x.shape[2:]
    assert wg.applies((H, W), w.shape, *S2P1)
    np.testing.assert_allclose(K.conv2d(x, w, *S2P1), ref_conv2d(x, w, *S2P1), **tol)
    np.testing.assert_allclose(K.conv2d_grad_input(g, w, (H, W), *S2P1),
                               ref_conv2d_grad_input(g, w, (H, W), *S2P1), **tol)
    np.testing.assert_allclose(K.conv2d_grad_weight(x, g, (4, 4), *S2P1),
                               ref_conv2d_grad_weight(x, g, (4, 4), *S2P1), **tol)


@pytest.mark.parametrize("shape", [(3, 16, 24, 14, 14),   # the DCGAN's 14 -> 7 (2x2 tiles)
                                   (2, 16, 16, 8, 8),     # 4 -> exactly one tile
                                   (2, 20, 17, 6, 10),    # rectangular, partial tiles
                                   (2, 16, 16, 16, 24),   # 8 x 12: whole tiles only
                                   (2, 16, 16, 16, 10),   # whole tiles down, a short one along
                                   (1, 16, 16, 2, 2)])    # a 1x1 output
def test_float64_matches_the_loop_references(shape):
    rng = np.random.default_rng(2)
    _check(*_arrays(rng, *shape, np.float64), dict(rtol=1e-11, atol=1e-11))


def test_float32_is_as_accurate_as_float32_im2col():
    """Against the float64 reference, scaled to the sums' size: Winograd's float32 error is
    ~2e-6 of the output's scale."""
    rng = np.random.default_rng(3)
    x, w, g = _arrays(rng, 4, 64, 32, 14, 14, np.float32)
    scale = np.sqrt(64 * 16)
    tol = dict(rtol=1e-4, atol=2e-5 * scale)
    _check(x, w, g, tol)


def test_chunks_and_threads_give_the_same_result(monkeypatch):
    """One image per chunk (partial weight-gradient sums added) and three threads change nothing."""
    rng = np.random.default_rng(4)
    x, w, g = _arrays(rng, 5, 16, 18, 10, 10, np.float64)
    whole = (K.conv2d(x, w, *S2P1), K.conv2d_grad_input(g, w, (10, 10), *S2P1),
             K.conv2d_grad_weight(x, g, (4, 4), *S2P1))
    from minigan.kernels import cpu_gemm, cpu_threads
    monkeypatch.setattr(wg, "CHUNK_BYTES", 1)
    monkeypatch.setattr(wg, "MIN_TILES", 1)
    monkeypatch.setattr(cpu_threads, "MIN_PARALLEL_ELEMENTS", 0)
    monkeypatch.setattr(cpu_threads, "num_threads", lambda: 3)
    monkeypatch.setattr(cpu_gemm, "MIN_SPLIT_MACS", 0)
    parts = (K.conv2d(x, w, *S2P1), K.conv2d_grad_input(g, w, (10, 10), *S2P1),
             K.conv2d_grad_weight(x, g, (4, 4), *S2P1))
    for a, b in zip(whole, parts):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12)


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(N=st.integers(1, 3), C=st.integers(16, 24), O=st.integers(16, 24),
       H=st.integers(1, 9).map(lambda h: 2 * h), W=st.integers(1, 9).map(lambda v: 2 * v),
       seed=st.integers(0, 2**16))
def test_random_shapes_match_the_loop_references(N, C, O, H, W, seed):
    rng = np.random.default_rng(seed)
    _check(*_arrays(rng, N, C, O, H, W, np.float64), dict(rtol=1e-10, atol=1e-10))


def test_empty_batch():
    x, w = np.zeros((0, 16, 14, 14)), np.ones((16, 16, 4, 4))
    assert K.conv2d(x, w, *S2P1).shape == (0, 16, 7, 7)
    assert K.conv2d_grad_input(np.zeros((0, 16, 7, 7)), w, (14, 14), *S2P1).shape == x.shape
    np.testing.assert_array_equal(K.conv2d_grad_weight(x, np.zeros((0, 16, 7, 7)), (4, 4), *S2P1),
                                  np.zeros((16, 16, 4, 4)))


@pytest.mark.parametrize("hw, w_shape, stride, padding", [
    ((14, 14), (16, 8, 4, 4), (2, 2), (1, 1)),    # too few channels: im2col's one product wins
    ((28, 28), (64, 1, 4, 4), (2, 2), (1, 1)),    # the DCGAN's 1-channel first layer
    ((15, 14), (16, 16, 4, 4), (2, 2), (1, 1)),   # odd input
    ((14, 14), (16, 16, 3, 3), (2, 2), (1, 1)),   # another kernel
    ((14, 14), (16, 16, 4, 4), (1, 1), (1, 1)),   # another stride
    ((14, 14), (16, 16, 4, 4), (2, 2), (0, 0))])  # another padding
def test_other_geometries_keep_im2col(hw, w_shape, stride, padding):
    assert not wg.applies(hw, w_shape, stride, padding)


def test_transposed_convolution_with_output_padding_keeps_im2col():
    """ConvTranspose2d asking for an odd output (output_padding=1) is not F(4x4, 2x2)'s shape:
    the gradient-in-x kernel must take im2col there and still be right."""
    rng = np.random.default_rng(5)
    g = rng.standard_normal((2, 16, 7, 7))
    w = rng.standard_normal((16, 16, 4, 4))
    np.testing.assert_allclose(K.conv2d_grad_input(g, w, (15, 15), *S2P1),
                               ref_conv2d_grad_input(g, w, (15, 15), *S2P1), atol=1e-11)


def test_kept_tiles_give_the_weight_gradient_of_transforming_x_again():
    """conv2d(keep_patches=True) keeps x's tiles at the 25 points (3-D), and the weight gradient
    from them equals the one that transforms x itself; tiles of another x, or for another
    geometry, are refused by name."""
    rng = np.random.default_rng(6)
    x, w, g = _arrays(rng, 3, 16, 20, 10, 10, np.float64)
    y, kept = K.conv2d(x, w, *S2P1, keep_patches=True)
    assert kept.shape == (25, 3 * 2 * 2, 4 * 16)   # 3 images x 2x2 tiles of a 5x5 output
    np.testing.assert_array_equal(y, K.conv2d(x, w, *S2P1))
    np.testing.assert_allclose(K.conv2d_grad_weight(x, g, (4, 4), *S2P1, patches=kept),
                               K.conv2d_grad_weight(x, g, (4, 4), *S2P1), rtol=1e-13, atol=1e-13)
    with pytest.raises(ValueError, match="kept tiles .* do not belong to x"):
        K.conv2d_grad_weight(x[:2], g[:2], (4, 4), *S2P1, patches=kept)
    with pytest.raises(ValueError, match="are Winograd's"):
        K.conv2d_grad_weight(x, g, (3, 3), *S2P1, patches=kept)
