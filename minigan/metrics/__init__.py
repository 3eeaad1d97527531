"""Sample-quality metrics for MNIST-like images, seen through a small classifier trained with minigan.

    from minigan import metrics
    result = metrics.evaluate_images(samples)          # samples: (N, 1, 28, 28) in [-1, 1]
    print(metrics.format_metrics(result))

* ``fid(real, fake)``: Frechet distance between the two sets' feature Gaussians (fid.py). The
  features are those of the shipped LeNet (classifier.py), not Inception-v3: the numbers are not
  comparable with published MNIST FIDs, only with each other (same weights, same sample sizes).
* ``classifier_score(images)``: exp E[KL(p(y|x) || p(y))], the Inception Score's MNIST analogue, in
  [1, 10]: 10 when every image is confidently one digit and all digits are equally frequent.
* ``class_shares(images)``: the share of images predicted as each digit (mode dropping shows here).
* ``evaluate_images(images, real_images=None)``: all of them at once, in one pass over the images.

Every function takes NumPy arrays (or CuPy arrays, or minigan Tensors) of images, so samples from
any source, another framework included, are scored the same way; see ``prepare_images``.
"""
import weakref

from .classifier import (WEIGHTS_PATH, LeNet, MnistClassifier, class_shares, classifier_score,
                         load_classifier, prepare_images, read_classifier, save_classifier,
                         score_from_probabilities, shares_from_probabilities)
from .fid import fid, frechet_distance, gaussian_stats, trace_sqrt_product
from .diversity import (Diversity, diversity_ratio, image_diversity, intra_class_diversity,
                        mean_pairwise_distance, reference_diversity)
from .matching import CodeMatch, code_accuracy, confusion_counts, match_confusion

__all__ = ["LeNet", "MnistClassifier", "WEIGHTS_PATH", "load_classifier", "read_classifier",
           "save_classifier", "prepare_images", "classifier_score", "class_shares",
           "score_from_probabilities", "shares_from_probabilities", "fid", "frechet_distance",
           "gaussian_stats", "trace_sqrt_product", "reference_images", "evaluate_images",
           "format_metrics",
           "Diversity", "diversity_ratio", "image_diversity", "intra_class_diversity",
           "mean_pairwise_distance", "reference_diversity",
           "CodeMatch", "code_accuracy", "confusion_counts", "match_confusion"]


def reference_images(data_dir=None):
    """Real held-out digits to compare samples with: (uint8 images (N, 28, 28), a description).

    The MNIST "test" split from the first local source ``minigan.data.load_mnist`` finds (10,000
    digits), else the bundled subset's fixed hold-out (500 digits, 50 per class). Nothing is
    downloaded here. Which one was used is in the description: FIDs against different references
    are not comparable.
    """
    from ..data import load_mnist   # only when needed: scoring given images needs no data files
    split = load_mnist("test", data_dir=data_dir, download=False, verbose=False)
    src = split.source
    where = "bundled MNIST subset hold-out" if src["source"] == "bundled" else f"MNIST test ({src['source']})"
    return split.images, f"{where}, {src['count']} digits"


_reference_stats = weakref.WeakKeyDictionary()   # classifier -> (mu, sigma, count, description)


def _default_reference(classifier):
    if classifier not in _reference_stats:
        images, description = reference_images()
        _reference_stats[classifier] = (*gaussian_stats(classifier.features(images)), len(images),
                                        description)
    return _reference_stats[classifier]


def evaluate_images(images, real_images=None, classifier=None, value_range=(-1.0, 1.0)):
    """FID, classifier score and class shares of a set of images, as a dict.

    images: generated images as :func:`prepare_images` accepts them (``value_range`` says how
    float pixels are scaled). real_images: the real set for FID (uint8 pixels or floats in
    [-1, 1]); default: held-out real digits (:func:`reference_images`), whose statistics are
    computed once per classifier. classifier: default the shipped one.

    Returns {"n": N, "fid": float, "fid_reference": str, "n_real": int, "classifier_score": float
    in [1, 10], "class_shares": float64 (10,), "confidence": mean max p(y|x)}.
    """
    classifier = classifier or load_classifier()
    features, probs = classifier.outputs(images, value_range)
    if real_images is None:
        mu_real, sigma_real, n_real, description = _default_reference(classifier)
    else:
        real_features = classifier.features(real_images)
        mu_real, sigma_real = gaussian_stats(real_features)
        n_real, description = len(real_features), "given real images"
    return {
        "n": len(features),
        "fid": frechet_distance(*gaussian_stats(features), mu_real, sigma_real),
        "fid_reference": description,
        "n_real": int(n_real),
        "classifier_score": score_from_probabilities(probs),
        "class_shares": shares_from_probabilities(probs),
        "confidence": float(probs.max(axis=1).mean()),
    }


def format_metrics(result):
    """The dict of :func:`evaluate_images` as a few readable lines."""
    shares = "  ".join(f"{digit}:{share:.3f}" for digit, share in enumerate(result["class_shares"]))
    return (f"FID (LeNet features) {result['fid']:.3f}  ({result['n']} samples vs "
            f"{result['fid_reference']})\n"
            f"classifier score     {result['classifier_score']:.3f} / 10  "
            f"(mean confidence {result['confidence']:.3f})\n"
            f"class shares         {shares}")

