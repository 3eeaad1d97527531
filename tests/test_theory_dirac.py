"""The Dirac-GAN (Mescheder, Geiger & Nowozin, 2018, "Which training methods for GANs do
actually converge?", section 2), computed with minigan's own autograd and losses.

Data p_D = delta_0, generator p_theta = delta_theta, discriminator D_psi(x) = psi * x (a
bias-free Linear(1, 1)). With minigan's logit convention, D's loss and G's (minimax) loss are

    L_D(theta, psi) = softplus(-D(0)) + softplus(D(theta)) = log 2 + softplus(psi theta)
    L_G(theta, psi) = -softplus(psi theta)

and simultaneous gradient descent follows the vector field
v(theta, psi) = (-dL_G/dtheta, -dL_D/dpsi) = (sigmoid(psi theta) psi, -sigmoid(psi theta) theta).
Its only equilibrium is (0, 0), where the Jacobian is [[0, f'(0)], [-f'(0), 0]] with
f'(0) = sigmoid(0) = 1/2 (the paper's eq. 5 up to the sign convention of D): eigenvalues
+-i/2, purely imaginary, so an Euler step x + h v(x) never moves closer:
|x + h v|^2 = |x|^2 + h^2 |v|^2 since v . x = 0. The WGAN (f(t) = t) is the same rotation with
f'(0) = 1. R1 adds gamma / 2 psi^2 to L_D (grad_x D = psi at x = 0), giving the Jacobian
[[0, 1/2], [-1/2, -gamma]] with eigenvalues -gamma/2 +- sqrt(gamma^2/4 - 1/4): simultaneous
gradient descent with step h then contracts at the rate max |1 + h lambda| per step.
"""
import numpy as np
import pytest

from minigan import nn
from minigan.autograd import Tensor, grad
from minigan.func import functional_call
from minigan.gan.losses import (d_loss_minimax, g_loss_minimax, r1_penalty,
                                wasserstein_critic_loss, wasserstein_generator_loss)

D = nn.Linear(1, 1, bias=False).double()
REAL = Tensor(np.zeros((1, 1)))


def losses(theta, psi, kind, gamma):
    """(L_G, L_D) at generator position ``theta`` and discriminator weight ``psi`` (Tensors of
    shape (1, 1)), with minigan's losses and D = psi * x."""
    def disc(x):
        return functional_call(D, {"weight": psi}, (x,))
    if kind == "gan":
        l_d, l_g = d_loss_minimax(disc(REAL), disc(theta)), g_loss_minimax(disc(theta))
    else:
        l_d = wasserstein_critic_loss(disc(REAL), disc(theta))
        l_g = wasserstein_generator_loss(disc(theta))
    if gamma:
        l_d = l_d + r1_penalty(disc, REAL, gamma)
    return l_g, l_d


def field(x, kind="gan", gamma=0.0, create_graph=False):
    """v(theta, psi) = (-dL_G/dtheta, -dL_D/dpsi) at x = (theta, psi), by minigan.grad."""
    theta, psi = (Tensor(np.reshape(np.asarray(c, dtype=np.float64), (1, 1)), requires_grad=True)
                  for c in x) if not isinstance(x[0], Tensor) else x
    l_g, l_d = losses(theta, psi, kind, gamma)
    g_theta, = grad(l_g, theta, create_graph=create_graph)
    g_psi, = grad(l_d, psi, create_graph=create_graph)
    return -g_theta, -g_psi


def jacobian_at_zero(kind, gamma):
    theta = Tensor(np.zeros((1, 1)), requires_grad=True)
    psi = Tensor(np.zeros((1, 1)), requires_grad=True)
    v = field((theta, psi), kind, gamma, create_graph=True)
    rows = []
    for vi in v:
        d_theta, d_psi = grad(vi.sum(), [theta, psi], retain_graph=True, allow_unused=True)
        rows.append([0.0 if d is None else d.item() for d in (d_theta, d_psi)])
    return np.array(rows)


def simultaneous_gd(x0, h, steps, kind="gan", gamma=0.0):
    """Distances to (0, 0) of the iterates x_{k+1} = x_k + h v(x_k), k = 0..steps."""
    x, norms = np.array(x0, dtype=np.float64), []
    for _ in range(steps + 1):
        norms.append(float(np.linalg.norm(x)))
        v = field(x, kind, gamma)
        x = x + h * np.array([v[0].item(), v[1].item()])
    return np.array(norms)


@pytest.mark.parametrize("kind, gamma, expected", [
    ("gan", 0.0, [[0.0, 0.5], [-0.5, 0.0]]),
    ("wgan", 0.0, [[0.0, 1.0], [-1.0, 0.0]]),
    ("gan", 0.3, [[0.0, 0.5], [-0.5, -0.3]]),
    ("gan", 2.0, [[0.0, 0.5], [-0.5, -2.0]]),
])
def test_jacobian_at_the_equilibrium_matches_the_closed_form(kind, gamma, expected):
    J = jacobian_at_zero(kind, gamma)
    np.testing.assert_allclose(J, expected, atol=1e-12)
    eig = np.linalg.eigvals(J)
    fp0 = 0.5 if kind == "gan" else 1.0
    closed = -gamma / 2 + np.sqrt(complex(gamma ** 2 / 4 - fp0 ** 2)) * np.array([1, -1])
    np.testing.assert_allclose(np.sort_complex(eig), np.sort_complex(closed), atol=1e-12)
    if gamma == 0:
        assert np.all(np.abs(eig.real) < 1e-15)   # purely imaginary: no convergence


def test_the_equilibrium_is_a_zero_of_the_field():
    for kind, gamma in (("gan", 0.0), ("wgan", 0.0), ("gan", 1.0)):
        v = field((0.0, 0.0), kind, gamma)
        assert v[0].item() == 0 and v[1].item() == 0


@pytest.mark.parametrize("kind", ["gan", "wgan"])
def test_simultaneous_gradient_descent_does_not_converge_without_regularisation(kind):
    h = 0.1
    norms = simultaneous_gd((1.0, 1.0), h, 300, kind)
    assert np.all(np.diff(norms) > 0), "every Euler step moves away from the equilibrium"
    if kind == "wgan":
        # a linear rotation: |x_k| = |x_0| (1 + h^2)^(k/2) exactly
        np.testing.assert_allclose(norms, norms[0] * (1 + h * h) ** (np.arange(301) / 2),
                                   rtol=1e-10)
    else:
        # |x_{k+1}|^2 = |x_k|^2 + h^2 |v_k|^2: v . x = 0 for every x
        assert norms[-1] > 1.02 * norms[0]


@pytest.mark.parametrize("gamma, h", [(0.3, 0.1), (2.0, 0.1), (1.5, 0.5)])
def test_r1_converges_at_the_rate_its_eigenvalues_predict(gamma, h):
    J = np.array([[0.0, 0.5], [-0.5, -gamma]])
    rho = np.max(np.abs(1 + h * np.linalg.eigvals(J)))
    assert rho < 1
    steps = 600
    norms = simultaneous_gd((0.01, 0.01), h, steps, "gan", gamma)
    assert norms[-1] < 0.1 * norms[0]
    # per-step rate over the second half (transients and the non-linear terms O(|x|^2) gone)
    rate = (norms[-1] / norms[steps // 2]) ** (1 / (steps - steps // 2))
    assert abs(rate - rho) < 2e-3, (rate, rho)
