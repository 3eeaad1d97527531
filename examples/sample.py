"""Draw new images from a trained run's generator: no training data, no discriminator.

    python -m examples.sample runs/dcgan_mnist                    # 64 samples -> a PNG grid
    python -m examples.sample runs/dcgan_mnist/checkpoint.npz --n 100 --seed 7 --out grid.png
    python -m examples.sample runs/dcgan_mnist --npy samples.npy  # and the images as an array
    python -m examples.sample runs/dcgan_mnist --truncation 0.7   # cleaner, less varied
    python -m examples.sample runs/cgan_mnist --label 3           # a conditional G: only 3s
    python -m examples.sample runs/cgan_mnist                     # row k: digit k

Works on the checkpoint of every example that records its generator (see
:mod:`minigan.gan.rebuild`: the class, its arguments, which model and what inputs it takes). The
noise is z ~ N(0, I) drawn from NumPy's generator seeded with --seed (U(-1, 1) for a generator
trained on uniform noise: its record says "noise": "uniform"); with --truncation t every
coordinate beyond [-t, t] is drawn again until it falls inside (the truncation trick of Brock et
al. 2019: samples from the middle of the noise distribution, where G was trained most, trading
variety for fidelity; uniform noise is then drawn from U(-t, t) for t < 1). The coordinates
that pick a mixture's component (the record's "mixture": m, the first m; dcgan_mnist's
clusters) are never truncated: truncating them would draw only the middle clusters. --npy writes
float32 (n, C, H, W) in [-1, 1], which ``python -m examples.evaluate --images`` scores.
"""
import argparse
import os
import sys

import numpy as np

import minigan as mg
from minigan import backend, io
from minigan.gan.rebuild import NotAGeneratorCheckpoint, load_generator

from ._common import add_device_arg, check_device

MAX_REDRAWS = 1000   # truncated noise: redraw rounds before giving up (t = 0.05 needs ~60)


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("run", help="a run folder (its checkpoint.npz) or a checkpoint file")
    p.add_argument("--n", type=int, default=64, help="how many images")
    p.add_argument("--seed", type=int, default=0, help="seed of the noise")
    p.add_argument("--out", default=None,
                   help="PNG grid to write (default: samples_seed<SEED>.png beside the checkpoint)")
    p.add_argument("--nrow", type=int, default=None,
                   help="images per grid row (default 8; a conditional G: one row per label)")
    p.add_argument("--npy", default=None, help="also save the images as a .npy array")
    p.add_argument("--truncation", type=float, default=None,
                   help="draw each noise coordinate from N(0, 1) truncated to [-t, t]")
    p.add_argument("--label", default=None,
                   help="conditional generators: the class of every image, or a comma list "
                        "cycled over the images (default: every class in turn)")
    p.add_argument("--model", default=None,
                   help="which of the checkpoint's models to draw from (default: the one the "
                        "run recorded, e.g. the EMA generator)")
    add_device_arg(p, help="where the generator runs")
    args = p.parse_args(argv)
    check_device(args.device)
    if args.n < 1:
        sys.exit(f"--n must be >= 1, got {args.n}")
    if args.nrow is not None and args.nrow < 1:
        sys.exit(f"--nrow must be >= 1, got {args.nrow}")
    if args.truncation is not None and not args.truncation > 0:
        sys.exit(f"--truncation must be > 0, got {args.truncation}")
    return args


def truncated_noise(rng, shape, truncation=None):
    """N(0, 1) samples of ``shape``; with ``truncation`` t, each one outside [-t, t] redrawn
    until inside: exactly the normal distribution conditioned on |z| <= t."""
    z = rng.standard_normal(shape)
    if truncation is None:
        return z
    for _ in range(MAX_REDRAWS):
        outside = np.abs(z) > truncation
        if not outside.any():
            return z
        z[outside] = rng.standard_normal(int(outside.sum()))
    raise ValueError(f"--truncation {truncation}: noise still outside [-t, t] after "
                     f"{MAX_REDRAWS} redraws; use a larger t")


def labels_for(args, classes, n):
    """(n,) int64 labels: --label's list cycled, or 0..classes-1 cycled."""
    if args.label is None:
        return np.arange(n) % classes
    try:
        wanted = [int(v) for v in args.label.split(",")]
    except ValueError:
        sys.exit(f"--label must be an integer or a comma list of integers, got {args.label!r}")
    bad = [v for v in wanted if not 0 <= v < classes]
    if bad:
        sys.exit(f"--label {bad}: this generator draws classes 0..{classes - 1}")
    return np.resize(np.asarray(wanted, np.int64), n)


def draw(G, record, args):
    """(n, C, H, W) float32 images in [-1, 1] from G, with the inputs its record asks for."""
    latent = record["latent"]
    unknown = sorted(set(latent) - {"nz", "noise", "labels", "codes", "continuous", "mixture"})
    if unknown:
        sys.exit(f"{args.run}: this generator also takes {unknown}, which examples.sample "
                 "cannot draw yet")
    kind = latent.get("noise", "normal")
    if kind not in ("normal", "uniform"):
        sys.exit(f"{args.run}: this generator was trained on {kind!r} noise, which "
                 "examples.sample cannot draw (normal or uniform)")
    rng = np.random.default_rng(args.seed)
    shape = (args.n, int(latent["nz"]))
    if kind == "uniform":
        t = 1.0 if args.truncation is None else min(args.truncation, 1.0)
        z = rng.uniform(-t, t, shape).astype(np.float32)
    else:
        z = truncated_noise(rng, shape, args.truncation).astype(np.float32)
        picks = int(latent.get("mixture", 0))
        if args.truncation is not None and picks:   # the component is drawn from N(0, 1)
            z[:, :picks] = rng.standard_normal((args.n, picks))
    z = backend.to_device(z, args.device)
    labels, extra = None, []
    # a conditional G takes labels; InfoGAN's takes an unsupervised categorical code (drawn
    # uniformly, or --label's values) and continuous codes ~ U(-1, 1), as in its training
    classes = latent.get("labels", latent.get("codes"))
    if classes is not None:
        labels = backend.to_device(labels_for(args, int(classes), args.n), args.device)
        extra.append(labels)
    elif args.label is not None:
        sys.exit(f"--label: {args.run}'s generator is not conditional (it takes noise only)")
    if latent.get("continuous"):
        c = rng.uniform(-1.0, 1.0, (args.n, int(latent["continuous"]))).astype(np.float32)
        extra.append(mg.Tensor(backend.to_device(c, args.device)))
    parts = []
    with mg.no_grad():
        for i in range(0, args.n, 256):   # batches of 256 bound the memory of a large --n
            zi = mg.Tensor(z[i:i + 256])
            parts.append(G(zi, *(e[i:i + 256] for e in extra)).data)
    return backend.as_numpy(backend.array_module(z).concatenate(parts)).astype(np.float32)


def main(argv=None):
    args = parse_args(argv)
    try:
        G, record, step = load_generator(args.run, model=args.model, device=args.device)
    except (FileNotFoundError, io.CheckpointError, NotAGeneratorCheckpoint) as e:
        sys.exit(f"cannot sample: {e}")
    images = draw(G, record, args)
    folder = args.run if os.path.isdir(args.run) else os.path.dirname(args.run) or "."
    out = args.out or os.path.join(folder, f"samples_seed{args.seed}.png")
    nrow = args.nrow
    if nrow is None:
        classes = record["latent"].get("labels", record["latent"].get("codes"))
        nrow = int(classes) if classes is not None and args.label is None else 8
    io.save_image_grid(images, out, nrow=nrow, scale=2)
    written = [out]
    if args.npy:
        np.save(args.npy, images)
        written.append(args.npy)
    print(f"{args.n} samples of {record['class']} ('{record['model']}', iteration {step}, "
          f"seed {args.seed}{'' if args.truncation is None else f', truncation {args.truncation}'})"
          f"; wrote {', '.join(written)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
