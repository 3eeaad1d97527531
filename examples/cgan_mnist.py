"""Train a conditional DCGAN on MNIST digits with minigan: ask for a digit, get that digit.

    python -m examples.cgan_mnist                       # the default run: minutes on 2 cores
    python -m examples.cgan_mnist --epochs 20 --ngf 64 --ndf 64 --out runs/cgan_long
    python -m examples.cgan_mnist --resume              # continue the run in --out
    python -m examples.cgan_mnist --iters 3 --ngf 4 --ndf 4 --out /tmp/smoke

The models are :mod:`minigan.gan.conditional`: the 28x28 DCGAN with the label joined to G's
noise (one-hot) and to D's image (a learned 28x28 map per class), and D's logit given a learned
per-class projection of its features (a projection discriminator), trained as the DCGAN example
is (Adam lr 2e-4, betas (0.5, 0.999), batch 64, non-saturating generator loss), each fake drawn
for the label of a real digit of the batch. The run folder (--out) receives, as training goes:

    samples_epoch001.png ...   a 10x10 grid at the end of every epoch: row k is digit k, and
                               column j uses the same noise in every row (one "style" per column)
    checkpoint.npz             every epoch (or --checkpoint-every iterations) and at the end
    metrics.jsonl              a record per checkpoint: mean losses, D(x), D(G(z)), images/s and
                               label accuracy (20 samples per digit, through the MNIST classifier)
    samples_final.png, losses.png, and the final record: label accuracy (200 samples per digit),
    FID and classifier score

--resume continues a run exactly (CPU), as in examples/dcgan_mnist.py; a NaN or infinite loss
stops training before any update is made with it and keeps the last good checkpoint.
"""
import argparse
import sys

import numpy as np

import minigan as mg
from minigan import backend, io, optim
from minigan.data import Batches, load_bundled, load_mnist, to_unit_range
from minigan.gan.conditional import (conditional_train_step, generate_conditional,
                                     label_accuracy, make_conditional_dcgan)
from minigan.gan.rebuild import generator_record
from minigan.gan.train import sample_noise

from ._common import TrainingRun, add_common_args, check_args

# Iterations of the default run (36 epochs of the bundled digits), chosen from measured label
# accuracy with ngf = ndf = 32: over 90% from about iteration 1,400 on (20 samples per digit),
# 95% at the end (200 per digit; FID 34, classifier score 9.0). An iteration took 0.16-0.19 s on
# 2 CPU cores (measured with other jobs running), so about 7-8 minutes in all when nothing else
# runs; with the machine shared by 4-12 busy processes the default run took 31 minutes.
DEFAULT_ITERS = 2500
STAT_NAMES = ("loss_d", "loss_g", "d_real", "d_fake")
DIGITS = 10


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_common_args(parser, iters=DEFAULT_ITERS, out="runs/cgan_mnist", width=32)
    args = parser.parse_args(argv)
    check_args(args)
    return args


def load_labelled_images(args):
    """Training images float32 (N, 1, 28, 28) in [-1, 1], labels int64 (N,), a description."""
    if args.bundled:
        if args.dataset != "mnist":
            sys.exit(f"--bundled is MNIST digits; it cannot be combined with --dataset "
                     f"{args.dataset}")
        images, labels = load_bundled("train")
        where = "bundled 5,000-digit MNIST subset"
    else:
        split = load_mnist("train", dataset=args.dataset, data_dir=args.data_dir)
        images, labels = split
        where = f"{args.dataset} ({split.source['source']})"
    if labels.min() < 0 or labels.max() >= DIGITS:
        sys.exit(f"the training labels must be 0..{DIGITS - 1}, found "
                 f"{labels.min()}..{labels.max()}")
    return (to_unit_range(images), labels.astype(np.int64),
            f"{len(images)} labelled training images from {where}")


def grid_inputs(nz, seed):
    """Noise (100, nz) and labels (100,) of the 10x10 grid: row k asks for digit k, and column j
    uses the same noise z_j in every row. Drawn from their own generator, so the training noise
    stream is untouched (and a resumed run draws the very same grid)."""
    z = np.random.default_rng([seed, 1]).standard_normal((DIGITS, nz)).astype(np.float32)
    return np.tile(z, (DIGITS, 1)), np.repeat(np.arange(DIGITS), DIGITS)


def save_grid(G, z, labels, path, device):
    images = generate_conditional(G, backend.to_device(z, device), labels)
    return io.save_image_grid(backend.as_numpy(images), path, nrow=DIGITS, scale=2)


def load_metrics_classifier():
    """The shipped MNIST classifier, or None (with a note) when it cannot be loaded."""
    try:
        from minigan import metrics
        return metrics.load_classifier()
    except (ImportError, OSError, ValueError) as e:
        print(f"note: the MNIST classifier is not available ({e}); no label accuracy or FID")
        return None


def final_metrics(G, args, device, classifier, per_class=200):
    """Label accuracy of ``per_class`` samples per digit, and FID / classifier score / class shares
    of as many samples again (200 per digit, fresh noise) against real held-out digits."""
    from minigan import metrics
    scored = label_accuracy(G, classifier, per_class, seed=args.seed)
    print(f"label accuracy       {scored.accuracy:.3f}  (per digit: " +
          " ".join(f"{k}:{a:.2f}" for k, a in enumerate(scored.per_class)) + ")")
    z = np.random.default_rng([args.seed, 3]).standard_normal((DIGITS * per_class, args.nz))
    labels = np.repeat(np.arange(DIGITS), per_class)
    samples = generate_conditional(G, backend.to_device(z.astype(np.float32), device), labels)
    result = metrics.evaluate_images(backend.as_numpy(samples), classifier=classifier)
    print(metrics.format_metrics(result))
    return {"label_accuracy": scored.accuracy, "label_accuracy_per_digit": scored.per_class,
            **result}


def main(argv=None):
    args = parse_args(argv)
    mg.manual_seed(args.seed)
    device = args.device

    images, labels, described = load_labelled_images(args)
    loader = Batches(backend.to_device(images, device), backend.to_device(labels, device),
                     batch_size=args.batch_size, seed=args.seed)
    G, D = make_conditional_dcgan(args.nz, args.ngf, args.ndf)
    G.to(device)
    D.to(device)
    opt_g = optim.Adam(G.parameters(), lr=args.lr, betas=(0.5, 0.999))
    opt_d = optim.Adam(D.parameters(), lr=args.lr, betas=(0.5, 0.999))
    classifier = None if args.no_metrics or args.dataset != "mnist" else load_metrics_classifier()
    # settings a resumed run must share with the checkpoint to continue it exactly
    config = {"dataset": args.dataset, "images": len(images), "batch_size": args.batch_size,
              "lr": args.lr, "seed": args.seed, "nz": args.nz, "ngf": args.ngf, "ndf": args.ndf}
    run = TrainingRun(args, {"G": G, "D": D}, {"G": opt_g, "D": opt_d}, loader, config,
                      STAT_NAMES, per_epoch=len(loader), images_per_iteration=args.batch_size,
                      generator=generator_record(G, {"nz": args.nz, "ngf": args.ngf},
                                                 labels=DIGITS))
    print(f"{described}; {len(loader)} batches of {args.batch_size} per epoch; "
          f"training to iteration {run.total} on {device}; writing to {run.files.folder}")

    z_grid, y_grid = grid_inputs(args.nz, args.seed)
    batches = loader.forever()

    def one_iteration(step):
        real, y = next(batches)
        z = sample_noise(args.batch_size, args.nz, device)
        return conditional_train_step(G, D, opt_g, opt_d, mg.Tensor(real), y, z, step=step)

    def shown(stats):
        return {"D": stats.loss_d, "G": stats.loss_g, "D(x)": stats.d_real, "D(G(z))": stats.d_fake}

    def on_checkpoint(record, progress):
        if classifier is not None:   # cheap (200 samples) and outside the training streams
            record["label_accuracy"] = label_accuracy(G, classifier, 20, seed=args.seed).accuracy
            progress.write(f"iteration {run.step}: label accuracy {record['label_accuracy']:.3f}")

    if not run.train(one_iteration, shown, lambda path: save_grid(G, z_grid, y_grid, path, device),
                     on_checkpoint):
        return 1
    save_grid(G, z_grid, y_grid, run.files.samples("final"), device)
    if run.history["loss_d"]:
        io.plot_curves({"D loss": run.history["loss_d"], "G loss": run.history["loss_g"]},
                       run.files.losses, title="conditional DCGAN on MNIST", xlabel="iteration",
                       ylabel="loss")
    run.finish({} if classifier is None else final_metrics(G, args, device, classifier))
    return 0


if __name__ == "__main__":
    sys.exit(main())
