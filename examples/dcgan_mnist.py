"""Train a DCGAN on MNIST digits with minigan, on the CPU (or a GPU with --device cuda).

    python -m examples.dcgan_mnist                      # the default run: a few minutes on 2 cores
    python -m examples.dcgan_mnist --epochs 20 --out runs/long
    python -m examples.dcgan_mnist --resume             # continue the run in --out
    python -m examples.dcgan_mnist --iters 3 --ngf 8 --ndf 8 --out /tmp/smoke

The models are :mod:`minigan.gan.models` (28x28 DCGAN), trained with Adam (lr 2e-4, betas
(0.5, 0.999)), batch 64, the discriminator's binary cross-entropy and the non-saturating
generator loss; one iteration is :func:`minigan.gan.train.train_step`, Algorithm 1 of the GAN
paper. The run folder (--out) receives, as training goes:

    samples_epoch001.png ...   G(z) for one fixed noise batch at the end of every epoch
    checkpoint.npz             every epoch (or --checkpoint-every iterations) and at the end
    metrics.jsonl              a record per checkpoint: mean losses, D(x), D(G(z)), images/s
    samples_final.png, losses.png, interpolation.png, and the final metrics record

A run stopped at any point and continued with --resume ends with exactly the parameters of an
uninterrupted run with the same flags (on the CPU): the checkpoint holds the models, the Adam
moments, the step, the noise generator's state and the data loader's shuffle state and position.
A NaN or infinite loss stops training before any update is made with it, and leaves the last
good checkpoint in place.
"""
import argparse
import sys
import time

import numpy as np

import minigan as mg
from minigan import backend, io, optim
from minigan.data import Batches
from minigan.gan.models import make_dcgan
from minigan.gan.train import NonFiniteLossError, generate, sample_noise, train_step

from ._common import (Progress, RunDir, add_common_args, check_args, diverged_message,
                      load_training_images, resume_run, save_run, total_iterations)

# Iterations of the default run (29 epochs of the bundled 4,500 digits), from measured speed: an
# iteration at batch 64 costs about 0.26 s of CPU time single-threaded here (PyTorch: 0.22 s), so
# 2000 iterations take about 4-5 minutes on 2 idle cores (about 9 on a single one). Digits become
# recognisable after about 1,000-1,400 iterations; the rest is margin and sharpening.
DEFAULT_ITERS = 2000
STAT_NAMES = ("loss_d", "loss_g", "d_real", "d_fake")


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_common_args(parser, iters=DEFAULT_ITERS, out="runs/dcgan_mnist")
    parser.add_argument("--nz", type=int, default=100, help="noise dimension")
    parser.add_argument("--ngf", type=int, default=64,
                        help="generator width: its layers have 4*ngf and 2*ngf channels")
    parser.add_argument("--ndf", type=int, default=64,
                        help="discriminator width: its layers have ndf and 2*ndf channels")
    parser.add_argument("--checkpoint-every", type=int, default=0,
                        help="iterations between checkpoints (default: one epoch)")
    parser.add_argument("--samples", type=int, default=64, help="images in each sample grid")
    parser.add_argument("--no-metrics", action="store_true",
                        help="skip the final FID / classifier-score metrics")
    args = parser.parse_args(argv)
    check_args(args)
    for name in ("nz", "ngf", "ndf", "samples"):
        if getattr(args, name) < 1:
            sys.exit(f"--{name} must be >= 1, got {getattr(args, name)}")
    return args


def fixed_noise(n, nz, seed):
    """The noise behind every sample grid: its own generator, so drawing it does not move the
    training noise stream (and a resumed run draws the very same batch)."""
    return np.random.default_rng([seed, 1]).standard_normal((n, nz)).astype(np.float32)


def slerp(z1, z2, t):
    """Spherical interpolation from z1 (t = 0) to z2 (t = 1), along the great circle: unlike a
    straight line it keeps the norm that Gaussian noise in many dimensions concentrates at."""
    cos = np.dot(z1, z2) / (np.linalg.norm(z1) * np.linalg.norm(z2))
    omega = np.arccos(np.clip(cos, -1.0, 1.0))
    if omega < 1e-6:
        return (1 - t) * z1 + t * z2
    return (np.sin((1 - t) * omega) * z1 + np.sin(t * omega) * z2) / np.sin(omega)


INTERPOLATION_STEPS = 10   # images per row of interpolation.png


def interpolation_noise(nz, seed, rows=8, cols=INTERPOLATION_STEPS):
    """(rows * cols, nz): row r walks in ``cols`` steps from one noise vector z1_r to another z2_r."""
    rng = np.random.default_rng([seed, 2])
    ends = rng.standard_normal((rows, 2, nz))
    ts = np.linspace(0.0, 1.0, cols)
    return np.stack([slerp(z1, z2, t) for z1, z2 in ends for t in ts]).astype(np.float32)


def save_samples(G, z, path, device, nrow=8):
    images = generate(G, mg.Tensor(backend.to_device(z, device)))
    return io.save_image_grid(backend.as_numpy(images), path, nrow=nrow, scale=2)


def final_metrics(G, args, device, n=2000):
    """FID against real held-out digits, classifier score and class shares of n samples, when
    ``minigan.metrics`` is available (and the data are digits); otherwise a note and {}."""
    if args.dataset != "mnist":
        print(f"note: the metrics look through an MNIST digit classifier; skipped for {args.dataset}")
        return {}
    try:
        from minigan import metrics
    except ImportError as e:
        print(f"note: minigan.metrics is not available ({e}); no FID or classifier score")
        return {}
    z = np.random.default_rng([args.seed, 3]).standard_normal((n, args.nz)).astype(np.float32)
    samples = backend.as_numpy(generate(G, mg.Tensor(backend.to_device(z, device))))
    try:
        result = metrics.evaluate_images(samples)
    except (OSError, ValueError) as e:   # e.g. the classifier's weights file is missing
        print(f"note: metrics could not be computed: {e}")
        return {}
    print(metrics.format_metrics(result))
    return result


def main(argv=None):
    args = parse_args(argv)
    run = RunDir(args.out)
    mg.manual_seed(args.seed)
    device = args.device

    images, described = load_training_images(args)
    loader = Batches(backend.to_device(images, device), batch_size=args.batch_size,
                     seed=args.seed)
    G, D = make_dcgan(args.nz, args.ngf, args.ndf)
    G.to(device)
    D.to(device)
    opt_g = optim.Adam(G.parameters(), lr=args.lr, betas=(0.5, 0.999))
    opt_d = optim.Adam(D.parameters(), lr=args.lr, betas=(0.5, 0.999))
    models, optimizers = {"G": G, "D": D}, {"G": opt_g, "D": opt_d}

    total = total_iterations(args, len(loader))
    every = args.checkpoint_every or len(loader)
    # settings a resumed run must share with the checkpoint to continue it exactly
    config = {"dataset": args.dataset, "images": len(images), "batch_size": args.batch_size,
              "lr": args.lr, "seed": args.seed, "nz": args.nz, "ngf": args.ngf, "ndf": args.ndf}
    history = {name: [] for name in STAT_NAMES}
    step = 0
    if args.resume:
        step, extra = resume_run(run.checkpoint, models, optimizers, loader, config)
        history = {name: [float(v) for v in extra["history"][name]] for name in STAT_NAMES}
        print(f"resumed {run.checkpoint} at iteration {step}")
    print(f"{described}; {len(loader)} batches of {args.batch_size} per epoch; "
          f"training to iteration {total} on {device}; writing to {run.folder}")

    z_grid = fixed_noise(args.samples, args.nz, args.seed)
    batches = loader.forever()
    progress = Progress(total, step, args.batch_size, enabled=not args.no_progress)
    started, last_saved = time.perf_counter(), step

    def checkpoint():
        extra = {"config": config,
                 "history": {name: np.asarray(v, np.float64) for name, v in history.items()}}
        save_run(run.checkpoint, models, optimizers, step, loader, extra)
        means = {name: float(np.mean(history[name][last_saved:step])) for name in STAT_NAMES}
        io.append_jsonl(run.metrics, {"step": step, "epoch": step / len(loader), **means,
                                      "images_per_s": progress.images_per_second(),
                                      "elapsed_s": time.perf_counter() - started})

    while step < total:
        real = mg.Tensor(next(batches))
        z = sample_noise(args.batch_size, args.nz, device)
        try:
            stats = train_step(G, D, opt_g, opt_d, real, z, step=step + 1)
        except NonFiniteLossError as e:
            progress.close()
            print(diverged_message(e, run.checkpoint), file=sys.stderr)
            return 1
        step += 1
        for name in STAT_NAMES:
            history[name].append(getattr(stats, name))
        progress.update({"D": stats.loss_d, "G": stats.loss_g,
                         "D(x)": stats.d_real, "D(G(z))": stats.d_fake})
        if step % len(loader) == 0:
            save_samples(G, z_grid, run.samples(f"epoch{step // len(loader):03d}"), device)
        if step % every == 0 or step == total:
            checkpoint()
            last_saved = step
    progress.close()
    train_seconds = time.perf_counter() - started

    save_samples(G, z_grid, run.samples("final"), device)
    save_samples(G, interpolation_noise(args.nz, args.seed), run.interpolation, device,
                 nrow=INTERPOLATION_STEPS)
    if history["loss_d"]:
        io.plot_curves({"D loss": history["loss_d"], "G loss": history["loss_g"]}, run.losses,
                       title="DCGAN on MNIST", xlabel="iteration", ylabel="loss")
    record = {"final": True, "step": step, "train_seconds": train_seconds}
    if not args.no_metrics:
        record.update(final_metrics(G, args, device))
    io.append_jsonl(run.metrics, record)
    print(f"trained to iteration {step}; this session {train_seconds:.1f} s of training")
    print(f"wrote {run.samples('final')}, {run.losses}, {run.interpolation}, {run.metrics}, "
          f"{run.checkpoint}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
