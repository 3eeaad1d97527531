"""Data-parallel throughput: the DCGAN iteration (default widths) on 2 MPI ranks of 1 thread each
against 1 process of 1 thread, on the same machine, with the time spent communicating.

    python benchmarks/bench_distributed.py                 # launches both and prints the table
    python benchmarks/bench_distributed.py --rounds 3 --iters 20 --batch 64

Each measurement is a fresh process (or pair of ranks) pinned to cores: the single process with
``taskset -c 0``, the ranks with ``mpiexec -n 2 -bind-to core``; minigan's kernels size their
thread pool from the CPU affinity, so each gets one thread (OpenBLAS and OpenMP are held to one
as well). Both run the same ``train_step`` at --batch images per process (weak scaling, as
ChainerMN and Horovod measured): the ranks' global batch is 2 x --batch, with SyncBatchNorm and
averaged gradients. The rounds alternate the two so that load from other users of the machine
hits both alike; the load average is printed beside every number.

Communication per iteration: wall time inside the communicator's allreduce (the gradients of G
and D, SyncBatchNorm's sums, the statistics), which includes waiting for the slower rank. The
gradient allreduce alone is also timed at the model's size, which docs/DISTRIBUTED.md's model of
scaling to N GPUs starts from. With PyTorch installed, its single-thread iteration at the same
batch is timed too, in the single process (the ratio column).
"""
import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import REPO, import_torch, json_line, print_blas_info  # noqa: E402

import minigan as mg  # noqa: E402 - _common made a checkout's minigan importable
from minigan import nn, optim  # noqa: E402
from minigan.gan.models import make_dcgan  # noqa: E402
from minigan.gan.train import train_step  # noqa: E402

NZ = 100
ONE_THREAD = {"OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
              "NUMBA_NUM_THREADS": "1"}


def load():
    return os.getloadavg()


class TimedComm:
    """Wraps a communicator: the same calls, with the wall and CPU time spent in allreduce."""

    def __init__(self, comm):
        self.comm, self.seconds, self.cpu_seconds = comm, 0.0, 0.0

    def __getattr__(self, name):
        return getattr(self.comm, name)

    def allreduce(self, array, op="sum"):
        t0, c0 = time.perf_counter(), time.process_time()
        try:
            return self.comm.allreduce(array, op)
        finally:
            self.seconds += time.perf_counter() - t0
            self.cpu_seconds += time.process_time() - c0


def measure(batch, iters, warmup, comm=None, width=64):
    """Per-iteration seconds of the DCGAN train_step on this process's batch (median and minimum
    of the timed iterations), its CPU time outside communication (median), and the seconds in
    communication per iteration (median).

    On a machine that other users load, the wall time of one process and of two ranks measures
    their share of the scheduler as much as the code; the CPU time outside communication is what
    the iteration's own work costs, load or not."""
    mg.manual_seed(0)
    G, D = make_dcgan(NZ, width, width)
    opt_g = optim.Adam(G.parameters(), lr=2e-4, betas=(0.5, 0.999))
    opt_d = optim.Adam(D.parameters(), lr=2e-4, betas=(0.5, 0.999))
    timed = None
    if comm is not None:
        from minigan.distributed import DistributedOptimizer
        timed = TimedComm(comm)
        G = nn.SyncBatchNorm.convert_sync_batchnorm(G, timed)
        D = nn.SyncBatchNorm.convert_sync_batchnorm(D, timed)
        comm.bcast_data(G)
        comm.bcast_data(D)
        opt_g, opt_d = DistributedOptimizer(opt_g, timed), DistributedOptimizer(opt_d, timed)
    rank = 0 if comm is None else comm.rank
    rng = np.random.default_rng([1, rank])
    real = mg.Tensor(rng.uniform(-1, 1, (batch, 1, 28, 28)).astype(np.float32))
    times, comm_times, cpu_times = [], [], []
    for i in range(warmup + iters):
        z = mg.Tensor(rng.standard_normal((batch, NZ)).astype(np.float32))
        before = (0.0, 0.0) if timed is None else (timed.seconds, timed.cpu_seconds)
        t0, c0 = time.perf_counter(), time.process_time()
        stats = train_step(G, D, opt_g, opt_d, real, z)
        if timed is not None:   # the example averages the statistics too: one more message
            timed.allreduce(np.array(stats, np.float64), "mean")
        if i >= warmup:
            times.append(time.perf_counter() - t0)
            cpu = time.process_time() - c0
            if timed is None:
                comm_times.append(0.0)
                cpu_times.append(cpu)
            else:
                comm_times.append(timed.seconds - before[0])
                cpu_times.append(cpu - (timed.cpu_seconds - before[1]))
    params = sum(p.numel() for m in (G, D) for p in m.parameters())
    return {"iteration_s": statistics.median(times), "iteration_min_s": min(times),
            "compute_cpu_s": statistics.median(cpu_times),
            "comm_s": statistics.median(comm_times), "comm_min_s": min(comm_times),
            "params": params}


def gradient_allreduce_s(comm, params, repeat=10):
    """Median seconds of one allreduce (mean) of ``params`` float32 values: the gradients."""
    buf = np.ones(params, np.float32)
    comm.allreduce(buf, "mean")
    times = []
    for _ in range(repeat):
        comm.barrier()
        t0 = time.perf_counter()
        comm.allreduce(buf, "mean")
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def torch_iteration_s(batch, iters, warmup):
    torch = import_torch(threads=1)
    if torch is None:
        return None
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import bench_dcgan
    _, (G_mg, D_mg, real_mg) = bench_dcgan.minigan_setup(batch, "cpu")
    step = bench_dcgan.torch_setup(torch, batch, "cpu", G_mg, D_mg, real_mg)
    for _ in range(warmup):
        step()
    times = []
    for _ in range(iters):
        t0 = time.perf_counter()
        step()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def worker(args):
    """One measurement, printed as a JSON line (rank 0's, with every rank's times)."""
    info = {"load_before": load()}
    if args.mode == "single":
        result = measure(args.batch, args.iters, args.warmup, width=args.width)
        result["torch_iteration_s"] = (None if args.no_torch or args.width != 64 else
                                       torch_iteration_s(args.batch, args.iters, args.warmup))
        result["threads"] = len(os.sched_getaffinity(0))
    else:
        from minigan.distributed import create_communicator
        comm = create_communicator()
        with comm.abort_on_error():
            result = measure(args.batch, args.iters, args.warmup, comm, args.width)
            result["allreduce_grad_s"] = gradient_allreduce_s(comm, result["params"])
            every = comm.gather_obj({**result, "threads": len(os.sched_getaffinity(0))})
            if not comm.is_main:
                return
            result["ranks"] = every
            for key in ("iteration_s", "iteration_min_s", "compute_cpu_s"):
                result[key] = max(r[key] for r in every)   # the slower rank sets the pace
    print("RESULT " + json.dumps({**result, **info, "load_after": load()}), flush=True)


def run(cmd, env):
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=REPO, timeout=1800)
    lines = [l for l in done.stdout.splitlines() if l.startswith("RESULT ")]
    if done.returncode != 0 or not lines:
        sys.exit(f"{' '.join(cmd)} failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
    return json.loads(lines[-1][len("RESULT "):])


def launcher(args):
    info = print_blas_info()
    env = {**os.environ, **ONE_THREAD}
    me = [sys.executable, os.path.abspath(__file__), "--batch", str(args.batch), "--iters",
          str(args.iters), "--warmup", str(args.warmup), "--width", str(args.width)] + \
        (["--no-torch"] if args.no_torch else [])
    mpiexec = os.path.join(os.path.dirname(sys.executable), "mpiexec")
    mpiexec = mpiexec if os.path.exists(mpiexec) else shutil.which("mpiexec")
    if mpiexec is None:
        sys.exit("no mpiexec found: pip install 'minigan[mpi]'")
    single_cmd = ["taskset", "-c", "0"] + me + ["--mode", "single"]
    ranks_cmd = [mpiexec, "-n", "2", "-bind-to", "core"] + me + ["--mode", "ranks"]
    rows = []
    print(f"DCGAN (ngf = ndf = {args.width}) train_step, batch {args.batch} per process, {args.iters} timed "
          f"iterations after {args.warmup}; load average before: {load()}")
    print("speed-up: of the medians of wall time per iteration; 'of min': of the fastest "
          "iterations; 'of CPU': 2 x the single process's CPU time per iteration over the "
          "slower rank's CPU time outside communication plus its fastest communication")
    header = (f"{'round':>5} {'1p img/s':>9} {'2r img/s':>9} {'speed-up':>8} {'of min':>7} "
              f"{'of CPU':>7} {'comm ms/it':>10} {'(min)':>6} {'grad AR ms':>10} "
              f"{'torch 1t img/s':>14} {'load (1, 5 min)':>16}")
    print(header)
    for r in range(args.rounds):
        single = run(single_cmd, env)
        ranks = run(ranks_cmd, env)
        one = args.batch / single["iteration_s"]
        two = 2 * args.batch / ranks["iteration_s"]
        torch_ips = (args.batch / single["torch_iteration_s"]
                     if single.get("torch_iteration_s") else None)
        of_min = 2 * single["iteration_min_s"] / ranks["iteration_min_s"]
        of_cpu = 2 * single["compute_cpu_s"] / (ranks["compute_cpu_s"] + ranks["comm_min_s"])
        rows.append({"single": single, "ranks": ranks, "single_images_per_s": one,
                     "ranks_images_per_s": two, "speedup": two / one,
                     "speedup_of_min": of_min, "speedup_of_cpu": of_cpu})
        print(f"{r + 1:>5} {one:9.1f} {two:9.1f} {two / one:8.2f} {of_min:7.2f} {of_cpu:7.2f} "
              f"{ranks['comm_s'] * 1e3:10.1f} {ranks['comm_min_s'] * 1e3:6.1f} "
              f"{ranks['allreduce_grad_s'] * 1e3:10.1f} "
              f"{'-' if torch_ips is None else f'{torch_ips:.1f}':>14} "
              f"{ranks['load_after'][0]:7.1f} {ranks['load_after'][1]:7.1f}")
    speedups = [r["speedup"] for r in rows]
    params = rows[0]["ranks"]["params"]
    summary = {"benchmark": "distributed_dcgan", "batch_per_process": args.batch,
               "rounds": rows, "median_speedup": statistics.median(speedups),
               "best_speedup": max(speedups), "gradient_bytes": 4 * params,
               "median_speedup_of_min": statistics.median(r["speedup_of_min"] for r in rows),
               "median_speedup_of_cpu": statistics.median(r["speedup_of_cpu"] for r in rows),
               "median_comm_ms": statistics.median(r["ranks"]["comm_s"] * 1e3 for r in rows),
               "median_grad_allreduce_ms":
                   statistics.median(r["ranks"]["allreduce_grad_s"] * 1e3 for r in rows),
               "load_after": load(), "blas": info}
    print(f"speed-up of 2 ranks x 1 thread over 1 process x 1 thread: median "
          f"{summary['median_speedup']:.2f}, best {summary['best_speedup']:.2f}, of the fastest "
          f"iterations {summary['median_speedup_of_min']:.2f}, of CPU time "
          f"{summary['median_speedup_of_cpu']:.2f} (goal >= 1.8); "
          f"gradients {params} float32 = {4 * params / 1e6:.2f} MB per iteration")
    json_line(summary)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch", type=int, default=64, help="images per process")
    parser.add_argument("--iters", type=int, default=20, help="timed iterations")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--width", type=int, default=64, help="ngf = ndf of the DCGAN")
    parser.add_argument("--no-torch", action="store_true",
                        help="skip PyTorch's single-thread iteration (always skipped unless "
                             "--width is 64, the width its model has)")
    parser.add_argument("--mode", choices=("launch", "single", "ranks"), default="launch",
                        help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.mode == "launch":
        launcher(args)
    else:
        worker(args)


if __name__ == "__main__":
    main()
