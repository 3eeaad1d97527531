"""Benchmark of one CycleGAN training iteration (examples.cyclegan_mnist's networks), minigan
against the same CycleGAN in PyTorch.

Run:  python benchmarks/bench_cyclegan.py [--batch 8 16] [--repeat 7] [--ngf 16] [--ndf 32]
                                           [--n-blocks 3] [--lambda-invert 0.5] [--no-torch]
                                           [--profile]

One iteration is :meth:`minigan.gan.cyclegan.CycleGAN.train_step`: G(x), F(y), F(G(x)), G(F(y)),
G(y), F(x), F(-y) and the two frozen discriminators on the fakes, one backward through the full
objective (least squares + 10 * cycle + 5 * identity + 10 * lambda_invert * ||F(-y) - F(y)||_1,
the example's default 0.5; 0 leaves out F(-y)) and Adam on G and F; then D_X and D_Y on
real images and pooled fakes, backward, Adam. PyTorch runs the same networks (ReflectionPad2d,
InstanceNorm2d, the same layer order), minigan's initial weights copied in, the same losses,
pool rule and Adam settings, in the same process, timed in turn within every repeat
(time_interleaved_ms) so that other load hits both alike: the ratio is the number to trust.
PyTorch CPU uses torch.set_num_threads(2).

Printed: the BLAS in use, the load average, a table (ms per iteration, images/s of each domain,
ratio = minigan / torch, median and min), and a last line of JSON.
"""
import argparse
import os
import random

import numpy as np

from _common import import_torch, json_line, print_blas_info, time_interleaved_ms

import minigan as mg  # _common made a checkout's minigan importable
from minigan import profiler
from minigan.gan.cyclegan import CycleGAN, PatchDiscriminator, ResnetGenerator


def negative(images):
    """B's colour negative, the example's T (examples.cyclegan_mnist.negative)."""
    return -images


def minigan_setup(batch, ngf, ndf, n_blocks, seed=0, lambda_invert=0.5):
    mg.manual_seed(seed)
    nets = [ResnetGenerator(3, 3, ngf, n_blocks), ResnetGenerator(3, 3, ngf, n_blocks),
            PatchDiscriminator(3, ndf), PatchDiscriminator(3, ndf)]
    model = CycleGAN(*nets, lambda_consistency=lambda_invert, consistency_transform=negative)
    rng = np.random.default_rng(seed)
    x, y = (rng.uniform(-1, 1, (batch, 3, 28, 28)).astype(np.float32) for _ in range(2))

    def step():
        stats = model.train_step(mg.Tensor(x), mg.Tensor(y))
        return stats.loss_g, stats.loss_d_x + stats.loss_d_y
    return step, model, (x, y)


def torch_networks(torch, model):
    """G, F, D_X, D_Y as PyTorch modules with minigan's parameter names and weights."""
    nn = torch.nn

    class Block(nn.Module):
        def __init__(self, c):
            super().__init__()
            self.block = nn.Sequential(
                nn.ReflectionPad2d(1), nn.Conv2d(c, c, 3), nn.InstanceNorm2d(c), nn.ReLU(),
                nn.ReflectionPad2d(1), nn.Conv2d(c, c, 3), nn.InstanceNorm2d(c))

        def forward(self, x):
            return x + self.block(x)

    class Wrap(nn.Module):
        def __init__(self, layers):
            super().__init__()
            self.net = nn.Sequential(*layers)

        def forward(self, x):
            return self.net(x)

    def generator(cfg):
        g, layers = cfg["ngf"], [nn.ReflectionPad2d(3), nn.Conv2d(cfg["in_channels"], cfg["ngf"], 7),
                                 nn.InstanceNorm2d(cfg["ngf"]), nn.ReLU()]
        for _ in range(cfg["n_downsampling"]):
            layers += [nn.Conv2d(g, 2 * g, 3, 2, 1), nn.InstanceNorm2d(2 * g), nn.ReLU()]
            g *= 2
        layers += [Block(g) for _ in range(cfg["n_blocks"])]
        for _ in range(cfg["n_downsampling"]):
            layers += [nn.ConvTranspose2d(g, g // 2, 3, 2, 1, output_padding=1),
                       nn.InstanceNorm2d(g // 2), nn.ReLU()]
            g //= 2
        layers += [nn.ReflectionPad2d(3), nn.Conv2d(g, cfg["out_channels"], 7), nn.Tanh()]
        return Wrap(layers)

    def discriminator(cfg):
        d = cfg["ndf"]
        layers = [nn.Conv2d(cfg["in_channels"], d, 4, 2, 1), nn.LeakyReLU(0.2)]
        width = d
        for n in range(1, cfg["n_layers"]):
            layers += [nn.Conv2d(width, d * min(2 ** n, 8), 4, 2, 1),
                       nn.InstanceNorm2d(d * min(2 ** n, 8)), nn.LeakyReLU(0.2)]
            width = d * min(2 ** n, 8)
        wide = d * min(2 ** cfg["n_layers"], 8)
        layers += [nn.Conv2d(width, wide, 4, 1, 1), nn.InstanceNorm2d(wide), nn.LeakyReLU(0.2),
                   nn.Conv2d(wide, 1, 4, 1, 1)]
        return Wrap(layers)

    nets = []
    for name, ours in model.models.items():
        theirs = (generator if name in ("G", "F") else discriminator)(ours.config())
        theirs.load_state_dict({k: torch.from_numpy(v) for k, v in ours.state_dict().items()})
        nets.append(theirs)
    return nets


class TorchPool:
    """The same rule as minigan.gan.cyclegan.ImagePool, on torch tensors."""

    def __init__(self, torch, size=50, seed=0):
        self.torch, self.size, self.images, self.rng = torch, size, [], random.Random(seed)

    def query(self, images):
        out = []
        for image in images.detach():
            if len(self.images) < self.size:
                self.images.append(image.clone())
                out.append(image)
            elif self.rng.random() < 0.5:
                k = self.rng.randrange(self.size)
                out.append(self.images[k])
                self.images[k] = image.clone()
            else:
                out.append(image)
        return self.torch.stack(out)


def torch_setup(torch, model, data, lambda_cycle=10.0, lambda_identity=0.5, lambda_invert=0.5):
    G, F, D_X, D_Y = torch_networks(torch, model)
    opt_g = torch.optim.Adam(list(G.parameters()) + list(F.parameters()), lr=2e-4,
                             betas=(0.5, 0.999))
    opt_d = torch.optim.Adam(list(D_X.parameters()) + list(D_Y.parameters()), lr=2e-4,
                             betas=(0.5, 0.999))
    pool_x, pool_y = TorchPool(torch, seed=0), TorchPool(torch, seed=1)
    x, y = (torch.from_numpy(a) for a in data)

    def l1(a, b):
        return (a - b).abs().mean()

    def step():
        D_X.requires_grad_(False)
        D_Y.requires_grad_(False)
        fake_y, fake_x = G(x), F(y)
        gan = ((D_Y(fake_y) - 1) ** 2).mean() + ((D_X(fake_x) - 1) ** 2).mean()
        cycle = l1(F(fake_y), x) + l1(G(fake_x), y)
        identity = l1(G(y), y) + l1(F(x), x)
        loss_g = gan + lambda_cycle * cycle + lambda_identity * lambda_cycle * identity
        if lambda_invert > 0:
            loss_g = loss_g + lambda_invert * lambda_cycle * l1(F(-y), fake_x)
        opt_g.zero_grad()
        loss_g.backward()
        opt_g.step()
        D_X.requires_grad_(True)
        D_Y.requires_grad_(True)
        px, py = pool_x.query(fake_x), pool_y.query(fake_y)
        loss_dx = 0.5 * (((D_X(x) - 1) ** 2).mean() + (D_X(px) ** 2).mean())
        loss_dy = 0.5 * (((D_Y(y) - 1) ** 2).mean() + (D_Y(py) ** 2).mean())
        opt_d.zero_grad()
        (loss_dx + loss_dy).backward()
        opt_d.step()
        return loss_g.item(), loss_dx.item() + loss_dy.item()
    return step


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch", type=int, nargs="+", default=[8, 16])
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--ngf", type=int, default=16)
    parser.add_argument("--ndf", type=int, default=32)
    parser.add_argument("--n-blocks", type=int, default=3)
    parser.add_argument("--lambda-invert", type=float, default=0.5,
                        help="weight of ||F(-y) - F(y)||_1 (a fraction of lambda), as the example")
    parser.add_argument("--threads", type=int, default=2, help="PyTorch CPU threads")
    parser.add_argument("--no-torch", action="store_true")
    parser.add_argument("--profile", action="store_true",
                        help="minigan's per-op table at the first batch size")
    args = parser.parse_args(argv)

    info = print_blas_info()
    load = os.getloadavg()
    print(f"load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} on {os.cpu_count()} CPUs")
    torch = None if args.no_torch else import_torch(args.threads)
    print("PyTorch left out" if args.no_torch else "no PyTorch to compare against"
          if torch is None else f"PyTorch {torch.__version__}, {torch.get_num_threads()} threads")

    rows = []
    for batch in args.batch:
        step, model, data = minigan_setup(batch, args.ngf, args.ndf, args.n_blocks,
                                          lambda_invert=args.lambda_invert)
        fns = [step]
        if torch is not None:
            fns.append(torch_setup(torch, model, data, lambda_invert=args.lambda_invert))
            ours, theirs = fns[0](), fns[1]()   # same weights and data: the same first losses
            print(f"batch {batch}, first iteration losses (G+F total, D_X + D_Y): minigan "
                  f"({ours[0]:.5f}, {ours[1]:.5f}), torch ({theirs[0]:.5f}, {theirs[1]:.5f})")
        timed = time_interleaved_ms(fns, warmup=args.warmup, repeat=args.repeat)
        ms, ms_min = timed[0]
        row = {"batch": batch, "minigan_ms": ms, "minigan_min_ms": ms_min,
               "minigan_images_per_s": batch / ms * 1e3}
        if torch is not None:
            tms, tms_min = timed[1]
            row.update({"torch_ms": tms, "torch_min_ms": tms_min,
                        "torch_images_per_s": batch / tms * 1e3, "ratio": ms / tms,
                        "ratio_min": ms_min / tms_min})
        rows.append(row)
        if args.profile and batch == args.batch[0]:
            with profiler.profile() as prof:
                for _ in range(3):
                    step()
            print(prof.table())

    load = os.getloadavg()
    print(f"\nOne CycleGAN iteration (ngf {args.ngf}, ndf {args.ndf}, {args.n_blocks} blocks, "
          f"lambda_invert {args.lambda_invert:g}, 28x28x3): median (min) ms of {args.repeat} "
          f"timed blocks; ratio = minigan / torch; "
          f"load average now {load[0]:.2f}")
    print(f"{'batch':>6}{'minigan ms':>18}{'img/s':>7}{'torch ms':>18}{'img/s':>7}{'ratio':>14}")
    for r in rows:
        line = (f"{r['batch']:>6}{r['minigan_ms']:>10.1f} ({r['minigan_min_ms']:>5.1f})"
                f"{r['minigan_images_per_s']:>7.0f}")
        if "torch_ms" in r:
            line += (f"{r['torch_ms']:>10.1f} ({r['torch_min_ms']:>5.1f})"
                     f"{r['torch_images_per_s']:>7.0f}{r['ratio']:>7.2f} ({r['ratio_min']:.2f})")
        print(line)
    json_line({"benchmark": "cyclegan_iteration", "blas": info, "load_average": load[0],
               "torch": None if torch is None else torch.__version__,
               "config": {"ngf": args.ngf, "ndf": args.ndf, "n_blocks": args.n_blocks,
                          "lambda_invert": args.lambda_invert},
               "results": rows})


if __name__ == "__main__":
    main()
