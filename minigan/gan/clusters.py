"""Self-conditioning on clusters: an unconditional generator made of a conditional DCGAN and the
clusters of its training images (after Liu et al. 2020, "Diverse Image Generation via
Self-Conditioned GANs").

    1. k-means of the training images' pixels: K clusters, a cluster y_i per image and the prior
       pi_k = |cluster k| / N                                            (:func:`cluster_images`)
    2. train the conditional DCGAN of :mod:`minigan.gan.conditional` on the pairs (x_i, y_i) as
       if the clusters were labels (no label of the data set is used)
    3. sample  k ~ pi,  z ~ N(0, I),  x = G(z, k)             (:class:`ClusterMixtureGenerator`)

Why it helps where data are few: a cluster of pixels holds images of one shape (on the bundled
digits, K = 100 clusters are 83-85% one digit), so G learns K narrow distributions instead of one
broad one and never has to pass through half-drawn shapes between them; D compares each fake
with real images of its own cluster; and sampling from the prior gives every cluster its share
of the data, where an unconditional G drifts (the plain DCGAN draws digit 9 17-19% of the time).
Liu et al. cluster D's features and re-cluster as training goes; clustering the pixels once,
before training, is the simplest form and already enough here (benchmarks/RESULTS.md, issue 17).

:class:`ClusterMixtureGenerator` is the whole mixture as one unconditional generator G(z): the
first noise coordinate, z_0 ~ N(0, 1), picks the cluster through the prior's inverse CDF,

    k = #{ j : t_j <= z_0 },   t_j = Phi^{-1}(pi_0 + ... + pi_j)   for j < K - 1,

(so P(k) = pi_k exactly) and the other nz - 1 coordinates are the conditional G's noise. G(z)
is then a function of z alone, and everything written for unconditional generators works on it
unchanged: sample grids, interpolation, the metrics, the EMA, ``examples.sample``.
"""
import warnings
from statistics import NormalDist
from typing import NamedTuple

import numpy as np

from .. import backend
from .. import nn
from ..autograd import Tensor
from .conditional import ConditionalDiscriminator, ConditionalGenerator
from .models import dcgan_init_

# Lloyd iterations after k-means++'s start: on the bundled digits (K = 100, seed 0) 2 of 4,500
# images still move between iterations 30 and 40, none after
KMEANS_ITERATIONS = 50
# Larger sets are clustered on this many of their images, drawn at random, and every image then
# goes to its nearest centre: scipy's k-means took 173 s for 60,000 digits (K = 100)
FIT_IMAGES = 5000


class Clusters(NamedTuple):
    """k-means of a set of images: ``labels`` int64 (N,) in [0, K), the cluster of each image;
    ``prior`` float64 (K,), the clusters' shares of the images (each > 0, summing to 1)."""
    labels: np.ndarray
    prior: np.ndarray


def cluster_images(images, k, seed=0, fit_images=FIT_IMAGES):
    """k-means (k-means++ start, scipy's ``kmeans2``) of images (N, ...) on their pixels, seeded
    by ``seed``: the same images and seed give the same :class:`Clusters`. Above ``fit_images``
    images the centres are fitted on that many of them (a seeded random choice) and every image
    is then given its nearest centre. Raises ValueError for k outside [1, N], non-finite
    pixels, or a cluster left empty."""
    from scipy.cluster.vq import kmeans2, vq   # imported when used, as metrics/matching.py does

    x = np.asarray(backend.as_numpy(images))
    if x.ndim < 2 or len(x) == 0:
        raise ValueError(f"cluster_images expects images (N, ...) with N >= 1, got shape {x.shape}")
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or not 1 <= k <= len(x):
        raise ValueError(f"cluster_images: k must be an integer in [1, {len(x)}] (the number "
                         f"of images), got {k!r}")
    flat = x.reshape(len(x), -1).astype(np.float64)
    if not np.isfinite(flat).all():
        raise ValueError("cluster_images: the images hold NaN or infinite pixels")
    rng = np.random.default_rng([seed, 7])
    fit = flat if len(flat) <= fit_images else flat[rng.choice(len(flat), fit_images,
                                                               replace=False)]
    if len(fit) < k:
        raise ValueError(f"cluster_images: k = {k} is more than the {len(fit)} images fitted "
                         "(fit_images)")
    with warnings.catch_warnings():   # an empty cluster is refused below, in these words
        warnings.simplefilter("ignore")
        centres, labels = kmeans2(fit, int(k), iter=KMEANS_ITERATIONS, minit="++",
                                  missing="warn", rng=rng)
    if fit is not flat:   # every image to its nearest centre
        labels = vq(flat, centres, check_finite=False)[0]
    sizes = np.bincount(labels, minlength=k)
    if (sizes == 0).any():
        raise ValueError(f"cluster_images: {int((sizes == 0).sum())} of the {k} clusters ended "
                         f"empty (the images have fewer than {k} distinct groups); choose a "
                         "smaller k")
    return Clusters(labels.astype(np.int64), sizes / sizes.sum())


def _check_prior(prior):
    p = np.asarray(prior, dtype=np.float64)
    if p.ndim != 1 or len(p) == 0 or not np.isfinite(p).all() or (p <= 0).any():
        raise ValueError(f"prior must be a non-empty list of positive cluster shares, "
                         f"got {prior!r}")
    if abs(p.sum() - 1.0) > 1e-6:
        raise ValueError(f"prior must sum to 1, got {p.sum():.8g}")
    return p / p.sum()


class ClusterMixtureGenerator(nn.Module):
    """G(z): noise (N, nz) -> images (N, nc, 28, 28) in [-1, 1], the mixture over clusters of a
    conditional DCGAN generator: z[:, 0] picks cluster k with probability prior[k] (see the
    module's docstring), and ``self.net`` (a :class:`ConditionalGenerator` with nz - 1 noise
    inputs and len(prior) classes) draws G(z[:, 1:], k). Train ``self.net`` with the clusters of
    the real images as labels (:func:`~minigan.gan.conditional.conditional_train_step`)."""

    def __init__(self, nz=100, ngf=64, nc=1, prior=(1.0,)):
        super().__init__()
        if isinstance(nz, bool) or not isinstance(nz, int) or nz < 2:
            raise ValueError(f"ClusterMixtureGenerator needs nz >= 2 (one coordinate picks the "
                             f"cluster), got {nz!r}")
        p = _check_prior(prior)
        self.nz, self.ngf, self.nc = nz, ngf, nc
        self.prior = tuple(float(v) for v in p)
        # the upper ends of clusters 0 .. K-2 on z_0's scale: Phi^{-1} of the cumulative prior
        self.thresholds = tuple(NormalDist().inv_cdf(min(c, 1.0 - 1e-12))
                                for c in np.cumsum(p)[:-1])
        self.net = ConditionalGenerator(nz - 1, ngf, nc, num_classes=len(p))

    @property
    def num_clusters(self):
        return len(self.prior)

    def clusters_of(self, z):
        """The cluster (int64 (N,), on z's device) that each noise vector z (N, nz) draws from."""
        data = z.data if isinstance(z, Tensor) else z
        xp = backend.array_module(data)
        edges = xp.asarray(self.thresholds, dtype=data.dtype)
        return xp.searchsorted(edges, data[:, 0], side="right").astype(xp.int64)

    def forward(self, z):
        if z.ndim != 2 or z.shape[1] != self.nz:
            raise ValueError(f"ClusterMixtureGenerator expects noise of shape (N, {self.nz}), "
                             f"got {z.shape}")
        return self.net(z[:, 1:], self.clusters_of(z))


def make_cluster_dcgan(nz=100, ngf=64, ndf=64, nc=1, prior=(1.0,)):
    """(G, D): a :class:`ClusterMixtureGenerator` and the conditional DCGAN discriminator for
    its clusters, both DCGAN-initialised from minigan's seeded CPU generator."""
    G = ClusterMixtureGenerator(nz, ngf, nc, prior).apply(dcgan_init_)
    return G, ConditionalDiscriminator(ndf, nc, num_classes=G.num_clusters).apply(dcgan_init_)
