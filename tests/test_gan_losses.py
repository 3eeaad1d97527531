"""minigan.gan.losses and minigan.gan.mlp: formulas against NumPy, stability at extreme logits,
exact gradients, the gradient penalty (values, gradients, second-order path, no .grad written),
weight clipping, PacGAN packing, and the MLP builders."""
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import minigan as mg
import minigan.functional as F
from minigan import gan, nn
from minigan.testing import gradcheck

logit_arrays = hnp.arrays(np.float64, st.tuples(st.integers(1, 8), st.just(1)),
                          elements=st.floats(-30.0, 30.0))


def _log_sigmoid(l):
    """log(1 / (1 + e^-l)) in NumPy, stable: -logaddexp(0, -l)."""
    return -np.logaddexp(0.0, -l)


# ------------------------------------------------------------------------------------------------
# Formulas
# ------------------------------------------------------------------------------------------------
@settings(max_examples=25, deadline=None)
@given(logit_arrays, logit_arrays)
def test_losses_match_their_formulas(real, fake):
    r, f = mg.tensor(real), mg.tensor(fake)
    # log D = log sigmoid(l), log(1 - D) = log sigmoid(-l)
    expected_d = -_log_sigmoid(real).mean() - _log_sigmoid(-fake).mean()
    assert gan.d_loss_minimax(r, f).item() == pytest.approx(expected_d, rel=1e-9, abs=1e-12)
    assert gan.discriminator_loss is gan.d_loss_minimax
    assert gan.g_loss_minimax(f).item() == pytest.approx(_log_sigmoid(-fake).mean(), rel=1e-9,
                                                         abs=1e-12)
    assert gan.g_loss_nonsaturating(f).item() == pytest.approx(-_log_sigmoid(fake).mean(),
                                                               rel=1e-9, abs=1e-12)
    assert gan.wasserstein_critic_loss(r, f).item() == pytest.approx(fake.mean() - real.mean())
    assert gan.wasserstein_generator_loss(f).item() == pytest.approx(-fake.mean())


def test_losses_at_chance():
    """D = 1/2 everywhere (logit 0): L_D = 2 log 2, L_G(minimax) = -log 2, L_G(ns) = log 2."""
    zero = mg.zeros(4, 1)
    assert gan.d_loss_minimax(zero, zero).item() == pytest.approx(2 * math.log(2), rel=1e-6)
    assert gan.g_loss_minimax(zero).item() == pytest.approx(-math.log(2), rel=1e-6)
    assert gan.g_loss_nonsaturating(zero).item() == pytest.approx(math.log(2), rel=1e-6)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_losses_finite_at_extreme_logits(dtype):
    """Logits of +-100 and +-1000 (a saturated discriminator) give exact, finite losses and
    gradients; computing sigmoid first would give log(0)."""
    l = np.array([[-1000.0], [-100.0], [100.0], [1000.0]], dtype=dtype)
    for fn in (gan.g_loss_minimax, gan.g_loss_nonsaturating,
               lambda x: gan.d_loss_minimax(x, x)):
        x = mg.tensor(l, requires_grad=True)
        loss = fn(x)
        loss.backward()
        assert np.isfinite(loss.item()) and np.all(np.isfinite(x.grad.numpy()))
    # confident and right: both terms ~0; confident and wrong: 100 per sample, exactly
    right = gan.d_loss_minimax(mg.tensor(np.full((2, 1), 100.0, dtype)),
                               mg.tensor(np.full((2, 1), -100.0, dtype)))
    wrong = gan.d_loss_minimax(mg.tensor(np.full((2, 1), -100.0, dtype)),
                               mg.tensor(np.full((2, 1), 100.0, dtype)))
    assert right.item() == pytest.approx(0.0, abs=1e-30) and right.dtype == dtype
    assert wrong.item() == pytest.approx(200.0, rel=1e-6)


@settings(max_examples=25, deadline=None)
@given(logit_arrays)
def test_generator_loss_gradients(l):
    """d/dl E[log(1 - sigmoid(l))] = -sigmoid(l)/N (vanishes as l -> -inf);
    d/dl -E[log sigmoid(l)] = -(1 - sigmoid(l))/N (tends to -1/N)."""
    n = l.size
    sig = 1.0 / (1.0 + np.exp(-l))
    x = mg.tensor(l, requires_grad=True)
    g_mm, = mg.grad(gan.g_loss_minimax(x), x)
    g_ns, = mg.grad(gan.g_loss_nonsaturating(x), x)
    one_minus_sig = 1.0 / (1.0 + np.exp(l))
    np.testing.assert_allclose(g_mm.numpy(), -sig / n, rtol=1e-9, atol=1e-300)
    # the engine forms sigmoid(l) - 1, exact up to one rounding of a number near 1
    np.testing.assert_allclose(g_ns.numpy(), -one_minus_sig / n, rtol=1e-9, atol=1e-15)


def test_minimax_gradient_saturates_at_rejected_samples():
    """At D(G(z)) = sigmoid(-10) ~ 4.5e-5 the minimax gradient is ~4.5e-5 of the
    non-saturating one."""
    x = mg.tensor(np.full((1, 1), -10.0), requires_grad=True)
    g_mm, = mg.grad(gan.g_loss_minimax(x), x)
    g_ns, = mg.grad(gan.g_loss_nonsaturating(x), x)
    assert abs(g_mm.item()) < 1e-4
    assert abs(g_ns.item()) > 0.999
    assert abs(g_mm.item() / g_ns.item()) == pytest.approx(math.exp(-10), rel=1e-3)


def test_losses_are_differentiable_again():
    """Second derivative of the minimax D loss in its fake logit: sigmoid'(l)/N."""
    l = mg.tensor(np.array([[0.3], [-1.2]]), requires_grad=True)
    g, = mg.grad(gan.d_loss_minimax(l.detach(), l), l, create_graph=True)
    gg, = mg.grad(g.sum(), l)
    s = 1 / (1 + np.exp(-l.numpy()))
    np.testing.assert_allclose(gg.numpy(), s * (1 - s) / 2, rtol=1e-9)


def test_loss_input_errors():
    with pytest.raises(TypeError, match="floating point"):
        gan.g_loss_nonsaturating(mg.tensor(np.array([[1]])))
    with pytest.raises(TypeError, match="floating point"):
        gan.d_loss_minimax(mg.tensor(np.array([[1]])), mg.zeros(1, 1))


# ------------------------------------------------------------------------------------------------
# Gradient penalty
# ------------------------------------------------------------------------------------------------
def test_gradient_penalty_of_linear_critic():
    """For f(x) = w.x + b the input gradient is w everywhere: GP = lam (||w|| - 1)^2, and its
    gradient in w is 2 lam (||w|| - 1) w / ||w||. No .grad is written by the penalty itself."""
    critic = nn.Linear(5, 1).double()
    real, fake = mg.randn(6, 5).double(), mg.randn(6, 5).double()
    gp = gan.gradient_penalty(critic, real, fake, lam=10.0)
    assert critic.weight.grad is None and critic.bias.grad is None
    w = critic.weight.numpy().reshape(-1)
    norm = np.linalg.norm(w)
    assert gp.item() == pytest.approx(10 * (norm - 1) ** 2, rel=1e-9)
    gp.backward()
    np.testing.assert_allclose(critic.weight.grad.numpy().reshape(-1),
                               20 * (norm - 1) * w / norm, rtol=1e-7)
    # b does not reach the input gradient: its gradient is zero (or absent)
    assert critic.bias.grad is None or np.all(critic.bias.grad.numpy() == 0)


def test_gradient_penalty_zero_for_unit_norm_critic():
    critic = nn.Linear(3, 1).double()
    critic.weight.data[...] = np.array([[0.6, 0.0, 0.8]])
    gp = gan.gradient_penalty(critic, mg.randn(4, 3).double(), mg.randn(4, 3).double())
    assert gp.item() == pytest.approx(0.0, abs=1e-10)


def test_gradient_penalty_interpolates_per_sample():
    """Critic f(x) = sum_j x_j^2 / 2 per sample: grad_x f = x_hat, so GP reveals x_hat.
    With real = 1 and fake = 0 everywhere, x_hat = eps (one eps per sample, in [0, 1]), and
    the per-sample norm over a (C, H, W) sample is eps * sqrt(C*H*W)."""
    class Square(nn.Module):
        def forward(self, x):
            return (x * x * 0.5).sum(axis=(1, 2, 3))

    shape = (64, 2, 3, 3)
    real, fake = mg.ones(*shape, dtype=np.float64), mg.zeros(*shape, dtype=np.float64)
    eps = np.random.default_rng(7).random((64, 1, 1, 1))
    gp = gan.gradient_penalty(Square(), real, fake, lam=1.0, rng=np.random.default_rng(7))
    expected = ((eps.reshape(-1) * math.sqrt(18) - 1) ** 2).mean()
    assert gp.item() == pytest.approx(expected, rel=1e-9)
    assert 0 <= eps.min() and eps.max() <= 1 and eps.std() > 0.1


def test_gradient_penalty_gradients_match_finite_differences():
    """The penalty goes through the critic's input gradient, so its parameter gradient needs the
    second-order path (create_graph=True) through tanh and linear layers."""
    rng = np.random.default_rng(3)
    weights = [mg.tensor(rng.standard_normal(s), requires_grad=True)
               for s in [(4, 3), (4,), (1, 4), (1,)]]
    real, fake = mg.randn(5, 3).double(), mg.randn(5, 3).double()

    def penalty(w1, b1, w2, b2):
        # gradcheck's finite differences run under no_grad; the penalty needs a graph
        with mg.enable_grad():
            critic = lambda x: F.linear(F.tanh(F.linear(x, w1, b1)), w2, b2)  # noqa: E731
            return gan.gradient_penalty(critic, real, fake, lam=3.0, rng=123)

    assert gradcheck(penalty, weights, atol=1e-6, rtol=1e-5)


def test_gradient_penalty_leaves_critic_grads_alone():
    critic = gan.mlp_discriminator(4, (8,), slope=0.2)
    marker = [mg.tensor(np.full(p.shape, 7.0, np.float32)) for p in critic.parameters()]
    for p, m in zip(critic.parameters(), marker):
        p.grad = m
    gan.gradient_penalty(critic, mg.randn(3, 4), mg.randn(3, 4))
    for p, m in zip(critic.parameters(), marker):
        assert p.grad is m and np.all(p.grad.numpy() == 7.0)


def test_gradient_penalty_input_errors():
    critic = nn.Linear(3, 1)
    with pytest.raises(ValueError, match="real batch has shape"):
        gan.gradient_penalty(critic, mg.randn(4, 3), mg.randn(5, 3))
    with pytest.raises(ValueError, match="at least 2 dimensions"):
        gan.gradient_penalty(critic, mg.randn(3), mg.randn(3))


# ------------------------------------------------------------------------------------------------
# Weight clipping, packing, MLP builders
# ------------------------------------------------------------------------------------------------
def test_clip_weights():
    critic = gan.mlp_discriminator(4, (8,))
    for p in critic.parameters():
        p.data[...] = np.linspace(-0.05, 0.05, p.data.size).reshape(p.shape)
    before = [(p, p.numpy().copy()) for p in critic.parameters()]
    assert gan.clip_weights_(critic, 0.01) is critic
    for (p, values), q in zip(before, critic.parameters()):
        assert p is q
        np.testing.assert_array_equal(p.numpy(), np.clip(values, np.float32(-0.01),
                                                         np.float32(0.01)))
    assert before[0][0].numpy().min() == np.float32(-0.01)
    with pytest.raises(ValueError, match="c must be > 0"):
        gan.clip_weights_(critic, 0)
    with pytest.raises(TypeError, match="nn.Module"):
        gan.clip_weights_([mg.zeros(2)], 0.1)


@settings(max_examples=20, deadline=None)
@given(st.integers(1, 4), st.integers(1, 4), st.integers(1, 3), st.integers(1, 3))
def test_pack_concatenates_m_samples_along_channels(groups, m, c, hw):
    n = groups * m
    x = np.arange(n * c * hw * hw, dtype=np.float64).reshape(n, c, hw, hw)
    packed = gan.pack(mg.tensor(x), m)
    expected = np.stack([np.concatenate([x[g * m + k] for k in range(m)], axis=0)
                         for g in range(groups)])
    assert packed.shape == (groups, m * c, hw, hw)
    np.testing.assert_array_equal(packed.numpy(), expected)
    flat = gan.pack(mg.tensor(x.reshape(n, -1)), m)
    np.testing.assert_array_equal(flat.numpy(), expected.reshape(groups, -1))


def test_pack_gradient_and_errors():
    x = mg.randn(6, 2, requires_grad=True)
    (gan.pack(x, 3) * mg.tensor(np.arange(12.0, dtype=np.float32).reshape(2, 6))).sum().backward()
    np.testing.assert_array_equal(x.grad.numpy(), np.arange(12.0).reshape(6, 2))
    with pytest.raises(ValueError, match="batch size 6 is not divisible .* m=4"):
        gan.pack(x, 4)
    with pytest.raises(ValueError, match="m must be >= 1"):
        gan.pack(x, 0)
    with pytest.raises(ValueError, match="at least 2 dimensions"):
        gan.pack(mg.randn(6), 2)


def test_mlp_builders():
    G = gan.mlp_generator(100, (256, 512), 784)
    D = gan.mlp_discriminator(784, (512, 256), slope=0.2)
    kinds = [type(m).__name__ for m in G]
    assert kinds == ["Linear", "ReLU", "Linear", "ReLU", "Linear", "Tanh"]
    assert [type(m).__name__ for m in D] == ["Linear", "LeakyReLU", "Linear", "LeakyReLU",
                                             "Linear"]
    assert D[1].negative_slope == 0.2
    z = mg.randn(3, 100)
    x = G(z)
    assert x.shape == (3, 784) and x.dtype == np.float32 and np.abs(x.numpy()).max() <= 1
    assert D(x).shape == (3, 1)
    assert sum(p.numel() for p in G.parameters()) == 100 * 256 + 256 + 256 * 512 + 512 + \
        512 * 784 + 784
    with pytest.raises(ValueError, match="unknown activation"):
        gan.mlp([2, 3, 1], activation="swish")
    with pytest.raises(ValueError, match="at least an input and an output"):
        gan.mlp([2])
