"""WGAN theory at small sizes: a critic trained with the gradient penalty estimates the
Wasserstein-1 distance of two 1-D Gaussians; the penalty's closed form for linear critics; and the
second-order gradients the penalty needs, checked through MLP and conv critics."""
import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

import minigan as mg
import minigan.functional as F
from minigan import nn, optim
from minigan.gan import losses
from minigan.gan.mlp import mlp_discriminator
from minigan.testing import gradcheck, gradgradcheck


# --- the critic's estimate approaches W1 ----------------------------------------------------------

def estimate_w1(m1, m2, s, lam=10.0, steps=400, batch=256, seed=0):
    """Train an MLP critic on samples of N(m1, s^2) ("real") and N(m2, s^2) ("fake") with WGAN-GP's
    critic loss, then return its estimate E_p f - E_q f on fresh samples.

    The output layer starts at zero, so f = 0 and the penalty's gradient vanishes at the start
    (the norm of a zero gradient has a zero derivative here): the first steps follow the
    Wasserstein term alone and give f' the right sign. In one dimension the penalty would
    otherwise keep whatever sign a random initialisation gave f': turning f' = -1 into +1 passes
    f' = 0, where the penalty is lam, more than the Wasserstein term gains (2 |m1 - m2|)."""
    mg.manual_seed(seed)
    rng = np.random.default_rng(seed)
    critic = mlp_discriminator(in_dim=1, hidden=(32, 32))
    last = critic[len(critic) - 1]
    nn.init.zeros_(last.weight)
    nn.init.zeros_(last.bias)
    opt = optim.Adam(critic.parameters(), lr=2e-3, betas=(0.5, 0.9))

    def samples(m, n):
        return mg.Tensor((m + s * rng.standard_normal((n, 1))).astype(np.float32))

    for _ in range(steps):
        real, fake = samples(m1, batch), samples(m2, batch)
        loss = losses.wasserstein_critic_loss(critic(real), critic(fake))
        loss = loss + losses.gradient_penalty(critic, real, fake, lam=lam, rng=rng)
        opt.zero_grad()
        loss.backward()
        opt.step()
    with mg.no_grad():
        n = 20000   # the estimate's sampling error is about s * sqrt(2 / n) = 0.01 s
        return float(critic(samples(m1, n)).data.mean() - critic(samples(m2, n)).data.mean())


# The penalty is soft: the critic trades some of it for a larger difference of means. For a
# linear critic f = a x the objective a d - lam (a - 1)^2 (d = m1 - m2) peaks at
# a = 1 + d / (2 lam), an overshoot of d / (2 lam) (5% for d = 1, lam = 10); the cases keep it
# within the tolerance.
@pytest.mark.parametrize("m1, m2, s, lam", [(0.0, 1.0, 1.0, 10.0), (1.0, 0.25, 0.5, 10.0),
                                            (-1.0, 1.0, 1.0, 40.0)])
def test_gp_critic_estimate_approaches_the_wasserstein_distance(m1, m2, s, lam):
    # For equal spreads W1(N(m1, s^2), N(m2, s^2)) = |m1 - m2|, attained by f(x) = sign(m1 - m2) x,
    # whose gradient norm is 1 everywhere.
    assert estimate_w1(m1, m2, s, lam) == pytest.approx(abs(m1 - m2), rel=0.10)


def test_the_soft_penalty_lets_the_estimate_overshoot_as_predicted():
    """No 1-Lipschitz critic can exceed W1 (Kantorovich-Rubinstein); the penalised one does, by
    about the linear critic's d^2 / (2 lam): 2.2 for d = 2, lam = 10."""
    d, lam = 2.0, 10.0
    assert estimate_w1(0.0, d, 1.0, lam) == pytest.approx(d + d * d / (2 * lam), rel=0.05)


# --- the penalty in closed form -------------------------------------------------------------------

class LinearCritic(nn.Module):
    """f(x) = <w, x> per sample, for inputs of any shape (N, ...) with w of shape (...)."""

    def __init__(self, w):
        super().__init__()
        self.w = nn.Parameter(np.asarray(w, dtype=np.float64))

    def forward(self, x):
        axes = tuple(range(1, x.ndim))
        return F.sum(x * self.w, axis=axes)


def random_batches(shape, seed):
    rng = np.random.default_rng(seed)
    return mg.Tensor(rng.standard_normal(shape)), mg.Tensor(rng.standard_normal(shape))


@settings(max_examples=20, deadline=None)
@given(shape=st.sampled_from([(5, 3), (4, 1, 3, 3), (2, 7)]), norm=st.floats(0.05, 4.0),
       lam=st.floats(0.1, 20.0), seed=st.integers(0, 2 ** 16))
@example(shape=(5, 3), norm=1.0, lam=2.0, seed=0)  # a unit-norm critic: only the constant is left
def test_penalty_of_a_linear_critic_is_lam_times_norm_minus_one_squared(shape, norm, lam, seed):
    # grad_x <w, x> = w at every point, so GP = lam (||w|| - 1)^2 whatever the interpolation
    # points, and its gradient with respect to w is 2 lam (||w|| - 1) w / ||w||, where the
    # penalty's norm is sqrt(||w||^2 + 1e-12) (the constant that keeps sqrt differentiable at 0:
    # at ||w|| = 1 it alone leaves a gradient of ~1e-12 * lam).
    w = np.random.default_rng(seed + 1).standard_normal(shape[1:])
    w *= norm / np.linalg.norm(w)
    critic = LinearCritic(w)
    real, fake = random_batches(shape, seed)
    gp = losses.gradient_penalty(critic, real, fake, lam=lam, rng=seed)
    smooth = np.sqrt(norm ** 2 + 1e-12)
    assert gp.item() == pytest.approx(lam * (smooth - 1) ** 2, rel=1e-9, abs=1e-12)
    gp.backward()
    np.testing.assert_allclose(critic.w.grad.data, 2 * lam * (smooth - 1) * w / smooth,
                               rtol=1e-9, atol=1e-13)


@pytest.mark.parametrize("shape", [(6, 4), (3, 2, 5, 5)])
def test_penalty_is_zero_for_a_unit_slope_linear_critic(shape):
    w = np.random.default_rng(0).standard_normal(shape[1:])
    critic = LinearCritic(w / np.linalg.norm(w))
    real, fake = random_batches(shape, 1)
    gp = losses.gradient_penalty(critic, real, fake, lam=10.0)
    assert gp.item() == pytest.approx(0.0, abs=1e-20)
    gp.backward()
    np.testing.assert_allclose(critic.w.grad.data, 0.0, atol=1e-9)


def test_penalty_uses_the_norm_over_all_non_batch_axes():
    """One sample's gradient spread over (C, H, W) has norm sqrt(sum w^2), not a per-axis norm:
    w = 0.5 everywhere on (1, 2, 2) has norm 1, so the penalty vanishes."""
    critic = LinearCritic(np.full((1, 2, 2), 0.5))
    real, fake = random_batches((3, 1, 2, 2), 2)
    assert losses.gradient_penalty(critic, real, fake).item() == pytest.approx(0.0, abs=1e-15)


# --- second-order gradients through critics -------------------------------------------------------

def mlp_critic(x, w1, b1, w2, b2):
    return F.linear(F.leaky_relu(F.linear(x, w1, b1), 0.2), w2, b2)


def conv_critic(x, k1, c1, k2):
    """(N, 1, 6, 6) -> Conv(1, 2, 3, stride 2, pad 1) LeakyReLU -> (N, 2, 3, 3) -> Conv(2, 1, 3)."""
    h = F.leaky_relu(F.conv2d(x, k1, c1, stride=2, padding=1), 0.2)
    return F.reshape(F.conv2d(h, k2), (x.shape[0],))


def leaves(rng, *shapes):
    return [mg.Tensor(0.7 * rng.standard_normal(s), requires_grad=True) for s in shapes]


CRITICS = {
    "mlp": (mlp_critic, (3, 4), [(5, 4), (5,), (1, 5), (1,)]),
    "conv": (conv_critic, (2, 1, 6, 6), [(2, 1, 3, 3), (2,), (1, 2, 3, 3)]),
}


@pytest.mark.parametrize("name", sorted(CRITICS))
def test_penalty_gradient_with_respect_to_critic_parameters(name):
    """d GP / d params goes through grad_x f, i.e. second derivatives of the critic (in x, then
    in its parameters): compare with finite differences of the penalty itself."""
    critic, x_shape, param_shapes = CRITICS[name]
    rng = np.random.default_rng(3)
    real, fake = (mg.Tensor(rng.standard_normal(x_shape)) for _ in range(2))
    params = leaves(rng, *param_shapes)

    def penalty(*ps):
        with mg.enable_grad():   # gradcheck's finite differences run under no_grad
            return losses.gradient_penalty(lambda x: critic(x, *ps), real, fake, lam=10.0, rng=7)

    assert gradcheck(penalty, params)


@pytest.mark.parametrize("name", sorted(CRITICS))
def test_critic_passes_gradgradcheck_in_input_and_parameters(name):
    critic, x_shape, param_shapes = CRITICS[name]
    rng = np.random.default_rng(4)
    x = mg.Tensor(rng.standard_normal(x_shape), requires_grad=True)
    assert gradgradcheck(critic, [x, *leaves(rng, *param_shapes)])


def test_mlp_penalty_passes_gradgradcheck():
    """Third order: the penalty's own gradient in the critic's parameters is differentiable."""
    critic, x_shape, param_shapes = CRITICS["mlp"]
    rng = np.random.default_rng(5)
    real, fake = (mg.Tensor(rng.standard_normal(x_shape)) for _ in range(2))

    def penalty(*ps):
        with mg.enable_grad():
            return losses.gradient_penalty(lambda x: critic(x, *ps), real, fake, lam=10.0, rng=7)

    assert gradgradcheck(penalty, leaves(rng, *param_shapes))
