"""minigan.metrics: the Frechet distance against analytic answers, the classifier score's bounds,
class shares, image preparation, and the shipped classifier's held-out accuracy."""
import json
import os

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from minigan import metrics
from minigan.data import load_bundled, to_unit_range
from minigan.metrics import classifier as classifier_module


@pytest.fixture(scope="module")
def clf():
    return metrics.load_classifier()


@pytest.fixture(scope="module")
def heldout():
    return load_bundled("test")


@pytest.fixture(scope="module")
def train_digits():
    return load_bundled("train")


def _random_psd(rng, d, rank=None):
    a = rng.standard_normal((d, rank or d))
    return a @ a.T / (rank or d)


def _rotation(rng, d):
    q, _ = np.linalg.qr(rng.standard_normal((d, d)))
    return q


# --- the Frechet distance ------------------------------------------------------------------------

def test_trace_sqrt_product_of_diagonal_covariances_is_analytic():
    a, b = np.array([1.0, 4.0, 9.0, 0.25]), np.array([4.0, 1.0, 0.0, 16.0])
    assert metrics.trace_sqrt_product(np.diag(a), np.diag(b)) == pytest.approx(
        np.sqrt(a * b).sum(), rel=1e-12)
    # the same pair rotated by one orthogonal Q: (Q A Q^T Q B Q^T)^{1/2} = Q (AB)^{1/2} Q^T.
    # b has a zero, so after rotation that eigenvalue comes back as ~1e-15 of either sign, and its
    # square root adds up to ~4e-8: the tolerance is the square root of the rounding, not 1e-10
    # (which passed or failed with the LAPACK build).
    q = _rotation(np.random.default_rng(0), 4)
    assert metrics.trace_sqrt_product(q @ np.diag(a) @ q.T, q @ np.diag(b) @ q.T) == pytest.approx(
        np.sqrt(a * b).sum(), rel=1e-7)


def test_frechet_distance_of_diagonal_gaussians_is_analytic():
    # d^2 = |mu1 - mu2|^2 + sum_i (sqrt(a_i) - sqrt(b_i))^2 for diagonal covariances
    rng = np.random.default_rng(1)
    mu1, mu2 = rng.standard_normal(6), rng.standard_normal(6)
    a, b = rng.uniform(0.1, 3.0, 6), rng.uniform(0.1, 3.0, 6)
    expected = ((mu1 - mu2) ** 2).sum() + ((np.sqrt(a) - np.sqrt(b)) ** 2).sum()
    assert metrics.frechet_distance(mu1, np.diag(a), mu2, np.diag(b)) == pytest.approx(
        expected, rel=1e-10)


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), d=st.integers(1, 12), rank=st.integers(1, 12))
def test_trace_sqrt_product_matches_general_eigenvalues(seed, d, rank):
    """Against a reference that takes the eigenvalues of the unsymmetric product S1 S2 directly."""
    rng = np.random.default_rng(seed)
    s1, s2 = _random_psd(rng, d, min(rank, d)), _random_psd(rng, d)
    eigenvalues = np.linalg.eigvals(s1 @ s2)
    reference = np.sqrt(np.clip(eigenvalues.real, 0, None)).sum()
    assert metrics.trace_sqrt_product(s1, s2) == pytest.approx(reference, rel=1e-7, abs=1e-9)
    assert metrics.trace_sqrt_product(s2, s1) == pytest.approx(reference, rel=1e-7, abs=1e-9)


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), d=st.integers(1, 10), rank=st.integers(1, 10))
@example(seed=220949, d=5, rank=3)  # swapping the arguments moves the value by 1.03e-8 (relative)
def test_frechet_distance_is_zero_on_itself_symmetric_and_nonnegative(seed, d, rank):
    rng = np.random.default_rng(seed)
    mu1, mu2 = rng.standard_normal(d), rng.standard_normal(d)
    s1, s2 = _random_psd(rng, d, min(rank, d)), _random_psd(rng, d)
    # the unclamped formula, so that a negative rounding error could not hide behind max(., 0)
    self_value = 2 * np.trace(s1) - 2 * metrics.trace_sqrt_product(s1, s1)
    assert abs(self_value) < 1e-6 * np.trace(s1)
    assert metrics.frechet_distance(mu1, s1, mu1, s1) < 1e-6 * np.trace(s1)
    forward = metrics.frechet_distance(mu1, s1, mu2, s2)
    assert forward >= ((mu1 - mu2) ** 2).sum() - 1e-9 * (1 + forward)  # the covariance term >= 0
    # symmetric to the accuracy of trace_sqrt_product itself (1e-7, tested above), not beyond:
    # the eigenvalues of S1 S2 and S2 S1 are the same numbers computed from different matrices
    scale = np.trace(s1) + np.trace(s2)
    assert metrics.frechet_distance(mu2, s2, mu1, s1) == pytest.approx(forward, rel=1e-7,
                                                                      abs=1e-9 * scale)


def test_gaussian_stats_and_frechet_distance_reject_bad_input():
    with pytest.raises(ValueError, match="at least 2 samples"):
        metrics.gaussian_stats(np.zeros((1, 4)))
    with pytest.raises(ValueError, match=r"\(N, F\)"):
        metrics.gaussian_stats(np.zeros(4))
    with pytest.raises(ValueError, match="NaN"):
        metrics.gaussian_stats(np.full((3, 2), np.nan))
    with pytest.raises(ValueError, match="covariances"):
        metrics.frechet_distance(np.zeros(3), np.eye(3), np.zeros(2), np.eye(2))


def test_gaussian_stats_match_numpy():
    x = np.random.default_rng(2).standard_normal((50, 5))
    mu, sigma = metrics.gaussian_stats(x)
    np.testing.assert_allclose(mu, x.mean(axis=0))
    np.testing.assert_allclose(sigma, np.cov(x, rowvar=False))


# --- FID on images ------------------------------------------------------------------------------

def test_fid_of_a_set_with_itself_is_zero(clf, heldout):
    images = heldout[0]
    features = clf.features(images)
    mu, sigma = metrics.gaussian_stats(features)
    raw = 2 * np.trace(sigma) - 2 * metrics.trace_sqrt_product(sigma, sigma)
    assert abs(raw) < 1e-6 * np.trace(sigma)
    assert metrics.fid(images, images) < 1e-6 * np.trace(sigma)


def test_fid_grows_with_added_noise(clf, heldout):
    x = to_unit_range(heldout[0])
    rng = np.random.default_rng(3)
    noise = rng.standard_normal(x.shape).astype(np.float32)
    values = [metrics.fid(x, np.clip(x + level * noise, -1, 1), classifier=clf)
              for level in (0.0, 0.1, 0.25, 0.5, 1.0)]
    assert values[0] < 1e-6 * values[-1]
    assert all(b > a for a, b in zip(values, values[1:])), values


def test_fid_sees_dropped_modes(clf, heldout, train_digits):
    """Real digits of all ten classes are closer to the held-out set than as many real digits
    of only five classes: FID punishes a generator that drops modes."""
    images, labels = train_digits
    rng = np.random.default_rng(4)
    all_classes = images[rng.choice(len(images), 1000, replace=False)]
    half = np.flatnonzero(labels < 5)
    five_classes = images[rng.choice(half, 1000, replace=False)]
    full = metrics.fid(heldout[0], all_classes, classifier=clf)
    dropped = metrics.fid(heldout[0], five_classes, classifier=clf)
    assert dropped > 2 * full, (full, dropped)


# --- classifier score and class shares from stub probabilities --------------------------------

class _Stub:
    """A classifier stand-in: each image's probabilities are chosen by the test."""

    def __init__(self, probs):
        self.probs = np.asarray(probs, dtype=np.float64)

    def probabilities(self, images, value_range=(-1.0, 1.0)):
        assert len(images) == len(self.probs)
        return self.probs


_IMAGES = np.zeros((100, 28, 28), dtype=np.uint8)


def test_classifier_score_is_one_for_a_constant_prediction():
    for row in (np.eye(10)[3], np.full(10, 0.1), np.linspace(1, 2, 10) / np.linspace(1, 2, 10).sum()):
        stub = _Stub(np.tile(row, (100, 1)))
        assert metrics.classifier_score(_IMAGES, classifier=stub) == pytest.approx(1.0, abs=1e-12)


def test_classifier_score_is_ten_for_confident_balanced_predictions():
    stub = _Stub(np.eye(10)[np.arange(100) % 10])
    assert metrics.classifier_score(_IMAGES, classifier=stub) == pytest.approx(10.0, rel=1e-12)
    # confident but only five digits drawn: the score counts the classes in use
    stub = _Stub(np.eye(10)[np.arange(100) % 5])
    assert metrics.classifier_score(_IMAGES, classifier=stub) == pytest.approx(5.0, rel=1e-12)
    # balanced but unsure (90% on the right class) scores below 10
    soft = np.full((100, 10), 0.1 / 9)
    soft[np.arange(100), np.arange(100) % 10] = 0.9
    assert 5 < metrics.classifier_score(_IMAGES, classifier=_Stub(soft)) < 10


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), n=st.integers(1, 40), sharpness=st.floats(0.1, 30))
def test_classifier_score_lies_in_one_to_ten(seed, n, sharpness):
    logits = sharpness * np.random.default_rng(seed).standard_normal((n, 10))
    probs = np.exp(logits - logits.max(axis=1, keepdims=True))
    probs /= probs.sum(axis=1, keepdims=True)
    score = metrics.score_from_probabilities(probs)
    assert 1 - 1e-9 <= score <= 10 + 1e-9
    assert score <= n + 1e-9     # the mutual information is also at most log N
    shares = metrics.shares_from_probabilities(probs)
    assert shares.shape == (10,) and shares.sum() == pytest.approx(1.0)
    np.testing.assert_allclose(shares, np.bincount(probs.argmax(1), minlength=10) / n)


def test_class_shares_sum_to_one_and_count_predictions():
    stub = _Stub(np.eye(10)[np.r_[np.zeros(70, int), np.full(30, 7)]])
    shares = metrics.class_shares(_IMAGES, classifier=stub)
    expected = np.zeros(10)
    expected[[0, 7]] = 0.7, 0.3
    np.testing.assert_allclose(shares, expected)


def test_probabilities_that_are_not_distributions_are_rejected():
    with pytest.raises(ValueError, match="sum to 1"):
        metrics.score_from_probabilities(np.ones((4, 10)))
    with pytest.raises(ValueError, match=">= 0"):
        metrics.score_from_probabilities(np.r_[[-0.5, 1.5], [0.5, 0.5]].reshape(2, 2))
    with pytest.raises(ValueError, match="N, classes"):
        metrics.shares_from_probabilities(np.ones(10) / 10)


# --- the shipped classifier ---------------------------------------------------------------------

def test_shipped_classifier_is_small_and_documented(clf):
    assert os.path.getsize(metrics.WEIGHTS_PATH) < 1_000_000
    meta = clf.metadata
    assert meta["heldout_accuracy"] >= 0.97
    assert meta["heldout_count"] == 500 and "bundled" in meta["data_source"]
    assert meta["date"][:2] == "20"
    assert clf.num_features == 64


def test_shipped_classifier_accuracy_on_heldout_digits(clf, heldout):
    images, labels = heldout
    accuracy = clf.accuracy(images, labels)
    assert accuracy >= 0.95
    # the same number the training run recorded (same weights, same digits, same arithmetic)
    assert accuracy == pytest.approx(clf.metadata["heldout_accuracy"], abs=1e-9)


def test_real_digits_score_high_and_evenly(clf, heldout):
    result = metrics.evaluate_images(to_unit_range(heldout[0]), real_images=heldout[0],
                                     classifier=clf)
    assert result["n"] == result["n_real"] == 500
    assert result["fid"] < 1e-6
    assert 9 < result["classifier_score"] <= 10
    assert result["class_shares"].sum() == pytest.approx(1.0)
    np.testing.assert_allclose(result["class_shares"], 0.1, atol=0.02)
    assert 0.9 < result["confidence"] <= 1
    assert "FID" in metrics.format_metrics(result)


def test_evaluate_images_defaults_to_heldout_digits(clf, train_digits):
    images = to_unit_range(train_digits[0][:300])
    result = metrics.evaluate_images(images)
    assert result["n"] == 300 and result["n_real"] == 500
    assert "hold-out" in result["fid_reference"] or "test" in result["fid_reference"]
    noise = np.random.default_rng(5).uniform(-1, 1, images.shape).astype(np.float32)
    bad = metrics.evaluate_images(noise)
    assert bad["fid"] > 10 * result["fid"]
    assert bad["classifier_score"] < result["classifier_score"]


def test_load_classifier_is_cached_and_round_trips(tmp_path, clf, heldout):
    assert metrics.load_classifier() is clf
    path = tmp_path / "copy.npz"
    meta = metrics.save_classifier(clf.net, str(path), {"note": "copy"})
    assert meta["note"] == "copy" and meta["architecture"] == {"channels": [16, 32], "features": 64}
    copy = metrics.load_classifier(str(path))
    assert copy is not clf and copy.metadata["note"] == "copy"
    np.testing.assert_array_equal(copy.probabilities(heldout[0][:50]),
                                  clf.probabilities(heldout[0][:50]))
    assert not [p for p in os.listdir(tmp_path) if p != "copy.npz"]   # no temporary file left


def test_bad_classifier_files_raise_clear_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="train_mnist_classifier"):
        metrics.load_classifier(str(tmp_path / "missing.npz"))
    np.savez(tmp_path / "other.npz", x=np.zeros(3))
    with pytest.raises(ValueError, match="metadata"):
        metrics.read_classifier(str(tmp_path / "other.npz"))
    small = metrics.LeNet(channels=(4, 8), features=16)
    metrics.save_classifier(small, str(tmp_path / "small.npz"))
    assert metrics.read_classifier(str(tmp_path / "small.npz")).num_features == 16


# --- images in ----------------------------------------------------------------------------------

def test_prepare_images_accepts_common_layouts(heldout):
    pixels = heldout[0][:20]
    reference = to_unit_range(pixels)
    for layout in (pixels, pixels[:, None], pixels[..., None], pixels.reshape(20, 784), reference,
                   reference[:, 0], (pixels / 255.0).astype(np.float32)):
        value_range = (0, 1) if layout.dtype.kind == "f" and layout.min() >= 0 else (-1, 1)
        out = metrics.prepare_images(layout, value_range=value_range)
        assert out.dtype == np.float32 and out.shape == (20, 1, 28, 28)
        np.testing.assert_allclose(out, reference, atol=1e-6)


def test_prepare_images_rejects_what_it_cannot_score():
    with pytest.raises(ValueError, match=r"\(N, 28, 28\).*got shape \(5, 32, 32\)"):
        metrics.prepare_images(np.zeros((5, 32, 32), np.float32))
    with pytest.raises(ValueError, match="NaN"):
        metrics.prepare_images(np.full((2, 28, 28), np.nan, np.float32))
    with pytest.raises(ValueError, match="outside value_range"):
        metrics.prepare_images(np.full((2, 28, 28), 3.0, np.float32))
    with pytest.raises(TypeError, match="uint8"):
        metrics.prepare_images(np.zeros((2, 28, 28), np.int32))
    with pytest.raises(ValueError, match="no images"):
        metrics.prepare_images(np.zeros((0, 28, 28), np.float32))
    with pytest.warns(UserWarning, match=r"value_range=\(0, 1\)"):
        metrics.prepare_images(np.full((2, 28, 28), 0.5, np.float32))


def test_features_are_batch_size_independent(clf, heldout):
    # equal up to float32 rounding (BLAS may sum in another order for another batch size);
    # features are O(10), so 1e-4 is a few units in the last place
    small = classifier_module.MnistClassifier(clf.net, batch_size=7)
    np.testing.assert_allclose(small.features(heldout[0][:30]), clf.features(heldout[0][:30]),
                               rtol=1e-4, atol=1e-4)


# --- examples/evaluate.py -----------------------------------------------------------------------

def test_evaluate_example_scores_an_image_file(tmp_path, heldout, capsys):
    from examples import evaluate
    path = tmp_path / "digits.npy"
    np.save(path, heldout[0][:200])
    assert evaluate.main([f"--images={path}", "--json", "--no-baseline"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["n"] == 200 and 9 < result["classifier_score"] <= 10
    assert sum(result["class_shares"]) == pytest.approx(1.0)


def test_evaluate_example_scores_a_run_checkpoint(tmp_path, capsys):
    """A checkpoint laid out as examples/dcgan_mnist.py writes it: run_state with models G and D."""
    from examples import evaluate
    from minigan import io
    from minigan.gan.models import make_dcgan
    from minigan.gan.train import run_state
    G, D = make_dcgan(nz=5, ngf=2, ndf=2)
    io.save_checkpoint(tmp_path / "checkpoint.npz",
                       run_state({"G": G, "D": D}, {}, 7, extra={"config": {"seed": 3}}))
    assert evaluate.main([str(tmp_path), "--n", "50", "--no-baseline"]) == 0
    out = capsys.readouterr().out
    assert "50 samples" in out and "iteration 7" in out and "noise seed 3" in out
    assert "FID (LeNet features)" in out and "class shares" in out
    with pytest.raises(SystemExit, match="no checkpoint"):
        evaluate.main([str(tmp_path / "nowhere")])
