"""InfoGAN (Chen et al., 2016) on 28x28 digits: latent codes that G is made to keep legible.

    latent   z ~ N(0, I) (N, nz),  c ~ Cat(K) (N,),  s ~ U(-1, 1) (N, M)
    G        [z ; onehot(c) ; s]  (N, nz + K + M)  -> generator                -> (N, nc, 28, 28)
    D        discriminator trunk   -> features h
             D head  psi(h)  -> (N,)  logit of "x is real"
             Q head  Linear(h, 128) BatchNorm1d LeakyReLU(0.2) Linear(128, K + 2M)
                     -> categorical logits (N, K), Gaussian means (N, M) and log-stds (N, M)

Two architectures (``architecture=``): "paper", the InfoGAN paper's MNIST models (its appendix
C.1: fully connected layers at G's input and D's trunk end, :func:`paper_generator`,
:class:`InfoGANDiscriminator`), and "dcgan", the DCGAN models of :mod:`minigan.gan.models`
(trunk features (N, 2d, 7, 7), a 7x7 convolution as D's head).

(K = 10 and M = 2 for MNIST, as in the paper.) Q(c, s | x) approximates the posterior of the
codes given an image. The mutual information I(c, s; G(z, c, s)) has the variational lower bound
(the paper's section 5)

    L_I(G, Q) = E_{c, s, x = G(z, c, s)}[log Q(c | x) + log Q(s | x)] + H(c) + H(s)  <=  I

and InfoGAN plays  min_{G, Q} max_D  V(D, G) - lambda L_I(G, Q). The entropies are constants, so
the loss minimised here is the negative log-likelihood of the codes under Q (:func:`info_loss`):

    info = CE(cat logits, c) + lambda_cont * E[ sum_m  log sigma_m + (s_m - mu_m)^2 / (2 sigma_m^2)
                                                       + log(2 pi) / 2 ]

with weight 1 for the categorical code and lambda_cont = 0.1 for the continuous ones, as is
commonly used. No label is used anywhere: the categorical code finds the digit classes (or not)
on its own, which :mod:`minigan.metrics.matching` checks after the fact.

Which parameters L_I updates, and why (:func:`infogan_train_step`, two choices):

- ``q_update="g"`` (the example's default, as in most public implementations: G's optimizer holds
  G and Q's head): L_I trains G and Q's head together in G's step; the trunk Q shares with D
  learns from D's GAN loss only, so Q reads the codes from features D learnt for telling real
  digits from fakes. G and Q's head minimise the same loss here, so one optimizer holds both.
- ``q_update="d"``: the D step adds the info loss of the detached fakes to D's loss, training Q's
  head and the shared trunk to read the codes back, and the G step adds it through the frozen D
  and Q, training G alone (Q costs almost nothing beyond D, the paper's point).

On the bundled digits the choice of models mattered more than this one: with the DCGAN models
the noise chose the digit and the code a style under either update, with the paper's the code
found the digits under both, "g" a little faster (benchmarks/RESULTS.md, issue 13).

Where the plain loss stalls: Q reads the categorical code almost perfectly within a few hundred
iterations, and from then on L_I no longer pushes, even where one code value still draws two
digits that Q tells apart from other codes' drawings by their style. ``code_transform`` (not in
the paper) takes the categorical term on Q(T(G(.))) for a random warp T
(:class:`~minigan.gan.augment.RandomAffine`: slant, zoom, shift), so style no longer carries the
code and only the digit's shape can: the example's default, which took the code accuracy from
0.78-0.94 to 0.98-0.99 over three seeds.
"""
import math
from typing import NamedTuple

from .. import backend
from .. import functional as F
from .. import nn
from ..autograd import Tensor, no_grad
from . import losses
from .conditional import _labels, one_hot
from .models import LEAK, Discriminator, Generator, dcgan_init_
from .train import _check_finite, _mean_probability

NUM_CATEGORIES = 10     # one categorical code with 10 values (MNIST's digits, if it finds them)
NUM_CONTINUOUS = 2      # two continuous codes ~ U(-1, 1) (slant and width, typically)
LAMBDA_CONTINUOUS = 0.1
Q_HIDDEN = 128
# Q's log-std is clipped: the Gaussian likelihood can otherwise grow without bound by narrowing
# sigma around codes it already reads well (the NLL's gradient in log sigma is not bounded).
LOG_STD_RANGE = (-2.5, 1.0)


class Latent(NamedTuple):
    """One batch of InfoGAN's latent input: noise z (N, nz) Tensor, categorical codes c (N,)
    ints (an array on z's device), continuous codes s (N, M) Tensor."""
    z: Tensor
    categories: object
    continuous: Tensor


NOISES = ("normal", "uniform")


def draw_noise(rng, shape, noise="normal", dtype=None):
    """G's noise z from a NumPy generator: N(0, 1) (``noise="normal"``) or U(-1, 1)
    (``"uniform"``, the InfoGAN authors' code: its smaller spread, 0.58, leaves the one-hot code
    a larger share of G's input). An array of ``shape``."""
    if noise not in NOISES:
        raise ValueError(f"noise must be one of {NOISES}, got {noise!r}")
    dtype = dtype or backend.get_default_dtype()
    if noise == "normal":
        return rng.standard_normal(shape).astype(dtype, copy=False)
    return rng.uniform(-1.0, 1.0, shape).astype(dtype, copy=False)


def sample_latent(n, nz, num_categories=NUM_CATEGORIES, num_continuous=NUM_CONTINUOUS,
                  device="cpu", dtype=None, noise="normal"):
    """z ~ N(0, I) (or U(-1, 1) with ``noise="uniform"``, :func:`draw_noise`), c ~ uniform over
    {0..K-1}, s ~ U(-1, 1), drawn in that order from minigan's seeded CPU generator (so
    checkpoints resume the stream), then moved to ``device``."""
    if n < 0 or nz < 1 or num_categories < 1 or num_continuous < 0:
        raise ValueError(f"sample_latent: needs n >= 0, nz >= 1, num_categories >= 1 and "
                         f"num_continuous >= 0, got n={n}, nz={nz}, num_categories="
                         f"{num_categories}, num_continuous={num_continuous}")
    dtype = dtype or backend.get_default_dtype()
    rng = backend.rng("cpu")
    z = (rng.standard_normal((n, nz), dtype=dtype) if noise == "normal"
         else draw_noise(rng, (n, nz), noise, dtype))
    c = rng.integers(0, num_categories, n)
    s = rng.uniform(-1.0, 1.0, (n, num_continuous)).astype(dtype)
    return Latent(Tensor(backend.to_device(z, device)), backend.to_device(c, device),
                  Tensor(backend.to_device(s, device)))


ARCHITECTURES = ("dcgan", "paper")


def _check_architecture(architecture):
    if architecture not in ARCHITECTURES:
        raise ValueError(f"architecture must be one of {ARCHITECTURES}, got {architecture!r}")


def paper_generator(n_in, ngf=64, nc=1):
    """The InfoGAN paper's MNIST generator (its appendix C.1, widths for ngf = 64):

        (N, n_in) -> Linear(n_in, 16g) BN ReLU -> Linear(16g, 2g*7*7) BN ReLU -> (N, 2g, 7, 7)
                  -> ConvT(2g, g, 4, 2, 1) BN ReLU -> ConvT(g, nc, 4, 2, 1) Tanh -> (N, nc, 28, 28)
    """
    return nn.Sequential(
        nn.Linear(n_in, 16 * ngf, bias=False), nn.BatchNorm1d(16 * ngf), nn.ReLU(),
        nn.Linear(16 * ngf, 2 * ngf * 49, bias=False), nn.BatchNorm1d(2 * ngf * 49), nn.ReLU(),
        nn.Unflatten(1, (2 * ngf, 7, 7)),
        nn.ConvTranspose2d(2 * ngf, ngf, 4, 2, 1, bias=False), nn.BatchNorm2d(ngf), nn.ReLU(),
        nn.ConvTranspose2d(ngf, nc, 4, 2, 1, bias=False), nn.Tanh(),
    )


class InfoGANGenerator(nn.Module):
    """G(z, c, s): noise (N, nz), categorical codes (N,) ints in [0, K), continuous codes (N, M)
    -> images (N, nc, 28, 28) in [-1, 1]; on [z ; onehot(c) ; s] either the DCGAN generator
    (``architecture="dcgan"``) or the paper's (``"paper"``, :func:`paper_generator`)."""

    def __init__(self, nz=62, ngf=64, nc=1, num_categories=NUM_CATEGORIES,
                 num_continuous=NUM_CONTINUOUS, architecture="dcgan"):
        super().__init__()
        _check_architecture(architecture)
        self.nz, self.ngf, self.nc = nz, ngf, nc
        self.num_categories, self.num_continuous = num_categories, num_continuous
        self.architecture = architecture
        n_in = nz + num_categories + num_continuous
        self.net = (Generator(n_in, ngf, nc) if architecture == "dcgan"
                    else paper_generator(n_in, ngf, nc))

    def forward(self, z, categories, continuous):
        if z.ndim != 2 or z.shape[1] != self.nz:
            raise ValueError(f"InfoGANGenerator expects noise of shape (N, {self.nz}), got {z.shape}")
        if continuous.ndim != 2 or continuous.shape != (z.shape[0], self.num_continuous):
            raise ValueError(f"InfoGANGenerator expects continuous codes of shape "
                             f"({z.shape[0]}, {self.num_continuous}), got {continuous.shape}")
        return self.net(F.concat([z, one_hot(categories, self.num_categories, z), continuous],
                                 dim=1))


class QOutput(NamedTuple):
    """Q's reading of a batch: categorical logits (N, K), Gaussian means (N, M) and log-stds
    (N, M) of the continuous codes."""
    logits: Tensor
    mean: Tensor
    log_std: Tensor


class InfoGANDiscriminator(nn.Module):
    """D and Q on one trunk: images (N, nc, 28, 28) -> (logits (N,), :class:`QOutput`).

    ``architecture="dcgan"``: the DCGAN discriminator's trunk (N, 2d, 7, 7) and its 7x7
    convolution as D's head. ``"paper"`` (the InfoGAN paper's appendix C.1, widths for ndf = 64):
    Conv(nc, d, 4, 2, 1) LeakyReLU -> Conv(d, 2d, 4, 2, 1) BN LeakyReLU -> Linear(2d*7*7, 16d)
    BN LeakyReLU as the trunk (N, 16d), Linear(16d, 1) as D's head. Q's head is the same on both:
    Linear(trunk, q_hidden) BN LeakyReLU Linear(q_hidden, K + 2M)."""

    def __init__(self, ndf=64, nc=1, num_categories=NUM_CATEGORIES,
                 num_continuous=NUM_CONTINUOUS, q_hidden=Q_HIDDEN, architecture="dcgan"):
        super().__init__()
        _check_architecture(architecture)
        self.ndf, self.nc = ndf, nc
        self.num_categories, self.num_continuous = num_categories, num_continuous
        self.architecture = architecture
        stack = Discriminator(ndf, nc).net
        if architecture == "dcgan":
            self.features = stack[:-1]    # -> (N, 2d, 7, 7), shared by D and Q
            self.head = stack[-1]         # D: 7x7 convolution -> (N, 1, 1, 1)
            n_features = 2 * ndf * 7 * 7
        else:
            n_features = 16 * ndf
            self.features = nn.Sequential(
                *[stack[i] for i in range(5)], nn.Flatten(),
                nn.Linear(2 * ndf * 7 * 7, n_features, bias=False), nn.BatchNorm1d(n_features),
                nn.LeakyReLU(LEAK))
            self.head = nn.Linear(n_features, 1)
        self.q = nn.Sequential(
            nn.Flatten(),
            nn.Linear(n_features, q_hidden, bias=False),
            nn.BatchNorm1d(q_hidden),
            nn.LeakyReLU(LEAK),
            nn.Linear(q_hidden, num_categories + 2 * num_continuous),
        )

    def forward(self, x):
        if x.ndim != 4 or x.shape[1:] != (self.nc, 28, 28):
            raise ValueError(f"InfoGANDiscriminator expects images of shape "
                             f"(N, {self.nc}, 28, 28), got {x.shape}")
        h = self.features(x)
        out = self.q(h)
        k, m = self.num_categories, self.num_continuous
        log_std = F.clip(out[:, k + m:], *LOG_STD_RANGE)
        return F.reshape(self.head(h), (x.shape[0],)), QOutput(out[:, :k], out[:, k:k + m], log_std)

    def d_parameters(self):
        """The trunk's and D's head's parameters (everything but Q's head)."""
        return list(self.features.parameters()) + list(self.head.parameters())


def make_infogan(nz=62, ngf=64, ndf=64, nc=1, num_categories=NUM_CATEGORIES,
                 num_continuous=NUM_CONTINUOUS, architecture="dcgan"):
    """(G, D) with D carrying the Q head, DCGAN-initialised from minigan's seeded CPU generator."""
    return (InfoGANGenerator(nz, ngf, nc, num_categories, num_continuous,
                             architecture).apply(dcgan_init_),
            InfoGANDiscriminator(ndf, nc, num_categories, num_continuous,
                                 architecture=architecture).apply(dcgan_init_))


def gaussian_nll(x, mean, log_std):
    """-log N(x; mean, exp(log_std)^2), summed over the last axis and averaged over the batch:

        E_n[ sum_m  log sigma_nm + (x_nm - mu_nm)^2 / (2 sigma_nm^2) + log(2 pi) / 2 ]

    x, mean, log_std: (N, M). A scalar Tensor."""
    if not (x.shape == mean.shape == log_std.shape) or x.ndim != 2:
        raise ValueError(f"gaussian_nll expects three (N, M) tensors, got {x.shape}, "
                         f"{mean.shape}, {log_std.shape}")
    z = (x - mean) * F.exp(-log_std)
    per_code = log_std + 0.5 * z * z + 0.5 * math.log(2 * math.pi)
    return F.sum(per_code, axis=1).mean()


def info_loss(q, categories, continuous, lambda_cont=LAMBDA_CONTINUOUS, q_categorical=None):
    """-(L_I - H(c) - H(s)) with the continuous part weighted: CE(q.logits, c) +
    lambda_cont * gaussian_nll(s, q.mean, q.log_std). ``q`` a :class:`QOutput` for images drawn
    with codes c (N,) and s (N, M); ``q_categorical`` (optional) Q's reading of the same images
    transformed, whose logits then stand in the CE (see ``code_transform`` in
    :func:`infogan_train_step`). A scalar Tensor; log K - CE is the categorical code's lower
    bound on I(c; G(z, c, s)) in nats."""
    logits = (q if q_categorical is None else q_categorical).logits
    c = _labels(categories, logits.shape[1], logits)
    return F.cross_entropy(logits, c) + lambda_cont * gaussian_nll(continuous, q.mean, q.log_std)


class InfoGANStats(NamedTuple):
    """One InfoGAN iteration: D's and G's GAN losses, the info loss (G step, before G's update),
    D(x), D(G(z)), and how often Q names the categorical code of a fake (D step's batch)."""
    loss_d: float
    loss_g: float
    loss_info: float
    d_real: float
    d_fake: float
    q_accuracy: float


Q_UPDATES = ("d", "g")


def infogan_train_step(G, D, opt_g, opt_d, real, latent, lambda_cont=LAMBDA_CONTINUOUS,
                       step=None, q_update="d", code_transform=None):
    """One InfoGAN iteration on a real batch (N, C, H, W) and a :class:`Latent` batch. There is
    no label argument: InfoGAN is unsupervised. With ``q_update="d"`` (opt_d holds all of D,
    opt_g G):

    D step: minimise  BCE(D(x), 1) + BCE(D(G(.)), 0) + info(Q(G(.)))   (fakes detached: D, Q learn)
    G step: minimise  BCE(D(G(.)), 1) + info(Q(G(.)))                   (D and Q frozen: G learns)

    With ``q_update="g"`` (opt_d holds ``D.d_parameters()``, opt_g G's and ``D.q``'s):

    D step: minimise  BCE(D(x), 1) + BCE(D(G(.)), 0)                    (trunk and D's head learn)
    G step: minimise  BCE(D(G(.)), 1) + info(Q(G(.)))                   (G and Q's head learn)

    with info = :func:`info_loss`. ``code_transform`` (e.g. :class:`~minigan.gan.augment.
    RandomAffine`): the categorical code's CE is taken on Q(T(G(.))) instead of Q(G(.)), T drawn
    afresh in each step and differentiable, so G has to make the code survive T: once Q reads
    the code perfectly the plain loss stops pushing (a code value may still draw two digits, told
    apart by slant or size), and a T that scrambles slant, size and position leaves Q only the
    digit's shape to read (the idea of Elastic-InfoGAN's invariance, Ojha et al. 2020). The
    continuous codes are read from the untransformed images (T would scramble the slant).
    Returns :class:`InfoGANStats` (q_accuracy on the D step's fakes for "d", the G step's for
    "g", transformed when T is given); raises NonFiniteLossError before an update would use a
    NaN or infinite loss."""
    if q_update not in Q_UPDATES:
        raise ValueError(f"q_update must be one of {Q_UPDATES}, got {q_update!r}")
    fake = G(latent.z, latent.categories, latent.continuous)

    def read_codes(images):   # Q's reading, and the one the categorical CE uses
        if code_transform is None:
            return None
        return D(code_transform(images))[1]

    real_logits, _ = D(real)
    fake_logits, q = D(fake.detach())
    loss_d = losses.d_loss_minimax(real_logits, fake_logits)
    q_cat = None
    if q_update == "d":
        q_cat = read_codes(fake.detach())
        loss_d = loss_d + info_loss(q, latent.categories, latent.continuous, lambda_cont, q_cat)
    loss_d_value = _check_finite(loss_d, "discriminator loss", step)
    opt_d.zero_grad()
    loss_d.backward()
    opt_d.step()

    # G's step: gradients through D into G (and into Q's head when it learns here)
    for module in ([D] if q_update == "d" else [D.features, D.head]):
        module.requires_grad_(False)
    try:
        fake_logits_g, q_g = D(fake)
        gan = losses.g_loss_nonsaturating(fake_logits_g)
        q_g_cat = read_codes(fake)
        info = info_loss(q_g, latent.categories, latent.continuous, lambda_cont, q_g_cat)
        loss_g = gan + info
        _check_finite(loss_g, "generator loss", step)
        opt_g.zero_grad()
        loss_g.backward()
        opt_g.step()
    finally:
        D.requires_grad_(True)

    read, read_cat = (q, q_cat) if q_update == "d" else (q_g, q_g_cat)
    read = read if read_cat is None else read_cat
    codes = _labels(latent.categories, read.logits.shape[1], read.logits)
    q_accuracy = float((read.logits.data.argmax(axis=1) == codes).mean())
    return InfoGANStats(loss_d_value, gan.item(), info.item(), _mean_probability(real_logits),
                        _mean_probability(fake_logits), q_accuracy)


def generate_infogan(G, z, categories, continuous, batch_size=256):
    """G(z, c, s) in evaluation mode without a graph, as an array (N, nc, 28, 28); z (N, nz) and
    s (N, M) Tensors or arrays, c (N,) ints. G's training mode is restored afterwards."""
    z = z if isinstance(z, Tensor) else Tensor(z)
    s = continuous if isinstance(continuous, Tensor) else Tensor(continuous)
    c = categories.data if isinstance(categories, Tensor) else categories
    if len(c) != z.shape[0] or s.shape[0] != z.shape[0]:
        raise ValueError(f"{z.shape[0]} noise vectors but {len(c)} categorical and "
                         f"{s.shape[0]} continuous codes")
    was_training = G.training
    G.eval()
    try:
        with no_grad():
            xp = backend.array_module(z.data)
            parts = [G(Tensor._wrap(z.data[i:i + batch_size]), c[i:i + batch_size],
                       Tensor._wrap(s.data[i:i + batch_size])).data
                     for i in range(0, z.shape[0], batch_size)]
            return xp.concatenate(parts)
    finally:
        G.train(was_training)
