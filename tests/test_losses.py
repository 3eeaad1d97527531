"""Losses: values against the NumPy formulas, gradients against finite differences, numerical
stability at saturated logits/probabilities, reductions, and errors for mismatched input."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import minigan as mg
import minigan.functional as F
from minigan.testing import gradcheck, gradgradcheck

from strategies import arrays, shapes

EXAMPLES = settings(max_examples=15, deadline=None)
REDUCE = {"mean": np.mean, "sum": np.sum, "none": lambda v: v}


def leaf(array):
    return mg.tensor(np.asarray(array, dtype=np.float64), requires_grad=True)


def const(array):
    return mg.tensor(np.asarray(array, dtype=np.float64))


def _np_sigmoid(x):
    return np.exp(-np.logaddexp(0.0, -x))   # no overflow at x = -1000


# ------------------------------------------------------------------------------------------------
# Binary cross-entropy
# ------------------------------------------------------------------------------------------------
@EXAMPLES
@given(data=st.data())
def test_bce_with_logits_value_and_gradient(data):
    shape = data.draw(shapes(), label="shape")
    x = data.draw(arrays(shape, -6.0, 6.0), label="logits")
    t = data.draw(arrays(shape, 0.0, 1.0), label="target")
    reduction = data.draw(st.sampled_from(sorted(REDUCE)), label="reduction")
    expected = REDUCE[reduction](np.logaddexp(0.0, x) - x * t)
    y = F.binary_cross_entropy_with_logits(const(x), const(t), reduction=reduction)
    np.testing.assert_allclose(y.data, expected, rtol=1e-12, atol=1e-12)
    fn = lambda a, b: F.binary_cross_entropy_with_logits(a, b, reduction=reduction)  # noqa: E731
    assert gradcheck(fn, [leaf(x), leaf(t)])
    assert gradgradcheck(fn, [leaf(x), leaf(t)])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_bce_with_logits_is_stable_at_plus_minus_100(dtype):
    x = mg.tensor(np.array([-100.0, -100.0, 100.0, 100.0, -1000.0, 1000.0], dtype=dtype),
                  requires_grad=True)
    t = mg.tensor(np.array([0.0, 1.0, 0.0, 1.0, 1.0, 0.0], dtype=dtype))
    loss = F.binary_cross_entropy_with_logits(x, t, reduction="sum")
    assert loss.dtype == dtype and np.isfinite(loss.item())
    np.testing.assert_allclose(loss.item(), 100.0 + 100.0 + 1000.0 + 1000.0, rtol=1e-6)
    loss.backward()
    assert np.isfinite(x.grad.data).all()
    np.testing.assert_allclose(x.grad.data, _np_sigmoid(x.data.astype(np.float64)) - t.data,
                               atol=1e-7)


def test_bce_with_logits_mean_gradient_is_sigmoid_minus_target_over_n():
    x = leaf([-100.0, 0.0, 100.0, 2.0])
    t = const([1.0, 0.5, 0.0, 1.0])
    F.binary_cross_entropy_with_logits(x, t).backward()
    np.testing.assert_allclose(x.grad.data, (_np_sigmoid(x.data) - t.data) / 4, atol=1e-15)


@EXAMPLES
@given(data=st.data())
def test_bce_on_probabilities_value_and_gradient(data):
    shape = data.draw(shapes(), label="shape")
    p = data.draw(arrays(shape, 0.05, 0.95), label="probs")
    t = data.draw(arrays(shape, 0.0, 1.0), label="target")
    reduction = data.draw(st.sampled_from(sorted(REDUCE)), label="reduction")
    expected = REDUCE[reduction](-(t * np.log(p) + (1 - t) * np.log(1 - p)))
    y = F.binary_cross_entropy(const(p), const(t), reduction=reduction)
    np.testing.assert_allclose(y.data, expected, rtol=1e-12, atol=1e-12)
    fn = lambda a: F.binary_cross_entropy(a, const(t), reduction=reduction)  # noqa: E731
    assert gradcheck(fn, [leaf(p)])
    assert gradgradcheck(fn, [leaf(p)])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_bce_on_saturated_probabilities_clamps_the_log_at_minus_100(dtype):
    """p of exactly 0 or 1 (a float32 sigmoid saturates at logits above ~17): the loss is
    PyTorch's clamped value and the gradient stays finite. Where the target agrees, it is the
    derivative of the unclamped term: -t/p + (1-t)/(1-p) = -1 at p = t = 1, +1 at p = t = 0."""
    p = mg.tensor(np.array([0.0, 1.0, 1.0, 0.0, 0.5], dtype=dtype), requires_grad=True)
    t = mg.tensor(np.array([1.0, 0.0, 1.0, 0.0, 1.0], dtype=dtype))
    loss = F.binary_cross_entropy(p, t, reduction="none")
    np.testing.assert_allclose(loss.data, [100.0, 100.0, 0.0, 0.0, np.log(2.0)], rtol=1e-6)
    loss.sum().backward()
    assert np.isfinite(p.grad.data).all(), p.grad
    np.testing.assert_allclose(p.grad.data[2:], [-1.0, 1.0, -2.0], rtol=1e-6)


# ------------------------------------------------------------------------------------------------
# Mean squared error
# ------------------------------------------------------------------------------------------------
@EXAMPLES
@given(data=st.data())
def test_mse_value_and_gradient(data):
    shape = data.draw(shapes(), label="shape")
    a = data.draw(arrays(shape), label="input")
    b = data.draw(arrays(shape), label="target")
    reduction = data.draw(st.sampled_from(sorted(REDUCE)), label="reduction")
    y = F.mse_loss(const(a), const(b), reduction=reduction)
    np.testing.assert_allclose(y.data, REDUCE[reduction]((a - b) ** 2), rtol=1e-12, atol=1e-12)
    fn = lambda p, q: F.mse_loss(p, q, reduction=reduction)  # noqa: E731
    assert gradcheck(fn, [leaf(a), leaf(b)])
    assert gradgradcheck(fn, [leaf(a), leaf(b)])


def test_mse_known_value():
    x = leaf([1.0, 2.0, 3.0])
    loss = F.mse_loss(x, [1.0, 0.0, 0.0])
    np.testing.assert_allclose(loss.item(), (0 + 4 + 9) / 3)
    loss.backward()
    np.testing.assert_allclose(x.grad.data, [0.0, 4 / 3, 2.0])


# ------------------------------------------------------------------------------------------------
# Cross-entropy and negative log-likelihood
# ------------------------------------------------------------------------------------------------
def _np_log_softmax(x):
    shifted = x - x.max(axis=1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))


@EXAMPLES
@given(data=st.data())
def test_cross_entropy_and_nll_values_and_gradients(data):
    n = data.draw(st.integers(1, 5), label="N")
    c = data.draw(st.integers(1, 5), label="C")
    logits = data.draw(arrays((n, c), -4.0, 4.0), label="logits")
    target = data.draw(hnp.arrays(np.int64, (n,), elements=st.integers(0, c - 1)), label="target")
    reduction = data.draw(st.sampled_from(sorted(REDUCE)), label="reduction")
    picked = -_np_log_softmax(logits)[np.arange(n), target]
    ce = F.cross_entropy(const(logits), target, reduction=reduction)
    np.testing.assert_allclose(ce.data, REDUCE[reduction](picked), rtol=1e-12, atol=1e-12)
    nll = F.nll_loss(F.log_softmax(const(logits), dim=1), mg.tensor(target), reduction=reduction)
    np.testing.assert_allclose(nll.data, ce.data, rtol=1e-12, atol=1e-12)
    fn = lambda z: F.cross_entropy(z, target, reduction=reduction)  # noqa: E731
    assert gradcheck(fn, [leaf(logits)])
    assert gradgradcheck(fn, [leaf(logits)])


def test_cross_entropy_known_values():
    logits = leaf([[0.0, np.log(2.0)], [0.0, 0.0]])
    loss = F.cross_entropy(logits, [0, 1], reduction="none")
    np.testing.assert_allclose(loss.data, [np.log(3.0), np.log(2.0)])
    loss.sum().backward()   # softmax - one_hot
    np.testing.assert_allclose(logits.grad.data, [[1 / 3 - 1, 2 / 3], [0.5, -0.5]])


def test_nll_loss_known_values_and_target_kinds():
    log_probs = leaf([[-1.0, -2.0, -3.0], [-0.5, -0.25, -4.0]])
    expected = (2.0 + 4.0) / 2
    for target in ([1, 2], np.array([1, 2]), mg.tensor([1, 2])):
        np.testing.assert_allclose(F.nll_loss(log_probs, target).item(), expected)
    F.nll_loss(log_probs, [1, 2], reduction="sum").backward()
    np.testing.assert_array_equal(log_probs.grad.data, [[0, -1, 0], [0, 0, -1]])


def test_nll_loss_repeated_class_gradients_add_up():
    log_probs = leaf([[-1.0, -2.0], [-1.0, -2.0], [-1.0, -2.0]])
    F.nll_loss(log_probs, [0, 0, 1], reduction="sum").backward()
    np.testing.assert_array_equal(log_probs.grad.data, [[-1, 0], [-1, 0], [0, -1]])


# ------------------------------------------------------------------------------------------------
# Errors
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("loss", [F.binary_cross_entropy_with_logits, F.binary_cross_entropy,
                                  F.mse_loss])
def test_elementwise_losses_name_both_shapes_on_mismatch(loss):
    with pytest.raises(ValueError, match=r"\(2, 3\).*\(3, 2\)"):
        loss(const(np.full((2, 3), 0.5)), const(np.full((3, 2), 0.5)))


def test_bad_reduction_is_named():
    with pytest.raises(ValueError, match="'average'"):
        F.mse_loss(const([1.0]), const([2.0]), reduction="average")


def test_nll_loss_rejects_bad_targets():
    log_probs = const(np.log(np.full((2, 3), 1 / 3)))
    with pytest.raises(ValueError, match=r"\(2, 3\).*\(3,\)"):
        F.nll_loss(log_probs, [0, 1, 2])
    with pytest.raises(ValueError, match="out of range"):
        F.nll_loss(log_probs, [0, 3])
    with pytest.raises(ValueError, match="out of range"):
        F.nll_loss(log_probs, [-1, 0])
    with pytest.raises(TypeError, match="integer"):
        F.nll_loss(log_probs, [0.0, 1.0])
    with pytest.raises(ValueError, match=r"\(3,\)"):
        F.cross_entropy(const([1.0, 2.0, 3.0]), [0])
