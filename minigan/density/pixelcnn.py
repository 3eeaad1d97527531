"""PixelCNN (van den Oord, Kalchbrenner & Kavukcuoglu 2016) for binary images.

The exact likelihood of an image, factorised in raster order (row by row, left to right):

    log p(x) = sum_i log p(x_i | x_1 .. x_{i-1}),   p(x_i = 1 | x_<i) = sigmoid(l_i)

One network computes all 784 logits l_i in one pass, because its convolutions are masked
(:class:`minigan.nn.MaskedConv2d`) so that output i only ever sees inputs before i:

    x (N, 1, H, W) -> MaskedConv A (1, 2h, 7x7)
                   -> `layers` residual blocks:  y + [ReLU Conv1x1(2h, h) ReLU MaskedConv B
                                                      (h, h, 3x3) ReLU Conv1x1(h, 2h)](y)
                   -> ReLU Conv1x1(2h, 2h) ReLU Conv1x1(2h, 1)  -> logits (N, 1, H, W)

(the paper's residual block, figure 5). Training is one pass and a summed binary cross-entropy;
sampling is 784 passes, one per pixel, each drawing pixel i from the logits the previous ones
determine. The model has no batch norm, so training and evaluation mode compute the same thing.
"""
import numpy as np

from .. import backend
from .. import nn
from ..autograd import Tensor, no_grad
from . import losses


class ResidualBlock(nn.Module):
    """y + f(y) with f = ReLU, 1x1 (2h -> h), ReLU, masked 3x3 B (h -> h), ReLU, 1x1 (h -> 2h)."""

    def __init__(self, h):
        super().__init__()
        self.net = nn.Sequential(
            nn.ReLU(), nn.Conv2d(2 * h, h, 1),
            nn.ReLU(), nn.MaskedConv2d("B", h, h, 3),
            nn.ReLU(), nn.Conv2d(h, 2 * h, 1),
        )

    def forward(self, y):
        return y + self.net(y)


class PixelCNN(nn.Module):
    """Binary images (N, 1, H, W) with pixels in {0, 1} -> logits (N, 1, H, W), where
    sigmoid(logits[n, 0, r, c]) = p(x[n, 0, r, c] = 1 | the pixels before (r, c)).

    h: half the width of the residual stream (2h channels), layers: residual blocks,
    first_kernel: the side of the first (mask A) convolution."""

    def __init__(self, h=32, layers=5, first_kernel=7):
        super().__init__()
        self.h, self.layers, self.first_kernel = h, layers, first_kernel
        self.input = nn.MaskedConv2d("A", 1, 2 * h, first_kernel)
        self.blocks = nn.Sequential(*[ResidualBlock(h) for _ in range(layers)])
        self.output = nn.Sequential(nn.ReLU(), nn.Conv2d(2 * h, 2 * h, 1),
                                    nn.ReLU(), nn.Conv2d(2 * h, 1, 1))

    @property
    def rows_above(self):
        """How many rows above a pixel its logit can depend on: each masked kernel reaches
        kernel // 2 rows up (the 1x1 convolutions none)."""
        return self.first_kernel // 2 + self.layers

    def forward(self, x):
        if x.ndim != 4 or x.shape[1] != 1:
            raise ValueError(f"PixelCNN expects binary images of shape (N, 1, H, W), got {x.shape}")
        return self.output(self.blocks(self.input(x)))

    def nll(self, x):
        """-log p(x) per image (N,), in nats, exactly: the summed Bernoulli NLL of the logits."""
        return losses.bernoulli_nll(self(x), x)

    def spec(self):
        """What rebuilds this model from a checkpoint: its class and constructor arguments."""
        return {"class": f"{type(self).__module__}.{type(self).__name__}",
                "kwargs": {"h": self.h, "layers": self.layers, "first_kernel": self.first_kernel}}

    def row_logits(self, x, r):
        """The logits of row r (N, W) of images x (a raw (N, 1, H, W) array), computed from
        rows r - rows_above .. r of x only, each layer on just the rows the layers after it need.

        Exact: a logit in row r depends on no row below it and on at most ``rows_above`` rows
        above. Each masked layer reaches kernel // 2 rows up, so after a layer only the rows that
        the remaining reach still needs are kept (the rows dropped are the ones the crop's zero
        padding made wrong). Sampling runs on these crops: 3-4 rows per layer, not 28."""
        need = self.rows_above
        lo = max(0, r - need)
        need -= self.first_kernel // 2
        y = _last_rows(self.input(Tensor._wrap(x[:, :, lo:r + 1])), need + 1)
        for block in self.blocks:
            need -= 1                                       # the block's masked 3x3 reaches 1
            h = _last_rows(block.net[:4](y), need + 1)      # ReLU 1x1 ReLU masked-3x3
            y = _last_rows(y, need + 1) + block.net[4:](h)  # ReLU 1x1, and the skip
        return self.output(y)[:, 0, -1]

    def sample(self, n, shape=(28, 28), device="cpu", rng=None):
        """n images (n, 1, H, W) with pixels in {0, 1}, drawn pixel by pixel in raster order: the
        model's exact distribution. rng: a NumPy Generator for the uniform draws (default: a
        fresh one seeded 0), all drawn on the CPU first, so a seed gives the same images on any
        device up to the rounding of the logits."""
        rng = np.random.default_rng(0) if rng is None else rng
        height, width = shape
        uniforms = backend.to_device(rng.random((height, width, n)), device)
        xp = backend.array_module(uniforms)
        x = xp.zeros((n, 1, height, width), dtype=backend.get_default_dtype())
        was_training = self.training
        self.eval()
        try:
            with no_grad():
                for r in range(height):
                    for c in range(width):
                        logits = self.row_logits(x, r).data[:, c]
                        # pixel on when u < sigmoid(l), i.e. when logit(u) < l (no overflow)
                        u = uniforms[r, c]
                        x[:, 0, r, c] = (xp.log(u) - xp.log1p(-u) < logits).astype(x.dtype)
        finally:
            self.train(was_training)
        return x


def _last_rows(t, k):
    """The last k rows of (N, C, H, W) t (all of them when it has no more)."""
    return t[:, :, -k:] if t.shape[2] > k else t


def heldout_nll(model, images, batch_size=500):
    """The exact mean -log p(x) of ``images`` (N, 1, H, W) in {0, 1}, in nats per image, and in
    bits per dimension, as a dict of floats (no graph)."""
    total = 0.0
    with no_grad():
        for i in range(0, len(images), batch_size):
            total += float(model.nll(Tensor._wrap(images[i:i + batch_size])).data.sum())
    nats = total / len(images)
    dims = int(np.prod(images.shape[1:]))
    return {"nll": nats, "bits_per_dim": losses.nats_to_bits_per_dim(nats, dims)}
