"""Where a DCGAN iteration's time goes, per layer, per pass and per thread (both cores).

Run:  python benchmarks/timeline.py [--batch 64] [--iters 5] [--trace trace.json]

minigan.profiler and cProfile see the calling thread only; the convolutions run half of every
pass on cpu_threads' pool thread. This tool wraps, for the duration of the run only, the CPU
kernels' phases (module attributes replaced and put back afterwards, so the package's hot path
carries nothing when this tool is not running):

  gather    cpu_conv._gather (im2col, with its channels-last copy of each image), and
            cpu_winograd._transform_in and _transform_gy (the input tiles at the 25 points)
  gemm      every np.matmul inside cpu_conv, cpu_gemm and cpu_winograd (their multiply-adds
            are counted: Winograd's, not the direct convolution's)
  col2im    cpu_conv._col2im (summing the input gradient back onto the pixels), and
            cpu_winograd._transform_out (the 25 points back to output tiles)
  layout    the NHWC->NCHW copy of a forward result, gy's NCHW->CNHW copy, the weight permute,
            cpu_winograd._kernel_points_task (the weights at the 25 points)
  bn / act  the batch-norm and LeakyReLU kernels' tasks
  adam      Adam's one-pass update (cpu_optim), one op per optimizer step's parameter

with the thread that ran each one, on one clock (time.perf_counter). Each call of a kernel entry
point (conv2d, conv2d_grad_input, conv2d_grad_weight, batchnorm_*, leaky_relu*) is one "op",
named by layer (the DCGAN's G1..G3, D1..D3, from the weight's shape) and pass. Printed per op,
in ms per iteration: the op's wall time, each thread's time in each phase, and what is left
(Python, hand-offs, and the time a thread waits for the other); then each layer's products in
GFLOP/s per thread against the same products' shapes timed alone in the same run: on one thread
with the other core idle ("alone"), and on both threads at once, one product each ("pair"), which
is the ceiling for the pipeline's two-core split. --trace writes the events as a Chrome trace
(chrome://tracing, ui.perfetto.dev) to see the two threads' timeline.
"""
import argparse
import collections
import json
import os
import threading
import time

import numpy as np

from _common import add_winograd_flag, json_line, print_blas_info, use_winograd

import minigan as mg  # _common made a checkout's minigan importable
from minigan import optim
from minigan.gan.models import make_dcgan
from minigan.gan.train import sample_noise, train_step
from minigan.kernels import (cpu, cpu_act, cpu_conv, cpu_gemm, cpu_norm, cpu_optim,
                             cpu_winograd)
from minigan.kernels.cpu_gemm import blas_on_calling_threads

# The DCGAN layer of a convolution, from its weight in conv2d's view (O, C, kh, kw; for a
# transposed convolution O is its input's channels) and the input height of that view.
LAYERS = {((100, 256, 7, 7), 7): ("G1", True), ((256, 128, 4, 4), 14): ("G2", True),
          ((128, 1, 4, 4), 28): ("G3", True), ((64, 1, 4, 4), 28): ("D1", False),
          ((128, 64, 4, 4), 14): ("D2", False), ((1, 128, 7, 7), 7): ("D3", False)}
# conv2d's three kernels as passes of a convolution (True: of a transposed one)
PASSES = {("conv2d", False): "fwd", ("conv2d_grad_input", False): "bwd-input",
          ("conv2d", True): "bwd-input", ("conv2d_grad_input", True): "fwd",
          ("conv2d_grad_weight", False): "bwd-weight", ("conv2d_grad_weight", True): "bwd-weight"}
PHASES = ("gemm", "gather", "col2im", "layout", "bn", "act", "adam")


class Recorder:
    """Events (thread, op, phase, t0, t1, flops, product shape) from the wrapped kernels."""

    def __init__(self):
        self.events = []
        self.ops = []            # (op name, t0, t1) of each entry-point call
        self.current = "other"   # the op being run (set by the calling thread, read by the pool's)
        self.lock = threading.Lock()
        self.undo = []

    def _add(self, phase, t0, t1, cpu, flops=0, shape=None):
        with self.lock:
            self.events.append((threading.get_ident(), self.current, phase, t0, t1, cpu, flops,
                                shape))

    def phase(self, module, name, phase):
        """Replace module.name by a wrapper that records each call as ``phase``."""
        fn = getattr(module, name)

        def timed(*args, **kwargs):
            t0, c0 = time.perf_counter(), time.thread_time()
            try:
                return fn(*args, **kwargs)
            finally:
                self._add(phase, t0, time.perf_counter(), time.thread_time() - c0)
        self._swap(module, name, timed)

    def op(self, module, name, label):
        """Replace module.name (an entry point) by a wrapper naming the op its phases belong to."""
        fn = getattr(module, name)

        def timed(*args, **kwargs):
            self.current = label(name, *args, **kwargs)
            t0 = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                self.ops.append((self.current, t0, time.perf_counter()))
                self.current = "other"
        self._swap(module, name, timed)

    def numpy_products(self, module):
        """Give module a stand-in for numpy whose matmul is recorded as "gemm"."""
        rec = self

        class TimedNumpy:
            def __getattr__(self, attr):
                return getattr(np, attr)

            @staticmethod
            def matmul(a, b, out=None):
                t0, c0 = time.perf_counter(), time.thread_time()
                try:
                    return np.matmul(a, b, out=out)
                finally:
                    # a stack of products (3-D operands) is recorded as one shape and a count
                    (m, k), n = a.shape[-2:], b.shape[-1]
                    stack = max(a.size // (m * k), b.size // (k * n))
                    layout = "".join("N" if v.strides[-1] == v.itemsize else "T"
                                     for v in (a, b))
                    rec._add("gemm", t0, time.perf_counter(), time.thread_time() - c0,
                             2 * m * k * n * stack, (m, k, n, layout, stack))
        self._swap(module, "np", TimedNumpy())

    def _swap(self, module, name, new):
        self.undo.append((module, name, getattr(module, name)))
        setattr(module, name, new)

    def restore(self):
        for module, name, old in reversed(self.undo):
            setattr(module, name, old)
        self.undo = []


def conv_label(name, a, b, *rest, **kw):
    """'G2 fwd' etc. from a conv entry point's arguments (name with the shapes when not DCGAN's)."""
    if name == "conv2d":
        w, hw = b.shape, a.shape[2]
    elif name == "conv2d_grad_input":
        w, hw = b.shape, rest[0][0]
    else:  # conv2d_grad_weight(x, gy, kernel_hw, ...)
        w, hw = (b.shape[1], a.shape[1], *rest[0]), a.shape[2]
    layer = LAYERS.get((tuple(w), hw))
    if layer is None:
        return f"{name} w{tuple(w)} in {hw}"
    return f"{layer[0]} {PASSES[(name, layer[1])]}"


def point_label(name, x, *rest, **kw):
    kind = "bn" if name.startswith("batchnorm") else "act"
    return f"{kind}{tuple(x.shape[1:])} {'bwd' if name.endswith(('backward', 'grad')) else 'fwd'}"


def install(rec):
    for name in ("conv2d", "conv2d_grad_input", "conv2d_grad_weight"):
        rec.op(cpu, name, conv_label)
    for name in ("batchnorm_stats", "batchnorm_forward", "batchnorm_backward",
                 "batchnorm_leaky_relu_forward", "batchnorm_leaky_relu_backward",
                 "batchnorm_train_forward", "leaky_relu", "leaky_relu_grad"):
        rec.op(cpu, name, point_label)
    rec.phase(cpu_conv, "_gather", "gather")
    rec.phase(cpu_conv, "_col2im", "col2im")
    rec.phase(cpu_winograd, "_transform_in", "gather")
    rec.phase(cpu_winograd, "_transform_gy", "gather")
    rec.phase(cpu_winograd, "_transform_out", "col2im")
    rec.phase(cpu_winograd, "_kernel_points_task", "layout")
    rec.phase(cpu_winograd, "_points_to_taps", "layout")
    for name in ("_nhwc_to_nchw", "_to_cnhw", "_weight_taps_last"):
        rec.phase(cpu_conv, name, "layout")
    for name in ("_stats", "_forward", "_backward", "_train_forward"):
        rec.phase(cpu_norm, name, "bn")
    for name in ("_leaky", "_leaky_grad"):
        rec.phase(cpu_act, name, "act")
    rec.op(cpu, "adam_step", lambda name, p, *rest, **kw: "adam")
    rec.phase(cpu_optim, "_adam", "adam")
    rec.numpy_products(cpu_conv)
    rec.numpy_products(cpu_gemm)
    rec.numpy_products(cpu_winograd)


def product_ceiling(shape, dtype=np.float32, repeat=7):
    """(GFLOP/s alone on one thread, GFLOP/s per thread with both threads multiplying at once) of
    one product of this (m, k, n, layout, stack): a stack of that many products (one np.matmul
    call, as Winograd's 25), the layout saying which operands are transposed views."""
    m, k, n, layout, stack = shape
    rng = np.random.default_rng(0)

    def operand(rows, cols, flag):
        a = rng.standard_normal((stack, rows, cols) if flag == "N" else (stack, cols, rows))
        a = a.astype(dtype)
        return a if flag == "N" else a.transpose(0, 2, 1)
    pairs = [(operand(m, k, layout[0]), operand(k, n, layout[1]), np.empty((stack, m, n), dtype))
             for _ in range(2)]
    flops = 2.0 * m * k * n * stack

    def run(i):
        a, b, c = pairs[i]
        np.matmul(a, b, out=c)

    with blas_on_calling_threads():
        for _ in range(2):
            run(0)
        alone = min(_timed(lambda: run(0)) for _ in range(repeat))
        barrier = threading.Barrier(2)
        results = [[], []]

        def worker(i):
            for _ in range(repeat):
                barrier.wait()
                results[i].append(_timed(lambda: run(i)))
        threads = [threading.Thread(target=worker, args=(i,)) for i in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    pair = np.median([max(a, b) for a, b in zip(*results)])
    return flops / alone / 1e9, flops / pair / 1e9


def _timed(fn):
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def report(rec, iters, wall_ms):
    """The per-op table (ms per iteration) and a dict of everything for the JSON line."""
    main = threading.main_thread().ident
    threads = sorted({e[0] for e in rec.events}, key=lambda t: (t != main, t))
    tname = {t: f"t{i}" for i, t in enumerate(threads)}
    op_wall = collections.defaultdict(float)
    op_calls = collections.Counter()
    for name, t0, t1 in rec.ops:
        op_wall[name] += (t1 - t0) * 1e3 / iters
        op_calls[name] += 1
    busy = collections.defaultdict(float)          # (op, thread, phase) -> wall ms per iteration
    cpu = collections.defaultdict(float)           # (op, thread, phase) -> CPU ms per iteration
    gemm = collections.defaultdict(lambda: [0.0, 0.0, 0.0])  # (op, thread) -> [flops, s, CPU s]
    shapes = collections.defaultdict(collections.Counter)  # op -> product shapes
    for tid, op, phase, t0, t1, c, flops, shape in rec.events:
        busy[(op, tname[tid], phase)] += (t1 - t0) * 1e3 / iters
        cpu[(op, tname[tid], phase)] += c * 1e3 / iters
        if phase == "gemm":
            g = gemm[(op, tname[tid])]
            g[0] += flops
            g[1] += t1 - t0
            g[2] += c
            shapes[op][shape] += 1
    names = sorted(op_wall, key=lambda o: -op_wall[o])
    cols = [f"{t}:{p}" for t in ("t0", "t1")
            for p in ("gemm", "gather", "col2im", "layout", "point")]
    print(f"\nms per iteration ({iters} iterations, {wall_ms:.1f} ms each; threads t0 = the "
          "calling thread, t1 = the pool's). Phases in CPU ms of that thread (robust to other "
          "load); 'busy' = the wall time of that thread's phases (above their CPU time when "
          "other processes took the core), 'left' = op wall minus busy (Python, hand-offs, "
          "waiting for the other thread); point = bn + act + adam (the pointwise kernels); "
          "GF/s of the products by wall / by CPU time")
    head = f"{'op':16s}{'calls':>6s}{'wall':>8s}" + "".join(f"{c:>10s}" for c in cols)
    head += "".join(f"{t + ':' + c:>{w}s}" for t in ("t0", "t1")
                    for c, w in (("busy", 8), ("left", 8), ("GF/s", 10)))
    print(head)
    print("-" * len(head))
    rows = []
    for op in names:
        cells, left, spent, gf = [], {}, {}, {}
        for t in ("t0", "t1"):
            for p in ("gemm", "gather", "col2im", "layout"):
                cells.append(cpu.get((op, t, p), 0.0))
            cells.append(sum(cpu.get((op, t, p), 0.0) for p in ("bn", "act", "adam")))
            spent[t] = sum(busy.get((op, t, p), 0.0) for p in PHASES)
            left[t] = op_wall[op] - spent[t]
            flops, s, c = gemm[(op, t)]
            gf[t] = (flops / s / 1e9 if s else 0.0, flops / c / 1e9 if c else 0.0)
        tail = "".join(f"{spent[t]:>8.2f}{left[t]:>8.2f}{gf[t][0]:>5.0f}/{gf[t][1]:<4.0f}"
                       for t in ("t0", "t1"))
        print(f"{op:16s}{op_calls[op] // iters:>6d}{op_wall[op]:>8.2f}"
              + "".join(f"{v:>10.2f}" for v in cells) + tail)
        rows.append({"op": op, "calls": op_calls[op] // iters, "wall_ms": round(op_wall[op], 3),
                     "phases_cpu_ms": {c: round(v, 3) for c, v in zip(cols, cells)},
                     "busy_ms": {t: round(v, 3) for t, v in spent.items()},
                     "left_ms": {t: round(v, 3) for t, v in left.items()},
                     "gemm_gflops": {t: round(v[0], 1) for t, v in gf.items()},
                     "gemm_gflops_cpu": {t: round(v[1], 1) for t, v in gf.items()},
                     "products": [list(s) + [n] for s, n in shapes[op].items()]})
    in_ops = sum(op_wall.values())
    totals = collections.defaultdict(float)
    for (op, t, p), v in cpu.items():
        totals[p] += v
    print("CPU ms per iteration by phase, both threads: " + ", ".join(
        f"{p} {totals[p]:.2f}" for p in PHASES) + f"; sum {sum(totals.values()):.2f}")
    print(f"{'all kernels':16s}{'':6s}{in_ops:>8.2f}   (outside the kernels: autograd, "
          f"losses, Python: {wall_ms - in_ops:.2f} ms)")
    return rows, shapes


def ceilings(rows, shapes):
    """Each op's products, timed alone and in pairs: the GEMM ceiling at the pipeline's shapes."""
    print("\nproducts per op: GFLOP/s in the pipeline (per thread) against the same shapes timed "
          "now on one thread alone / on both threads at once (per thread)")
    print(f"{'op':16s}{'pipeline t0/t1':>16s}{'alone':>8s}{'pair':>8s}   shapes (m, k, n, layout, "
          "stack)")
    cache = {}
    for row in rows:
        op = row["op"]
        if not shapes[op]:
            continue
        flops = alone_s = pair_s = 0.0
        for shape, count in shapes[op].items():
            if shape not in cache:
                cache[shape] = product_ceiling(shape)
            f = 2.0 * shape[0] * shape[1] * shape[2] * shape[4] * count
            flops += f
            alone_s += f / cache[shape][0]
            pair_s += f / cache[shape][1]
        row["ceiling_alone_gflops"] = round(flops / alone_s, 1)
        row["ceiling_pair_gflops"] = round(flops / pair_s, 1)
        g = row["gemm_gflops"]
        print(f"{op:16s}{g['t0']:>8.0f}/{g['t1']:<7.0f}{row['ceiling_alone_gflops']:>8.0f}"
              f"{row['ceiling_pair_gflops']:>8.0f}   "
              + ", ".join(str(tuple(s)) for s in sorted(shapes[op], key=lambda s: -s[0])[:3]))


def write_trace(rec, path):
    main = threading.main_thread().ident
    t_first = min(e[3] for e in rec.events) if rec.events else 0.0
    events = [{"name": f"{op}: {phase}", "cat": phase, "ph": "X", "pid": 0,
               "tid": 0 if tid == main else 1, "ts": (t0 - t_first) * 1e6, "dur": (t1 - t0) * 1e6}
              for tid, op, phase, t0, t1, _, _, _ in rec.events]
    events += [{"name": op, "cat": "op", "ph": "X", "pid": 1, "tid": 0,
                "ts": (t0 - t_first) * 1e6, "dur": (t1 - t0) * 1e6} for op, t0, t1 in rec.ops]
    with open(path, "w") as f:
        json.dump({"traceEvents": events}, f)
    print(f"trace: {path} ({len(events)} events)")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--iters", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--trace", default=None, help="write a Chrome trace of the timed iterations")
    ap.add_argument("--no-ceiling", action="store_true", help="skip timing the product shapes")
    add_winograd_flag(ap)
    args = ap.parse_args(argv)
    use_winograd(args)
    info = print_blas_info()
    load = os.getloadavg()
    print("load average (1, 5, 15 min): %.1f %.1f %.1f" % load)
    mg.manual_seed(0)
    G, D = make_dcgan()
    opt_g = optim.Adam(G.parameters(), lr=2e-4, betas=(0.5, 0.999))
    opt_d = optim.Adam(D.parameters(), lr=2e-4, betas=(0.5, 0.999))
    real = mg.Tensor(np.random.default_rng(0).uniform(-1, 1, (args.batch, 1, 28, 28))
                     .astype(np.float32))
    for _ in range(args.warmup):
        train_step(G, D, opt_g, opt_d, real, sample_noise(args.batch, 100))
    rec = Recorder()
    install(rec)
    try:
        t0 = time.perf_counter()
        for _ in range(args.iters):
            train_step(G, D, opt_g, opt_d, real, sample_noise(args.batch, 100))
        wall_ms = (time.perf_counter() - t0) * 1e3 / args.iters
    finally:
        rec.restore()
    rows, shapes = report(rec, args.iters, wall_ms)
    if not args.no_ceiling:
        ceilings(rows, shapes)
    if args.trace:
        write_trace(rec, args.trace)
    json_line({"benchmark": "timeline", "batch": args.batch, "iters": args.iters,
               "iteration_ms": round(wall_ms, 3), "blas": info, "load_avg": load,
               "load_avg_after": os.getloadavg(), "winograd": args.winograd, "ops": rows})


if __name__ == "__main__":
    main()
