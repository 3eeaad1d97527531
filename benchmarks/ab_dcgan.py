"""A/B of one DCGAN iteration: minigan as it is, minigan with some module constants changed (the
code path before a change), and PyTorch, interleaved in one process.

Run:  python benchmarks/ab_dcgan.py --old minigan.kernels.cpu_conv.SMALL_K=0 [--batch 64]
                                    [--repeat 15] [--no-torch]
      python benchmarks/ab_dcgan.py --old "minigan.nn.layers._fusable_slope=lambda m, a: None"
                (batch norm and its activation as two ops again)

On a machine whose cores other processes share, absolute times move with their load; running
the variants in turn within every repeat (``time_interleaved_ms``) makes the load hit them alike,
so the ratios of medians and of minima are what to read. Besides wall time it prints each minigan
variant's CPU time per iteration (``time.process_time``, both threads): the work done, which other
processes' load changes much less than the wall time. "new" and "old" train the same models from
the same weights, each on its own copy, and each --old NAME=VALUE is set only while "old" runs.
"""
import argparse
import ast
import importlib
import os
import statistics
import time

import numpy as np

from _common import import_torch, json_line, print_blas_info, time_interleaved_ms

import bench_dcgan  # the same models, weights and iteration as the iteration benchmark


def parse_setting(text):
    """'package.module.NAME=VALUE' -> (module, NAME, value): VALUE a Python literal, or else an
    expression evaluated in the module's namespace (e.g. a lambda replacing a helper)."""
    target, _, value = text.partition("=")
    module_name, _, name = target.rpartition(".")
    module = importlib.import_module(module_name)
    if not hasattr(module, name):
        raise SystemExit(f"--old {text}: {module_name} has no attribute {name}")
    try:
        return module, name, ast.literal_eval(value)
    except (ValueError, SyntaxError):
        return module, name, eval(value, vars(module))  # a benchmark's own command line


def with_settings(fn, settings):
    """fn run with the module attributes set, put back afterwards."""
    def run(*args):
        saved = [(m, n, getattr(m, n)) for m, n, _ in settings]
        for m, n, v in settings:
            setattr(m, n, v)
        try:
            return fn(*args)
        finally:
            for m, n, v in saved:
                setattr(m, n, v)
    return run


def cpu_timed(fn, record):
    def run(*args):
        c0 = time.process_time()
        out = fn(*args)
        record.append(time.process_time() - c0)
        return out
    return run


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--old", action="append", default=[], metavar="MODULE.NAME=VALUE")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--repeat", type=int, default=15)
    ap.add_argument("--no-torch", action="store_true")
    args = ap.parse_args(argv)
    info = print_blas_info()
    settings = [parse_setting(s) for s in args.old]
    load = os.getloadavg()
    print("load average (1, 5, 15 min): %.1f %.1f %.1f" % load)
    new_step, (G, D, real) = bench_dcgan.minigan_setup(args.batch, "cpu")
    old_step, _ = bench_dcgan.minigan_setup(args.batch, "cpu")
    cpu = {"new": [], "old": []}
    fns = {"new": cpu_timed(new_step, cpu["new"]),
           "old": cpu_timed(with_settings(old_step, settings), cpu["old"])}
    torch = None if args.no_torch else import_torch(2)
    if torch is not None:
        fns["torch"] = bench_dcgan.torch_setup(torch, args.batch, "cpu", G, D, real)
    z = np.random.default_rng(1).standard_normal((args.batch, bench_dcgan.NZ)).astype(np.float32)
    first = {k: f(z) for k, f in fns.items()}
    cpu["new"].clear()
    cpu["old"].clear()
    print("first iteration losses (D, G): " + ", ".join(
        f"{k} ({v[0]:.6f}, {v[1]:.6f})" for k, v in first.items()))
    timed = dict(zip(fns, time_interleaved_ms(list(fns.values()), repeat=args.repeat)))
    cpu_ms = {k: statistics.median(v) * 1e3 for k, v in cpu.items()}
    print(f"\nbatch {args.batch}, {args.repeat} interleaved repeats; old = "
          + (", ".join(args.old) or "(nothing changed)"))
    print(f"{'variant':8s}{'median ms':>11s}{'min ms':>9s}{'CPU ms':>9s}{'/ new':>8s}"
          f"{'min / new':>11s}{'/ torch':>9s}{'min / torch':>13s}")
    rows = {}
    for k, (med, mn) in timed.items():
        row = {"median_ms": med, "min_ms": mn, "ratio_to_new": med / timed["new"][0],
               "min_ratio_to_new": mn / timed["new"][1], "cpu_ms": cpu_ms.get(k)}
        if "torch" in timed:
            row["ratio_to_torch"] = med / timed["torch"][0]
            row["min_ratio_to_torch"] = mn / timed["torch"][1]
        rows[k] = row
        c = "" if row["cpu_ms"] is None else f"{row['cpu_ms']:.1f}"
        t = (f"{row['ratio_to_torch']:>9.3f}{row['min_ratio_to_torch']:>13.3f}"
             if "torch" in timed else "")
        print(f"{k:8s}{med:>11.1f}{mn:>9.1f}{c:>9s}{row['ratio_to_new']:>8.3f}"
              f"{row['min_ratio_to_new']:>11.3f}" + t)
    json_line({"benchmark": "ab_dcgan", "batch": args.batch, "repeat": args.repeat,
               "old": args.old, "blas": info, "load_avg": load,
               "load_avg_after": os.getloadavg(), "results": rows})


if __name__ == "__main__":
    main()
