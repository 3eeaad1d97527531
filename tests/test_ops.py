"""Every differentiable op: forward against NumPy, analytic gradients against central finite
differences in float64 (``minigan.testing.gradcheck``), second derivatives for the ops a gradient
penalty passes through (``gradgradcheck``), known values, and the errors bad input gets.

Shapes are drawn by Hypothesis (broadcasting and 1-D matmul operands included); values stay away
from kinks (0 for relu/abs, ties for max, the bounds of clip) so finite differences are valid.
"""
import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import minigan as mg
import minigan.functional as F
from minigan.functional.shape import ScatterAdd
from minigan.testing import GradcheckError, gradcheck, gradgradcheck

from strategies import (arrays, axes, broadcast_targets, broadcastable_pairs, distinct_arrays,
                        matmul_pairs, positive_arrays, reduced_count, shapes)

EXAMPLES = settings(max_examples=20, deadline=None)


def leaf(array):
    return mg.tensor(np.asarray(array, dtype=np.float64), requires_grad=True)


def const(array):
    return mg.tensor(np.asarray(array, dtype=np.float64))


def check_value(y, expected):
    assert y.dtype == np.float64
    assert y.shape == np.shape(expected)
    np.testing.assert_allclose(y.data, expected, rtol=1e-12, atol=1e-12)


def test_gradcheck_catches_a_wrong_backward():
    """The checker itself must fail on a wrong rule, or every test below proves nothing."""
    class Twice(mg.Function):
        def forward(self, x):
            return 2 * x

        def backward(self, gy):
            return gy * 3.0   # wrong: should be 2

    class Square(mg.Function):
        def forward(self, x):
            return x * x

        def backward(self, gy):   # right value, but 2x is a constant: no second derivative
            return gy * mg.Tensor(2 * self.inputs[0].data)

    with pytest.raises(GradcheckError, match="input 0"):
        gradcheck(Twice.apply, [leaf([1.0, 2.0])])
    assert gradcheck(Square.apply, [leaf([1.0, 2.0])])
    assert not gradgradcheck(Square.apply, [leaf([1.0, 2.0])], raise_exception=False)


# ------------------------------------------------------------------------------------------------
# Binary elementwise ops, with broadcasting
# ------------------------------------------------------------------------------------------------
BINARY = {
    # name: (op, numpy reference, left values, right values)
    "add": (F.add, np.add, arrays, arrays),
    "sub": (F.sub, np.subtract, arrays, arrays),
    "mul": (F.mul, np.multiply, arrays, arrays),
    "div": (F.div, np.divide, arrays, lambda s: arrays(s, min_abs=0.5)),
    "pow": (F.pow, np.power, positive_arrays, arrays),
}


@pytest.mark.parametrize("name", sorted(BINARY))
@EXAMPLES
@given(data=st.data())
def test_binary_op_broadcasts_and_has_right_first_and_second_derivatives(name, data):
    op, reference, left, right = BINARY[name]
    shape_a, shape_b = data.draw(broadcastable_pairs(), label="shapes")
    a = data.draw(left(shape_a), label="a")
    b = data.draw(right(shape_b), label="b")
    check_value(op(const(a), const(b)), reference(a, b))
    wants = data.draw(st.sampled_from([(True, True), (True, False), (False, True)]), label="grad")
    inputs = [mg.tensor(v, requires_grad=w) for v, w in zip((a, b), wants)]
    assert gradcheck(op, inputs)
    assert gradgradcheck(op, inputs)


def test_operators_dispatch_to_the_ops_with_numbers_on_either_side():
    x = const([1.0, 2.0, 4.0])
    check_value(x + 2, [3.0, 4.0, 6.0])
    check_value(2 + x, [3.0, 4.0, 6.0])
    check_value(x - 1, [0.0, 1.0, 3.0])
    check_value(1 - x, [0.0, -1.0, -3.0])
    check_value(x * 3, [3.0, 6.0, 12.0])
    check_value(3 * x, [3.0, 6.0, 12.0])
    check_value(x / 2, [0.5, 1.0, 2.0])
    check_value(8 / x, [8.0, 4.0, 2.0])
    check_value(x ** 2, [1.0, 4.0, 16.0])
    check_value(2 ** x, [2.0, 4.0, 16.0])
    check_value(x ** const([2.0, 0.5, -1.0]), [1.0, np.sqrt(2.0), 0.25])
    check_value(-x, [-1.0, -2.0, -4.0])
    check_value(abs(-x), [1.0, 2.0, 4.0])
    check_value(np.float64(2.0) * x, [2.0, 4.0, 8.0])


def test_pow_with_a_tensor_exponent_known_gradients():
    a, b = leaf([2.0, 3.0]), leaf([3.0, 2.0])
    (a ** b).sum().backward()
    np.testing.assert_allclose(a.grad.data, [3.0 * 4.0, 2.0 * 3.0])            # b a^(b-1)
    np.testing.assert_allclose(b.grad.data, [8.0 * np.log(2.0), 9.0 * np.log(3.0)])  # a^b log a


def test_a_number_raised_to_a_tensor_power_is_differentiable():
    x = leaf([1.0, 2.0])
    (2.0 ** x).sum().backward()
    np.testing.assert_allclose(x.grad.data, [2.0 * np.log(2.0), 4.0 * np.log(2.0)])


# ------------------------------------------------------------------------------------------------
# Unary elementwise ops and activations
# ------------------------------------------------------------------------------------------------
def _np_sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


UNARY = {
    # name: (op, numpy reference, values)
    "neg": (F.neg, np.negative, arrays),
    "exp": (F.exp, np.exp, arrays),
    "log": (F.log, np.log, positive_arrays),
    "sqrt": (F.sqrt, np.sqrt, positive_arrays),
    "abs": (F.abs, np.abs, lambda s: arrays(s, min_abs=1e-2)),
    "pow_2": (lambda x: x ** 2, np.square, arrays),
    "pow_3": (lambda x: F.pow(x, 3), lambda x: x ** 3, arrays),
    "pow_0.5": (lambda x: x ** 0.5, np.sqrt, positive_arrays),
    "pow_-1.5": (lambda x: x ** -1.5, lambda x: x ** -1.5, positive_arrays),
    "relu": (F.relu, lambda x: np.maximum(x, 0.0), lambda s: arrays(s, min_abs=1e-2)),
    "leaky_relu_default": (F.leaky_relu, lambda x: np.where(x > 0, x, 0.01 * x),
                           lambda s: arrays(s, min_abs=1e-2)),
    "leaky_relu_0.2": (lambda x: F.leaky_relu(x, 0.2), lambda x: np.where(x > 0, x, 0.2 * x),
                       lambda s: arrays(s, min_abs=1e-2)),
    "sigmoid": (F.sigmoid, _np_sigmoid, lambda s: arrays(s, -5.0, 5.0)),
    "tanh": (F.tanh, np.tanh, arrays),
    "softplus": (F.softplus, lambda x: np.logaddexp(0.0, x), lambda s: arrays(s, -5.0, 5.0)),
    "log_sigmoid": (F.log_sigmoid, lambda x: -np.logaddexp(0.0, -x),
                    lambda s: arrays(s, -5.0, 5.0)),
}


@pytest.mark.parametrize("name", sorted(UNARY))
@EXAMPLES
@given(data=st.data())
def test_unary_op_value_and_first_and_second_derivatives(name, data):
    op, reference, values = UNARY[name]
    x = data.draw(values(data.draw(shapes(), label="shape")), label="x")
    check_value(op(const(x)), reference(x))
    assert gradcheck(op, [leaf(x)])
    assert gradgradcheck(op, [leaf(x)])


def test_activation_known_values():
    x = const([-2.0, 0.0, 3.0])
    check_value(F.relu(x), [0.0, 0.0, 3.0])
    check_value(F.leaky_relu(x, 0.1), [-0.2, 0.0, 3.0])
    check_value(F.sigmoid(const([0.0])), [0.5])
    check_value(F.tanh(const([0.0])), [0.0])
    check_value(F.softplus(const([0.0])), [np.log(2.0)])
    check_value(F.log_sigmoid(const([0.0])), [-np.log(2.0)])


def test_relu_gradient_at_zero_is_zero_and_leaky_slope_elsewhere():
    x = leaf([-1.0, 0.0, 2.0])
    F.relu(x).sum().backward()
    np.testing.assert_array_equal(x.grad.data, [0.0, 0.0, 1.0])
    x = leaf([-1.0, 2.0])
    F.leaky_relu(x, 0.2).sum().backward()
    np.testing.assert_allclose(x.grad.data, [0.2, 1.0])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_sigmoid_softplus_log_sigmoid_stay_finite_for_huge_logits(dtype):
    x = mg.tensor(np.array([-1000.0, -100.0, 100.0, 1000.0], dtype=dtype), requires_grad=True)
    s = F.sigmoid(x)
    assert s.dtype == dtype
    np.testing.assert_allclose(s.data, [0.0, 0.0, 1.0, 1.0], atol=1e-30)
    np.testing.assert_allclose(F.softplus(x).data, [0.0, 0.0, 100.0, 1000.0], atol=1e-30)
    np.testing.assert_allclose(F.log_sigmoid(x).data, [-1000.0, -100.0, 0.0, 0.0], atol=1e-30)
    F.log_sigmoid(x).sum().backward()   # d/dx log sigmoid(x) = 1 - sigmoid(x)
    np.testing.assert_allclose(x.grad.data, [1.0, 1.0, 0.0, 0.0], atol=1e-30)


@EXAMPLES
@given(data=st.data())
def test_clip_value_and_gradient(data):
    x = data.draw(distinct_arrays(data.draw(shapes(), label="shape")), label="x")
    # bounds on the multiples of 1/32; the values sit halfway between, never on a bound
    low = data.draw(st.one_of(st.none(), st.integers(-64, 32)), label="low")
    high = data.draw(st.one_of(st.none(), st.integers(-32, 64)), label="high")
    if low is None and high is None:
        high = 0
    low = None if low is None else low / 32
    high = None if high is None else high / 32
    if low is not None and high is not None and low > high:
        low, high = high, low
    check_value(F.clip(const(x), low, high), np.clip(x, low, high))
    assert gradcheck(lambda t: F.clip(t, low, high), [leaf(x)])
    assert gradgradcheck(lambda t: F.clip(t, low, high) ** 2, [leaf(x)])


def test_clip_needs_a_bound():
    with pytest.raises(ValueError, match="min, max"):
        F.clip(const([1.0]))


@EXAMPLES
@given(data=st.data())
def test_where_value_and_gradients(data):
    shapes3 = data.draw(hnp.mutually_broadcastable_shapes(num_shapes=3, max_dims=3, max_side=3),
                        label="shapes")
    cond_shape, shape_a, shape_b = shapes3.input_shapes
    cond = data.draw(hnp.arrays(np.bool_, cond_shape), label="cond")
    a = data.draw(arrays(shape_a), label="a")
    b = data.draw(arrays(shape_b), label="b")
    check_value(F.where(cond, const(a), const(b)), np.where(cond, a, b))
    assert gradcheck(lambda p, q: F.where(cond, p, q), [leaf(a), leaf(b)])
    assert gradgradcheck(lambda p, q: F.where(cond, p * p, q * q * q), [leaf(a), leaf(b)])


def test_where_with_a_number_and_a_comparison_tensor():
    x = leaf([-1.0, 2.0, -3.0])
    y = F.where(x > 0, x, 0.0)
    check_value(y, [0.0, 2.0, 0.0])
    y.sum().backward()
    np.testing.assert_array_equal(x.grad.data, [0.0, 1.0, 0.0])


# ------------------------------------------------------------------------------------------------
# Matrix products
# ------------------------------------------------------------------------------------------------
@EXAMPLES
@given(data=st.data())
def test_matmul_shapes_1d_and_batched_broadcasting(data):
    shape_a, shape_b = data.draw(matmul_pairs(), label="shapes")
    a = data.draw(arrays(shape_a), label="a")
    b = data.draw(arrays(shape_b), label="b")
    y = F.matmul(const(a), const(b))
    assert y.shape == np.matmul(a, b).shape
    np.testing.assert_allclose(y.data, np.matmul(a, b), rtol=1e-12, atol=1e-12)
    assert gradcheck(F.matmul, [leaf(a), leaf(b)])
    assert gradgradcheck(F.matmul, [leaf(a), leaf(b)])


def test_matmul_known_value_and_operator():
    a = leaf([[1.0, 2.0], [3.0, 4.0]])
    b = leaf([[5.0], [6.0]])
    y = a @ b
    check_value(y, [[17.0], [39.0]])
    y.sum().backward()
    np.testing.assert_allclose(a.grad.data, [[5.0, 6.0], [5.0, 6.0]])
    np.testing.assert_allclose(b.grad.data, [[4.0], [6.0]])
    check_value(const([1.0, 2.0]) @ const([3.0, 4.0]), 11.0)


@EXAMPLES
@given(data=st.data())
def test_linear_value_and_gradients(data):
    lead = data.draw(st.sampled_from([(), (3,), (2, 2)]), label="lead")
    n_in = data.draw(st.integers(1, 3), label="in")
    n_out = data.draw(st.integers(1, 3), label="out")
    x = data.draw(arrays(lead + (n_in,)), label="x")
    w = data.draw(arrays((n_out, n_in)), label="w")
    b = data.draw(arrays((n_out,)), label="b")
    check_value(F.linear(const(x), const(w), const(b)), x @ w.T + b)
    check_value(F.linear(const(x), const(w)), x @ w.T)
    assert gradcheck(F.linear, [leaf(x), leaf(w), leaf(b)])
    assert gradcheck(F.linear, [leaf(x), leaf(w)])
    assert gradgradcheck(lambda x, w, b: F.tanh(F.linear(x, w, b)), [leaf(x), leaf(w), leaf(b)])


# ------------------------------------------------------------------------------------------------
# Reductions
# ------------------------------------------------------------------------------------------------
REDUCTIONS = {
    # name: (op, numpy reference, needs distinct values, minimum count reduced)
    "sum": (F.sum, np.sum, False, 1),
    "mean": (F.mean, np.mean, False, 1),
    "max": (F.max, np.max, True, 1),
    "min": (F.min, np.min, True, 1),
    "var": (F.var, lambda x, axis, keepdims: np.var(x, axis=axis, keepdims=keepdims, ddof=1),
            True, 2),
    "std": (F.std, lambda x, axis, keepdims: np.std(x, axis=axis, keepdims=keepdims, ddof=1),
            True, 2),
}


@pytest.mark.parametrize("name", sorted(REDUCTIONS))
@EXAMPLES
@given(data=st.data())
def test_reduction_over_axes_with_keepdims(name, data):
    op, reference, distinct, minimum = REDUCTIONS[name]
    shape = data.draw(shapes(min_dims=1), label="shape")
    axis = data.draw(axes(len(shape)), label="axis")
    keepdims = data.draw(st.booleans(), label="keepdims")
    if reduced_count(shape, axis) < minimum:
        axis = None
        if reduced_count(shape, axis) < minimum:
            shape = shape[:-1] + (2,)
    x = data.draw(distinct_arrays(shape) if distinct else arrays(shape), label="x")
    np_axis = axis if axis is None or isinstance(axis, int) else tuple(axis)
    check_value(op(const(x), axis=axis, keepdims=keepdims),
                reference(x, axis=np_axis, keepdims=keepdims))
    fn = lambda t: op(t, axis=axis, keepdims=keepdims)  # noqa: E731
    assert gradcheck(fn, [leaf(x)])
    assert gradgradcheck(fn, [leaf(x)])
    assert gradgradcheck(lambda t: fn(F.exp(t)), [leaf(x)])   # exp keeps the values distinct


def test_reduction_methods_and_dim_alias():
    x = const([[1.0, 2.0], [3.0, 5.0]])
    check_value(x.sum(), 11.0)
    check_value(x.sum(dim=0), [4.0, 7.0])
    check_value(x.mean(axis=1, keepdims=True), [[1.5], [4.0]])
    check_value(x.max(dim=1), [2.0, 5.0])
    check_value(x.min(), 1.0)
    check_value(x.var(unbiased=False), np.var(x.data))
    check_value(x.std(dim=0), [np.sqrt(2.0), np.sqrt(4.5)])


def test_max_shares_the_gradient_between_ties():
    x = leaf([1.0, 3.0, 3.0])
    F.max(x).backward()
    np.testing.assert_allclose(x.grad.data, [0.0, 0.5, 0.5])


def test_bad_reduction_arguments():
    x = const(np.ones((2, 3)))
    with pytest.raises(IndexError, match="axis 2 .* 2 dimensions"):
        F.sum(x, axis=2)
    with pytest.raises(ValueError, match="var over 1 element"):
        F.var(const([1.0]))
    with pytest.raises(ValueError, match="empty"):
        F.max(const(np.ones((0,))))


# ------------------------------------------------------------------------------------------------
# Shape ops
# ------------------------------------------------------------------------------------------------
@EXAMPLES
@given(data=st.data())
def test_reshape_flatten_squeeze_unsqueeze(data):
    shape = data.draw(shapes(), label="shape")
    x = data.draw(arrays(shape), label="x")
    check_value(F.reshape(const(x), shape[::-1]), x.reshape(shape[::-1]))
    assert gradcheck(lambda t: F.reshape(t, -1), [leaf(x)])
    assert gradcheck(lambda t: t.reshape(shape[::-1]) * 2.0, [leaf(x)])
    if x.ndim:
        start = data.draw(st.integers(-x.ndim, x.ndim - 1), label="start")
        end = data.draw(st.integers(start % x.ndim, x.ndim - 1), label="end")
        merged = x.reshape(x.shape[:start % x.ndim] + (-1,) + x.shape[end + 1:])
        check_value(F.flatten(const(x), start, end), merged)
        assert gradcheck(lambda t: F.flatten(t, start, end), [leaf(x)])
    dim = data.draw(st.integers(-x.ndim - 1, x.ndim), label="dim")
    check_value(F.unsqueeze(const(x), dim), np.expand_dims(x, dim))
    assert gradcheck(lambda t: F.unsqueeze(t, dim), [leaf(x)])
    check_value(F.squeeze(const(x)), np.squeeze(x))
    assert gradcheck(F.squeeze, [leaf(x)])
    if x.ndim:
        d = data.draw(st.integers(-x.ndim, x.ndim - 1), label="squeeze dim")
        expected = np.squeeze(x, d) if x.shape[d] == 1 else x
        check_value(F.squeeze(const(x), d), expected)


@EXAMPLES
@given(data=st.data())
def test_permute_and_transpose(data):
    shape = data.draw(shapes(min_dims=1), label="shape")
    x = data.draw(arrays(shape), label="x")
    order = data.draw(st.permutations(range(x.ndim)), label="order")
    check_value(F.permute(const(x), order), np.transpose(x, order))
    assert gradcheck(lambda t: F.permute(t, order), [leaf(x)])
    d0 = data.draw(st.integers(-x.ndim, x.ndim - 1), label="dim0")
    d1 = data.draw(st.integers(-x.ndim, x.ndim - 1), label="dim1")
    check_value(F.transpose(const(x), d0, d1), np.swapaxes(x, d0, d1))
    assert gradcheck(lambda t: F.transpose(t, d0, d1), [leaf(x)])
    check_value(const(x).T, x.T)


@EXAMPLES
@given(data=st.data())
def test_broadcast_to_and_sum_to_are_adjoint(data):
    shape, target = data.draw(broadcast_targets(), label="shapes")
    x = data.draw(arrays(shape), label="x")
    y = data.draw(arrays(target), label="y")
    check_value(F.broadcast_to(const(x), target), np.broadcast_to(x, target))
    lead = len(target) - len(shape)
    summed = y.sum(axis=tuple(range(lead)))
    summed = summed.sum(axis=tuple(i for i, s in enumerate(shape) if s == 1), keepdims=True)
    check_value(F.sum_to(const(y), shape), summed.reshape(shape))
    assert gradcheck(lambda t: F.broadcast_to(t, target), [leaf(x)])
    assert gradcheck(lambda t: F.sum_to(t, shape), [leaf(y)])
    assert gradgradcheck(lambda t: F.broadcast_to(t * t, target), [leaf(x)])


def test_expand_method():
    x = leaf([[1.0], [2.0]])
    y = x.expand(2, 3)
    check_value(y, [[1.0] * 3, [2.0] * 3])
    y.sum().backward()
    np.testing.assert_allclose(x.grad.data, [[3.0], [3.0]])


@EXAMPLES
@given(data=st.data())
def test_concat_and_stack(data):
    shape = data.draw(shapes(min_dims=1, max_size=10), label="shape")
    axis = data.draw(st.integers(-len(shape), len(shape) - 1), label="axis")
    count = data.draw(st.integers(1, 3), label="count")
    parts = []
    for i in range(count):
        part_shape = list(shape)
        part_shape[axis] = data.draw(st.integers(1, 3), label=f"size {i}")
        parts.append(data.draw(arrays(tuple(part_shape)), label=f"part {i}"))
    check_value(F.concat([const(p) for p in parts], dim=axis), np.concatenate(parts, axis=axis))
    assert gradcheck(lambda *ts: F.concat(ts, dim=axis), [leaf(p) for p in parts])
    same = [data.draw(arrays(shape), label=f"stacked {i}") for i in range(count)]
    new_axis = data.draw(st.integers(-len(shape) - 1, len(shape)), label="new axis")
    check_value(F.stack([const(p) for p in same], dim=new_axis), np.stack(same, axis=new_axis))
    assert gradcheck(lambda *ts: F.stack(ts, dim=new_axis), [leaf(p) for p in same])


def test_concat_gradient_only_for_inputs_that_want_it():
    a, b = leaf([1.0, 2.0]), const([3.0])
    y = F.cat([a, b])
    (y * const([1.0, 2.0, 3.0])).sum().backward()
    np.testing.assert_allclose(a.grad.data, [1.0, 2.0])
    assert b.grad is None


@EXAMPLES
@given(data=st.data())
def test_getitem_with_basic_indices(data):
    shape = data.draw(shapes(), label="shape")
    x = data.draw(arrays(shape), label="x")
    index = data.draw(hnp.basic_indices(shape, allow_newaxis=True), label="index")
    check_value(const(x)[index], x[index])
    assert gradcheck(lambda t: t[index], [leaf(x)])


@EXAMPLES
@given(data=st.data())
def test_getitem_with_integer_arrays_repeats_included(data):
    shape = data.draw(shapes(min_dims=1), label="shape")
    x = data.draw(arrays(shape), label="x")
    picks = data.draw(st.lists(st.integers(-shape[0], shape[0] - 1), min_size=1, max_size=6),
                      label="picks")
    index = np.array(picks)
    check_value(const(x)[index], x[index])
    assert gradcheck(lambda t: t[index], [leaf(x)])
    # a list index and a Tensor index mean the same
    check_value(const(x)[picks], x[index])
    check_value(const(x)[mg.tensor(index)], x[index])


def test_getitem_repeated_indices_add_up_their_gradients():
    x = leaf([10.0, 20.0, 30.0])
    x[np.array([0, 2, 0, 0])].sum().backward()
    np.testing.assert_array_equal(x.grad.data, [3.0, 0.0, 1.0])


@EXAMPLES
@given(data=st.data())
def test_getitem_with_boolean_masks(data):
    shape = data.draw(shapes(min_dims=1), label="shape")
    x = data.draw(arrays(shape), label="x")
    mask_dims = data.draw(st.integers(1, len(shape)), label="mask dims")
    mask = data.draw(hnp.arrays(np.bool_, shape[:mask_dims]), label="mask")
    check_value(const(x)[mask], x[mask])
    assert gradcheck(lambda t: t[mask], [leaf(x)])
    check_value(const(x)[mg.tensor(mask)], x[mask])


@EXAMPLES
@given(data=st.data())
def test_scatter_add_the_adjoint_of_getitem_is_differentiable(data):
    """A gradient penalty through an indexing op differentiates getitem's backward again."""
    shape = data.draw(shapes(min_dims=1), label="shape")
    picks = data.draw(st.lists(st.integers(0, shape[0] - 1), min_size=1, max_size=5),
                      label="picks")
    index = np.array(picks)
    gy = data.draw(arrays((len(picks),) + shape[1:]), label="gy")
    expected = np.zeros(shape)
    np.add.at(expected, index, gy)
    check_value(ScatterAdd.apply(const(gy), index=index, shape=shape), expected)
    assert gradcheck(lambda g: ScatterAdd.apply(g, index=index, shape=shape), [leaf(gy)])
    x = data.draw(arrays(shape), label="x")
    assert gradgradcheck(lambda t: t[index] ** 3, [leaf(x)])


# ------------------------------------------------------------------------------------------------
# Softmax family and dropout
# ------------------------------------------------------------------------------------------------
def _np_log_softmax(x, axis):
    shifted = x - x.max(axis=axis, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=axis, keepdims=True))


@EXAMPLES
@given(data=st.data())
def test_log_softmax_and_softmax(data):
    shape = data.draw(shapes(min_dims=1), label="shape")
    x = data.draw(arrays(shape, -4.0, 4.0), label="x")
    dim = data.draw(st.integers(-x.ndim, x.ndim - 1), label="dim")
    check_value(F.log_softmax(const(x), dim), _np_log_softmax(x, dim))
    check_value(F.softmax(const(x), dim), np.exp(_np_log_softmax(x, dim)))
    np.testing.assert_allclose(F.softmax(const(x), dim).data.sum(axis=dim), 1.0, rtol=1e-12)
    assert gradcheck(lambda t: F.log_softmax(t, dim), [leaf(x)])
    assert gradcheck(lambda t: F.softmax(t, dim), [leaf(x)])
    assert gradgradcheck(lambda t: F.log_softmax(t, dim), [leaf(x)])


def test_softmax_known_value_and_huge_logits():
    check_value(F.softmax(const([0.0, np.log(2.0)])), [1 / 3, 2 / 3])
    x = mg.tensor(np.array([[1000.0, 0.0, -1000.0]], dtype=np.float32), requires_grad=True)
    y = F.log_softmax(x, dim=1)
    assert np.isfinite(y.data).all() and y.dtype == np.float32
    np.testing.assert_allclose(y.data, [[0.0, -1000.0, -2000.0]])
    y[:, 0].sum().backward()
    assert np.isfinite(x.grad.data).all()


def test_dropout_statistics_scaling_and_seeding():
    p = 0.3
    x = mg.ones(4000, dtype=np.float64)
    y = F.dropout(x, p)
    dropped = np.mean(y.data == 0)
    assert abs(dropped - p) < 0.04              # 0.3 +- 5 standard deviations of the estimate
    kept = y.data[y.data != 0]
    np.testing.assert_allclose(kept, 1 / (1 - p))  # inverted dropout: survivors scaled up
    assert abs(y.data.mean() - 1.0) < 0.06        # so the expectation is unchanged
    mg.manual_seed(5)
    first = F.dropout(x, p).data
    mg.manual_seed(5)
    np.testing.assert_array_equal(F.dropout(x, p).data, first)
    assert not np.array_equal(F.dropout(x, p).data, first)


def test_dropout_gradient_is_the_mask():
    x = leaf(np.linspace(1.0, 2.0, 50))
    y = F.dropout(x, 0.5)
    upstream = np.linspace(-1.0, 1.0, 50)
    y.backward(const(upstream))
    mask = y.data / x.data                       # 0 or 2 for each element
    assert set(np.unique(mask)) <= {0.0, 2.0} and 0 < mask.mean() < 2
    np.testing.assert_allclose(x.grad.data, upstream * mask)


def test_dropout_evaluation_and_edge_probabilities():
    x = leaf([1.0, 2.0])
    assert F.dropout(x, 0.5, training=False) is x
    assert F.dropout(x, 0.0) is x
    check_value(F.dropout(x, 1.0), [0.0, 0.0])
    with pytest.raises(ValueError, match="1.5"):
        F.dropout(x, 1.5)


# ------------------------------------------------------------------------------------------------
# A critic as WGAN-GP sees it: second derivatives through a whole small network
# ------------------------------------------------------------------------------------------------
@settings(max_examples=8, deadline=None)
@given(data=st.data())
def test_second_derivatives_through_a_small_critic(data):
    n, d, h = 2, 3, 3
    x = data.draw(arrays((n, d)), label="x")
    w1 = data.draw(arrays((h, d)), label="w1")
    b1 = data.draw(arrays((h,)), label="b1")
    w2 = data.draw(arrays((1, h)), label="w2")
    assume(np.abs(x @ w1.T + b1).min() > 0.05)   # pre-activations off the kink

    def critic(x, w1, b1, w2):
        hidden = F.leaky_relu(F.linear(x, w1, b1), 0.2)
        return F.sigmoid(F.linear(hidden, w2)).sum() + F.relu(hidden).mean() + F.tanh(hidden).sum()

    assert gradgradcheck(critic, [leaf(x), leaf(w1), leaf(b1), leaf(w2)])


# ------------------------------------------------------------------------------------------------
# Errors for bad input name the problem
# ------------------------------------------------------------------------------------------------
def test_shape_mismatch_errors_name_both_shapes():
    a, b = const(np.ones((2, 3))), const(np.ones((4,)))
    for op in (F.add, F.sub, F.mul, F.div, F.pow):
        with pytest.raises(ValueError, match=r"\(2, 3\).*\(4,\)"):
            op(a, b)
    with pytest.raises(ValueError, match=r"\(2, 3\).*\(4, 5\)"):
        F.matmul(a, const(np.ones((4, 5))))
    with pytest.raises(ValueError, match=r"\(2, 3\).*\(4, 5\)"):
        F.linear(a, const(np.ones((4, 5))))
    with pytest.raises(ValueError, match=r"\(2, 3\).*\(4,\)"):
        F.broadcast_to(a, (4,))
    with pytest.raises(ValueError, match=r"\(2, 3\).*\(4, 2\)"):
        F.reshape(a, (4, 2))
    with pytest.raises(ValueError, match=r"\(2, 3\).*\(2, 4\)"):
        F.concat([a, const(np.ones((2, 4)))], dim=0)
    with pytest.raises(ValueError, match=r"\(2, 3\).*\(3, 2\)|\(3, 2\).*\(2, 3\)"):
        F.stack([a, const(np.ones((3, 2)))])
    with pytest.raises(ValueError, match=r"\(2, 3\)"):
        F.permute(a, (0, 0))
    with pytest.raises(ValueError, match=r"\(\)"):
        F.matmul(const(2.0), a)
