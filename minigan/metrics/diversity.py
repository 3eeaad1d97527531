"""Intra-class diversity: how different the images of one class are from each other.

A class-conditional generator can draw the right digit every time and still draw it the same way
every time; ACGAN is known to (Odena et al. 2017; its generator is rewarded for
the images its auxiliary classifier reads most easily). Label accuracy cannot see this, FID over
all classes only partly. Here, per class k, the mean distance between two different images of
the class in the shipped LeNet's feature space (the features FID uses):

    div_k = (2 / (n_k (n_k - 1))) sum_{i < j, y_i = y_j = k} || f(x_i) - f(x_j) ||_2

an unbiased estimate of E||f(X) - f(X')|| for two independent images X, X' of class k, so sets
of different sizes compare. :func:`intra_class_diversity` returns its mean over classes; divide
by the same number for real digits (:func:`diversity_ratio`) for a scale-free figure: 1 is as
varied as the data, below 1 less varied (0: one image per class).
"""
from typing import NamedTuple

import numpy as np


class Diversity(NamedTuple):
    """Mean over classes of the within-class mean pairwise feature distance, the per-class
    values float64 (K,), and how many images each class had, int64 (K,)."""
    mean: float
    per_class: np.ndarray
    counts: np.ndarray


def mean_pairwise_distance(features):
    """(2 / (n (n - 1))) sum_{i < j} ||f_i - f_j||_2 for features (n, F), n >= 2, in float64."""
    f = np.asarray(features, dtype=np.float64)
    if f.ndim != 2 or len(f) < 2:
        raise ValueError(f"need features of shape (n, F) with n >= 2, got {f.shape}")
    from scipy.spatial.distance import pdist   # the differences themselves: the |a|^2 + |b|^2
    return float(pdist(f).mean())               # - 2 a.b form loses near-equal pairs to rounding


def intra_class_diversity(features, labels, num_classes=10):
    """:class:`Diversity` of features (N, F) grouped by integer labels (N,) in [0, num_classes);
    every class needs at least 2 members."""
    features = np.asarray(features, dtype=np.float64)
    labels = np.asarray(labels).reshape(-1)
    if features.ndim != 2 or len(features) != len(labels):
        raise ValueError(f"expected features (N, F) and labels (N,), got {features.shape} and "
                         f"{labels.shape}")
    if labels.dtype.kind not in "iu":
        raise TypeError(f"labels must be integers, got dtype {labels.dtype}")
    counts = np.bincount(labels, minlength=num_classes) if labels.size else np.zeros(num_classes)
    if len(counts) > num_classes or labels.min() < 0:
        raise ValueError(f"labels must lie in [0, {num_classes})")
    if counts.min() < 2:
        raise ValueError(f"every class needs at least 2 images; counts per class: {counts.tolist()}")
    per_class = np.array([mean_pairwise_distance(features[labels == k]) for k in range(num_classes)])
    return Diversity(float(per_class.mean()), per_class, counts.astype(np.int64))


def image_diversity(images, labels, classifier=None, num_classes=10, value_range=(-1.0, 1.0)):
    """:func:`intra_class_diversity` of images (as ``prepare_images`` takes them) in the
    classifier's feature space (default: the shipped LeNet)."""
    from .classifier import load_classifier
    classifier = classifier or load_classifier()
    return intra_class_diversity(classifier.features(images, value_range), labels, num_classes)


def diversity_ratio(generated, real):
    """generated.mean / real.mean for two :class:`Diversity` results (1: as varied as the data)."""
    return generated.mean / real.mean


def reference_diversity(classifier=None, data_dir=None):
    """(:class:`Diversity` of real held-out digits, a description): the same reference set as
    ``minigan.metrics.reference_images`` (MNIST test from a local source, else the bundled
    subset's 500-digit hold-out), grouped by their true labels. Nothing is downloaded."""
    from ..data import load_mnist   # only when needed
    from .classifier import load_classifier
    classifier = classifier or load_classifier()
    split = load_mnist("test", data_dir=data_dir, download=False, verbose=False)
    images, labels = split
    src = split.source
    where = ("bundled MNIST subset hold-out" if src["source"] == "bundled"
             else f"MNIST test ({src['source']})")
    return (intra_class_diversity(classifier.features(images), labels.astype(np.int64)),
            f"{where}, {len(images)} digits")
