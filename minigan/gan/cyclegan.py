"""CycleGAN (Zhu, Park, Isola & Efros, 2017): unpaired translation between domains X and Y.

Two generators, G: X -> Y and F: Y -> X, and two discriminators, D_Y (real y vs G(x)) and D_X
(real x vs F(y)), trained with the paper's full objective

    L(G, F, D_X, D_Y) = L_GAN(G, D_Y) + L_GAN(F, D_X) + lambda * L_cyc(G, F)
                        + lambda_identity * lambda * L_identity(G, F)
    L_cyc      = E_x ||F(G(x)) - x||_1 + E_y ||G(F(y)) - y||_1       (lambda = 10)
    L_identity = E_y ||G(y) - y||_1 + E_x ||F(x) - x||_1             (lambda_identity = 0.5)

and, where a transformation T of domain Y is known to keep what an image shows (not in the
paper; GcGAN's idea, Fu et al. 2019, with T chosen for the domain), lambda_consistency * lambda
* L_cons with L_cons = E_y ||F(T(y)) - F(y)||_1: both versions of y must translate alike
(``consistency_transform``, ``lambda_consistency``; off by default).

where L_GAN is the least-squares loss (:func:`~minigan.gan.losses.g_loss_least_squares`; D's half
is :func:`~minigan.gan.losses.d_loss_least_squares`), the discriminators see fakes drawn from an
:class:`ImagePool` of the last 50 generated images, and Adam (2e-4, betas (0.5, 0.999)) runs at
a constant rate for the first half of training and decays linearly to 0 over the second
(:func:`linear_decay`). The ||.||_1 are means of absolute differences, as the paper's code.

Networks, scaled down from the paper's 256x256 ones to 28x28 (or 32x32) images:

    ResnetGenerator     c7s1-g, d2g, d4g, R4g x n_blocks, u2g, ug, c7s1-out, tanh
        (c7s1-k: reflection pad 3, 7x7 conv, instance norm, ReLU; dk: 3x3 conv stride 2, IN,
        ReLU; Rk: residual block of two reflection-padded 3x3 convs; uk: 3x3 transposed conv
        stride 1/2, IN, ReLU)  (N, in, H, W) -> (N, out, H, W), H and W multiples of 4
    PatchDiscriminator  C(d) [no IN], C(2d)..., then stride-1 C and a 1-channel conv: one score
        per overlapping patch (N, 1, h, w); n_layers=1 sees 16x16 patches, the paper's
        n_layers=3 the 70x70 ones (:attr:`PatchDiscriminator.receptive_field`)

Every network keeps its constructor arguments in ``config()``, so a checkpoint can record what
rebuilds it: ``{"class": "minigan.gan.cyclegan.ResnetGenerator", "kwargs": {...}}`` (:func:`spec`).
"""
import copy
from typing import NamedTuple

import numpy as np

from .. import backend, nn
from ..autograd import Tensor
from ..optim import Adam
from .losses import d_loss_least_squares, g_loss_least_squares
from .train import _check_finite

LEAK = 0.2   # LeakyReLU slope of the PatchGAN (pix2pix / CycleGAN code)


def cyclegan_init_(module):
    """The paper code's initialisation, in place: conv weights ~ N(0, 0.02), biases 0 (instance
    norm here has no affine parameters)."""
    if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d)):
        nn.init.normal_(module.weight, 0.0, 0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    return module


class ResnetBlock(nn.Module):
    """x + conv-IN-ReLU-conv-IN(x), each 3x3 conv after a reflection pad of 1: (N, C, H, W) kept."""

    def __init__(self, channels):
        super().__init__()
        self.block = nn.Sequential(
            nn.ReflectionPad2d(1), nn.Conv2d(channels, channels, 3), nn.InstanceNorm2d(channels),
            nn.ReLU(),
            nn.ReflectionPad2d(1), nn.Conv2d(channels, channels, 3), nn.InstanceNorm2d(channels))

    def forward(self, x):
        return x + self.block(x)


class ResnetGenerator(nn.Module):
    """The paper's ResNet generator with ``n_downsampling`` stride-2 stages (2 as in the paper:
    28x28 -> 7x7 in the residual blocks) and ``n_blocks`` residual blocks at width 4g."""

    def __init__(self, in_channels=3, out_channels=3, ngf=16, n_blocks=3, n_downsampling=2):
        super().__init__()
        self.in_channels, self.out_channels, self.ngf = in_channels, out_channels, ngf
        self.n_blocks, self.n_downsampling = n_blocks, n_downsampling
        layers = [nn.ReflectionPad2d(3), nn.Conv2d(in_channels, ngf, 7), nn.InstanceNorm2d(ngf),
                  nn.ReLU()]
        width = ngf
        for _ in range(n_downsampling):
            layers += [nn.Conv2d(width, 2 * width, 3, stride=2, padding=1),
                       nn.InstanceNorm2d(2 * width), nn.ReLU()]
            width *= 2
        layers += [ResnetBlock(width) for _ in range(n_blocks)]
        for _ in range(n_downsampling):
            layers += [nn.ConvTranspose2d(width, width // 2, 3, stride=2, padding=1,
                                          output_padding=1),
                       nn.InstanceNorm2d(width // 2), nn.ReLU()]
            width //= 2
        layers += [nn.ReflectionPad2d(3), nn.Conv2d(width, out_channels, 7), nn.Tanh()]
        self.net = nn.Sequential(*layers)
        self.apply(cyclegan_init_)

    def config(self):
        return {"in_channels": self.in_channels, "out_channels": self.out_channels,
                "ngf": self.ngf, "n_blocks": self.n_blocks, "n_downsampling": self.n_downsampling}

    def forward(self, x):
        step = 2 ** self.n_downsampling
        if x.ndim != 4 or x.shape[1] != self.in_channels or x.shape[2] % step or x.shape[3] % step:
            raise ValueError(f"ResnetGenerator expects (N, {self.in_channels}, H, W) images with H "
                             f"and W multiples of {step}, got shape {x.shape}")
        return self.net(x)


class PatchDiscriminator(nn.Module):
    """PatchGAN (pix2pix's NLayerDiscriminator): (N, in, H, W) -> scores (N, 1, h, w), one per
    patch of :attr:`receptive_field` pixels square; no sigmoid (the least-squares loss takes raw
    scores)."""

    def __init__(self, in_channels=3, ndf=32, n_layers=1):
        super().__init__()
        self.in_channels, self.ndf, self.n_layers = in_channels, ndf, n_layers
        layers = [nn.Conv2d(in_channels, ndf, 4, stride=2, padding=1), nn.LeakyReLU(LEAK)]
        width = ndf
        for n in range(1, n_layers):
            layers += [nn.Conv2d(width, ndf * min(2 ** n, 8), 4, stride=2, padding=1),
                       nn.InstanceNorm2d(ndf * min(2 ** n, 8)), nn.LeakyReLU(LEAK)]
            width = ndf * min(2 ** n, 8)
        wide = ndf * min(2 ** n_layers, 8)
        layers += [nn.Conv2d(width, wide, 4, stride=1, padding=1), nn.InstanceNorm2d(wide),
                   nn.LeakyReLU(LEAK), nn.Conv2d(wide, 1, 4, stride=1, padding=1)]
        self.net = nn.Sequential(*layers)
        self.apply(cyclegan_init_)

    @property
    def receptive_field(self):
        """Side of the input patch one score sees: 4x4 kernels, strides 2 (n_layers times) then 1, 1."""
        size, jump = 1, 1
        strides = [2] * self.n_layers + [1, 1]
        for stride in strides:
            size += 3 * jump
            jump *= stride
        return size

    def config(self):
        return {"in_channels": self.in_channels, "ndf": self.ndf, "n_layers": self.n_layers}

    def forward(self, x):
        if x.ndim != 4 or x.shape[1] != self.in_channels:
            raise ValueError(f"PatchDiscriminator expects (N, {self.in_channels}, H, W) images, "
                             f"got shape {x.shape}")
        return self.net(x)


def spec(module):
    """What rebuilds ``module`` (untrained): its class's import path and constructor arguments."""
    cls = type(module)
    return {"class": f"{cls.__module__}.{cls.__qualname__}", "kwargs": module.config()}


class ImagePool:
    """The history of generated images the discriminators train on (Shrivastava et al. 2017):
    :meth:`query` returns, image by image, the new fake while the pool is filling (storing it);
    once ``pool_size`` images are stored, with probability 1/2 a stored image picked uniformly
    (which the new fake replaces), else the new fake itself. pool_size 0 returns the batch.
    Draws come from its own generator (``seed``), and :meth:`get_state` captures everything
    (:meth:`set_state` puts the stored images back on ``device``)."""

    def __init__(self, pool_size=50, seed=0, device="cpu"):
        if pool_size < 0:
            raise ValueError(f"pool_size must be >= 0, got {pool_size}")
        self.pool_size, self.device = int(pool_size), device
        self.images = []
        self.rng = np.random.default_rng([seed, 50])

    def query(self, images):
        """images: a raw array or Tensor (N, ...); returns a raw array (N, ...) with no graph."""
        images = images.data if isinstance(images, Tensor) else images
        if self.pool_size == 0:
            return images
        xp = backend.array_module(images)
        out = []
        for image in images:
            if len(self.images) < self.pool_size:
                self.images.append(image.copy())
                out.append(image)
            elif self.rng.random() < 0.5:
                k = int(self.rng.integers(self.pool_size))
                out.append(self.images[k])
                self.images[k] = image.copy()
            else:
                out.append(image)
        return xp.stack(out)

    def get_state(self):
        stored = backend.as_numpy(backend.array_module(self.images[0]).stack(self.images)) \
            if self.images else None
        return {"pool_size": self.pool_size, "images": stored,
                "rng": copy.deepcopy(self.rng.bit_generator.state)}

    def set_state(self, state):
        if state["pool_size"] != self.pool_size:
            raise ValueError(f"pool state is for pool_size={state['pool_size']}, this pool has "
                             f"{self.pool_size}")
        stored = state["images"]
        self.images = [] if stored is None else list(backend.to_device(np.asarray(stored), self.device))
        self.rng.bit_generator.state = copy.deepcopy(state["rng"])


def linear_decay(step, total, base_lr):
    """The learning rate at iteration ``step`` (1-based) of ``total``: ``base_lr`` for the first
    half, then falling linearly towards 0 over the second half (the last step keeps a sliver)."""
    if total < 1 or step < 0:
        raise ValueError(f"linear_decay: needs total >= 1 and step >= 0, got step {step} of total "
                         f"{total}")
    constant = total // 2
    return base_lr * (1.0 - max(0, step - constant) / (total - constant + 1))


class CycleGANStats(NamedTuple):
    """One iteration's losses (each before the update it drives): the generators' total and its
    parts, and the two discriminators' losses."""
    loss_g: float
    loss_gan: float
    loss_cycle: float
    loss_identity: float
    loss_d_x: float
    loss_d_y: float
    loss_consistency: float = 0.0


def _l1(a, b):
    return (a - b).abs().mean()


def _set_requires_grad(modules, flag):
    for m in modules:
        m.requires_grad_(flag)


class CycleGAN:
    """The four networks, their two Adam optimizers (one over G and F, one over D_X and D_Y, as
    the paper's code) and the two image pools, with :meth:`train_step`. X is domain A, Y is B.
    Move the networks to their device first: the pools keep their images where G's weights are."""

    def __init__(self, G, F, D_X, D_Y, lr=2e-4, betas=(0.5, 0.999), lambda_cycle=10.0,
                 lambda_identity=0.5, pool_size=50, seed=0, lambda_consistency=0.0,
                 consistency_transform=None):
        if lambda_consistency > 0 and consistency_transform is None:
            raise ValueError("CycleGAN: lambda_consistency > 0 needs a consistency_transform "
                             "(a function of a batch of Y images)")
        self.G, self.F, self.D_X, self.D_Y = G, F, D_X, D_Y
        self.lr, self.lambda_cycle, self.lambda_identity = lr, lambda_cycle, lambda_identity
        self.lambda_consistency, self.consistency_transform = (lambda_consistency,
                                                               consistency_transform)
        self.opt_G = Adam(list(G.parameters()) + list(F.parameters()), lr=lr, betas=betas)
        self.opt_D = Adam(list(D_X.parameters()) + list(D_Y.parameters()), lr=lr, betas=betas)
        device = next(iter(G.parameters())).device
        self.pool_X = ImagePool(pool_size, 2 * seed, device)
        self.pool_Y = ImagePool(pool_size, 2 * seed + 1, device)

    @property
    def models(self):
        return {"G": self.G, "F": self.F, "D_X": self.D_X, "D_Y": self.D_Y}

    @property
    def optimizers(self):
        return {"G": self.opt_G, "D": self.opt_D}

    def set_lr(self, lr):
        for opt in (self.opt_G, self.opt_D):
            for group in opt.param_groups:
                group["lr"] = lr

    def generator_losses(self, real_x, real_y):
        """(total, parts dict, fake_x, fake_y): the full objective of G and F on one batch."""
        fake_y, fake_x = self.G(real_x), self.F(real_y)
        loss_gan = g_loss_least_squares(self.D_Y(fake_y)) + g_loss_least_squares(self.D_X(fake_x))
        loss_cycle = _l1(self.F(fake_y), real_x) + _l1(self.G(fake_x), real_y)
        total = loss_gan + self.lambda_cycle * loss_cycle
        loss_identity = None
        if self.lambda_identity > 0:
            loss_identity = _l1(self.G(real_y), real_y) + _l1(self.F(real_x), real_x)
            total = total + self.lambda_identity * self.lambda_cycle * loss_identity
        loss_consistency = None
        if self.lambda_consistency > 0:
            loss_consistency = _l1(self.F(self.consistency_transform(real_y)), fake_x)
            total = total + self.lambda_consistency * self.lambda_cycle * loss_consistency
        return total, {"gan": loss_gan, "cycle": loss_cycle, "identity": loss_identity,
                       "consistency": loss_consistency}, fake_x, fake_y

    def train_step(self, real_x, real_y, step=None):
        """One iteration: G and F on the full objective (D's parameters frozen), then D_X and D_Y
        on real images against pooled fakes. Returns :class:`CycleGANStats`."""
        nets_d = (self.D_X, self.D_Y)
        _set_requires_grad(nets_d, False)
        total, parts, fake_x, fake_y = self.generator_losses(real_x, real_y)
        loss_g = _check_finite(total, "the generators' loss", step)
        self.opt_G.zero_grad()
        total.backward()
        self.opt_G.step()
        _set_requires_grad(nets_d, True)

        pooled_x = Tensor._wrap(self.pool_X.query(fake_x.data))
        pooled_y = Tensor._wrap(self.pool_Y.query(fake_y.data))
        loss_d_x = d_loss_least_squares(self.D_X(real_x), self.D_X(pooled_x))
        loss_d_y = d_loss_least_squares(self.D_Y(real_y), self.D_Y(pooled_y))
        d_x = _check_finite(loss_d_x, "D_X's loss", step)
        d_y = _check_finite(loss_d_y, "D_Y's loss", step)
        self.opt_D.zero_grad()
        (loss_d_x + loss_d_y).backward()
        self.opt_D.step()
        identity, consistency = parts["identity"], parts["consistency"]
        return CycleGANStats(loss_g, parts["gan"].item(), parts["cycle"].item(),
                             0.0 if identity is None else identity.item(), d_x, d_y,
                             0.0 if consistency is None else consistency.item())
