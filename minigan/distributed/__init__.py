"""Data-parallel training over several processes: MPI (mpi4py) on CPUs, NCCL (CuPy) on GPUs.

    comm = distributed.create_communicator()          # under mpiexec -n N: rank, size, local_rank
    with comm.abort_on_error():                       # one rank fails -> every rank stops
        comm.bcast_data(G); comm.bcast_data(D)        # same start everywhere
        G = nn.SyncBatchNorm.convert_sync_batchnorm(G, comm)
        opt_g = distributed.DistributedOptimizer(optim.Adam(G.parameters()), comm)
        loader = distributed.ShardedBatches(images, batch_size=32, rank=comm.rank,
                                            size=comm.size, seed=0)
        ...                                            # train as in one process

communicator.py: :func:`create_communicator`, :class:`MpiCommunicator` (arrays, models,
optimizer state, objects, rank-0 helpers, abort on error); nccl.py: :class:`NcclCommunicator`;
optimizer.py: :class:`DistributedOptimizer`; data.py: :class:`ShardedBatches`. The package
imports without mpi4py; creating a communicator then says what to install. docs/DISTRIBUTED.md
has the batch-norm policy and the measured and modelled scaling.
"""
from .communicator import (MPI_MISSING, MpiCommunicator, create_communicator,
                           environment_size, mpi_available)
from .data import ShardedBatches
from .optimizer import DistributedOptimizer, create_multi_node_optimizer
