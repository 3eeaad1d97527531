"""Shared helpers for the benchmarks: what BLAS is in use, the machine's SGEMM ceiling, an optional
PyTorch to compare against, and timing (warm-up, then the median of repeats).

Nothing here changes the process environment: OPENBLAS_CORETYPE and friends are read, never set;
compare BLAS settings by running a benchmark twice with a different environment.
"""
import ctypes
import json
import os
import statistics
import sys
import time

import numpy as np

# the checkout's root: the benchmarks run from a checkout whether or not minigan is installed
REPO = os.path.abspath(os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir))
try:
    import minigan  # noqa: F401 - only to see whether it is importable
except ImportError:
    sys.path.insert(0, REPO)
from minigan.kernels.cpu_gemm import openblas_function


def blas_info():
    """A dict saying which BLAS NumPy uses, the OpenBLAS kernel set picked, and thread settings."""
    info = {"numpy": np.__version__}
    try:
        cfg = np.show_config(mode="dicts")
        blas = cfg.get("Build Dependencies", {}).get("blas", {})
        info["blas"] = f"{blas.get('name')} {blas.get('version')}"
    except Exception:  # older NumPy: show_config only prints
        info["blas"] = "unknown"
    core = openblas_function("get_corename")
    if core is not None:
        core.restype = ctypes.c_char_p
        info["openblas_core"] = core().decode()
    nthr = openblas_function("get_num_threads")
    if nthr is not None:
        info["openblas_threads"] = int(nthr())
    for var in ("OPENBLAS_CORETYPE", "OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "NUMBA_NUM_THREADS"):
        info[var] = os.environ.get(var, "(unset)")
    try:
        import numba
        info["numba"] = numba.__version__
    except ImportError:
        pass
    info["cpus"] = os.cpu_count()
    return info


def print_blas_info():
    info = blas_info()
    print("BLAS: " + ", ".join(f"{k}={v}" for k, v in info.items()))
    return info


def sgemm_gflops(n=1024, dtype=np.float32, repeat=7):
    """GFLOP/s of an n x n x n NumPy matmul into a reused output: the ceiling for GEMM-based code."""
    rng = np.random.default_rng(0)
    a = rng.standard_normal((n, n)).astype(dtype)
    b = rng.standard_normal((n, n)).astype(dtype)
    c = np.empty((n, n), dtype)
    ms = time_ms(lambda: np.matmul(a, b, out=c), warmup=2, repeat=repeat)
    return 2.0 * n ** 3 / (ms * 1e-3) / 1e9


def import_torch(threads=2):
    """PyTorch set to ``threads`` intra-op threads, or None when it is not installed."""
    try:
        import torch
    except ImportError:
        return None
    torch.set_num_threads(threads)
    return torch


def time_ms(fn, warmup=2, repeat=9):
    """Median wall time of fn() in milliseconds after ``warmup`` untimed calls."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1e3


def time_interleaved_ms(fns, warmup=2, repeat=9, block=3, gap_s=0.01):
    """(median ms, min ms) of each function. Every repeat runs each function in turn, so that
    load from other processes on the machine hits all of them alike (their ratio is then the
    trustworthy number); the minimum is what the code does when nothing else interferes.

    Each turn is a block of ``block`` back-to-back calls of which the first is not timed, after a
    pause of ``gap_s``: OpenMP runtimes (PyTorch's) keep idle threads spinning for milliseconds
    after a parallel region, which would otherwise steal the cores from whichever function runs
    next, while within a block a function meets its own caches and threads, as in a training loop.
    """
    for fn in fns:
        for _ in range(warmup):
            fn()
    times = [[] for _ in fns]
    for _ in range(repeat):
        for fn, ts in zip(fns, times):
            time.sleep(gap_s)
            fn()
            for _ in range(block - 1):
                t0 = time.perf_counter()
                fn()
                ts.append(time.perf_counter() - t0)
    return [(statistics.median(ts) * 1e3, min(ts) * 1e3) for ts in times]


def add_winograd_flag(parser):
    """--no-winograd: the stride-2 4x4 convolutions on im2col instead of Winograd F(4x4, 2x2)
    (cpu_winograd.ENABLED, on by default); call use_winograd(args) after parsing."""
    parser.add_argument("--no-winograd", dest="winograd", action="store_false",
                        help="run the stride-2 4x4 convolutions on im2col, not cpu_winograd")


def use_winograd(args):
    """Set cpu_winograd.ENABLED from --no-winograd, and return it (for the results)."""
    from minigan.kernels import cpu_winograd
    cpu_winograd.ENABLED = args.winograd
    return cpu_winograd.ENABLED


def json_line(obj):
    """The machine-readable last line of a benchmark."""
    print(json.dumps(obj, sort_keys=True))
