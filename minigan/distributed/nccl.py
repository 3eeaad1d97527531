"""The GPU communicator: CuPy arrays reduced by NCCL on the GPUs, MPI for everything else.

NCCL (NVIDIA's collective library, reached through ``cupy.cuda.nccl``) runs the allreduce as a
ring over NVLink / PCIe / InfiniBand without copying to host memory: with n GPUs, each sends and
receives 2 (n - 1) / n of the message, so its time barely grows with n (docs/DISTRIBUTED.md has
the model). MPI stays for what NCCL does not do: starting the ranks, handing out the NCCL id,
pickled objects. One GPU per rank: rank r uses GPU ``local_rank`` of its node; NCCL refuses two
ranks on one GPU.

Not run in this project's CI (no GPU there): its tests are marked ``gpu`` and skip without one.
"""
import numpy as np

from .. import backend
from .communicator import MpiCommunicator, _check_op


class NcclCommunicator(MpiCommunicator):
    """:class:`MpiCommunicator` whose array collectives on CuPy arrays go through NCCL; NumPy
    arrays (and objects) still go through MPI. Selects GPU ``local_rank`` on construction."""

    def __init__(self, mpi_comm=None):
        super().__init__(mpi_comm)
        cp = backend.require_cupy()
        from cupy.cuda import nccl
        self.cp, self.nccl = cp, nccl
        if self.local_rank >= cp.cuda.runtime.getDeviceCount():
            raise RuntimeError(f"rank {self.rank} is local rank {self.local_rank} but this node "
                               f"has {cp.cuda.runtime.getDeviceCount()} GPU(s): start at most "
                               "one rank per GPU")
        cp.cuda.Device(self.local_rank).use()
        uid = self.bcast_obj(nccl.get_unique_id() if self.is_main else None)
        self.nccl_comm = nccl.NcclCommunicator(self.size, uid, self.rank)
        self._dtypes = {np.dtype(np.float16): nccl.NCCL_FLOAT16,
                        np.dtype(np.float32): nccl.NCCL_FLOAT32,
                        np.dtype(np.float64): nccl.NCCL_FLOAT64,
                        np.dtype(np.int32): nccl.NCCL_INT32,
                        np.dtype(np.int64): nccl.NCCL_INT64}
        self._ops = {"sum": nccl.NCCL_SUM, "mean": nccl.NCCL_SUM, "max": nccl.NCCL_MAX,
                     "min": nccl.NCCL_MIN}

    def _nccl_dtype(self, array):
        try:
            return self._dtypes[np.dtype(array.dtype)]
        except KeyError:
            raise TypeError(f"NCCL cannot reduce dtype {array.dtype} (supported: "
                            f"{sorted(str(d) for d in self._dtypes)})") from None

    def allreduce(self, array, op="sum"):
        if not backend.is_cupy_array(array):
            return super().allreduce(array, op)
        _check_op(op)
        out = self.cp.ascontiguousarray(array).copy()
        stream = self.cp.cuda.get_current_stream().ptr
        self.nccl_comm.allReduce(out.data.ptr, out.data.ptr, out.size, self._nccl_dtype(out),
                                 self._ops[op], stream)
        if op == "mean":
            out /= out.dtype.type(self.size)
        return out

    def bcast(self, array, root=0):
        if not backend.is_cupy_array(array):
            return super().bcast(array, root)
        out = self.cp.ascontiguousarray(array).copy()
        stream = self.cp.cuda.get_current_stream().ptr
        self.nccl_comm.bcast(out.data.ptr, out.size, self._nccl_dtype(out), root, stream)
        return out
