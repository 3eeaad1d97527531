"""F.instance_norm and nn.InstanceNorm2d against a loop reference over (image, channel).

The op is batch norm of the (1, N*C, H, W) view (the batch-norm kernels do the work), so these
tests check that the view gives each image's channel its own statistics, the fused first-order
backward and the differentiable one (second derivatives), the running statistics, and errors.
"""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import minigan.functional as F
from minigan import nn
from minigan.autograd import Tensor, grad
from minigan.testing import gradcheck, gradgradcheck

FAST = settings(max_examples=20, deadline=None)
SECOND_ORDER = settings(max_examples=8, deadline=None)

# (N, C, H, W) with at least two pixels per plane: N = 1 and C = 1 included
in_shapes = st.tuples(st.integers(1, 3), st.integers(1, 3), st.integers(1, 3),
                      st.integers(1, 3)).filter(lambda s: s[2] * s[3] > 1)


def ref_instance_norm(x, weight=None, bias=None, eps=1e-5):
    """Each image n, channel c separately: (x - mean) / sqrt(biased var + eps) * w[c] + b[c]."""
    y = np.empty_like(x)
    N, C = x.shape[:2]
    for n in range(N):
        for c in range(C):
            plane = x[n, c]
            y[n, c] = (plane - plane.mean()) / np.sqrt(plane.var() + eps)
            if weight is not None:
                y[n, c] = y[n, c] * weight[c] + bias[c]
    return y


def _random(shape, seed, scale=1.0, shift=0.0):
    return np.random.default_rng(seed).standard_normal(shape) * scale + shift


def _leaves(*arrays):
    return [Tensor(a, requires_grad=True) for a in arrays]


@FAST
@given(shape=in_shapes, seed=st.integers(0, 2 ** 16), affine=st.booleans())
def test_forward_matches_loop_reference(shape, seed, affine):
    C = shape[1]
    x = _random(shape, seed, scale=3.0, shift=1.5)
    w, b = (_random(C, seed + 1), _random(C, seed + 2)) if affine else (None, None)
    y = F.instance_norm(Tensor(x), weight=None if w is None else Tensor(w),
                        bias=None if b is None else Tensor(b), eps=1e-3)
    np.testing.assert_allclose(y.numpy(), ref_instance_norm(x, w, b, eps=1e-3), rtol=1e-9,
                               atol=1e-9)


@FAST
@given(shape=in_shapes, seed=st.integers(0, 2 ** 16))
def test_gradcheck_fused_backward(shape, seed):
    C = shape[1]
    inputs = _leaves(_random(shape, seed, scale=2.0), _random(C, seed + 1), _random(C, seed + 2))
    assert gradcheck(lambda x, w, b: F.instance_norm(x, weight=w, bias=b), inputs)
    assert gradcheck(lambda x: F.instance_norm(x), inputs[:1])


@SECOND_ORDER
@given(shape=in_shapes, seed=st.integers(0, 2 ** 16))
def test_gradgradcheck(shape, seed):
    C = shape[1]
    inputs = _leaves(_random(shape, seed, scale=2.0), _random(C, seed + 1), _random(C, seed + 2))
    assert gradgradcheck(lambda x, w, b: F.instance_norm(x, weight=w, bias=b), inputs)


def test_fused_and_differentiable_backwards_agree():
    """The first derivative by the batch-norm kernel (no graph) and by differentiable ops
    (create_graph=True) are the same numbers."""
    x = Tensor(_random((3, 2, 4, 5), 7, scale=2.0), requires_grad=True)
    gy = Tensor(_random((3, 2, 4, 5), 8))
    fused, = grad(F.instance_norm(x), x, gy)
    graph, = grad(F.instance_norm(x), x, gy, create_graph=True)
    np.testing.assert_allclose(fused.numpy(), graph.numpy(), rtol=1e-10, atol=1e-12)


def test_each_instance_is_independent():
    """Changing image 0 changes nothing in image 1's output (batch norm would mix them)."""
    x = _random((2, 3, 4, 4), 1)
    y1 = F.instance_norm(Tensor(x), eps=1e-12).numpy()
    x[0] = x[0] * 5 + 2
    y2 = F.instance_norm(Tensor(x), eps=1e-12).numpy()
    np.testing.assert_array_equal(y1[1], y2[1])
    np.testing.assert_allclose(y1[0], y2[0], atol=1e-9)   # and is invariant to x -> a x + b


def test_running_statistics():
    x = _random((4, 2, 3, 3), 3, scale=2.0, shift=1.0)
    rm, rv = Tensor(np.zeros(2)), Tensor(np.ones(2))
    F.instance_norm(Tensor(x), rm, rv, momentum=0.5)
    planes = x.reshape(4, 2, 9)
    np.testing.assert_allclose(rm.numpy(), 0.5 * planes.mean(axis=2).mean(axis=0), rtol=1e-12)
    np.testing.assert_allclose(rv.numpy(), 0.5 + 0.5 * planes.var(axis=2, ddof=1).mean(axis=0),
                               rtol=1e-12)
    y = F.instance_norm(Tensor(x), rm, rv, use_input_stats=False)
    want = (x - rm.numpy()[None, :, None, None]) / np.sqrt(rv.numpy()[None, :, None, None] + 1e-5)
    np.testing.assert_allclose(y.numpy(), want, rtol=1e-12)


def test_layer_defaults_match_pytorch():
    layer = nn.InstanceNorm2d(3)
    assert not layer.affine and not layer.track_running_stats
    assert not list(layer.parameters()) and not dict(layer.state_dict())
    x = _random((2, 3, 4, 4), 5)
    np.testing.assert_allclose(layer(Tensor(x)).numpy(), ref_instance_norm(x), rtol=1e-9)
    layer.eval()   # no running statistics: evaluation normalises with the input's own
    np.testing.assert_allclose(layer(Tensor(x)).numpy(), ref_instance_norm(x), rtol=1e-9)
    affine = nn.InstanceNorm2d(3, affine=True, track_running_stats=True)
    assert sorted(dict(affine.state_dict())) == ["bias", "running_mean", "running_var", "weight"]
    affine(Tensor(x))
    assert not np.allclose(affine.running_mean.numpy(), 0)


def test_errors_name_the_problem():
    with pytest.raises(ValueError, match=r"\(N, C, H, W\) input, got shape \(2, 3\)"):
        F.instance_norm(Tensor(np.zeros((2, 3))))
    with pytest.raises(ValueError, match="more than one value per channel"):
        F.instance_norm(Tensor(np.zeros((2, 3, 1, 1))))
    with pytest.raises(ValueError, match="weight has shape"):
        F.instance_norm(Tensor(np.zeros((2, 3, 2, 2))), weight=Tensor(np.ones(2)),
                        bias=Tensor(np.ones(2)))
    with pytest.raises(ValueError, match="needs running_mean"):
        F.instance_norm(Tensor(np.zeros((2, 3, 2, 2))), use_input_stats=False)
    with pytest.raises(ValueError, match="InstanceNorm2d\\(4\\) got an input with 3 channels"):
        nn.InstanceNorm2d(4)(Tensor(np.zeros((2, 3, 2, 2))))
