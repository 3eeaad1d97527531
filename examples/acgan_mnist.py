"""Train an auxiliary-classifier GAN (ACGAN) on MNIST digits with minigan: D guesses the digit.

    python -m examples.acgan_mnist                      # the default run (see DEFAULT_ITERS)
    python -m examples.acgan_mnist --resume             # continue the run in --out
    python -m examples.acgan_mnist --iters 3 --ngf 4 --ndf 4 --out /tmp/smoke

The models are :mod:`minigan.gan.acgan`: the conditional generator of examples/cgan_mnist.py
(the label joined to the noise, one-hot) and a DCGAN discriminator with two heads on one trunk,
real/fake and the 10 digit classes; D maximises L_S + L_C (L_C's real half only by default, see
below), G maximises L_C - L_S (its L_S part non-saturating). Adam lr 2e-4, betas (0.5, 0.999), batch 64, each fake drawn for the label of a
real digit of the batch. --fake-class-weight w weighs D's class loss on the fakes (1: the
paper's L_C; 0, the default: D's class head learns from real digits only, so it cannot learn to
read marks G leaves on its fakes). The run folder (--out) receives, as training goes:

    samples_epoch001.png ...   a 10x10 grid every epoch: row k is digit k, column j one noise
    checkpoint.npz             every epoch (or --checkpoint-every iterations) and at the end, with
                               extra["generator"]: G's class, its arguments and the latent layout
    metrics.jsonl              a record per checkpoint: mean losses, D(x), D(G(z)), the auxiliary
                               classifier's accuracy on real and fake batches, images/s, and
                               label accuracy (20 samples per digit, by the shipped LeNet)
    samples_final.png, losses.png, and the final record on 2,000 samples (200 per digit):
    label accuracy, FID, classifier score, intra-class diversity beside real digits'; the
    samples themselves in eval_samples.npy (float32 (2000, 1, 28, 28) in [-1, 1]) and their
    requested digits in eval_labels.npy (int64 (2000,))

--resume continues a run exactly (CPU); a NaN or infinite loss stops training before any update
is made with it and keeps the last good checkpoint.
"""
import argparse
import sys

import numpy as np

import minigan as mg
from minigan import backend, io, optim
from minigan.data import Batches
from minigan.gan.acgan import acgan_train_step, make_acgan
from minigan.gan.conditional import generate_conditional, label_accuracy
from minigan.gan.rebuild import generator_record
from minigan.gan.train import sample_noise

from ._common import TrainingRun, add_common_args, check_args
from .cgan_mnist import DIGITS, grid_inputs, load_labelled_images, load_metrics_classifier, save_grid

# Iterations of the default run: twice the cGAN's default length (the same generator, a D of the
# same size plus a 10-way head), ~0.07 s of one core's time an iteration (RESULTS.md, issue 13).
DEFAULT_ITERS = 5000
# D's class head learns from real digits only by default: trained on the fakes too (the paper's
# L_C, --fake-class-weight 1) it read G's fakes at 100% while the LeNet agreed on 0.83 of them
FAKE_CLASS_WEIGHT = 0.0
STAT_NAMES = ("loss_d", "loss_g", "d_real", "d_fake", "class_acc_real", "class_acc_fake")
EVAL_PER_DIGIT = 200


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_common_args(parser, iters=DEFAULT_ITERS, out="runs/acgan_mnist", width=32)
    parser.add_argument("--fake-class-weight", type=float, default=FAKE_CLASS_WEIGHT,
                        help="weight of D's class loss on the fakes (1: the paper's L_C; "
                             "0: D's class head learns from real digits only)")
    args = parser.parse_args(argv)
    check_args(args)
    if not args.fake_class_weight >= 0:
        sys.exit(f"--fake-class-weight must be >= 0, got {args.fake_class_weight}")
    return args


def eval_inputs(nz, seed, per_digit=EVAL_PER_DIGIT):
    """Noise (10 * per_digit, nz) and labels (digit k repeated per_digit times) of the evaluation
    samples, from their own generator (the training streams are untouched)."""
    z = np.random.default_rng([seed, 3]).standard_normal((DIGITS * per_digit, nz))
    return z.astype(np.float32), np.repeat(np.arange(DIGITS), per_digit)


def final_metrics(G, args, device, classifier, run_dir):
    """Label accuracy, FID / classifier score and intra-class diversity (beside the real
    held-out digits') of one set of samples, which is saved with its labels."""
    from minigan import metrics
    z, labels = eval_inputs(args.nz, args.seed)
    samples = backend.as_numpy(generate_conditional(G, backend.to_device(z, device), labels))
    np.save(run_dir.path("eval_samples.npy"), samples.astype(np.float32))
    np.save(run_dir.path("eval_labels.npy"), labels.astype(np.int64))
    features, probs = classifier.outputs(samples)
    predicted = probs.argmax(axis=1)
    per_digit = np.array([(predicted[labels == k] == k).mean() for k in range(DIGITS)])
    print(f"label accuracy       {per_digit.mean():.3f}  (per digit: " +
          " ".join(f"{k}:{a:.2f}" for k, a in enumerate(per_digit)) + ")")
    result = metrics.evaluate_images(samples, classifier=classifier)
    print(metrics.format_metrics(result))
    generated = metrics.intra_class_diversity(features, labels, DIGITS)
    real, described = metrics.reference_diversity(classifier)
    ratio = metrics.diversity_ratio(generated, real)
    print(f"intra-class diversity {generated.mean:.3f} (real digits {real.mean:.3f}, "
          f"{described}; ratio {ratio:.3f})")
    return {"label_accuracy": float(per_digit.mean()), "label_accuracy_per_digit": per_digit,
            **result, "intra_class_diversity": generated.mean,
            "intra_class_diversity_per_digit": generated.per_class,
            "real_intra_class_diversity": real.mean, "diversity_ratio": ratio}


def main(argv=None):
    args = parse_args(argv)
    mg.manual_seed(args.seed)
    device = args.device

    images, labels, described = load_labelled_images(args)
    loader = Batches(backend.to_device(images, device), backend.to_device(labels, device),
                     batch_size=args.batch_size, seed=args.seed)
    G, D = make_acgan(args.nz, args.ngf, args.ndf)
    G.to(device)
    D.to(device)
    opt_g = optim.Adam(G.parameters(), lr=args.lr, betas=(0.5, 0.999))
    opt_d = optim.Adam(D.parameters(), lr=args.lr, betas=(0.5, 0.999))
    classifier = None if args.no_metrics or args.dataset != "mnist" else load_metrics_classifier()
    config = {"dataset": args.dataset, "images": len(images), "batch_size": args.batch_size,
              "lr": args.lr, "fake_class_weight": args.fake_class_weight, "seed": args.seed, "nz": args.nz, "ngf": args.ngf, "ndf": args.ndf}
    sampler = generator_record(G, {"nz": args.nz, "ngf": args.ngf, "nc": 1, "num_classes": DIGITS},
                               labels=DIGITS)
    run = TrainingRun(args, {"G": G, "D": D}, {"G": opt_g, "D": opt_d}, loader, config,
                      STAT_NAMES, per_epoch=len(loader), images_per_iteration=args.batch_size,
                      generator=sampler)
    print(f"{described}; {len(loader)} batches of {args.batch_size} per epoch; "
          f"training to iteration {run.total} on {device}; writing to {run.files.folder}")

    z_grid, y_grid = grid_inputs(args.nz, args.seed)
    batches = loader.forever()

    def one_iteration(step):
        real, y = next(batches)
        z = sample_noise(args.batch_size, args.nz, device)
        return acgan_train_step(G, D, opt_g, opt_d, mg.Tensor(real), y, z, step=step,
                                fake_class_weight=args.fake_class_weight)

    def shown(stats):
        return {"D": stats.loss_d, "G": stats.loss_g, "D(x)": stats.d_real,
                "D(G(z))": stats.d_fake, "acc": stats.class_acc_fake}

    def on_checkpoint(record, progress):
        if classifier is not None:
            record["label_accuracy"] = label_accuracy(G, classifier, 20, seed=args.seed).accuracy
            progress.write(f"iteration {run.step}: label accuracy {record['label_accuracy']:.3f}")

    if not run.train(one_iteration, shown, lambda path: save_grid(G, z_grid, y_grid, path, device),
                     on_checkpoint):
        return 1
    save_grid(G, z_grid, y_grid, run.files.samples("final"), device)
    if run.history["loss_d"]:
        io.plot_curves({"D loss (L_S + L_C)": run.history["loss_d"],
                        "G loss": run.history["loss_g"]},
                       run.files.losses, title="ACGAN on MNIST", xlabel="iteration", ylabel="loss")
    run.finish({} if classifier is None else final_metrics(G, args, device, classifier, run.files))
    return 0


if __name__ == "__main__":
    sys.exit(main())
