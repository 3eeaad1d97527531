"""Frechet distance between two sets of images, in the feature space of minigan's MNIST classifier.

Each set's features (the classifier's 64-d penultimate layer) are summarised by a Gaussian with
their mean mu and covariance S; the distance between two such Gaussians is

    d^2 = ||mu1 - mu2||^2 + Tr(S1 + S2 - 2 (S1 S2)^{1/2})

(Frechet / 2-Wasserstein distance between Gaussians; "FID" of Heusel et al. 2017 is this on
Inception-v3 features). It is 0 for two sets with equal statistics and grows as they part.

Not comparable with published MNIST FIDs: those use Inception-v3 (ImageNet) features, these use a
small LeNet trained on MNIST, so numbers are on another scale. Compare runs scored with the same
classifier weights and the same numbers of samples (the estimate is biased upwards for small sets).

Only NumPy is needed: the trace of the matrix square root is found from two symmetric eigen-
decompositions (no scipy.linalg.sqrtm), see :func:`trace_sqrt_product`. Everything here works on
NumPy arrays in float64; features computed on a GPU are copied to the host first.
"""
import numpy as np

from .classifier import load_classifier


def gaussian_stats(features):
    """(mu (F,), S (F, F)): the mean and unbiased covariance of features (N, F), float64.

    Needs N >= 2. With N <= F the covariance is singular, which the distance handles, but the
    estimate is then poor: use a few hundred samples or more.
    """
    features = np.asarray(features, dtype=np.float64)
    if features.ndim != 2:
        raise ValueError(f"features must be (N, F), got shape {features.shape}")
    if len(features) < 2:
        raise ValueError(f"a covariance needs at least 2 samples, got {len(features)}")
    if not np.isfinite(features).all():
        raise ValueError("features contain NaN or inf")
    mu = features.mean(axis=0)
    centred = features - mu
    return mu, centred.T @ centred / (len(features) - 1)


def _symmetric_sqrt(s):
    """S^{1/2} for a symmetric positive semi-definite S: V diag(sqrt(w)) V^T from S = V diag(w) V^T,
    with the tiny negative eigenvalues that rounding leaves clipped to 0."""
    w, v = np.linalg.eigh(s)
    return (v * np.sqrt(np.clip(w, 0.0, None))) @ v.T


def trace_sqrt_product(s1, s2):
    """Tr((S1 S2)^{1/2}) for symmetric positive semi-definite S1, S2.

    S1 S2 = S1^{1/2} (S1^{1/2} S2) has the same eigenvalues as (S1^{1/2} S2) S1^{1/2} = M (AB and
    BA share their eigenvalues), and M is symmetric PSD, so its eigenvalues come from ``eigvalsh``
    and are >= 0 up to rounding. The trace of the square root is the sum of their square roots.
    """
    r = _symmetric_sqrt(s1)
    m = r @ s2 @ r
    m = (m + m.T) / 2        # exactly symmetric again after the rounding of the two products
    eigenvalues = np.linalg.eigvalsh(m)
    return float(np.sqrt(np.clip(eigenvalues, 0.0, None)).sum())


def frechet_distance(mu1, sigma1, mu2, sigma2):
    """||mu1 - mu2||^2 + Tr(S1) + Tr(S2) - 2 Tr((S1 S2)^{1/2}) for two Gaussians; >= 0."""
    mu1, mu2 = np.asarray(mu1, dtype=np.float64), np.asarray(mu2, dtype=np.float64)
    sigma1, sigma2 = np.asarray(sigma1, dtype=np.float64), np.asarray(sigma2, dtype=np.float64)
    d = mu1.shape[0] if mu1.ndim == 1 else None
    if d is None or mu2.shape != (d,) or sigma1.shape != (d, d) or sigma2.shape != (d, d):
        raise ValueError(f"expected means (F,) and covariances (F, F) of one F, got "
                         f"{mu1.shape}, {sigma1.shape}, {mu2.shape}, {sigma2.shape}")
    diff = mu1 - mu2
    value = diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2 * trace_sqrt_product(sigma1, sigma2)
    # mathematically >= 0; two identical sets can land a rounding error below it
    return max(float(value), 0.0)


def fid(real, fake, classifier=None, value_range=(-1.0, 1.0)):
    """Frechet distance between two image sets in the classifier's feature space (float >= 0).

    real, fake: images as :func:`minigan.metrics.prepare_images` accepts (NumPy, CuPy or Tensor;
    (N, 28, 28) uint8 or (N, 1, 28, 28) floats in ``value_range``...), at least 2 of each;
    the two sets may differ in size. classifier: a :class:`MnistClassifier` (default: the
    shipped one). On LeNet features, not Inception: see this module's docstring.
    """
    classifier = classifier or load_classifier()
    stats_real = gaussian_stats(classifier.features(real, value_range))
    stats_fake = gaussian_stats(classifier.features(fake, value_range))
    return frechet_distance(*stats_real, *stats_fake)
