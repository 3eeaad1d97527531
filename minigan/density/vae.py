"""A convolutional variational autoencoder (Kingma & Welling 2014) for 28x28 binary images.

    Encoder  x (N, 1, 28, 28) -> Conv(1, d, 4, 2, 1) LeakyReLU(0.2)       -> (N, d, 14, 14)
                                 Conv(d, 2d, 4, 2, 1) BN LeakyReLU(0.2)    -> (N, 2d, 7, 7)
                                 Conv(2d, 2 nz, 7, 1, 0)                   -> mu, log sigma^2
    Decoder  z (N, nz)        -> ConvT(nz, 4g, 7, 1, 0) BN ReLU            -> (N, 4g, 7, 7)
                                 ConvT(4g, 2g, 4, 2, 1) BN ReLU            -> (N, 2g, 14, 14)
                                 ConvT(2g, 1, 4, 2, 1)                     -> logits (N, 1, 28, 28)

The encoder is the DCGAN discriminator's trunk (:mod:`minigan.gan.models`) with 2 nz outputs in
place of one logit, the decoder the DCGAN generator with Bernoulli logits in place of tanh:
sigmoid(logits) is each pixel's probability of being on. Training minimises the negative ELBO

    -ELBO(x) = E_{q(z|x)}[-log p(x | z)] + KL(q(z | x) || N(0, I))  >=  -log p(x),

its first term estimated with one reparameterised sample z = mu + sigma * eps, its second in
closed form (:mod:`minigan.density.losses`).
"""
from typing import NamedTuple

import numpy as np

from .. import backend
from .. import functional as F
from .. import nn
from ..autograd import Tensor, no_grad
from . import losses

LEAK = 0.2  # the DCGAN discriminator's LeakyReLU slope


class Encoder(nn.Module):
    """q(z | x): images (N, nc, 28, 28) in [0, 1] -> (mu, logvar), each (N, nz)."""

    def __init__(self, nz=32, ndf=64, nc=1):
        super().__init__()
        self.nz, self.ndf, self.nc = nz, ndf, nc
        self.net = nn.Sequential(
            nn.Conv2d(nc, ndf, 4, 2, 1, bias=False),
            nn.LeakyReLU(LEAK),
            nn.Conv2d(ndf, ndf * 2, 4, 2, 1, bias=False),
            nn.BatchNorm2d(ndf * 2),
            nn.LeakyReLU(LEAK),
            nn.Conv2d(ndf * 2, 2 * nz, 7, 1, 0),
        )

    def forward(self, x):
        if x.ndim != 4 or x.shape[1:] != (self.nc, 28, 28):
            raise ValueError(f"Encoder expects images of shape (N, {self.nc}, 28, 28), "
                             f"got {x.shape}")
        h = F.reshape(self.net(x), (x.shape[0], 2 * self.nz))
        return h[:, :self.nz], h[:, self.nz:]


class Decoder(nn.Module):
    """p(x | z): latents (N, nz) -> Bernoulli logits (N, nc, 28, 28)."""

    def __init__(self, nz=32, ngf=64, nc=1):
        super().__init__()
        self.nz, self.ngf, self.nc = nz, ngf, nc
        self.net = nn.Sequential(
            nn.ConvTranspose2d(nz, ngf * 4, 7, 1, 0, bias=False),
            nn.BatchNorm2d(ngf * 4),
            nn.ReLU(),
            nn.ConvTranspose2d(ngf * 4, ngf * 2, 4, 2, 1, bias=False),
            nn.BatchNorm2d(ngf * 2),
            nn.ReLU(),
            nn.ConvTranspose2d(ngf * 2, nc, 4, 2, 1),
        )

    def forward(self, z):
        if z.ndim != 2 or z.shape[1] != self.nz:
            raise ValueError(f"Decoder expects latents of shape (N, {self.nz}), got {z.shape}")
        return self.net(F.reshape(z, (z.shape[0], self.nz, 1, 1)))

    def spec(self):
        """What rebuilds this decoder from a checkpoint: its class and constructor arguments."""
        return {"class": f"{type(self).__module__}.{type(self).__name__}",
                "kwargs": {"nz": self.nz, "ngf": self.ngf, "nc": self.nc}}


class VAEOutput(NamedTuple):
    """One pass: the decoder's logits for a posterior sample, and the posterior's parameters."""
    logits: Tensor
    mu: Tensor
    logvar: Tensor


class VAELoss(NamedTuple):
    """Batch means, in nats per image: the loss (-ELBO) and its two terms."""
    loss: Tensor
    reconstruction: Tensor
    kl: Tensor


class VAE(nn.Module):
    """Encoder and decoder together; ``forward(x, eps=None)`` -> :class:`VAEOutput`."""

    def __init__(self, nz=32, ngf=64, ndf=64, nc=1):
        super().__init__()
        self.nz = nz
        self.encoder = Encoder(nz, ndf, nc)
        self.decoder = Decoder(nz, ngf, nc)

    def forward(self, x, eps=None):
        mu, logvar = self.encoder(x)
        z = losses.reparameterize(mu, logvar, eps)
        return VAEOutput(self.decoder(z), mu, logvar)

    def loss(self, x, eps=None):
        """The negative ELBO of a batch x (N, nc, 28, 28) in [0, 1], with its reconstruction and
        KL terms, each a mean over the batch (nats per image): :class:`VAELoss`."""
        out = self(x, eps)
        reconstruction = losses.bernoulli_nll(out.logits, x).mean()
        kl = losses.gaussian_kl(out.mu, out.logvar).mean()
        return VAELoss(reconstruction + kl, reconstruction, kl)


def heldout_negative_elbo(vae, images, batch_size=500, seed=0):
    """The mean negative ELBO of ``images`` (N, nc, 28, 28) in [0, 1] in nats per image, with its
    reconstruction and KL terms, as a dict of floats: evaluation mode (batch norm's running
    statistics), no graph, one posterior sample per image drawn from its own generator (seeded
    with ``seed``), so the number does not depend on, or move, the training noise stream."""
    rng = np.random.default_rng(seed)
    was_training = vae.training
    vae.eval()
    totals = np.zeros(2)
    try:
        with no_grad():
            for i in range(0, len(images), batch_size):
                x = Tensor._wrap(images[i:i + batch_size])
                mu, logvar = vae.encoder(x)
                eps = rng.standard_normal(mu.shape).astype(mu.dtype)
                eps = Tensor._wrap(backend.to_device(eps, mu.device))
                z = losses.reparameterize(mu, logvar, eps)
                rec = losses.bernoulli_nll(vae.decoder(z), x)
                kl = losses.gaussian_kl(mu, logvar)
                totals += [float(rec.data.sum()), float(kl.data.sum())]
    finally:
        vae.train(was_training)
    rec, kl = totals / len(images)
    return {"neg_elbo": rec + kl, "reconstruction": rec, "kl": kl}


def heldout_importance_nll(vae, images, k=50, batch_size=100, seed=0):
    """An estimate of the mean -log p(x) of ``images`` in nats per image, tighter than -ELBO: the
    importance-weighted bound of Burda et al. (2016) with k posterior samples per image,

        -log p(x) <= -log (1/k) sum_i p(x | z_i) p(z_i) / q(z_i | x),   z_i ~ q(z | x),

    which is -ELBO for k = 1 and tends to -log p(x) as k grows. Evaluation mode, no graph, its own
    generator (``seed``)."""
    rng = np.random.default_rng(seed)
    was_training = vae.training
    vae.eval()
    total = 0.0
    try:
        with no_grad():
            for i in range(0, len(images), batch_size):
                x = Tensor._wrap(images[i:i + batch_size])
                mu, logvar = vae.encoder(x)
                n = mu.shape[0]
                log_w = np.empty((k, n))
                for j in range(k):
                    eps = rng.standard_normal(mu.shape).astype(mu.dtype)
                    z = losses.reparameterize(mu, logvar, backend.to_device(eps, mu.device))
                    log_px = -backend.as_numpy(losses.bernoulli_nll(vae.decoder(z), x).data)
                    zs = backend.as_numpy(z.data).astype(np.float64)
                    lv = backend.as_numpy(logvar.data).astype(np.float64)
                    # log p(z) - log q(z | x); the 2 pi terms cancel
                    log_w[j] = log_px + (-0.5 * zs ** 2 + 0.5 * eps ** 2 + 0.5 * lv).sum(axis=1)
                top = log_w.max(axis=0)
                total -= float((top + np.log(np.exp(log_w - top).mean(axis=0))).sum())
    finally:
        vae.train(was_training)
    return total / len(images)


def decode_mean(decoder, z, batch_size=500):
    """The decoder's pixel probabilities sigmoid(logits) for latents z (N, nz), evaluation mode,
    no graph: images (N, nc, 28, 28) in [0, 1] as a raw array (the Bernoulli mean, the usual way
    to show a VAE's samples)."""
    was_training = decoder.training
    decoder.eval()
    try:
        with no_grad():
            xp = backend.array_module(z.data)
            parts = [F.sigmoid(decoder(Tensor._wrap(z.data[i:i + batch_size]))).data
                     for i in range(0, z.shape[0], batch_size)]
            return xp.concatenate(parts)
    finally:
        decoder.train(was_training)


def decoder_from_spec(spec):
    """A fresh :class:`Decoder` from the dict :meth:`Decoder.spec` wrote (e.g. into a checkpoint's
    ``extra``); load its weights with ``load_state_dict`` afterwards."""
    name = spec.get("class")
    if name != f"{Decoder.__module__}.{Decoder.__name__}":
        raise ValueError(f"decoder_from_spec: expected a {Decoder.__module__}.Decoder spec, "
                         f"got class {name!r}")
    return Decoder(**{k: int(v) for k, v in spec["kwargs"].items()})
