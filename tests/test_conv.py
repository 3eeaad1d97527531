"""F.conv2d and F.conv_transpose2d against plain-loop float64 references written here, their
first and second derivatives, the adjoint identity that ties them together, and their errors.

Shapes, strides, paddings and kernel sizes are drawn by Hypothesis; kernels come square and not,
smaller and larger than the stride, and 1x1.
"""
import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

import minigan as mg
import minigan.functional as F
from minigan import kernels
from minigan.autograd import Tensor
from minigan.testing import gradcheck, gradgradcheck

FAST = settings(max_examples=20, deadline=None)
TINY = settings(max_examples=15, deadline=None)
SECOND_ORDER = settings(max_examples=8, deadline=None)   # each example is ~100 graph builds


# ------------------------------------------------------------------------------------------------
# References: loops over output (conv2d) or input (transposed: scatter) positions, in float64
# ------------------------------------------------------------------------------------------------
def ref_conv2d(x, w, b, stride, padding):
    """y[n, o, i, j] = b[o] + sum_{c, a, e} w[o, c, a, e] * xpad[n, c, i*sh + a, j*sw + e]."""
    (sh, sw), (ph, pw) = stride, padding
    N, C, H, W = x.shape
    O, _, kh, kw = w.shape
    xpad = np.zeros((N, C, H + 2 * ph, W + 2 * pw))
    xpad[:, :, ph:ph + H, pw:pw + W] = x
    Ho, Wo = (H + 2 * ph - kh) // sh + 1, (W + 2 * pw - kw) // sw + 1
    y = np.zeros((N, O, Ho, Wo))
    for n in range(N):
        for o in range(O):
            for i in range(Ho):
                for j in range(Wo):
                    patch = xpad[n, :, i * sh:i * sh + kh, j * sw:j * sw + kw]
                    y[n, o, i, j] = (patch * w[o]).sum() + (0.0 if b is None else b[o])
    return y


def ref_conv_transpose2d(x, w, b, stride, padding, output_padding):
    """PyTorch's definition: every input element x[n, c, i, j] adds x * w[c] into the window that
    starts at (i*sh, j*sw) of an uncropped output; the output then drops ``padding`` rows/columns
    at each border. Ho = (H - 1) sh - 2 ph + kh + output_padding_h."""
    (sh, sw), (ph, pw), (oh, ow) = stride, padding, output_padding
    N, Cin, H, W = x.shape
    _, Cout, kh, kw = w.shape
    Ho = (H - 1) * sh - 2 * ph + kh + oh
    Wo = (W - 1) * sw - 2 * pw + kw + ow
    full = np.zeros((N, Cout, (H - 1) * sh + kh + oh, (W - 1) * sw + kw + ow))
    for n in range(N):
        for c in range(Cin):
            for i in range(H):
                for j in range(W):
                    full[n, :, i * sh:i * sh + kh, j * sw:j * sw + kw] += x[n, c, i, j] * w[c]
    y = full[:, :, ph:ph + Ho, pw:pw + Wo]
    if b is not None:
        y = y + b.reshape(1, -1, 1, 1)
    return y


def test_references_agree_with_hand_computed_values():
    """The references themselves, on cases small enough to work out by hand."""
    x = np.arange(9.0).reshape(1, 1, 3, 3)
    w = np.ones((1, 1, 2, 2))
    # 2x2 box sums of [[0,1,2],[3,4,5],[6,7,8]], plus bias 1
    np.testing.assert_array_equal(ref_conv2d(x, w, np.array([1.0]), (1, 1), (0, 0))[0, 0],
                                  [[9.0, 13.0], [21.0, 25.0]])
    # stride 2 transposed conv of a 2x2 ones kernel tiles each input value into a 2x2 block
    xt = np.array([[[[1.0, 2.0], [3.0, 4.0]]]])
    yt = ref_conv_transpose2d(xt, w, None, (2, 2), (0, 0), (0, 0))[0, 0]
    np.testing.assert_array_equal(yt, [[1, 1, 2, 2], [1, 1, 2, 2], [3, 3, 4, 4], [3, 3, 4, 4]])
    # padding 1 crops one row/column at each border; output_padding 1 adds one at the end
    yp = ref_conv_transpose2d(xt, w, None, (2, 2), (1, 1), (1, 1))[0, 0]
    np.testing.assert_array_equal(yp, [[1, 2, 2], [3, 4, 4], [3, 4, 4]])


# ------------------------------------------------------------------------------------------------
# Strategies
# ------------------------------------------------------------------------------------------------
@st.composite
def conv_cases(draw, max_side=6, max_channels=3, max_batch=2, max_kernel=4):
    """(x_shape, w_shape, stride, padding) for conv2d, kernel fitting the padded input."""
    n = draw(st.integers(1, max_batch))
    c = draw(st.integers(1, max_channels))
    o = draw(st.integers(1, max_channels))
    kh, kw = draw(st.integers(1, max_kernel)), draw(st.integers(1, max_kernel))
    stride = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    padding = (draw(st.integers(0, 2)), draw(st.integers(0, 2)))
    h = draw(st.integers(max(1, kh - 2 * padding[0]), max_side))
    w = draw(st.integers(max(1, kw - 2 * padding[1]), max_side))
    return (n, c, h, w), (o, c, kh, kw), stride, padding


@st.composite
def conv_transpose_cases(draw, max_side=4, max_channels=3, max_batch=2, max_kernel=4):
    """(x_shape, w_shape, stride, padding, output_padding) with a positive output size."""
    n = draw(st.integers(1, max_batch))
    cin = draw(st.integers(1, max_channels))
    cout = draw(st.integers(1, max_channels))
    kh, kw = draw(st.integers(1, max_kernel)), draw(st.integers(1, max_kernel))
    stride = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    padding = (draw(st.integers(0, 2)), draw(st.integers(0, 2)))
    output_padding = (draw(st.integers(0, stride[0] - 1)), draw(st.integers(0, stride[1] - 1)))
    h, w = draw(st.integers(1, max_side)), draw(st.integers(1, max_side))
    for size, s, p, k, op in zip((h, w), stride, padding, (kh, kw), output_padding):
        assume((size - 1) * s - 2 * p + k + op > 0)
    return (n, cin, h, w), (cin, cout, kh, kw), stride, padding, output_padding


def _random(shape, seed):
    return np.random.default_rng(seed).standard_normal(shape)


# ------------------------------------------------------------------------------------------------
# Forward against the references
# ------------------------------------------------------------------------------------------------
@FAST
@given(case=conv_cases(), seed=st.integers(0, 2 ** 16))
def test_conv2d_forward_matches_loop_reference(case, seed):
    x_shape, w_shape, stride, padding = case
    x, w, b = _random(x_shape, seed), _random(w_shape, seed + 1), _random(w_shape[0], seed + 2)
    y = F.conv2d(Tensor(x), Tensor(w), Tensor(b), stride=stride, padding=padding)
    expected = ref_conv2d(x, w, b, stride, padding)
    assert y.shape == expected.shape
    assert y.dtype == np.float64
    np.testing.assert_allclose(y.numpy(), expected, rtol=1e-10, atol=1e-10)


@FAST
@given(case=conv_transpose_cases(), seed=st.integers(0, 2 ** 16))
def test_conv_transpose2d_forward_matches_scatter_reference(case, seed):
    x_shape, w_shape, stride, padding, output_padding = case
    x, w, b = _random(x_shape, seed), _random(w_shape, seed + 1), _random(w_shape[1], seed + 2)
    y = F.conv_transpose2d(Tensor(x), Tensor(w), Tensor(b), stride=stride, padding=padding,
                           output_padding=output_padding)
    expected = ref_conv_transpose2d(x, w, b, stride, padding, output_padding)
    H, W = x_shape[2:]
    (sh, sw), (ph, pw), (oh, ow) = stride, padding, output_padding
    kh, kw = w_shape[2:]
    assert y.shape == (x_shape[0], w_shape[1], (H - 1) * sh - 2 * ph + kh + oh,
                       (W - 1) * sw - 2 * pw + kw + ow)
    assert y.shape == expected.shape
    np.testing.assert_allclose(y.numpy(), expected, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("kernel, stride, padding", [
    ((1, 1), (1, 1), (0, 0)),   # 1x1
    ((1, 1), (2, 3), (1, 0)),   # 1x1, kernel smaller than stride
    ((3, 3), (1, 1), (1, 1)),   # square, "same" padding
    ((4, 4), (2, 2), (1, 1)),   # the DCGAN up/down-sampling block
    ((2, 5), (3, 2), (0, 2)),   # not square, kernel smaller than the stride in one dimension
])
def test_named_geometries_both_directions(kernel, stride, padding):
    """Hand-picked geometries GANs use, so they run on every test run whatever Hypothesis draws."""
    x = _random((2, 3, 6, 7), 0)
    w = _random((4, 3) + kernel, 1)
    b = _random(4, 2)
    np.testing.assert_allclose(
        F.conv2d(Tensor(x), Tensor(w), Tensor(b), stride, padding).numpy(),
        ref_conv2d(x, w, b, stride, padding), rtol=1e-10, atol=1e-10)
    wt = _random((3, 4) + kernel, 3)
    op = (stride[0] - 1, 0)
    np.testing.assert_allclose(
        F.conv_transpose2d(Tensor(x), Tensor(wt), Tensor(b), stride, padding, op).numpy(),
        ref_conv_transpose2d(x, wt, b, stride, padding, op), rtol=1e-10, atol=1e-10)


def test_integer_stride_and_padding_mean_both_dimensions():
    x, w = _random((1, 2, 5, 5), 0), _random((3, 2, 3, 3), 1)
    np.testing.assert_array_equal(F.conv2d(Tensor(x), Tensor(w), stride=2, padding=1).numpy(),
                                  F.conv2d(Tensor(x), Tensor(w), stride=(2, 2),
                                           padding=(1, 1)).numpy())


@FAST
@given(case=conv_cases(), seed=st.integers(0, 2 ** 16))
def test_float32_forward_close_to_float64(case, seed):
    x_shape, w_shape, stride, padding = case
    x, w, b = _random(x_shape, seed), _random(w_shape, seed + 1), _random(w_shape[0], seed + 2)
    y64 = F.conv2d(Tensor(x), Tensor(w), Tensor(b), stride, padding).numpy()
    y32 = F.conv2d(Tensor(x.astype(np.float32)), Tensor(w.astype(np.float32)),
                   Tensor(b.astype(np.float32)), stride, padding)
    assert y32.dtype == np.float32
    np.testing.assert_allclose(y32.numpy(), y64, rtol=1e-4, atol=1e-5)
    wt = _random((x_shape[1], 2) + w_shape[2:], seed + 3)
    # no padding, so the transposed output is never empty: Ho = (H - 1) s + k
    yt64 = F.conv_transpose2d(Tensor(x), Tensor(wt), None, stride).numpy()
    yt32 = F.conv_transpose2d(Tensor(x.astype(np.float32)), Tensor(wt.astype(np.float32)), None,
                              stride)
    assert yt32.dtype == np.float32
    np.testing.assert_allclose(yt32.numpy(), yt64, rtol=1e-4, atol=1e-5)


# ------------------------------------------------------------------------------------------------
# The adjoint identity <conv2d(x, w), y> = <x, conv_transpose2d(y, w)>
# ------------------------------------------------------------------------------------------------
@FAST
@given(case=conv_cases(), seed=st.integers(0, 2 ** 16))
def test_conv_transpose2d_is_the_adjoint_of_conv2d(case, seed):
    x_shape, w_shape, stride, padding = case
    x, w = _random(x_shape, seed), _random(w_shape, seed + 1)
    cx = F.conv2d(Tensor(x), Tensor(w), stride=stride, padding=padding).numpy()
    y = _random(cx.shape, seed + 2)
    # conv2d drops (H + 2p - k) mod s rows at the end; output_padding gives them back
    op = tuple((size + 2 * p - k) % s for size, p, k, s in
               zip(x_shape[2:], padding, w_shape[2:], stride))
    ty = F.conv_transpose2d(Tensor(y), Tensor(w), stride=stride, padding=padding,
                            output_padding=op).numpy()
    assert ty.shape == x.shape
    lhs, rhs = float((cx * y).sum()), float((x * ty).sum())
    assert lhs == pytest.approx(rhs, rel=1e-10, abs=1e-10)


# ------------------------------------------------------------------------------------------------
# Gradients (finite differences with a random upstream gradient)
# ------------------------------------------------------------------------------------------------
def _leaves(*arrays):
    return [Tensor(a, requires_grad=True) for a in arrays]


@TINY
@given(case=conv_cases(max_side=4, max_channels=2, max_batch=1), seed=st.integers(0, 2 ** 16))
def test_conv2d_gradcheck(case, seed):
    x_shape, w_shape, stride, padding = case
    inputs = _leaves(_random(x_shape, seed), _random(w_shape, seed + 1),
                     _random(w_shape[0], seed + 2))
    assert gradcheck(lambda x, w, b: F.conv2d(x, w, b, stride, padding), inputs)


@TINY
@given(case=conv_transpose_cases(max_side=3, max_channels=2, max_batch=1, max_kernel=3),
       seed=st.integers(0, 2 ** 16))
def test_conv_transpose2d_gradcheck(case, seed):
    x_shape, w_shape, stride, padding, op = case
    inputs = _leaves(_random(x_shape, seed), _random(w_shape, seed + 1),
                     _random(w_shape[1], seed + 2))
    assert gradcheck(lambda x, w, b: F.conv_transpose2d(x, w, b, stride, padding, op), inputs)


@SECOND_ORDER
@given(case=conv_cases(max_side=4, max_channels=2, max_batch=1, max_kernel=3),
       seed=st.integers(0, 2 ** 16))
def test_conv2d_leaky_relu_gradgradcheck(case, seed):
    """The WGAN-GP critic's path: d/d(x, w, b) of a gradient taken with create_graph=True."""
    x_shape, w_shape, stride, padding = case
    inputs = _leaves(_random(x_shape, seed), _random(w_shape, seed + 1),
                     _random(w_shape[0], seed + 2))

    def critic(x, w, b):
        return F.leaky_relu(F.conv2d(x, w, b, stride, padding), 0.2)

    # a finite-difference step that moves a pre-activation across 0 would break the check
    pre = F.conv2d(*[Tensor(t.data) for t in inputs], stride=stride, padding=padding).numpy()
    assume(np.abs(pre).min() > 1e-3)
    assert gradgradcheck(critic, inputs)


@SECOND_ORDER
@given(case=conv_transpose_cases(max_side=3, max_channels=2, max_batch=1, max_kernel=3),
       seed=st.integers(0, 2 ** 16))
def test_conv_transpose2d_gradgradcheck(case, seed):
    x_shape, w_shape, stride, padding, op = case
    inputs = _leaves(_random(x_shape, seed), _random(w_shape, seed + 1),
                     _random(w_shape[1], seed + 2))
    # squared so the second derivative in each argument is not zero
    assert gradgradcheck(
        lambda x, w, b: F.conv_transpose2d(x, w, b, stride, padding, op) ** 2, inputs)


def test_conv2d_gradgradcheck_stacked_layers():
    """Two convolutions with a nonlinearity between them: the mixed x/w second derivatives of
    every layer have to be right for a penalty on d critic / d x."""
    rng = np.random.default_rng(7)
    inputs = _leaves(rng.standard_normal((1, 1, 4, 4)), rng.standard_normal((2, 1, 3, 3)),
                     rng.standard_normal((1, 2, 2, 2)))

    def critic(x, w1, w2):
        h = F.tanh(F.conv2d(x, w1, stride=1, padding=1))
        return F.conv2d(h, w2, stride=2)

    assert gradgradcheck(critic, inputs)


# ------------------------------------------------------------------------------------------------
# Errors
# ------------------------------------------------------------------------------------------------
def _t(*shape, dtype=np.float64):
    return Tensor(np.zeros(shape, dtype=dtype))


def test_channel_mismatch_is_named():
    with pytest.raises(ValueError, match=r"3 channels.*expects 2"):
        F.conv2d(_t(1, 3, 5, 5), _t(4, 2, 3, 3))
    with pytest.raises(ValueError, match=r"3 channels.*expects 2"):
        F.conv_transpose2d(_t(1, 3, 5, 5), _t(2, 4, 3, 3))


def test_kernel_larger_than_padded_input():
    with pytest.raises(ValueError, match=r"kernel height 5 is larger than the padded input "
                                         r"height 4 \(input 2, padding 1\)"):
        F.conv2d(_t(1, 1, 2, 9), _t(1, 1, 5, 3), padding=1)
    with pytest.raises(ValueError, match="kernel width 4 is larger"):
        F.conv2d(_t(1, 1, 9, 3), _t(1, 1, 3, 4))


@pytest.mark.parametrize("shape", [(3, 5, 5), (1, 1, 1, 5, 5), (5,)])
def test_non_4d_input(shape):
    with pytest.raises(ValueError, match=r"4-D input.*" + re_shape(shape)):
        F.conv2d(_t(*shape), _t(1, 1, 1, 1))
    with pytest.raises(ValueError, match=r"4-D input.*" + re_shape(shape)):
        F.conv_transpose2d(_t(*shape), _t(1, 1, 1, 1))


def re_shape(shape):
    """A regex matching the tuple repr of ``shape``."""
    return repr(tuple(shape)).replace("(", r"\(").replace(")", r"\)")


def test_non_4d_weight():
    with pytest.raises(ValueError, match=r"4-D weight.*\(2, 1, 3\)"):
        F.conv2d(_t(1, 1, 5, 5), _t(2, 1, 3))


@pytest.mark.parametrize("stride, output_padding", [(1, 1), (2, 2), ((2, 1), (1, 1)), (2, 3)])
def test_impossible_output_padding(stride, output_padding):
    with pytest.raises(ValueError, match="output_padding .* must be smaller than stride"):
        F.conv_transpose2d(_t(1, 1, 3, 3), _t(1, 1, 3, 3), stride=stride,
                           output_padding=output_padding)


def test_dtype_mismatch():
    with pytest.raises(TypeError, match="float32.*float64|float64.*float32"):
        F.conv2d(_t(1, 1, 4, 4, dtype=np.float32), _t(1, 1, 3, 3))
    with pytest.raises(TypeError, match="float32.*float64|float64.*float32"):
        F.conv_transpose2d(_t(1, 1, 4, 4), _t(1, 1, 3, 3, dtype=np.float32))


def test_bias_of_wrong_size():
    with pytest.raises(ValueError, match=r"bias of shape \(3,\) does not match 2 output"):
        F.conv2d(_t(1, 1, 4, 4), _t(2, 1, 3, 3), _t(3))


def test_bad_stride_and_padding():
    with pytest.raises(ValueError, match="stride must be positive"):
        F.conv2d(_t(1, 1, 4, 4), _t(1, 1, 3, 3), stride=0)
    with pytest.raises(ValueError, match="padding must be a non-negative int"):
        F.conv2d(_t(1, 1, 4, 4), _t(1, 1, 3, 3), padding=-1)


def test_transposed_output_size_not_positive():
    with pytest.raises(ValueError, match="output size -1 is not positive"):
        F.conv_transpose2d(_t(1, 1, 1, 1), _t(1, 1, 3, 3), padding=2)


def test_conv2d_keeps_patches_only_for_a_weight_gradient_and_frees_them_in_backward():
    """The op keeps x's im2col matrix from forward to backward only when the weight will want a
    gradient (requires_grad and grad mode on), and drops it once the weight gradient used it."""
    rng = np.random.default_rng(0)
    x = Tensor(rng.standard_normal((2, 3, 6, 6)), requires_grad=True)
    w = Tensor(rng.standard_normal((4, 3, 3, 3)), requires_grad=True)
    y = F.conv2d(x, w, stride=2, padding=1)
    assert y.creator.patches is not None
    g = rng.standard_normal(y.shape)
    fn = y.creator
    y.backward(Tensor(g))
    assert getattr(fn, "patches", None) is None   # dropped (the engine also frees the graph)
    gw_kept = w.grad.numpy().copy()
    w.grad = None
    # the same weight gradient as the kernel gives when it gathers the patches itself
    gathered = kernels.conv2d_grad_weight(x.numpy(), g, (3, 3), (2, 2), (1, 1))
    np.testing.assert_allclose(gw_kept, gathered, rtol=1e-12, atol=1e-12)
    x2 = Tensor(x.numpy(), requires_grad=False)
    frozen = Tensor(w.numpy(), requires_grad=False)
    assert F.conv2d(x, frozen, stride=2, padding=1).creator.patches is None
    with mg.no_grad():
        assert F.conv2d(x2, w, stride=2, padding=1).creator is None
