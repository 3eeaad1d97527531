"""Differentiable augmentation for GANs on small data sets (DiffAugment, Zhao et al. 2020).

A discriminator trained on a few thousand images memorises them and its gradient stops guiding
G. DiffAugment applies the same random transformation T to every image D sees, real and fake,
in both players' steps:

    L_D = -E log D(T(x)) - E log(1 - D(T(G(z))))        L_G = -E log D(T(G(z)))

T must be differentiable, since G's gradient flows through T(G(z)); it must also be applied to
the real images, or D learns to spot the augmentation instead of the fakes. The transformations
here are written with the existing ops (matmul, mul, add), so their backward, and its backward
for a gradient penalty, come for free:

    translation  shift each image by (dy, dx), |dy|, |dx| <= ratio * size, filling with the
                 background: T(x) = S_y (x - b) S_x^T + b, with S a 0/1 shift matrix per image
    cutout       blank one square of side ratio * size at a random place per image:
                 T(x) = (x - b) * M + b, with M a 0/1 mask per image

b is the background value (-1 for MNIST scaled to [-1, 1]: blank paper, not grey). The random
draws come from minigan's seeded CPU generator, which checkpoints store, so a resumed run draws
the very same transformations.
"""
import numpy as np

from .. import backend
from ..autograd import Tensor
from ..functional.linalg import matmul
from ..functional.shape import transpose

POLICIES = ("translation", "cutout")


def _shift_matrices(shifts, size, like):
    """(N, 1, size, size) 0/1 matrices S with (S v)[i] = v[i - shift]: row i of the output takes
    row i - shift of the input, zero where that falls outside."""
    idx = np.arange(size)
    s = (idx[None, :, None] - shifts[:, None, None]) == idx[None, None, :]
    return Tensor(backend.to_device(s[:, None].astype(like.dtype), like.device))


def translate(x, shifts_y, shifts_x, background=0.0):
    """x (N, C, H, W) shifted by shifts_y[n] rows down and shifts_x[n] columns right per image
    (integer arrays (N,)), uncovered pixels set to ``background``."""
    n, _, h, w = x.shape
    sy = _shift_matrices(np.asarray(shifts_y), h, x)
    sxt = transpose(_shift_matrices(np.asarray(shifts_x), w, x))
    return matmul(matmul(sy, x - background), sxt) + background


def cutout(x, top, left, size, background=0.0):
    """x (N, C, H, W) with the square [top[n], top[n] + size) x [left[n], left[n] + size) of
    image n (clipped to the image) set to ``background``."""
    n, _, h, w = x.shape
    rows = np.arange(h)[None, :, None]
    cols = np.arange(w)[None, None, :]
    top, left = np.asarray(top)[:, None, None], np.asarray(left)[:, None, None]
    inside = (rows >= top) & (rows < top + size) & (cols >= left) & (cols < left + size)
    mask = Tensor(backend.to_device((~inside)[:, None].astype(x.dtype), x.device))
    return (x - background) * mask + background


class DiffAugment:
    """T(x) for ``aug(x)``: the transformations of ``policy`` in order, freshly drawn per image
    at every call. translation_ratio 1/8 and cutout_ratio 1/2 are the paper's (28x28: shifts of
    up to int(28 / 8 + 0.5) = 4 pixels, a 14x14 square)."""

    def __init__(self, policy=POLICIES, translation_ratio=0.125, cutout_ratio=0.5,
                 background=-1.0):
        if isinstance(policy, str):   # the examples' flag form: "translation,cutout"
            policy = tuple(p.strip() for p in policy.split(",") if p.strip())
        unknown = [p for p in policy if p not in POLICIES]
        if unknown:
            raise ValueError(f"DiffAugment: unknown policy {unknown}; choose from {POLICIES}")
        for name, r in (("translation_ratio", translation_ratio), ("cutout_ratio", cutout_ratio)):
            if not 0 <= r <= 1:
                raise ValueError(f"DiffAugment: {name} must be in [0, 1], got {r}")
        self.policy, self.background = tuple(policy), float(background)
        self.translation_ratio, self.cutout_ratio = translation_ratio, cutout_ratio

    def __call__(self, x):
        if x.ndim != 4:
            raise ValueError(f"DiffAugment expects images (N, C, H, W), got shape {x.shape}")
        n, _, h, w = x.shape
        rng = backend.rng("cpu")
        for p in self.policy:
            if p == "translation":
                ry = int(h * self.translation_ratio + 0.5)   # the paper's rounding
                rx = int(w * self.translation_ratio + 0.5)
                x = translate(x, rng.integers(-ry, ry + 1, n), rng.integers(-rx, rx + 1, n),
                              self.background)
            else:
                size = int(min(h, w) * self.cutout_ratio + 0.5)
                # the square's centre anywhere in the image, so it may hang over an edge
                top = rng.integers(0, h + 1 - size % 2, n) - size // 2
                left = rng.integers(0, w + 1 - size % 2, n) - size // 2
                x = cutout(x, top, left, size, self.background)
        return x

    def __repr__(self):
        return (f"DiffAugment(policy={self.policy}, translation_ratio={self.translation_ratio}, "
                f"cutout_ratio={self.cutout_ratio}, background={self.background})")
