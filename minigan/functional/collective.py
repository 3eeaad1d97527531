"""Collectives as differentiable ops, for layers whose forward needs the other ranks' data.

``comm`` is any object with ``allreduce(array, op)`` and ``size`` (a
:class:`minigan.distributed.MpiCommunicator`); nothing here imports MPI.
"""
from ..autograd import Function


class AllReduceSum(Function):
    """y = sum over ranks r of x_r, the same on every rank; x and y of one shape.

    Backward: with the run's loss L = sum_r L_r (each rank holding its own L_r),
    dL/dx_r = sum_s dL_s/dy, so the gradient is again the sum over ranks of the gradients
    arriving at y: an allreduce-sum in the backward too (every rank must call backward)."""

    def forward(self, x, comm=None):
        self.comm = comm
        return comm.allreduce(x, "sum")

    def backward(self, gy):
        return (all_reduce_sum(gy, self.comm),)


def all_reduce_sum(x, comm):
    """Differentiable allreduce (sum) of a Tensor over the ranks of ``comm``."""
    return AllReduceSum.apply(x, comm=comm)
