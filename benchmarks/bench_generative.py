"""DCGAN, VAE and PixelCNN on the same digits, measured side by side.

Run:  python benchmarks/bench_generative.py [--dcgan runs/dcgan_mnist] [--vae runs/vae_mnist]
                                            [--pixelcnn runs/pixelcnn_mnist] [--n 2000]
                                            [--picture out.png] [--repeat 5] [--no-torch]

The three models are the ones the examples' default runs trained (``python -m examples.
dcgan_mnist --bundled``, ``examples.vae_mnist --bundled``, ``examples.pixelcnn_mnist --bundled``):
this script reads their run folders' checkpoints (the latest one, finished or not) and
metrics.jsonl, so training happens once, in the examples. For each model it prints

    the iterations trained and the run's training wall time (from metrics.jsonl: the load on the
      machine during that run is in the log, not here), and the CPU cost of one training
      iteration at batch 64 measured here, minigan and PyTorch in turn (time_interleaved_ms) with
      the same architecture and weights: ratio = minigan / torch
    FID (LeNet features, against the held-out digits) and classifier score of --n samples; for
      the two binary models also the FID against the binarised held-out digits, and the FIDs of
      real training digits (grey and binarised) as the floors to read them against
    the held-out negative ELBO (VAE) or exact NLL (PixelCNN), nats per image and bits per pixel,
      and the VAE's importance-weighted bound on its NLL (Burda et al. 2016, --iw-samples)
    the time to draw one image: alone (batch 1) and within the batch of --n

and writes a picture: 8 x 8 samples of each model side by side (--picture). Last line: JSON.
"""
import argparse
import os
import sys
import time

import numpy as np

from _common import REPO, import_torch, json_line, print_blas_info, time_interleaved_ms

import minigan as mg  # _common made a checkout's minigan importable
from minigan import backend, io, metrics, optim
from minigan.data import load_bundled
from minigan.density import (VAE, PixelCNN, binarize, decode_mean, heldout_importance_nll,
                             heldout_negative_elbo, heldout_nll, nats_to_bits_per_dim)
from minigan.gan import rebuild
from minigan.gan.models import make_dcgan
from minigan.gan.train import generate

BATCH = 64


# --- the trained models -------------------------------------------------------------------------

def read_run(folder, name):
    """(model state, config, step, training seconds) of the run folder's latest checkpoint."""
    path = os.path.join(folder, "checkpoint.npz")
    if not os.path.isfile(path):
        sys.exit(f"no checkpoint at {path}: train the {name} first (python -m examples."
                 f"{name}_mnist --bundled --out {folder}) or pass --{name} RUN_FOLDER")
    state = io.load_checkpoint(path)
    records = [r for r in io.read_jsonl(os.path.join(folder, "metrics.jsonl"))
               if r.get("step", -1) <= state["step"]]
    final = [r for r in records if r.get("final")]
    timed_records = [r for r in records if "elapsed_s" in r]
    if final:
        seconds = final[-1]["train_seconds"]
    else:   # an unfinished run: the training time up to its latest checkpoint
        seconds = max(timed_records, key=lambda r: r["step"])["elapsed_s"] if timed_records else 0.0
    return state, state["extra"]["config"], int(state["step"]), float(seconds)


def load_dcgan(folder):
    """The generator the run recorded (any dcgan_mnist recipe: the plain DCGAN, its average, or
    the cluster mixture), or for a checkpoint older than the records the plain DCGAN's 'G'."""
    state, cfg, step, seconds = read_run(folder, "dcgan")
    if (state.get("extra") or {}).get("generator") is not None:
        G = rebuild.load_generator(os.path.join(folder, "checkpoint.npz"))[0]
        return G, cfg, step, seconds
    G, _ = make_dcgan(cfg["nz"], cfg["ngf"], cfg["ndf"])
    G.load_state_dict(state["models"]["G"])
    return G, cfg, step, seconds


def load_vae(folder):
    state, cfg, step, seconds = read_run(folder, "vae")
    vae = VAE(cfg["nz"], cfg["ngf"], cfg["ndf"])
    vae.load_state_dict(state["models"]["VAE"])
    return vae, cfg, step, seconds


def load_pixelcnn(folder):
    state, cfg, step, seconds = read_run(folder, "pixelcnn")
    model = PixelCNN(cfg["hidden"], cfg["layers"])
    model.load_state_dict(state["models"]["PixelCNN"])
    return model, cfg, step, seconds


def timed(fn):
    start = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - start


def drawers(G, vae, pixelcnn, seed):
    """name -> draw(n): n samples as float images in [-1, 1] (NumPy)."""
    def dcgan(n):
        z = np.random.default_rng([seed, 3]).standard_normal((n, G.nz)).astype(np.float32)
        return backend.as_numpy(generate(G, mg.Tensor(z)))

    def vae_draw(n):
        z = np.random.default_rng([seed, 3]).standard_normal((n, vae.nz)).astype(np.float32)
        return 2 * backend.as_numpy(decode_mean(vae.decoder, mg.Tensor(z))) - 1

    def pixelcnn_draw(n, batch_size=500):
        rng = np.random.default_rng([seed, 3])
        parts = [pixelcnn.sample(min(batch_size, n - i), rng=rng) for i in range(0, n, batch_size)]
        return 2 * np.concatenate(parts) - 1
    return {"DCGAN": dcgan, "VAE": vae_draw, "PixelCNN": pixelcnn_draw}


# --- one training iteration, minigan and PyTorch --------------------------------------------------

def torch_models(torch):
    """PyTorch twins of minigan's VAE and PixelCNN, with the same parameter names."""
    tnn, F = torch.nn, torch.nn.functional

    class Encoder(tnn.Module):
        def __init__(self, nz, d):
            super().__init__()
            self.nz = nz
            self.net = tnn.Sequential(tnn.Conv2d(1, d, 4, 2, 1, bias=False), tnn.LeakyReLU(0.2),
                                      tnn.Conv2d(d, 2 * d, 4, 2, 1, bias=False),
                                      tnn.BatchNorm2d(2 * d), tnn.LeakyReLU(0.2),
                                      tnn.Conv2d(2 * d, 2 * nz, 7, 1, 0))

    class Decoder(tnn.Module):
        def __init__(self, nz, g):
            super().__init__()
            self.net = tnn.Sequential(
                tnn.ConvTranspose2d(nz, 4 * g, 7, 1, 0, bias=False), tnn.BatchNorm2d(4 * g),
                tnn.ReLU(), tnn.ConvTranspose2d(4 * g, 2 * g, 4, 2, 1, bias=False),
                tnn.BatchNorm2d(2 * g), tnn.ReLU(), tnn.ConvTranspose2d(2 * g, 1, 4, 2, 1))

    class TorchVAE(tnn.Module):
        def __init__(self, nz, g, d):
            super().__init__()
            self.nz = nz
            self.encoder, self.decoder = Encoder(nz, d), Decoder(nz, g)

        def loss(self, x, eps):
            h = self.encoder.net(x).view(x.shape[0], 2 * self.nz)
            mu, logvar = h[:, :self.nz], h[:, self.nz:]
            z = mu + (0.5 * logvar).exp() * eps
            logits = self.decoder.net(z.view(x.shape[0], self.nz, 1, 1))
            rec = F.binary_cross_entropy_with_logits(logits, x, reduction="sum") / x.shape[0]
            kl = 0.5 * (mu * mu + logvar.exp() - 1 - logvar).sum(1).mean()
            return rec + kl

    class MaskedConv(tnn.Conv2d):
        def __init__(self, mask, cin, cout, k):
            super().__init__(cin, cout, k, padding=k // 2)
            m = torch.zeros(1, 1, k, k)
            m[..., :k // 2, :] = 1
            m[..., k // 2, :k // 2 + (mask == "B")] = 1
            self.register_buffer("mask", m)

        def forward(self, x):
            return F.conv2d(x, self.weight * self.mask, self.bias, padding=self.padding)

    class Block(tnn.Module):
        def __init__(self, h):
            super().__init__()
            self.net = tnn.Sequential(tnn.ReLU(), tnn.Conv2d(2 * h, h, 1), tnn.ReLU(),
                                      MaskedConv("B", h, h, 3), tnn.ReLU(), tnn.Conv2d(h, 2 * h, 1))

        def forward(self, y):
            return y + self.net(y)

    class TorchPixelCNN(tnn.Module):
        def __init__(self, h, layers):
            super().__init__()
            self.input = MaskedConv("A", 1, 2 * h, 7)
            self.blocks = tnn.Sequential(*[Block(h) for _ in range(layers)])
            self.output = tnn.Sequential(tnn.ReLU(), tnn.Conv2d(2 * h, 2 * h, 1), tnn.ReLU(),
                                         tnn.Conv2d(2 * h, 1, 1))

        def loss(self, x):
            logits = self.output(self.blocks(self.input(x)))
            return F.binary_cross_entropy_with_logits(logits, x, reduction="sum") / x.shape[0]
    return TorchVAE, TorchPixelCNN


def iteration_steps(torch, vae_cfg, pixelcnn_cfg, images, seed=0):
    """name -> [minigan step, torch step or None], each one training iteration at batch 64 of a
    fresh model (same initial weights on both sides), returning the loss."""
    x_np = images[:BATCH]
    eps_np = np.random.default_rng(seed).standard_normal((BATCH, vae_cfg["nz"])).astype(np.float32)
    mg.manual_seed(seed)
    vae = VAE(vae_cfg["nz"], vae_cfg["ngf"], vae_cfg["ndf"])
    pixelcnn = PixelCNN(pixelcnn_cfg["hidden"], pixelcnn_cfg["layers"])
    steps = {}
    for name, model, loss in (("VAE", vae, lambda m, x: m.loss(x, mg.Tensor(eps_np)).loss),
                              ("PixelCNN", pixelcnn, lambda m, x: m.nll(x).mean())):
        opt = optim.Adam(model.parameters(), lr=1e-3)

        def ours(model=model, opt=opt, loss=loss):
            value = loss(model, mg.Tensor(x_np))
            opt.zero_grad()
            value.backward()
            opt.step()
            return float(value.item())
        steps[name] = [ours, None]
    if torch is None:
        return steps
    TorchVAE, TorchPixelCNN = torch_models(torch)
    twins = {"VAE": (TorchVAE(vae_cfg["nz"], vae_cfg["ngf"], vae_cfg["ndf"]), vae),
             "PixelCNN": (TorchPixelCNN(pixelcnn_cfg["hidden"], pixelcnn_cfg["layers"]), pixelcnn)}
    x_t, eps_t = torch.from_numpy(x_np), torch.from_numpy(eps_np)
    for name, (theirs, ours) in twins.items():
        theirs.load_state_dict({k: torch.from_numpy(v) for k, v in ours.state_dict().items()})
        opt = torch.optim.Adam(theirs.parameters(), lr=1e-3)
        loss = ((lambda m: m.loss(x_t, eps_t)) if name == "VAE" else (lambda m: m.loss(x_t)))

        def step(model=theirs, opt=opt, loss=loss):
            value = loss(model)
            opt.zero_grad()
            value.backward()
            opt.step()
            return value.item()
        steps[name][1] = step
    return steps


def dcgan_steps(torch):
    """[minigan step, torch step or None] of one DCGAN iteration at batch 64 (bench_dcgan's)."""
    import bench_dcgan
    step, (G, D, real) = bench_dcgan.minigan_setup(BATCH, "cpu")
    theirs = None if torch is None else bench_dcgan.torch_setup(torch, BATCH, "cpu", G, D, real)
    return [step, theirs]


def cpu_ms(fn, repeat):
    """Median CPU milliseconds (all threads) of fn() after one untimed call."""
    fn()
    times = []
    for _ in range(repeat):
        start = time.process_time()
        fn()
        times.append(time.process_time() - start)
    return float(np.median(times)) * 1e3


# --- the report -----------------------------------------------------------------------------------

def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    runs = os.path.join(REPO, "runs")
    parser.add_argument("--dcgan", default=os.path.join(runs, "dcgan_mnist"))
    parser.add_argument("--vae", default=os.path.join(runs, "vae_mnist"))
    parser.add_argument("--pixelcnn", default=os.path.join(runs, "pixelcnn_mnist"))
    parser.add_argument("--n", type=int, default=2000, help="samples scored per model")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--repeat", type=int, default=5, help="timed training iterations")
    parser.add_argument("--picture", default=os.path.join(runs, "generative_samples.png"))
    parser.add_argument("--iw-samples", type=int, default=50,
                        help="posterior samples per digit for the VAE's importance-weighted NLL")
    parser.add_argument("--no-torch", action="store_true")
    args = parser.parse_args(argv)

    info = print_blas_info()
    print(f"load average at start: {os.getloadavg()}")
    torch = None if args.no_torch else import_torch(2)
    G, dcgan_cfg, dcgan_step, dcgan_s = load_dcgan(args.dcgan)
    vae, vae_cfg, vae_step, vae_s = load_vae(args.vae)
    pixelcnn, pc_cfg, pc_step, pc_s = load_pixelcnn(args.pixelcnn)
    train_u8, _ = load_bundled("train")
    test_u8, _ = load_bundled("test")
    train_bin, test_bin = binarize(train_u8), binarize(test_u8)
    classifier = metrics.load_classifier()
    draw = drawers(G, vae, pixelcnn, args.seed)

    rows = {"DCGAN": {"iterations": dcgan_step, "train_s": dcgan_s},
            "VAE": {"iterations": vae_step, "train_s": vae_s},
            "PixelCNN": {"iterations": pc_step, "train_s": pc_s}}
    vae_heldout = heldout_negative_elbo(vae, test_bin)
    rows["VAE"].update(nats=vae_heldout["neg_elbo"], what="-ELBO",
                       iw_nats=heldout_importance_nll(vae, test_bin, k=args.iw_samples))
    print(f"VAE held-out -ELBO {vae_heldout['neg_elbo']:.2f}, importance-weighted NLL bound "
          f"(k = {args.iw_samples}) {rows['VAE']['iw_nats']:.2f} nats", flush=True)
    pc_heldout = heldout_nll(pixelcnn, test_bin)
    rows["PixelCNN"].update(nats=pc_heldout["nll"], what="NLL")
    for name in ("VAE", "PixelCNN"):
        rows[name]["bits_per_dim"] = nats_to_bits_per_dim(rows[name]["nats"])

    # samples: FID against grey and binarised held-out digits, classifier score, time per image
    binary_reference = (test_bin[:, 0] * 255).astype(np.uint8)
    grids = {}
    for name, fn in draw.items():
        _, one_s = timed(lambda: fn(1))
        samples, all_s = timed(lambda: fn(args.n))
        result = metrics.evaluate_images(samples, classifier=classifier)
        rows[name].update(fid=result["fid"], score=result["classifier_score"],
                          fid_binary=metrics.fid(binary_reference, samples, classifier),
                          draw_one_s=one_s, draw_per_image_s=all_s / args.n)
        grids[name] = samples[:64]
        print(f"{name}: {args.n} samples in {all_s:.1f} s, FID {result['fid']:.1f}, "
              f"load {os.getloadavg()[0]:.1f}", flush=True)
    picks = np.random.default_rng(args.seed).permutation(len(train_u8))[:args.n]
    floors = {"real digits (grey)": train_u8[picks],
              "real digits (binarised)": (train_bin[picks, 0] * 255).astype(np.uint8)}
    for name, images in floors.items():
        rows[name] = {"fid": metrics.fid(test_u8, images, classifier),
                      "fid_binary": metrics.fid(binary_reference, images, classifier),
                      "score": metrics.classifier_score(images, classifier)}

    # one training iteration at batch 64, CPU time and wall time against PyTorch
    steps = iteration_steps(torch, vae_cfg, pc_cfg, train_bin)
    steps["DCGAN"] = dcgan_steps(torch)
    for name, (ours, theirs) in steps.items():
        fns = [ours] + ([theirs] if theirs is not None else [])
        walls = time_interleaved_ms(fns, warmup=1, repeat=args.repeat)
        rows[name].update(iter_ms=walls[0][0], iter_cpu_ms=cpu_ms(ours, args.repeat))
        if theirs is not None:
            rows[name].update(torch_iter_ms=walls[1][0], ratio=walls[0][0] / walls[1][0])

    # the picture: 8 x 8 samples of each, side by side, a grey column between
    gap = np.zeros((1, 1, 28, 28), np.float32)
    padded = {name: np.concatenate([g.astype(np.float32)] + [gap] * (64 - len(g)))
              for name, g in grids.items()}
    rows_of_images = [np.concatenate([padded["DCGAN"][r * 8:(r + 1) * 8], gap,
                                      padded["VAE"][r * 8:(r + 1) * 8], gap,
                                      padded["PixelCNN"][r * 8:(r + 1) * 8]]) for r in range(8)]
    io.save_image_grid(np.concatenate(rows_of_images), args.picture, nrow=26, scale=2)

    print(f"\nDCGAN vs VAE vs PixelCNN on the bundled digits (train 4,500, held out 500); "
          f"{args.n} samples each; load average now {os.getloadavg()}")
    print(f"{'model':<24}{'iters':>6}{'train s':>9}{'iter ms':>9}{'(CPU)':>8}{'torch':>8}"
          f"{'ratio':>7}{'FID':>8}{'FID bin':>8}{'score':>7}{'nats':>8}{'bits/px':>8}"
          f"{'1 img s':>9}{'s/img':>8}")
    for name, r in rows.items():
        def f(key, fmt):
            return format(r[key], fmt) if key in r else "-"
        print(f"{name:<24}{f('iterations', 'd'):>6}{f('train_s', '.0f'):>9}{f('iter_ms', '.0f'):>9}"
              f"{f('iter_cpu_ms', '.0f'):>8}{f('torch_iter_ms', '.0f'):>8}{f('ratio', '.2f'):>7}"
              f"{f('fid', '.1f'):>8}{f('fid_binary', '.1f'):>8}{f('score', '.2f'):>7}"
              f"{f('nats', '.1f'):>8}{f('bits_per_dim', '.4f'):>8}{f('draw_one_s', '.3f'):>9}"
              f"{f('draw_per_image_s', '.4f'):>8}")
    print(f"picture: {args.picture} (columns: DCGAN | VAE | PixelCNN)")
    json_line({"benchmark": "generative", "n": args.n, "seed": args.seed, "blas": info,
               "torch": None if torch is None else torch.__version__,
               "load_end": os.getloadavg(), "results": rows,
               "configs": {"dcgan": dcgan_cfg, "vae": vae_cfg, "pixelcnn": pc_cfg}})


if __name__ == "__main__":
    main()
