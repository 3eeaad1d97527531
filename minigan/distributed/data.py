"""Each rank's share of every global batch, shuffled the same way on every rank."""
import numpy as np

from .. import backend
from ..data.loader import Batches


class ShardedBatches(Batches):
    """Rank ``rank``'s slice of the batches that ``Batches(*arrays, batch_size=size *
    batch_size, seed=seed)`` would yield in one process.

    Every rank holds the whole dataset and draws the same permutation per epoch from the shared
    ``seed``; global batch b is positions [b*G, (b+1)*G) of it (G = size * batch_size), and rank r
    takes its r-th block of ``batch_size``:

        global batch b:  | rank 0 | rank 1 | ... | rank size-1 |      each block batch_size long

    So the ranks' shards are disjoint, each epoch reshuffles which samples land on which rank,
    the ranks' batches put together are exactly the single-process run's batches (the
    equivalence test relies on it), and the loader state (epoch, position, generator) is the
    same on every rank: rank 0's checkpointed state restores every rank. ``len()`` is global
    batches per epoch (the same on every rank); ``batch_size`` is the per-rank size.
    """

    def __init__(self, *arrays, batch_size, rank, size, shuffle=True, seed=0):
        if not (isinstance(size, int) and size >= 1):
            raise ValueError(f"ShardedBatches: size must be an int >= 1, got {size!r}")
        if not (isinstance(rank, int) and 0 <= rank < size):
            raise ValueError(f"ShardedBatches: rank must be in [0, {size}), got {rank!r}")
        if int(batch_size) < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.rank, self.size, self.rank_batch_size = rank, size, int(batch_size)
        # every global batch must be whole, or the ranks would disagree on how many there are
        super().__init__(*arrays, batch_size=size * int(batch_size), shuffle=shuffle, seed=seed,
                         drop_last=True)

    def _take(self, b):
        start = b * self.batch_size + self.rank * self.rank_batch_size
        idx = self._order[start:start + self.rank_batch_size]
        out = []
        for a in self.arrays:
            xp = backend.array_module(a)
            out.append(a[xp.asarray(idx)] if xp is not np else a[idx])
        return out[0] if len(out) == 1 else tuple(out)

    def get_state(self):
        return {**super().get_state(), "ranks": self.size}

    def set_state(self, state):
        """Restore a state saved by any rank of a run with the same number of ranks."""
        if state.get("ranks", 1) != self.size:
            raise ValueError(f"loader state was saved by a run on {state.get('ranks', 1)} ranks; "
                             f"this one has {self.size}: resume with the same number of ranks")
        super().set_state({k: v for k, v in state.items() if k != "ranks"})
