"""GAN losses, one function each, on the discriminator's raw outputs.

A discriminator here returns LOGITS l, with D(x) = sigmoid(l). Every log of D is rewritten so that
no sigmoid is ever taken before a log (log(sigmoid(-100)) would be log(0)):

    log D(x)       = log sigmoid(l)      = -softplus(-l)
    log(1 - D(x))  = log sigmoid(-l)     = -softplus(l)

A Wasserstein critic returns unbounded scores f(x); its losses use them as they are.
Expectations E[.] are means over the batch. Every loss is a scalar Tensor to be minimised.
"""
import numpy as np

from .. import backend
from .. import functional as F
from ..autograd import Tensor, as_tensor, enable_grad, grad, no_grad
from ..nn.module import Module


def _logits(name, logits):
    logits = as_tensor(logits)
    if logits.dtype.kind != "f":
        raise TypeError(f"{name}: logits must be floating point, got dtype {logits.dtype}")
    return logits


def _constant_like(logits, value):
    xp = backend.array_module(logits.data)
    return Tensor._wrap(xp.full(logits.shape, value, dtype=logits.dtype))


def d_loss_minimax(real_logits, fake_logits):
    """The discriminator's loss of the original GAN (Goodfellow et al., 2014):

        L_D = -E_x[log D(x)] - E_z[log(1 - D(G(z)))]
            = BCE(l_real, 1) + BCE(l_fake, 0)

    i.e. -V(G, D) for the value function V; ``fake_logits`` should come from detached samples
    so that this loss trains D only. Shapes: any, (N, 1) typically; real and fake batches may
    differ in size."""
    real_logits = _logits("d_loss_minimax", real_logits)
    fake_logits = _logits("d_loss_minimax", fake_logits)
    real = F.binary_cross_entropy_with_logits(real_logits, _constant_like(real_logits, 1))
    fake = F.binary_cross_entropy_with_logits(fake_logits, _constant_like(fake_logits, 0))
    return real + fake


discriminator_loss = d_loss_minimax


def g_loss_minimax(fake_logits):
    """The generator's loss in the original minimax game: L_G = E_z[log(1 - D(G(z)))]
    = -E[softplus(l_fake)].

    Its gradient with respect to a logit is -sigmoid(l): it vanishes when D confidently rejects
    the samples (l << 0), which is exactly the situation early in training."""
    fake_logits = _logits("g_loss_minimax", fake_logits)
    return -F.softplus(fake_logits).mean()


def g_loss_nonsaturating(fake_logits):
    """The non-saturating generator loss: L_G = -E_z[log D(G(z))] = E[softplus(-l_fake)].

    Same fixed point as the minimax loss, but its gradient with respect to a logit is
    -(1 - sigmoid(l)), close to -1 where the minimax gradient vanishes (l << 0)."""
    fake_logits = _logits("g_loss_nonsaturating", fake_logits)
    return F.binary_cross_entropy_with_logits(fake_logits, _constant_like(fake_logits, 1))


def wasserstein_critic_loss(real_scores, fake_scores):
    """The WGAN critic's loss: L_f = E_z[f(G(z))] - E_x[f(x)] (minimising it maximises the
    critic's estimate of the Wasserstein-1 distance, E f(x) - E f(G(z)))."""
    return as_tensor(fake_scores).mean() - as_tensor(real_scores).mean()


def wasserstein_generator_loss(fake_scores):
    """The WGAN generator's loss: L_G = -E_z[f(G(z))]."""
    return -as_tensor(fake_scores).mean()


def d_loss_least_squares(real_scores, fake_scores):
    """The least-squares (LSGAN, Mao et al. 2017) discriminator loss with targets 1 and 0, halved
    as CycleGAN optimises it: L_D = 0.5 * (E_x[(D(x) - 1)^2] + E_z[D(G(z))^2]). Scores of any
    shape (a PatchGAN's (N, 1, h, w) included): the means run over every score."""
    real, fake = as_tensor(real_scores), as_tensor(fake_scores)
    return 0.5 * (((real - 1) ** 2).mean() + (fake ** 2).mean())


def g_loss_least_squares(fake_scores):
    """The least-squares generator loss: L_G = E_z[(D(G(z)) - 1)^2]."""
    return ((as_tensor(fake_scores) - 1) ** 2).mean()


def _generator(rng, device):
    if rng is None:
        return backend.rng(device)
    if isinstance(rng, (int, np.integer)):
        return np.random.default_rng(int(rng))
    return rng


def gradient_penalty(critic, real, fake, lam=10.0, rng=None):
    """WGAN-GP's penalty (Gulrajani et al., 2017):

        GP = lam * E[(||grad_x f(x_hat)||_2 - 1)^2],   x_hat = eps * real + (1 - eps) * fake,

    with one eps ~ U[0, 1] per sample and the norm taken per sample over all non-batch axes.
    ``real`` and ``fake`` (N, ...) are treated as constants (detached); the result is a scalar
    whose graph reaches the critic's parameters through grad_x f (taken with
    ``create_graph=True``). No ``.grad`` is written here: the caller adds GP to the critic loss
    and calls backward once. ``rng``: a NumPy Generator, an int seed, or None for minigan's
    seeded generator of the data's device.
    """
    real, fake = as_tensor(real), as_tensor(fake)
    if real.shape != fake.shape:
        raise ValueError(f"gradient_penalty: real batch has shape {real.shape} but fake batch has "
                         f"shape {fake.shape}; they must match")
    if real.ndim < 2 or real.shape[0] == 0:
        raise ValueError(f"gradient_penalty: expected a non-empty batch (N, ...) with at least "
                         f"2 dimensions, got shape {real.shape}")
    if real.device != fake.device:
        raise RuntimeError(f"gradient_penalty: real is on {real.device}, fake on {fake.device}")
    shape = (real.shape[0],) + (1,) * (real.ndim - 1)
    eps = _generator(rng, real.device).random(shape)
    eps = backend.to_device(eps, real.device).astype(real.dtype, copy=False)
    x_hat = Tensor(eps * real.data + (1 - eps) * fake.data, requires_grad=True)
    scores = critic(x_hat)
    g, = grad(scores.sum(), x_hat, create_graph=True)
    axes = tuple(range(1, g.ndim))
    # The tiny constant keeps sqrt differentiable where a gradient is exactly zero (its
    # derivative 1/(2 sqrt(s)) would be infinite there); it shifts the norm by < 1e-6.
    norms = F.sqrt(F.sum(g * g, axis=axes) + 1e-12)
    return lam * ((norms - 1) ** 2).mean()


def clip_weights_(module, c):
    """The original WGAN's Lipschitz constraint: clip every parameter of ``module`` into [-c, c],
    in place. Returns the module."""
    if not isinstance(module, Module):
        raise TypeError(f"clip_weights_ needs an nn.Module, got {type(module).__name__}")
    if not c > 0:
        raise ValueError(f"clip_weights_: the clipping bound c must be > 0, got {c}")
    with no_grad():
        for p in module.parameters():
            backend.array_module(p.data).clip(p.data, -c, c, out=p.data)
            p._bump_version()
    return module


def pack(x, m):
    """PacGAN's packing (Lin et al., 2018): (N, C, ...) -> (N/m, m*C, ...).

    Each group of m consecutive samples becomes one input whose channels (or features, for
    (N, D) input) are the m samples' channels one after another, so the discriminator judges m
    samples jointly. Samples are contiguous along the batch axis, so this is a reshape."""
    x = as_tensor(x)
    m = int(m)
    if m < 1:
        raise ValueError(f"pack: m must be >= 1, got {m}")
    if x.ndim < 2:
        raise ValueError(f"pack: expected a batch (N, C, ...) with at least 2 dimensions, got "
                         f"shape {x.shape}")
    n = x.shape[0]
    if n % m:
        raise ValueError(f"pack: batch size {n} is not divisible by the packing degree m={m}")
    return F.reshape(x, (n // m, m * x.shape[1]) + x.shape[2:])


def d_loss_hinge(real_scores, fake_scores):
    """The hinge loss for D (Lim & Ye 2017; Miyato et al., 2018, with spectral norm):

        L_D = E_x[max(0, 1 - D(x))] + E_z[max(0, 1 + D(G(z)))]

    on raw scores D (no sigmoid). ``fake_scores`` should come from detached samples."""
    real_scores = _logits("d_loss_hinge", real_scores)
    fake_scores = _logits("d_loss_hinge", fake_scores)
    return F.relu(1 - real_scores).mean() + F.relu(1 + fake_scores).mean()


def g_loss_hinge(fake_scores):
    """The generator's loss that goes with the hinge D loss: L_G = -E_z[D(G(z))]."""
    return -_logits("g_loss_hinge", fake_scores).mean()


def feature_matching_loss(real_features, fake_features):
    """Feature matching (Salimans et al., 2016, section 3.1), a generator loss:

        L_G = || E_x f(x) - E_z f(G(z)) ||_2^2

    with f an intermediate layer of D: ``real_features`` (N, ...) and ``fake_features``
    (M, ...) are f's outputs, averaged over the batch axis; the real side is a constant (it is
    detached), so the loss trains G to match the data's mean feature."""
    real_features, fake_features = as_tensor(real_features), as_tensor(fake_features)
    if real_features.shape[1:] != fake_features.shape[1:]:
        raise ValueError(f"feature_matching_loss: real features {real_features.shape} and fake "
                         f"features {fake_features.shape} differ beyond the batch axis")
    diff = real_features.detach().mean(axis=0) - fake_features.mean(axis=0)
    return (diff * diff).sum()


def r1_penalty(discriminator, real, gamma=10.0):
    """R1 regularisation (Mescheder et al., 2018, eq. 9), added to D's loss:

        R1 = gamma / 2 * E_x[ ||grad_x D(x)||^2 ],  x ~ p_data

    with D's raw output (the logit). ``real`` (N, ...) is treated as a constant; the penalty's
    graph reaches D's parameters through grad_x D (taken with ``create_graph=True``)."""
    real = as_tensor(real)
    if real.ndim < 2 or real.shape[0] == 0:
        raise ValueError(f"r1_penalty: expected a non-empty batch (N, ...) with at least 2 "
                         f"dimensions, got shape {real.shape}")
    if not gamma >= 0:
        raise ValueError(f"r1_penalty: gamma must be >= 0, got {gamma}")
    x = Tensor(real.data, requires_grad=True)
    with enable_grad():   # grad_x D is part of the penalty's value, also under no_grad
        g, = grad(discriminator(x).sum(), x, create_graph=True)
    return (gamma / 2) * F.sum(g * g, axis=tuple(range(1, g.ndim))).mean()
