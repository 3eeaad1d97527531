"""minigan.distributed over real MPI ranks. Run with

    mpiexec -n 2 python -m pytest -q tests/distributed

Every rank runs every test in the same order (each test is a sequence of collectives), and the
checks hold on every rank. In a single process, or without mpi4py, the module skips, saying why.
"""
import json
import os

import numpy as np
import pytest

from minigan.distributed import environment_size, mpi_available

if not mpi_available():
    pytest.skip("mpi4py is not installed (pip install 'minigan[mpi]')", allow_module_level=True)
if environment_size() < 2:
    pytest.skip("needs 2 or more MPI ranks: mpiexec -n 2 python -m pytest tests/distributed",
                allow_module_level=True)

import cases  # noqa: E402
from minigan.distributed import ShardedBatches, create_communicator  # noqa: E402

pytestmark = pytest.mark.mpi
TOL = 1e-5   # as in test_dist_threads: float32 rounding of the same step, ~1e-8 seen


@pytest.fixture(scope="module")
def comm():
    return create_communicator()


def test_communicator_knows_its_place(comm):
    assert comm.size == environment_size() >= 2
    assert sorted(comm.allgather_obj(comm.rank)) == list(range(comm.size))
    assert 0 <= comm.local_rank < comm.local_size


def test_gradient_used_is_the_mean_over_ranks(comm):
    np.testing.assert_array_equal(cases.averaged_gradient(comm, 0.25),
                                  np.full(3, (comm.size - 1) / 2 + 0.25))


def test_parameters_bit_identical_after_steps(comm):
    assert cases.train_identical(comm, steps=3)


def test_sync_bn_step_equals_single_process_step(comm):
    """2 ranks x 32 with SyncBatchNorm take the step of 1 process x 64 (same data split, same
    noise) within float32 rounding."""
    G1, D1, stats1 = cases.single_process_step()
    G, D, stats = cases.distributed_step(comm)
    assert cases.max_difference((G, D), (G1, D1)) < TOL
    for name in ("loss_d", "loss_g", "d_real", "d_fake"):
        assert stats[name] == pytest.approx(getattr(stats1, name), rel=1e-5)


def test_plain_bn_step_is_the_ghost_batch_norm_step(comm):
    """Without SyncBatchNorm: one process's step with each rank's slice normalised on its own,
    measurably not the batch-of-64 step (the difference docs/DISTRIBUTED.md documents)."""
    G1, D1, _ = cases.single_process_step()
    Gg, Dg, _ = cases.single_process_step(ghost_chunks=comm.size)
    G, D, _ = cases.distributed_step(comm, sync_bn=False)
    assert cases.max_difference((G, D), (Gg, Dg)) < TOL
    assert cases.max_difference((G, D), (G1, D1)) > 100 * TOL


def test_sharded_batches_partition_the_global_batches(comm):
    data = np.arange(40)
    loader = ShardedBatches(data, batch_size=4, rank=comm.rank, size=comm.size, seed=3)
    mine = np.concatenate([next(iter(loader)) for _ in range(len(loader))])
    everyone = np.concatenate(comm.allgather_obj(mine))
    assert len(np.unique(everyone)) == len(everyone) == len(loader) * 4 * comm.size
    assert comm.bcast_obj(loader.get_state()) == loader.get_state()


def test_allreduce_and_bcast_of_arrays_and_objects(comm):
    x = np.full((2, 3), comm.rank, np.float32)
    np.testing.assert_array_equal(comm.allreduce(x), np.full((2, 3), sum(range(comm.size))))
    np.testing.assert_array_equal(comm.allreduce(x, "max"), np.full((2, 3), comm.size - 1))
    np.testing.assert_array_equal(comm.bcast(x), np.zeros((2, 3)))
    assert comm.bcast_obj({"rank": comm.rank}) == {"rank": 0}
    assert comm.allreduce_obj({"loss": float(comm.rank)}) == {"loss": (comm.size - 1) / 2}


SMALL = ["--distributed", "--ngf", "4", "--ndf", "4", "--nz", "8", "--batch-size", "8",
         "--bundled", "--no-metrics", "--no-progress", "--samples", "4"]


def _checkpoint_models(folder):
    from minigan import io
    return io.load_checkpoint(os.path.join(folder, "checkpoint.npz"))


def test_dcgan_example_resumes_exactly_on_the_same_ranks(comm, tmp_path):
    """Rank 0 writes the run folder; 4 iterations straight equal 2, then --resume to 4."""
    from examples import dcgan_mnist
    root = comm.bcast_obj(str(tmp_path))           # rank 0's folder: the only one written
    straight, split = os.path.join(root, "straight"), os.path.join(root, "split")
    assert dcgan_mnist.main(SMALL + ["--iters", "4", "--out", straight]) == 0
    assert dcgan_mnist.main(SMALL + ["--iters", "2", "--out", split]) == 0
    assert dcgan_mnist.main(SMALL + ["--iters", "4", "--out", split, "--resume"]) == 0
    if comm.is_main:
        a, b = _checkpoint_models(straight), _checkpoint_models(split)
        assert a["extra"]["config"]["ranks"] == comm.size
        for model in a["models"]:
            for key, value in a["models"][model].items():
                np.testing.assert_array_equal(value, b["models"][model][key], err_msg=key)
        assert a["extra"]["rank_rng"] == b["extra"]["rank_rng"]
    else:
        assert not os.path.exists(os.path.join(str(tmp_path), "straight"))


def test_wgan_gp_example_runs_distributed_with_local_batch_norm(comm, tmp_path):
    from examples import wgan_mnist
    out = os.path.join(comm.bcast_obj(str(tmp_path)), "wgan")
    assert wgan_mnist.main(SMALL + ["--gp", "--n-critic", "2", "--iters", "2", "--no-sync-bn",
                                    "--out", out]) == 0
    if comm.is_main:
        records = [json.loads(line) for line in open(os.path.join(out, "metrics.jsonl"))]
        assert records[-1]["final"] and records[-1]["step"] == 2
