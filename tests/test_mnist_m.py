"""The MNIST-M-like domain B and the unpaired digit pair (minigan.data.mnist_m)."""
import numpy as np
import pytest

from minigan.data import digit_domains, grey_to_rgb, load_bundled, mnist_m, rgb_to_grey
from minigan.data.mnist_m import restroke


@pytest.fixture(scope="module")
def digits():
    images, labels = load_bundled("test")
    return images[:60], labels[:60]


def test_deterministic_under_a_seed_and_different_across_seeds(digits):
    images, _ = digits
    a, b, c = mnist_m(images, seed=3), mnist_m(images, seed=3), mnist_m(images, seed=4)
    assert a.dtype == np.uint8 and a.shape == (60, 3, 28, 28)
    np.testing.assert_array_equal(a, b)
    assert (a != c).mean() > 0.5


def test_digit_stays_readable(digits):
    """Inside the stroke the colour differs from the background texture around it: the mean
    luminance of stroke pixels and of background pixels are at least 0.2 apart in every image."""
    images, _ = digits
    colour = mnist_m(images, seed=0).astype(np.float64) / 255
    lum = 0.299 * colour[:, 0] + 0.587 * colour[:, 1] + 0.114 * colour[:, 2]
    stroke, background = images > 200, images == 0
    gaps = [abs(lum[i][stroke[i]].mean() - lum[i][background[i]].mean()) for i in range(60)]
    assert min(gaps) > 0.2, min(gaps)


def test_background_is_coloured_texture(digits):
    images, _ = digits
    b = mnist_m(images, seed=0).astype(np.float64)
    background = (images == 0)[:, None].repeat(3, axis=1)
    spread = [b[i][background[i]].std() for i in range(60)]
    assert min(spread) > 5   # not a flat fill (pixel values 0..255)
    assert np.abs(b[:, 0] - b[:, 1]).mean() > 10   # channels differ: colour, not grey


def test_restroke_thickness_orders_ink():
    images, _ = load_bundled("test")
    ink = [restroke(images[:20], np.full(20, t)).sum() for t in (0, 1, 2)]
    assert ink[0] < ink[1] < ink[2]
    np.testing.assert_allclose(restroke(images[:3], [1, 1, 1]), images[:3] / 255.0, rtol=1e-6)


def test_domains_are_unpaired_halves(digits):
    train, train_labels = load_bundled("train")
    test, test_labels = digits
    d = digit_domains(train[:200], train_labels[:200], test, test_labels, seed=0)
    assert d["train_a"].shape == (100, 3, 28, 28) and d["train_b"].shape == (100, 3, 28, 28)
    np.testing.assert_array_equal(rgb_to_grey(d["train_a"]), train[:100])
    np.testing.assert_array_equal(d["train_b"], mnist_m(train[100:200], 0))
    np.testing.assert_array_equal(d["train_b_labels"], train_labels[100:200])
    # no digit of A is the source of an image of B
    a = {img.tobytes() for img in train[:100]}
    assert not a & {img.tobytes() for img in train[100:200]}
    assert not (d["test_b"] == mnist_m(test, 0)).all()


def test_errors():
    with pytest.raises(ValueError, match="uint8 digits"):
        mnist_m(np.zeros((2, 28, 28), np.float32))
    with pytest.raises(ValueError, match="square"):
        mnist_m(np.zeros((2, 28, 20), np.uint8))
    with pytest.raises(ValueError, match="grey_to_rgb"):
        grey_to_rgb(np.zeros((2, 3, 4, 4)))
    with pytest.raises(ValueError, match="rgb_to_grey"):
        rgb_to_grey(np.zeros((2, 1, 4, 4)))
