"""How well an unsupervised categorical code names the classes: the best one-to-one matching.

InfoGAN's categorical code c takes K values that training never ties to labels; a code that has
found the digits uses value c for some digit pi(c), in an order of its own. With the confusion
counts C[c, d] = #{samples drawn with code c that a classifier reads as digit d} (K x D), the
code's accuracy is that of the best one-to-one assignment of code values to digits:

    accuracy = max_pi  sum_c C[c, pi(c)] / sum C        (pi injective from codes to digits)

the linear assignment problem, solved exactly by the Hungarian method
(``scipy.optimize.linear_sum_assignment``) in O(K^3) instead of trying all K! permutations. A
permuted identity scores 1; a code that ignores c (every row the same) scores the share of the
most common digits, 1/K for uniform rows; a collapsed G that draws one digit for all codes 1/K.
This is how the "5% error" of Chen et al. (2016) on MNIST is read.
"""
from typing import NamedTuple

import numpy as np


class CodeMatch(NamedTuple):
    """The best matching: accuracy in [0, 1], ``assignment`` int64 (K,) with assignment[c] the
    class matched to code value c (-1 where there are more code values than classes), and the
    confusion counts (K, D), row = code value, column = predicted class."""
    accuracy: float
    assignment: np.ndarray
    confusion: np.ndarray


def confusion_counts(codes, predicted, num_codes, num_classes):
    """C (num_codes, num_classes) int64: C[c, d] = #{i : codes[i] = c and predicted[i] = d}."""
    codes = np.asarray(codes).reshape(-1)
    predicted = np.asarray(predicted).reshape(-1)
    if codes.shape != predicted.shape:
        raise ValueError(f"one prediction per code value expected, got {codes.shape[0]} codes "
                         f"and {predicted.shape[0]} predictions")
    for name, values, bound in (("codes", codes, num_codes), ("predicted", predicted, num_classes)):
        if values.size and values.dtype.kind not in "iu":
            raise TypeError(f"{name} must be integers, got dtype {values.dtype}")
        if values.size and (values.min() < 0 or values.max() >= bound):
            raise ValueError(f"{name} must lie in [0, {bound}), got values from {values.min()} "
                             f"to {values.max()}")
    confusion = np.zeros((num_codes, num_classes), np.int64)
    np.add.at(confusion, (codes.astype(np.int64), predicted.astype(np.int64)), 1)
    return confusion


def match_confusion(confusion):
    """The best one-to-one matching of rows (code values) to columns (classes) of a confusion
    matrix (K, D) of counts >= 0: a :class:`CodeMatch`."""
    from scipy.optimize import linear_sum_assignment   # imported when used: only this needs scipy
    confusion = np.asarray(confusion)
    if confusion.ndim != 2 or confusion.size == 0:
        raise ValueError(f"a confusion matrix must be 2-D and non-empty, got shape {confusion.shape}")
    if not np.isfinite(confusion).all() or (confusion < 0).any():
        raise ValueError("a confusion matrix holds finite counts >= 0")
    total = confusion.sum()
    if total == 0:
        raise ValueError("the confusion matrix is all zeros: nothing to match")
    rows, cols = linear_sum_assignment(confusion, maximize=True)
    assignment = np.full(confusion.shape[0], -1, np.int64)
    assignment[rows] = cols
    return CodeMatch(float(confusion[rows, cols].sum() / total), assignment, confusion)


def code_accuracy(codes, predicted, num_codes=10, num_classes=10):
    """The best-matching accuracy of code values (N,) against a classifier's predictions (N,):
    :func:`match_confusion` of :func:`confusion_counts`. A :class:`CodeMatch`."""
    return match_confusion(confusion_counts(codes, predicted, num_codes, num_classes))
