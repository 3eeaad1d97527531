"""What the examples share. Every example: the --device flag and its check (:func:`add_device_arg`,
:func:`check_device`). The image-GAN examples also: common command-line flags, the run folder,
checkpoints that resume a run exactly, the training loop around an example's own iteration
(:class:`TrainingRun`: progress bar, per-epoch grids, checkpoints, the NaN guard), sample
pictures and final metrics; data-parallel training over MPI ranks with --distributed
(:func:`add_distributed_args`, :func:`setup_distributed`, :func:`distribute`).

A run folder holds (names in :class:`RunDir`):

    checkpoint.npz     models, optimizers, step, RNG and data-loader state (no pickle; written to
                       a temporary file and renamed, so a killed run leaves the previous one)
    metrics.jsonl      one JSON record per epoch, and one for the final metrics
    samples_*.png      image grids of a fixed noise batch
    losses.png         loss curves, interpolation.png latent interpolations
"""
import argparse
import contextlib
import math
import os
import sys
import time

import numpy as np

import minigan as mg
from minigan import backend, io
from minigan.data import Batches, load_bundled, load_mnist, to_unit_range
from minigan.gan.train import NonFiniteLossError, generate, restore_run_state, run_state


DEVICE_MISSING = ("--device cuda needs CuPy and a CUDA GPU (pip install 'minigan[gpu]'); "
                  "none was found: run with --device cpu")


def add_device_arg(parser, help="where the models train: the CPU, or an NVIDIA GPU through CuPy"):
    """The --device flag every example takes: 'cpu' (the default) or 'cuda'."""
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu", help=help)
    return parser


def check_device(device):
    """Exit with :data:`DEVICE_MISSING` when ``device`` is 'cuda' and CuPy or a GPU is missing:
    called right after parsing, so the run stops before it loads data or writes a file."""
    if device == "cuda" and not backend.cupy_available():
        sys.exit(DEVICE_MISSING)


def seed_arg(text):
    """argparse type of --seed: NumPy's generators take integers in [0, 2**63) only, and a
    refused seed must be reported against the flag, not as a traceback from deep inside."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be an integer, got {text!r}") from None
    if not 0 <= value < 2 ** 63:
        raise argparse.ArgumentTypeError(f"must be >= 0 and < 2**63, got {value}")
    return value


def add_run_args(parser, iters, batch_size=64, lr=2e-4, out="runs/example",
                 lr_help="Adam's learning rate"):
    """The flags of every example that trains an image model with :class:`TrainingRun` (GAN or
    not): length, batch, learning rate, seed, device, run folder, resume, data, progress,
    checkpoint interval, metrics. The default length is ``iters`` iterations, not epochs, so a
    default run takes the same time whether it finds the bundled 4,500 training digits or full
    MNIST's 60,000."""
    parser.add_argument("--epochs", type=int, default=None,
                        help=f"passes over the training set (default: {iters} iterations)")
    parser.add_argument("--iters", type=int, default=None,
                        help=f"total training iterations; overrides --epochs (default {iters})")
    parser.set_defaults(default_iters=iters)
    parser.add_argument("--batch-size", type=int, default=batch_size)
    parser.add_argument("--lr", type=float, default=lr, help=lr_help)
    parser.add_argument("--seed", type=seed_arg, default=0)
    add_device_arg(parser)
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
    parser.add_argument("--checkpoint-every", type=int, default=0,
                        help="iterations between checkpoints (default, or 0: one epoch)")
    parser.add_argument("--no-metrics", action="store_true",
                        help="skip the final metrics (FID, classifier score)")
    return parser


def add_common_args(parser, iters, batch_size=64, lr=2e-4, out="runs/example", width=64,
                    lr_help="Adam's learning rate, G and D"):
    """The flags every image-GAN example takes (:func:`add_run_args` and the noise size and
    widths), with this example's defaults (``width``: ngf and ndf)."""
    add_run_args(parser, iters, batch_size, lr, out, lr_help)
    parser.add_argument("--nz", type=int, default=100, help="noise dimension")
    parser.add_argument("--ngf", type=int, default=width,
                        help="generator width: its layers have 4*ngf and 2*ngf channels")
    parser.add_argument("--ndf", type=int, default=width,
                        help="discriminator (critic) width: its layers have ndf and 2*ndf "
                             "channels")
    return parser


def add_distributed_args(parser):
    """--distributed and --no-sync-bn, for the examples that train data-parallel."""
    parser.add_argument("--distributed", action="store_true",
                        help="data-parallel training over the ranks of mpiexec -n N (pip install "
                             "'minigan[mpi]'): each rank takes --batch-size images, so the global "
                             "batch is N x --batch-size; rank 0 writes --out; --resume needs the "
                             "same N")
    parser.add_argument("--no-sync-bn", action="store_true",
                        help="--distributed: batch norm normalises each rank's batch with its "
                             "own statistics instead of the global batch's (SyncBatchNorm); see "
                             "docs/DISTRIBUTED.md")
    return parser


def setup_distributed(args):
    """None without --distributed; otherwise the communicator of this rank (NCCL on --device
    cuda, MPI on the CPU). Exits with what to install when mpi4py is missing."""
    if not getattr(args, "distributed", False):
        if getattr(args, "no_sync_bn", False):
            sys.exit("--no-sync-bn only applies with --distributed")
        return None
    from minigan import distributed
    if not distributed.mpi_available():
        sys.exit(f"--distributed: {distributed.MPI_MISSING}")
    return distributed.create_communicator("nccl" if args.device == "cuda" else "mpi")


def abort_on_error(comm):
    """A context in which an exception (or sys.exit with a message) on one rank stops every
    rank, instead of leaving them waiting in a collective; nothing without ``comm``."""
    return contextlib.nullcontext() if comm is None else comm.abort_on_error()


def is_main(comm):
    """True on the rank that prints and writes files: rank 0, or the only process."""
    return comm is None or comm.is_main


def rank_seed(seed, rank):
    """The noise seed of ``rank``: its own stream, drawn from (seed, rank), so the ranks' noise
    batches are independent and a run is reproducible from --seed."""
    return int(np.random.SeedSequence([seed, rank]).generate_state(1)[0])


def distribute(models, optimizers, comm, args):
    """Make ``models`` (dict name -> Module) and ``optimizers`` (dict, same names) data-parallel
    over ``comm``: batch norm becomes SyncBatchNorm (unless --no-sync-bn), rank 0's parameters
    are broadcast, and each optimizer averages gradients over the ranks before its step. Also
    reseeds minigan's noise generator per rank. Returns the new (models, optimizers)."""
    from minigan import distributed, nn
    if not args.no_sync_bn:
        models = {name: nn.SyncBatchNorm.convert_sync_batchnorm(m, comm)
                  for name, m in models.items()}
    for m in models.values():
        comm.bcast_data(m)
    optimizers = {name: distributed.DistributedOptimizer(o, comm) for name, o in optimizers.items()}
    mg.manual_seed(rank_seed(args.seed, comm.rank))
    return models, optimizers


def make_loader(images, args, comm, *more):
    """The training batches (of images, and of each array in ``more`` beside them, e.g. labels):
    all of them in one process; with ``comm``, this rank's slice of each global batch of
    comm.size x --batch-size (the same shuffle on every rank)."""
    if comm is None:
        return Batches(images, *more, batch_size=args.batch_size, seed=args.seed)
    from minigan.distributed import ShardedBatches
    return ShardedBatches(images, *more, batch_size=args.batch_size, rank=comm.rank,
                          size=comm.size, seed=args.seed)


def total_iterations(args, batches_per_epoch):
    """--iters if given, else --epochs times the batches per epoch, else the example's default."""
    if args.iters is not None:
        return args.iters
    if args.epochs is not None:
        return args.epochs * batches_per_epoch
    return args.default_iters


def load_split(args, split="train"):
    """The --bundled / --dataset / --data-dir images of ``split`` ("train" or "test") as uint8
    (N, 28, 28), and a one-line description of where they came from."""
    if args.bundled:
        if args.dataset != "mnist":
            sys.exit("--bundled is MNIST digits; it cannot be combined with --dataset "
                     f"{args.dataset}")
        images, _ = load_bundled(split)
        return images, f"{len(images)} {split} images from the bundled 5,000-digit MNIST subset"
    found = load_mnist(split, dataset=args.dataset, data_dir=args.data_dir)
    return found.images, f"{len(found.images)} {split} images from {args.dataset} " \
                         f"({found.source['source']})"


def load_training_images(args):
    """Training images as float32 (N, 1, 28, 28) in [-1, 1], and a one-line description."""
    images, described = load_split(args, "train")
    return to_unit_range(images), described.replace("train images", "training images")


def check_args(args):
    """Exit with a message on flags that cannot work (before any data is loaded)."""
    for name in ("epochs", "batch_size"):
        if getattr(args, name) is not None and getattr(args, name) < 1:
            sys.exit(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
    for name in ("iters", "nz", "ngf", "ndf"):
        if getattr(args, name, None) is not None and getattr(args, name) < 1:
            sys.exit(f"--{name} must be >= 1, got {getattr(args, name)}")
    if args.checkpoint_every < 0:
        sys.exit(f"--checkpoint-every must be >= 0, got {args.checkpoint_every}")
    if not args.lr > 0 or not math.isfinite(args.lr):
        sys.exit(f"--lr must be a finite number > 0, got {args.lr}")
    if getattr(args, "data_dir", None) is not None and not os.path.isdir(
            os.path.expanduser(args.data_dir)):
        sys.exit(f"--data-dir {args.data_dir}: no such folder (leave --data-dir out to use "
                 "$MINIGAN_DATA, the cache, a download or the bundled digits)")
    check_device(args.device)


class RunDir:
    """Paths inside a run folder (created on construction, unless ``create`` is False: the
    ranks other than rank 0 of a distributed run write nothing)."""

    def __init__(self, folder, create=True):
        self.folder = folder
        if create:
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
    if saved.get("ranks", 1) != config.get("ranks", 1):   # a run of one process saves no "ranks"
        differ["ranks"] = (saved.get("ranks", 1), config.get("ranks", 1))
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
        # every=None: count only, never print (the ranks of a distributed run other than 0)
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
        elif self.every and (self.step % self.every == 0 or self.step == self.total):
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


# --- the training loop --------------------------------------------------------------------------

class TrainingRun:
    """The loop every image-GAN example runs around its own one-iteration function.

    Construction resumes from the run folder's checkpoint when ``args.resume`` (after checking
    ``config`` against it). :meth:`train` then runs to the requested iteration: after each one it
    keeps the statistics named in ``stat_names``, updates the progress bar, writes a sample grid
    at every epoch's end and a checkpoint (with a metrics record of the mean statistics since the
    last one) every ``--checkpoint-every`` iterations, one epoch by default, and at the end.
    ``per_epoch``: iterations per epoch; ``images_per_iteration``: real images one iteration
    uses (for images/s), on one rank. ``static``: JSON-able facts stored as they are in every
    checkpoint's ``extra`` (e.g. what a sampler needs to rebuild a model); ``state``: objects
    with get_state() / set_state(s) saved and restored with the run (e.g. an image pool);
    ``generator``: the record that rebuilds the run's generator from the checkpoint alone
    (:func:`minigan.gan.rebuild.generator_record`; examples/sample.py reads it), stored as ``extra["generator"]``.

    With ``comm`` (a distributed run, see :func:`distribute`): the statistics are averaged over
    the ranks every iteration; rank 0 alone prints, draws and writes; a checkpoint also holds
    every rank's noise generator state, and a resume loads it on rank 0 and broadcasts it; a
    diverged loss on any rank stops all of them.
    """

    def __init__(self, args, models, optimizers, loader, config, stat_names, per_epoch,
                 images_per_iteration, comm=None, state=None, static=None, generator=None):
        self.args, self.models, self.optimizers, self.loader = args, models, optimizers, loader
        self.comm = comm
        self.is_main = is_main(comm)
        # state: name -> object with get_state() / set_state(s) (e.g. an image pool), saved in
        # every checkpoint and restored on resume; static: JSON-able facts stored as they are
        # (e.g. what rebuilds each network)
        self.state, self.static = dict(state or {}), dict(static or {})
        if generator is not None:
            self.static["generator"] = generator
        self.config = config if comm is None else {**config, "ranks": comm.size}
        self.per_epoch = per_epoch
        self.images_per_iteration = images_per_iteration * (1 if comm is None else comm.size)
        self.files = RunDir(args.out, create=self.is_main)
        self.total = total_iterations(args, per_epoch)
        self.every = args.checkpoint_every or per_epoch
        self.history = {name: [] for name in stat_names}
        self.step, self.train_seconds = 0, 0.0
        if args.resume:
            if comm is None:
                self.step, extra = resume_run(self.files.checkpoint, models, optimizers, loader,
                                              self.config)
            else:
                self.step, extra = self._resume_distributed()
            if self.total < self.step:
                sys.exit(f"--resume: the checkpoint {self.files.checkpoint} is at iteration "
                         f"{self.step}, past the {self.total} iterations asked for; pass a "
                         f"larger --iters or --epochs to continue, or a new --out")
            self.history = {name: [float(v) for v in extra["history"][name]]
                            for name in stat_names}
            for name, obj in self.state.items():
                obj.set_state(extra["state"][name])
            if self.is_main:
                print(f"resumed {self.files.checkpoint} at iteration {self.step}")

    def _resume_distributed(self):
        """Rank 0 reads the checkpoint (checking the settings and the number of ranks) into its
        models, optimizers and loader; every rank then takes rank 0's parameters, optimizer
        state and loader position, and its own noise generator state."""
        comm = self.comm
        loaded = None
        if comm.is_main:
            step, extra = resume_run(self.files.checkpoint, self.models, self.optimizers,
                                     self.loader, self.config)
            loaded = (step, extra, self.loader.get_state())
        step, extra, loader_state = comm.bcast_obj(loaded)
        for model in self.models.values():
            comm.bcast_data(model)
        for optimizer in self.optimizers.values():
            comm.bcast_optimizer_state(optimizer)
        self.loader.set_state(loader_state)
        backend.set_rng_state(extra["rank_rng"][comm.rank])
        return step, extra

    def _sync_buffers(self):
        """Before rank 0 draws or saves: the ranks' batch-norm running statistics averaged, when
        each rank kept its own (--no-sync-bn); SyncBatchNorm's are equal everywhere already."""
        if self.comm is not None and self.args.no_sync_bn:
            for model in self.models.values():
                self.comm.allreduce_buffers(model)

    def _average(self, stats):
        """One iteration's statistics, averaged over the ranks (one message)."""
        if self.comm is None:
            return stats
        mean = self.comm.allreduce(np.array(stats, np.float64), "mean")
        return type(stats)(*(float(v) for v in mean))

    def train(self, one_iteration, shown, save_grid, on_checkpoint=None):
        """Train to the requested iteration; True, or False when a loss turned NaN or infinite
        (the message is printed; the last good checkpoint stays as it was).

        one_iteration(step) -> stats with an attribute per statistic name; shown(stats) -> the
        dict the progress bar shows; save_grid(path) writes a sample grid; on_checkpoint(record,
        progress), when given, may add entries to a checkpoint's metrics record."""
        progress = Progress(self.total, self.step, self.images_per_iteration,
                            enabled=self.is_main and not self.args.no_progress,
                            every=50 if self.is_main else None)
        started, last_saved = time.perf_counter(), self.step
        while self.step < self.total:
            try:
                stats = one_iteration(self.step + 1)
            except NonFiniteLossError as e:
                progress.close()
                if self.comm is not None:   # the other ranks wait in a collective: stop them
                    self.comm.abort(1, diverged_message(e, self.files.checkpoint))
                print(diverged_message(e, self.files.checkpoint), file=sys.stderr)
                return False
            stats = self._average(stats)
            self.step += 1
            for name, values in self.history.items():
                values.append(getattr(stats, name))
            progress.update(shown(stats))
            if self.step % self.per_epoch == 0:
                self._sync_buffers()
                if self.is_main:
                    save_grid(self.files.samples(f"epoch{self.step // self.per_epoch:03d}"))
            if self.step % self.every == 0 or self.step == self.total:
                self.checkpoint(last_saved, progress, time.perf_counter() - started,
                                on_checkpoint)
                last_saved = self.step
        progress.close()
        self.train_seconds = time.perf_counter() - started
        return True

    def checkpoint(self, last_saved, progress, elapsed, on_checkpoint=None):
        """Save the run's state, and append the mean statistics since ``last_saved``."""
        extra = {"config": self.config,
                 "history": {name: np.asarray(v, np.float64) for name, v in self.history.items()}}
        if self.comm is not None:
            extra["rank_rng"] = self.comm.gather_obj(backend.get_rng_state())
            self._sync_buffers()
            if not self.is_main:
                return
        if self.state:
            extra["state"] = {name: obj.get_state() for name, obj in self.state.items()}
        extra.update(self.static)
        save_run(self.files.checkpoint, self.models, self.optimizers, self.step, self.loader, extra)
        record = {"step": self.step, "epoch": self.step / self.per_epoch,
                  **{name: float(np.mean(v[last_saved:self.step]))
                     for name, v in self.history.items()},
                  "images_per_s": progress.images_per_second(), "elapsed_s": elapsed}
        if on_checkpoint is not None:
            on_checkpoint(record, progress)
        io.append_jsonl(self.files.metrics, record)

    def finish(self, record):
        """Append the final metrics record (``record`` plus the step and training time) and say
        what was written."""
        record = {"final": True, **record, "step": self.step, "train_seconds": self.train_seconds}
        io.append_jsonl(self.files.metrics, record)
        print(f"trained to iteration {self.step}; this session {self.train_seconds:.1f} s of "
              "training")
        written = [self.files.samples("final"), self.files.losses, self.files.interpolation,
                   self.files.metrics, self.files.checkpoint]
        print("wrote " + ", ".join(path for path in written if os.path.exists(path)))
        return record


# --- pictures and final metrics -----------------------------------------------------------------

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


def interpolation_noise(nz, seed, rows=8, cols=INTERPOLATION_STEPS, hold=0):
    """(rows * cols, nz): row r walks in ``cols`` steps from one noise vector z1_r to another z2_r.
    The first ``hold`` coordinates stay at z1_r's all along the row: those that pick a mixture's
    component (dcgan_mnist's clusters), so that a row morphs within one cluster instead of
    jumping between clusters."""
    rng = np.random.default_rng([seed, 2])
    ends = rng.standard_normal((rows, 2, nz))
    ts = np.linspace(0.0, 1.0, cols)
    z = np.stack([slerp(z1, z2, t) for z1, z2 in ends for t in ts])
    z[:, :hold] = np.repeat(ends[:, 0, :hold], cols, axis=0)
    return z.astype(np.float32)


def save_samples(G, z, path, device, nrow=8):
    """G(z) (evaluation mode) as a PNG grid of ``nrow`` images per row."""
    images = generate(G, mg.Tensor(backend.to_device(z, device)))
    return io.save_image_grid(backend.as_numpy(images), path, nrow=nrow, scale=2)


def save_final_pictures(run, G, z_grid, args, device, hold=0):
    """A run's last sample grid (the fixed noise ``z_grid``) and its latent interpolation (with
    the first ``hold`` noise coordinates held, see :func:`interpolation_noise`)."""
    save_samples(G, z_grid, run.files.samples("final"), device)
    save_samples(G, interpolation_noise(args.nz, args.seed, hold=hold), run.files.interpolation,
                 device, nrow=INTERPOLATION_STEPS)


def final_metrics(G, args, device, n=2000):
    """FID against real held-out digits, classifier score and class shares of n samples, when
    ``minigan.metrics`` is available (and the data are digits); otherwise a note and {}."""
    samples = None   # drawn only where they can be scored
    if args.dataset == "mnist":
        z = np.random.default_rng([args.seed, 3]).standard_normal((n, args.nz)).astype(np.float32)
        samples = backend.as_numpy(generate(G, mg.Tensor(backend.to_device(z, device))))
    return score_samples(samples, args.dataset)


def score_samples(samples, dataset="mnist", value_range=(-1.0, 1.0)):
    """:func:`final_metrics` for given samples (N, 1, 28, 28) with pixels in ``value_range``:
    the metrics' dict (printed), or a note and {} where they cannot be computed."""
    if dataset != "mnist":
        print(f"note: the metrics look through an MNIST digit classifier; skipped for {dataset}")
        return {}
    try:
        from minigan import metrics
    except ImportError as e:
        print(f"note: minigan.metrics is not available ({e}); no FID or classifier score")
        return {}
    try:
        result = metrics.evaluate_images(samples, value_range=value_range)
    except (OSError, ValueError) as e:   # e.g. the classifier's weights file is missing
        print(f"note: metrics could not be computed: {e}")
        return {}
    print(metrics.format_metrics(result))
    return result
