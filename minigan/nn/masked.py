"""The masked convolution of PixelCNN (van den Oord et al. 2016), built on ``F.conv2d``.

An autoregressive image model predicts pixel i from pixels 0 .. i-1 in raster order (row by row,
left to right). A convolution centred on pixel (r, c) sees its neighbours below and to the right
as well; the mask zeroes the kernel taps that would look at them:

    mask A (first layer):  taps above the centre row, and left of the centre in the centre row
    mask B (later layers): the same, plus the centre tap itself

Mask A keeps the first layer from seeing the pixel it predicts; after it, a feature at (r, c)
already depends only on pixels before (r, c), so later layers may include their centre (mask B).
The channels are not split into colour groups: this is the single-channel (binary MNIST) case.
"""
import numpy as np

from .. import backend
from .. import functional as F
from .layers import Conv2d

MASK_TYPES = ("A", "B")


def causal_mask(mask_type, kernel_size, dtype=None):
    """(kh, kw) array of ones on the taps a ``mask_type`` ("A" or "B") kernel may use, zeros on
    the rest (see the module docstring). The kernel must have odd sides, so it has a centre."""
    if mask_type not in MASK_TYPES:
        raise ValueError(f"mask_type must be 'A' or 'B', got {mask_type!r}")
    kh, kw = kernel_size
    if kh % 2 == 0 or kw % 2 == 0:
        raise ValueError(f"a masked convolution needs odd kernel sides (a centre tap), "
                         f"got kernel_size {kernel_size}")
    mask = np.zeros((kh, kw), dtype=dtype or backend.get_default_dtype())
    mask[:kh // 2, :] = 1                                  # the rows above the centre
    mask[kh // 2, :kw // 2 + (mask_type == "B")] = 1       # left of the centre (and it, for B)
    return mask


class MaskedConv2d(Conv2d):
    """Conv2d whose weight is multiplied by a fixed causal mask on every call:
    y = conv2d(x, weight * mask, bias), mask of shape (1, 1, kh, kw) broadcast over the channels.

    The mask multiplies the weight inside the graph, so the gradient reaching a masked weight is
    exactly zero and the optimizer never moves it (the weight is zeroed there at construction as
    well, so ``weight`` itself shows what the layer uses). padding defaults to kernel_size // 2:
    the output has the input's height and width, output (r, c) predicting input (r, c).
    """

    def __init__(self, mask_type, in_channels, out_channels, kernel_size, stride=1, padding=None,
                 bias=True):
        kernel = (kernel_size,) * 2 if isinstance(kernel_size, int) else tuple(kernel_size)
        mask = causal_mask(mask_type, kernel)      # checked before any weight is drawn
        if padding is None:
            padding = (kernel[0] // 2, kernel[1] // 2)
        super().__init__(in_channels, out_channels, kernel, stride, padding, bias)
        self.mask_type = mask_type
        self.register_buffer("mask", mask.reshape(1, 1, *kernel).astype(self.weight.dtype))
        self.weight.data *= self.mask.data

    def forward(self, x):
        return F.conv2d(x, self.weight * self.mask, self.bias, self.stride, self.padding)

    def extra_repr(self):
        return f"mask_type={self.mask_type!r}, " + super().extra_repr()
