"""Batch normalisation: F.batch_norm, nn.BatchNorm1d and nn.BatchNorm2d.

Checked against the formula written here in NumPy (batch statistics with the biased variance in
training, running estimates updated with the unbiased one, running estimates in evaluation), by
finite differences with a random upstream gradient (first and second derivatives), and for the
graph not growing from step to step.
"""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import minigan.functional as F
from minigan import kernels, nn
from minigan.autograd import Tensor, grad
from minigan.testing import GradcheckError, gradcheck, gradgradcheck

FAST = settings(max_examples=20, deadline=None)
SECOND_ORDER = settings(max_examples=8, deadline=None)


def _axes(x):
    return (0,) if x.ndim == 2 else (0, 2, 3)


def _per_channel(v, x):
    return v.reshape((1, -1) + (1,) * (x.ndim - 2))


def ref_train(x, weight, bias, eps):
    """(x - mean) / sqrt(var + eps) * weight + bias with the batch's biased variance."""
    axes = _axes(x)
    mean = x.mean(axis=axes)
    var = ((x - _per_channel(mean, x)) ** 2).mean(axis=axes)
    y = (x - _per_channel(mean, x)) / np.sqrt(_per_channel(var, x) + eps)
    if weight is not None:
        y = y * _per_channel(weight, x) + _per_channel(bias, x)
    return y


# (N, C) or (N, C, H, W), at least two values per channel
bn_shapes = st.one_of(
    st.tuples(st.integers(2, 5), st.integers(1, 4)),
    st.tuples(st.integers(1, 3), st.integers(1, 3), st.integers(1, 3), st.integers(1, 3)).filter(
        lambda s: s[0] * s[2] * s[3] > 1))


def _random(shape, seed, scale=1.0, shift=0.0):
    return np.random.default_rng(seed).standard_normal(shape) * scale + shift


# ------------------------------------------------------------------------------------------------
# Forward and running statistics
# ------------------------------------------------------------------------------------------------
@FAST
@given(shape=bn_shapes, seed=st.integers(0, 2 ** 16), momentum=st.sampled_from([0.1, 0.3, 1.0]))
def test_train_mode_matches_formula_and_updates_running_stats(shape, seed, momentum):
    C = shape[1]
    x = _random(shape, seed, scale=2.0, shift=0.5)
    weight, bias = _random(C, seed + 1), _random(C, seed + 2)
    rm0, rv0 = _random(C, seed + 3), np.abs(_random(C, seed + 4)) + 0.5
    running_mean, running_var = Tensor(rm0.copy()), Tensor(rv0.copy())
    eps = 1e-3
    y = F.batch_norm(Tensor(x), running_mean, running_var, Tensor(weight), Tensor(bias),
                     training=True, momentum=momentum, eps=eps)
    np.testing.assert_allclose(y.numpy(), ref_train(x, weight, bias, eps), rtol=1e-9, atol=1e-9)

    axes = _axes(x)
    count = x.size // C
    unbiased = x.var(axis=axes, ddof=1)
    assert count > 1
    np.testing.assert_allclose(running_mean.numpy(),
                               (1 - momentum) * rm0 + momentum * x.mean(axis=axes), rtol=1e-10)
    np.testing.assert_allclose(running_var.numpy(), (1 - momentum) * rv0 + momentum * unbiased,
                               rtol=1e-10)


def test_running_var_uses_unbiased_variance_exactly():
    """x = [0, 2] per channel: biased var 1, unbiased var 2; momentum 1 copies the estimate."""
    x = Tensor(np.array([[0.0], [2.0]]))
    rm, rv = Tensor(np.zeros(1)), Tensor(np.ones(1))
    y = F.batch_norm(x, rm, rv, training=True, momentum=1.0, eps=0.0)
    np.testing.assert_allclose(y.numpy(), [[-1.0], [1.0]])      # normalised with var 1
    assert rm.numpy().tolist() == [1.0]
    assert rv.numpy().tolist() == [2.0]


def test_without_affine_and_without_running_stats():
    x = _random((4, 3, 2, 2), 0, scale=3.0)
    y = F.batch_norm(Tensor(x), None, None, training=True)
    np.testing.assert_allclose(y.numpy(), ref_train(x, None, None, 1e-5), rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(y.numpy().mean(axis=(0, 2, 3)), 0.0, atol=1e-12)


@FAST
@given(shape=bn_shapes, seed=st.integers(0, 2 ** 16))
def test_eval_mode_uses_running_stats(shape, seed):
    C = shape[1]
    x = _random(shape, seed)
    weight, bias = _random(C, seed + 1), _random(C, seed + 2)
    rm, rv = _random(C, seed + 3), np.abs(_random(C, seed + 4)) + 0.1
    running_mean, running_var = Tensor(rm.copy()), Tensor(rv.copy())
    y = F.batch_norm(Tensor(x), running_mean, running_var, Tensor(weight), Tensor(bias),
                     training=False, eps=1e-5)
    expected = ((x - _per_channel(rm, x)) / np.sqrt(_per_channel(rv, x) + 1e-5)
                * _per_channel(weight, x) + _per_channel(bias, x))
    np.testing.assert_allclose(y.numpy(), expected, rtol=1e-10, atol=1e-10)
    # evaluation leaves the running estimates alone
    np.testing.assert_array_equal(running_mean.numpy(), rm)
    np.testing.assert_array_equal(running_var.numpy(), rv)


def test_float32_matches_float64():
    x = _random((8, 3, 4, 4), 0, scale=5.0, shift=10.0)    # a large mean tests the variance pass
    w, b = _random(3, 1), _random(3, 2)
    y32 = F.batch_norm(Tensor(x.astype(np.float32)), None, None, Tensor(w.astype(np.float32)),
                       Tensor(b.astype(np.float32)), training=True)
    assert y32.dtype == np.float32
    np.testing.assert_allclose(y32.numpy(), ref_train(x, w, b, 1e-5), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("cls, shape", [(nn.BatchNorm1d, (6, 3)), (nn.BatchNorm2d, (4, 3, 2, 2))])
def test_module_train_eval_and_num_batches_tracked(cls, shape):
    bn = cls(3, momentum=0.2).double()
    with_params = np.array([0.5, 2.0, -1.0]), np.array([0.1, 0.0, 0.3])
    bn.weight.data[...], bn.bias.data[...] = with_params
    assert bn.running_mean.numpy().tolist() == [0, 0, 0]
    assert bn.running_var.numpy().tolist() == [1, 1, 1]
    assert int(bn.num_batches_tracked.item()) == 0

    rm, rv = np.zeros(3), np.ones(3)
    for step in range(3):
        x = _random(shape, step, scale=2.0, shift=step)
        y = bn(Tensor(x))
        np.testing.assert_allclose(y.numpy(), ref_train(x, *with_params, bn.eps), rtol=1e-9,
                                   atol=1e-9)
        axes = _axes(x)
        rm = 0.8 * rm + 0.2 * x.mean(axis=axes)
        rv = 0.8 * rv + 0.2 * x.var(axis=axes, ddof=1)
        assert int(bn.num_batches_tracked.item()) == step + 1
    np.testing.assert_allclose(bn.running_mean.numpy(), rm, rtol=1e-10)
    np.testing.assert_allclose(bn.running_var.numpy(), rv, rtol=1e-10)

    bn.eval()
    x = _random(shape, 9)
    y = bn(Tensor(x))
    expected = ((x - _per_channel(rm, x)) / np.sqrt(_per_channel(rv, x) + bn.eps)
                * _per_channel(with_params[0], x) + _per_channel(with_params[1], x))
    np.testing.assert_allclose(y.numpy(), expected, rtol=1e-9, atol=1e-9)
    assert int(bn.num_batches_tracked.item()) == 3          # evaluation does not count
    np.testing.assert_allclose(bn.running_mean.numpy(), rm, rtol=1e-10)


def test_module_without_tracking_uses_batch_stats_in_eval():
    bn = nn.BatchNorm2d(2, track_running_stats=False).double().eval()
    x = _random((3, 2, 2, 2), 0, shift=4.0)
    np.testing.assert_allclose(bn(Tensor(x)).numpy(), ref_train(x, np.ones(2), np.zeros(2),
                                                                 bn.eps), rtol=1e-9, atol=1e-9)
    assert "running_mean" not in bn.state_dict()


def test_state_dict_holds_running_stats():
    bn = nn.BatchNorm2d(3)
    bn(Tensor(_random((2, 3, 2, 2), 0).astype(np.float32)))
    state = bn.state_dict()
    assert list(state) == ["weight", "bias", "running_mean", "running_var",
                           "num_batches_tracked"]
    assert state["num_batches_tracked"].dtype == np.int64
    assert int(state["num_batches_tracked"]) == 1
    np.testing.assert_array_equal(state["running_mean"], bn.running_mean.numpy())
    assert [name for name, _ in bn.named_parameters()] == ["weight", "bias"]

    fresh = nn.BatchNorm2d(3)
    fresh.load_state_dict(state)
    np.testing.assert_array_equal(fresh.running_var.numpy(), bn.running_var.numpy())
    assert int(fresh.num_batches_tracked.item()) == 1


# ------------------------------------------------------------------------------------------------
# Gradients
# ------------------------------------------------------------------------------------------------
def _leaves(*arrays):
    return [Tensor(a, requires_grad=True) for a in arrays]


@FAST
@given(shape=bn_shapes, seed=st.integers(0, 2 ** 16))
def test_fused_backward_gradcheck(shape, seed):
    """gradcheck takes first derivatives without create_graph, so the fused kernel runs."""
    C = shape[1]
    inputs = _leaves(_random(shape, seed, scale=2.0), _random(C, seed + 1), _random(C, seed + 2))
    assert gradcheck(lambda x, w, b: F.batch_norm(x, None, None, w, b, training=True), inputs)


@FAST
@given(shape=bn_shapes, seed=st.integers(0, 2 ** 16))
def test_fused_backward_gradcheck_without_affine(shape, seed):
    (x,) = _leaves(_random(shape, seed))
    assert gradcheck(lambda x: F.batch_norm(x, None, None, training=True), [x])


def test_fused_and_differentiable_backward_agree():
    """The create_graph path (written with ops) and the fused kernel give the same gradients."""
    rng = np.random.default_rng(3)
    x, w, b = _leaves(rng.standard_normal((4, 3, 2, 2)), rng.standard_normal(3),
                      rng.standard_normal(3))
    gy = Tensor(rng.standard_normal((4, 3, 2, 2)))
    y = F.batch_norm(x, None, None, w, b, training=True)
    fused = grad(y, [x, w, b], gy, retain_graph=True)
    graphed = grad(y, [x, w, b], gy, create_graph=True)
    for f, g in zip(fused, graphed):
        np.testing.assert_allclose(f.numpy(), g.numpy(), rtol=1e-10, atol=1e-12)
    assert graphed[0].creator is not None and fused[0].creator is None


@SECOND_ORDER
@given(shape=st.sampled_from([(3, 2), (4, 1), (2, 2, 2, 1), (1, 2, 2, 2)]),
       seed=st.integers(0, 2 ** 16))
def test_second_derivatives_gradgradcheck(shape, seed):
    C = shape[1]
    inputs = _leaves(_random(shape, seed, scale=2.0), _random(C, seed + 1), _random(C, seed + 2))
    assert gradgradcheck(lambda x, w, b: F.batch_norm(x, None, None, w, b, training=True), inputs)


def test_eval_mode_gradcheck():
    """In evaluation the running estimates are constants: gradients reach x, weight and bias."""
    rng = np.random.default_rng(2)
    rm, rv = Tensor(rng.standard_normal(3)), Tensor(rng.random(3) + 0.5)
    inputs = _leaves(rng.standard_normal((2, 3, 2, 1)), rng.standard_normal(3),
                     rng.standard_normal(3))
    assert gradcheck(lambda x, w, b: F.batch_norm(x, rm, rv, w, b, training=False), inputs)


def test_second_derivatives_without_affine():
    (x,) = _leaves(_random((5, 2), 4))
    assert gradgradcheck(lambda x: F.batch_norm(x, None, None, training=True), [x])


def test_random_upstream_catches_a_zero_input_gradient(monkeypatch):
    """A batchnorm backward that returns gx = 0 passes a check of sum(y), because the normalised
    values of each channel sum to a constant whatever x is, so d sum(y) / dx really is 0; the
    random-upstream gradcheck catches it."""
    rng = np.random.default_rng(0)
    x, w, b = _leaves(rng.standard_normal((4, 3)), rng.standard_normal(3), rng.standard_normal(3))

    def bn(x, w, b):
        return F.batch_norm(x, None, None, w, b, training=True)

    assert gradcheck(bn, [x, w, b])          # the real kernel passes

    real = kernels.batchnorm_backward

    def broken(gy, x, mean, invstd, weight=None):
        gx, gw, gb = real(gy, x, mean, invstd, weight)
        return np.zeros_like(gx), gw, gb

    monkeypatch.setattr(kernels, "batchnorm_backward", broken)

    # the plain-sum check: broken analytic gradient and finite differences agree (both ~0)
    (gx_sum,) = grad(bn(x, w, b).sum(), [x])
    assert np.all(gx_sum.numpy() == 0)
    eps, numeric = 1e-6, np.zeros(x.shape)
    for i in np.ndindex(x.shape):
        old = x.data[i]
        x.data[i] = old + eps
        plus = float(bn(x, w, b).numpy().sum())
        x.data[i] = old - eps
        minus = float(bn(x, w, b).numpy().sum())
        x.data[i] = old
        numeric[i] = (plus - minus) / (2 * eps)
    np.testing.assert_allclose(numeric, gx_sum.numpy(), atol=1e-6)

    with pytest.raises(GradcheckError, match="gradient of input 0"):
        gradcheck(bn, [x, w, b])


# ------------------------------------------------------------------------------------------------
# The graph does not grow across steps
# ------------------------------------------------------------------------------------------------
def _graph_size(t):
    """Number of Functions reachable from t."""
    seen, stack = set(), [t.creator] if t.creator is not None else []
    while stack:
        fn = stack.pop()
        if id(fn) in seen:
            continue
        seen.add(id(fn))
        stack.extend(i.creator for i in fn.inputs if i.creator is not None)
    return len(seen)


def test_graph_does_not_grow_across_steps():
    bn = nn.BatchNorm2d(2).double()
    sizes = []
    for step in range(4):
        x = Tensor(_random((3, 2, 2, 2), step), requires_grad=True)
        loss = (bn(x) ** 2).mean()
        sizes.append(_graph_size(loss))
        loss.backward()
        for name in ("running_mean", "running_var", "num_batches_tracked"):
            buf = getattr(bn, name)
            assert buf.creator is None, name
            assert not buf.requires_grad, name
        bn.zero_grad()
    assert len(set(sizes)) == 1
    # the same holds in evaluation, where the running stats enter the graph as constants
    bn.eval()
    x = Tensor(_random((3, 2, 2, 2), 9), requires_grad=True)
    bn(x).sum().backward()
    assert bn.running_mean.creator is None and bn.running_mean.grad is None
    assert x.grad is not None


# ------------------------------------------------------------------------------------------------
# Errors
# ------------------------------------------------------------------------------------------------
def test_module_rejects_wrong_number_of_dimensions():
    with pytest.raises(ValueError, match=r"BatchNorm2d expects a 4-D input, got shape \(2, 3\)"):
        nn.BatchNorm2d(3)(Tensor(np.zeros((2, 3), np.float32)))
    with pytest.raises(ValueError, match=r"BatchNorm1d expects a 2-D input, got shape"):
        nn.BatchNorm1d(3)(Tensor(np.zeros((2, 3, 1, 1), np.float32)))


def test_channel_count_mismatch():
    with pytest.raises(ValueError, match=r"weight has shape \(3,\) but the input has 4 channels"):
        nn.BatchNorm2d(3)(Tensor(np.zeros((2, 4, 2, 2), np.float32)))
    with pytest.raises(ValueError, match=r"running_mean has shape \(2,\) but the input has 3"):
        F.batch_norm(Tensor(np.zeros((4, 3))), Tensor(np.zeros(2)), Tensor(np.ones(3)),
                     training=True)


def test_rejected_input_changes_no_state():
    bn = nn.BatchNorm2d(3)
    bn(Tensor(_random((2, 3, 2, 2), 0).astype(np.float32)))
    before = bn.state_dict()
    for bad in ((2, 4, 2, 2), (1, 3, 1, 1)):
        with pytest.raises(ValueError):
            bn(Tensor(np.ones(bad, np.float32)))
    for name, value in bn.state_dict().items():
        np.testing.assert_array_equal(value, before[name], err_msg=name)


def test_functional_errors():
    with pytest.raises(ValueError, match=r"\(N, C\) or \(N, C, H, W\).*\(2, 3, 4\)"):
        F.batch_norm(Tensor(np.zeros((2, 3, 4))), None, None, training=True)
    with pytest.raises(ValueError, match="more than one value per channel"):
        F.batch_norm(Tensor(np.zeros((1, 3))), None, None, training=True)
    with pytest.raises(ValueError, match="evaluation mode needs running_mean and running_var"):
        F.batch_norm(Tensor(np.zeros((2, 3))), None, None, training=False)
    with pytest.raises(ValueError, match="both weight and bias"):
        F.batch_norm(Tensor(np.zeros((2, 3))), None, None, Tensor(np.ones(3)), training=True)
