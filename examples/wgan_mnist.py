"""Train a Wasserstein GAN on MNIST digits with minigan: WGAN with weight clipping, or WGAN-GP.

    python -m examples.wgan_mnist                       # WGAN: RMSprop 5e-5, clip 0.01
    python -m examples.wgan_mnist --gp                  # WGAN-GP: Adam 1e-4 (0.5, 0.9), lambda 10
    python -m examples.wgan_mnist --gp --resume         # continue the run in --out
    python -m examples.wgan_mnist --iters 3 --ngf 8 --ndf 8 --out /tmp/smoke

The generator is DCGAN's (:mod:`minigan.gan.models`); the critic is DCGAN's discriminator without
batch norm (:class:`minigan.gan.wgan.Critic`), scoring images instead of classifying them. Both
are half DCGAN's width by default (--ngf 32 --ndf 32): an iteration runs G six times. One
iteration is :func:`minigan.gan.wgan.wgan_train_step`, Algorithm 1 of either paper: n_critic (5)
critic steps, each on a fresh real batch of 64, then one generator step. The settings are the
papers': WGAN (Arjovsky et al., 2017) RMSprop with lr 5e-5 and weights clipped to [-0.01, 0.01];
WGAN-GP (Gulrajani et al., 2017) Adam with lr 1e-4, betas (0.5, 0.9) and penalty weight 10.

An iteration here is one generator step; an epoch is (batches per epoch) // n_critic of them,
since each iteration draws n_critic real batches. The run folder (--out, by default
runs/wgan_mnist or runs/wgan_gp_mnist) receives what the DCGAN example writes:

    samples_epoch001.png ...   G(z) for one fixed noise batch at the end of every epoch
    checkpoint.npz             every epoch (or --checkpoint-every iterations) and at the end
    metrics.jsonl              a record per checkpoint: mean losses, the critic's Wasserstein
                               estimate E f(x) - E f(G(z)), the penalty, images/s
    samples_final.png, losses.png (with the Wasserstein estimate), interpolation.png, and the
    final metrics record (FID and classifier score of 2,000 samples)

--resume continues a run exactly (on the CPU), and a NaN or infinite loss stops training before
any update is made with it, as in the DCGAN example.
"""
import argparse
import sys

import minigan as mg
from minigan import backend, io, optim
from minigan.gan.rebuild import generator_record
from minigan.gan.wgan import make_wgan, wgan_train_step

from ._common import (TrainingRun, abort_on_error, add_common_args, add_distributed_args,
                      check_args, distribute, final_metrics, fixed_noise, is_main,
                      load_training_images, make_loader, save_final_pictures, save_samples,
                      setup_distributed)

# Generator iterations of the default runs: where the samples became digits in measured runs on
# the bundled digits (seed 0). WGAN-GP after 3,000 iterations: FID 139.7 (the DCGAN example's
# 2,000 iterations: 146.3), classifier score 6.40, mostly recognisable digits; after 700, FID 271
# and strokes. Clipped WGAN learns more slowly: after 4,000, FID 231.7, score 5.05, digit-like
# shapes of which about half read as digits; after 1,000, FID 471 and blobs. An iteration runs G
# six times (five critic steps and a generator step) and a WGAN-GP critic step differentiates the
# critic twice: measured side by side, a WGAN iteration costs about 2.1 DCGAN iterations at the
# half widths used here and a WGAN-GP iteration 3.1, so the default runs take about 4 (WGAN) and
# 4.5-5 (WGAN-GP) times as long as the DCGAN example's: 25-30 minutes on 2 idle cores with the
# first CPU kernels, 13.5 (WGAN) and 15 minutes (WGAN-GP) since the convolutions run each core's
# images on that core (the whole runs, metrics included, as the slow tests run them).
DEFAULT_ITERS = {"wgan": 4000, "wgan-gp": 3000}
DEFAULT_WIDTH = 32
# The papers' learning rates and Lipschitz constraints (the optimizers: make_optimizers).
SETTINGS = {"wgan": {"lr": 5e-5, "clip": 0.01}, "wgan-gp": {"lr": 1e-4, "gp_lambda": 10.0}}
STAT_NAMES = ("loss_critic", "loss_g", "wasserstein", "gp")


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_common_args(parser, iters=DEFAULT_ITERS["wgan"], lr=None, out=None, width=DEFAULT_WIDTH,
                    lr_help="learning rate of G and the critic (default: the paper's, RMSprop "
                            "5e-5 for WGAN, Adam 1e-4 for WGAN-GP)")
    parser.add_argument("--gp", action="store_true",
                        help="WGAN-GP: gradient penalty and Adam (default: WGAN, weight clipping "
                             f"and RMSprop); its default length is {DEFAULT_ITERS['wgan-gp']} "
                             "iterations")
    parser.add_argument("--n-critic", type=int, default=5,
                        help="critic steps per generator step")
    parser.add_argument("--clip", type=float, default=SETTINGS["wgan"]["clip"],
                        help="WGAN: clip critic weights to [-clip, clip]")
    parser.add_argument("--gp-lambda", type=float, default=SETTINGS["wgan-gp"]["gp_lambda"],
                        help="WGAN-GP: the penalty's weight lambda")
    parser.add_argument("--samples", type=int, default=64, help="images in each sample grid")
    add_distributed_args(parser)
    args = parser.parse_args(argv)
    args.mode = "wgan-gp" if args.gp else "wgan"
    args.default_iters = DEFAULT_ITERS[args.mode]
    if args.lr is None:   # the learning rate of the paper of the chosen mode
        args.lr = SETTINGS[args.mode]["lr"]
    if args.out is None:
        args.out = "runs/wgan_gp_mnist" if args.gp else "runs/wgan_mnist"
    check_args(args)
    for name in ("samples", "n_critic"):
        if getattr(args, name) < 1:
            sys.exit(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
    for name in ("clip", "gp_lambda"):
        if not getattr(args, name) > 0:
            sys.exit(f"--{name.replace('_', '-')} must be > 0, got {getattr(args, name)}")
    return args


def make_optimizers(G, critic, args):
    """The papers' optimizers: RMSprop for WGAN ("momentum based methods such as Adam" made its
    critic training unstable), Adam with beta1 0.5 and beta2 0.9 for WGAN-GP."""
    if args.gp:
        return (optim.Adam(G.parameters(), lr=args.lr, betas=(0.5, 0.9)),
                optim.Adam(critic.parameters(), lr=args.lr, betas=(0.5, 0.9)))
    return (optim.RMSprop(G.parameters(), lr=args.lr),
            optim.RMSprop(critic.parameters(), lr=args.lr))


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
    loader = make_loader(backend.to_device(images, device), args, comm)
    G, critic = make_wgan(args.nz, args.ngf, args.ndf)
    G.to(device)
    critic.to(device)
    opt_g, opt_c = make_optimizers(G, critic, args)
    models, optimizers = {"G": G, "critic": critic}, {"G": opt_g, "critic": opt_c}
    if comm is not None:
        models, optimizers = distribute(models, optimizers, comm, args)
        (G, critic), (opt_g, opt_c) = models.values(), optimizers.values()
    constraint = ({"gp_lambda": args.gp_lambda} if args.gp else {"clip": args.clip})
    # an iteration draws n_critic real batches, so an epoch has len(loader) // n_critic of them
    per_epoch = max(1, len(loader) // args.n_critic)
    # settings a resumed run must share with the checkpoint to continue it exactly
    config = {"mode": args.mode, "dataset": args.dataset, "images": len(images),
              "batch_size": args.batch_size, "lr": args.lr, "seed": args.seed, "nz": args.nz,
              "ngf": args.ngf, "ndf": args.ndf, "n_critic": args.n_critic, **constraint}
    run = TrainingRun(args, models, optimizers, loader, config, STAT_NAMES, per_epoch=per_epoch,
                      images_per_iteration=args.batch_size * args.n_critic, comm=comm,
                      generator=generator_record(G, {"nz": args.nz, "ngf": args.ngf}))
    ranks = "" if comm is None else f" on each of {comm.size} ranks"
    if is_main(comm):
        print(f"{args.mode.upper()}: {described}; {per_epoch} iterations of {args.n_critic} "
              f"critic steps per epoch (batch {args.batch_size}{ranks}); training to iteration "
              f"{run.total} on {device}; writing to {run.files.folder}")

    z_grid = fixed_noise(args.samples, args.nz, args.seed)
    batches = loader.forever()

    def one_iteration(step):
        return wgan_train_step(G, critic, opt_g, opt_c, lambda: mg.Tensor(next(batches)),
                               args.nz, args.n_critic, step=step, **constraint)

    def shown(stats):
        return {"critic": stats.loss_critic, "G": stats.loss_g, "W": stats.wasserstein,
                **({"GP": stats.gp} if args.gp else {})}

    if not run.train(one_iteration, shown, lambda path: save_samples(G, z_grid, path, device)):
        return 1
    if is_main(comm):
        save_final_pictures(run, G, z_grid, args, device)
        if run.history["loss_critic"]:
            curves = {"critic loss": run.history["loss_critic"], "G loss": run.history["loss_g"],
                      "Wasserstein estimate": run.history["wasserstein"]}
            if args.gp:
                curves["gradient penalty"] = run.history["gp"]
            io.plot_curves(curves, run.files.losses, title=f"{args.mode.upper()} on MNIST",
                           xlabel="generator iteration", ylabel="loss / estimate")
        run.finish({"mode": args.mode,
                    **({} if args.no_metrics else final_metrics(G, args, device))})
    if comm is not None:
        comm.wait_all()
    return 0


if __name__ == "__main__":
    sys.exit(main())
