"""The default run's checks of the MPI layer from one process: launching mpiexec itself, and
the messages when mpi4py is missing."""
import os
import shutil
import subprocess
import sys
import time

import pytest

import minigan.distributed as distributed

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))


def _mpiexec():
    here = os.path.join(os.path.dirname(sys.executable), "mpiexec")
    return here if os.path.exists(here) else shutil.which("mpiexec")


needs_mpiexec = pytest.mark.skipif(
    not distributed.mpi_available() or _mpiexec() is None or distributed.environment_size() > 1,
    reason="needs mpi4py and mpiexec (pip install 'minigan[mpi]'), started outside mpiexec")


@needs_mpiexec
@pytest.mark.parametrize("mode", ["guard", "hook"])
def test_a_raising_rank_stops_every_rank_within_seconds(mode):
    env = {**os.environ, "PYTHONPATH": ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""),
           # mpich runs as root as it is; Open MPI's mpiexec would need these
           "OMPI_ALLOW_RUN_AS_ROOT": "1", "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM": "1"}
    start = time.perf_counter()
    done = subprocess.run([_mpiexec(), "-n", "2", sys.executable,
                           os.path.join(HERE, "raising_rank.py"), mode],
                          capture_output=True, text=True, timeout=120, env=env, cwd=ROOT)
    elapsed = time.perf_counter() - start
    assert done.returncode != 0, done.stdout + done.stderr
    assert "rank 1 failed on purpose" in done.stderr
    assert "unreachable" not in done.stdout
    assert elapsed < 30, f"the run took {elapsed:.1f} s to stop"


@needs_mpiexec
def test_a_diverged_rank_stops_the_distributed_example(tmp_path):
    """The NaN guard on any rank aborts every rank with its message (lr 1e30: the first Adam
    step makes the weights ~1e30, the next loss is NaN)."""
    env = {**os.environ, "PYTHONPATH": ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""),
           "OMPI_ALLOW_RUN_AS_ROOT": "1", "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM": "1"}
    start = time.perf_counter()
    done = subprocess.run([_mpiexec(), "-n", "2", sys.executable, "-m", "examples.dcgan_mnist",
                           "--distributed", "--lr", "1e30", "--iters", "5", "--ngf", "4",
                           "--ndf", "4", "--nz", "8", "--batch-size", "8", "--bundled",
                           "--no-metrics", "--no-progress", "--out", str(tmp_path / "run")],
                          capture_output=True, text=True, timeout=300, env=env, cwd=ROOT)
    assert done.returncode != 0, done.stdout + done.stderr
    assert "training diverged" in done.stderr and "nothing was saved" in done.stderr
    assert time.perf_counter() - start < 120


@needs_mpiexec
def test_bench_distributed_prints_its_table_and_json():
    import json
    env = {**os.environ, "PYTHONPATH": ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""),
           "OMPI_ALLOW_RUN_AS_ROOT": "1", "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM": "1"}
    if shutil.which("taskset") is None:
        pytest.skip("needs taskset (util-linux) to pin the single process")
    done = subprocess.run([sys.executable, os.path.join(ROOT, "benchmarks", "bench_distributed.py"),
                           "--rounds", "1", "--iters", "1", "--warmup", "0", "--batch", "2",
                           "--width", "4", "--no-torch"],
                          capture_output=True, text=True, timeout=300, env=env, cwd=ROOT)
    assert done.returncode == 0, done.stdout + done.stderr
    last = json.loads(done.stdout.strip().splitlines()[-1])
    assert last["benchmark"] == "distributed_dcgan" and last["median_speedup"] > 0
    ranks = last["rounds"][0]["ranks"]
    assert [r["threads"] for r in ranks["ranks"]] == [1, 1]   # pinned: one core each
    assert ranks["comm_s"] > 0 and last["rounds"][0]["single"]["threads"] == 1


def test_without_mpi4py_the_error_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "mpi4py", None)   # import mpi4py now raises ImportError
    assert not distributed.mpi_available()
    with pytest.raises(ImportError, match=r"minigan\[mpi\]"):
        distributed.create_communicator()
    with pytest.raises(ValueError, match="communicator_name"):
        distributed.create_communicator("gloo")


def test_sharded_batches_are_slices_of_the_single_process_batches():
    import numpy as np
    from minigan.data import Batches
    data = np.arange(50)
    single = Batches(data, batch_size=12, seed=5)
    ranks = [distributed.ShardedBatches(data, batch_size=4, rank=r, size=3, seed=5)
             for r in range(3)]
    assert len(single) == len(ranks[0]) == 4
    streams = [r.forever() for r in ranks]
    whole = single.forever()
    for _ in range(10):             # across epoch ends too
        np.testing.assert_array_equal(np.concatenate([next(s) for s in streams]), next(whole))
    state = ranks[1].get_state()
    resumed = distributed.ShardedBatches(data, batch_size=4, rank=1, size=3, seed=5)
    resumed.set_state(state)
    np.testing.assert_array_equal(next(resumed.forever()), next(streams[1]))
    with pytest.raises(ValueError, match="same number of ranks"):
        distributed.ShardedBatches(data, batch_size=6, rank=0, size=2, seed=5).set_state(state)
    with pytest.raises(ValueError, match=r"rank must be in \[0, 3\)"):
        distributed.ShardedBatches(data, batch_size=4, rank=3, size=3)


@pytest.mark.gpu
@pytest.mark.skipif(not distributed.mpi_available(), reason="needs mpi4py")
def test_nccl_communicator_at_world_size_one():
    """NCCL at world size 1 (NCCL refuses two ranks on one GPU): allreduce and bcast of CuPy
    arrays, and a model's gradients averaged on the GPU."""
    from minigan import backend
    if not backend.cupy_available():
        pytest.skip("no CUDA device (CuPy missing or no GPU)")
    import numpy as np
    import minigan as mg
    from minigan import nn
    comm = distributed.create_communicator("nccl")
    x = backend.to_device(np.arange(6, dtype=np.float32), "cuda")
    np.testing.assert_array_equal(backend.as_numpy(comm.allreduce(x)), np.arange(6))
    np.testing.assert_array_equal(backend.as_numpy(comm.bcast(x)), np.arange(6))
    model = nn.Linear(3, 2).to("cuda")
    model(mg.Tensor(backend.to_device(np.ones((4, 3), np.float32), "cuda"))).sum().backward()
    before = backend.as_numpy(model.weight.grad.data).copy()
    comm.allreduce_grad(model)
    np.testing.assert_array_equal(backend.as_numpy(model.weight.grad.data), before)
