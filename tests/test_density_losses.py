"""The VAE's terms: the analytic KL against a Monte-Carlo estimate, gradients through the
reparameterised sample, the Bernoulli NLL against its formula, the ELBO of a decoder that says
0.5 everywhere, and the VAE model around them."""
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import minigan as mg
from minigan import nn
from minigan.density import (VAE, Decoder, bernoulli_nll, binarize, decode_mean,
                             heldout_importance_nll,
                             decoder_from_spec, gaussian_kl, heldout_negative_elbo,
                             nats_to_bits_per_dim, negative_elbo, reparameterize)
from minigan.testing import gradcheck, gradgradcheck

from strategies import arrays

EXAMPLES = settings(max_examples=10, deadline=None)
LOG2_784 = 784 * math.log(2.0)


def leaf(a):
    return mg.tensor(np.asarray(a, dtype=np.float64), requires_grad=True)


def const(a):
    return mg.tensor(np.asarray(a, dtype=np.float64))


# --- KL -----------------------------------------------------------------------------------------
def test_kl_closed_form_matches_monte_carlo():
    rng = np.random.default_rng(0)
    mu = rng.normal(0.0, 1.0, (3, 4))
    logvar = rng.normal(0.0, 0.7, (3, 4))
    kl = gaussian_kl(const(mu), const(logvar)).data
    # E_q[log q(z) - log p(z)] with z ~ q: the definition, no closed form used
    n = 200_000
    sigma = np.exp(0.5 * logvar)
    eps = rng.standard_normal((n, 3, 4))
    z = mu + sigma * eps
    log_q = (-0.5 * eps ** 2 - np.log(sigma) - 0.5 * np.log(2 * np.pi)).sum(axis=2)
    log_p = (-0.5 * z ** 2 - 0.5 * np.log(2 * np.pi)).sum(axis=2)
    samples = log_q - log_p
    estimate, stderr = samples.mean(axis=0), samples.std(axis=0) / math.sqrt(n)
    assert np.all(np.abs(kl - estimate) < 5 * stderr), (kl, estimate, stderr)
    assert np.all(stderr < 0.02)   # the check has teeth: a 5 % error in KL would fail it


def test_kl_is_zero_only_at_the_prior():
    zero = gaussian_kl(const(np.zeros((2, 5))), const(np.zeros((2, 5)))).data
    np.testing.assert_array_equal(zero, [0.0, 0.0])
    # one dimension off: KL = (mu^2 + s^2 - 1 - log s^2) / 2, by hand for mu = 1, s^2 = e
    mu, logvar = np.zeros((1, 5)), np.zeros((1, 5))
    mu[0, 2], logvar[0, 2] = 1.0, 1.0
    np.testing.assert_allclose(gaussian_kl(const(mu), const(logvar)).data,
                               [(1.0 + math.e - 1.0 - 1.0) / 2], rtol=1e-14)


@EXAMPLES
@given(data=st.data())
def test_kl_gradients(data):
    n, k = data.draw(st.integers(1, 3)), data.draw(st.integers(1, 4))
    mu, logvar = data.draw(arrays((n, k))), data.draw(arrays((n, k)))
    assert gradcheck(gaussian_kl, [leaf(mu), leaf(logvar)])
    assert gradgradcheck(gaussian_kl, [leaf(mu), leaf(logvar)])


def test_kl_rejects_mismatched_shapes():
    with pytest.raises(ValueError, match=r"\(2, 3\) and \(2, 4\)"):
        gaussian_kl(const(np.zeros((2, 3))), const(np.zeros((2, 4))))


# --- the reparameterised sample ------------------------------------------------------------------
@EXAMPLES
@given(data=st.data())
def test_gradcheck_through_the_reparameterised_sample(data):
    n, k = data.draw(st.integers(1, 3)), data.draw(st.integers(1, 3))
    mu, logvar, eps = (data.draw(arrays((n, k))) for _ in range(3))
    w = data.draw(arrays((k, 4)))
    x = data.draw(arrays((n, 4), 0.0, 1.0))
    eps_t, w_t, x_t = const(eps), const(w), const(x)

    def sample(m, lv):
        return reparameterize(m, lv, eps_t)

    def elbo(m, lv):   # a linear decoder on the sample: the path a VAE's gradient takes
        return negative_elbo(reparameterize(m, lv, eps_t) @ w_t, x_t, m, lv)

    for fn in (sample, elbo):
        assert gradcheck(fn, [leaf(mu), leaf(logvar)])
        assert gradgradcheck(fn, [leaf(mu), leaf(logvar)])


def test_reparameterised_sample_has_the_posterior_moments():
    mu = np.array([[0.5, -2.0, 3.0]])
    logvar = np.array([[0.0, 1.0, -2.0]])
    n = 40_000
    z = reparameterize(const(np.repeat(mu, n, 0)), const(np.repeat(logvar, n, 0))).data
    stderr = np.exp(0.5 * logvar[0]) / math.sqrt(n)
    assert np.all(np.abs(z.mean(axis=0) - mu[0]) < 4 * stderr)
    np.testing.assert_allclose(z.var(axis=0), np.exp(logvar[0]), rtol=0.05)


def test_reparameterize_draws_from_the_seeded_cpu_generator():
    mu = const(np.zeros((4, 3)))
    mg.manual_seed(7)
    a = reparameterize(mu, mu).data
    mg.manual_seed(7)
    np.testing.assert_array_equal(reparameterize(mu, mu).data, a)
    with pytest.raises(ValueError, match=r"eps has shape \(4, 2\)"):
        reparameterize(mu, mu, np.zeros((4, 2)))


# --- Bernoulli NLL and the ELBO -------------------------------------------------------------------
@EXAMPLES
@given(data=st.data())
def test_bernoulli_nll_value_and_gradient(data):
    n, k = data.draw(st.integers(1, 3)), data.draw(st.integers(1, 5))
    logits = data.draw(arrays((n, 1, k), -6.0, 6.0))
    x = data.draw(arrays((n, 1, k), 0.0, 1.0))
    p = 1 / (1 + np.exp(-logits))
    expected = -(x * np.log(p) + (1 - x) * np.log(1 - p)).sum(axis=(1, 2))
    np.testing.assert_allclose(bernoulli_nll(const(logits), const(x)).data, expected, rtol=1e-10)
    assert gradcheck(lambda l: bernoulli_nll(l, const(x)), [leaf(logits)])


def test_bernoulli_nll_rejects_non_binary_pixels_and_shapes():
    with pytest.raises(ValueError, match=r"\[0, 1\].*-1\.0"):
        bernoulli_nll(const(np.zeros((2, 3))), const(-np.ones((2, 3))))
    with pytest.raises(ValueError, match=r"\(2, 3\) and images \(2, 4\)"):
        bernoulli_nll(const(np.zeros((2, 3))), const(np.zeros((2, 4))))


def test_elbo_of_a_half_decoder_is_784_log_2_plus_kl():
    rng = np.random.default_rng(1)
    x = (rng.random((5, 1, 28, 28)) < 0.3).astype(np.float64)
    mu, logvar = rng.normal(size=(5, 8)), rng.normal(size=(5, 8))
    value = negative_elbo(const(np.zeros_like(x)), const(x), const(mu), const(logvar)).data
    np.testing.assert_allclose(value, LOG2_784 + gaussian_kl(const(mu), const(logvar)).data,
                               rtol=1e-13)


def test_vae_whose_decoder_says_half_pays_784_log_2_plus_kl():
    mg.set_default_dtype(np.float64)
    vae = VAE(nz=4, ngf=4, ndf=4)
    last = vae.decoder.net[-1]
    nn.init.zeros_(last.weight)
    nn.init.zeros_(last.bias)     # logits 0: p = 0.5 for every pixel, whatever z is
    x = const((np.random.default_rng(2).random((3, 1, 28, 28)) < 0.5).astype(np.float64))
    eps = const(np.random.default_rng(3).standard_normal((3, 4)))
    terms = vae.loss(x, eps)
    mu, logvar = vae.encoder(x)
    np.testing.assert_allclose(terms.reconstruction.item(), LOG2_784, rtol=1e-13)
    np.testing.assert_allclose(terms.loss.item(),
                               LOG2_784 + gaussian_kl(mu, logvar).data.mean(), rtol=1e-13)
    assert nats_to_bits_per_dim(LOG2_784) == pytest.approx(1.0)


# --- the model ------------------------------------------------------------------------------------
def test_vae_shapes_gradients_and_errors():
    vae = VAE(nz=5, ngf=4, ndf=4)
    x = mg.tensor(binarize(np.random.default_rng(0).integers(0, 256, (2, 28, 28), dtype=np.uint8)))
    out = vae(x)
    assert out.logits.shape == (2, 1, 28, 28) and out.mu.shape == out.logvar.shape == (2, 5)
    vae.loss(x).loss.backward()
    assert all(p.grad is not None and np.isfinite(p.grad.data).all() for p in vae.parameters())
    with pytest.raises(ValueError, match=r"\(N, 1, 28, 28\), got \(2, 1, 14, 14\)"):
        vae(mg.zeros(2, 1, 14, 14))
    with pytest.raises(ValueError, match=r"\(N, 5\), got \(2, 3\)"):
        vae.decoder(mg.zeros(2, 3))


def test_decoder_spec_rebuilds_the_decoder():
    vae = VAE(nz=6, ngf=3, ndf=2)
    rebuilt = decoder_from_spec(vae.decoder.spec())
    rebuilt.load_state_dict(vae.decoder.state_dict())
    z = mg.randn(4, 6)
    np.testing.assert_array_equal(decode_mean(rebuilt, z), decode_mean(vae.decoder, z))
    assert decode_mean(rebuilt, z).min() >= 0 and decode_mean(rebuilt, z).max() <= 1
    with pytest.raises(ValueError, match="expected a minigan.density.vae.Decoder spec"):
        decoder_from_spec({"class": "minigan.gan.models.Generator", "kwargs": {}})
    assert isinstance(rebuilt, Decoder)


def test_heldout_negative_elbo_is_deterministic_and_leaves_the_training_noise():
    vae = VAE(nz=3, ngf=2, ndf=2)
    x = binarize(np.random.default_rng(0).integers(0, 256, (7, 28, 28), dtype=np.uint8))
    state = mg.backend.get_rng_state()
    a = heldout_negative_elbo(vae, x, batch_size=3)
    assert mg.backend.get_rng_state() == state and vae.training
    b = heldout_negative_elbo(vae, x, batch_size=7)
    assert a["neg_elbo"] == pytest.approx(b["neg_elbo"], rel=1e-5)
    assert a["neg_elbo"] == pytest.approx(a["reconstruction"] + a["kl"])


def test_binarize():
    images = np.array([[[0, 127], [128, 255]]], dtype=np.uint8)
    np.testing.assert_array_equal(binarize(images), [[[[0, 0], [1, 1]]]])
    with pytest.raises(TypeError, match="uint8"):
        binarize(images.astype(np.float32))


def test_importance_weighted_nll_of_a_half_decoder_tends_to_784_log_2():
    # p(x | z) = 2^-784 for every z, so p(x) = 2^-784 exactly; the bound's excess over it is
    # -log mean_i p(z_i) / q(z_i | x), which shrinks as k grows, while -ELBO stays 784 log 2 + KL
    mg.set_default_dtype(np.float64)
    vae = VAE(nz=2, ngf=2, ndf=2)
    last = vae.decoder.net[-1]
    nn.init.zeros_(last.weight)
    nn.init.zeros_(last.bias)
    vae.encoder.net[-1].bias.data[...] = [1.0, -1.0, 0.5, -0.5]   # a posterior away from N(0, I)
    x = (np.random.default_rng(4).random((6, 1, 28, 28)) < 0.5).astype(np.float64)
    elbo = heldout_negative_elbo(vae, x)
    one = heldout_importance_nll(vae, x, k=1, batch_size=4)
    many = heldout_importance_nll(vae, x, k=400, batch_size=4)
    assert elbo["neg_elbo"] - LOG2_784 == pytest.approx(elbo["kl"]) and elbo["kl"] > 0.5
    assert one == pytest.approx(elbo["neg_elbo"], abs=elbo["kl"])   # k = 1: an ELBO sample
    assert LOG2_784 - 0.02 < many < LOG2_784 + 0.1 * elbo["kl"] < one
