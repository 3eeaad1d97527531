"""An "MNIST-M-like" colour domain built offline from MNIST digits, and the unpaired digit pair
CycleGAN trains on.

``mnist_m(digits, seed)`` draws each digit differently: its stroke made thinner, kept, or thicker
(a grey-level dilation), coloured, and blended over a procedurally generated colour texture,

    B = texture * (1 - alpha) + colour * alpha,    alpha = the restroked digit in [0, 1]

with the stroke colour pushed away from the texture's mean brightness so the digit stays
visible. Everything is drawn from ``seed`` (one generator per call), so the domain is the same on
every machine. uint8 (N, 28, 28) -> uint8 (N, 3, 28, 28).

``digit_domains(...)``: domain A is the first half of the training digits (grey, as they are),
domain B is ``mnist_m`` of the OTHER half, so no image of A has its partner in B. The labels of
B are returned for evaluation only (a translation keeps the digit, or not). The held-out split
gives B images of digits no model trained on.
"""
import numpy as np

THICKNESS = ("thin", "as drawn", "thick")


def _dilate(alpha):
    """Grey-level dilation by a 3x3 cross: each pixel the max of itself and its 4 neighbours."""
    out = alpha.copy()
    out[:, 1:] = np.maximum(out[:, 1:], alpha[:, :-1])
    out[:, :-1] = np.maximum(out[:, :-1], alpha[:, 1:])
    out[:, :, 1:] = np.maximum(out[:, :, 1:], alpha[:, :, :-1])
    out[:, :, :-1] = np.maximum(out[:, :, :-1], alpha[:, :, 1:])
    return out


def restroke(digits, thickness):
    """alpha in [0, 1], (N, H, W), of uint8 digits redrawn with per-image ``thickness`` (N,) of
    0 (thin: the anti-aliased rim faded by squaring), 1 (as drawn) or 2 (thick: dilated)."""
    alpha = digits.astype(np.float32) / 255.0
    thickness = np.asarray(thickness)
    out = alpha.copy()
    out[thickness == 0] = alpha[thickness == 0] ** 2
    thick = thickness == 2
    if thick.any():
        out[thick] = _dilate(alpha[thick])
    return out


def colour_textures(n, size, rng, waves=4):
    """(n, 3, size, size) float32 in [0, 1]: per image, a random base colour plus ``waves``
    plane waves per channel of random direction, 1-4 cycles across the image, phase and
    amplitude, plus a little pixel noise: smooth colourful backgrounds like MNIST-M's crops."""
    coords = np.arange(size, dtype=np.float32) / size
    yy, xx = np.meshgrid(coords, coords, indexing="ij")
    def draw(low, high, shape):
        return rng.uniform(low, high, shape).astype(np.float32)

    base = draw(0.15, 0.85, (n, 3, 1, 1))
    angle = draw(0, 2 * np.pi, (n, 3, waves, 1, 1))
    cycles = draw(1.0, 4.0, (n, 3, waves, 1, 1))
    phase = draw(0, 2 * np.pi, (n, 3, waves, 1, 1))
    amplitude = draw(0.04, 0.18, (n, 3, waves, 1, 1))
    along = np.cos(angle) * xx + np.sin(angle) * yy
    texture = base + (amplitude * np.sin(2 * np.pi * cycles * along + phase)).sum(axis=2)
    texture += rng.normal(0, 0.03, texture.shape).astype(np.float32)
    return np.clip(texture, 0.0, 1.0).astype(np.float32)


def _luminance(rgb):
    return 0.299 * rgb[:, 0] + 0.587 * rgb[:, 1] + 0.114 * rgb[:, 2]


def mnist_m(digits, seed=0, min_contrast=0.35):
    """Draw uint8 digits (N, H, W) as MNIST-M-like colour images, uint8 (N, 3, H, W).

    Per image: a thickness from :data:`THICKNESS`, a texture from :func:`colour_textures`, a
    uniform random stroke colour; when its luminance is within ``min_contrast`` of the texture's
    mean luminance the colour is replaced by its complement (1 - colour), or, if that is no better,
    pushed to black or white, so that every digit can be read."""
    digits = np.asarray(digits)
    if digits.dtype != np.uint8 or digits.ndim != 3:
        raise ValueError(f"mnist_m expects uint8 digits (N, H, W), got dtype {digits.dtype} "
                         f"and shape {digits.shape}")
    if digits.shape[1] != digits.shape[2]:
        raise ValueError(f"mnist_m expects square digits, got shape {digits.shape}")
    n, size = len(digits), digits.shape[1]
    rng = np.random.default_rng([seed, 14])
    thickness = rng.integers(0, len(THICKNESS), n)
    texture = colour_textures(n, size, rng)
    colour = rng.uniform(0.0, 1.0, (n, 3)).astype(np.float32)
    background = _luminance(texture.mean(axis=(2, 3)))
    weak = np.abs(_luminance(colour) - background) < min_contrast
    colour[weak] = 1.0 - colour[weak]
    still = np.abs(_luminance(colour) - background) < min_contrast
    colour[still] = np.where(background[still, None] > 0.5, 0.0, 1.0)
    alpha = restroke(digits, thickness)[:, None]
    image = texture * (1 - alpha) + colour[:, :, None, None] * alpha
    return np.round(image * 255).astype(np.uint8)


def grey_to_rgb(images):
    """(N, H, W) or (N, 1, H, W) -> (N, 3, H, W), the grey value in each channel."""
    images = np.asarray(images)
    if images.ndim == 3:
        images = images[:, None]
    if images.ndim != 4 or images.shape[1] != 1:
        raise ValueError(f"grey_to_rgb expects (N, H, W) or (N, 1, H, W), got {images.shape}")
    return np.repeat(images, 3, axis=1)


def rgb_to_grey(images):
    """(N, 3, H, W) -> (N, H, W): the channels' mean (what a grey-digit classifier looks at)."""
    if images.ndim != 4 or images.shape[1] != 3:
        raise ValueError(f"rgb_to_grey expects (N, 3, H, W), got {images.shape}")
    return images.mean(axis=1)


def digit_domains(train_images, train_labels, test_images, test_labels, seed=0):
    """The unpaired pair: a dict of uint8 RGB image arrays (N, 3, H, W) and their labels.

    train_a: the first half of the training digits (grey in 3 channels); train_b: ``mnist_m``
    of the second half; test_a / test_b: the held-out digits in both styles (test_b drawn with
    its own seed, so it is not a recolouring of any training image). Labels (``*_labels``) are
    for evaluation only."""
    half = len(train_images) // 2
    return {
        "train_a": grey_to_rgb(train_images[:half]), "train_a_labels": train_labels[:half],
        "train_b": mnist_m(train_images[half:], seed), "train_b_labels": train_labels[half:],
        "test_a": grey_to_rgb(test_images), "test_a_labels": test_labels,
        "test_b": mnist_m(test_images, seed + 1), "test_b_labels": test_labels,
    }
