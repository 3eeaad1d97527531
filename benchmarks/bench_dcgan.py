"""Benchmark of one full DCGAN training iteration (28x28 MNIST models), minigan against PyTorch.

Run:  python benchmarks/bench_dcgan.py [--batch 64 256] [--repeat 9] [--device cpu|cuda]
                                        [--profile] [--no-torch]

One iteration is :func:`minigan.gan.train.train_step`: G forward, D forward on the real and the
detached fake batch, D backward, Adam step on D, D forward on the fake batch (D frozen), G
backward, Adam step on G. PyTorch runs the same architecture, initial weights, losses and Adam
settings in the same process, with the same freezing of D during the G step, and the two are
timed in turn within every repeat (time_interleaved_ms), so that other load on the machine hits
both alike: their ratio is the number to trust (the minimum is what each does when nothing
else interferes). PyTorch CPU uses torch.set_num_threads(2).

Printed: the BLAS in use, a table per batch size (ms per iteration, images/s, GFLOP/s, ratio =
minigan / torch), and a last line of JSON. FLOPs are 2 * multiply-adds of the convolutions
forward and backward (the products only: batch norm, activations and Adam are not counted):
about 17 GFLOP per iteration at batch 64 (18 if D's weight gradients were also computed in the
G step, as PyTorch's DCGAN example does). --profile adds minigan's per-op table and the top of
cProfile for one batch size.
"""
import argparse
import cProfile
import io as _io
import pstats
import sys

import numpy as np

from _common import (add_winograd_flag, import_torch, json_line, print_blas_info,
                     time_interleaved_ms, use_winograd)

import minigan as mg  # _common made a checkout's minigan importable
from minigan import backend, optim, profiler
from minigan.gan.models import make_dcgan
from minigan.gan.train import sample_noise, train_step

NZ = 100


# --- FLOPs --------------------------------------------------------------------------------------

def conv_macs(batch, ngf=64, ndf=64, nz=NZ):
    """Multiply-adds of one pass of each convolution product, as lists (name, macs) for G and D.

    A product's multiply-adds are the same for the forward, the input gradient and the weight
    gradient: batch * (pixels of the small side) * Cin * Cout * kh * kw, the small side being
    the output of a convolution or the input of a transposed one."""
    g = [("G1", batch * 1 * 1 * nz * (4 * ngf) * 7 * 7),
         ("G2", batch * 7 * 7 * (4 * ngf) * (2 * ngf) * 4 * 4),
         ("G3", batch * 14 * 14 * (2 * ngf) * 1 * 4 * 4)]
    d = [("D1", batch * 14 * 14 * 1 * ndf * 4 * 4),
         ("D2", batch * 7 * 7 * ndf * (2 * ndf) * 4 * 4),
         ("D3", batch * 1 * 1 * (2 * ndf) * 1 * 7 * 7)]
    return g, d


def iteration_flops(batch, ngf=64, ndf=64):
    """2 * multiply-adds of all convolution products in one train_step."""
    g, d = conv_macs(batch, ngf, ndf)
    g_pass = sum(m for _, m in g)
    d_pass = sum(m for _, m in d)
    g_first, d_first = g[0][1], d[0][1]
    macs = (g_pass + 3 * d_pass                 # forward: G once; D on real, fake, fake again
            + 2 * (d_pass + d_pass - d_first)   # D step: weight and input gradients of both D
                                                # passes, except the input gradient of D1 (its
                                                # input is data or a detached sample)
            + d_pass                            # G step: input gradients through the frozen D
            + g_pass + g_pass - g_first)        # then G's weight and input gradients (not z's)
    return 2 * macs


# --- the two implementations ------------------------------------------------------------------

def minigan_setup(batch, device, seed=0):
    mg.manual_seed(seed)
    G, D = make_dcgan()
    G.to(device)
    D.to(device)
    opt_g = optim.Adam(G.parameters(), lr=2e-4, betas=(0.5, 0.999))
    opt_d = optim.Adam(D.parameters(), lr=2e-4, betas=(0.5, 0.999))
    rng = np.random.default_rng(seed)
    real = mg.Tensor(backend.to_device(rng.uniform(-1, 1, (batch, 1, 28, 28)).astype(np.float32),
                                       device))

    def step(z=None):
        """One iteration; z (batch, NZ) NumPy noise, or None to draw it."""
        z = sample_noise(batch, NZ, device) if z is None else mg.Tensor(backend.to_device(z, device))
        stats = train_step(G, D, opt_g, opt_d, real, z)
        return stats.loss_d, stats.loss_g
    return step, (G, D, real)


def torch_dcgan(torch, G_mg, D_mg, device="cpu"):
    """The 28x28 DCGAN (default widths) as PyTorch modules (G, D), with minigan's weights and
    batch-norm buffers copied in from ``G_mg`` and ``D_mg``."""
    nn = torch.nn
    G = nn.Sequential(
        nn.ConvTranspose2d(NZ, 256, 7, 1, 0, bias=False), nn.BatchNorm2d(256), nn.ReLU(),
        nn.ConvTranspose2d(256, 128, 4, 2, 1, bias=False), nn.BatchNorm2d(128), nn.ReLU(),
        nn.ConvTranspose2d(128, 1, 4, 2, 1, bias=False), nn.Tanh())
    D = nn.Sequential(
        nn.Conv2d(1, 64, 4, 2, 1, bias=False), nn.LeakyReLU(0.2),
        nn.Conv2d(64, 128, 4, 2, 1, bias=False), nn.BatchNorm2d(128), nn.LeakyReLU(0.2),
        nn.Conv2d(128, 1, 7, 1, 0, bias=False))
    for ours, theirs in ((G_mg.net, G), (D_mg.net, D)):
        state = {k: torch.from_numpy(v) for k, v in ours.state_dict().items()}
        theirs.load_state_dict(state)
    return G.to(device), D.to(device)


def torch_train_step(torch, G, D, opt_g, opt_d, real, z, ones, zeros):
    """One PyTorch iteration, the same as minigan.gan.train.train_step: D's update on the real
    batch and the detached fake one, then G's non-saturating update with D frozen. ``ones`` and
    ``zeros``: the targets (batch,), made once by the caller. Returns (loss_d, loss_g) as floats."""
    bce = torch.nn.functional.binary_cross_entropy_with_logits
    fake = G(z)
    loss_d = bce(D(real).view(-1), ones) + bce(D(fake.detach()).view(-1), zeros)
    opt_d.zero_grad()
    loss_d.backward()
    opt_d.step()
    D.requires_grad_(False)
    loss_g = bce(D(fake).view(-1), ones)
    opt_g.zero_grad()
    loss_g.backward()
    opt_g.step()
    D.requires_grad_(True)
    return loss_d.item(), loss_g.item()


def torch_setup(torch, batch, device, G_mg, D_mg, real_mg):
    """The same models in PyTorch, with minigan's initial weights copied in, and one iteration."""
    G, D = torch_dcgan(torch, G_mg, D_mg, device)
    opt_g = torch.optim.Adam(G.parameters(), lr=2e-4, betas=(0.5, 0.999))
    opt_d = torch.optim.Adam(D.parameters(), lr=2e-4, betas=(0.5, 0.999))
    real = torch.from_numpy(backend.as_numpy(real_mg.data)).to(device)
    ones, zeros = torch.ones(batch, device=device), torch.zeros(batch, device=device)

    def step(z=None):
        """One iteration; z (batch, NZ) NumPy noise, or None to draw it."""
        z = (torch.randn(batch, NZ, 1, 1, device=device) if z is None
             else torch.from_numpy(z).reshape(batch, NZ, 1, 1).to(device))
        # its .item() calls wait for the GPU, so the timing covers the whole iteration
        return torch_train_step(torch, G, D, opt_g, opt_d, real, z, ones, zeros)
    return step


def synchronised(step, device):
    if device == "cpu":
        return step
    cp = backend.require_cupy()

    def run(z=None):
        out = step(z)
        cp.cuda.Device().synchronize()
        return out
    return run


def profile_report(step, iterations=5):
    """minigan's per-op table and cProfile's top functions over a few iterations."""
    with profiler.profile() as prof:
        for _ in range(iterations):
            step()
    print(f"\nminigan.profiler over {iterations} iterations (backward rows include the ops "
          "their rule runs):")
    print(prof.table())
    profile = cProfile.Profile()
    profile.enable()
    for _ in range(iterations):
        step()
    profile.disable()
    text = _io.StringIO()
    pstats.Stats(profile, stream=text).sort_stats("tottime").print_stats(18)
    print(f"\ncProfile over {iterations} iterations, by own time:")
    lines = text.getvalue().splitlines()
    start = next(i for i, line in enumerate(lines) if "ncalls" in line)
    print("\n".join(lines[start:]))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch", type=int, nargs="+", default=[64, 256])
    parser.add_argument("--repeat", type=int, default=9)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--threads", type=int, default=2, help="PyTorch CPU threads")
    parser.add_argument("--no-torch", action="store_true")
    parser.add_argument("--profile", action="store_true",
                        help="per-op and cProfile breakdown at the first batch size")
    add_winograd_flag(parser)
    args = parser.parse_args(argv)
    use_winograd(args)

    if args.device == "cuda" and not backend.cupy_available():
        sys.exit("--device cuda needs CuPy and a CUDA GPU; none was found (pip install "
                 "'minigan[gpu]' on a machine with an NVIDIA driver)")
    info = print_blas_info()
    torch = None if args.no_torch else import_torch(args.threads)
    if torch is not None and args.device == "cuda" and not torch.cuda.is_available():
        print("PyTorch has no CUDA here: timing minigan alone")
        torch = None
    if torch is None:
        print("no PyTorch to compare against" if not args.no_torch else "PyTorch left out")
    else:
        print(f"PyTorch {torch.__version__}, {torch.get_num_threads()} threads")

    rows = []
    for batch in args.batch:
        step, (G, D, real) = minigan_setup(batch, args.device)
        fns = [synchronised(step, args.device)]
        if torch is not None:
            fns.append(torch_setup(torch, batch, args.device, G, D, real))
            # the same first iteration on both sides: same weights, data and noise
            z = np.random.default_rng(1).standard_normal((batch, NZ)).astype(np.float32)
            ours, theirs = fns[0](z), fns[1](z)
            print(f"batch {batch}, first iteration losses (D, G): minigan "
                  f"({ours[0]:.6f}, {ours[1]:.6f}), torch ({theirs[0]:.6f}, {theirs[1]:.6f})")
        timed = time_interleaved_ms(fns, warmup=args.warmup, repeat=args.repeat)
        flops = iteration_flops(batch)
        (ms, ms_min) = timed[0]
        row = {"batch": batch, "gflop": flops / 1e9, "minigan_ms": ms, "minigan_min_ms": ms_min,
               "minigan_images_per_s": batch / ms * 1e3, "minigan_gflops": flops / ms / 1e6}
        if torch is not None:
            (tms, tms_min) = timed[1]
            row.update({"torch_ms": tms, "torch_min_ms": tms_min,
                        "torch_images_per_s": batch / tms * 1e3, "torch_gflops": flops / tms / 1e6,
                        "ratio": ms / tms, "ratio_min": ms_min / tms_min})
        rows.append(row)
        if args.profile and batch == args.batch[0]:
            profile_report(fns[0])

    print(f"\nOne DCGAN iteration on {args.device}: median (and min) ms of {args.repeat} "
          f"timed blocks; {iteration_flops(64) / 1e9:.1f} GFLOP at batch 64; ratio = minigan / torch")
    print(f"{'batch':>6}{'minigan ms':>17}{'img/s':>7}{'GFLOP/s':>9}"
          f"{'torch ms':>17}{'img/s':>7}{'GFLOP/s':>9}{'ratio':>13}")
    for r in rows:
        line = (f"{r['batch']:>6}{r['minigan_ms']:>9.1f} ({r['minigan_min_ms']:>5.1f})"
                f"{r['minigan_images_per_s']:>7.0f}{r['minigan_gflops']:>9.1f}")
        if "torch_ms" in r:
            line += (f"{r['torch_ms']:>9.1f} ({r['torch_min_ms']:>5.1f})"
                     f"{r['torch_images_per_s']:>7.0f}{r['torch_gflops']:>9.1f}"
                     f"{r['ratio']:>7.2f} ({r['ratio_min']:.2f})")
        print(line)
    json_line({"benchmark": "dcgan_iteration", "device": args.device, "blas": info,
               "torch": None if torch is None else torch.__version__, "winograd": args.winograd,
               "results": rows})


if __name__ == "__main__":
    main()
