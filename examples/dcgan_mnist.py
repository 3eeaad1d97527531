"""Train a DCGAN on MNIST digits with minigan, on the CPU (or a GPU with --device cuda).

    python -m examples.dcgan_mnist                      # the default run: a few minutes on 2 cores
    python -m examples.dcgan_mnist --epochs 20 --out runs/long
    python -m examples.dcgan_mnist --resume             # continue the run in --out
    python -m examples.dcgan_mnist --iters 3 --ngf 8 --ndf 8 --out /tmp/smoke
    python -m examples.dcgan_mnist --spectral-norm --loss hinge --out runs/sngan   # SN-GAN's D and loss

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

import minigan as mg
from minigan import backend, io, optim
from minigan.gan.models import make_dcgan
from minigan.gan.train import sample_noise, train_step

from ._common import (TrainingRun, abort_on_error, add_common_args, add_distributed_args,
                      check_args, distribute, final_metrics, fixed_noise, is_main,
                      load_training_images, make_loader, save_final_pictures, save_samples,
                      setup_distributed)

# Iterations of the default run (29 epochs of the bundled 4,500 digits), from measured speed: an
# iteration at batch 64 costs about 0.26 s of CPU time single-threaded here (PyTorch: 0.22 s);
# the default run took 6 min 36 s on 2 otherwise idle cores (393 s of training, then the
# pictures and metrics). Digits become recognisable after about 1,000-1,400 iterations; the rest
# is margin and sharpening.
DEFAULT_ITERS = 2000
STAT_NAMES = ("loss_d", "loss_g", "d_real", "d_fake")


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_common_args(parser, iters=DEFAULT_ITERS, out="runs/dcgan_mnist")
    parser.add_argument("--samples", type=int, default=64, help="images in each sample grid")
    add_distributed_args(parser)
    parser.add_argument("--spectral-norm", action="store_true",
                        help="SN-GAN's D: spectral norm on every convolution, no batch norm")
    parser.add_argument("--loss", choices=("gan", "hinge"), default="gan",
                        help="gan: BCE D and non-saturating G; hinge: the hinge losses (SN-GAN)")
    args = parser.parse_args(argv)
    check_args(args)
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
    loader = make_loader(backend.to_device(images, device), args, comm)
    G, D = make_dcgan(args.nz, args.ngf, args.ndf, spectral_norm=args.spectral_norm)
    G.to(device)
    D.to(device)
    opt_g = optim.Adam(G.parameters(), lr=args.lr, betas=(0.5, 0.999))
    opt_d = optim.Adam(D.parameters(), lr=args.lr, betas=(0.5, 0.999))
    models, optimizers = {"G": G, "D": D}, {"G": opt_g, "D": opt_d}
    if comm is not None:
        models, optimizers = distribute(models, optimizers, comm, args)
        (G, D), (opt_g, opt_d) = models.values(), optimizers.values()
    # settings a resumed run must share with the checkpoint to continue it exactly
    config = {"dataset": args.dataset, "images": len(images), "batch_size": args.batch_size,
              "lr": args.lr, "seed": args.seed, "nz": args.nz, "ngf": args.ngf, "ndf": args.ndf,
              "spectral_norm": args.spectral_norm, "loss": args.loss}
    run = TrainingRun(args, models, optimizers, loader, config, STAT_NAMES,
                      per_epoch=len(loader), images_per_iteration=args.batch_size, comm=comm)
    ranks = "" if comm is None else f" on each of {comm.size} ranks"
    if is_main(comm):
        print(f"{described}; {len(loader)} batches of {args.batch_size}{ranks} per epoch; "
              f"training to iteration {run.total} on {device}; writing to {run.files.folder}")

    z_grid = fixed_noise(args.samples, args.nz, args.seed)
    batches = loader.forever()

    def one_iteration(step):
        real = mg.Tensor(next(batches))
        z = sample_noise(args.batch_size, args.nz, device)
        return train_step(G, D, opt_g, opt_d, real, z, step=step, loss=args.loss)

    def shown(stats):
        return {"D": stats.loss_d, "G": stats.loss_g, "D(x)": stats.d_real, "D(G(z))": stats.d_fake}

    if not run.train(one_iteration, shown, lambda path: save_samples(G, z_grid, path, device)):
        return 1
    if is_main(comm):
        save_final_pictures(run, G, z_grid, args, device)
        if run.history["loss_d"]:
            io.plot_curves({"D loss": run.history["loss_d"], "G loss": run.history["loss_g"]},
                           run.files.losses, title="DCGAN on MNIST", xlabel="iteration",
                           ylabel="loss")
        run.finish({} if args.no_metrics else final_metrics(G, args, device))
    if comm is not None:
        comm.wait_all()
    return 0


if __name__ == "__main__":
    sys.exit(main())
