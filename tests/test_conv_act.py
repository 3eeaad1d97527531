"""A convolution followed by ReLU / LeakyReLU, fused (the DCGAN discriminator's first layer): the
kernels' negative_slope, F.conv2d_leaky_relu and nn.Sequential's fusion give the numbers of the
two ops in turn, values and gradients (first and second order), and are checked against finite
differences."""
import numpy as np
import pytest

import minigan.functional as F
from minigan import kernels, nn
from minigan.autograd import Tensor, grad
from minigan.functional.activation import LeakyReLU as LeakyReLUOp
from minigan.functional.conv import Conv2dLeakyReLU
from minigan.testing import gradcheck, gradgradcheck

# (x shape, w shape, stride, padding): im2col with a small K (the DCGAN's 1-channel first layer),
# im2col with the channels-last product, a 1x1 output (dense), Winograd's 4x4 stride-2 geometry
CASES = [((3, 1, 12, 12), (8, 1, 4, 4), 2, 1), ((2, 5, 7, 6), (4, 5, 3, 3), 1, 1),
         ((3, 4, 3, 3), (6, 4, 3, 3), 1, 0), ((2, 16, 8, 8), (16, 16, 4, 4), 2, 1)]


@pytest.mark.parametrize("case", CASES, ids=str)
@pytest.mark.parametrize("slope", [0.0, 0.2])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_kernel_applies_the_activation_to_the_convolution(case, slope, dtype):
    xs, ws, s, p = case
    rng = np.random.default_rng(1)
    x, w = rng.standard_normal(xs).astype(dtype), rng.standard_normal(ws).astype(dtype)
    want = kernels.leaky_relu(kernels.conv2d(x, w, (s, s), (p, p)), slope)
    got, _ = kernels.conv2d(x, w, (s, s), (p, p), keep_patches=True, negative_slope=slope)
    np.testing.assert_array_equal(got, want)   # the same convolution, then the same activation
    with pytest.raises(ValueError, match="conv2d \\+ leaky_relu needs negative_slope >= 0"):
        kernels.conv2d(x, w, (s, s), (p, p), negative_slope=-0.1)


@pytest.mark.parametrize("case", CASES, ids=str)
@pytest.mark.parametrize("slope, bias", [(0.0, False), (0.2, False), (-0.3, False), (0.2, True)])
def test_same_numbers_as_the_two_ops(case, slope, bias):
    """Values and gradients with and without create_graph; the fused op runs exactly without a
    bias and with a slope >= 0."""
    xs, ws, s, p = case
    results = []
    for fused in (True, False):
        rng = np.random.default_rng(2)
        x = Tensor(rng.standard_normal(xs), requires_grad=True)
        w = Tensor(rng.standard_normal(ws), requires_grad=True)
        b = Tensor(rng.standard_normal(ws[0]), requires_grad=True) if bias else None
        if fused:
            z = F.conv2d_leaky_relu(x, w, b, s, p, negative_slope=slope)
            assert type(z.creator) is (Conv2dLeakyReLU if slope >= 0 and not bias else LeakyReLUOp)
        else:
            z = F.leaky_relu(F.conv2d(x, w, b, s, p), slope)
        leaves = [x, w] + ([b] if bias else [])
        gz = Tensor(np.random.default_rng(3).standard_normal(z.shape))
        plain = grad(z, leaves, gz, retain_graph=True)
        graphed = grad(z, leaves, gz, create_graph=True)
        second = grad((graphed[0] * graphed[0]).sum(), [w])
        results.append([z, *plain, *graphed, *second])
    for a, b in zip(*results):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("slope", [0.0, 0.2])
def test_fused_op_by_finite_differences(slope):
    rng = np.random.default_rng(4)
    x = Tensor(rng.standard_normal((2, 3, 6, 6)), requires_grad=True)
    w = Tensor(rng.standard_normal((4, 3, 3, 3)), requires_grad=True)

    def fn(x, w):
        return F.conv2d_leaky_relu(x, w, None, 2, 1, negative_slope=slope)
    assert gradcheck(fn, [x, w])
    assert gradgradcheck(fn, [x, w])


def test_sequential_fuses_a_convolution_without_bias_and_its_activation():
    rng = np.random.default_rng(5)
    seq = nn.Sequential(nn.Conv2d(1, 8, 4, 2, 1, bias=False), nn.LeakyReLU(0.2),
                        nn.Conv2d(8, 4, 3, padding=1), nn.ReLU()).double()
    x = Tensor(rng.standard_normal((3, 1, 12, 12)), requires_grad=True)
    z = seq(x)
    assert type(z.creator) is LeakyReLUOp                          # the conv with a bias: not fused
    assert type(z.creator.inputs[0].creator.inputs[0].creator) is Conv2dLeakyReLU
    gz = Tensor(rng.standard_normal(z.shape))
    got = [z] + list(grad(z, [x] + list(seq.parameters()), gz))
    y = x
    for module in seq:   # one call each: nothing fused
        y = module(y)
    want = [y] + list(grad(y, [x] + list(seq.parameters()), gz))
    for a, b in zip(got, want):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-12, atol=1e-12)


def test_a_spectrally_normalised_convolution_is_not_fused():
    """spectral_norm rescales the weight in a forward pre-hook, which a fused call would skip."""
    rng = np.random.default_rng(6)
    conv = nn.utils.spectral_norm(nn.Conv2d(1, 8, 4, 2, 1, bias=False).double())
    seq = nn.Sequential(conv, nn.LeakyReLU(0.2))
    seq.eval()   # no power iteration in either call: both see the same sigma
    x = Tensor(rng.standard_normal((2, 1, 12, 12)))
    z = seq(x)
    assert type(z.creator) is LeakyReLUOp
    np.testing.assert_allclose(z.numpy(), F.leaky_relu(conv(x), 0.2).numpy(), rtol=1e-12)


@pytest.mark.parametrize("case", CASES, ids=str)
def test_gradient_kernels_apply_the_activations_derivative(case):
    """conv2d_grad_input / conv2d_grad_weight with activation=(z, slope) are the plain kernels
    applied to leaky_relu_grad(gy, z, slope), with kept patches or without."""
    xs, ws, s, p = case
    rng = np.random.default_rng(7)
    x, w = rng.standard_normal(xs), rng.standard_normal(ws)
    z, patches = kernels.conv2d(x, w, (s, s), (p, p), keep_patches=True, negative_slope=0.2)
    gz = rng.standard_normal(z.shape)
    g = kernels.leaky_relu_grad(gz, z, 0.2)
    act = (z, 0.2)
    np.testing.assert_allclose(
        kernels.conv2d_grad_input(gz, w, xs[2:], (s, s), (p, p), activation=act),
        kernels.conv2d_grad_input(g, w, xs[2:], (s, s), (p, p)), rtol=1e-13, atol=1e-13)
    for kept in (patches, None):
        np.testing.assert_allclose(
            kernels.conv2d_grad_weight(x, gz, ws[2:], (s, s), (p, p), patches=kept,
                                       activation=act),
            kernels.conv2d_grad_weight(x, g, ws[2:], (s, s), (p, p), patches=kept),
            rtol=1e-13, atol=1e-13)
    with pytest.raises(ValueError, match="activation's output z .* does not match gy"):
        kernels.conv2d_grad_input(gz, w, xs[2:], (s, s), (p, p), activation=(z[:1], 0.2))
    with pytest.raises(ValueError, match="needs negative_slope >= 0"):
        kernels.conv2d_grad_weight(x, gz, ws[2:], (s, s), (p, p), activation=(z, -1.0))
