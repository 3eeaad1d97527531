"""Train InfoGAN on MNIST digits with minigan: latent codes it learns to use, without labels.

    python -m examples.infogan_mnist                    # the default run (see DEFAULT_ITERS)
    python -m examples.infogan_mnist --seed 1 --out runs/infogan_seed1
    python -m examples.infogan_mnist --resume           # continue the run in --out
    python -m examples.infogan_mnist --iters 3 --ngf 4 --ndf 4 --out /tmp/smoke

The models are :mod:`minigan.gan.infogan`'s: a generator on [z ; onehot(c) ; s] with 62 noise
dimensions z ~ N(0, I) (--noise uniform: U(-1, 1)), one categorical code c of 10 values and two
continuous codes s ~ U(-1, 1), and a discriminator with a Q head on its trunk that reads (c, s)
back; the InfoGAN paper's MNIST models by default (--arch dcgan: the DCGAN ones). The info loss
weighs the categorical code 1 and the continuous ones 0.1 (--lambda-cont); it trains G and Q's
head together in G's step by default (--q-update d: Q's head and the shared trunk in D's step).
By default Q reads the categorical code from the fakes after a random slant, zoom and shift
(--code-transform affine, :class:`minigan.gan.augment.RandomAffine`): the plain loss stops
pushing once Q reads the code, and in every seed tried a code value still drew two digits told
apart by style; read through the warp, the code has to be the digit's shape (benchmarks/
RESULTS.md, issue 13). --code-transform none is the paper's loss exactly.
Adam betas (0.5, 0.999), batch 64, lr --lr for D (and Q with --q-update d), --lr-g for G (and
Q with --q-update g). The training images' labels are never loaded. The
run folder (--out) receives, as training goes:

    samples_epoch001.png ...   a 10x10 grid every epoch: row k uses categorical value k, column j
                               the same noise in every row, both continuous codes 0
    checkpoint.npz             every epoch (or --checkpoint-every iterations) and at the end, with
                               extra["generator"]: G's class, its arguments and the latent layout
    metrics.jsonl              a record per checkpoint: mean losses, D(x), D(G(z)), Q's accuracy on
                               the codes, images/s, and the categorical code's accuracy after
                               matching code values to digits (200 samples, by the shipped LeNet)
    samples_final.png, sweep_c1.png, sweep_c2.png (row k: categorical value k, columns: one
    continuous code from -1 to 1, all else fixed), losses.png, and the final record on 2,000
    samples (200 per code value): the code accuracy, its code -> digit assignment and confusion,
    FID, classifier score; the samples in eval_samples.npy (float32 (2000, 1, 28, 28) in
    [-1, 1]), their categorical codes in eval_codes.npy (int64 (2000,)) and continuous codes in
    eval_continuous.npy (float32 (2000, 2))

--resume continues a run exactly (CPU); a NaN or infinite loss stops training before any update
is made with it and keeps the last good checkpoint.
"""
import argparse
import sys

import numpy as np

import minigan as mg
from minigan import backend, io, optim
from minigan.data import Batches
from minigan.gan.infogan import (ARCHITECTURES, LAMBDA_CONTINUOUS, NOISES, NUM_CATEGORIES,
                                 NUM_CONTINUOUS, Q_UPDATES, draw_noise, generate_infogan,
                                 infogan_train_step, make_infogan, sample_latent)
from minigan.gan.augment import RandomAffine
from minigan.gan.rebuild import generator_record

from ._common import TrainingRun, add_common_args, check_args, load_training_images
from .cgan_mnist import load_metrics_classifier

# Iterations of the default run (71 epochs of the bundled digits): the code found the digits
# between 2,500 and 4,000 iterations in seeds 0-2 (RESULTS.md, issue 13); ~0.09 s of one core's
# time an iteration, inside the 15-minute goal
DEFAULT_ITERS = 5000
LR_G = 1e-3   # G's (and Q's head's) Adam learning rate in the InfoGAN authors' code (D: 2e-4)
# The paper's models: with the DCGAN ones the noise chose the digit and the code a style (code
# accuracy 0.24-0.30); Q's head trained with G came a little faster than in D's step (RESULTS.md)
ARCH = "paper"
Q_UPDATE = "g"
NOISE = "normal"
CODE_TRANSFORMS = ("none", "affine")
CODE_TRANSFORM = "affine"
STAT_NAMES = ("loss_d", "loss_g", "loss_info", "d_real", "d_fake", "q_accuracy")
SWEEP_STEPS = 10
EVAL_PER_CODE = 200


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_common_args(parser, iters=DEFAULT_ITERS, out="runs/infogan_mnist", width=32,
                    lr_help="Adam's learning rate of D and its Q head")
    parser.set_defaults(nz=62)
    parser.add_argument("--lr-g", type=float, default=LR_G, help="Adam's learning rate of G")
    parser.add_argument("--lambda-cont", type=float, default=LAMBDA_CONTINUOUS,
                        help="weight of the continuous codes in the info loss (categorical: 1)")
    parser.add_argument("--arch", choices=ARCHITECTURES, default=ARCH,
                        help="the DCGAN models or the InfoGAN paper's (FC trunk layers)")
    parser.add_argument("--noise", choices=NOISES, default=NOISE,
                        help="G's noise z: N(0, 1) or U(-1, 1)")
    parser.add_argument("--q-update", choices=Q_UPDATES, default=Q_UPDATE,
                        help="which step trains Q's head: D's (with the trunk) or G's (with G)")
    parser.add_argument("--code-transform", choices=CODE_TRANSFORMS, default=CODE_TRANSFORM,
                        help="affine: Q reads the categorical code from randomly slanted, zoomed "
                             "and shifted fakes (RandomAffine), so the code must survive them")
    args = parser.parse_args(argv)
    check_args(args)
    if not args.lr_g > 0:
        sys.exit(f"--lr-g must be > 0, got {args.lr_g}")
    if not args.lambda_cont >= 0:
        sys.exit(f"--lambda-cont must be >= 0, got {args.lambda_cont}")
    return args


def code_grid_inputs(nz, seed, noise=NOISE):
    """The per-epoch grid: noise (100, nz), categorical codes (100,), continuous codes (100, 2);
    row k has code k, column j the same noise z_j in every row, continuous codes 0. Drawn from
    their own generator, apart from the training streams."""
    z = draw_noise(np.random.default_rng([seed, 1]), (NUM_CATEGORIES, nz), noise, np.float32)
    return (np.tile(z, (NUM_CATEGORIES, 1)), np.repeat(np.arange(NUM_CATEGORIES), NUM_CATEGORIES),
            np.zeros((NUM_CATEGORIES ** 2, NUM_CONTINUOUS), np.float32))


def sweep_inputs(nz, seed, code, noise=NOISE):
    """A sweep of continuous code ``code``: row k has categorical value k, columns run that code
    from -1 to 1 in SWEEP_STEPS steps; one noise vector and the other codes 0 throughout."""
    z = draw_noise(np.random.default_rng([seed, 5]), (1, nz), noise, np.float32)
    n = NUM_CATEGORIES * SWEEP_STEPS
    s = np.zeros((n, NUM_CONTINUOUS), np.float32)
    s[:, code] = np.tile(np.linspace(-1, 1, SWEEP_STEPS, dtype=np.float32), NUM_CATEGORIES)
    return np.repeat(z, n, axis=0), np.repeat(np.arange(NUM_CATEGORIES), SWEEP_STEPS), s


def save_grid(G, inputs, path, device, nrow):
    z, c, s = inputs
    images = generate_infogan(G, backend.to_device(z, device), backend.to_device(c, device),
                              backend.to_device(s, device))
    return io.save_image_grid(backend.as_numpy(images), path, nrow=nrow, scale=2)


def eval_inputs(nz, seed, per_code=EVAL_PER_CODE, noise=NOISE):
    """Noise, categorical codes (each value per_code times) and continuous codes of the samples
    the code accuracy is measured on; their own generator, apart from the training streams."""
    rng = np.random.default_rng([seed, 3])
    n = NUM_CATEGORIES * per_code
    return (draw_noise(rng, (n, nz), noise, np.float32),
            np.repeat(np.arange(NUM_CATEGORIES), per_code),
            rng.uniform(-1, 1, (n, NUM_CONTINUOUS)).astype(np.float32))


def code_accuracy(G, classifier, device, seed, per_code, noise=NOISE):
    """(:class:`~minigan.metrics.CodeMatch`, samples, inputs): the categorical code's accuracy
    after the best one-to-one matching of code values to the classifier's digits."""
    from minigan import metrics
    z, c, s = inputs = eval_inputs(G.nz, seed, per_code, noise)
    samples = backend.as_numpy(generate_infogan(G, backend.to_device(z, device),
                                                backend.to_device(c, device),
                                                backend.to_device(s, device)))
    return metrics.code_accuracy(c, classifier.predict(samples), NUM_CATEGORIES, 10), samples, inputs


def final_metrics(G, args, device, classifier, run_dir):
    from minigan import metrics
    match, samples, (_, codes, continuous) = code_accuracy(G, classifier, device, args.seed,
                                                          EVAL_PER_CODE, args.noise)
    np.save(run_dir.path("eval_samples.npy"), samples.astype(np.float32))
    np.save(run_dir.path("eval_codes.npy"), codes.astype(np.int64))
    np.save(run_dir.path("eval_continuous.npy"), continuous.astype(np.float32))
    print(f"categorical code accuracy {match.accuracy:.3f} on {len(codes)} samples "
          f"(code -> digit: " + " ".join(f"{k}->{d}" for k, d in enumerate(match.assignment)) + ")")
    result = metrics.evaluate_images(samples, classifier=classifier)
    print(metrics.format_metrics(result))
    return {"code_accuracy": match.accuracy, "code_assignment": match.assignment,
            "code_confusion": match.confusion, **result}


def main(argv=None):
    args = parse_args(argv)
    mg.manual_seed(args.seed)
    device = args.device

    images, described = load_training_images(args)   # images only: InfoGAN never sees a label
    loader = Batches(backend.to_device(images, device), batch_size=args.batch_size,
                     seed=args.seed)
    G, D = make_infogan(args.nz, args.ngf, args.ndf, architecture=args.arch)
    G.to(device)
    D.to(device)
    g_params, d_params = ((G.parameters(), D.parameters()) if args.q_update == "d" else
                          (list(G.parameters()) + list(D.q.parameters()), D.d_parameters()))
    opt_g = optim.Adam(g_params, lr=args.lr_g, betas=(0.5, 0.999))
    opt_d = optim.Adam(d_params, lr=args.lr, betas=(0.5, 0.999))
    classifier = None if args.no_metrics or args.dataset != "mnist" else load_metrics_classifier()
    config = {"dataset": args.dataset, "images": len(images), "batch_size": args.batch_size,
              "lr": args.lr, "lr_g": args.lr_g, "lambda_cont": args.lambda_cont,
              "arch": args.arch, "q_update": args.q_update, "noise": args.noise,
              "code_transform": args.code_transform,
              "seed": args.seed, "nz": args.nz, "ngf": args.ngf, "ndf": args.ndf}
    # examples.sample draws the codes as training does: a uniform category, U(-1, 1) continuous
    sampler = generator_record(
        G, {"nz": args.nz, "ngf": args.ngf, "nc": 1, "num_categories": NUM_CATEGORIES,
            "num_continuous": NUM_CONTINUOUS, "architecture": args.arch},
        codes=NUM_CATEGORIES, continuous=NUM_CONTINUOUS, noise=args.noise)
    run = TrainingRun(args, {"G": G, "D": D}, {"G": opt_g, "D": opt_d}, loader, config,
                      STAT_NAMES, per_epoch=len(loader), images_per_iteration=args.batch_size,
                      generator=sampler)
    print(f"{described}; {len(loader)} batches of {args.batch_size} per epoch; "
          f"training to iteration {run.total} on {device}; writing to {run.files.folder}")

    grid = code_grid_inputs(args.nz, args.seed, args.noise)
    transform = RandomAffine() if args.code_transform == "affine" else None
    batches = loader.forever()

    def one_iteration(step):
        real = next(batches)
        latent = sample_latent(args.batch_size, args.nz, device=device, noise=args.noise)
        return infogan_train_step(G, D, opt_g, opt_d, mg.Tensor(real), latent,
                                  lambda_cont=args.lambda_cont, step=step,
                                  q_update=args.q_update, code_transform=transform)

    def shown(stats):
        return {"D": stats.loss_d, "G": stats.loss_g, "info": stats.loss_info,
                "D(x)": stats.d_real, "D(G(z))": stats.d_fake, "Q acc": stats.q_accuracy}

    def on_checkpoint(record, progress):
        if classifier is not None:   # 200 samples, outside the training streams
            record["code_accuracy"] = code_accuracy(G, classifier, device, args.seed, 20,
                                                    args.noise)[0].accuracy
            progress.write(f"iteration {run.step}: code accuracy {record['code_accuracy']:.3f}")

    if not run.train(one_iteration, shown, lambda path: save_grid(G, grid, path, device,
                                                                  NUM_CATEGORIES),
                     on_checkpoint):
        return 1
    save_grid(G, grid, run.files.samples("final"), device, NUM_CATEGORIES)
    for code in range(NUM_CONTINUOUS):
        save_grid(G, sweep_inputs(args.nz, args.seed, code, args.noise),
                  run.files.path(f"sweep_c{code + 1}.png"), device, SWEEP_STEPS)
    if run.history["loss_d"]:
        io.plot_curves({"D loss": run.history["loss_d"], "G loss": run.history["loss_g"],
                        "info loss": run.history["loss_info"]},
                       run.files.losses, title="InfoGAN on MNIST", xlabel="iteration",
                       ylabel="loss")
    run.finish({} if classifier is None else final_metrics(G, args, device, classifier, run.files))
    return 0


if __name__ == "__main__":
    sys.exit(main())
