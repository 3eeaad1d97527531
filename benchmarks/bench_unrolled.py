"""What an unrolled GAN update costs: one unrolled G update (K differentiable D steps, the
backward through them, and D's real step) against K + 1 plain GAN iterations, minigan beside
PyTorch (torch.func.functional_call and the same differentiable Adam) in one process.

    python benchmarks/bench_unrolled.py [--k 1,5,10] [--batch 64] [--repeat 7]

The networks are the 2-D benchmark's (G: 2 -> 128 -> 128 -> 128 -> 2, D: 2 -> 128 -> 128 -> 1,
bench_toy2d's short rows). Times are this process's CPU seconds per call (one thread for
both libraries): on a machine shared with other jobs wall time measures the scheduler, CPU time
what the update costs. Prints a table and a last JSON line.
"""
import argparse
import functools
import os
import statistics
import time

import numpy as np

from _common import import_torch, json_line, print_blas_info

from minigan import optim  # _common made a checkout's minigan importable
from minigan.autograd import Tensor
from minigan.backend import manual_seed
from minigan.gan.losses import d_loss_minimax, g_loss_nonsaturating
from minigan.gan.toy2d import Toy2DConfig, build_models
from minigan.gan.unrolled import unrolled_train_step


def cpu_ms(fn, warmup=2, repeat=7):
    """Median CPU milliseconds of fn() (process time, all threads)."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeat):
        t0 = time.process_time()
        fn()
        times.append(time.process_time() - t0)
    return statistics.median(times) * 1e3


def minigan_steps(batch, rng):
    manual_seed(0)
    config = Toy2DConfig(pack=1, d_hidden=(128, 128)).resolved()
    G, D = build_models(config)
    opt_g = optim.Adam(G.parameters(), lr=1e-3, betas=(0.5, 0.999))
    opt_d = optim.Adam(D.parameters(), lr=1e-3, betas=(0.5, 0.999))
    real = Tensor(rng.standard_normal((batch, 2)).astype(np.float32))
    z = Tensor(rng.standard_normal((batch, 2)).astype(np.float32))

    def plain():
        fake = G(z)
        opt_d.zero_grad()
        d_loss_minimax(D(real), D(fake.detach())).backward()
        opt_d.step()
        opt_g.zero_grad()
        D.requires_grad_(False)
        g_loss_nonsaturating(D(fake)).backward()
        D.requires_grad_(True)
        opt_g.step()

    def unrolled(k):
        unrolled_train_step(G, D, opt_g, opt_d, real, z, k)
    return (G, D, real, z), plain, unrolled


def torch_steps(torch, models, batch):
    """The same networks, weights and batch in PyTorch; the unrolled step written with
    torch.func.functional_call and Adam's update as tensor ops (moments differentiated)."""
    G0, D0, real0, z0 = models
    nn, F = torch.nn, torch.nn.functional

    def copy(seq, out_act=None):
        layers = []
        for m in seq:
            if type(m).__name__ == "Linear":
                lin = nn.Linear(m.in_features, m.out_features)
                with torch.no_grad():
                    lin.weight.copy_(torch.from_numpy(m.weight.data))
                    lin.bias.copy_(torch.from_numpy(m.bias.data))
                layers.append(lin)
            elif type(m).__name__ == "ReLU":
                layers.append(nn.ReLU())
            else:
                layers.append(nn.LeakyReLU(m.negative_slope))
        return nn.Sequential(*layers)

    G, D = copy(G0), copy(D0)
    real, z = torch.from_numpy(real0.data), torch.from_numpy(z0.data)
    opt_g = torch.optim.Adam(G.parameters(), lr=1e-3, betas=(0.5, 0.999))
    opt_d = torch.optim.Adam(D.parameters(), lr=1e-3, betas=(0.5, 0.999))
    ones, zeros = torch.ones(batch, 1), torch.zeros(batch, 1)

    def d_loss(out_real, out_fake):
        return (F.binary_cross_entropy_with_logits(out_real, ones)
                + F.binary_cross_entropy_with_logits(out_fake, zeros))

    def plain():
        fake = G(z)
        opt_d.zero_grad()
        d_loss(D(real), D(fake.detach())).backward()
        opt_d.step()
        opt_g.zero_grad()
        F.binary_cross_entropy_with_logits(D(fake), ones).backward()
        opt_g.step()

    def unrolled(k, lr=1e-3, b1=0.5, b2=0.999, eps=1e-8):
        params = dict(D.named_parameters())
        state = {n: (opt_d.state[p].get("exp_avg"), opt_d.state[p].get("exp_avg_sq"),
                     int(opt_d.state[p].get("step", 0))) for n, p in params.items()}
        fake = G(z)
        first = None
        for i in range(k):
            loss = d_loss(torch.func.functional_call(D, params, (real,)),
                          torch.func.functional_call(D, params, (fake,)))
            grads = torch.autograd.grad(loss, list(params.values()), create_graph=True)
            if i == 0:
                first = [g.detach().clone() for g in grads]
            new, new_state = {}, {}
            for (n, p), g in zip(params.items(), grads):
                m, v, t = state[n]
                t += 1
                m = (1 - b1) * g if m is None else b1 * m + (1 - b1) * g
                v = (1 - b2) * g * g if v is None else b2 * v + (1 - b2) * g * g
                new[n] = p - lr / (1 - b1 ** t) * m / (v.sqrt() / (1 - b2 ** t) ** 0.5 + eps)
                new_state[n] = (m, v, t)
            params, state = new, new_state
        f_k = F.binary_cross_entropy_with_logits(torch.func.functional_call(D, params, (fake,)),
                                                 ones)
        g_grads = torch.autograd.grad(f_k, list(G.parameters()))
        for p, g in zip(G.parameters(), g_grads):
            p.grad = g
        opt_g.step()
        for p, g in zip(D.parameters(), first):
            p.grad = g
        opt_d.step()
    return plain, unrolled


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--k", default="1,5,10", help="comma-separated unroll depths")
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--repeat", type=int, default=7)
    p.add_argument("--no-torch", action="store_true")
    args = p.parse_args(argv)
    ks = [int(k) for k in args.k.split(",") if k]
    info = print_blas_info()
    load = os.getloadavg()[0]
    print(f"load average (1 min) {load:.1f} on {os.cpu_count()} CPUs; CPU time per call")
    torch = None if args.no_torch else import_torch(threads=1)
    rng = np.random.default_rng(0)
    models, mg_plain, mg_unrolled = minigan_steps(args.batch, rng)
    th = torch_steps(torch, models, args.batch) if torch is not None else None

    rows, result = [], {"batch": args.batch, "load": load, "blas": info.get("blas")}
    plain_ms = cpu_ms(mg_plain, repeat=args.repeat * 3)
    t_plain_ms = cpu_ms(th[0], repeat=args.repeat * 3) if th else float("nan")
    result["plain_ms"] = {"minigan": plain_ms, "torch": t_plain_ms}
    header = ("K", "minigan ms", "/(K+1) plain", "torch ms", "/(K+1) plain", "minigan/torch")
    rows.append(("plain", f"{plain_ms:.2f}", "1.00", f"{t_plain_ms:.2f}", "1.00",
                 f"{plain_ms / t_plain_ms:.2f}"))
    for k in ks:
        mg_ms = cpu_ms(functools.partial(mg_unrolled, k), repeat=args.repeat)
        t_ms = cpu_ms(functools.partial(th[1], k), repeat=args.repeat) if th else float("nan")
        rows.append((str(k), f"{mg_ms:.2f}", f"{mg_ms / ((k + 1) * plain_ms):.2f}",
                     f"{t_ms:.2f}", f"{t_ms / ((k + 1) * t_plain_ms):.2f}",
                     f"{mg_ms / t_ms:.2f}"))
        result[f"unrolled{k}_ms"] = {"minigan": mg_ms, "torch": t_ms,
                                     "minigan_vs_k_plus_1_plain": mg_ms / ((k + 1) * plain_ms),
                                     "torch_vs_k_plus_1_plain": t_ms / ((k + 1) * t_plain_ms)}
    widths = [max(len(r[i]) for r in [header] + rows) for i in range(len(header))]
    for r in [header] + rows:
        print("  ".join(c.rjust(w) for c, w in zip(r, widths)))
    result["load_after"] = os.getloadavg()[0]
    json_line(result)
    return result


if __name__ == "__main__":
    main()
