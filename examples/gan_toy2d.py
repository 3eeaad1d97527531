"""MLP GANs on PacGAN's 2-D mixtures (8-Gaussian ring, 25-Gaussian grid), with the "GAN Lab" view.

    python -m examples.gan_toy2d [--data ring|grid] [--loss gan|wgan|wgan-gp|hinge] [--pack M]
                                 [--unroll K] [--minibatch-disc B] [--feature-matching]
                                 [--spectral-norm] [--r1 GAMMA]
                                 [--seed S] [--steps N] [--out FOLDER] [--device cpu|cuda] ...

Without further flags a run uses :data:`minigan.gan.toy2d.GOAL_CONFIGS` for its mixture (the
configuration the benchmark reports); every flag given replaces that field. The run folder
(default ``runs/toy2d_<data>_<loss>_pack<m>_seed<s>``) receives

    samples.npy       the 2,500 generated points (float64, (2500, 2)) the metrics were computed on
    metrics.json      captured modes, high-quality share, reverse KL, mode counts, the full
                      configuration, training wall and CPU seconds
    gan_lab.png       real (green) and generated (purple) points over the discriminator's
                      decision surface D(x) (pale green = judged real), at several steps side by
                      side; gan_lab_<step>.png holds each panel on its own
    curves.png        discriminator and generator losses, captured-mode share and high-quality
                      share over training (with --log-every > 0, the default)

``--device cuda`` trains the two networks on a GPU; the data and noise are still drawn on the
CPU from the seed and moved there, and the points and surfaces written come back as NumPy.
"""
import argparse
import dataclasses
import json
import os
import sys

import numpy as np
from PIL import Image

from minigan import io
from minigan.data.toy import sample_mixture
from minigan.gan.toy2d import GOAL_CONFIGS, LOSSES, MIXTURES, Toy2DConfig, mixture, train_toy2d

from ._common import add_device_arg, check_device, seed_arg


def _sizes(text):
    """'400,400,400' -> (400, 400, 400)."""
    try:
        sizes = tuple(int(s) for s in text.split(",") if s.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated layer widths, got {text!r}")
    if not sizes or min(sizes) < 1:
        raise argparse.ArgumentTypeError(f"layer widths must be >= 1, got {text!r}")
    return sizes


# flag -> Toy2DConfig field, for the flags that override the mixture's goal configuration
_FIELDS = {"loss": "loss", "pack": "pack", "steps": "steps", "batch": "batch", "z_dim": "z_dim",
           "g_hidden": "g_hidden", "d_hidden": "d_hidden", "lr_g": "lr_g", "lr_d": "lr_d",
           "d_steps": "d_steps", "decay_start": "decay_start", "lr_final": "lr_final",
           "snapshots": "snapshots", "log_every": "log_every", "unroll": "unroll",
           "minibatch_disc": "minibatch_disc", "feature_matching": "feature_matching",
           "spectral_norm": "spectral_norm", "r1": "r1_gamma"}


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", choices=sorted(MIXTURES), default="ring")
    p.add_argument("--loss", choices=LOSSES, default=None,
                   help="gan: minimax D, non-saturating G; wgan: weight clipping; wgan-gp: "
                        "gradient penalty; hinge: the hinge loss of SN-GAN")
    p.add_argument("--pack", type=int, default=None, help="PacGAN's packing degree m (1 = none)")
    p.add_argument("--seed", type=seed_arg, default=0)
    p.add_argument("--steps", type=int, default=None, help="generator updates")
    p.add_argument("--batch", type=int, default=None,
                   help="discriminator inputs per update (each holds --pack samples)")
    p.add_argument("--z-dim", type=int, default=None)
    p.add_argument("--g-hidden", type=_sizes, default=None, help="e.g. 256,256,256")
    p.add_argument("--d-hidden", type=_sizes, default=None)
    p.add_argument("--lr-g", type=float, default=None)
    p.add_argument("--lr-d", type=float, default=None)
    p.add_argument("--d-steps", type=int, default=None, help="D (critic) updates per G update")
    p.add_argument("--decay-start", type=float, default=None,
                   help="fraction of the steps after which the learning rates fall linearly")
    p.add_argument("--lr-final", type=float, default=None,
                   help="learning-rate factor reached at the last step")
    p.add_argument("--unroll", type=int, default=None,
                   help="unrolled GAN (Metz et al.): G's loss after K more D updates, "
                        "differentiated through them (0 = plain)")
    p.add_argument("--minibatch-disc", type=int, default=None, metavar="B",
                   help="minibatch discrimination (Salimans et al.) with B kernels before D's "
                        "last layer")
    p.add_argument("--feature-matching", action="store_true", default=None,
                   help="G matches the mean of D's last hidden layer (Salimans et al.)")
    p.add_argument("--spectral-norm", action="store_true", default=None,
                   help="spectral normalization of every Linear in D (Miyato et al.); pair with "
                        "--loss hinge")
    p.add_argument("--r1", type=float, default=None, metavar="GAMMA",
                   help="R1 penalty gamma / 2 E|grad_x D(x)|^2 on real data (Mescheder et al.)")
    p.add_argument("--snapshots", type=int, default=4, help="GAN-Lab panels (0 for none)")
    p.add_argument("--log-every", type=int, default=None,
                   help="steps between history records (default: 50 records per run)")
    p.add_argument("--out", default=None, help="run folder")
    p.add_argument("--no-progress", action="store_true")
    add_device_arg(p)
    args = p.parse_args(argv)
    check_device(args.device)   # before any folder is made or step is taken
    return args


def config_from_args(args):
    """The mixture's goal configuration with every given flag written over it."""
    config = dataclasses.replace(GOAL_CONFIGS[args.data])
    changes = {field: getattr(args, flag) for flag, field in _FIELDS.items()
               if getattr(args, flag) is not None}
    if "loss" in changes and changes["loss"] != config.loss:
        # the goal's learning rates and betas belong to its loss: take the new loss's defaults
        config = dataclasses.replace(config, lr_g=None, lr_d=None, betas=None, d_steps=None)
    config = dataclasses.replace(config, **changes)
    if args.log_every is None:
        config = dataclasses.replace(config, log_every=max(1, config.steps // 50))
    return config.resolved()


def save_gan_lab(folder, run, n_real=512):
    """One scatter_png per snapshot and all of them side by side in gan_lab.png; returns paths."""
    modes, std, extent, _ = mixture(run.config.data)
    real = sample_mixture(modes, std, n_real, np.random.default_rng([run.seed, 7]))
    wgan = run.config.loss != "gan"
    paths = []
    for snap in run.snapshots:
        path = os.path.join(folder, f"gan_lab_{snap['step']:06d}.png")
        verdict = "critic score" if wgan else "D(x)"
        io.scatter_png(path, real=real, fake=snap["fake"], heat=snap["heat"], extent=extent,
                       heat_range=None if wgan else (0.0, 1.0), size=360,
                       title=f"step {snap['step']}: {verdict} under the points")
        paths.append(path)
    if paths:
        panels = [Image.open(p).convert("RGB") for p in paths]
        strip = Image.new("RGB", (sum(p.width for p in panels), max(p.height for p in panels)),
                          (255, 255, 255))
        x = 0
        for panel in panels:
            strip.paste(panel, (x, 0))
            x += panel.width
        combined = os.path.join(folder, "gan_lab.png")
        io.atomic_write(combined, lambda f: strip.save(f, format="PNG"))
        paths.insert(0, combined)
    return paths


def save_curves(folder, run):
    """curves.png: losses and the two quality shares against the step; None without history."""
    if not run.history:
        return None
    steps = [h["step"] for h in run.history]
    curves = {"D loss": (steps, [h["d_loss"] for h in run.history]),
              "G loss": (steps, [h["g_loss"] for h in run.history]),
              "modes captured / K": (steps, [h["modes"] / run.metrics["n_modes"] for h in run.history]),
              "high-quality share": (steps, [h["high_quality"] for h in run.history])}
    path = os.path.join(folder, "curves.png")
    return io.plot_curves(curves, path, title=f"{run.config.data}, {run.config.loss}, "
                                               f"pack {run.config.pack}")


def metrics_record(run):
    """A JSON-able dict: metrics, configuration, seed and timings (inf reverse KL as a string)."""
    metrics = {k: (v.tolist() if isinstance(v, np.ndarray) else v) for k, v in run.metrics.items()}
    if not np.isfinite(metrics["reverse_kl"]):
        metrics["reverse_kl"] = str(metrics["reverse_kl"])
    return {"metrics": metrics, "config": dataclasses.asdict(run.config), "seed": run.seed,
            "train_seconds": run.seconds, "train_cpu_seconds": run.cpu_seconds}


def main(argv=None):
    args = parse_args(argv)
    try:
        config = config_from_args(args)
    except ValueError as e:
        sys.exit(f"gan_toy2d: {e}")
    folder = args.out or os.path.join(
        "runs", f"toy2d_{config.data}_{config.loss}_pack{config.pack}_seed{args.seed}")
    os.makedirs(folder, exist_ok=True)
    print(f"{config.data}: {config.loss}, pack {config.pack}, {config.steps} steps of "
          f"{config.batch} x {config.pack} samples, G {config.g_hidden}, D {config.d_hidden}, "
          f"seed {args.seed} -> {folder}", flush=True)

    bar = None
    if not args.no_progress:
        try:
            from tqdm import tqdm
            bar = tqdm(total=config.steps, unit="step", dynamic_ncols=True,
                       mininterval=0.5 if sys.stderr.isatty() else 10.0)
        except ImportError:
            pass

    def progress(step, stats):
        bar.set_postfix({"D": f"{stats['d_loss']:.3f}", "G": f"{stats['g_loss']:.3f}"},
                        refresh=False)
        bar.update(1)

    run = train_toy2d(config, seed=args.seed, progress=progress if bar is not None else None,
                      device=args.device)
    if bar is not None:
        bar.close()

    np.save(os.path.join(folder, "samples.npy"), run.samples)
    record = metrics_record(run)
    io.atomic_write(os.path.join(folder, "metrics.json"),
                    lambda f: f.write(json.dumps(record, indent=1).encode()))
    written = ["samples.npy", "metrics.json"]
    written += [os.path.basename(p) for p in save_gan_lab(folder, run)]
    if save_curves(folder, run):
        written.append("curves.png")
    m = run.metrics
    print(f"modes {m['modes']}/{m['n_modes']}  high quality {100 * m['high_quality']:.1f}%  "
          f"reverse KL {m['reverse_kl']:.4f}  ({run.seconds:.0f} s wall, "
          f"{run.cpu_seconds:.0f} s CPU)")
    print(f"wrote {', '.join(written)} in {folder}")
    return run


if __name__ == "__main__":
    main()
