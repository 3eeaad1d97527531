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
import math

import numpy as np

from .. import backend
from ..autograd import Tensor
from ..functional.linalg import matmul
from ..functional.shape import reshape, transpose

POLICIES = ("translation", "cutout")


def _sampling_matrices(coords, size, like):
    """Linear-interpolation matrices A (coords.shape + (size,)) with (A v)[..., i] = v read at the
    fractional position coords[..., i], 0 outside [0, size - 1]: A[..., i, j] = max(0, 1 -
    |coords[..., i] - j|), the hat function, which puts weights 1 - f and f on the two nearest
    pixels."""
    a = np.maximum(0.0, 1.0 - np.abs(coords[..., None] - np.arange(size)))
    return Tensor(backend.to_device(a.astype(like.dtype), like.device))


def translate(x, shifts_y, shifts_x, background=0.0):
    """x (N, C, H, W) shifted by shifts_y[n] rows down and shifts_x[n] columns right per image
    (integer arrays (N,)), uncovered pixels set to ``background``."""
    _, _, h, w = x.shape
    # at whole-pixel positions the interpolation matrices are 0/1: row i reads row i - shift
    sy = _sampling_matrices(np.arange(h) - np.asarray(shifts_y)[:, None], h, x)[:, None]
    sx = _sampling_matrices(np.arange(w) - np.asarray(shifts_x)[:, None], w, x)[:, None]
    return matmul(matmul(sy, x - background), transpose(sx)) + background


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


def affine(x, scale, shear, shift_y, shift_x, background=0.0):
    """x (N, C, H, W) warped per image n about the image centre: zoomed by scale[n], sheared
    horizontally (row i moves shear[n] * (i - centre) pixels right: a slant), and shifted by
    (shift_y[n], shift_x[n]) pixels; bilinear sampling, uncovered pixels set to ``background``.
    The parameters are float arrays (N,). Two products with interpolation matrices, one
    over rows and one over each row's columns, so no rotation (it would not separate):

        T(x) = (S_y (x - b))  with each output row i multiplied by S_x[n, i]^T,  then + b
    """
    n, c, h, w = x.shape
    scale, shear = np.asarray(scale, float), np.asarray(shear, float)
    shift_y, shift_x = np.asarray(shift_y, float), np.asarray(shift_x, float)
    cy, cx = (h - 1) / 2, (w - 1) / 2
    rows, cols = np.arange(h), np.arange(w)
    # output row i reads input row (i - cy - dy) / scale + cy
    src_rows = (rows[None, :] - cy - shift_y[:, None]) / scale[:, None] + cy
    y = matmul(_sampling_matrices(src_rows, h, x)[:, None], x - background)   # (N, C, H, W)
    # output pixel (i, j) of a row reads column (j - cx - dx - shear (i - cy)) / scale + cx
    src_cols = ((cols[None, None, :] - cx - shift_x[:, None, None]
                 - shear[:, None, None] * (rows[None, :, None] - cy)) / scale[:, None, None] + cx)
    sxt = transpose(_sampling_matrices(src_cols, w, x))[:, None]          # (N, 1, H, W, W)
    out = matmul(reshape(y, (n, c, h, 1, w)), sxt)                         # (N, C, H, 1, W)
    return reshape(out, (n, c, h, w)) + background


class RandomAffine:
    """T(x) = :func:`affine` with parameters drawn per image at every call, as torchvision's
    ``RandomAffine(degrees=0, translate, scale, shear)`` draws them: a shift up to ``translate``
    of the image size each way, a zoom in ``scale``, a horizontal shear angle in [-shear, shear]
    degrees. Differentiable in x (the matrices are constants), so a gradient reaches whatever
    drew x. The draws come from minigan's seeded CPU generator, so a resumed run repeats them.

    InfoGAN's ``code_transform`` uses it: the categorical code has to be read from images warped
    this way, so it cannot be carried by slant, size or position, only by what survives them."""

    def __init__(self, translate=0.1, scale=(0.9, 1.1), shear=15.0, background=-1.0):
        if not 0 <= translate <= 1:
            raise ValueError(f"RandomAffine: translate must be in [0, 1], got {translate}")
        if len(scale) != 2 or not 0 < scale[0] <= scale[1]:
            raise ValueError(f"RandomAffine: scale must be (lo, hi) with 0 < lo <= hi, got {scale}")
        if not 0 <= shear < 90:
            raise ValueError(f"RandomAffine: shear must be in [0, 90) degrees, got {shear}")
        self.translate, self.scale, self.shear = float(translate), tuple(scale), float(shear)
        self.background = float(background)

    def __call__(self, x):
        if x.ndim != 4:
            raise ValueError(f"RandomAffine expects images (N, C, H, W), got shape {x.shape}")
        n, _, h, w = x.shape
        rng = backend.rng("cpu")
        k = math.tan(math.radians(self.shear))
        return affine(x, rng.uniform(*self.scale, n), rng.uniform(-k, k, n),
                      rng.uniform(-1, 1, n) * self.translate * h,
                      rng.uniform(-1, 1, n) * self.translate * w, self.background)

    def __repr__(self):
        return (f"RandomAffine(translate={self.translate}, scale={self.scale}, "
                f"shear={self.shear}, background={self.background})")


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
