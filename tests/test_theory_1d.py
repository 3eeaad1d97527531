"""GAN theory, first proof of life, on 1-D Gaussians (Goodfellow et al., 2014, Prop. 1, Thm. 1).

* With p_g fixed and known, a discriminator trained on samples approaches
  D*(x) = p_data(x) / (p_data(x) + p_g(x)).
* V(G, D*) = -log 4 + 2 JSD(p_data || p_g), and -log 4 exactly when p_g = p_data. The left side
  is computed through D* with minigan's ops, the right side independently here, by quadrature of
  the two KL integrals in NumPy.
* A full 1-D GAN (MLP generator and discriminator) learns the data's mean and std within 10%,
  with the minimax and the non-saturating generator losses.
* Why the non-saturating loss is used: where D(G(z)) is near 0, the minimax loss's gradient
  vanishes and the non-saturating one's does not.
"""
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import minigan as mg
from examples import gan_1d
from minigan import gan, nn

LOG4 = math.log(4.0)
means = st.floats(-1.0, 1.0)
stds = st.floats(0.5, 2.0)


def jsd_by_quadrature(mu_p, s_p, mu_q, s_q, n=40001, width=14.0):
    """JSD(p || q) = KL(p || m)/2 + KL(q || m)/2, m = (p + q)/2, for two Gaussians, by the
    trapezoid rule on a uniform grid; written here in NumPy, apart from the code under test."""
    lo = min(mu_p - width * s_p, mu_q - width * s_q)
    hi = max(mu_p + width * s_p, mu_q + width * s_q)
    x = np.linspace(lo, hi, n)
    p = np.exp(-0.5 * ((x - mu_p) / s_p) ** 2) / (s_p * np.sqrt(2 * np.pi))
    q = np.exp(-0.5 * ((x - mu_q) / s_q) ** 2) / (s_q * np.sqrt(2 * np.pi))
    m = 0.5 * (p + q)

    def kl(a):
        safe = a > 0          # 0 log 0 = 0 far in the tails, where the densities underflow
        integrand = np.zeros_like(a)
        integrand[safe] = a[safe] * np.log(a[safe] / m[safe])
        return np.trapezoid(integrand, x)

    return 0.5 * kl(p) + 0.5 * kl(q)


def d_star(x, data, model):
    return 1.0 / (1.0 + np.exp(-gan_1d.optimal_logit(x, data, model)))


# ------------------------------------------------------------------------------------------------
# The optimal discriminator
# ------------------------------------------------------------------------------------------------
@settings(max_examples=5, deadline=None)
@given(means, stds, means, stds, st.integers(0, 2 ** 16))
def test_trained_discriminator_approaches_optimal(mu_d, s_d, mu_g, s_g, seed):
    rng = np.random.default_rng(seed)
    x_data, x_g = rng.normal(mu_d, s_d, 3000), rng.normal(mu_g, s_g, 3000)
    D = gan_1d.fit_discriminator(x_data, x_g, steps=300, lr=0.1)
    lo, hi = min(mu_d - 2 * s_d, mu_g - 2 * s_g), max(mu_d + 2 * s_d, mu_g + 2 * s_g)
    x = np.linspace(lo, hi, 401)
    mae = np.abs(gan_1d.discriminator_probability(D, x) - d_star(x, (mu_d, s_d), (mu_g, s_g)))
    assert mae.mean() < 0.05, (mae.mean(), D.coef.data)


def test_untrained_discriminator_is_far_from_optimal():
    """The check above can fail: a discriminator that did not learn (D = 1/2) misses D*."""
    x = np.linspace(-2.0, 3.0, 401)
    untrained = gan_1d.QuadraticDiscriminator()
    mae = np.abs(gan_1d.discriminator_probability(untrained, x) - d_star(x, (1, 0.5), (0, 1)))
    assert mae.mean() > 0.2


@pytest.mark.slow
@pytest.mark.parametrize("pair", [((0.0, 1.0), (1.0, 1.0)), ((-1.0, 0.5), (1.0, 2.0)),
                                  ((0.0, 0.5), (0.0, 2.0))])
def test_mlp_discriminator_approaches_optimal(pair):
    (mu_d, s_d), (mu_g, s_g) = pair
    rng = np.random.default_rng(0)
    x_data, x_g = rng.normal(mu_d, s_d, 2000), rng.normal(mu_g, s_g, 2000)
    model = gan.mlp_discriminator(1, (32, 32), activation="tanh")
    D = gan_1d.fit_discriminator(x_data, x_g, model=model, steps=1500, lr=5e-3)
    lo, hi = min(mu_d - 2 * s_d, mu_g - 2 * s_g), max(mu_d + 2 * s_d, mu_g + 2 * s_g)
    x = np.linspace(lo, hi, 401)
    mae = np.abs(gan_1d.discriminator_probability(D, x) - d_star(x, (mu_d, s_d), (mu_g, s_g)))
    assert mae.mean() < 0.05


# ------------------------------------------------------------------------------------------------
# The value function at the optimum
# ------------------------------------------------------------------------------------------------
@settings(max_examples=25, deadline=None)
@given(means, stds, means, stds)
def test_value_at_optimum_is_minus_log4_plus_2jsd(mu_d, s_d, mu_g, s_g):
    data, model = (mu_d, s_d), (mu_g, s_g)
    v = gan_1d.value_by_quadrature(lambda x: gan_1d.optimal_logit(x, data, model), data, model)
    jsd = jsd_by_quadrature(mu_d, s_d, mu_g, s_g)
    assert 0.0 <= jsd <= math.log(2) + 1e-9
    assert v == pytest.approx(-LOG4 + 2 * jsd, abs=1e-6)


@settings(max_examples=10, deadline=None)
@given(means, stds)
def test_value_is_minus_log4_when_generator_matches(mu, s):
    v = gan_1d.value_by_quadrature(lambda x: gan_1d.optimal_logit(x, (mu, s), (mu, s)),
                                   (mu, s), (mu, s))
    assert v == pytest.approx(-LOG4, abs=1e-9)
    assert jsd_by_quadrature(mu, s, mu, s) == pytest.approx(0.0, abs=1e-12)


def test_value_above_minus_log4_when_generator_differs():
    data, model = (0.0, 1.0), (1.0, 1.0)
    v = gan_1d.value_by_quadrature(lambda x: gan_1d.optimal_logit(x, data, model), data, model)
    assert v > -LOG4 + 0.1


@settings(max_examples=10, deadline=None)
@given(means, stds, means, stds, st.floats(-2.0, 2.0), st.floats(-0.5, 0.5))
def test_optimal_discriminator_maximises_value(mu_d, s_d, mu_g, s_g, shift, tilt):
    """V(G, D) <= V(G, D*) for any other D: here D* with its logit shifted and tilted."""
    data, model = (mu_d, s_d), (mu_g, s_g)
    best = gan_1d.value_by_quadrature(lambda x: gan_1d.optimal_logit(x, data, model), data, model)
    other = gan_1d.value_by_quadrature(
        lambda x: gan_1d.optimal_logit(x, data, model) + shift + tilt * x, data, model)
    assert other <= best + 1e-9


# ------------------------------------------------------------------------------------------------
# A full 1-D GAN
# ------------------------------------------------------------------------------------------------
def _assert_learned(G, seed, tolerance=0.10):
    mean, std = gan_1d.sample_stats(G, np.random.default_rng(seed + 1000))
    assert abs(mean / gan_1d.DATA_MEAN - 1) < tolerance, (mean, std)
    assert abs(std / gan_1d.DATA_STD - 1) < tolerance, (mean, std)


@pytest.mark.parametrize("loss", ["nonsaturating", "minimax"])
def test_gan_learns_mean_and_std(loss):
    G, _, _ = gan_1d.train_gan(steps=1200, seed=0, loss=loss, lr_g=1e-3, lr_d=2e-3)
    _assert_learned(G, 0)


def test_generator_starts_far_from_data():
    """The check above can fail: the same generator before training is far off."""
    G, _, _ = gan_1d.train_gan(steps=0, seed=0)
    with pytest.raises(AssertionError):
        _assert_learned(G, 0)


@pytest.mark.slow
@pytest.mark.parametrize("loss", ["nonsaturating", "minimax"])
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_gan_learns_mean_and_std_longer(loss, seed):
    G, _, _ = gan_1d.train_gan(steps=3000, seed=seed, loss=loss, hidden=32, lr_g=5e-4,
                               lr_d=1e-3)
    _assert_learned(G, seed)


# ------------------------------------------------------------------------------------------------
# Why the non-saturating loss
# ------------------------------------------------------------------------------------------------
def test_minimax_gradient_vanishes_where_nonsaturating_does_not():
    """A generator whose samples sit near 0, far from the data N(4, 1.25^2), against a
    discriminator trained to reject them (D(G(z)) ~ 1e-3): the minimax loss gives the generator
    almost no gradient, the non-saturating loss a large one."""
    rng = np.random.default_rng(0)
    G = nn.Linear(1, 1)
    G.weight.data[...] = 0.1
    G.bias.data[...] = 0.0
    z = mg.tensor(rng.standard_normal((512, 1)).astype(np.float32))
    with mg.no_grad():
        fake = G(z).numpy().reshape(-1)
    D = gan_1d.fit_discriminator(rng.normal(gan_1d.DATA_MEAN, gan_1d.DATA_STD, 2000), fake)
    d_fake = gan_1d.discriminator_probability(D, fake)
    assert d_fake.mean() < 0.01

    def generator_grad_norm(loss_fn):
        G.zero_grad()
        loss_fn(D(G(z))).backward()
        return math.sqrt(sum(float((p.grad.data.astype(np.float64) ** 2).sum())
                             for p in G.parameters()))

    minimax, nonsaturating = (generator_grad_norm(gan.g_loss_minimax),
                              generator_grad_norm(gan.g_loss_nonsaturating))
    assert nonsaturating > 0.1
    assert minimax < 0.02 * nonsaturating, (minimax, nonsaturating)
