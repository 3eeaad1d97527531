"""Binarised digits: the data a Bernoulli likelihood is defined on."""
import numpy as np

THRESHOLD = 128   # pixel >= 128 (of 255) is on: half the grey range


def binarize(images, threshold=THRESHOLD, dtype=np.float32):
    """uint8 pixels (N, H, W) or (N, C, H, W) -> ``dtype`` {0, 1}, shape (N, C, H, W): 1 where the
    pixel is >= ``threshold``. A fixed threshold, not a random draw per pixel (the "stochastic
    binarisation" of the PixelCNN paper's data), so an image's binary version never changes and
    a held-out number is deterministic."""
    if images.dtype != np.uint8:
        raise TypeError(f"binarize expects uint8 pixels, got dtype {images.dtype}")
    if images.ndim not in (3, 4):
        raise ValueError(f"binarize expects (N, H, W) or (N, C, H, W) images, got shape "
                         f"{images.shape}")
    if not 1 <= threshold <= 255:   # outside it every pixel lands on the same side
        raise ValueError(f"binarize: threshold must be in [1, 255] for uint8 pixels, got "
                         f"{threshold}")
    if images.ndim == 3:
        images = images[:, None]
    return (images >= threshold).astype(dtype)
