"""Train the LeNet-style MNIST classifier behind minigan's quality metrics, with minigan itself.

    python -m examples.train_mnist_classifier                 # writes minigan/metrics/lenet_mnist.npz
    python -m examples.train_mnist_classifier --bundled --epochs 20 --out /tmp/lenet.npz
    python -m examples.train_mnist_classifier --device cuda   # on an NVIDIA GPU (CuPy)

Data: ``minigan.data.load_mnist`` ("train" to fit, "test" to report accuracy on held-out digits).
Offline it falls back to the bundled 5,000-digit subset: 4,500 to train, a fixed hold-out of
50 per class to test. ``--bundled`` uses that subset even where full MNIST is found, as the
shipped weights do (the metrics' tests check accuracy on that hold-out).

Training: Adam, cross-entropy, a cosine learning-rate decay to zero, and random shifts of up
to ``--shift`` pixels (the 4,500 digits are few: shifted copies are cheap extra data).
The held-out accuracy after the last epoch is saved with the weights, with the data source,
the date, the seed and the training time.

``--device cuda`` trains the network on a GPU. The shuffling and the shifts are drawn on the CPU
as before and each batch is moved there, so a seed gives the same batches on either device; the
weights are written from host NumPy copies (``state_dict``), so the file loads on any machine.
"""
import argparse
import math
import time

import numpy as np

import minigan
import minigan.functional as F
from minigan import backend, optim
from minigan.data import Batches, load_bundled, load_mnist, to_unit_range
from minigan.metrics.classifier import WEIGHTS_PATH, LeNet, MnistClassifier, save_classifier

from ._common import add_device_arg, check_device, seed_arg


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--epochs", type=int, default=20)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--lr", type=float, default=2e-3, help="Adam's initial learning rate")
    p.add_argument("--shift", type=int, default=2, help="largest random shift in pixels (0: none)")
    p.add_argument("--channels", type=int, nargs=2, default=(16, 32), metavar=("C1", "C2"),
                   help="output channels of the two convolutions")
    p.add_argument("--features", type=int, default=64, help="width of the feature layer")
    p.add_argument("--seed", type=seed_arg, default=0)
    p.add_argument("--bundled", action="store_true", help="train on the bundled 5,000-digit subset")
    p.add_argument("--data-dir", default=None, help="a folder holding the MNIST IDX files")
    p.add_argument("--out", default=WEIGHTS_PATH, help="where to write the weights (.npz)")
    add_device_arg(p, help="where the network trains: the CPU, or an NVIDIA GPU through CuPy")
    args = p.parse_args(argv)
    check_device(args.device)   # before any data is loaded
    return args


def load_data(args):
    """((train images, labels), (test images, labels), a description of the source)."""
    if args.bundled:
        return load_bundled("train"), load_bundled("test"), "bundled 5,000-digit MNIST subset"
    train = load_mnist("train", data_dir=args.data_dir)
    test = load_mnist("test", data_dir=args.data_dir)
    return tuple(train), tuple(test), f"{train.source['source']}: {train.source.get('note') or train.source['images']}"


def shifted(batch, shift, rng):
    """Each image of (B, 1, 28, 28) moved by its own random (dy, dx) in [-shift, shift]^2; the
    pixels moved in are background (-1)."""
    if shift == 0:
        return batch
    b, _, h, w = batch.shape
    padded = np.pad(batch[:, 0], ((0, 0), (shift, shift), (shift, shift)), constant_values=-1.0)
    dy, dx = rng.integers(0, 2 * shift + 1, size=(2, b))
    rows = dy[:, None] + np.arange(h)            # (B, 28): the rows of the padded image to take
    cols = dx[:, None] + np.arange(w)
    return padded[np.arange(b)[:, None, None], rows[:, :, None], cols[:, None, :]][:, None]


def train(args):
    minigan.manual_seed(args.seed)
    (x_train, y_train), (x_test, y_test), source = load_data(args)
    x_train, y_train = to_unit_range(x_train), y_train.astype(np.int64)
    print(f"training on {len(y_train)} digits, testing on {len(y_test)} held out ({source})")

    net = LeNet(channels=tuple(args.channels), features=args.features)
    net.to(args.device)   # weights drawn on the CPU from the seed, then moved, before Adam is made
    opt = optim.Adam(net.parameters(), lr=args.lr)
    batches = Batches(x_train, y_train, batch_size=args.batch_size, seed=args.seed)
    rng = np.random.default_rng(args.seed + 1)
    total_steps, step = args.epochs * len(batches), 0
    started = time.perf_counter()
    for epoch in range(1, args.epochs + 1):
        net.train()
        loss_sum = correct = seen = 0
        for xb, yb in batches:
            # cosine decay from lr to 0 over the whole run, set before each step
            opt.param_groups[0]["lr"] = args.lr * 0.5 * (1 + math.cos(math.pi * step / total_steps))
            # the batch is shuffled and shifted on the CPU, then moved to the network's device
            logits = net(minigan.Tensor(shifted(xb, args.shift, rng), device=args.device))
            loss = F.cross_entropy(logits, yb)   # the labels follow the logits to their device
            opt.zero_grad()
            loss.backward()
            opt.step()
            step += 1
            loss_sum += loss.item() * len(yb)
            correct += int((backend.as_numpy(logits.data.argmax(axis=1)) == yb).sum())
            seen += len(yb)
        accuracy = MnistClassifier(net).accuracy(x_test, y_test)
        print(f"epoch {epoch:3d}  loss {loss_sum / seen:.4f}  train acc {correct / seen:.4f}  "
              f"held-out acc {accuracy:.4f}  {time.perf_counter() - started:6.1f} s", flush=True)
    seconds = time.perf_counter() - started
    meta = save_classifier(net, args.out, {
        "heldout_accuracy": accuracy, "heldout_count": int(len(y_test)),
        "train_count": int(len(y_train)), "data_source": source, "epochs": args.epochs,
        "batch_size": args.batch_size, "lr": args.lr, "shift": args.shift, "seed": args.seed,
        "train_seconds": round(seconds, 1), "minigan_version": minigan.__version__})
    print(f"held-out accuracy {accuracy:.4f} on {len(y_test)} digits after {seconds:.0f} s; "
          f"wrote {args.out} ({meta['date']})")
    return accuracy


if __name__ == "__main__":
    train(parse_args())
