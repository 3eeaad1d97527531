"""F.pad (constant, reflect, replicate) and the nn padding layers.

Checked against a loop reference that writes each output pixel from the definition of its mode,
its adjoint (the gradient of <pad(x), g> is the loop's scatter of g), finite differences with a
random upstream gradient (first and second derivatives), and the errors for impossible pads.
"""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import minigan.functional as F
from minigan import nn
from minigan.autograd import Tensor
from minigan.testing import gradcheck, gradgradcheck

FAST = settings(max_examples=25, deadline=None)
SECOND_ORDER = settings(max_examples=10, deadline=None)


def ref_source(j, size, mode):
    """The input index output index j (counted from the first input pixel) reads; None: constant."""
    if 0 <= j < size:
        return j
    if mode == "constant":
        return None
    if mode == "replicate":
        return 0 if j < 0 else size - 1
    while not 0 <= j < size:          # reflect: mirror about the first and last pixel
        j = -j if j < 0 else 2 * (size - 1) - j
    return j


def ref_pad(x, pad, mode, value=0.0):
    """Loop reference over every output pixel of the last len(pad) // 2 axes."""
    if len(pad) == 2:
        pad = pad + (0, 0)
    left, right, top, bottom = pad
    *lead, H, W = x.shape
    y = np.empty(tuple(lead) + (top + H + bottom, left + W + right))
    for i in range(y.shape[-2]):
        for j in range(y.shape[-1]):
            si, sj = ref_source(i - top, H, mode), ref_source(j - left, W, mode)
            y[..., i, j] = value if si is None or sj is None else x[..., si, sj]
    return y


def ref_pad_adjoint(g, x_shape, pad, mode):
    if len(pad) == 2:
        pad = pad + (0, 0)
    left, _, top, _ = pad
    H, W = x_shape[-2:]
    out = np.zeros(x_shape)
    for i in range(g.shape[-2]):
        for j in range(g.shape[-1]):
            si, sj = ref_source(i - top, H, mode), ref_source(j - left, W, mode)
            if si is not None and sj is not None:
                out[..., si, sj] += g[..., i, j]
    return out


@st.composite
def pad_cases(draw, max_side=5):
    """(shape, pad, mode): every layout PyTorch allows (2/3/4-D input, pads of the last axis or
    the last two); a reflection pad is smaller than its axis."""
    mode = draw(st.sampled_from(["constant", "reflect", "replicate"]))
    n_axes = draw(st.sampled_from([1, 2]))
    # PyTorch's layouts: reflect/replicate of one axis on 2-D/3-D input, of two on 3-D/4-D
    ndim = draw(st.integers(2, 4) if mode == "constant" else st.integers(n_axes + 1, n_axes + 2))
    shape = tuple(draw(st.integers(1, 3)) for _ in range(ndim - 2)) + \
        tuple(draw(st.integers(2 if mode == "reflect" else 1, max_side)) for _ in range(2))
    pad = []
    for k in range(n_axes):
        size = shape[-1 - k]
        top = size - 1 if mode == "reflect" else 4
        pad += [draw(st.integers(0, top)), draw(st.integers(0, top))]
    return shape, tuple(pad), mode


@FAST
@given(case=pad_cases(), seed=st.integers(0, 2 ** 16))
def test_forward_and_adjoint_match_the_loop_reference(case, seed):
    shape, pad, mode = case
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(shape)
    xt = Tensor(x, requires_grad=True)
    y = F.pad(xt, pad, mode)
    np.testing.assert_array_equal(y.numpy(), ref_pad(x, pad, mode))
    g = rng.standard_normal(y.shape)
    y.backward(Tensor(g))
    np.testing.assert_allclose(xt.grad.numpy(), ref_pad_adjoint(g, shape, pad, mode),
                               rtol=1e-12, atol=1e-12)


@FAST
@given(case=pad_cases(max_side=4), seed=st.integers(0, 2 ** 16))
def test_gradcheck(case, seed):
    shape, pad, mode = case
    x = Tensor(np.random.default_rng(seed).standard_normal(shape), requires_grad=True)
    assert gradcheck(lambda t: F.pad(t, pad, mode), [x])


@SECOND_ORDER
@given(case=pad_cases(max_side=3), seed=st.integers(0, 2 ** 16))
def test_gradgradcheck(case, seed):
    """Through a nonlinearity, so the second derivative is not zero and passes through the
    scatter's backward (the gather) and the gather's backward (the scatter)."""
    shape, pad, mode = case
    x = Tensor(np.random.default_rng(seed).standard_normal(shape), requires_grad=True)
    assert gradgradcheck(lambda t: F.pad(t * t, pad, mode) ** 3, [x])


def test_reflect_small_example():
    x = Tensor(np.array([[1.0, 2.0, 3.0, 4.0]]))
    np.testing.assert_array_equal(F.pad(x, (2, 3), "reflect").numpy(),
                                  [[3, 2, 1, 2, 3, 4, 3, 2, 1]])
    np.testing.assert_array_equal(F.pad(x, (2, 1), "replicate").numpy(), [[1, 1, 1, 2, 3, 4, 4]])
    np.testing.assert_array_equal(F.pad(x, (1, 1), value=-7).numpy(), [[-7, 1, 2, 3, 4, -7]])


def test_reflection_gradient_counts_mirror_images():
    """(1, 1) reflection of [a b c]: b c | a b c | ... -> b appears three times."""
    x = Tensor(np.array([[1.0, 2.0, 3.0]]), requires_grad=True)
    F.pad(x, (1, 1), "reflect").sum().backward()
    np.testing.assert_array_equal(x.grad.numpy(), [[1.0, 3.0, 1.0]])


def test_errors_name_the_problem():
    x = Tensor(np.zeros((1, 1, 3, 3)))
    with pytest.raises(ValueError, match="smaller than the padded axis, of size 3"):
        F.pad(x, (3, 0, 0, 0), "reflect")
    with pytest.raises(ValueError, match="mode must be one of"):
        F.pad(x, (1, 1), "circular")
    with pytest.raises(ValueError, match="negative padding"):
        F.pad(x, (-1, 1))
    with pytest.raises(ValueError, match=r"\(left, right\)"):
        F.pad(x, (1, 1, 1))
    with pytest.raises(ValueError, match="value is only used"):
        F.pad(x, (1, 1), "reflect", value=2.0)
    with pytest.raises(ValueError, match="at least 3 dimensions"):
        F.pad(Tensor(np.zeros((3, 3))), (1, 1, 1, 1), "reflect")


@pytest.mark.parametrize("layer, mode", [(nn.ReflectionPad2d, "reflect"),
                                         (nn.ReplicationPad2d, "replicate"),
                                         (nn.ZeroPad2d, "constant")])
def test_layers(layer, mode):
    x = np.random.default_rng(0).standard_normal((2, 3, 4, 5))
    np.testing.assert_array_equal(layer(2)(Tensor(x)).numpy(), ref_pad(x, (2, 2, 2, 2), mode))
    np.testing.assert_array_equal(layer((1, 0, 2, 3))(Tensor(x)).numpy(),
                                  ref_pad(x, (1, 0, 2, 3), mode))
    assert not list(layer(1).parameters())
    np.testing.assert_array_equal(nn.ConstantPad2d(1, 2.5)(Tensor(x)).numpy(),
                                  ref_pad(x, (1, 1, 1, 1), "constant", 2.5))
    with pytest.raises(ValueError, match="3-D or 4-D"):
        layer(1)(Tensor(np.zeros((2, 2))))
