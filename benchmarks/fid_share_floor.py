"""How much of a DCGAN run's FID its class shares alone explain.

    python benchmarks/fid_share_floor.py runs/dcgan_mnist [more runs or checkpoints ...]
    python benchmarks/fid_share_floor.py --shares 18.8 3.8 8.1 10.3 4.5 11.6 7.1 14.0 5.9 16.0

For each run: the FID, classifier score and class shares of its final samples (as
``python -m examples.evaluate RUN`` computes them: 2,000 samples, noise seed [seed, 3]), then the
same metrics for 2,000 *real* training digits drawn with those class shares (each class's digits
drawn with replacement, seeded) and for 2,000 drawn with equal shares. The real digits at the
run's shares are what a generator drawing perfect digits in the same proportions would score:
the gap to the equal-share line is the price of the imbalance, the gap above it the price of
the digits' shapes. One line per row, then a JSON line.
"""
import argparse
import json
import os
import sys

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import minigan as mg  # noqa: E402
from minigan import backend, metrics  # noqa: E402
from minigan.data import load_mnist  # noqa: E402
from minigan.gan.train import generate  # noqa: E402

from examples.evaluate import FINAL_METRICS_SAMPLES, checkpoint_path, load_generator  # noqa: E402


def real_at_shares(shares, n, seed=0):
    """n bundled training digits (uint8, (n, 28, 28)) whose labels follow ``shares`` (10 numbers,
    any scale)."""
    train = load_mnist("train", download=False, verbose=False)
    labels = np.asarray(train.labels)
    p = np.asarray(shares, dtype=np.float64)
    if p.shape != (10,) or (p < 0).any() or p.sum() <= 0:
        raise ValueError(f"shares must be 10 non-negative numbers, got {list(shares)}")
    counts = np.floor(p / p.sum() * n).astype(int)
    counts[np.argsort(-(p / p.sum() * n - counts))[:n - counts.sum()]] += 1   # largest remainders
    rng = np.random.default_rng(seed)
    chosen = [rng.choice(np.flatnonzero(labels == k), c, replace=True) for k, c in enumerate(counts)]
    return train.images[np.concatenate(chosen)]


def run_images(run, model=None, n=FINAL_METRICS_SAMPLES):
    G, config = load_generator(checkpoint_path(run), model)
    z = np.random.default_rng([int(config.get("seed", 0)), 3]).standard_normal((n, config["nz"]))
    return backend.as_numpy(generate(G, mg.Tensor(z.astype(np.float32)))), config["model"]


def row(what, result):
    s = result["class_shares"]
    print(f"{what:<48} FID {result['fid']:6.1f}  score {result['classifier_score']:.2f}  "
          f"shares {100 * s.min():.1f}-{100 * s.max():.1f}%")
    return {"what": what, "fid": result["fid"], "classifier_score": result["classifier_score"],
            "class_shares": s.tolist()}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("runs", nargs="*", help="run folders or checkpoints")
    p.add_argument("--model", default=None, help="which generator of each checkpoint")
    p.add_argument("--shares", type=float, nargs=10, help="class shares instead of a run's")
    p.add_argument("--n", type=int, default=FINAL_METRICS_SAMPLES)
    args = p.parse_args(argv)
    if not args.runs and args.shares is None:
        p.error("give run folders, or --shares")
    classifier = metrics.load_classifier()
    rows = [row("real digits, equal shares",
                metrics.evaluate_images(real_at_shares([1] * 10, args.n), classifier=classifier))]
    if args.shares is not None:
        rows.append(row("real digits at --shares", metrics.evaluate_images(
            real_at_shares(args.shares, args.n), classifier=classifier)))
    for run in args.runs:
        images, model = run_images(run, args.model, args.n)
        result = metrics.evaluate_images(images, classifier=classifier)
        rows.append(row(f"{run} ({model})", result))
        rows.append(row("  real digits at its shares", metrics.evaluate_images(
            real_at_shares(result["class_shares"], args.n), classifier=classifier)))
    print(json.dumps(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
