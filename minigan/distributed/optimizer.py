"""An optimizer that keeps the model copies of all ranks identical (ChainerMN's multi-node
optimizer, Horovod's ``DistributedOptimizer``)."""


class DistributedOptimizer:
    """Wraps an optimizer (SGD, Adam, RMSprop) for data-parallel training; one per model (G, D).

    ``step()``: on the first call, broadcast the parameters from rank 0 (so copies that started
    from different random inits agree from then on); then, on every call, replace each gradient
    by its mean over the ranks (:meth:`MpiCommunicator.allreduce_grad`) and take the wrapped
    optimizer's step. Every rank then applies the same update to the same parameters, and the
    copies stay bit-identical. Everything else (``zero_grad``, ``state_dict``,
    ``load_state_dict``, ``param_groups``, ``state``) is the wrapped optimizer's, so checkpoints
    and learning-rate changes work unchanged.

    With the mean of per-rank gradients of per-rank mean losses, a step on ``size`` ranks of
    batch B is the step of one process on batch size*B (exactly so with SyncBatchNorm; see
    docs/DISTRIBUTED.md). Keep the learning rate of the global batch.
    """

    def __init__(self, optimizer, comm, broadcast_first_step=True):
        self.actual_optimizer = optimizer
        self.comm = comm
        self.needs_broadcast = bool(broadcast_first_step)

    def _params(self):
        return [p for group in self.actual_optimizer.param_groups for p in group["params"]]

    def step(self):
        params = self._params()
        if self.needs_broadcast:
            self.comm.bcast_data(params)
            self.needs_broadcast = False
        self.comm.allreduce_grad(params)
        self.actual_optimizer.step()

    def zero_grad(self, set_to_none=True):
        self.actual_optimizer.zero_grad(set_to_none)

    def state_dict(self):
        return self.actual_optimizer.state_dict()

    def load_state_dict(self, state_dict):
        """Load into the wrapped optimizer (call on every rank, or on rank 0 followed by
        ``comm.bcast_optimizer_state(self)``)."""
        self.actual_optimizer.load_state_dict(state_dict)

    def __getattr__(self, name):   # param_groups, state, defaults...
        return getattr(self.__dict__["actual_optimizer"], name)

    def __repr__(self):
        return f"DistributedOptimizer({type(self.actual_optimizer).__name__}, {self.comm!r})"


def create_multi_node_optimizer(optimizer, comm):
    """ChainerMN's name for :class:`DistributedOptimizer`."""
    return DistributedOptimizer(optimizer, comm)
