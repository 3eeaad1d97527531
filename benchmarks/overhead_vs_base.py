"""Per-op overhead of this checkout against another one (issue 11's baseline: 784a53e), both
loaded side by side in one process and timed interleaved, so load from other processes hits
both alike.

Run (pinned to one core, one thread everywhere):
  git archive 784a53e | (mkdir -p /tmp/base784 && tar -x -C /tmp/base784)
  OPENBLAS_NUM_THREADS=1 NUMBA_NUM_THREADS=1 OMP_NUM_THREADS=1 taskset -c 0 \\
      python benchmarks/overhead_vs_base.py --base /tmp/base784 [--rounds 21] [--loops 300] \\
      [--dcgan 3]

Cases: the per-op cases of bench_autograd.py, forward (graph recorded) and forward + backward
``op(x, w).backward(g)`` of add, mul, matmul and leaky_relu(0.2) on (4, 4) float32 leaves that
require grad; (unless --no-step) bench_autograd.py's MLP GAN step (G 100-256-512-784,
D 784-512-256-1, Adam, batch 64); with --dcgan N, bench_dcgan.py's DCGAN iteration. Each round
times every case once per checkout, the order of the two checkouts swapped every round, on the
thread's CPU clock (the process's for the DCGAN): microseconds per call, milliseconds per step
or iteration. Prints a table of minima and medians over the rounds, the ratios this / base, the
load average, and a last JSON line.
"""
import argparse
import importlib
import importlib.util
import json
import os
import statistics
import sys
import tempfile
import time

import numpy as np

# numba's cache entries name the module that compiled them; the baseline is imported here under
# another name (minigan_base), so its entries must not land where ordinary runs look for them
os.environ.setdefault("NUMBA_CACHE_DIR",
                      os.path.join(tempfile.gettempdir(), "overhead_vs_base_numba"))

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.abspath(os.path.join(HERE, os.pardir))


def load_package(name, root):
    """The ``minigan`` package found in ``root``, imported under the module name ``name``."""
    folder = os.path.join(root, "minigan")
    if not os.path.isfile(os.path.join(folder, "__init__.py")):
        raise SystemExit(f"--base {root}: no minigan/__init__.py there (pass a checkout's root)")
    spec = importlib.util.spec_from_file_location(name, os.path.join(folder, "__init__.py"),
                                                  submodule_search_locations=[folder])
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def op_cases(mg, loops):
    """{case name: callable running ``loops`` calls} for one package."""
    F = mg.functional
    rng = np.random.default_rng(0)
    a_np, b_np, g_np = (rng.standard_normal((4, 4)).astype(np.float32) for _ in range(3))
    a, b = mg.tensor(a_np, requires_grad=True), mg.tensor(b_np, requires_grad=True)
    g = mg.tensor(g_np)
    ops = {"add": lambda x, y: x + y, "mul": lambda x, y: x * y, "matmul": lambda x, y: x @ y,
           "leaky_relu": lambda x, y: F.leaky_relu(x, 0.2)}
    cases = {}
    for name, op in ops.items():
        def fwd(op=op):
            for _ in range(loops):
                op(a, b)

        def fwdbwd(op=op):
            for _ in range(loops):
                op(a, b).backward(g)
        cases[f"{name} fwd"] = fwd
        cases[f"{name} fwd+bwd"] = fwdbwd
    return cases


def mlp_step(mg, batch=64, seed=0):
    """One call = bench_autograd.py's MLP GAN step (D step then G step) with package ``mg``."""
    nn, F, optim = mg.nn, mg.functional, mg.optim
    mg.manual_seed(seed)
    G = nn.Sequential(nn.Linear(100, 256), nn.ReLU(), nn.Linear(256, 512), nn.ReLU(),
                      nn.Linear(512, 784), nn.Tanh())
    D = nn.Sequential(nn.Linear(784, 512), nn.LeakyReLU(0.2), nn.Linear(512, 256),
                      nn.LeakyReLU(0.2), nn.Linear(256, 1))
    opt_g = optim.Adam(G.parameters(), lr=2e-4, betas=(0.5, 0.999))
    opt_d = optim.Adam(D.parameters(), lr=2e-4, betas=(0.5, 0.999))
    rng = np.random.default_rng(seed)
    real = mg.tensor(rng.uniform(-1, 1, (batch, 784)).astype(np.float32))
    z = mg.tensor(rng.standard_normal((batch, 100)).astype(np.float32))
    ones = mg.tensor(np.ones((batch, 1), np.float32))
    zeros = mg.tensor(np.zeros((batch, 1), np.float32))
    bce = F.binary_cross_entropy_with_logits

    def step():
        fake = G(z)
        loss_d = bce(D(real), ones) + bce(D(fake.detach()), zeros)
        opt_d.zero_grad()
        loss_d.backward()
        opt_d.step()
        loss_g = bce(D(fake), ones)
        opt_g.zero_grad()
        loss_g.backward()
        opt_g.step()
    return step


def dcgan_step(mg, batch=64, seed=0):
    """One call = bench_dcgan.py's iteration: ``train_step`` of the Radford DCGAN, batch 64."""
    gan = importlib.import_module(mg.__name__ + ".gan")   # 784a53e's __init__ does not import it
    mg.manual_seed(seed)
    G, D = gan.make_dcgan()
    opt_g = mg.optim.Adam(G.parameters(), lr=2e-4, betas=(0.5, 0.999))
    opt_d = mg.optim.Adam(D.parameters(), lr=2e-4, betas=(0.5, 0.999))
    rng = np.random.default_rng(seed)
    real = mg.tensor(rng.uniform(-1, 1, (batch, 1, 28, 28)).astype(np.float32))
    z = mg.tensor(rng.standard_normal((batch, 100, 1, 1)).astype(np.float32))
    return lambda: gan.train_step(G, D, opt_g, opt_d, real, z)



def _repeated(step, n):
    """A callable that runs ``step`` n times (one timed sample)."""
    def run():
        for _ in range(n):
            step()
    return run

def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--base", required=True, help="root of the baseline checkout (e.g. 784a53e)")
    ap.add_argument("--rounds", type=int, default=21)
    ap.add_argument("--loops", type=int, default=300, help="calls per timing of a per-op case")
    ap.add_argument("--steps", type=int, default=5, help="MLP steps per timing")
    ap.add_argument("--no-step", action="store_true", help="no MLP GAN step")
    ap.add_argument("--dcgan", type=int, default=0, metavar="N",
                    help="also time N DCGAN iterations (batch 64) per round, on the process's "
                         "CPU clock (kernel threads included)")
    args = ap.parse_args(argv)

    packages = {"base": load_package("minigan_base", os.path.abspath(args.base)),
                "this": load_package("minigan", REPO)}
    cases = {k: op_cases(mg, args.loops) for k, mg in packages.items()}
    per = {name: args.loops for name in cases["this"]}
    if not args.no_step:
        for k, mg in packages.items():
            cases[k]["MLP GAN step (ms)"] = _repeated(mlp_step(mg), args.steps)
        per["MLP GAN step (ms)"] = args.steps
    if args.dcgan:
        for k, mg in packages.items():
            cases[k]["DCGAN iteration (ms)"] = _repeated(dcgan_step(mg), args.dcgan)
        per["DCGAN iteration (ms)"] = args.dcgan
    times = {k: {name: [] for name in per} for k in packages}
    for name in per:   # warm-up: numba compilation, caches, allocator
        for k in packages:
            cases[k][name]()
    loads = [os.getloadavg()[0]]
    for r in range(args.rounds):
        order = ("base", "this") if r % 2 == 0 else ("this", "base")
        for name in per:
            clock = time.process_time if name.startswith("DCGAN") else time.thread_time
            for k in order:
                start = clock()
                cases[k][name]()
                seconds = (clock() - start) / per[name]
                times[k][name].append(seconds * (1e3 if name.endswith("(ms)") else 1e6))
        loads.append(os.getloadavg()[0])

    print(f"this checkout: {REPO}; base: {os.path.abspath(args.base)}; {args.rounds} rounds, "
          f"thread CPU time; load average (1 min) {min(loads):.2f}-{max(loads):.2f}")
    print("| case | base min (median) | this min (median) | ratio of minima | ratio of medians |")
    print("| --- | --- | --- | --- | --- |")
    result = {}
    for name in per:
        b, t = times["base"][name], times["this"][name]
        row = {"base_min": min(b), "base_median": statistics.median(b), "this_min": min(t),
               "this_median": statistics.median(t)}
        row["ratio_min"] = row["this_min"] / row["base_min"]
        row["ratio_median"] = row["this_median"] / row["base_median"]
        result[name] = row
        print(f"| {name} | {row['base_min']:.2f} ({row['base_median']:.2f}) | {row['this_min']:.2f} "
              f"({row['this_median']:.2f}) | {row['ratio_min']:.3f} | {row['ratio_median']:.3f} |")
    print(json.dumps({"rounds": args.rounds, "loops": args.loops, "load": [min(loads), max(loads)],
                      "unit": "us per call (steps, iterations: ms)", "cases": result}))


if __name__ == "__main__":
    main()
