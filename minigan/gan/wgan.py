"""Wasserstein GANs: a batch-norm-free conv critic for 28x28 images, and one training iteration
written to be read beside Algorithm 1 of each paper.

WGAN (Arjovsky, Chintala & Bottou, 2017), Algorithm 1, defaults alpha = 5e-5, c = 0.01, m = 64,
n_critic = 5:

    while theta has not converged:
        for t = 1 .. n_critic:
            sample {x_i} ~ P_r and {z_i} ~ p(z), a batch of m each
            g_w <- grad_w [ (1/m) sum f_w(x_i) - (1/m) sum f_w(g_theta(z_i)) ]
            w   <- w + alpha * RMSProp(w, g_w)
            w   <- clip(w, -c, c)
        sample {z_i} ~ p(z)
        g_theta <- -grad_theta (1/m) sum f_w(g_theta(z_i))
        theta   <- theta - alpha * RMSProp(theta, g_theta)

WGAN-GP (Gulrajani et al., 2017), Algorithm 1, defaults lambda = 10, n_critic = 5, Adam with
alpha = 1e-4, beta1 = 0.5, beta2 = 0.9: the same loop with the clipping replaced by a penalty in
the critic's loss,

    L = (1/m) sum [ D(x~_i) - D(x_i) + lambda (||grad_x^ D(x^_i)||_2 - 1)^2 ],
        x~_i = G(z_i),  x^_i = eps_i x_i + (1 - eps_i) x~_i,  eps_i ~ U[0, 1].

The critic f (D in the GP paper) returns an unbounded score, not a logit. If f is 1-Lipschitz,
E_x f(x) - E_z f(G(z)) is at most the Wasserstein-1 distance between the data and the samples,
and the best critic attains it (Kantorovich-Rubinstein duality): that difference, which
:func:`wgan_train_step` reports, is the critic's estimate of W1. Clipping the weights keeps f
Lipschitz (for some constant, not 1); the penalty pushes the gradient norm towards 1 on lines
between real and generated samples. The penalty is per sample, so the critic must treat samples
independently: no batch norm in it (the paper suggests layer norm; this critic uses none).
"""
from typing import NamedTuple

from .. import functional as F
from .. import nn
from ..autograd import no_grad
from . import losses
from .models import LEAK, Generator, dcgan_init_
from .train import _check_batches, _check_finite, sample_noise


class Critic(nn.Module):
    """f(x): images (N, nc, 28, 28) -> scores (N,). The DCGAN discriminator's layout without its
    batch norm:

        Conv(nc, d, 4, 2, 1) LeakyReLU(0.2)    -> (N, d, 14, 14)
        Conv(d, 2d, 4, 2, 1) LeakyReLU(0.2)    -> (N, 2d, 7, 7)
        Conv(2d, 1, 7, 1, 0)                   -> (N,) scores

    with d = ndf. The first two convolutions have biases (no batch norm follows to cancel them);
    the last has none, since a constant added to every score cancels in E f(x) - E f(G(z))."""

    def __init__(self, ndf=64, nc=1):
        super().__init__()
        self.ndf, self.nc = ndf, nc
        self.net = nn.Sequential(
            nn.Conv2d(nc, ndf, 4, 2, 1),
            nn.LeakyReLU(LEAK),
            nn.Conv2d(ndf, ndf * 2, 4, 2, 1),
            nn.LeakyReLU(LEAK),
            nn.Conv2d(ndf * 2, 1, 7, 1, 0, bias=False),
        )

    def forward(self, x):
        if x.ndim != 4 or x.shape[1:] != (self.nc, 28, 28):
            raise ValueError(f"Critic expects images of shape (N, {self.nc}, 28, 28), "
                             f"got {x.shape}")
        return F.reshape(self.net(x), (x.shape[0],))


def make_wgan(nz=100, ngf=64, ndf=64, nc=1):
    """(G, critic): the DCGAN generator (batch norm kept: both papers keep it in G) and a
    :class:`Critic`, both with DCGAN's N(0, 0.02) init, drawn from minigan's seeded CPU
    generator (call ``minigan.manual_seed`` first for a reproducible pair)."""
    return Generator(nz, ngf, nc).apply(dcgan_init_), Critic(ndf, nc).apply(dcgan_init_)


class WGANStats(NamedTuple):
    """What one iteration reports, the critic's numbers averaged over its n_critic steps (each
    taken before that step's update):

    loss_critic  E f(G(z)) - E f(x) (+ the penalty for WGAN-GP), the loss the critic minimises
    loss_g       -E f(G(z)), the generator's loss
    wasserstein  E f(x) - E f(G(z)), the critic's estimate of W1 (up to the Lipschitz constant)
    gp           the gradient penalty lambda E(||grad f|| - 1)^2; 0.0 for clipped WGAN"""
    loss_critic: float
    loss_g: float
    wasserstein: float
    gp: float


def _check_constraint(critic, clip, gp_lambda):
    if (clip is None) == (gp_lambda is None):
        raise ValueError("pass exactly one Lipschitz constraint: clip=c (WGAN's weight clipping) "
                         f"or gp_lambda=lambda (WGAN-GP's penalty); got clip={clip}, "
                         f"gp_lambda={gp_lambda}")
    if clip is not None and not clip > 0:
        raise ValueError(f"clip must be > 0, got {clip}")
    if gp_lambda is not None:
        if not gp_lambda > 0:
            raise ValueError(f"gp_lambda must be > 0, got {gp_lambda}")
        norms = [type(m).__name__ for m in critic.modules()
                 if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d))]
        if norms:
            raise ValueError(f"the critic contains {norms[0]}: the gradient penalty is taken per "
                             "sample, and batch norm makes each score depend on the whole batch "
                             "(use a critic without batch norm, e.g. wgan.Critic)")


def critic_step(G, critic, opt_c, real, z, clip=None, gp_lambda=None, step=None):
    """One critic update on a real batch (N, C, H, W) and noise z (N, nz).

    Minimises  L = E f(G(z)) - E f(x)  [+ gp_lambda * E(||grad f(x^)|| - 1)^2]
    then, for WGAN, clips every critic weight into [-clip, clip]. Returns (loss, W1 estimate,
    penalty) as floats. Raises :class:`~minigan.gan.train.NonFiniteLossError` before the update
    when the loss is NaN or infinite."""
    _check_batches({"real batch": real, "noise z": z}, "critic loss", step)
    # the samples are constants here: no graph through G (the critic step trains f only)
    with no_grad():
        fake = G(z)
    real_scores, fake_scores = critic(real), critic(fake)
    loss = losses.wasserstein_critic_loss(real_scores, fake_scores)
    estimate = -loss.item()
    penalty = 0.0
    if gp_lambda is not None:
        # gradient_penalty differentiates f with grad(), which writes no .grad; the penalty's
        # graph reaches the critic's weights through that gradient (second order)
        gp = losses.gradient_penalty(critic, real, fake, lam=gp_lambda)
        penalty = gp.item()
        loss = loss + gp
    value = _check_finite(loss, "critic loss", step, {"real batch": real, "noise z": z},
                          {"G": G, "critic": critic})
    opt_c.zero_grad()
    loss.backward()
    opt_c.step()
    if clip is not None:
        losses.clip_weights_(critic, clip)
    return value, estimate, penalty


def generator_step(G, critic, opt_g, z, step=None):
    """One generator update: minimises -E f(G(z)) with the critic frozen. Returns the loss."""
    critic.requires_grad_(False)    # G's step does not train f: skip its weight gradients
    try:
        loss = losses.wasserstein_generator_loss(critic(G(z)))
        value = _check_finite(loss, "generator loss", step, {"noise z": z},
                              {"G": G, "critic": critic})
        opt_g.zero_grad()
        loss.backward()
        opt_g.step()
    finally:
        critic.requires_grad_(True)
    return value


def wgan_train_step(G, critic, opt_g, opt_c, next_real_batch, nz, n_critic=5, clip=None,
                    gp_lambda=None, step=None):
    """One generator iteration of Algorithm 1: ``n_critic`` critic steps, each on a fresh real
    batch from ``next_real_batch()`` (a Tensor (N, C, H, W)) and fresh noise, then one generator
    step on fresh noise. Exactly one of ``clip`` (WGAN) and ``gp_lambda`` (WGAN-GP) is given.

    The noise is z ~ N(0, I) of shape (N, nz) from minigan's CPU generator (:func:`sample_noise`),
    on the real batch's device. Returns :class:`WGANStats`."""
    _check_constraint(critic, clip, gp_lambda)
    if n_critic < 1:
        raise ValueError(f"n_critic must be >= 1, got {n_critic}")
    sums = [0.0, 0.0, 0.0]
    for _ in range(n_critic):
        real = next_real_batch()
        z = sample_noise(real.shape[0], nz, real.device, real.dtype)
        for i, v in enumerate(critic_step(G, critic, opt_c, real, z, clip, gp_lambda, step)):
            sums[i] += v
    z = sample_noise(real.shape[0], nz, real.device, real.dtype)
    loss_g = generator_step(G, critic, opt_g, z, step)
    loss_c, estimate, penalty = (s / n_critic for s in sums)
    return WGANStats(loss_c, loss_g, estimate, penalty)
