"""Label accuracy, FID and intra-class diversity of conditional generators beside real digits'.

    python benchmarks/conditional_diversity.py --acgan runs/acgan_mnist --cgan runs/cgan_mnist

Each run folder's checkpoint.npz is loaded (the ACGAN's from its extra["generator"] metadata, the
projection cGAN's from its config: both generators are ConditionalGenerator), 200 samples per
digit are drawn from the noise the ACGAN example scores (NumPy's generator seeded [seed, 3]),
and each set is scored by the shipped LeNet: label accuracy, FID against the real held-out
digits, and the mean within-class pairwise feature distance (minigan.metrics.diversity), also
for the real held-out digits themselves. Prints a table and a last JSON line. There is no
PyTorch column: this compares models, not speed.
"""
import argparse
import json
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _common  # noqa: E402,F401 - makes the checkout importable

from minigan import io, metrics  # noqa: E402
from minigan.gan.conditional import ConditionalGenerator, generate_conditional  # noqa: E402

PER_DIGIT = 200


def load_generator(run_dir):
    state = io.load_checkpoint(os.path.join(run_dir, "checkpoint.npz"))
    extra = state["extra"]
    meta = extra.get("generator")
    kwargs = (meta["kwargs"] if meta else
              {"nz": extra["config"]["nz"], "ngf": extra["config"]["ngf"]})
    G = ConditionalGenerator(**kwargs)
    G.load_state_dict(state["models"]["G"])
    return G, extra["config"]["seed"], int(state["step"])


def score(G, seed, classifier):
    z = np.random.default_rng([seed, 3]).standard_normal((10 * PER_DIGIT, G.nz))
    labels = np.repeat(np.arange(10), PER_DIGIT)
    samples = generate_conditional(G, z.astype(np.float32), labels)
    features, probs = classifier.outputs(samples)
    diversity = metrics.intra_class_diversity(features, labels)
    return {"label_accuracy": float((probs.argmax(axis=1) == labels).mean()),
            "fid": metrics.evaluate_images(samples, classifier=classifier)["fid"],
            "diversity": diversity.mean, "diversity_per_digit": diversity.per_class.tolist()}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--acgan", default="runs/acgan_mnist", help="ACGAN run folder")
    parser.add_argument("--cgan", default="runs/cgan_mnist", help="projection cGAN run folder")
    args = parser.parse_args(argv)
    classifier = metrics.load_classifier()
    real, described = metrics.reference_diversity(classifier)
    rows = {"real digits": {"label_accuracy": None, "fid": None, "diversity": real.mean,
                            "diversity_per_digit": real.per_class.tolist(), "step": None}}
    for name, folder in (("ACGAN", args.acgan), ("projection cGAN", args.cgan)):
        if not os.path.isfile(os.path.join(folder, "checkpoint.npz")):
            print(f"note: no checkpoint in {folder}; {name} left out")
            continue
        G, seed, step = load_generator(folder)
        rows[name] = {**score(G, seed, classifier), "step": step}
    print(f"{PER_DIGIT} samples per digit; real reference: {described}; load {os.getloadavg()}")
    print(f"{'model':<16} {'step':>6} {'label acc':>9} {'FID':>8} {'diversity':>9} {'ratio':>6}")
    for name, row in rows.items():
        acc = "" if row["label_accuracy"] is None else f"{row['label_accuracy']:.3f}"
        fid = "" if row["fid"] is None else f"{row['fid']:.1f}"
        step = "" if row["step"] is None else str(row["step"])
        print(f"{name:<16} {step:>6} {acc:>9} {fid:>8} {row['diversity']:>9.3f} "
              f"{row['diversity'] / real.mean:>6.3f}")
    print(json.dumps({"reference": described, "rows": rows}))


if __name__ == "__main__":
    main()
