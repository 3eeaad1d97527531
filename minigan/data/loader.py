"""Minibatches over in-memory arrays, and the pixel scaling GAN generators train against.

Raw arrays in, raw arrays out: the caller wraps batches into Tensors. The shuffle order comes
from the loader's own seeded NumPy Generator, never from the global one, so a run's data order
depends only on ``seed`` and can be saved in a checkpoint and resumed mid-epoch.
"""
import copy

import numpy as np

from .. import backend


class Batches:
    """Iterate over equal-length arrays in (shuffled) minibatches, one epoch per pass.

    ``Batches(images, labels, batch_size=64)`` yields tuples ``(images[idx], labels[idx])`` with
    ``idx`` a block of ``batch_size`` positions of this epoch's permutation (a single array,
    not a 1-tuple, when one array is given). Each batch is a fresh copy.

    Epochs: ``for batch in loader`` runs the rest of the current epoch, starting a new epoch
    (and drawing a new permutation) when the previous one is finished. So a loop broken
    mid-epoch continues where it stopped, which is what makes :meth:`set_state` resume exact.
    ``forever()`` chains epochs without end, for training by step count.

    drop_last=True drops the final ``N % batch_size`` samples of each epoch (the dropped ones
    differ per epoch when shuffling); drop_last=False yields a smaller last batch instead.
    """

    def __init__(self, *arrays, batch_size, shuffle=True, seed=0, drop_last=True):
        if not arrays:
            raise ValueError("Batches needs at least one array")
        lengths = [len(a) if np.ndim(a) > 0 else None for a in arrays]
        if None in lengths or len(set(lengths)) != 1:
            shapes = [tuple(getattr(a, "shape", ())) for a in arrays]
            raise ValueError(f"all arrays must share a non-empty first axis (the sample axis), got shapes {shapes}")
        batch_size = int(batch_size)
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.arrays = arrays
        self.n = lengths[0]
        self.batch_size = batch_size
        self.shuffle = bool(shuffle)
        self.drop_last = bool(drop_last)
        self.seed = int(seed)
        if len(self) == 0:
            raise ValueError(f"an epoch would be empty: {self.n} samples with batch_size={batch_size} and "
                             f"drop_last=True (use a smaller batch_size or drop_last=False)")
        self._rng = np.random.Generator(np.random.PCG64(self.seed))
        self.epoch = 0              # epochs started so far
        self._order = None          # this epoch's sample order (int64 positions)
        self._next = 0              # next batch index within the epoch
        self._epoch_rng_state = None  # generator state just before this epoch's permutation

    def __len__(self):
        """Batches per epoch."""
        full, rest = divmod(self.n, self.batch_size)
        return full + (1 if rest and not self.drop_last else 0)

    def _start_epoch(self):
        self._epoch_rng_state = copy.deepcopy(self._rng.bit_generator.state)
        self._order = self._rng.permutation(self.n) if self.shuffle else np.arange(self.n)
        self.epoch += 1
        self._next = 0

    def _take(self, b):
        idx = self._order[b * self.batch_size:(b + 1) * self.batch_size]
        out = []
        for a in self.arrays:
            xp = backend.array_module(a)
            out.append(a[xp.asarray(idx)] if xp is not np else a[idx])
        return out[0] if len(out) == 1 else tuple(out)

    def __iter__(self):
        if self._order is None or self._next >= len(self):
            self._start_epoch()
        while self._next < len(self):
            b = self._next
            self._next += 1  # counted before yielding: a checkpoint taken now resumes after this batch
            yield self._take(b)

    def forever(self):
        """Batches without end, epoch after epoch."""
        while True:
            yield from self

    def get_state(self):
        """A JSON-able dict (ints and nested dicts) from which :meth:`set_state` resumes exactly."""
        return {
            "n": self.n,
            "batch_size": self.batch_size,
            "shuffle": self.shuffle,
            "drop_last": self.drop_last,
            "seed": self.seed,
            "epoch": self.epoch,
            "next_batch": self._next if self._order is not None else 0,
            "epoch_rng": copy.deepcopy(self._epoch_rng_state),
            "rng": copy.deepcopy(self._rng.bit_generator.state),
        }

    def set_state(self, state):
        """Restore a :meth:`get_state` dict: the next batch is the one that followed when it was saved."""
        for key in ("n", "batch_size", "shuffle", "drop_last"):
            if state[key] != getattr(self, key):
                raise ValueError(f"loader state is for {key}={state[key]!r} but this loader has "
                                 f"{key}={getattr(self, key)!r}: the data or batching changed since it was saved")
        self.seed = int(state["seed"])
        self._rng = np.random.Generator(np.random.PCG64(self.seed))
        self.epoch = int(state["epoch"])
        if state["epoch_rng"] is None:  # saved before the first epoch started
            self._order, self._next, self._epoch_rng_state = None, 0, None
        else:
            # redraw this epoch's permutation from the state it was drawn from
            self._rng.bit_generator.state = copy.deepcopy(state["epoch_rng"])
            self._order = self._rng.permutation(self.n) if self.shuffle else np.arange(self.n)
            self._epoch_rng_state = copy.deepcopy(state["epoch_rng"])
            self._next = int(state["next_batch"])
        self._rng.bit_generator.state = copy.deepcopy(state["rng"])


def to_unit_range(images, dtype=np.float32):
    """uint8 pixels (N, H, W) or (N, C, H, W) -> ``dtype`` in [-1, 1], shape (N, C, H, W).

    x = p / 127.5 - 1, so 0 -> -1 and 255 -> +1: the range of a tanh generator output. A 3-D
    input gains a channel axis of 1, e.g. MNIST (N, 28, 28) -> (N, 1, 28, 28).
    """
    xp = backend.array_module(images)
    if images.dtype != np.uint8:
        raise TypeError(f"to_unit_range expects uint8 pixels, got dtype {images.dtype}")
    if images.ndim == 3:
        images = images[:, None, :, :]
    elif images.ndim != 4:
        raise ValueError(f"to_unit_range expects (N, H, W) or (N, C, H, W) images, got shape {images.shape}")
    out = images.astype(dtype)
    out /= xp.asarray(127.5, dtype=dtype)
    out -= xp.asarray(1.0, dtype=dtype)
    return out
