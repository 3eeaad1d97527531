"""The small MNIST classifier that the quality metrics look through, and how images reach it.

``LeNet`` is a LeNet-style network built from minigan's own layers::

    (N, 1, 28, 28) in [-1, 1]
    -> conv 5x5, 1 -> 16, stride 2, pad 2 -> ReLU      (N, 16, 14, 14)
    -> conv 5x5, 16 -> 32, stride 2, pad 2 -> ReLU     (N, 32, 7, 7)
    -> flatten -> Linear 1568 -> 64 -> ReLU            (N, 64)   the features FID is computed on
    -> Linear 64 -> 10                                 (N, 10)   class logits

Strided convolutions do the downsampling that pooling does in LeNet (minigan has no pooling op).
``examples/train_mnist_classifier.py`` trains it with minigan itself and writes the weights,
with their held-out accuracy and data source, to ``lenet_mnist.npz`` beside this file.

``load_classifier()`` returns a :class:`MnistClassifier`: NumPy images in, NumPy features and
probabilities out, computed under ``no_grad`` in batches on the device that holds the network's
weights (the CPU for loaded weights; a network being trained on a GPU is scored there). Images
may come from any source (another framework included): see :func:`prepare_images` for what is
accepted.
"""
import datetime
import json
import os
import warnings

import numpy as np

from .. import backend, nn
from .. import functional as F
from ..autograd import Tensor, no_grad

WEIGHTS_PATH = os.path.join(os.path.dirname(os.path.abspath(__file__)), "lenet_mnist.npz")
NUM_CLASSES = 10
IMAGE_SHAPE = (1, 28, 28)
_PARAM_PREFIX = "param:"   # npz keys of the state dict, beside one "metadata" key (JSON text)


class LeNet(nn.Module):
    """LeNet-style MNIST classifier; ``features(x)`` is the penultimate layer, ``forward(x)`` the logits.

    ``channels`` are the two convolutions' output channels, ``features`` the width of the
    penultimate layer. x: float (N, 1, 28, 28) Tensor scaled to [-1, 1].
    """

    def __init__(self, channels=(16, 32), features=64):
        super().__init__()
        c1, c2 = channels
        self.channels, self.num_features = (int(c1), int(c2)), int(features)
        self.conv1 = nn.Conv2d(1, c1, 5, stride=2, padding=2)
        self.conv2 = nn.Conv2d(c1, c2, 5, stride=2, padding=2)
        self.fc = nn.Linear(c2 * 7 * 7, features)
        self.head = nn.Linear(features, NUM_CLASSES)

    def features(self, x):
        h = F.relu(self.conv1(x))
        h = F.relu(self.conv2(h))
        return F.relu(self.fc(F.flatten(h, 1)))

    def forward(self, x):
        return self.head(self.features(x))

    def config(self):
        """The constructor arguments, as saved beside the weights."""
        return {"channels": list(self.channels), "features": self.num_features}


# --- images in ----------------------------------------------------------------------------------

def prepare_images(images, value_range=(-1.0, 1.0)):
    """Images of any common MNIST layout as float32 (N, 1, 28, 28) scaled to [-1, 1].

    Accepted: a NumPy or CuPy array or a minigan Tensor, of shape (N, 28, 28), (N, 1, 28, 28),
    (N, 28, 28, 1) or (N, 784). uint8 pixels are taken as 0..255 (0 = background, as in the MNIST
    files); float pixels as lying in ``value_range`` ((-1, 1) by default: a tanh generator's output;
    pass (0, 1) for images scaled that way), and are mapped linearly onto [-1, 1].

    Raises ValueError for another shape, for NaN or inf, or for float values outside
    ``value_range`` (beyond a 1e-3 tolerance): scoring wrongly scaled images would quietly give
    meaningless numbers. Warns when float images meant to be in [-1, 1] are all >= 0, the mark of
    images in [0, 1].
    """
    if isinstance(images, Tensor):
        images = images.data
    array = backend.as_numpy(images)
    if array.dtype == object or array.dtype.kind not in "uif":
        raise TypeError(f"images must hold numbers, got dtype {array.dtype}")
    shape = array.shape
    if array.ndim == 2 and shape[1] == 28 * 28:
        array = array.reshape(-1, 28, 28)
    elif array.ndim == 4 and shape[1:] == (28, 28, 1):
        array = array[..., 0]
    elif array.ndim == 4 and shape[1:] == IMAGE_SHAPE:
        array = array[:, 0]
    if array.ndim != 3 or array.shape[1:] != (28, 28):
        raise ValueError(f"images must be 28x28 MNIST-style: (N, 28, 28), (N, 1, 28, 28), "
                         f"(N, 28, 28, 1) or (N, 784), got shape {shape}")
    if len(array) == 0:
        raise ValueError("no images given (N = 0)")
    if array.dtype == np.uint8:
        low, high = 0.0, 255.0
    elif array.dtype.kind in "iu":
        raise TypeError(f"integer images must be uint8 (0..255), got dtype {array.dtype}")
    else:
        if not np.isfinite(array).all():
            raise ValueError("images contain NaN or inf")
        low, high = (float(v) for v in value_range)
        if not high > low:
            raise ValueError(f"value_range must be (low, high) with high > low, got {value_range}")
        tolerance = 1e-3 * (high - low)
        found = float(array.min()), float(array.max())
        if found[0] < low - tolerance or found[1] > high + tolerance:
            raise ValueError(f"image values span [{found[0]:.4g}, {found[1]:.4g}], outside "
                             f"value_range ({low:g}, {high:g}); pass the range the images are "
                             "scaled to, e.g. value_range=(0, 1)")
        if (low, high) == (-1.0, 1.0) and found[0] >= 0:
            warnings.warn("all image values are >= 0: images in [0, 1] must be passed with "
                          "value_range=(0, 1) (MNIST backgrounds are -1 in [-1, 1])", stacklevel=3)
    # x -> 2 (x - low) / (high - low) - 1 maps [low, high] onto [-1, 1]; computed in float64 so
    # that uint8 and float inputs of the same picture give the same float32 pixels
    scaled = (array.astype(np.float64) - low) * (2.0 / (high - low)) - 1.0
    return np.clip(scaled, -1.0, 1.0).astype(np.float32)[:, None]


# --- the classifier as NumPy in, NumPy out ------------------------------------------------------

class MnistClassifier:
    """A trained :class:`LeNet` behind NumPy functions: ``features``, ``probabilities``, ``predict``.

    All take images as :func:`prepare_images` accepts them and run in batches of ``batch_size``
    under ``no_grad`` with the network in eval mode. ``metadata`` is what was saved with the
    weights (accuracy, data source, date...).
    """

    def __init__(self, net, metadata=None, batch_size=500):
        self.net = net.eval()
        self.metadata = dict(metadata or {})
        self.batch_size = int(batch_size)

    @property
    def num_features(self):
        return self.net.num_features

    def outputs(self, images, value_range=(-1.0, 1.0)):
        """(features float64 (N, F), probabilities float64 (N, 10)) in one pass over the images."""
        x = prepare_images(images, value_range)
        device = next(self.net.parameters()).device   # each batch goes where the weights are
        feats, probs = [], []
        with no_grad():
            for start in range(0, len(x), self.batch_size):
                h = self.net.features(Tensor(x[start:start + self.batch_size], device=device))
                logits = backend.as_numpy(self.net.head(h).data).astype(np.float64)
                feats.append(backend.as_numpy(h.data).astype(np.float64))
                probs.append(_softmax(logits))
        return np.concatenate(feats), np.concatenate(probs)

    def features(self, images, value_range=(-1.0, 1.0)):
        """Penultimate-layer activations, float64 (N, F)."""
        return self.outputs(images, value_range)[0]

    def probabilities(self, images, value_range=(-1.0, 1.0)):
        """p(y | x), float64 (N, 10), each row summing to 1."""
        return self.outputs(images, value_range)[1]

    def predict(self, images, value_range=(-1.0, 1.0)):
        """The most probable class of each image, int64 (N,)."""
        return self.probabilities(images, value_range).argmax(axis=1)

    def accuracy(self, images, labels):
        """The share of images whose predicted class equals its label."""
        labels = np.asarray(backend.as_numpy(labels)).astype(np.int64).reshape(-1)
        predicted = self.predict(images)
        if len(labels) != len(predicted):
            raise ValueError(f"{len(predicted)} images but {len(labels)} labels")
        return float((predicted == labels).mean())


def _softmax(logits):
    shifted = logits - logits.max(axis=1, keepdims=True)   # exp never overflows
    e = np.exp(shifted)
    return e / e.sum(axis=1, keepdims=True)


# --- saving and loading -------------------------------------------------------------------------

def save_classifier(net, path=WEIGHTS_PATH, metadata=None):
    """Write a LeNet's weights and ``metadata`` (a JSON-able dict) to a compressed .npz, no pickle.

    The architecture (``net.config()``) and the date are added to the metadata. The file is written
    beside its final name and renamed into place, so a reader never sees half a file.
    """
    meta = {"architecture": net.config(),
            "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            **(metadata or {})}
    arrays = {_PARAM_PREFIX + name: value for name, value in net.state_dict().items()}
    arrays["metadata"] = np.array(json.dumps(meta, sort_keys=True))
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "wb") as f:           # a file object: np.savez would append ".npz" to a name
        np.savez_compressed(f, **arrays)
    os.replace(tmp, path)
    _cache.pop(os.path.abspath(path), None)
    return meta


def read_classifier(path=WEIGHTS_PATH, batch_size=500):
    """A :class:`MnistClassifier` from a file written by :func:`save_classifier` (not cached)."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"classifier weights not found: {path}; train them with "
                                "python -m examples.train_mnist_classifier")
    with np.load(path, allow_pickle=False) as npz:
        if "metadata" not in npz.files:
            raise ValueError(f"{path} is not a minigan classifier file: it has no 'metadata' entry")
        metadata = json.loads(str(npz["metadata"]))
        state = {k[len(_PARAM_PREFIX):]: npz[k] for k in npz.files if k.startswith(_PARAM_PREFIX)}
    arch = metadata.get("architecture", {})
    net = LeNet(channels=tuple(arch.get("channels", (16, 32))), features=arch.get("features", 64))
    try:
        net.load_state_dict(state)
    except (KeyError, ValueError) as e:
        raise ValueError(f"{path} does not hold LeNet weights of the recorded architecture "
                         f"{arch}: {e}") from None
    return MnistClassifier(net, metadata, batch_size)


_cache = {}   # absolute path -> (modification time, MnistClassifier)


def load_classifier(path=None):
    """The shipped classifier (or the one at ``path``), read once and then cached.

    A file rewritten since it was cached (a newer modification time) is read again.
    """
    path = os.path.abspath(os.fspath(path) if path is not None else WEIGHTS_PATH)
    mtime = os.path.getmtime(path) if os.path.isfile(path) else None
    cached = _cache.get(path)
    if cached is None or cached[0] != mtime:
        cached = (mtime, read_classifier(path))
        _cache[path] = cached
    return cached[1]


# --- scores from the predicted class probabilities ----------------------------------------------

def _check_probabilities(probs):
    probs = np.asarray(backend.as_numpy(probs), dtype=np.float64)
    if probs.ndim != 2 or len(probs) == 0:
        raise ValueError(f"class probabilities must be (N, classes) with N >= 1, got shape {probs.shape}")
    if not np.isfinite(probs).all() or probs.min() < 0:
        raise ValueError("class probabilities must be finite and >= 0")
    worst = float(np.abs(probs.sum(axis=1) - 1).max())
    if worst > 1e-4:
        raise ValueError(f"each row of class probabilities must sum to 1 (off by up to {worst:.3g}); "
                         "pass softmax outputs, not logits")
    return probs


def score_from_probabilities(probs):
    """exp(E_x[KL(p(y|x) || p(y))]) for rows p(y|x) of ``probs`` (N, C), p(y) their mean.

    The mean KL is the mutual information between image and predicted class, at most
    H(p(y)) <= log C, so the score lies in [1, C]: 1 when every image gets the same distribution
    (whatever it is), C when each image is classified with certainty and the classes are equally
    frequent. It is the Inception Score of Salimans et al. (2016), here with the MNIST classifier.
    """
    probs = _check_probabilities(probs)
    marginal = probs.mean(axis=0)
    # p log(p / p_y) with 0 log 0 = 0: where p(y|x) > 0, p(y) > 0 too (it is a mean including it)
    positive = probs > 0
    ratio = np.where(positive, probs, 1.0) / np.where(positive, marginal, 1.0)
    kl = (probs * np.log(ratio)).sum(axis=1)
    return float(np.exp(kl.mean()))


def shares_from_probabilities(probs):
    """The share of images whose most probable class is each class, float64 (C,), summing to 1."""
    probs = _check_probabilities(probs)
    counts = np.bincount(probs.argmax(axis=1), minlength=probs.shape[1])
    return counts / counts.sum()


def classifier_score(images, classifier=None, value_range=(-1.0, 1.0)):
    """The MNIST analogue of the Inception Score of a set of images, a float in [1, 10].

    High when each image is clearly one digit and all ten digits appear equally often; it says
    nothing of how close the images are to real ones (that is FID's job). classifier: any object
    with a ``probabilities(images, value_range)`` method returning (N, 10) rows that sum to 1
    (default: the shipped :class:`MnistClassifier`). See :func:`score_from_probabilities`.
    """
    classifier = classifier or load_classifier()
    return score_from_probabilities(classifier.probabilities(images, value_range))


def class_shares(images, classifier=None, value_range=(-1.0, 1.0)):
    """The share of the images predicted as each digit 0..9, float64 (10,), summing to 1.

    A GAN that drops modes shows shares near 0 for the digits it no longer draws; real MNIST
    has about 0.1 each."""
    classifier = classifier or load_classifier()
    return shares_from_probabilities(classifier.probabilities(images, value_range))
