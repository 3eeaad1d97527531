"""Benchmark of the autograd engine: one MLP GAN training step, and per-op overhead on tiny tensors,
against PyTorch CPU in the same process.

Run:  python benchmarks/bench_autograd.py [--batch 64] [--repeat 15] [--only step|ops] [--profile]

The step (Goodfellow et al.'s MLP GAN on flattened 28x28 images):
  G: 100 -> 256 -> 512 -> 784, ReLU, ReLU, Tanh        D: 784 -> 512 -> 256 -> 1, LeakyReLU(0.2)
  fake = G(z); D step on BCE(D(real), 1) + BCE(D(fake.detach()), 0); G step on BCE(D(fake), 1)
  (the non-saturating loss); Adam(lr 2e-4, betas (0.5, 0.999)) for both, float32, batch 64.
PyTorch runs the identical architecture from the same initial weights with torch.set_num_threads(2).
Each repeat times ours and PyTorch's back to back (interleaved), so load from other processes on the
machine hits both alike; medians (and minima) are reported, and the ratio ours / torch is the number
to trust. The step is then timed again with OpenBLAS and PyTorch both on one thread, on the calling
thread's CPU clock: that comparison of the work each framework does holds even on a loaded machine.

Per-op overhead: forward (graph recorded) and forward+backward of add, mul, matmul and leaky_relu on
(4, 4) tensors, in microseconds per call (each timed over a loop of calls): at that size the
arithmetic is nothing and what is measured is the framework's bookkeeping.

--profile prints minigan's per-op profiler table and the top of cProfile for ten steps.
The last line is JSON with every number.

Measured on the shared 2-core machine (load average ~10 from other jobs, so wall times are poor):
  one thread, CPU time: minigan 15.2-17.2 ms, PyTorch 15.0-18.4 ms per step, ratio 0.93-1.05;
  two threads, wall: ratio of medians 0.61-1.04, of minima 0.91-3.8 (both frameworks' 2-thread
  GEMMs stall there: 40-60 ms for a (64,784)x(784,512) product that takes 0.66 ms on one thread);
  per op, thread CPU: forward ~3.5 us (torch ~2.1), add fwd+bwd ~15 us (torch ~23),
  matmul fwd+bwd ~37 us (torch ~33), leaky_relu fwd ~12 us (torch ~2.4: kernel dispatch checks).
"""
import argparse
import cProfile
import io
import os
import pstats
import statistics
import time

import numpy as np

from _common import (import_torch, json_line, openblas_function, print_blas_info,
                     time_interleaved_ms)

import minigan as mg  # _common made a checkout's minigan importable
import minigan.functional as F
from minigan import gan, optim
from minigan.profiler import profile

LATENT, IMAGE = 100, 784


# ------------------------------------------------------------------------------------------------
# The MLP GAN step
# ------------------------------------------------------------------------------------------------
def make_minigan_step(batch, rng):
    """A closure running one D step and one G step of minigan's MLP GAN; returns (step, G, D)."""
    mg.manual_seed(0)
    G = gan.mlp_generator(LATENT, (256, 512), IMAGE)
    D = gan.mlp_discriminator(IMAGE, (512, 256), slope=0.2)
    opt_g = optim.Adam(G.parameters(), lr=2e-4, betas=(0.5, 0.999))
    opt_d = optim.Adam(D.parameters(), lr=2e-4, betas=(0.5, 0.999))
    reals = [mg.tensor(rng.uniform(-1, 1, (batch, IMAGE)).astype(np.float32)) for _ in range(4)]
    zs = [mg.tensor(rng.standard_normal((batch, LATENT)).astype(np.float32)) for _ in range(4)]
    count = [0]

    def step():
        i = count[0] % 4
        count[0] += 1
        fake = G(zs[i])
        opt_d.zero_grad()
        d_loss = gan.d_loss_minimax(D(reals[i]), D(fake.detach()))
        d_loss.backward()
        opt_d.step()
        opt_g.zero_grad()
        g_loss = gan.g_loss_nonsaturating(D(fake))
        g_loss.backward()
        opt_g.step()
        return d_loss, g_loss

    return step, G, D, reals, zs


def make_torch_step(torch, G_ours, D_ours, reals, zs):
    """The same step in PyTorch, the same architecture starting from the same weights."""
    tnn = torch.nn
    G = tnn.Sequential(tnn.Linear(LATENT, 256), tnn.ReLU(), tnn.Linear(256, 512), tnn.ReLU(),
                       tnn.Linear(512, IMAGE), tnn.Tanh())
    D = tnn.Sequential(tnn.Linear(IMAGE, 512), tnn.LeakyReLU(0.2), tnn.Linear(512, 256),
                       tnn.LeakyReLU(0.2), tnn.Linear(256, 1))
    with torch.no_grad():
        for ours, theirs in ((G_ours, G), (D_ours, D)):
            for p, q in zip(ours.parameters(), theirs.parameters()):
                q.copy_(torch.from_numpy(p.numpy()))
    opt_g = torch.optim.Adam(G.parameters(), lr=2e-4, betas=(0.5, 0.999))
    opt_d = torch.optim.Adam(D.parameters(), lr=2e-4, betas=(0.5, 0.999))
    reals = [torch.from_numpy(r.numpy()) for r in reals]
    zs = [torch.from_numpy(z.numpy()) for z in zs]
    bce = torch.nn.functional.binary_cross_entropy_with_logits
    count = [0]

    def step():
        i = count[0] % 4
        count[0] += 1
        fake = G(zs[i])
        opt_d.zero_grad()
        real_logits, fake_logits = D(reals[i]), D(fake.detach())
        d_loss = bce(real_logits, torch.ones_like(real_logits)) + \
            bce(fake_logits, torch.zeros_like(fake_logits))
        d_loss.backward()
        opt_d.step()
        opt_g.zero_grad()
        logits = D(fake)
        g_loss = bce(logits, torch.ones_like(logits))
        g_loss.backward()
        opt_g.step()
        return d_loss, g_loss

    return step


# ------------------------------------------------------------------------------------------------
# Timing on this thread's CPU clock
# ------------------------------------------------------------------------------------------------
def time_interleaved_cpu_ms(fns, warmup=2, repeat=9):
    """(median wall ms, median CPU ms of the calling thread) of each function, interleaved.

    On a machine shared with other jobs, wall time measures the scheduler as much as the code; the
    thread's CPU time does not (for single-threaded work: tiny ops, or a step with every library
    set to one thread), so it gives a comparison that holds under load."""
    for fn in fns:
        for _ in range(warmup):
            fn()
    walls, cpus = [[] for _ in fns], [[] for _ in fns]
    for _ in range(repeat):
        for fn, wall, cpu in zip(fns, walls, cpus):
            w, c = time.perf_counter(), time.thread_time()
            fn()
            cpu.append(time.thread_time() - c)
            wall.append(time.perf_counter() - w)
    return [(statistics.median(w) * 1e3, statistics.median(c) * 1e3) for w, c in zip(walls, cpus)]


def set_blas_threads(n):
    """Set OpenBLAS's thread count (NumPy's bundled one); False when that is not possible."""
    fn = openblas_function("set_num_threads")
    if fn is None:
        return False
    fn(int(n))
    return True


# ------------------------------------------------------------------------------------------------
# Per-op overhead on tiny tensors
# ------------------------------------------------------------------------------------------------
OPS = {
    "add": (lambda a, b: a + b),
    "mul": (lambda a, b: a * b),
    "matmul": (lambda a, b: a @ b),
}


def per_op_cases(torch, loops):
    """[(name, ours, theirs or None)]: each callable runs ``loops`` calls of one tiny op."""
    rng = np.random.default_rng(0)
    a_np, b_np, g_np = (rng.standard_normal((4, 4)).astype(np.float32) for _ in range(3))
    a, b = mg.tensor(a_np, requires_grad=True), mg.tensor(b_np, requires_grad=True)
    g = mg.tensor(g_np)
    if torch is not None:
        ta = torch.from_numpy(a_np.copy()).requires_grad_()
        tb = torch.from_numpy(b_np.copy()).requires_grad_()
        tg = torch.from_numpy(g_np.copy())
    cases = []
    ops = dict(OPS, leaky_relu=None)
    for name, op in ops.items():
        if name == "leaky_relu":
            ours_op = lambda x, y: F.leaky_relu(x, 0.2)  # noqa: E731
            torch_op = (lambda x, y: torch.nn.functional.leaky_relu(x, 0.2)) if torch else None
        else:
            ours_op = torch_op = op

        def fwd(op=ours_op):
            for _ in range(loops):
                op(a, b)

        def fwdbwd(op=ours_op):
            for _ in range(loops):
                op(a, b).backward(g)

        tfwd = tfwdbwd = None
        if torch is not None:
            def tfwd(op=torch_op):
                for _ in range(loops):
                    op(ta, tb)

            def tfwdbwd(op=torch_op):
                for _ in range(loops):
                    op(ta, tb).backward(tg)

        cases.append((f"{name} (4,4) fwd", fwd, tfwd))
        cases.append((f"{name} (4,4) fwd+bwd", fwdbwd, tfwdbwd))
    return cases


def run_profile(step, steps=10):
    """minigan's op table and cProfile's top functions over ``steps`` steps."""
    with profile() as prof:
        for _ in range(steps):
            step()
    print(f"\nminigan profiler, {steps} steps:")
    print(prof.table(limit=20))
    pr = cProfile.Profile()
    pr.enable()
    for _ in range(steps):
        step()
    pr.disable()
    out = io.StringIO()
    pstats.Stats(pr, stream=out).sort_stats("tottime").print_stats(20)
    print(f"\ncProfile, {steps} steps (sorted by own time):")
    print("\n".join(out.getvalue().splitlines()[4:]))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--repeat", type=int, default=15)
    parser.add_argument("--loops", type=int, default=200, help="calls per per-op measurement")
    parser.add_argument("--profile", action="store_true")
    parser.add_argument("--no-torch", action="store_true")
    parser.add_argument("--only", choices=("step", "ops"), help="run one of the two parts")
    args = parser.parse_args(argv)

    info = print_blas_info()
    torch = None if args.no_torch else import_torch(threads=2)
    if torch is not None:
        info["torch"] = f"{torch.__version__} threads={torch.get_num_threads()}"
    try:
        import numba
        info["numba_threading_layer"] = numba.threading_layer() if numba.config.NUMBA_NUM_THREADS \
            else "?"
    except (ImportError, ValueError):  # the layer is only known after a parallel kernel ran
        pass
    load = os.getloadavg()[0]
    info["loadavg_1min"] = load
    if load > 0.5 * (os.cpu_count() or 1):
        # measured here: a 2-thread (64,784)x(784,512) GEMM took 40-60 ms at load 10 on 2 cores,
        # 0.66 ms on one thread, for NumPy and PyTorch alike
        print(f"WARNING: load average {load:.1f} on {os.cpu_count()} CPUs: multi-threaded timings "
              "measure the scheduler; trust the 1-thread CPU-time rows")
    rng = np.random.default_rng(0)
    step, G, D, reals, zs = make_minigan_step(args.batch, rng)
    tstep = make_torch_step(torch, G, D, reals, zs) if torch is not None else None

    # same weights and data: the first step's losses must agree (a check on the comparison)
    d0, g0 = step()
    if tstep is not None:
        td0, tg0 = tstep()
        print(f"first-step losses: minigan D {d0.item():.6f} G {g0.item():.6f}; "
              f"torch D {td0.item():.6f} G {tg0.item():.6f}")

    rows, result = [], {"batch": args.batch, "repeat": args.repeat}
    if args.only != "ops":
        fns = [step] + ([tstep] if tstep is not None else [])
        times = time_interleaved_ms(fns, warmup=3, repeat=args.repeat)   # [(median, min)] ms
        ours, theirs = times[0], (times[1] if tstep is not None else None)
        rows.append((f"MLP GAN step (batch {args.batch}) ms", ours, theirs))
        result["mlp_gan_step_ms"] = {"median": ours[0], "min": ours[1]}
        if theirs is not None:
            result["torch_mlp_gan_step_ms"] = {"median": theirs[0], "min": theirs[1]}
            result["mlp_gan_step_ratio"] = ours[0] / theirs[0]
            result["mlp_gan_step_ratio_min"] = ours[1] / theirs[1]
        if tstep is not None and set_blas_threads(1):
            # the same step with every library on one thread, on the thread's CPU clock
            torch.set_num_threads(1)
            t = time_interleaved_cpu_ms([step, tstep], warmup=2, repeat=args.repeat)
            set_blas_threads(info.get("openblas_threads", 2))
            torch.set_num_threads(2)
            rows.append(("MLP GAN step, 1 thread: ms", t[0], t[1]))
            result["one_thread_step_cpu_ms"] = {"minigan": t[0][1], "torch": t[1][1]}
            result["one_thread_step_cpu_ratio"] = t[0][1] / t[1][1]

    per_op = {}
    for name, fn, tfn in (per_op_cases(torch, args.loops) if args.only != "step" else []):
        fns = [fn] + ([tfn] if tfn is not None else [])
        t = time_interleaved_cpu_ms(fns, warmup=1, repeat=max(args.repeat // 2, 3))
        us = [(wall * 1e3 / args.loops, cpu * 1e3 / args.loops) for wall, cpu in t]
        rows.append((f"{name} us", us[0], us[1] if len(us) > 1 else None))
        per_op[name] = {"minigan_us": us[0][0], "torch_us": us[1][0] if len(us) > 1 else None,
                        "minigan_cpu_us": us[0][1],
                        "torch_cpu_us": us[1][1] if len(us) > 1 else None}
    result["per_op"] = per_op

    print("\nMLP GAN step: median wall ms (min); 1 thread and per-op: median wall (thread CPU)")
    print(f"\n{'case':<34}{'minigan':>18}{'torch':>18}{'ratio':>14}")
    print("-" * 84)
    for name, a, b in rows:
        if b is None:
            print(f"{name:<34}{a[0]:>9.3f} ({a[1]:>6.3f}){'-':>18}{'-':>14}")
        else:
            print(f"{name:<34}{a[0]:>9.3f} ({a[1]:>6.3f}){b[0]:>9.3f} ({b[1]:>6.3f})"
                  f"{a[0] / b[0]:>7.2f} ({a[1] / b[1]:>4.2f})")
    if "mlp_gan_step_ratio" in result:
        ratio = result["mlp_gan_step_ratio"]
        print(f"\nMLP GAN step: minigan / torch = {ratio:.2f} median, "
              f"{result['mlp_gan_step_ratio_min']:.2f} min "
              f"({'within' if ratio <= 1.5 else 'NOT within'} the 1.5x target)")
    if args.profile:
        run_profile(step)
    result["env"] = info
    json_line(result)


if __name__ == "__main__":
    main()
