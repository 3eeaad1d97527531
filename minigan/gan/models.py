"""The DCGAN generator and discriminator for 28x28 single-channel images (MNIST), and DCGAN init.

Radford, Metz & Chintala (2016), scaled down to 28x28 as in PyTorch's DCGAN examples:

    Generator      z (N, nz) -> ConvT(nz, 4g, 7, 1, 0) BN ReLU    -> (N, 4g, 7, 7)
                              ConvT(4g, 2g, 4, 2, 1) BN ReLU     -> (N, 2g, 14, 14)
                              ConvT(2g, nc, 4, 2, 1) Tanh        -> (N, nc, 28, 28) in [-1, 1]
    Discriminator  x (N, nc, 28, 28) -> Conv(nc, d, 4, 2, 1) LeakyReLU(0.2)    -> (N, d, 14, 14)
                              Conv(d, 2d, 4, 2, 1) BN LeakyReLU(0.2)            -> (N, 2d, 7, 7)
                              Conv(2d, 1, 7, 1, 0)                              -> (N,) logits

with g = ngf (64 by default: widths 256, 128) and d = ndf (64: widths 64, 128); with
``spectral_norm=True`` D's convolutions are spectrally normalised and its batch norm dropped. A convolution
followed by batch norm has no bias: BN subtracts the per-channel mean, which would cancel it.
The discriminator returns logits, not probabilities: the losses take log-sigmoids in a stable form.
"""
from .. import functional as F
from .. import nn

LEAK = 0.2  # LeakyReLU slope in the discriminator (DCGAN paper)


class Generator(nn.Module):
    """G(z): noise (N, nz) or (N, nz, 1, 1) -> images (N, nc, 28, 28) in [-1, 1]."""

    def __init__(self, nz=100, ngf=64, nc=1):
        super().__init__()
        self.nz, self.ngf, self.nc = nz, ngf, nc
        self.net = nn.Sequential(
            nn.ConvTranspose2d(nz, ngf * 4, 7, 1, 0, bias=False),
            nn.BatchNorm2d(ngf * 4),
            nn.ReLU(),
            nn.ConvTranspose2d(ngf * 4, ngf * 2, 4, 2, 1, bias=False),
            nn.BatchNorm2d(ngf * 2),
            nn.ReLU(),
            nn.ConvTranspose2d(ngf * 2, nc, 4, 2, 1, bias=False),
            nn.Tanh(),
        )

    def forward(self, z):
        if z.ndim == 2:
            z = F.reshape(z, (z.shape[0], z.shape[1], 1, 1))
        if z.ndim != 4 or z.shape[1:] != (self.nz, 1, 1):
            raise ValueError(f"Generator expects noise of shape (N, {self.nz}) or "
                             f"(N, {self.nz}, 1, 1), got {z.shape}")
        return self.net(z)


class Discriminator(nn.Module):
    """D(x): images (N, nc, 28, 28) -> logits (N,); sigmoid(D(x)) is the probability x is real."""

    def __init__(self, ndf=64, nc=1, batch_norm=True):
        super().__init__()
        self.ndf, self.nc = ndf, nc
        self.net = nn.Sequential(
            nn.Conv2d(nc, ndf, 4, 2, 1, bias=False),
            nn.LeakyReLU(LEAK),
            nn.Conv2d(ndf, ndf * 2, 4, 2, 1, bias=not batch_norm),
            nn.BatchNorm2d(ndf * 2) if batch_norm else nn.Identity(),
            nn.LeakyReLU(LEAK),
            nn.Conv2d(ndf * 2, 1, 7, 1, 0, bias=False),
        )

    def forward(self, x):
        if x.ndim != 4 or x.shape[1:] != (self.nc, 28, 28):
            raise ValueError(f"Discriminator expects images of shape (N, {self.nc}, 28, 28), "
                             f"got {x.shape}")
        return F.reshape(self.net(x), (x.shape[0],))


def dcgan_init_(module):
    """DCGAN's initialisation, in place, for ``model.apply(dcgan_init_)``: convolution weights
    ~ N(0, 0.02), batch-norm weights ~ N(1, 0.02), batch-norm biases 0."""
    if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d)):
        nn.init.normal_(module.weight, 0.0, 0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.BatchNorm2d):
        nn.init.normal_(module.weight, 1.0, 0.02)
        nn.init.zeros_(module.bias)
    return module


def make_dcgan(nz=100, ngf=64, ndf=64, nc=1, spectral_norm=False):
    """(G, D), both DCGAN-initialised from minigan's seeded CPU generator (call
    ``minigan.manual_seed`` first for a reproducible pair).

    ``spectral_norm``: SN-GAN's discriminator (Miyato et al., 2018): every convolution of D
    spectrally normalised and no batch norm in D (the normalisation takes its place; the middle
    convolution gets the bias that batch norm made redundant)."""
    G = Generator(nz, ngf, nc).apply(dcgan_init_)
    D = Discriminator(ndf, nc, batch_norm=not spectral_norm).apply(dcgan_init_)
    if spectral_norm:
        for layer in D.modules():
            if isinstance(layer, nn.Conv2d):
                nn.utils.spectral_norm(layer)
    return G, D
