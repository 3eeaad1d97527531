"""The code-to-class matching (Hungarian, against brute force and constructed confusion matrices)
and intra-class diversity (against loops, and on real digits)."""
import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from minigan.data import load_bundled, to_unit_range
from minigan.metrics import (CodeMatch, code_accuracy, confusion_counts, diversity_ratio,
                             image_diversity, intra_class_diversity, load_classifier,
                             match_confusion, mean_pairwise_distance, reference_diversity)


# --- matching -------------------------------------------------------------------------------------

def test_a_permuted_identity_matches_perfectly():
    perm = np.random.default_rng(0).permutation(10)
    confusion = 200 * np.eye(10, dtype=np.int64)[perm]   # code c always drawn as digit perm[c]
    match = match_confusion(confusion)
    assert isinstance(match, CodeMatch)
    assert match.accuracy == 1.0
    np.testing.assert_array_equal(match.assignment, perm)


def test_a_collapsed_code_scores_one_in_ten():
    # G draws digit 4 whatever the code: one column full
    collapsed = np.zeros((10, 10), np.int64)
    collapsed[:, 4] = 200
    assert match_confusion(collapsed).accuracy == pytest.approx(0.1)
    # G ignores the code but draws every digit equally often: every row the same
    ignored = np.full((10, 10), 20, np.int64)
    assert match_confusion(ignored).accuracy == pytest.approx(0.1)


def test_two_codes_on_one_digit_lose_one_of_them():
    confusion = 100 * np.eye(10, dtype=np.int64)
    confusion[3] = 0
    confusion[3, 5] = 100    # codes 3 and 5 both draw fives; nobody draws threes
    match = match_confusion(confusion)
    assert match.accuracy == pytest.approx(0.9)
    assert sorted(match.assignment) == list(range(10))   # still one-to-one


def brute_force(confusion):
    k, d = confusion.shape
    if k <= d:
        return max(sum(confusion[c, p[c]] for c in range(k))
                   for p in itertools.permutations(range(d), k)) / confusion.sum()
    return max(sum(confusion[p[j], j] for j in range(d))
               for p in itertools.permutations(range(k), d)) / confusion.sum()


@settings(max_examples=40, deadline=None)
@given(hnp.arrays(np.int64, st.tuples(st.integers(1, 5), st.integers(1, 5)),
                  elements=st.integers(0, 30)).filter(lambda c: c.sum() > 0))
def test_hungarian_equals_brute_force_on_small_matrices(confusion):
    match = match_confusion(confusion)
    assert match.accuracy == pytest.approx(brute_force(confusion))
    used = match.assignment[match.assignment >= 0]
    assert len(set(used.tolist())) == len(used) == min(confusion.shape)


def test_code_accuracy_counts_codes_against_predictions():
    codes = np.array([0, 0, 1, 1, 2, 2])
    predicted = np.array([7, 7, 3, 7, 1, 1])
    match = code_accuracy(codes, predicted, num_codes=3, num_classes=10)
    assert match.confusion[0, 7] == 2 and match.confusion[1, 3] == 1 and match.confusion[1, 7] == 1
    assert match.accuracy == pytest.approx(5 / 6)   # 0->7, 1->3, 2->1
    np.testing.assert_array_equal(match.assignment, [7, 3, 1])


@pytest.mark.parametrize("codes, predicted, error, match", [
    ([0, 1], [0], ValueError, "2 codes and 1 predictions"),
    ([0, 10], [0, 1], ValueError, r"codes must lie in \[0, 10\)"),
    ([0, 1], [0, -1], ValueError, r"predicted must lie in \[0, 10\)"),
    ([0.0, 1.0], [0, 1], TypeError, "codes must be integers"),
])
def test_bad_codes_are_named(codes, predicted, error, match):
    with pytest.raises(error, match=match):
        confusion_counts(np.array(codes), np.array(predicted), 10, 10)


def test_bad_confusion_matrices_are_rejected():
    with pytest.raises(ValueError, match="all zeros"):
        match_confusion(np.zeros((3, 3)))
    with pytest.raises(ValueError, match="counts >= 0"):
        match_confusion(np.array([[1, -1], [0, 1]]))
    with pytest.raises(ValueError, match="2-D"):
        match_confusion(np.ones(3))


# --- diversity ------------------------------------------------------------------------------------

def test_mean_pairwise_distance_equals_the_loop():
    f = np.random.default_rng(0).standard_normal((7, 5))
    loop = [np.linalg.norm(f[i] - f[j]) for i in range(7) for j in range(i + 1, 7)]
    assert mean_pairwise_distance(f) == pytest.approx(np.mean(loop), rel=1e-10)
    assert mean_pairwise_distance(3 * f) == pytest.approx(3 * np.mean(loop), rel=1e-10)
    assert mean_pairwise_distance(np.repeat(f[:1], 4, axis=0)) == pytest.approx(0, abs=1e-6)
    with pytest.raises(ValueError, match=r"n >= 2, got \(1, 5\)"):
        mean_pairwise_distance(f[:1])


def test_intra_class_diversity_groups_by_label():
    rng = np.random.default_rng(1)
    tight = rng.standard_normal((20, 4)) * 0.1
    wide = rng.standard_normal((20, 4)) * 10
    features = np.concatenate([tight, wide])
    labels = np.repeat([0, 1], 20)
    div = intra_class_diversity(features, labels, num_classes=2)
    np.testing.assert_allclose(div.per_class, [mean_pairwise_distance(tight),
                                               mean_pairwise_distance(wide)])
    assert div.mean == pytest.approx(div.per_class.mean())
    np.testing.assert_array_equal(div.counts, [20, 20])
    with pytest.raises(ValueError, match=r"at least 2 images; counts per class: \[20, 20, 0\]"):
        intra_class_diversity(features, labels, num_classes=3)
    with pytest.raises(TypeError, match="integers"):
        intra_class_diversity(features, labels.astype(float), num_classes=2)


def test_real_digits_are_more_varied_than_copies_of_one_digit_per_class():
    classifier = load_classifier()
    real, described = reference_diversity(classifier)
    assert "hold-out" in described or "MNIST test" in described
    images, labels = load_bundled("test")
    again = image_diversity(to_unit_range(images), labels.astype(np.int64), classifier)
    if "hold-out" in described:   # the same 500 digits: the same number
        assert again.mean == pytest.approx(real.mean)
    first = np.array([np.flatnonzero(labels == k)[0] for k in range(10)])
    copies = np.repeat(first, 20)    # "a generator" that draws one image per class
    same = image_diversity(to_unit_range(images[copies]), labels[copies].astype(np.int64),
                           classifier)
    # 0 up to the float32 LeNet's rounding: one image's features come out a few 1e-6 apart at
    # different batch positions (BLAS blocks them differently)
    assert same.mean == pytest.approx(0, abs=1e-4) and real.mean > 1
    assert diversity_ratio(same, real) == pytest.approx(0, abs=1e-5)
    assert diversity_ratio(again, real) == pytest.approx(again.mean / real.mean)
