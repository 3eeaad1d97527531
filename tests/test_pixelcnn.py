"""Masked convolutions and PixelCNN: the masks tap by tap, causality by gradients that are exactly
zero, the exact NLL of a model that says 0.5, sampling from row crops that equal the full pass."""
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import minigan as mg
import minigan.functional as F
from minigan import nn
from minigan.density import PixelCNN, heldout_nll
from minigan.testing import gradcheck

from strategies import arrays

EXAMPLES = settings(max_examples=8, deadline=None)


def leaf(a):
    return mg.tensor(np.asarray(a, dtype=np.float64), requires_grad=True)


def binary(shape, seed=0, p=0.4):
    return (np.random.default_rng(seed).random(shape) < p).astype(np.float64)


def input_gradient(fn, x, r, c):
    """d fn(x)[0, :, r, c].sum() / dx for a float64 input x (1, C, H, W)."""
    xt = leaf(x)
    fn(xt)[0, :, r, c].sum().backward()
    return xt.grad.data


def at_or_after(shape, r, c):
    """Boolean (H, W): pixels at or after (r, c) in raster order."""
    order = np.arange(shape[0] * shape[1]).reshape(shape)
    return order >= r * shape[1] + c


# --- the masks ------------------------------------------------------------------------------------
def test_causal_masks_tap_by_tap():
    np.testing.assert_array_equal(nn.causal_mask("A", (3, 3)), [[1, 1, 1], [1, 0, 0], [0, 0, 0]])
    np.testing.assert_array_equal(nn.causal_mask("B", (3, 3)), [[1, 1, 1], [1, 1, 0], [0, 0, 0]])
    np.testing.assert_array_equal(nn.causal_mask("A", (5, 5))[2], [1, 1, 0, 0, 0])
    np.testing.assert_array_equal(nn.causal_mask("B", (5, 5))[3:], 0)
    assert nn.causal_mask("A", (7, 7)).sum() == 24 and nn.causal_mask("B", (7, 7)).sum() == 25


def test_masked_conv_rejects_bad_masks():
    with pytest.raises(ValueError, match="'A' or 'B'"):
        nn.MaskedConv2d("C", 1, 2, 3)
    with pytest.raises(ValueError, match=r"odd kernel sides.*\(4, 4\)"):
        nn.MaskedConv2d("A", 1, 2, 4)


def test_masked_conv_is_conv2d_with_the_masked_weight_and_masked_weights_get_no_gradient():
    mg.set_default_dtype(np.float64)
    layer = nn.MaskedConv2d("B", 2, 3, 5)
    x = mg.tensor(np.random.default_rng(0).standard_normal((2, 2, 6, 6)))
    y = layer(x)
    expected = F.conv2d(x, mg.tensor(layer.weight.data * layer.mask.data), layer.bias, 1, 2)
    np.testing.assert_array_equal(y.data, expected.data)
    assert y.shape == (2, 3, 6, 6)
    (y * mg.tensor(np.random.default_rng(1).standard_normal(y.shape))).sum().backward()
    masked = np.broadcast_to(layer.mask.data == 0, layer.weight.shape)
    assert np.all(layer.weight.grad.data[masked] == 0.0)
    assert np.all(layer.weight.data[masked] == 0.0)
    assert np.count_nonzero(layer.weight.grad.data[~masked]) == (~masked).sum()


@EXAMPLES
@given(data=st.data(), mask=st.sampled_from("AB"))
def test_masked_conv_gradients(data, mask):
    mg.set_default_dtype(np.float64)
    layer = nn.MaskedConv2d(mask, 2, 2, 3)
    x = data.draw(arrays((1, 2, 3, 4)))
    w = data.draw(arrays(layer.weight.shape))
    fn = lambda x, w: F.conv2d(x, w * layer.mask, None, 1, 1)  # noqa: E731 - the layer's forward
    assert gradcheck(fn, [leaf(x), leaf(w)])
    layer.weight.data[...] = w
    np.testing.assert_allclose(layer(mg.tensor(x)).data - layer.bias.data.reshape(1, -1, 1, 1),
                               fn(mg.tensor(x), mg.tensor(w)).data, rtol=1e-12, atol=1e-12)


# --- causality by gradients -----------------------------------------------------------------------
@pytest.mark.parametrize("mask", ["A", "B"])
def test_one_masked_layer_sees_only_earlier_pixels(mask):
    mg.set_default_dtype(np.float64)
    layer = nn.MaskedConv2d(mask, 1, 3, 5)
    x = np.random.default_rng(0).standard_normal((1, 1, 6, 7))
    for r, c in [(0, 0), (2, 3), (5, 6), (3, 0)]:
        g = input_gradient(layer, x, r, c)[0, 0]
        later = at_or_after(g.shape, r, c)
        later[r, c] = mask == "A"        # B adds the pixel itself, and only it
        assert np.all(g[later] == 0.0), (r, c)
        if mask == "B":
            assert g[r, c] != 0.0
        if (r, c) != (0, 0):
            assert np.any(g[~later] != 0.0)


def test_pixelcnn_output_depends_on_no_pixel_at_or_after_its_own():
    mg.set_default_dtype(np.float64)
    model = PixelCNN(h=3, layers=2, first_kernel=5)
    x = np.random.default_rng(0).standard_normal((1, 1, 8, 8))
    for r in range(8):
        for c in range(8):
            g = input_gradient(model, x, r, c)[0, 0]
            assert np.all(g[at_or_after(g.shape, r, c)] == 0.0), (r, c)
            if (r, c) != (0, 0):
                assert g[r if c else r - 1, c - 1 if c else c] != 0.0   # the previous pixel counts


# --- likelihood -----------------------------------------------------------------------------------
def half_model(**sizes):
    model = PixelCNN(**sizes)
    last = model.output[-1]
    nn.init.zeros_(last.weight)
    nn.init.zeros_(last.bias)     # logits 0: every pixel is 1 with probability 0.5
    return model


def test_nll_of_a_model_that_says_half_is_784_log_2():
    model = half_model(h=4, layers=1)
    x = binary((3, 1, 28, 28)).astype(np.float32)
    np.testing.assert_allclose(model.nll(mg.tensor(x)).data, [784 * math.log(2.0)] * 3, rtol=1e-6)
    result = heldout_nll(model, x, batch_size=2)
    assert result["nll"] == pytest.approx(784 * math.log(2.0), rel=1e-6)
    assert result["bits_per_dim"] == pytest.approx(1.0, rel=1e-6)


def test_nll_gradient_reaches_every_layer_and_rejects_bad_input():
    model = PixelCNN(h=2, layers=1)
    model.nll(mg.tensor(binary((2, 1, 6, 6)).astype(np.float32))).mean().backward()
    assert all(p.grad is not None and np.any(p.grad.data != 0) for p in model.parameters())
    with pytest.raises(ValueError, match=r"\(N, 1, H, W\), got \(2, 3, 6, 6\)"):
        model(mg.zeros(2, 3, 6, 6))
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        model.nll(mg.tensor(np.full((1, 1, 6, 6), 2.0, np.float32)))


# --- sampling -------------------------------------------------------------------------------------
def test_row_crops_give_the_full_pass_logits():
    mg.set_default_dtype(np.float64)
    model = PixelCNN(h=3, layers=2, first_kernel=5)
    assert model.rows_above == 4
    x = binary((2, 1, 12, 9), seed=3)
    full = model(mg.tensor(x)).data[:, 0]
    for r in range(12):
        np.testing.assert_allclose(model.row_logits(x, r).data, full[:, r], rtol=1e-12, atol=1e-12)


def test_sampling_is_seeded_binary_and_follows_the_model():
    model = half_model(h=2, layers=1)
    model.output[-1].bias.data[...] = math.log(3.0)      # p = 0.75 for every pixel
    a = model.sample(40, shape=(10, 10), rng=np.random.default_rng(5))
    b = model.sample(40, shape=(10, 10), rng=np.random.default_rng(5))
    assert a.shape == (40, 1, 10, 10)
    np.testing.assert_array_equal(a, b)
    assert set(np.unique(a)) <= {0.0, 1.0}
    assert abs(a.mean() - 0.75) < 4 * math.sqrt(0.75 * 0.25 / a.size)


def test_sampling_conditions_on_the_pixels_already_drawn():
    # a model whose logit at (r, c) is large times (its left neighbour - 1/2): a run of one value
    model = PixelCNN(h=1, layers=1, first_kernel=3)
    for p in model.parameters():
        p.data[...] = 0
    model.input.weight.data[0, 0, 1, 0] = 1.0   # channel 0 copies the left neighbour
    model.output[1].weight.data[0, 0] = 1.0
    model.output[3].weight.data[0, 0] = 40.0
    model.output[3].bias.data[...] = -20.0
    x = model.sample(6, shape=(3, 5), rng=np.random.default_rng(0))
    np.testing.assert_array_equal(x[:, 0, :, 1:], x[:, 0, :, :1].repeat(4, axis=2))


# --- devices --------------------------------------------------------------------------------------
def test_nll_and_sampling_on_each_device_match_the_cpu(device):
    model = PixelCNN(h=2, layers=1)
    x = binary((3, 1, 10, 10)).astype(np.float32)
    cpu_nll = model.nll(mg.tensor(x)).data
    cpu_samples = model.sample(3, shape=(6, 6), rng=np.random.default_rng(4))
    model.to(device)
    on_device = model.nll(mg.tensor(mg.backend.to_device(x, device))).data
    np.testing.assert_allclose(mg.backend.as_numpy(on_device), cpu_nll, rtol=1e-4)
    samples = model.sample(3, shape=(6, 6), device=device, rng=np.random.default_rng(4))
    assert mg.backend.device_of(samples) == mg.backend.normalize_device(device)
    # the same uniforms: only a logit within rounding of a threshold could flip a pixel
    assert np.mean(mg.backend.as_numpy(samples) == cpu_samples) > 0.95
