"""What the image-GAN examples share: common command-line flags, the run folder, checkpoints that
resume a run exactly, the NaN guard's message, and a progress bar.

A run folder holds (names in :class:`RunDir`):

    checkpoint.npz     models, optimizers, step, RNG and data-loader state (no pickle; written to
                       a temporary file and renamed, so a killed run leaves the previous one)
    metrics.jsonl      one JSON record per epoch, and one for the final metrics
    samples_*.png      image grids of a fixed noise batch
    losses.png         loss curves, interpolation.png latent interpolations
"""
import argparse
import os
import sys
import time

from minigan import backend, io
from minigan.data import load_bundled, load_mnist, to_unit_range
from minigan.gan.train import restore_run_state, run_state


def add_common_args(parser, iters, batch_size=64, lr=2e-4, out="runs/example"):
    """The flags every image-GAN example takes, with this example's defaults. The default length
    is ``iters`` iterations, not epochs, so a default run takes the same time whether it finds
    the bundled 4,500 training digits or full MNIST's 60,000."""
    parser.add_argument("--epochs", type=int, default=None,
                        help=f"passes over the training set (default: {iters} iterations)")
    parser.add_argument("--iters", type=int, default=None,
                        help=f"total training iterations; overrides --epochs (default {iters})")
    parser.set_defaults(default_iters=iters)
    parser.add_argument("--batch-size", type=int, default=batch_size)
    parser.add_argument("--lr", type=float, default=lr, help="Adam's learning rate, G and D")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--out", default=out, help="run folder for images, metrics, checkpoint")
    parser.add_argument("--resume", action="store_true",
                        help="continue from the run folder's checkpoint (a longer --iters or "
                             "--epochs extends a finished run)")
    parser.add_argument("--dataset", choices=("mnist", "fashion-mnist"), default="mnist")
    parser.add_argument("--data-dir", default=None,
                        help="a folder holding the IDX files (default: $MINIGAN_DATA, the cache, "
                             "a download, then the bundled 5,000-digit MNIST subset)")
    parser.add_argument("--bundled", action="store_true",
                        help="train on the bundled 5,000-digit MNIST subset even where full "
                             "MNIST can be found (no download attempt)")
    parser.add_argument("--no-progress", action="store_true", help="plain log lines, no bar")
    return parser


def total_iterations(args, batches_per_epoch):
    """--iters if given, else --epochs times the batches per epoch, else the example's default."""
    if args.iters is not None:
        return args.iters
    if args.epochs is not None:
        return args.epochs * batches_per_epoch
    return args.default_iters


def load_training_images(args):
    """Training images as float32 (N, 1, 28, 28) in [-1, 1], and a one-line description."""
    if args.bundled:
        if args.dataset != "mnist":
            sys.exit("--bundled is MNIST digits; it cannot be combined with --dataset "
                     f"{args.dataset}")
        images, _ = load_bundled("train")
        where = "bundled 5,000-digit MNIST subset"
    else:
        split = load_mnist("train", dataset=args.dataset, data_dir=args.data_dir)
        images, where = split.images, f"{args.dataset} ({split.source['source']})"
    return to_unit_range(images), f"{len(images)} training images from {where}"


def check_args(args):
    """Exit with a message on flags that cannot work (before any data is loaded)."""
    for name in ("epochs", "batch_size"):
        if getattr(args, name) is not None and getattr(args, name) < 1:
            sys.exit(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
    if args.iters is not None and args.iters < 1:
        sys.exit(f"--iters must be >= 1, got {args.iters}")
    if not args.lr > 0:
        sys.exit(f"--lr must be > 0, got {args.lr}")
    if args.device == "cuda" and not backend.cupy_available():
        sys.exit("--device cuda needs CuPy and a CUDA GPU (pip install 'minigan[gpu]'); "
                 "none was found: run with --device cpu")


class RunDir:
    """Paths inside a run folder (created on construction)."""

    def __init__(self, folder):
        self.folder = folder
        os.makedirs(folder, exist_ok=True)
        self.checkpoint = self.path("checkpoint.npz")
        self.metrics = self.path("metrics.jsonl")
        self.losses = self.path("losses.png")
        self.interpolation = self.path("interpolation.png")

    def path(self, name):
        return os.path.join(self.folder, name)

    def samples(self, tag):
        return self.path(f"samples_{tag}.png")


# --- checkpoints --------------------------------------------------------------------------------

def save_run(path, models, optimizers, step, loader, extra):
    """Write the run's state (see :func:`minigan.gan.train.run_state`) atomically to ``path``."""
    return io.save_checkpoint(path, run_state(models, optimizers, step, loader, extra))


def resume_run(path, models, optimizers, loader, config):
    """Load ``path`` into the models, optimizers, loader and RNG; returns (step, extra).

    ``config`` is the dict of settings that must match for an exact continuation (sizes, seed,
    dataset); a checkpoint written with different ones stops the program with both listed."""
    if not os.path.isfile(path):
        sys.exit(f"--resume: no checkpoint at {path} (start without --resume, or pass the "
                 "--out of the run to continue)")
    state = io.load_checkpoint(path)
    saved = (state.get("extra") or {}).get("config", {})
    differ = {k: (saved.get(k), v) for k, v in config.items() if saved.get(k) != v}
    if differ:
        lines = ", ".join(f"{k}: checkpoint {a!r} vs now {b!r}" for k, (a, b) in differ.items())
        sys.exit(f"--resume: {path} was written with other settings ({lines}); "
                 "pass the same flags, or a new --out")
    return restore_run_state(state, models, optimizers, loader)


def diverged_message(error, checkpoint):
    """The NaN guard's message: what happened and what was kept."""
    kept = (f"the last good checkpoint is kept at {checkpoint}" if os.path.isfile(checkpoint)
            else "no checkpoint had been written yet")
    return f"stopped: {error}\n{kept}; nothing was saved from the diverged step."


# --- progress -----------------------------------------------------------------------------------

class Progress:
    """A tqdm bar over iterations showing the latest statistics and images per second; plain
    lines every ``every`` iterations instead when tqdm is missing or the bar is turned off."""

    def __init__(self, total, initial=0, batch_size=1, enabled=True, every=50):
        self.batch_size, self.every = batch_size, every
        self.start, self.done = time.perf_counter(), 0
        self.bar = None
        if enabled:
            try:
                from tqdm import tqdm
                self.bar = tqdm(total=total, initial=initial, unit="it", dynamic_ncols=True,
                                mininterval=0.5 if sys.stderr.isatty() else 10.0)
            except ImportError:
                pass
        self.step, self.total = initial, total

    def images_per_second(self):
        elapsed = time.perf_counter() - self.start
        return self.done * self.batch_size / elapsed if elapsed > 0 else 0.0

    def update(self, stats):
        """stats: a dict of floats shown beside the bar (short names)."""
        self.step += 1
        self.done += 1
        shown = {k: f"{v:.3f}" for k, v in stats.items()}
        shown["img/s"] = f"{self.images_per_second():.0f}"
        if self.bar is not None:
            self.bar.set_postfix(shown, refresh=False)
            self.bar.update(1)
        elif self.step % self.every == 0 or self.step == self.total:
            print(f"[{self.step}/{self.total}] " + " ".join(f"{k} {v}" for k, v in shown.items()),
                  flush=True)

    def write(self, message):
        if self.bar is not None:
            self.bar.write(message)
        else:
            print(message, flush=True)

    def close(self):
        if self.bar is not None:
            self.bar.close()
