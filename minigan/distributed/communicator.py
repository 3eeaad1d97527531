"""The MPI communicator: what every rank of a data-parallel run calls to agree with the others.

Data parallelism in one picture: each of the ``size`` processes (ranks) holds a full copy of the
models and trains on its own slice of every global batch; before each update the ranks average
their gradients, so every copy takes the same step and the copies stay identical (ChainerMN,
Horovod and PyTorch DDP all work this way):

    rank r:   loss_r = L(model, batch_r)  ->  g_r = d loss_r / d theta
    all:      g = (1/size) sum_r g_r       (one allreduce of every gradient, packed in one buffer)
    rank r:   theta <- update(theta, g)    (the same g and theta everywhere: identical results)

The transport is MPI through mpi4py: NumPy arrays are passed as buffers (no pickling); CuPy
arrays travel through host memory (:class:`~minigan.distributed.nccl.NcclCommunicator` keeps
them on the GPU). Python objects (metrics, checkpoint states) go through mpi4py's pickled
collectives. Every collective must be called by every rank in the same order, or the run hangs:
that is why a rank that fails must abort them all (:meth:`MpiCommunicator.abort_on_error`).
"""
import contextlib
import os
import sys
import time
import traceback

import numpy as np

from .. import backend
from ..autograd import Tensor

MPI_MISSING = ("minigan.distributed needs mpi4py and an MPI library: pip install 'minigan[mpi]' "
               "(mpi4py and the mpich wheel), then start the ranks with mpiexec -n N")


def mpi_available():
    """True when mpi4py imports (and so finds an MPI library)."""
    try:
        from mpi4py import MPI  # noqa: F401
    except Exception:   # ImportError, or an MPI library that fails to load
        return False
    return True


def _mpi():
    try:
        from mpi4py import MPI
    except Exception as e:
        raise ImportError(f"{MPI_MISSING} ({type(e).__name__}: {e})") from e
    return MPI


def create_communicator(communicator_name="mpi", mpi_comm=None):
    """The communicator of this process (``chainermn.create_communicator``).

    communicator_name: "mpi" (any arrays; CuPy arrays through host memory) or "nccl" (CuPy
    arrays with NCCL on the GPU, one GPU per rank, chosen by ``local_rank``). mpi_comm: an
    mpi4py communicator, ``MPI.COMM_WORLD`` by default. Raises ImportError naming the extra to
    install when mpi4py is missing."""
    if communicator_name == "mpi":
        return MpiCommunicator(mpi_comm)
    if communicator_name == "nccl":
        from .nccl import NcclCommunicator
        return NcclCommunicator(mpi_comm)
    raise ValueError(f"create_communicator: unknown communicator_name {communicator_name!r} "
                     "(expected 'mpi' or 'nccl')")


_OPS = ("sum", "mean", "max", "min")


def _check_op(op):
    if op not in _OPS:
        raise ValueError(f"unknown reduction op {op!r}: expected one of {_OPS}")


class MpiCommunicator:
    """Collectives over the ranks of ``mpi_comm`` (``MPI.COMM_WORLD`` by default).

    rank: this process's index in [0, size); size: the number of ranks; local_rank: its index
    among the ranks on the same machine (which GPU it should use); is_main: rank == 0, the rank
    that writes files and prints (:meth:`main_only`)."""

    def __init__(self, mpi_comm=None):
        MPI = _mpi()
        self.MPI = MPI
        self.mpi_comm = MPI.COMM_WORLD if mpi_comm is None else mpi_comm
        self.rank = self.mpi_comm.Get_rank()
        self.size = self.mpi_comm.Get_size()
        # ranks sharing memory are the ranks on one node: their order there is the local rank
        node = self.mpi_comm.Split_type(MPI.COMM_TYPE_SHARED, key=self.rank)
        self.local_rank, self.local_size = node.Get_rank(), node.Get_size()
        node.Free()

    is_main = property(lambda self: self.rank == 0)

    def __repr__(self):
        return (f"{type(self).__name__}(rank={self.rank}, size={self.size}, "
                f"local_rank={self.local_rank})")

    # --- arrays -------------------------------------------------------------------------------
    def _reduce_host(self, host, op):
        """Allreduce a contiguous NumPy array in place."""
        mpi_op = {"sum": self.MPI.SUM, "mean": self.MPI.SUM, "max": self.MPI.MAX,
                  "min": self.MPI.MIN}[op]
        if self.size > 1:
            self.mpi_comm.Allreduce(self.MPI.IN_PLACE, host, op=mpi_op)
        if op == "mean":
            host /= host.dtype.type(self.size)
        return host

    def allreduce(self, array, op="sum"):
        """A new array: the elementwise ``op`` ("sum", "mean", "max", "min") of ``array`` over
        all ranks (same shape and dtype on every rank); on the array's device."""
        _check_op(op)
        host = np.ascontiguousarray(backend.as_numpy(array)).copy()
        if op == "mean" and host.dtype.kind != "f":
            raise TypeError(f"allreduce(op='mean') needs a floating-point array, got {host.dtype}")
        self._reduce_host(host, op)
        return backend.to_device(host, backend.device_of(array))

    def bcast(self, array, root=0):
        """``array`` of rank ``root``, returned on every rank (same shape and dtype everywhere)."""
        host = np.ascontiguousarray(backend.as_numpy(array)).copy()
        if self.size > 1:
            self.mpi_comm.Bcast(host, root=root)
        return backend.to_device(host, backend.device_of(array))

    def _bcast_inplace(self, arrays, root=0):
        """Overwrite each array (NumPy or CuPy, any shapes, one dtype group per buffer) with
        rank ``root``'s values, packed into one message per dtype."""
        for group in _by_dtype(arrays).values():
            flat = self.bcast(_pack([a for a in group]), root)
            _unpack(flat, group)

    # --- models and optimizers ----------------------------------------------------------------
    def bcast_data(self, module, root=0):
        """Copy every parameter and buffer of ``module`` (an nn.Module, or a list of Tensors)
        from rank ``root`` to all ranks, in place (``chainermn``'s ``bcast_data``)."""
        tensors = _tensors(module)
        self._check_same_layout(tensors, "bcast_data")
        self._bcast_inplace([t.data for t in tensors], root)

    def allreduce_grad(self, module, op="mean"):
        """Replace each parameter's gradient by its mean (``op="sum"``: sum) over all ranks.

        ``module``: an nn.Module or a list of parameters. All gradients travel in one message
        per dtype. A parameter whose gradient is None on every rank stays None; None on some
        ranks but not others raises RuntimeError on every rank (naming the parameter): the
        ranks ran different graphs, and averaging would silently be wrong."""
        if op not in ("mean", "sum"):
            raise ValueError(f"allreduce_grad: op must be 'mean' or 'sum', got {op!r}")
        params = [p for p in _parameters(module) if p.requires_grad]
        if not params:
            return
        present = np.array([p.grad is not None for p in params], np.float64)
        counts = self.allreduce(present, "sum")
        partial = [i for i, c in enumerate(counts) if 0 < c < self.size]
        if partial:
            i = partial[0]
            raise RuntimeError(
                f"allreduce_grad: parameter {i} (shape {params[i].shape}) has a gradient on "
                f"{int(counts[i])} of {self.size} ranks: every rank must backpropagate through "
                "the same parameters")
        with_grad = [p for p, c in zip(params, counts) if c == self.size]
        for p in with_grad:
            if p.grad.shape != p.shape:
                raise RuntimeError(f"allreduce_grad: a gradient of shape {p.grad.shape} for a "
                                   f"parameter of shape {p.shape}")
        groups = {}
        for p in with_grad:
            groups.setdefault((str(p.grad.dtype), p.grad.device), []).append(p)
        for group in groups.values():
            flat = self.allreduce(_pack([p.grad.data for p in group]), op)
            start = 0
            for p in group:
                # a new array, not a write into the old one: a gradient may be a view that
                # other tensors share (or a read-only broadcast)
                n = p.numel()
                p.grad = Tensor._wrap(flat[start:start + n].reshape(p.shape))
                start += n

    def allreduce_buffers(self, module):
        """Replace every floating-point buffer of ``module`` (batch norm's running mean and
        variance) by its mean over the ranks: how ranks that normalise with local batch
        statistics agree before evaluating or saving (see docs/DISTRIBUTED.md's BN policy)."""
        buffers = [b.data for _, b in module.named_buffers() if b.data.dtype.kind == "f"]
        for group in _by_dtype(buffers).values():
            _unpack(self.allreduce(_pack(group), "mean"), group)

    def bcast_optimizer_state(self, optimizer, root=0):
        """Give every rank the optimizer state of rank ``root`` (Adam's moments and step
        counts), as on resume: rank ``root`` loaded the checkpoint, the others take its state."""
        inner = getattr(optimizer, "actual_optimizer", optimizer)
        state = self.bcast_obj(inner.state_dict() if self.rank == root else None, root)
        if self.rank != root:
            inner.load_state_dict(state)

    def _check_same_layout(self, tensors, what):
        layout = [(tuple(t.shape), str(t.dtype)) for t in tensors]
        root_layout = self.bcast_obj(layout)
        if layout != root_layout:
            raise RuntimeError(f"{what}: rank {self.rank}'s model has {len(layout)} tensors "
                               f"{layout[:3]}..., rank 0's {len(root_layout)} "
                               f"{root_layout[:3]}...: every rank must build the same model")

    # --- Python objects -----------------------------------------------------------------------
    def bcast_obj(self, obj, root=0):
        """``obj`` of rank ``root`` (any picklable object) on every rank."""
        return self.mpi_comm.bcast(obj, root=root) if self.size > 1 else obj

    def gather_obj(self, obj, root=0):
        """A list of every rank's ``obj`` on rank ``root`` (None on the others)."""
        return self.mpi_comm.gather(obj, root=root) if self.size > 1 else [obj]

    def allgather_obj(self, obj):
        """A list of every rank's ``obj``, on every rank."""
        return self.mpi_comm.allgather(obj) if self.size > 1 else [obj]

    def allreduce_obj(self, value, op="mean"):
        """``op`` over the ranks of a number, array, or dict of them (metrics): a float for a
        number, a NumPy array for an array, a dict for a dict."""
        _check_op(op)
        if isinstance(value, dict):
            keys = sorted(value)
            if self.bcast_obj(keys) != keys:
                raise RuntimeError(f"allreduce_obj: rank {self.rank} has keys {keys}, "
                                   "not rank 0's")
            reduced = self.allreduce(np.array([float(value[k]) for k in keys]), op)
            return {k: float(v) for k, v in zip(keys, reduced)}
        if np.ndim(value) == 0:
            return float(self.allreduce(np.array([float(value)]), op)[0])
        array = np.asarray(backend.as_numpy(value))
        if op == "mean":
            array = array.astype(np.float64)
        return self.allreduce(array, op)

    def barrier(self):
        self.mpi_comm.Barrier()

    def wait_all(self, poll_s=0.01):
        """A barrier that sleeps while it waits: MPI's blocking calls spin on a core, which on a
        machine with few cores slows down the rank still working (e.g. rank 0's final metrics)."""
        if self.size == 1:
            return
        request = self.mpi_comm.Ibarrier()
        while not request.Test():
            time.sleep(poll_s)

    # --- rank 0's side effects ----------------------------------------------------------------
    def main_only(self, fn, *args, **kwargs):
        """``fn(*args, **kwargs)`` on rank 0 (its result), None elsewhere: files, pictures,
        logs. ``fn`` must not call collectives (the other ranks are not calling them)."""
        return fn(*args, **kwargs) if self.is_main else None

    def print(self, *args, **kwargs):
        """print() on rank 0 only."""
        if self.is_main:
            print(*args, **kwargs)

    # --- failures -----------------------------------------------------------------------------
    def abort(self, errorcode=1, message=None):
        """Stop every rank now (MPI_Abort), after printing ``message`` to stderr."""
        if message:
            print(f"[rank {self.rank}/{self.size}] {message}", file=sys.stderr, flush=True)
        sys.stdout.flush()
        sys.stderr.flush()
        # MPI_Abort kills the job at once, and mpiexec's forwarding of this rank's output can
        # lose what was just written (the message went missing in 1 run of 3): give it a moment
        time.sleep(0.5)
        self.mpi_comm.Abort(errorcode)
        # MPICH's Abort asks the process manager to kill the job and may return before it has:
        # never let this rank carry on meanwhile
        os._exit(errorcode)

    @contextlib.contextmanager
    def abort_on_error(self):
        """Inside this block, an exception on any one rank prints its traceback (with the rank)
        and aborts all ranks with exit status 1, instead of leaving the others waiting forever
        in their next collective. ``sys.exit(0)`` passes through; ``sys.exit(message)`` or a
        non-zero status aborts with that message and status."""
        try:
            yield self
        except SystemExit as e:
            if e.code in (None, 0):
                raise
            code = e.code if isinstance(e.code, int) else 1
            self.abort(code, None if isinstance(e.code, int) else str(e.code))
        except BaseException:
            self.abort(1, "failed; aborting all ranks:\n" + traceback.format_exc())

    def install_excepthook(self):
        """Abort all ranks on any uncaught exception in this process (like ``python -m
        mpi4py``): for scripts that cannot wrap their body in :meth:`abort_on_error`."""
        previous = sys.excepthook

        def hook(kind, value, tb):
            previous(kind, value, tb)
            self.abort(1, f"uncaught {kind.__name__}; aborting all ranks")

        sys.excepthook = hook


# --- packing many arrays into one message -----------------------------------------------------

def _tensors(module):
    if hasattr(module, "named_parameters"):
        return [p for _, p in module.named_parameters()] + [b for _, b in module.named_buffers()]
    return list(module)


def _parameters(module):
    return list(module.parameters()) if hasattr(module, "parameters") else list(module)


def _by_dtype(arrays):
    groups = {}
    for a in arrays:
        groups.setdefault((str(a.dtype), backend.device_of(a)), []).append(a)
    return groups


def _pack(arrays):
    """One flat contiguous array holding ``arrays`` one after another (same dtype and device):
    one message of the total size costs one latency instead of one per array."""
    xp = backend.array_module(*arrays)
    return xp.concatenate([a.reshape(-1) for a in arrays])


def _unpack(flat, arrays):
    """Copy consecutive pieces of ``flat`` back into ``arrays`` in place."""
    start = 0
    for a in arrays:
        a[...] = flat[start:start + a.size].reshape(a.shape)
        start += a.size


def environment_size():
    """The world size mpiexec announced to this process (its environment), 1 when none: lets
    tests and scripts know they run under mpiexec without initialising MPI."""
    for name in ("PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "PMIX_SIZE"):   # MPICH, Open MPI, PMIx
        if os.environ.get(name, "").isdigit():
            return int(os.environ[name])
    return 1
