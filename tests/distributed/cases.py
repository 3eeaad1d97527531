"""What the distributed tests check, written once for any communicator: MPI ranks under mpiexec
(test_dist_mpi.py) and thread ranks in one process (test_dist_threads.py) run the same code."""
import numpy as np

import minigan as mg
import minigan.functional as F
from minigan import nn, optim
from minigan.distributed import DistributedOptimizer
from minigan.gan.models import make_dcgan
from minigan.gan.train import train_step

NZ, WIDTH, GLOBAL_BATCH = 16, 8, 64
LR = 0.1


def averaged_gradient(comm, k):
    """Each rank sets grad = rank + k; SGD(lr=1) then moves p = 0 by minus the gradient it used,
    which must be the mean over ranks, (size - 1) / 2 + k."""
    p = nn.Parameter(np.zeros(3, np.float64))
    opt = DistributedOptimizer(optim.SGD([p], lr=1.0), comm)
    p.grad = mg.Tensor(np.full(3, comm.rank + k, np.float64))
    opt.step()
    return -p.data


def global_batch(seed=1):
    """A fixed global batch of images in [-1, 1] and noise, the same on every rank."""
    rng = np.random.default_rng(seed)
    images = np.tanh(rng.standard_normal((GLOBAL_BATCH, 1, 28, 28))).astype(np.float32)
    z = rng.standard_normal((GLOBAL_BATCH, NZ)).astype(np.float32)
    return images, z


def fresh_models(seed=0):
    mg.manual_seed(seed)
    return make_dcgan(NZ, WIDTH, WIDTH)


class GhostBatchNorm(nn.Module):
    """Batch norm applied to each of ``chunks`` equal slices of the batch separately (the
    weights shared): what ``chunks`` ranks with plain, unsynchronised batch norm compute."""

    def __init__(self, bn, chunks):
        super().__init__()
        self.bn, self.chunks = bn, chunks

    def forward(self, x):
        n = x.shape[0] // self.chunks
        parts = [F.batch_norm(x[i * n:(i + 1) * n], None, None, self.bn.weight, self.bn.bias,
                              True, eps=self.bn.eps) for i in range(self.chunks)]
        return F.cat(parts, dim=0)


def _ghost(module, chunks):
    for name, child in list(module._modules.items()):
        if isinstance(child, nn.BatchNorm2d):
            module._modules[name] = GhostBatchNorm(child, chunks)   # keeps its place
        else:
            _ghost(child, chunks)
    return module


def single_process_step(ghost_chunks=None):
    """(G, D, stats) after one DCGAN iteration (SGD, lr LR) on the whole global batch in one
    process; with ``ghost_chunks``, batch norm normalises each slice of the batch on its own."""
    G, D = fresh_models()
    if ghost_chunks:
        _ghost(G, ghost_chunks)
        _ghost(D, ghost_chunks)
    images, z = global_batch()
    stats = train_step(G, D, optim.SGD(G.parameters(), lr=LR), optim.SGD(D.parameters(), lr=LR),
                       mg.Tensor(images), mg.Tensor(z))
    return G, D, stats


def distributed_step(comm, sync_bn=True):
    """(G, D, stats averaged over the ranks) after one DCGAN iteration on this rank's slice of
    the global batch (GLOBAL_BATCH / size rows), with SyncBatchNorm or plain batch norm."""
    G, D = fresh_models()
    if sync_bn:
        G = nn.SyncBatchNorm.convert_sync_batchnorm(G, comm)
        D = nn.SyncBatchNorm.convert_sync_batchnorm(D, comm)
    images, z = global_batch()
    n = GLOBAL_BATCH // comm.size
    rows = slice(comm.rank * n, (comm.rank + 1) * n)
    opt_g = DistributedOptimizer(optim.SGD(G.parameters(), lr=LR), comm)
    opt_d = DistributedOptimizer(optim.SGD(D.parameters(), lr=LR), comm)
    stats = train_step(G, D, opt_g, opt_d, mg.Tensor(images[rows]), mg.Tensor(z[rows]))
    return G, D, comm.allreduce_obj(stats._asdict())


def max_difference(models_a, models_b):
    """The largest absolute difference between corresponding parameters and buffers (running
    statistics excluded: ghost batch norm keeps none)."""
    worst = 0.0
    for a, b in zip(models_a, models_b):
        pa, pb = dict(a.named_parameters()), dict(b.named_parameters())
        pb = {k.replace(".bn.", "."): v for k, v in pb.items()}
        pa = {k.replace(".bn.", "."): v for k, v in pa.items()}
        assert sorted(pa) == sorted(pb)
        worst = max(worst, max(float(np.max(np.abs(pa[k].data - pb[k].data))) for k in pa))
    return worst


def train_identical(comm, steps=3):
    """After ``steps`` Adam iterations on different data per rank (SyncBatchNorm), every
    parameter and buffer of G and D is bit-identical on every rank: True on all ranks if so."""
    G, D = fresh_models(seed=comm.rank)            # different starts: the first step broadcasts
    G = nn.SyncBatchNorm.convert_sync_batchnorm(G, comm)
    D = nn.SyncBatchNorm.convert_sync_batchnorm(D, comm)
    opt_g = DistributedOptimizer(optim.Adam(G.parameters(), lr=2e-4, betas=(0.5, 0.999)), comm)
    opt_d = DistributedOptimizer(optim.Adam(D.parameters(), lr=2e-4, betas=(0.5, 0.999)), comm)
    rng = np.random.default_rng([7, comm.rank])
    for _ in range(steps):
        images = np.tanh(rng.standard_normal((8, 1, 28, 28))).astype(np.float32)
        z = rng.standard_normal((8, NZ)).astype(np.float32)
        train_step(G, D, opt_g, opt_d, mg.Tensor(images), mg.Tensor(z))
    mine = np.concatenate([t.data.reshape(-1).astype(np.float64)
                           for m in (G, D) for t in list(m.parameters()) + list(m.buffers())])
    root = comm.bcast(mine)
    same = bool(np.array_equal(mine.view(np.uint64), root.view(np.uint64)))
    return comm.allreduce_obj(float(same), "min") == 1.0
