"""Train a PixelCNN on binarised MNIST digits with minigan (CPU, or a GPU with --device cuda).

    python -m examples.pixelcnn_mnist                  # the default run
    python -m examples.pixelcnn_mnist --resume         # continue the run in --out
    python -m examples.pixelcnn_mnist --iters 3 --hidden 2 --layers 1 --out /tmp/smoke

The model is :class:`minigan.density.PixelCNN` (van den Oord et al. 2016): a 7x7 mask-A
convolution, residual blocks with 3x3 mask-B convolutions, a Bernoulli logit per pixel; trained
on the exact negative log-likelihood with Adam (lr 1e-3). Pixels are binarised at 128. The run
folder (--out) receives, as training goes:

    samples_epoch005.png ...   images drawn pixel by pixel (every 5th epoch: 784 passes each)
    checkpoint.npz             model, Adam, step, RNG, loader; extra["model"] rebuilds the model
    metrics.jsonl              a record per checkpoint: mean training NLL and the held-out NLL
                               (nats per image and bits per dimension)
    samples_final.png, completions.png (held-out digits' top halves, the bottom halves drawn by
    the model), losses.png, and the final record: held-out NLL, sampling time per image, FID and
    classifier score of --metric-samples samples

--resume continues a stopped run exactly, as in the GAN examples.
"""
import argparse
import sys
import time

import numpy as np

import minigan as mg
from minigan import backend, io, optim
from minigan.data import Batches
from minigan.density import PixelCNN, binarize, heldout_nll, nats_to_bits_per_dim
from minigan.gan.train import NonFiniteLossError

from ._common import TrainingRun, add_run_args, check_args, load_split, score_samples

# Iterations of the default run (21 epochs of the bundled 4,500 digits). An iteration at batch 64
# costs about 0.23-0.3 s of CPU time with h = 16, 5 blocks, so 1,500 are about 450 CPU seconds.
# The held-out NLL passes 90 nats after 140 iterations and is 78.5 at 420 (benchmarks/RESULTS.md,
# issue 15); the width is small so that drawing the samples stays cheap (784 passes each).
DEFAULT_ITERS = 1500
STAT_NAMES = ("nll",)
GRID_EVERY = 5      # epochs between sample grids: drawing one costs 784 forward passes


class NLLStats:
    def __init__(self, nll):
        self.nll = nll


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_run_args(parser, iters=DEFAULT_ITERS, lr=1e-3, out="runs/pixelcnn_mnist")
    parser.add_argument("--hidden", type=int, default=16,
                        help="h: the residual stream has 2h channels, the masked 3x3s h")
    parser.add_argument("--layers", type=int, default=5, help="residual blocks")
    parser.add_argument("--samples", type=int, default=64, help="images in each sample grid")
    parser.add_argument("--metric-samples", type=int, default=500,
                        help="samples drawn for FID and classifier score (784 passes per batch)")
    args = parser.parse_args(argv)
    check_args(args)
    for name in ("hidden", "layers", "samples", "metric_samples"):
        if getattr(args, name) < 1:
            sys.exit(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
    return args


def one_step(model, opt, x, step):
    """Minimise the batch's mean exact NLL once."""
    loss = model.nll(x).mean()
    value = float(loss.item())
    if not np.isfinite(value):
        raise NonFiniteLossError(f"the NLL is {value} at step {step}: training diverged (try a "
                                 "lower --lr); no update was made with it")
    opt.zero_grad()
    loss.backward()
    opt.step()
    return NLLStats(value)


def draw(model, n, seed, device, batch_size=500):
    """n samples (n, 1, 28, 28) in {0, 1}, a NumPy array, from a generator seeded with ``seed``."""
    rng = np.random.default_rng(seed)
    return np.concatenate([backend.as_numpy(model.sample(min(batch_size, n - i), device=device,
                                                         rng=rng))
                           for i in range(0, n, batch_size)])


def save_completions(model, heldout, path, device, n=16):
    """Held-out digits (odd rows) and the model's completions of their bottom halves (even)."""
    x = backend.to_device(heldout[:n].copy(), device)
    rng = np.random.default_rng(1)
    xp = backend.array_module(x)
    with mg.no_grad():
        for r in range(14, 28):
            for c in range(28):
                p = 1 / (1 + np.exp(-backend.as_numpy(model.row_logits(x, r).data[:, c])))
                x[:, 0, r, c] = xp.asarray(rng.random(n) < p, dtype=x.dtype)
    grid = np.concatenate([heldout[i:i + 8] if k == 0 else backend.as_numpy(x[i:i + 8])
                           for i in range(0, n, 8) for k in (0, 1)])
    io.save_image_grid(grid, path, nrow=8, scale=2, value_range=(0, 1))


def main(argv=None):
    args = parse_args(argv)
    mg.manual_seed(args.seed)
    device = args.device

    train_u8, described = load_split(args, "train")
    test_u8, test_described = load_split(args, "test")
    images, heldout = binarize(train_u8), binarize(test_u8)
    loader = Batches(backend.to_device(images, device), batch_size=args.batch_size, seed=args.seed)
    heldout_device = backend.to_device(heldout, device)
    model = PixelCNN(args.hidden, args.layers).to(device)
    opt = optim.Adam(model.parameters(), lr=args.lr)
    config = {"dataset": args.dataset, "images": len(images), "batch_size": args.batch_size,
              "lr": args.lr, "seed": args.seed, "hidden": args.hidden, "layers": args.layers}
    run = TrainingRun(args, {"PixelCNN": model}, {"PixelCNN": opt}, loader, config, STAT_NAMES,
                      per_epoch=len(loader), images_per_iteration=args.batch_size,
                      static={"model": {**model.spec(), "state": "models/PixelCNN.*"}})
    print(f"{described} (binarised at 128); held out: {test_described}; {len(loader)} batches "
          f"of {args.batch_size} per epoch; training to iteration {run.total} on {device}; "
          f"writing to {run.files.folder}")
    batches = loader.forever()

    def save_grid(path, force=False):
        epoch = run.step // run.per_epoch
        if force or epoch % GRID_EVERY == 0:
            io.save_image_grid(draw(model, args.samples, args.seed, device), path, nrow=8,
                               scale=2, value_range=(0, 1))

    def on_checkpoint(record, progress):
        record.update({f"heldout_{k}": v for k, v in heldout_nll(model, heldout_device).items()})
        record["bits_per_dim"] = nats_to_bits_per_dim(record["nll"])
        progress.write(f"iteration {record['step']}: held-out NLL {record['heldout_nll']:.2f} "
                       f"nats ({record['heldout_bits_per_dim']:.4f} bits/dim)")

    ok = run.train(lambda step: one_step(model, opt, mg.Tensor(next(batches)), step),
                   lambda s: {"NLL": s.nll}, save_grid, on_checkpoint)
    if not ok:
        return 1
    started = time.perf_counter()
    save_grid(run.files.samples("final"), force=True)
    per_image = (time.perf_counter() - started) / args.samples
    save_completions(model, heldout, run.files.path("completions.png"), device)
    if run.history["nll"]:
        io.plot_curves({"training NLL": run.history["nll"]}, run.files.losses,
                       title="PixelCNN on binarised MNIST", xlabel="iteration",
                       ylabel="nats per image")
    final = heldout_nll(model, heldout_device)
    print(f"held-out NLL {final['nll']:.2f} nats per image ({final['bits_per_dim']:.4f} bits/dim) "
          f"on {test_described}; sampling {per_image:.3f} s per image in a batch of "
          f"{args.samples}")
    record = {**{f"heldout_{k}": v for k, v in final.items()}, "sample_s_per_image": per_image}
    if not args.no_metrics:
        samples = draw(model, args.metric_samples, args.seed + 1, device)
        record.update(score_samples(samples, args.dataset, value_range=(0.0, 1.0)))
    run.finish(record)
    return 0


if __name__ == "__main__":
    sys.exit(main())
