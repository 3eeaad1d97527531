"""Train CycleGAN between MNIST digits (domain A) and MNIST-M-like colour digits (domain B).

    python -m examples.cyclegan_mnist                   # the default run (see DEFAULT_ITERS)
    python -m examples.cyclegan_mnist --resume          # continue the run in --out
    python -m examples.cyclegan_mnist --iters 2 --batch-size 2 --ngf 4 --ndf 4 --out /tmp/smoke

The pair is unpaired and offline (:func:`minigan.data.digit_domains`): A is the first half of
the training digits (grey, in 3 channels), B is drawn from the OTHER half by
:func:`minigan.data.mnist_m` (restroked, coloured, blended over colour textures), so no image
of A has its partner in B; B's labels are used only to evaluate. The model is
:class:`minigan.gan.cyclegan.CycleGAN`: ResNet generators G: A -> B and F: B -> A, PatchGAN
discriminators D_X (on A) and D_Y (on B), least-squares losses, cycle loss (lambda 10), identity
loss (0.5 lambda), pools of 50 fakes, Adam 2e-4 (0.5, 0.999) decaying linearly to 0 over the
second half of the iterations. One term is not the paper's: --lambda-invert (default 0.5, a
fraction of lambda) adds ||F(-y) - F(y)||_1, since a B image and its colour negative show the same
digit. Without it F keeps brightness order, and a digit drawn darker than its texture comes back
as an outline or another digit (about half of B; identity preservation 62-64% instead of ~92%,
benchmarks/RESULTS.md, issue 14); --lambda-invert 0 is the paper's objective. The run folder
(--out) receives:

    samples_epoch001.png ...  rows of: A | G(A) | F(G(A)) | B | F(B) | G(F(B)) for fixed held-out
                              images, at every epoch's end (samples_final.png at the end)
    checkpoint.npz            models, optimizers, image pools, loaders, step; what rebuilds each
                              network under extra/architectures (class + constructor arguments)
    metrics.jsonl             a record per checkpoint, then the final metrics
    losses.png                the loss curves
    b_to_a.npy, b_to_a_labels.npy   the held-out B images translated to A (grey, (N, 1, 28, 28)
                              in [-1, 1], as examples.evaluate reads them) and their source
                              digits' labels

The final metrics: identity preservation (the share of held-out B images whose translation F(b)
the shipped LeNet classifies as the source digit), with the LeNet's accuracy on the same images
untranslated (grey) and on real A digits for scale; the A -> B -> A reconstruction error
(mean |F(G(a)) - a| on held-out A, pixels in [-1, 1]); the FID of F(B) against real A digits
(and of untranslated B, for scale). --resume continues a stopped run exactly (same --iters).
"""
import argparse
import sys
import time

import numpy as np

import minigan as mg
from minigan import backend, io
from minigan.data import Batches, digit_domains, load_bundled, load_mnist, rgb_to_grey
from minigan.gan.cyclegan import (CycleGAN, PatchDiscriminator, ResnetGenerator, linear_decay,
                                  spec)
from minigan.gan.train import generate

from ._common import TrainingRun, add_common_args, check_args

# The default run, batch 8: 10.7 epochs of the bundled halves, within the 20-minute budget on
# 2 cores; its time and metrics are in benchmarks/RESULTS.md (issue 14).
DEFAULT_ITERS = 3000
STAT_NAMES = ("loss_g", "loss_gan", "loss_cycle", "loss_identity", "loss_d_x", "loss_d_y",
              "loss_consistency")
LAMBDA_INVERT = 0.5   # B and its colour negative translate alike (RESULTS.md, issue 14)
GRID_IMAGES = 8


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_common_args(parser, iters=DEFAULT_ITERS, batch_size=8, out="runs/cyclegan_mnist",
                    width=16, lr_help="Adam's initial learning rate, all four networks")
    parser.set_defaults(ndf=32)
    parser.add_argument("--n-blocks", type=int, default=3, help="residual blocks per generator")
    parser.add_argument("--d-layers", type=int, default=1,
                        help="PatchGAN stride-2 layers: 1 sees 16x16 patches, 2 34x34, 3 70x70")
    parser.add_argument("--lambda-cycle", type=float, default=10.0)
    parser.add_argument("--lambda-identity", type=float, default=0.5,
                        help="identity loss weight, as a fraction of --lambda-cycle")
    parser.add_argument("--lambda-invert", type=float, default=LAMBDA_INVERT,
                        help="weight (a fraction of --lambda-cycle) of ||F(-y) - F(y)||_1: a B "
                             "image and its colour negative show the same digit, so F must "
                             "translate both alike (0: the paper's objective)")
    parser.add_argument("--pool-size", type=int, default=50)
    parser.add_argument("--domain-seed", type=int, default=0,
                        help="seed that draws domain B (textures, colours, stroke widths)")
    parser.add_argument("--eval-images", type=int, default=2000,
                        help="held-out images for the final metrics (at most the test split)")
    args = parser.parse_args(argv)
    check_args(args)
    if args.dataset != "mnist":
        sys.exit("cyclegan_mnist translates MNIST digits; --dataset must be mnist")
    for name in ("n_blocks", "d_layers", "eval_images"):
        if getattr(args, name) < 1:
            sys.exit(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
    if min(args.pool_size, args.lambda_cycle, args.lambda_identity, args.lambda_invert) < 0:
        sys.exit("--pool-size, --lambda-cycle, --lambda-identity and --lambda-invert must be >= 0")
    return args


def load_digits(args):
    """(train images, labels, test images, labels, description): full MNIST when a local copy
    is found (--data-dir, $MINIGAN_DATA, the cache; never a download), else the bundled subset."""
    if args.bundled:
        train, test = load_bundled("train"), load_bundled("test")
        return (*train, *test, "bundled 5,000-digit MNIST subset")
    train = load_mnist("train", data_dir=args.data_dir, download=False)
    test = load_mnist("test", data_dir=args.data_dir, download=False)
    return (*train, *test, f"MNIST ({train.source['source']})")


def unit(images):
    return (images.astype(np.float32) / np.float32(127.5) - 1).astype(np.float32)


def negative(images):
    """The colour negative of images in [-1, 1] (255 - pixel in uint8): B's construction is
    symmetric under it (a stroke of colour c on texture t becomes 1 - c on 1 - t), so it keeps
    the digit."""
    return -images


class UnpairedBatches:
    """Two loaders drawn independently (their own shuffles), one batch of each per iteration;
    saved and restored together, so a resumed run sees the same pairs of batches."""

    def __init__(self, a, b):
        self.a, self.b = a, b

    def __len__(self):
        return min(len(self.a), len(self.b))

    def forever(self):
        return zip(self.a.forever(), self.b.forever())

    def get_state(self):
        return {"A": self.a.get_state(), "B": self.b.get_state()}

    def set_state(self, state):
        self.a.set_state(state["A"])
        self.b.set_state(state["B"])


def translate(net, images, device):
    """net(images) without a graph, in batches; a NumPy array."""
    return backend.as_numpy(generate(net, mg.Tensor(backend.to_device(images, device)), 250))


def save_translation_grid(model, a, b, path, device):
    """Rows of A | G(A) | F(G(A)) | B | F(B) | G(F(B)) for the images a and b."""
    fake_b = translate(model.G, a, device)
    rec_a = translate(model.F, fake_b, device)
    fake_a = translate(model.F, b, device)
    rec_b = translate(model.G, fake_a, device)
    rows = np.stack([a, fake_b, rec_a, b, fake_a, rec_b], axis=1)
    return io.save_image_grid(rows.reshape((-1,) + a.shape[1:]), path, nrow=6, scale=3)


def dark_strokes(domains, n):
    """bool (n,): held-out B images whose digit is darker than its background (mean luminance
    of the source digit's stroke pixels below that of its empty pixels); F must invert these."""
    rgb = domains["test_b"][:n].astype(np.float64)
    luminance = 0.299 * rgb[:, 0] + 0.587 * rgb[:, 1] + 0.114 * rgb[:, 2]
    digits = domains["test_a"][:n, 0]
    stroke, empty = digits > 128, digits == 0
    return np.array([luminance[i][stroke[i]].mean() < luminance[i][empty[i]].mean()
                     for i in range(len(rgb))])


def preservation_by_polarity(predicted, labels, dark):
    """Identity preservation of the dark-stroke and the light-stroke B images separately."""
    right = np.asarray(predicted) == np.asarray(labels)
    return {"identity_preservation_dark_strokes": float(right[dark].mean()) if dark.any() else None,
            "identity_preservation_light_strokes": float(right[~dark].mean())
            if (~dark).any() else None,
            "share_dark_strokes": float(dark.mean())}


def translation_metrics(model, domains, n, device):
    """The final numbers (module docstring), and F(held-out B) as grey (N, 1, 28, 28) + labels."""
    from minigan import metrics
    classifier = metrics.load_classifier()
    test_b, labels = unit(domains["test_b"][:n]), domains["test_b_labels"][:n]
    test_a = unit(domains["test_a"][:n])
    b_to_a = rgb_to_grey(translate(model.F, test_b, device))[:, None]
    reconstruction = translate(model.F, translate(model.G, test_a, device), device)
    real_a = rgb_to_grey(unit(domains["train_a"]))[:, None]
    b_grey = rgb_to_grey(test_b)[:, None]
    result = {
        "identity_preservation": classifier.accuracy(b_to_a, labels),
        "lenet_accuracy_b_untranslated": classifier.accuracy(b_grey, labels),
        "lenet_accuracy_real_a": classifier.accuracy(rgb_to_grey(test_a)[:, None],
                                                     domains["test_a_labels"][:n]),
        "reconstruction_l1_a_b_a": float(np.abs(reconstruction - test_a).mean()),
        "fid_b_to_a": metrics.fid(real_a, b_to_a, classifier),
        "fid_b_untranslated": metrics.fid(real_a, b_grey, classifier),
        "n_eval": int(len(labels)), "n_real_a": int(len(real_a)),
    }
    result.update(preservation_by_polarity(classifier.predict(b_to_a), labels,
                                           dark_strokes(domains, n)))
    return result, b_to_a, labels


def main(argv=None):
    args = parse_args(argv)
    mg.manual_seed(args.seed)
    device = args.device
    started = time.perf_counter()
    train, train_labels, test, test_labels, described = load_digits(args)
    domains = digit_domains(train, train_labels, test, test_labels, seed=args.domain_seed)
    loader = UnpairedBatches(
        Batches(backend.to_device(unit(domains["train_a"]), device), batch_size=args.batch_size,
                seed=args.seed),
        Batches(backend.to_device(unit(domains["train_b"]), device), batch_size=args.batch_size,
                seed=args.seed + 1))
    print(f"domains built in {time.perf_counter() - started:.1f} s")

    G = ResnetGenerator(3, 3, args.ngf, args.n_blocks).to(device)
    F = ResnetGenerator(3, 3, args.ngf, args.n_blocks).to(device)
    D_X = PatchDiscriminator(3, args.ndf, args.d_layers).to(device)
    D_Y = PatchDiscriminator(3, args.ndf, args.d_layers).to(device)
    model = CycleGAN(G, F, D_X, D_Y, lr=args.lr, lambda_cycle=args.lambda_cycle,
                     lambda_identity=args.lambda_identity, pool_size=args.pool_size,
                     seed=args.seed, lambda_consistency=args.lambda_invert,
                     consistency_transform=negative)
    config = {"images": len(train), "domain_seed": args.domain_seed,
              "batch_size": args.batch_size, "lr": args.lr, "seed": args.seed, "ngf": args.ngf,
              "ndf": args.ndf, "n_blocks": args.n_blocks, "d_layers": args.d_layers,
              "lambda_cycle": args.lambda_cycle, "lambda_identity": args.lambda_identity,
              "pool_size": args.pool_size, "lambda_invert": args.lambda_invert}
    static = {"architectures": {name: spec(net) for name, net in model.models.items()},
              "domains": {"X": "A: MNIST digits, grey in 3 channels, [-1, 1]",
                          "Y": "B: minigan.data.mnist_m colour digits, [-1, 1]"}}
    run = TrainingRun(args, model.models, model.optimizers, loader, config, STAT_NAMES,
                      per_epoch=len(loader), images_per_iteration=2 * args.batch_size,
                      state={"pool_X": model.pool_X, "pool_Y": model.pool_Y}, static=static)
    print(f"{described}: {len(domains['train_a'])} A and {len(domains['train_b'])} B training "
          f"images (unpaired halves); {len(loader)} batches of {args.batch_size} per epoch; "
          f"training to iteration {run.total} on {device}; writing to {run.files.folder}")

    grid_a = unit(domains["test_a"][:GRID_IMAGES])
    grid_b = unit(domains["test_b"][GRID_IMAGES:2 * GRID_IMAGES])
    batches = loader.forever()
    cpu_start = time.process_time()

    def one_iteration(step):
        real_a, real_b = next(batches)
        model.set_lr(linear_decay(step, run.total, args.lr))
        return model.train_step(mg.Tensor(real_a), mg.Tensor(real_b), step=step)

    def shown(stats):
        return {"G": stats.loss_g, "cyc": stats.loss_cycle, "D_X": stats.loss_d_x,
                "D_Y": stats.loss_d_y}

    def on_checkpoint(record, progress):
        record["lr"] = linear_decay(max(run.step, 1), run.total, args.lr)

    def save_grid(path):
        save_translation_grid(model, grid_a, grid_b, path, device)

    if not run.train(one_iteration, shown, save_grid, on_checkpoint):
        return 1
    cpu_seconds = time.process_time() - cpu_start
    save_grid(run.files.samples("final"))
    if run.history["loss_g"]:
        io.plot_curves({"G + F total": run.history["loss_g"],
                        "cycle": run.history["loss_cycle"],
                        "D_X": run.history["loss_d_x"], "D_Y": run.history["loss_d_y"]},
                       run.files.losses, title="CycleGAN, MNIST <-> MNIST-M-like",
                       xlabel="iteration", ylabel="loss")
    record = {"cpu_seconds": cpu_seconds}
    if not args.no_metrics:
        result, b_to_a, labels = translation_metrics(model, domains, args.eval_images, device)
        np.save(run.files.path("b_to_a.npy"), b_to_a.astype(np.float32))
        np.save(run.files.path("b_to_a_labels.npy"), np.asarray(labels, np.int64))
        print(f"identity preservation {result['identity_preservation']:.3f} (LeNet on B "
              f"untranslated {result['lenet_accuracy_b_untranslated']:.3f}, on real A "
              f"{result['lenet_accuracy_real_a']:.3f}); A->B->A L1 "
              f"{result['reconstruction_l1_a_b_a']:.4f}; FID B->A vs real A "
              f"{result['fid_b_to_a']:.2f} (B untranslated {result['fid_b_untranslated']:.2f}); "
              f"preservation of dark strokes {result['identity_preservation_dark_strokes']:.3f}, "
              f"light strokes {result['identity_preservation_light_strokes']:.3f}")
        record.update(result)
    run.finish(record)
    return 0


if __name__ == "__main__":
    sys.exit(main())
