"""Score a DCGAN run, or any file of images, with minigan's MNIST metrics.

    python -m examples.evaluate runs/dcgan_mnist             # the run folder's checkpoint.npz
    python -m examples.evaluate runs/dcgan_mnist/checkpoint.npz --n 5000
    python -m examples.evaluate --images samples.npy         # images from anywhere
    python -m examples.evaluate --images samples.npz --key fake --value-range 0 1

Printed: FID against real held-out digits (on the features of minigan's LeNet, not Inception,
so not comparable with published MNIST FIDs), the classifier score (1..10), the mean
confidence, and the share of samples predicted as each digit. A baseline line gives the FID of as
many *real* training digits against the same held-out set: FID is biased upwards for small sets,
and that is the value a perfect generator would get at this sample size.

A run's samples are drawn from the noise the training run used for its own final metrics
(NumPy's generator seeded with [seed, 3], seed from the checkpoint), so with the default --n
the numbers match the final record of the run's metrics.jsonl.

Image files: .npy holding one array, or .npz holding one array (or several: pick with --key);
shapes (N, 28, 28), (N, 1, 28, 28), (N, 28, 28, 1) or (N, 784); uint8 pixels 0..255, or floats
in --value-range (default -1 1: a tanh generator's output).
"""
import argparse
import json
import os
import sys

import numpy as np

import minigan as mg
from minigan import backend, io, metrics
from minigan.data import load_mnist
from minigan.gan import rebuild
from minigan.gan.models import Generator
from minigan.gan.train import generate

from ._common import add_device_arg, check_device, seed_arg

FINAL_METRICS_SAMPLES = 2000   # what examples/dcgan_mnist.py scores at the end of a run


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("run", nargs="?", help="a run folder (holding checkpoint.npz) or a checkpoint file")
    p.add_argument("--images", help="score the images in this .npy / .npz file instead of a run")
    p.add_argument("--key", help="the array to take from an .npz holding several")
    p.add_argument("--value-range", type=float, nargs=2, default=(-1.0, 1.0), metavar=("LOW", "HIGH"),
                   help="the range float pixels are scaled to (default -1 1)")
    p.add_argument("--n", type=int, default=FINAL_METRICS_SAMPLES, help="samples to draw from a run")
    p.add_argument("--seed", type=seed_arg, default=None,
                   help="noise seed for a run's samples (default: the run's own seed)")
    p.add_argument("--model", default=None,
                   help="which of the checkpoint's models to score (default: the generator the "
                        "run recorded, e.g. the DCGAN example's EMA generator, else 'G')")
    add_device_arg(p, help="where G runs")
    p.add_argument("--real", help="a .npy / .npz of real images for FID (default: held-out digits)")
    p.add_argument("--no-baseline", action="store_true", help="skip the real-vs-real FID line")
    p.add_argument("--classifier", help="classifier weights (default: the shipped ones)")
    p.add_argument("--json", action="store_true", help="print the results as one JSON object")
    args = p.parse_args(argv)
    if (args.run is None) == (args.images is None):
        p.error("give either a run folder / checkpoint, or --images FILE (not both)")
    if args.n < 2:
        p.error(f"--n must be >= 2 (FID needs a covariance), got {args.n}")
    check_device(args.device)
    return args


def load_image_file(path, key=None):
    """The image array in a .npy file, or in an .npz (its only array, or the one named ``key``)."""
    if not os.path.isfile(path):
        sys.exit(f"no such image file: {path}")
    try:
        loaded = np.load(path, allow_pickle=False)
    except ValueError as e:
        sys.exit(f"{path} cannot be read without pickle ({e}); save a plain numeric array with np.save")
    if isinstance(loaded, np.ndarray):
        return loaded
    with loaded:
        names = loaded.files
        if key is None and len(names) != 1:
            sys.exit(f"{path} holds several arrays {names}: choose one with --key")
        name = key if key is not None else names[0]
        if name not in names:
            sys.exit(f"{path} has no array named {name!r}; it holds {names}")
        return loaded[name]


def checkpoint_path(run):
    path = os.path.join(run, "checkpoint.npz") if os.path.isdir(run) else run
    if not os.path.isfile(path):
        sys.exit(f"no checkpoint at {path} (pass a run folder written by examples/dcgan_mnist.py, "
                 "or its checkpoint.npz)")
    return path


def load_generator(path, model=None):
    """(Generator with the checkpoint's weights, the run's config dict).

    The generator its run recorded (:mod:`minigan.gan.rebuild`) when it is an unconditional one;
    otherwise model 'G', its sizes taken from the weights themselves (the first layer's weight
    is (nz, 4 ngf, 7, 7), the last one's (2 ngf, nc, 4, 4)), so an older checkpoint still loads."""
    state = io.load_checkpoint(path)
    models = state.get("models") or {}
    config = dict((state.get("extra") or {}).get("config") or {})
    record = (state.get("extra") or {}).get("generator")
    if record is not None and set(record.get("latent", {})) in ({"nz"}, {"nz", "mixture"}):
        try:
            G, record, step = rebuild.load_generator(path, model=model)
        except rebuild.NotAGeneratorCheckpoint as e:
            sys.exit(str(e))
        config.update(nz=int(record["latent"]["nz"]), step=step, model=record["model"])
        return G, config
    model = model or "G"
    if model not in models:
        sys.exit(f"{path} holds no generator {model!r} (its models: {sorted(models)})")
    weights = models[model]
    if "net.0.weight" not in weights or "net.6.weight" not in weights:
        sys.exit(f"{path}: {model!r} is not the DCGAN generator of minigan.gan.models "
                 f"(its parameters: {sorted(weights)[:6]}...)")
    nz, ngf4 = weights["net.0.weight"].shape[:2]
    nc = weights["net.6.weight"].shape[1]
    G = Generator(nz=int(nz), ngf=int(ngf4) // 4, nc=int(nc))
    G.load_state_dict(weights)
    config.update(nz=int(nz), ngf=int(ngf4) // 4, step=int(state.get("step", 0)), model=model)
    return G, config


def run_samples(args):
    """(images (n, 1, 28, 28) in [-1, 1], a description) drawn from the run's generator."""
    path = checkpoint_path(args.run)
    G, config = load_generator(path, args.model)
    if config.get("dataset", "mnist") != "mnist":
        print(f"note: this run was trained on {config['dataset']}; the metrics look through an "
              "MNIST digit classifier, so read them with care", file=sys.stderr)
    seed = args.seed if args.seed is not None else int(config.get("seed", 0))
    z = np.random.default_rng([seed, 3]).standard_normal((args.n, config["nz"])).astype(np.float32)
    G.to(args.device)
    images = backend.as_numpy(generate(G, mg.Tensor(backend.to_device(z, args.device))))
    return images, (f"{args.n} samples of {path} ('{config['model']}', iteration "
                    f"{config['step']}, noise seed {seed})")


def baseline_fid(n, classifier):
    """FID of n real training digits (or as many as there are) against the held-out reference:
    what a generator matching the data exactly would score at this sample size."""
    train = load_mnist("train", download=False, verbose=False)
    count = min(n, len(train.images))
    chosen = np.random.default_rng(0).choice(len(train.images), count, replace=False)
    reference, _ = metrics.reference_images()
    return metrics.fid(reference, train.images[chosen], classifier=classifier), count


def main(argv=None):
    args = parse_args(argv)
    classifier = metrics.load_classifier(args.classifier)
    if args.images:
        images, what = load_image_file(args.images, args.key), f"images from {args.images}"
    else:
        images, what = run_samples(args)
    real = None if args.real is None else load_image_file(args.real)
    value_range = tuple(args.value_range) if args.images else (-1.0, 1.0)
    try:
        result = metrics.evaluate_images(images, real_images=real, classifier=classifier,
                                         value_range=value_range)
    except (ValueError, TypeError) as e:
        sys.exit(f"cannot score {what}: {e}")
    if not args.no_baseline and real is None:
        result["fid_real_baseline"], result["n_baseline"] = baseline_fid(result["n"], classifier)
    meta = classifier.metadata
    if args.json:
        print(json.dumps({**result, "class_shares": result["class_shares"].tolist(),
                          "what": what}))
        return 0
    print(what)
    print(metrics.format_metrics(result))
    if "fid_real_baseline" in result:
        print(f"baseline: FID of {result['n_baseline']} real training digits vs the same "
              f"reference: {result['fid_real_baseline']:.3f}")
    print(f"classifier: LeNet, {meta.get('heldout_accuracy', float('nan')):.1%} held-out accuracy "
          f"({meta.get('data_source', 'unknown data')}, {meta.get('date', 'undated')})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
