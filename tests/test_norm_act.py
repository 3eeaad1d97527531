"""Batch norm followed by ReLU / LeakyReLU, fused: the kernels, F.batch_norm_leaky_relu, and
nn.Sequential using them for a batch norm followed by its activation.

Everything is checked against the two ops run in turn (which test_norm.py and test_ops.py check
against the formulas), by finite differences (first and second derivatives), and for the fused
op really being the one that runs.
"""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import minigan.functional as F
from minigan import kernels, nn
from minigan.autograd import Tensor, grad
from minigan.functional.activation import LeakyReLU as LeakyReLUOp
from minigan.functional.norm import BatchNormLeakyReLUTrain
from minigan.kernels import cpu_threads
from minigan.testing import gradcheck, gradgradcheck

FAST = settings(max_examples=20, deadline=None)
SLOPES = [0.0, 0.2, 1.0]

shapes = st.one_of(
    st.tuples(st.integers(2, 5), st.integers(1, 4)),
    st.tuples(st.integers(1, 3), st.integers(1, 3), st.integers(1, 3), st.integers(1, 3)).filter(
        lambda s: s[0] * s[2] * s[3] > 1))


def _random(shape, seed, scale=1.0):
    return np.random.default_rng(seed).standard_normal(shape) * scale


def _leaves(*arrays):
    return [Tensor(a, requires_grad=True) for a in arrays]


# --- kernels ------------------------------------------------------------------------------------

@pytest.mark.parametrize("dtype, rtol", [(np.float64, 1e-12), (np.float32, 1e-5)])
@pytest.mark.parametrize("slope", SLOPES)
@pytest.mark.parametrize("shape", [(6, 3), (4, 5, 3, 2), (64, 8, 7, 7)])
def test_fused_kernels_match_batchnorm_then_activation(shape, slope, dtype, rtol):
    rng = np.random.default_rng(len(shape) + int(slope * 10))
    x = (rng.standard_normal(shape) * 2 + 0.5).astype(dtype)
    gz = rng.standard_normal(shape).astype(dtype)
    C = shape[1]
    weight, bias = rng.standard_normal(C).astype(dtype), rng.standard_normal(C).astype(dtype)
    mean, var = kernels.batchnorm_stats(x)
    invstd = (1 / np.sqrt(var + 1e-5)).astype(dtype)
    y = kernels.batchnorm_forward(x, mean, invstd, weight, bias)
    z = kernels.batchnorm_leaky_relu_forward(x, mean, invstd, weight, bias, slope)
    np.testing.assert_array_equal(z, kernels.leaky_relu(y, slope))
    want = kernels.batchnorm_backward(kernels.leaky_relu_grad(gz, y, slope), x, mean, invstd,
                                      weight)
    got = kernels.batchnorm_leaky_relu_backward(gz, z, x, mean, invstd, weight, slope)
    for g, w in zip(got, want):
        assert g.dtype == dtype
        np.testing.assert_allclose(g, w, rtol=rtol, atol=rtol)


def test_fused_kernels_reject_a_negative_slope_and_mismatched_shapes():
    x = np.ones((4, 2, 3, 3))
    mean, invstd = np.zeros(2), np.ones(2)
    with pytest.raises(ValueError, match="negative_slope >= 0.*-0.1"):
        kernels.batchnorm_leaky_relu_forward(x, mean, invstd, None, None, -0.1)
    with pytest.raises(ValueError, match="negative_slope >= 0"):
        kernels.batchnorm_leaky_relu_backward(x, x, x, mean, invstd, None, float("nan"))
    with pytest.raises(ValueError, match=r"gz \(4, 2, 3, 3\) and z \(4, 2, 3, 2\) must have"):
        kernels.batchnorm_leaky_relu_backward(x, x[..., :2].copy(), x, mean, invstd, None, 0.0)
    with pytest.raises(ValueError, match="weight has shape"):
        kernels.batchnorm_leaky_relu_forward(x, mean, invstd, np.ones(3), None, 0.0)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("slope", SLOPES)
@pytest.mark.parametrize("shape, affine", [((6, 3), True), ((4, 5, 3, 2), False),
                                           ((64, 24, 7, 7), True), ((16, 40, 14, 14), False)])
@pytest.mark.parametrize("threads", ["one", "split"])
def test_train_forward_gives_the_statistics_and_forward_bit_for_bit(shape, affine, slope, dtype,
                                                                    threads, monkeypatch):
    # the statistics and the forward in one pass of the threads give the numbers of the
    # statistics kernel, NumPy's invstd and the forward kernel, on one thread and split
    monkeypatch.setattr(cpu_threads, "MIN_PARALLEL_ELEMENTS", 1 << 40 if threads == "one" else 1)
    rng = np.random.default_rng(shape[1] + int(slope * 10))
    x = (rng.standard_normal(shape) * 3 + 2).astype(dtype)
    C = shape[1]
    weight, bias = ((rng.standard_normal(C).astype(dtype), rng.standard_normal(C).astype(dtype))
                    if affine else (None, None))
    z, mean, var, invstd = kernels.batchnorm_train_forward(x, weight, bias, 1e-3, slope)
    want_mean, want_var = kernels.batchnorm_stats(x)
    want_invstd = (1.0 / np.sqrt(want_var + 1e-3)).astype(dtype)
    want_z = kernels.batchnorm_leaky_relu_forward(x, want_mean, want_invstd, weight, bias, slope)
    for got, want in ((z, want_z), (mean, want_mean), (var, want_var), (invstd, want_invstd)):
        assert got.dtype == dtype
        np.testing.assert_array_equal(got, want)


def test_train_forward_rejects_bad_input():
    x = np.ones((4, 2, 3, 3), np.float32)
    with pytest.raises(ValueError, match="negative_slope >= 0"):
        kernels.batchnorm_train_forward(x, None, None, 1e-5, -0.2)
    with pytest.raises(ValueError, match="eps must be >= 0, got -1"):
        kernels.batchnorm_train_forward(x, None, None, -1.0)
    with pytest.raises(ValueError, match="bias has shape"):
        kernels.batchnorm_train_forward(x, np.ones(2, np.float32), np.ones(3, np.float32))
    with pytest.raises(TypeError, match="float64"):
        kernels.batchnorm_train_forward(x, np.ones(2), np.ones(2))
    with pytest.raises(ValueError, match="at least one"):
        kernels.batchnorm_train_forward(x[:0])


# --- F.batch_norm_leaky_relu --------------------------------------------------------------------

@FAST
@given(shape=shapes, seed=st.integers(0, 2 ** 16), slope=st.sampled_from([0.0, 0.2]))
def test_gradcheck(shape, seed, slope):
    C = shape[1]
    inputs = _leaves(_random(shape, seed, 2.0), _random(C, seed + 1), _random(C, seed + 2))
    assert gradcheck(lambda x, w, b: F.batch_norm_leaky_relu(
        x, None, None, w, b, training=True, negative_slope=slope), inputs)


@settings(max_examples=6, deadline=None)
@given(shape=st.sampled_from([(3, 2), (4, 1), (2, 2, 2, 1)]), seed=st.integers(0, 2 ** 16),
       slope=st.sampled_from([0.0, 0.2]))
def test_second_derivatives_gradgradcheck(shape, seed, slope):
    C = shape[1]
    inputs = _leaves(_random(shape, seed, 2.0), _random(C, seed + 1), _random(C, seed + 2))
    assert gradgradcheck(lambda x, w, b: F.batch_norm_leaky_relu(
        x, None, None, w, b, training=True, negative_slope=slope), inputs)


@pytest.mark.parametrize("slope", [0.0, 0.2, -0.3])
@pytest.mark.parametrize("training", [True, False])
def test_same_numbers_as_the_two_ops(slope, training):
    """Values, running statistics, and gradients with and without create_graph; the fused op
    runs exactly in training mode with a slope >= 0."""
    rng = np.random.default_rng(7)
    shape = (5, 3, 2, 2)
    results = []
    for fused in (True, False):
        x, w, b = _leaves(rng.standard_normal(shape) * 2, np.linspace(0.5, 1.5, 3),
                          np.linspace(-1, 1, 3))
        rm, rv = Tensor(np.zeros(3)), Tensor(np.ones(3))
        if fused:
            z = F.batch_norm_leaky_relu(x, rm, rv, w, b, training, 0.1, 1e-5, negative_slope=slope)
            want_op = BatchNormLeakyReLUTrain if training and slope >= 0 else LeakyReLUOp
            assert type(z.creator) is want_op
        else:
            z = F.leaky_relu(F.batch_norm(x, rm, rv, w, b, training, 0.1, 1e-5), slope)
        gz = Tensor(np.random.default_rng(8).standard_normal(shape))
        plain = grad(z, [x, w, b], gz, retain_graph=True)
        graphed = grad(z, [x, w, b], gz, create_graph=True)
        results.append([z, rm, rv, *plain, *graphed])
        rng = np.random.default_rng(7)   # the same inputs for the second run
    for a, b in zip(*results):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-12, atol=1e-12)


# --- nn.Sequential ------------------------------------------------------------------------------

@pytest.mark.parametrize("activation, fused_op", [
    (nn.ReLU(), BatchNormLeakyReLUTrain), (nn.LeakyReLU(0.2), BatchNormLeakyReLUTrain),
    (nn.LeakyReLU(-0.5), LeakyReLUOp)])
def test_sequential_fuses_batchnorm_and_activation_with_the_same_results(activation, fused_op):
    rng = np.random.default_rng(9)
    seq = nn.Sequential(nn.Conv2d(2, 4, 3, padding=1, bias=False), nn.BatchNorm2d(4), activation)
    seq.double()
    seq[1].weight.data[:] = np.linspace(0.5, 1.5, 4)
    x = Tensor(rng.standard_normal((3, 2, 5, 5)), requires_grad=True)
    gz = Tensor(rng.standard_normal((3, 4, 5, 5)))
    state = {k: v.copy() for k, v in seq.state_dict().items()}
    z = seq(x)
    assert type(z.creator) is fused_op
    got = [z] + list(grad(z, [x] + list(seq.parameters()), gz))
    got_state = {k: v.copy() for k, v in seq.state_dict().items()}
    seq.load_state_dict(state)
    y = x
    for module in seq:   # the same modules, one call each: nothing fused
        y = module(y)
    want = [y] + list(grad(y, [x] + list(seq.parameters()), gz))
    for a, b in zip(got, want):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-12, atol=1e-12)
    for k, v in seq.state_dict().items():
        np.testing.assert_allclose(got_state[k], v, rtol=1e-15)
    assert int(got_state["1.num_batches_tracked"]) == 1   # the fused call counted its step


def test_sequential_in_eval_mode_and_subclassed_modules_are_not_fused():
    bn = nn.BatchNorm2d(3).double()
    seq = nn.Sequential(bn, nn.ReLU())
    x = Tensor(np.random.default_rng(1).standard_normal((2, 3, 2, 2)), requires_grad=True)
    seq.eval()
    assert type(seq(x).creator) is LeakyReLUOp

    class LoudReLU(nn.ReLU):
        def forward(self, x):
            return F.relu(x) * 2.0

    seq = nn.Sequential(nn.BatchNorm2d(3).double(), LoudReLU())
    z = seq(x)
    np.testing.assert_allclose(z.numpy(), 2 * F.relu(seq[0](x)).numpy(), rtol=1e-12)
