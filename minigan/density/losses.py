"""The likelihood terms of the density models, per image, in nats.

    gaussian_kl(mu, logvar)        KL(N(mu, diag sigma^2) || N(0, I)), the VAE's analytic KL term
    reparameterize(mu, logvar, eps) z = mu + sigma * eps: a sample of the posterior, differentiable
    bernoulli_nll(logits, x)       -log p(x | logits) of binary pixels under independent Bernoullis
    negative_elbo(...)             bernoulli_nll + gaussian_kl: the VAE's loss, an upper bound on
                                   -log p(x)

Every function returns one number per image, shape (N,): the caller takes the batch mean for a
loss, and a held-out mean is directly "nats per image". One bit per pixel of a 28x28 image is
784 log 2 = 543.4 nats; bits per dimension = nats / (784 log 2).
"""
import math

from .. import backend
from .. import functional as F
from ..autograd import Tensor, as_tensor


def nats_to_bits_per_dim(nats, dims=784):
    """nats per image -> bits per dimension (pixel): nats / (dims * log 2)."""
    return nats / (dims * math.log(2.0))


def _check_pair(name, mu, logvar):
    if mu.shape != logvar.shape or mu.ndim != 2:
        raise ValueError(f"{name}: mu and logvar must both be (N, latent), got {mu.shape} and "
                         f"{logvar.shape}")


def gaussian_kl(mu, logvar):
    """KL(N(mu, diag exp(logvar)) || N(0, I)) per row, in closed form (Kingma & Welling 2014,
    appendix B):

        KL = 1/2 sum_j (mu_j^2 + sigma_j^2 - 1 - log sigma_j^2)

    mu, logvar: (N, latent) -> (N,). Zero exactly when mu = 0 and logvar = 0."""
    mu, logvar = as_tensor(mu), as_tensor(logvar)
    _check_pair("gaussian_kl", mu, logvar)
    return 0.5 * (mu * mu + logvar.exp() - 1.0 - logvar).sum(axis=1)


def reparameterize(mu, logvar, eps=None):
    """z = mu + exp(logvar / 2) * eps, eps ~ N(0, I): a sample of N(mu, diag exp(logvar)) written
    as a differentiable function of (mu, logvar), so the ELBO's gradient flows into the encoder.

    mu, logvar: (N, latent). eps: the noise (array or Tensor of that shape); when None it is drawn
    from minigan's seeded CPU generator and moved to mu's device, as GAN noise is, so a
    checkpoint's generator state is all a resumed run needs to draw the same noise."""
    mu, logvar = as_tensor(mu), as_tensor(logvar)
    _check_pair("reparameterize", mu, logvar)
    if eps is None:
        eps = backend.rng("cpu").standard_normal(mu.shape, dtype=mu.dtype)
        eps = Tensor._wrap(backend.to_device(eps, mu.device))
    eps = as_tensor(eps, like=mu)
    if eps.shape != mu.shape:
        raise ValueError(f"reparameterize: eps has shape {eps.shape} but mu has {mu.shape}")
    return mu + (0.5 * logvar).exp() * eps


def _check_binary_target(name, logits, x):
    if logits.shape != x.shape or x.ndim < 2:
        raise ValueError(f"{name}: logits {logits.shape} and images {x.shape} must have the same "
                         "shape (N, ...)")
    xp = backend.array_module(x.data)
    if x.data.size and (float(xp.min(x.data)) < 0 or float(xp.max(x.data)) > 1):
        raise ValueError(f"{name}: pixels must lie in [0, 1] (binarised images), got values in "
                         f"[{float(xp.min(x.data))}, {float(xp.max(x.data))}]")


def bernoulli_nll(logits, x):
    """-log p(x | logits) = sum over pixels of softplus(l) - x l, per image, where each pixel is
    Bernoulli with P(x = 1) = sigmoid(l): the binary cross-entropy summed, not averaged.

    logits, x: (N, ...) of the same shape, x in [0, 1] -> (N,) nats. A model that says 0.5 for
    every pixel (logit 0) pays log 2 per pixel whatever the image."""
    logits = as_tensor(logits)
    x = as_tensor(x, like=logits)
    _check_binary_target("bernoulli_nll", logits, x)
    per_pixel = F.binary_cross_entropy_with_logits(logits, x, reduction="none")
    return per_pixel.sum(axis=tuple(range(1, logits.ndim)))


def negative_elbo(logits, x, mu, logvar):
    """-ELBO = E_q[-log p(x | z)] + KL(q(z | x) || p(z)), estimated with one sample z of q
    (the decoder's ``logits`` for it) and the analytic KL: per image (N,), in nats; an upper bound
    on -log p(x) in expectation."""
    return bernoulli_nll(logits, x) + gaussian_kl(mu, logvar)
