"""Toy 2-D data: the Gaussian mixtures of the PacGAN mode-collapse protocol, and 1-D helpers.

PacGAN (Lin et al., 2018), following VEEGAN, trains on two mixtures with equal weights:

* ring: 8 modes on the unit circle at angles 2*pi*k/8, k = 0..7, each an isotropic Gaussian of
  std 0.01;
* grid: 25 modes at {-4, -2, 0, 2, 4}^2, std 0.05.

A point x is drawn by picking a mode m uniformly, then x = m + std * z with z ~ N(0, I).
All arrays here are NumPy on the CPU; the caller moves them to a device.
"""
import math

import numpy as np

RING_MODES = 8
RING_RADIUS = 1.0
RING_STD = 0.01
GRID_VALUES = (-4.0, -2.0, 0.0, 2.0, 4.0)
GRID_STD = 0.05


def _generator(rng):
    """Accept a numpy Generator, an int seed or None (fresh entropy)."""
    if isinstance(rng, np.random.Generator):
        return rng
    if rng is None or isinstance(rng, (int, np.integer)):
        return np.random.default_rng(rng)
    raise TypeError(f"rng must be a numpy.random.Generator, an int seed or None, got {type(rng).__name__}")


def ring_modes(n_modes=RING_MODES, radius=RING_RADIUS):
    """Mode centres (n_modes, 2) float64: radius * (cos(2*pi*k/n), sin(2*pi*k/n)), k = 0..n-1."""
    angles = 2.0 * np.pi * np.arange(n_modes) / n_modes
    return radius * np.stack([np.cos(angles), np.sin(angles)], axis=1)


def grid_modes(values=GRID_VALUES):
    """Mode centres (len(values)**2, 2) float64: every (x, y) with x, y in ``values``, x-major."""
    v = np.asarray(values, dtype=np.float64)
    xs, ys = np.meshgrid(v, v, indexing="ij")
    return np.stack([xs.ravel(), ys.ravel()], axis=1)


def sample_mixture(modes, std, n, rng=None, dtype=np.float32, return_modes=False):
    """n points of the equal-weight Gaussian mixture with these centres and a shared std.

    modes: (K, D) centres. Returns (n, D) points of ``dtype``; with ``return_modes`` also the
    (n,) int64 index of the mode each point was drawn from.
    """
    modes = np.asarray(modes, dtype=np.float64)
    if modes.ndim != 2 or modes.shape[0] == 0:
        raise ValueError(f"modes must be a non-empty (K, D) array of centres, got shape {modes.shape}")
    if not std >= 0:
        raise ValueError(f"std must be >= 0, got {std}")
    n = int(n)
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    g = _generator(rng)
    which = g.integers(0, modes.shape[0], size=n)
    points = (modes[which] + std * g.standard_normal((n, modes.shape[1]))).astype(dtype)
    return (points, which) if return_modes else points


def sample_ring(n, rng=None, std=RING_STD, dtype=np.float32, return_modes=False):
    """n points of the 8-Gaussian ring (PacGAN's 2D-ring)."""
    return sample_mixture(ring_modes(), std, n, rng, dtype, return_modes)


def sample_grid(n, rng=None, std=GRID_STD, dtype=np.float32, return_modes=False):
    """n points of the 25-Gaussian grid (PacGAN's 2D-grid)."""
    return sample_mixture(grid_modes(), std, n, rng, dtype, return_modes)


def nearest_mode(points, modes):
    """For each point the index of its nearest centre and the Euclidean distance to it.

    points (N, D), modes (K, D) -> (index (N,) int64, distance (N,) float64). Mode-coverage
    metrics count a mode as captured when enough samples lie within a few std of it.
    """
    p = np.asarray(points, dtype=np.float64)
    m = np.asarray(modes, dtype=np.float64)
    if p.ndim != 2 or m.ndim != 2 or p.shape[1] != m.shape[1]:
        raise ValueError(f"points (N, D) and modes (K, D) must agree in D, got {p.shape} and {m.shape}")
    d2 = ((p[:, None, :] - m[None, :, :]) ** 2).sum(axis=2)
    idx = d2.argmin(axis=1)
    return idx, np.sqrt(d2[np.arange(len(p)), idx])


def gaussian_pdf(x, mean=0.0, std=1.0):
    """Density of N(mean, std^2) at x: exp(-(x-mean)^2 / (2 std^2)) / (std * sqrt(2 pi))."""
    if not std > 0:
        raise ValueError(f"std must be > 0, got {std}")
    z = (np.asarray(x, dtype=np.float64) - mean) / std
    return np.exp(-0.5 * z * z) / (std * math.sqrt(2.0 * math.pi))


def mixture_pdf(x, modes, std):
    """Density of the equal-weight isotropic mixture at points x (N, D) -> (N,).

    p(x) = (1/K) * sum_k prod_d N(x_d; m_kd, std^2). Used to draw the true density under a
    "GAN Lab" plot and to score samples.
    """
    x = np.asarray(x, dtype=np.float64)
    m = np.asarray(modes, dtype=np.float64)
    if x.ndim != 2 or m.ndim != 2 or x.shape[1] != m.shape[1]:
        raise ValueError(f"x (N, D) and modes (K, D) must agree in D, got {x.shape} and {m.shape}")
    if not std > 0:
        raise ValueError(f"std must be > 0, got {std}")
    d2 = ((x[:, None, :] - m[None, :, :]) ** 2).sum(axis=2)
    norm = (2.0 * math.pi * std * std) ** (x.shape[1] / 2.0)
    return np.exp(-0.5 * d2 / (std * std)).mean(axis=1) / norm
