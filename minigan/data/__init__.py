"""Data for minigan: IDX files, MNIST / Fashion-MNIST loading, the MNIST-M-like domain, minibatches and toy 2-D mixtures.

NumPy arrays in and out; nothing here knows about Tensors (the caller wraps batches).
"""
from .idx import IdxError, read_idx, write_idx
from .loader import Batches, to_unit_range
from .mnist import MnistSplit, cache_dir, load_bundled, load_mnist
from .mnist_m import digit_domains, grey_to_rgb, mnist_m, rgb_to_grey
from .toy import (gaussian_pdf, grid_modes, mixture_pdf, nearest_mode, ring_modes, sample_grid,
                  sample_mixture, sample_ring)

__all__ = [
    "IdxError", "read_idx", "write_idx",
    "Batches", "to_unit_range",
    "MnistSplit", "cache_dir", "load_bundled", "load_mnist",
    "digit_domains", "grey_to_rgb", "mnist_m", "rgb_to_grey",
    "gaussian_pdf", "grid_modes", "mixture_pdf", "nearest_mode", "ring_modes", "sample_grid",
    "sample_mixture", "sample_ring",
]
