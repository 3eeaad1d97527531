"""CPU kernels (minigan.kernels on NumPy arrays) against float64 references written here.

Convolution: forward against a tap-by-tap loop reference; grad_input and grad_weight against
their own loop references and through the adjoint identities
<conv2d(x, w), g> = <x, conv2d_grad_input(g, w)> = <w, conv2d_grad_weight(x, g)>.
Batchnorm against the NumPy formulas and a finite difference of the whole training-mode function;
LeakyReLU against np.where. float32 results must match float64 ones to float32 accuracy.
"""
import threading
import time

import numba
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import minigan.kernels as K
from minigan.kernels import cpu_conv, cpu_gemm, cpu_memory, cpu_threads


# --- references -----------------------------------------------------------------------------------

def out_size(size, k, s, p):
    return (size + 2 * p - k) // s + 1


def ref_conv2d(x, w, stride, padding):
    """y[n,o,i,j] = sum_{c,a,b} w[o,c,a,b] x_padded[n, c, i*sh + a, j*sw + b], one tap at a time."""
    (sh, sw), (ph, pw) = stride, padding
    N, C, H, W = x.shape
    O, _, kh, kw = w.shape
    Ho, Wo = out_size(H, kh, sh, ph), out_size(W, kw, sw, pw)
    xp = np.pad(x.astype(np.float64), ((0, 0), (0, 0), (ph, ph), (pw, pw)))
    y = np.zeros((N, O, Ho, Wo))
    for a in range(kh):
        for b in range(kw):
            patch = xp[:, :, a:a + sh * (Ho - 1) + 1:sh, b:b + sw * (Wo - 1) + 1:sw]
            y += np.einsum("nchw,oc->nohw", patch, w[:, :, a, b].astype(np.float64))
    return y


def ref_conv2d_grad_input(gy, w, input_hw, stride, padding):
    """Scatter each tap's contribution back onto the padded input, then crop the padding."""
    (sh, sw), (ph, pw), (H, W) = stride, padding, input_hw
    N, O, Ho, Wo = gy.shape
    _, C, kh, kw = w.shape
    gxp = np.zeros((N, C, H + 2 * ph, W + 2 * pw))
    for a in range(kh):
        for b in range(kw):
            gxp[:, :, a:a + sh * (Ho - 1) + 1:sh, b:b + sw * (Wo - 1) + 1:sw] += np.einsum(
                "nohw,oc->nchw", gy.astype(np.float64), w[:, :, a, b].astype(np.float64))
    return gxp[:, :, ph:ph + H, pw:pw + W]


def ref_conv2d_grad_weight(x, gy, kernel_hw, stride, padding):
    (sh, sw), (ph, pw), (kh, kw) = stride, padding, kernel_hw
    _, O, Ho, Wo = gy.shape
    xp = np.pad(x.astype(np.float64), ((0, 0), (0, 0), (ph, ph), (pw, pw)))
    gw = np.zeros((O, x.shape[1], kh, kw))
    for a in range(kh):
        for b in range(kw):
            patch = xp[:, :, a:a + sh * (Ho - 1) + 1:sh, b:b + sw * (Wo - 1) + 1:sw]
            gw[:, :, a, b] = np.einsum("nohw,nchw->oc", gy.astype(np.float64), patch)
    return gw


@st.composite
def conv_cases(draw):
    """Batch, channels, kernel (square or not, 1x1 up to 5), stride (below, equal to and above the
    kernel size), padding, and an input size for which the kernel fits the padded input."""
    kh, kw = draw(st.integers(1, 5)), draw(st.integers(1, 5))
    sh, sw = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    ph, pw = draw(st.integers(0, 3)), draw(st.integers(0, 3))
    H = draw(st.integers(max(1, kh - 2 * ph), kh + 6))
    W = draw(st.integers(max(1, kw - 2 * pw), kw + 6))
    N, C, O = draw(st.integers(1, 3)), draw(st.integers(1, 5)), draw(st.integers(1, 5))
    seed = draw(st.integers(0, 2 ** 31 - 1))
    return N, C, O, (H, W), (kh, kw), (sh, sw), (ph, pw), seed


def conv_arrays(case, dtype=np.float64):
    N, C, O, (H, W), (kh, kw), stride, padding, seed = case
    rng = np.random.default_rng(seed)
    Ho, Wo = out_size(H, kh, stride[0], padding[0]), out_size(W, kw, stride[1], padding[1])
    x = rng.standard_normal((N, C, H, W)).astype(dtype)
    w = rng.standard_normal((O, C, kh, kw)).astype(dtype)
    g = rng.standard_normal((N, O, Ho, Wo)).astype(dtype)
    return x, w, g


# --- convolution ----------------------------------------------------------------------------------

@settings(max_examples=30, deadline=None)
@given(conv_cases())
def test_conv2d_matches_loop_reference_and_float32(case):
    x, w, _ = conv_arrays(case)
    stride, padding = case[5], case[6]
    y = K.conv2d(x, w, stride, padding)
    assert y.dtype == np.float64
    np.testing.assert_allclose(y, ref_conv2d(x, w, stride, padding), rtol=1e-12, atol=1e-12)
    y32 = K.conv2d(x.astype(np.float32), w.astype(np.float32), stride, padding)
    assert y32.dtype == np.float32
    np.testing.assert_allclose(y32, y, rtol=1e-4, atol=1e-4 * np.sqrt(x.shape[1] * w[0].size))


@settings(max_examples=30, deadline=None)
@given(conv_cases())
def test_conv2d_gradients_are_the_adjoints(case):
    x, w, g = conv_arrays(case)
    stride, padding = case[5], case[6]
    kernel_hw, input_hw = w.shape[2:], x.shape[2:]
    gx = K.conv2d_grad_input(g, w, input_hw, stride, padding)
    gw = K.conv2d_grad_weight(x, g, kernel_hw, stride, padding)
    assert gx.shape == x.shape and gw.shape == w.shape
    lhs = np.vdot(K.conv2d(x, w, stride, padding), g)
    scale = np.sqrt(x.size * w.size)
    assert abs(lhs - np.vdot(x, gx)) <= 1e-10 * scale
    assert abs(lhs - np.vdot(w, gw)) <= 1e-10 * scale
    np.testing.assert_allclose(gx, ref_conv2d_grad_input(g, w, input_hw, stride, padding),
                               rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(gw, ref_conv2d_grad_weight(x, g, kernel_hw, stride, padding),
                               rtol=1e-12, atol=1e-11)
    x32, w32, g32 = x.astype(np.float32), w.astype(np.float32), g.astype(np.float32)
    gx32 = K.conv2d_grad_input(g32, w32, input_hw, stride, padding)
    gw32 = K.conv2d_grad_weight(x32, g32, kernel_hw, stride, padding)
    assert gx32.dtype == gw32.dtype == np.float32
    np.testing.assert_allclose(gx32, gx, rtol=1e-4, atol=1e-4 * np.sqrt(w.shape[0] * w[0, 0].size))
    np.testing.assert_allclose(gw32, gw, rtol=1e-4, atol=1e-4 * np.sqrt(g[:, 0].size))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_dcgan_shapes_including_whole_input_kernel(dtype):
    """The generator's and discriminator's layer shapes: stride-2 4x4 with padding 1 (also with
    one input channel and more outputs than kernel taps, a different GEMM orientation), and the
    7x7 kernel over a 7x7 map (which takes the plain matrix-product path)."""
    rng = np.random.default_rng(3)
    for (N, C, O, H, k, s, p) in [(3, 6, 5, 14, 4, 2, 1), (3, 1, 20, 12, 4, 2, 1),
                                  (3, 7, 4, 7, 7, 1, 0), (2, 1, 5, 7, 7, 1, 0)]:
        x = rng.standard_normal((N, C, H, H)).astype(dtype)
        w = rng.standard_normal((O, C, k, k)).astype(dtype)
        y = K.conv2d(x, w, (s, s), (p, p))
        g = rng.standard_normal(y.shape).astype(dtype)
        tol = dict(rtol=1e-4, atol=1e-4) if dtype == np.float32 else dict(rtol=1e-11, atol=1e-11)
        np.testing.assert_allclose(y, ref_conv2d(x, w, (s, s), (p, p)), **tol)
        np.testing.assert_allclose(K.conv2d_grad_input(g, w, (H, H), (s, s), (p, p)),
                                   ref_conv2d_grad_input(g, w, (H, H), (s, s), (p, p)), **tol)
        np.testing.assert_allclose(K.conv2d_grad_weight(x, g, (k, k), (s, s), (p, p)),
                                   ref_conv2d_grad_weight(x, g, (k, k), (s, s), (p, p)), **tol)


def test_padding_wider_than_kernel_and_stride_beyond_input():
    """Output pixels whose whole kernel lies in the padding (pad > kernel size, stride > input)."""
    rng = np.random.default_rng(10)
    for (H, W), (kh, kw), stride, padding in [((4, 3), (1, 2), (1, 5), (2, 3)),
                                              ((1, 1), (1, 1), (5, 5), (2, 2)),
                                              ((3, 2), (2, 1), (3, 2), (3, 4))]:
        x = rng.standard_normal((2, 3, H, W))
        w = rng.standard_normal((4, 3, kh, kw))
        y = K.conv2d(x, w, stride, padding)
        np.testing.assert_allclose(y, ref_conv2d(x, w, stride, padding), atol=1e-12)
        g = rng.standard_normal(y.shape)
        np.testing.assert_allclose(K.conv2d_grad_input(g, w, (H, W), stride, padding),
                                   ref_conv2d_grad_input(g, w, (H, W), stride, padding),
                                   atol=1e-12)
        np.testing.assert_allclose(K.conv2d_grad_weight(x, g, (kh, kw), stride, padding),
                                   ref_conv2d_grad_weight(x, g, (kh, kw), stride, padding),
                                   atol=1e-11)


def test_conv_chunking_gives_the_same_result(monkeypatch):
    """Cutting the batch into one-image chunks (and partial weight-gradient sums) changes nothing."""
    rng = np.random.default_rng(4)
    x = rng.standard_normal((5, 3, 9, 8))
    w = rng.standard_normal((4, 3, 3, 4))
    g = rng.standard_normal((5, 4, 5, 4))
    args = ((2, 2), (1, 1))
    whole = (K.conv2d(x, w, *args), K.conv2d_grad_input(g, w, (9, 8), *args),
             K.conv2d_grad_weight(x, g, (3, 4), *args))
    monkeypatch.setattr(cpu_conv, "CHUNK_BYTES", 1)
    chunked = (K.conv2d(x, w, *args), K.conv2d_grad_input(g, w, (9, 8), *args),
               K.conv2d_grad_weight(x, g, (3, 4), *args))
    for a, b in zip(whole, chunked):
        np.testing.assert_allclose(a, b, rtol=1e-13, atol=1e-13)


@pytest.mark.parametrize("chunk_bytes", [cpu_conv.CHUNK_BYTES, 1])
def test_kept_patches_give_the_weight_gradient_of_gathering_them_again(monkeypatch, chunk_bytes):
    """conv2d(keep_patches=True) returns y unchanged and the im2col matrix of x, which
    conv2d_grad_weight then uses instead of gathering it (whole batch and one-image chunks)."""
    monkeypatch.setattr(cpu_conv, "CHUNK_BYTES", chunk_bytes)
    rng = np.random.default_rng(5)
    x = rng.standard_normal((5, 3, 9, 8))
    w = rng.standard_normal((4, 3, 3, 4))
    g = rng.standard_normal((5, 4, 5, 4))
    args = ((2, 2), (1, 1))
    y, patches = K.conv2d(x, w, *args, keep_patches=True)
    assert patches.shape == (5 * 5 * 4, 3 * 3 * 4)
    np.testing.assert_array_equal(y, K.conv2d(x, w, *args))
    x_before = x.copy()
    x += 1.0   # patches hold the forward's x: changing x afterwards does not reach them
    kept = K.conv2d_grad_weight(x_before, g, (3, 4), *args, patches=patches)
    np.testing.assert_allclose(kept, K.conv2d_grad_weight(x_before, g, (3, 4), *args),
                               rtol=1e-13, atol=1e-13)
    np.testing.assert_allclose(K.conv2d_grad_weight(x, g, (3, 4), *args, patches=patches), kept)
    with pytest.raises(ValueError, match="patches .* do not belong to x"):
        K.conv2d_grad_weight(x[:4], g[:4], (3, 4), *args, patches=patches)


def test_patches_are_not_kept_for_dense_kernels_or_beyond_the_size_limit(monkeypatch):
    x = np.ones((2, 3, 4, 4))
    assert K.conv2d(x, np.ones((5, 3, 4, 4)), keep_patches=True)[1] is None   # one GEMM
    monkeypatch.setattr(cpu_conv, "KEEP_PATCHES_BYTES", 8)
    y, patches = K.conv2d(x, np.ones((5, 3, 3, 3)), keep_patches=True)
    assert patches is None and y.shape == (2, 5, 2, 2)


@pytest.fixture
def split_every_call(monkeypatch):
    """Make every kernel call share its tasks over the threads, however small the arrays."""
    monkeypatch.setattr(cpu_threads, "MIN_PARALLEL_ELEMENTS", 0)
    monkeypatch.setattr(cpu_threads, "num_threads", lambda: 3)
    monkeypatch.setattr(cpu_gemm, "MIN_SPLIT_MACS", 0)


def assert_float64_conv_matches_references(x, w, g, stride, padding):
    """The three float64 products against the loop references, to rounding."""
    np.testing.assert_allclose(K.conv2d(x, w, stride, padding), ref_conv2d(x, w, stride, padding),
                               rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(K.conv2d_grad_input(g, w, x.shape[2:], stride, padding),
                               ref_conv2d_grad_input(g, w, x.shape[2:], stride, padding),
                               rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(K.conv2d_grad_weight(x, g, w.shape[2:], stride, padding),
                               ref_conv2d_grad_weight(x, g, w.shape[2:], stride, padding),
                               rtol=1e-12, atol=1e-11)


# The fixture's monkeypatch is the same for every example, so sharing it across them is fine.
@settings(max_examples=10, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(case=conv_cases())
def test_conv_split_over_threads_matches_reference(split_every_call, case):
    x, w, g = conv_arrays(case)
    assert_float64_conv_matches_references(x, w, g, case[5], case[6])


def test_run_tasks_covers_every_task_once(split_every_call):
    seen = []
    lock = __import__("threading").Lock()

    def kernel(out, t0, t1):
        with lock:
            seen.extend(range(t0, t1))
    for n in (1, 2, 7, 100):
        seen.clear()
        cpu_threads.run_tasks(kernel, n, 10 ** 6, None)
        assert sorted(seen) == list(range(n))


@numba.njit(nogil=True)
def _phase_fill(out, value, t0, t1):
    for t in range(t0, t1):
        out[t] = value


@numba.njit(nogil=True)
def _phase_reverse_sum(src, dst, t0, t1):
    """dst[t] = sum of src over the tasks the other threads did: wrong unless every thread's
    part of the phase before had ended (the barrier)."""
    n = src.shape[0]
    for t in range(t0, t1):
        dst[t] = src[n - 1 - t] + src[(t * 7) % n]


@pytest.mark.parametrize("together", [True, False])
def test_run_phases_runs_each_phase_after_the_one_before_on_every_thread(split_every_call,
                                                                         monkeypatch, together):
    monkeypatch.setattr(cpu_threads, "PHASES_TOGETHER", together)
    for n in (1, 2, 3, 50, 1001):
        a = np.zeros(n)
        b = np.zeros(n)
        for trial in range(20):
            out = cpu_threads.run_phases([(_phase_fill, n, (a, float(trial + 1))),
                                          (_phase_reverse_sum, n, (a, b))])
            np.testing.assert_array_equal(b, 2.0 * (trial + 1))
            assert len(out) == 2 and all(len(r) == min(3, n) for r in out)


def test_run_phases_raises_the_failing_threads_error_and_stops(split_every_call):
    def fail_in_the_last_part(out, t0, t1):
        if t1 == out.shape[0]:
            raise ValueError("the last part failed")
    a = np.zeros(30)
    later = []
    with pytest.raises(ValueError, match="last part failed"):
        cpu_threads.run_phases([(fail_in_the_last_part, 30, (a,)),
                                (lambda out, t0, t1: later.append(t0), 30, (a,))])
    assert later == []   # no thread went on to the next phase
    # the pool still works
    cpu_threads.run_phases([(_phase_fill, 30, (a, 3.0))])
    np.testing.assert_array_equal(a, 3.0)


@numba.njit(nogil=True)
def _square_tasks(out, t0, t1):
    for t in range(t0, t1):
        out[t] = t * t
    return t1 - t0


def _finishes_within(seconds, fn):
    """fn() on a thread of its own, which must end within ``seconds`` (a pool that lost a
    wake-up would wait forever); fn's error, if any, is raised here."""
    errors = []

    def run():
        try:
            fn()
        except BaseException as e:
            errors.append(e)
    t = threading.Thread(target=run, daemon=True)
    t.start()
    t.join(seconds)
    assert not t.is_alive(), f"still waiting after {seconds} s"
    if errors:
        raise errors[0]


@pytest.mark.parametrize("spin", [0.0, 2e-3])
def test_pool_threads_asleep_or_awake_give_every_result_and_error(split_every_call, monkeypatch,
                                                                   spin):
    """With the pool's threads falling asleep between calls (no spin, or pauses longer than the
    spin) or still awake (back to back), every call gets all its parts' values; a failing part
    raises its error and the pool keeps working."""
    monkeypatch.setattr(cpu_threads, "SPIN_SECONDS", spin)
    _finishes_within(60, _calls_asleep_and_awake)


def _calls_asleep_and_awake():
    for pause in (0.0, 0.005):
        for n in (2, 3, 100):
            out = np.zeros(n)
            parts = min(3, n)
            assert cpu_threads.run_tasks(_square_tasks, n, 1, out) == [
                n * (p + 1) // parts - n * p // parts for p in range(parts)]
            np.testing.assert_array_equal(out, np.arange(n) ** 2)
            time.sleep(pause)

    def fail_in_a_pool_part(out, t0, t1):
        if t0 > 0:
            raise ValueError(f"part {t0} failed")
    with pytest.raises(ValueError, match="part .* failed"):
        cpu_threads.run_tasks(fail_in_a_pool_part, 30, 1, None)
    out = np.zeros(30)
    cpu_threads.run_tasks(_square_tasks, 30, 1, out)
    np.testing.assert_array_equal(out, np.arange(30) ** 2)


def test_run_tasks_from_two_threads_at_once_and_from_inside_a_part(split_every_call):
    """While one call holds the pool, a call from another thread of the program, or from inside
    one of the call's own parts, runs its parts on its own thread: every task once, no deadlock."""
    inner = [np.zeros(12) for _ in range(3)]

    def outer_part(out, t0, t1):   # each part makes a split call of its own
        for t in range(t0, t1):
            cpu_threads.run_tasks(_square_tasks, 12, 1, inner[t])
            out[t] = 1
    outer = np.zeros(3)
    _finishes_within(60, lambda: cpu_threads.run_tasks(outer_part, 3, 1, outer))
    np.testing.assert_array_equal(outer, 1)
    for a in inner:
        np.testing.assert_array_equal(a, np.arange(12) ** 2)

    outs = [np.zeros(5000) for _ in range(4)]
    errors = []

    def caller(out):
        try:
            for _ in range(50):
                cpu_threads.run_tasks(_square_tasks, out.shape[0], 1, out)
        except BaseException as e:
            errors.append(e)
    threads = [threading.Thread(target=caller, args=(out,)) for out in outs]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors and not any(t.is_alive() for t in threads)
    for out in outs:
        np.testing.assert_array_equal(out, np.arange(5000.0) ** 2)


def _split_in_a_child(queue):
    out = np.zeros(40)
    cpu_threads.run_tasks(_square_tasks, 40, 1, out)
    queue.put(out.tolist())


def test_a_forked_child_starts_its_own_pool(split_every_call):
    """The parent's pool threads do not exist in a forked child: its first split call makes its
    own (it would wait forever on the parent's)."""
    import multiprocessing
    cpu_threads.run_tasks(_square_tasks, 40, 1, np.zeros(40))   # the parent's pool exists
    ctx = multiprocessing.get_context("fork")
    queue = ctx.Queue()
    child = ctx.Process(target=_split_in_a_child, args=(queue,))
    child.start()
    got = queue.get(timeout=60)
    child.join(60)
    assert child.exitcode == 0
    assert got == (np.arange(40.0) ** 2).tolist()


@pytest.mark.parametrize("m, k, n", [(7, 5, 3), (3, 4, 11), (0, 3, 2), (2, 0, 3), (1, 1, 1)])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_gemm_split_over_threads_matches_numpy(split_every_call, m, k, n, dtype):
    """Row slabs (tall results), column slabs (wide ones), empty and 1x1 products, written into
    a strided view of a larger array as the convolutions do."""
    rng = np.random.default_rng(m * 100 + k * 10 + n)
    a = rng.standard_normal((m, k)).astype(dtype)
    b = rng.standard_normal((n, k)).astype(dtype).T  # a transposed view, like wk.T
    big = np.full((m, n + 4), 7.0, dtype)
    out = big[:, 2:2 + n]
    assert cpu_gemm.matmul(a, b, out) is out
    np.testing.assert_allclose(out, a.astype(np.float64) @ b.astype(np.float64),
                               rtol=1e-5, atol=1e-5)
    assert (big[:, :2] == 7).all() and (big[:, 2 + n:] == 7).all()


def test_conv_without_blas_thread_control_runs_on_one_thread(split_every_call, monkeypatch):
    """Where NumPy's BLAS is not an OpenBLAS minigan can hold to one thread, the convolutions
    keep to the calling thread (the BLAS shares out each product itself) and give the same
    results."""
    monkeypatch.setattr(cpu_gemm, "_BLAS", [])
    used = []
    real = cpu_threads.run_tasks

    def spy(kernel, ntasks, elements, *args, **kw):
        used.append(kw.get("max_parts"))
        return real(kernel, ntasks, elements, *args, **kw)
    monkeypatch.setattr(cpu_conv, "run_tasks", spy)
    rng = np.random.default_rng(5)
    x = rng.standard_normal((5, 3, 9, 8))
    w = rng.standard_normal((4, 3, 3, 2))
    g = rng.standard_normal((5, 4, 5, 4))
    assert_float64_conv_matches_references(x, w, g, (2, 2), (1, 0))
    assert used == [1, 1, 1]


@pytest.mark.skipif(not cpu_gemm._BLAS, reason="threadpoolctl finds no BLAS whose thread count "
                    "minigan can set")
def test_gemm_runs_openblas_single_threaded_and_restores_the_setting(monkeypatch):
    def get():
        return [c.get_num_threads() for c in cpu_gemm._BLAS]
    before = get()
    seen = []
    real = cpu_threads.run_tasks

    def spy(*args, **kw):
        seen.append(get())
        return real(*args, **kw)
    monkeypatch.setattr(cpu_threads, "num_threads", lambda: 2)
    monkeypatch.setattr(cpu_threads, "run_tasks", spy)
    a = np.ones((300, 200), np.float32)
    out = np.empty((300, 100), np.float32)
    cpu_gemm.matmul(a, np.ones((200, 100), np.float32), out)
    assert seen == [[1] * len(cpu_gemm._BLAS)] and get() == before
    np.testing.assert_array_equal(out, 200)
    with pytest.raises(ValueError):  # a failing product restores the setting too
        cpu_gemm.matmul(a, np.ones((201, 100), np.float32), out)
    assert get() == before


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_empty_batch(dtype):
    x = np.zeros((0, 3, 6, 6), dtype)
    w = np.ones((2, 3, 3, 3), dtype)
    y = K.conv2d(x, w, (2, 2), (1, 1))
    assert y.shape == (0, 2, 3, 3) and y.dtype == dtype
    assert K.conv2d_grad_input(y, w, (6, 6), (2, 2), (1, 1)).shape == (0, 3, 6, 6)
    gw = K.conv2d_grad_weight(x, y, (3, 3), (2, 2), (1, 1))
    assert gw.shape == w.shape and not gw.any()


def test_results_do_not_alias_work_buffers():
    """Outputs stay valid after later calls reuse the internal scratch buffers."""
    rng = np.random.default_rng(5)
    x1, x2 = rng.standard_normal((2, 2, 2, 6, 6))
    w = rng.standard_normal((1, 2, 3, 3))
    y1 = K.conv2d(x1, w, (1, 1), (1, 1))
    kept = y1.copy()
    K.conv2d(x2, w, (1, 1), (1, 1))
    K.conv2d_grad_weight(x2, y1, (3, 3), (1, 1), (1, 1))
    np.testing.assert_array_equal(y1, kept)


def test_result_arrays_are_recycled_only_when_unreferenced():
    shape = (cpu_memory.MIN_RECYCLE_BYTES // 8 + 1,)  # big enough for the pool
    a = cpu_memory.empty(shape, np.float64)
    b = cpu_memory.empty(shape, np.float64)
    assert a is not b  # a is still referenced
    view = a[10:]
    del a
    c = cpu_memory.empty(shape, np.float64)
    assert c is not view.base  # a view keeps its base in use
    kept_id = id(b)
    del b
    assert id(cpu_memory.empty(shape, np.float64)) == kept_id  # dropped -> handed out again


def test_large_results_survive_later_calls():
    """Results big enough to come from the recycling pool stay intact while referenced."""
    rng = np.random.default_rng(9)
    x = rng.standard_normal((8, 16, 32, 32)).astype(np.float32)  # y below is 2 MiB
    w = rng.standard_normal((16, 16, 3, 3)).astype(np.float32)
    y1 = K.conv2d(x, w, (1, 1), (1, 1))
    kept = y1.copy()
    for _ in range(3):
        y2 = K.conv2d(x[::-1].copy(), w, (1, 1), (1, 1))
        assert y2 is not y1
        K.leaky_relu(y2, 0.2)
    np.testing.assert_array_equal(y1, kept)


def test_conv_accepts_non_contiguous_and_int_arguments():
    rng = np.random.default_rng(6)
    x = rng.standard_normal((2, 5, 6, 3)).transpose(0, 3, 1, 2)  # (2, 3, 5, 6), not contiguous
    w = rng.standard_normal((4, 3, 2, 2))
    np.testing.assert_allclose(K.conv2d(x, w, 2, 1), ref_conv2d(x, w, (2, 2), (1, 1)),
                               rtol=1e-12, atol=1e-12)


def test_conv_errors_name_the_problem():
    x = np.zeros((2, 3, 8, 8), np.float32)
    with pytest.raises(ValueError, match=r"\(2, 3, 8, 8\).*\(4, 5, 3, 3\)"):
        K.conv2d(x, np.zeros((4, 5, 3, 3), np.float32), (1, 1), (0, 0))
    with pytest.raises(TypeError, match="float64"):
        K.conv2d(x, np.zeros((4, 3, 3, 3)), (1, 1), (0, 0))
    with pytest.raises(TypeError, match="int64"):
        K.conv2d(x.astype(np.int64), np.zeros((4, 3, 3, 3), np.int64), (1, 1), (0, 0))
    with pytest.raises(ValueError, match="4-D"):
        K.conv2d(x[0], np.zeros((4, 3, 3, 3), np.float32), (1, 1), (0, 0))
    with pytest.raises(ValueError, match="larger than the padded input"):
        K.conv2d(x, np.zeros((4, 3, 9, 9), np.float32), (1, 1), (0, 0))
    with pytest.raises(ValueError, match="stride"):
        K.conv2d(x, np.zeros((4, 3, 3, 3), np.float32), (0, 1), (0, 0))
    w = np.zeros((4, 3, 3, 3), np.float32)
    with pytest.raises(ValueError, match=r"gy has shape \(2, 4, 5, 5\)"):
        K.conv2d_grad_input(np.zeros((2, 4, 5, 5), np.float32), w, (8, 8), (1, 1), (0, 0))
    with pytest.raises(ValueError, match="channels"):
        K.conv2d_grad_input(np.zeros((2, 3, 6, 6), np.float32), w, (8, 8), (1, 1), (0, 0))
    with pytest.raises(ValueError, match=r"gy has shape"):
        K.conv2d_grad_weight(x, np.zeros((3, 4, 6, 6), np.float32), (3, 3), (1, 1), (0, 0))


# --- batchnorm ------------------------------------------------------------------------------------

def ref_batchnorm_train(x, weight, bias, eps):
    """Training-mode batchnorm in float64 with NumPy: statistics from the batch itself."""
    axes = (0,) if x.ndim == 2 else (0, 2, 3)
    shape = (1, -1) if x.ndim == 2 else (1, -1, 1, 1)
    mean = x.mean(axis=axes)
    invstd = 1.0 / np.sqrt(x.var(axis=axes) + eps)
    return (x - mean.reshape(shape)) * (invstd * weight).reshape(shape) + bias.reshape(shape)


@st.composite
def bn_cases(draw):
    four_d = draw(st.booleans())
    N, C = draw(st.integers(1, 5)), draw(st.integers(1, 6))
    shape = (N, C, draw(st.integers(1, 5)), draw(st.integers(1, 5))) if four_d else (N + 1, C)
    return shape, draw(st.integers(0, 2 ** 31 - 1)), draw(st.booleans())


@settings(max_examples=25, deadline=None)
@given(bn_cases())
def test_batchnorm_forward_backward(case):
    shape, seed, affine = case
    rng = np.random.default_rng(seed)
    C, eps = shape[1], 1e-5
    x = rng.standard_normal(shape) * 2.0 + 3.0
    gy = rng.standard_normal(shape)
    weight = rng.standard_normal(C) if affine else None
    bias = rng.standard_normal(C) if affine else None
    w_ = np.ones(C) if weight is None else weight
    b_ = np.zeros(C) if bias is None else bias
    axes = (0,) if x.ndim == 2 else (0, 2, 3)
    shp = (1, -1) if x.ndim == 2 else (1, -1, 1, 1)

    mean, var = K.batchnorm_stats(x)
    np.testing.assert_allclose(mean, x.mean(axis=axes), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(var, x.var(axis=axes), rtol=1e-10, atol=1e-12)
    invstd = 1.0 / np.sqrt(var + eps)
    y = K.batchnorm_forward(x, mean, invstd, weight, bias)
    np.testing.assert_allclose(y, ref_batchnorm_train(x, w_, b_, eps), rtol=1e-10, atol=1e-10)

    gx, gweight, gbias = K.batchnorm_backward(gy, x, mean, invstd, weight)
    M = x.size // C
    xhat = (x - mean.reshape(shp)) * invstd.reshape(shp)
    gb_ref = gy.sum(axis=axes)
    gw_ref = (gy * xhat).sum(axis=axes)
    gx_ref = (w_ * invstd).reshape(shp) / M * (M * gy - gb_ref.reshape(shp) - xhat * gw_ref.reshape(shp))
    np.testing.assert_allclose(gbias, gb_ref, rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(gweight, gw_ref, rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(gx, gx_ref, rtol=1e-9, atol=1e-10)

    # The formula itself: directional derivative of <gy, bn(x)> along a random v.
    v = rng.standard_normal(shape)
    h = 1e-6
    fd = (np.vdot(gy, ref_batchnorm_train(x + h * v, w_, b_, eps))
          - np.vdot(gy, ref_batchnorm_train(x - h * v, w_, b_, eps))) / (2 * h)
    assert abs(fd - np.vdot(gx, v)) <= 1e-5 * (1 + abs(fd))

    # float32 in, float32 out, close to the float64 results.
    f = np.float32
    m32, v32 = K.batchnorm_stats(x.astype(f))
    assert m32.dtype == v32.dtype == f
    inv32 = (1.0 / np.sqrt(v32 + f(eps))).astype(f)
    w32 = None if weight is None else weight.astype(f)
    b32 = None if bias is None else bias.astype(f)
    y32 = K.batchnorm_forward(x.astype(f), m32, inv32, w32, b32)
    assert y32.dtype == f
    np.testing.assert_allclose(y32, y, rtol=1e-3, atol=1e-3)
    out32 = K.batchnorm_backward(gy.astype(f), x.astype(f), m32, inv32, w32)
    for a, b in zip(out32, (gx, gweight, gbias)):
        assert a.dtype == f
        np.testing.assert_allclose(a, b, rtol=1e-3, atol=1e-3 * np.sqrt(M))


def test_batchnorm_stats_float32_accurate_with_large_mean():
    """A large offset must not wreck float32 variance (no sum-of-squares cancellation)."""
    rng = np.random.default_rng(7)
    x64 = rng.standard_normal((64, 3, 16, 16)) * 0.01 + 1000.0
    mean, var = K.batchnorm_stats(x64.astype(np.float32))
    x32 = x64.astype(np.float32).astype(np.float64)  # the numbers the kernel actually saw
    np.testing.assert_allclose(mean, x32.mean(axis=(0, 2, 3)), rtol=1e-7)
    np.testing.assert_allclose(var, x32.var(axis=(0, 2, 3)), rtol=1e-5)


def test_batchnorm_nan_propagates_and_errors():
    x = np.ones((4, 2, 3, 3), np.float32)
    x[1, 0, 2, 2] = np.nan
    mean, var = K.batchnorm_stats(x)
    assert np.isnan(mean[0]) and np.isnan(var[0]) and np.isfinite(mean[1])
    with pytest.raises(ValueError, match=r"\(3,\).*2 channels"):
        K.batchnorm_forward(x, mean, np.ones(3, np.float32))
    with pytest.raises(TypeError, match="dtype mismatch"):
        K.batchnorm_forward(x, mean.astype(np.float64), var)
    with pytest.raises(ValueError, match="differs"):
        K.batchnorm_backward(x[:2], x, mean, var)
    with pytest.raises(ValueError, match="2-D or 4-D"):
        K.batchnorm_stats(x[0])
    with pytest.raises(ValueError, match="at least one value per channel"):
        K.batchnorm_stats(x[:0])


# --- activations ----------------------------------------------------------------------------------

@settings(max_examples=15, deadline=None)
@given(st.lists(st.integers(1, 7), min_size=1, max_size=4), st.sampled_from([0.0, 0.01, 0.2]),
       st.sampled_from([np.float32, np.float64]), st.integers(0, 2 ** 31 - 1))
def test_leaky_relu(shape, slope, dtype, seed):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(shape).astype(dtype)
    gy = rng.standard_normal(shape).astype(dtype)
    y = K.leaky_relu(x, slope)
    gx = K.leaky_relu_grad(gy, x, slope)
    assert y.dtype == gx.dtype == dtype and y.shape == x.shape
    np.testing.assert_allclose(y, np.where(x > 0, x, dtype(slope) * x), rtol=0, atol=0)
    np.testing.assert_allclose(gx, np.where(x > 0, gy, dtype(slope) * gy), rtol=0, atol=0)


def test_pointwise_kernels_split_over_threads(split_every_call):
    rng = np.random.default_rng(8)
    x = rng.standard_normal((5, 4, 6, 7))
    gy = rng.standard_normal(x.shape)
    mean, var = K.batchnorm_stats(x)
    np.testing.assert_allclose(mean, x.mean(axis=(0, 2, 3)), rtol=1e-12)
    np.testing.assert_allclose(var, x.var(axis=(0, 2, 3)), rtol=1e-10)
    invstd = 1.0 / np.sqrt(var + 1e-5)
    y = K.batchnorm_forward(x, mean, invstd)
    np.testing.assert_allclose(y, ref_batchnorm_train(x, np.ones(4), np.zeros(4), 1e-5), rtol=1e-10,
                               atol=1e-10)
    gx, gweight, gbias = K.batchnorm_backward(gy, x, mean, invstd)
    np.testing.assert_allclose(gbias, gy.sum(axis=(0, 2, 3)), rtol=1e-10, atol=1e-12)
    big = rng.standard_normal(40000)  # several 2^14-element blocks
    np.testing.assert_array_equal(K.leaky_relu(big, 0.2), np.where(big > 0, big, 0.2 * big))
    np.testing.assert_array_equal(K.leaky_relu_grad(big[::-1], big, 0.2),
                                  np.where(big > 0, big[::-1], 0.2 * big[::-1]))


def test_leaky_relu_grad_checks_shapes():
    with pytest.raises(ValueError, match="differs"):
        K.leaky_relu_grad(np.ones(3), np.ones(4), 0.2)


@pytest.mark.parametrize("split", [False, True])
@pytest.mark.parametrize("kernel, channels", [((4, 4), 1), ((2, 3), 2), ((3, 3), 4)])
def test_per_image_products_for_few_columns_match_the_chunked_ones(monkeypatch, request, kernel,
                                                                   channels, split):
    """K = C*kh*kw <= SMALL_K runs one product per image on the NCHW arrays; forcing every shape
    onto either path gives the same three results, and both match the loop references (on one
    thread, and with the images shared over three)."""
    if split:
        request.getfixturevalue("split_every_call")
    rng = np.random.default_rng(11)
    x = rng.standard_normal((5, channels, 9, 8))
    w = rng.standard_normal((6, channels, *kernel))
    stride, padding = (2, 1), (1, 2)
    y = ref_conv2d(x, w, stride, padding)
    g = rng.standard_normal(y.shape)
    results = []
    for small_k in (0, 10 ** 6):   # every K on the chunked path, then on the per-image one
        monkeypatch.setattr(cpu_conv, "SMALL_K", small_k)
        assert_float64_conv_matches_references(x, w, g, stride, padding)
        _, patches = K.conv2d(x, w, stride, padding, keep_patches=True)
        results.append(K.conv2d_grad_weight(x, g, kernel, stride, padding, patches=patches))
    np.testing.assert_allclose(results[0], results[1], rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_gemm_with_one_column_is_the_outer_product(dtype):
    """k = 1 (a dense layer with one output, backward) is computed as a broadcast multiply, into
    a strided view of a larger array, with the same values as the product."""
    rng = np.random.default_rng(12)
    a = rng.standard_normal((64, 1)).astype(dtype)
    b = rng.standard_normal((1, 300)).astype(dtype)
    big = np.full((64, 304), 7.0, dtype)
    out = big[:, 2:302]
    assert cpu_gemm.matmul(a, b, out) is out
    np.testing.assert_array_equal(out, a.astype(np.float64) * b.astype(np.float64)
                                  if dtype == np.float64 else a * b)
    np.testing.assert_allclose(out, np.matmul(a, b), rtol=1e-6)
    assert (big[:, :2] == 7).all() and (big[:, 302:] == 7).all()
