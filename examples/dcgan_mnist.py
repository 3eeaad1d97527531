"""Train a DCGAN on MNIST digits with minigan, on the CPU (or a GPU with --device cuda).

    python -m examples.dcgan_mnist                      # the default run: a few minutes on 2 cores
    python -m examples.dcgan_mnist --epochs 20 --out runs/long
    python -m examples.dcgan_mnist --resume             # continue the run in --out
    python -m examples.dcgan_mnist --recipe paper       # Radford et al.'s exact recipe
    python -m examples.dcgan_mnist --recipe two-timescale   # unconditional, G learning 8x faster
    python -m examples.dcgan_mnist --recipe small-data  # DiffAugment and an EMA generator
    python -m examples.dcgan_mnist --iters 3 --ngf 8 --ndf 8 --out /tmp/smoke
    python -m examples.dcgan_mnist --spectral-norm --loss hinge --out runs/sngan   # SN-GAN's D and loss
    python -m examples.sample runs/dcgan_mnist --n 100  # new digits from the saved run

The models are :mod:`minigan.gan.models` (28x28 DCGAN; in the default recipe their conditional
form), trained with Adam (betas (0.5, 0.999)), batch 64, the discriminator's binary
cross-entropy and the non-saturating generator loss; one iteration is
:func:`minigan.gan.train.train_step`, Algorithm 1 of the GAN paper (with clusters:
:func:`minigan.gan.conditional.conditional_train_step`, the same with each real image's cluster
as its label and the fakes drawn for the same clusters). Four recipes
(--recipe; --lr, --lr-d, --augment, --ema, --clusters, --ngf, --ndf and --iters change one
ingredient):

    clusters    (default) self-conditioning (:mod:`minigan.gan.clusters`, after Liu et al. 2020):
                k-means splits the training images into 100 clusters by their pixels, the
                DCGAN's conditional form (:mod:`minigan.gan.conditional`: the cluster joined to
                G's noise and to D's input, D's projection head) learns each cluster, and G(z)
                draws the cluster from its share of the data with z's first coordinate. No label
                is used. Widths 32, Adam 2e-4 for both, 2,500 iterations. Chosen by measurement
                on the 4,500 bundled digits: FID 31.2-41.3 and classifier score 8.63-8.72 over
                seeds 0-2, every digit drawn 6.8-13.9% of the time, 2-6 minutes a run on 2 idle
                cores; two-timescale: FID 99-115, score 6.5-6.6 (benchmarks/RESULTS.md, issue 17).
    two-timescale  the best unconditional recipe: the paper's with two learning rates (Heusel
                et al. 2017's "two time-scale" rule), G's Adam at 1.6e-3, D's at 2e-4, widths
                64, 2,000 iterations: FID 99-115 over seeds 0-2 against the paper recipe's
                128-166.
    paper       Radford et al. (2016) exactly: Adam 2e-4 for both, the trained G itself, widths
                64, 2,000 iterations: FID 130-142, score 6.1-6.2 over seeds 0-2 on the machine
                that measured the default's numbers.
    small-data  the paper's rates, and D sees every image, real and fake, through DiffAugment
                (Zhao et al. 2020: random translation by up to 4 pixels and a 14x14 cutout, in
                both players' steps, :mod:`minigan.gan.augment`), which keeps D from memorising
                the bundled digits; the grids and metrics come from an exponential moving average
                of G's weights (beta 0.999) with its batch-norm statistics recomputed for the
                averaged weights (:mod:`minigan.gan.ema`). Costs the same per iteration, but
                learns more slowly: after 2,000 iterations FID 271-289 (3 seeds). Widths 64,
                2,000 iterations.

The run folder (--out) receives, as training goes:

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

import numpy as np

import minigan as mg
from minigan import backend, io, optim
from minigan.gan.augment import POLICIES, DiffAugment
from minigan.gan.clusters import cluster_images, make_cluster_dcgan
from minigan.gan.conditional import conditional_train_step
from minigan.gan.ema import EMA, noise_batches, recompute_batchnorm
from minigan.gan.models import make_dcgan
from minigan.gan.rebuild import generator_record
from minigan.gan.train import sample_noise, train_step

from ._common import (TrainingRun, abort_on_error, add_common_args, add_distributed_args,
                      check_args, distribute, final_metrics, fixed_noise, is_main,
                      load_training_images, make_loader, save_final_pictures, save_samples,
                      setup_distributed)

STAT_NAMES = ("loss_d", "loss_g", "d_real", "d_fake")
# The recipes --recipe picks from; a flag given explicitly overrides its recipe's value. iters:
# the default run's length (--iters / --epochs set another). The default's 2,500 iterations (36
# epochs of the bundled digits) take 2-6 minutes on 2 idle cores with the metrics (the VMs differ).
UNCONDITIONAL = {"clusters": 0, "ngf": 64, "ndf": 64, "iters": 2000}
RECIPES = {
    "clusters": {"augment": "none", "ema": 0.0, "lr": 2e-4, "lr_d": 2e-4, "clusters": 100,
                 "ngf": 32, "ndf": 32, "iters": 2500},
    "two-timescale": {"augment": "none", "ema": 0.0, "lr": 1.6e-3, "lr_d": 2e-4,
                      **UNCONDITIONAL},
    "paper": {"augment": "none", "ema": 0.0, "lr": 2e-4, "lr_d": 2e-4, **UNCONDITIONAL},
    "small-data": {"augment": "translation,cutout", "ema": 0.999, "lr": 2e-4, "lr_d": 2e-4,
                   **UNCONDITIONAL},
}
DEFAULT_RECIPE = "clusters"


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_common_args(parser, iters=RECIPES[DEFAULT_RECIPE]["iters"], out="runs/dcgan_mnist")
    parser.add_argument("--samples", type=int, default=64, help="images in each sample grid")
    add_distributed_args(parser)
    parser.add_argument("--spectral-norm", action="store_true",
                        help="SN-GAN's D: spectral norm on every convolution, no batch norm")
    parser.add_argument("--loss", choices=("gan", "hinge"), default="gan",
                        help="gan: BCE D and non-saturating G; hinge: the hinge losses (SN-GAN)")
    parser.add_argument("--recipe", choices=tuple(RECIPES), default=DEFAULT_RECIPE,
                        help="clusters (default): G and D conditioned on 100 k-means clusters "
                             "of the training images, widths 32; two-timescale: unconditional, "
                             "Adam 1.6e-3 for G, 2e-4 for D; paper: Radford et al.'s exact "
                             "recipe; small-data: DiffAugment and an EMA generator")
    parser.add_argument("--clusters", type=int, default=None,
                        help="k-means clusters of the training images that G and D are "
                             "conditioned on, 0 for the unconditional DCGAN (default: the "
                             "recipe's)")
    parser.add_argument("--augment", default=None,
                        help="DiffAugment policy applied to every image D sees: 'none' or a "
                             f"comma list of {', '.join(POLICIES)} (default: the recipe's)")
    parser.add_argument("--ema", type=float, default=None,
                        help="beta of the EMA generator used for grids and metrics, 0 for none "
                             "(default: the recipe's)")
    parser.add_argument("--lr-d", type=float, default=None,
                        help="D's learning rate (default: --lr when it is given, else the "
                             "recipe's)")
    parser.set_defaults(lr=None, ngf=None, ndf=None)
    args = parser.parse_args(argv)
    if args.lr is not None and args.lr_d is None:   # --lr sets both players' rates unless
        args.lr_d = args.lr                          # --lr-d parts them
    for name, value in RECIPES[args.recipe].items():
        if name == "iters":
            args.default_iters = value
        elif getattr(args, name) is None:
            setattr(args, name, value)
    check_args(args)
    if args.clusters < 0:
        sys.exit(f"--clusters must be >= 0 (0: unconditional), got {args.clusters}")
    if args.clusters and args.nz < 2:
        sys.exit(f"--clusters needs --nz >= 2 (one noise coordinate picks the cluster), "
                 f"got {args.nz}")
    if not 0 <= args.ema < 1:
        sys.exit(f"--ema must be in [0, 1), got {args.ema}")
    if not args.lr_d > 0:
        sys.exit(f"--lr-d must be > 0, got {args.lr_d}")
    policy = () if args.augment == "none" else tuple(args.augment.split(","))
    bad = [p for p in policy if p not in POLICIES]
    if bad:
        sys.exit(f"--augment: unknown {bad}; 'none' or a comma list of {', '.join(POLICIES)}")
    args.policy = policy
    unsupported = [flag for flag, used in (("--spectral-norm", args.spectral_norm),
                                           ("--loss hinge", args.loss == "hinge"),
                                           ("--augment", bool(policy))) if used]
    if args.clusters and unsupported:
        sys.exit(f"{' and '.join(unsupported)}: only for the unconditional DCGAN; add "
                 f"--clusters 0 (the {args.recipe} recipe conditions on {args.clusters} clusters)")
    if args.samples < 1:
        sys.exit(f"--samples must be >= 1, got {args.samples}")
    return args


def main(argv=None):
    args = parse_args(argv)
    comm = setup_distributed(args)
    with abort_on_error(comm):
        return train(args, comm)


def train(args, comm=None):
    """The run; with ``comm`` (--distributed) one rank of a data-parallel run."""
    mg.manual_seed(args.seed)
    device = args.device

    images, described = load_training_images(args)
    labels = ()   # the clusters of the images, where G and D are conditioned on them
    if args.clusters:
        clusters = None
        if is_main(comm):   # one rank clusters, so that every rank trains on the same labels
            try:
                clusters = cluster_images(images, args.clusters, seed=args.seed)
            except ValueError as e:
                sys.exit(f"--clusters {args.clusters}: {e}")
        if comm is not None:
            clusters = comm.bcast_obj(clusters)
        labels = (backend.to_device(clusters.labels, device),)
        g_kwargs = {"nz": args.nz, "ngf": args.ngf, "prior": [float(p) for p in clusters.prior]}
        G, D = make_cluster_dcgan(args.nz, args.ngf, args.ndf, prior=g_kwargs["prior"])
        sizes = np.bincount(clusters.labels, minlength=args.clusters)
        described += f", in {args.clusters} k-means clusters of {sizes.min()}-{sizes.max()} images"
    else:
        g_kwargs = {"nz": args.nz, "ngf": args.ngf}
        G, D = make_dcgan(args.nz, args.ngf, args.ndf, spectral_norm=args.spectral_norm)
    loader = make_loader(backend.to_device(images, device), args, comm, *labels)
    G.to(device)
    D.to(device)
    opt_g = optim.Adam(G.parameters(), lr=args.lr, betas=(0.5, 0.999))
    opt_d = optim.Adam(D.parameters(), lr=args.lr_d, betas=(0.5, 0.999))
    augment = DiffAugment(args.policy) if args.policy else None
    models, optimizers = {"G": G, "D": D}, {"G": opt_g, "D": opt_d}
    if comm is not None:
        models, optimizers = distribute(models, optimizers, comm, args)
        (G, D), (opt_g, opt_d) = models.values(), optimizers.values()
    ema = None
    if args.ema > 0:   # the averaged G draws the grids and is measured; G and D train as before
        ema = EMA(G, type(G)(**g_kwargs).to(device), beta=args.ema)
        models["G_ema"] = ema.model
    # settings a resumed run must share with the checkpoint to continue it exactly
    config = {"dataset": args.dataset, "images": len(images), "batch_size": args.batch_size,
              "lr": args.lr, "seed": args.seed, "nz": args.nz, "ngf": args.ngf, "ndf": args.ndf,
              "spectral_norm": args.spectral_norm, "loss": args.loss}
    if args.recipe != "paper" or args.policy or ema is not None or args.lr_d != args.lr:
        config.update(recipe=args.recipe, augment=",".join(args.policy) or "none", ema=args.ema,
                      lr_d=args.lr_d)
    if args.clusters:
        config["clusters"] = args.clusters
    # "mixture": z's first coordinate picks the cluster (examples.sample never truncates it)
    record = generator_record(G, g_kwargs, model="G" if ema is None else "G_ema",
                              **({"mixture": 1} if args.clusters else {}))
    run = TrainingRun(args, models, optimizers, loader, config, STAT_NAMES,
                      per_epoch=len(loader), images_per_iteration=args.batch_size, comm=comm,
                      generator=record)
    if ema is not None:
        ema.updates = run.step
    ranks = "" if comm is None else f" on each of {comm.size} ranks"
    if is_main(comm):
        print(f"{described}; {len(loader)} batches of {args.batch_size}{ranks} per epoch; "
              f"training to iteration {run.total} on {device} with the {args.recipe} recipe "
              f"(clusters: {args.clusters or 'none'}, augment: {','.join(args.policy) or 'none'}, "
              f"EMA: {args.ema or 'none'}, lr G {args.lr:g} D {args.lr_d:g}, widths "
              f"{args.ngf}/{args.ndf}); writing to {run.files.folder}")

    z_grid = fixed_noise(args.samples, args.nz, args.seed)
    batches = loader.forever()

    G_shown = G if ema is None else ema.model   # what the grids and metrics show

    def one_iteration(step):
        if args.clusters:   # G.net, the conditional G, learns each real image's cluster
            real, y = next(batches)
            z = sample_noise(args.batch_size, args.nz - 1, device)
            stats = conditional_train_step(G.net, D, opt_g, opt_d, mg.Tensor(real), y, z,
                                           step=step)
        else:
            real = mg.Tensor(next(batches))
            z = sample_noise(args.batch_size, args.nz, device)
            stats = train_step(G, D, opt_g, opt_d, real, z, step=step, loss=args.loss,
                               augment=augment)
        if ema is not None:
            ema.update(G)
            if step % run.per_epoch == 0 or step % run.every == 0 or step == run.total:
                # before a grid or a checkpoint: statistics that match the averaged weights
                recompute_batchnorm(ema.model, noise_batches(args.nz, args.seed, device=device))
        return stats

    def shown(stats):
        return {"D": stats.loss_d, "G": stats.loss_g, "D(x)": stats.d_real, "D(G(z))": stats.d_fake}

    if not run.train(one_iteration, shown,
                     lambda path: save_samples(G_shown, z_grid, path, device)):
        return 1
    if is_main(comm):
        save_final_pictures(run, G_shown, z_grid, args, device, hold=1 if args.clusters else 0)
        if run.history["loss_d"]:
            io.plot_curves({"D loss": run.history["loss_d"], "G loss": run.history["loss_g"]},
                           run.files.losses, title="DCGAN on MNIST", xlabel="iteration",
                           ylabel="loss")
        run.finish({} if args.no_metrics else final_metrics(G_shown, args, device))
    if comm is not None:
        comm.wait_all()
    return 0


if __name__ == "__main__":
    sys.exit(main())
