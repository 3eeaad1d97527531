"""``--device`` on every example.

Without CuPy and a GPU, ``--device cuda`` stops every example with the one message of
``examples/_common.py`` (``check_device``) before it loads data, takes a step or writes a file.
With them (the tests marked ``gpu``, skipped with "no CUDA device (CuPy missing or no GPU)"
elsewhere), a tiny run of each example that trains through its own loop (gan_toy2d, gan_1d,
train_mnist_classifier) trains on the GPU, starts from the weights a CPU run starts from, and
writes host NumPy arrays to disk.
"""
import json

import numpy as np
import pytest

from examples import (_common, cgan_mnist, dcgan_mnist, evaluate, gan_1d, gan_toy2d,
                      train_mnist_classifier, wgan_mnist)
from minigan import backend
from minigan.data import load_bundled
from minigan.gan import toy2d
from minigan.metrics import load_classifier

NO_GPU = "no CUDA device (CuPy missing or no GPU)"
needs_gpu = pytest.mark.skipif(not backend.cupy_available(), reason=NO_GPU)
needs_no_gpu = pytest.mark.skipif(backend.cupy_available(), reason="CuPy and a GPU are present")


def _train_classifier(argv):
    """What ``python -m examples.train_mnist_classifier`` runs."""
    return train_mnist_classifier.train(train_mnist_classifier.parse_args(argv))


IMAGE_FLAGS = ["--iters", "1", "--bundled", "--no-progress", "--out", "OUT"]

# example -> (its module, its command line as a function of argv, the flags of a tiny run
# writing under OUT, the name in its module of the function that starts the work: it must never
# be reached)
EXAMPLES = {
    "gan_toy2d": (gan_toy2d, gan_toy2d.main, ["--steps", "2", "--no-progress", "--out", "OUT"],
                  "train_toy2d"),
    "gan_1d": (gan_1d, gan_1d.main, ["--steps", "2", "--out", "OUT/gan_1d.png"], "train_gan"),
    "train_mnist_classifier": (train_mnist_classifier, _train_classifier,
                               ["--bundled", "--epochs", "1", "--out", "OUT/lenet.npz"],
                               "load_data"),
    "dcgan_mnist": (dcgan_mnist, dcgan_mnist.main, IMAGE_FLAGS, "load_training_images"),
    "wgan_mnist": (wgan_mnist, wgan_mnist.main, IMAGE_FLAGS, "load_training_images"),
    "cgan_mnist": (cgan_mnist, cgan_mnist.main, IMAGE_FLAGS, "load_labelled_images"),
    "evaluate": (evaluate, evaluate.main, ["--images", "OUT/images.npy"], "load_image_file"),
}


def _argv(flags, out):
    return [flag.replace("OUT", str(out)) for flag in flags]


# --- without a GPU ------------------------------------------------------------------------------

@needs_no_gpu
@pytest.mark.parametrize("name", sorted(EXAMPLES))
def test_device_cuda_without_a_gpu_exits_with_the_shared_message_before_any_work(
        name, tmp_path, monkeypatch):
    module, run, flags, work = EXAMPLES[name]

    def refuse(*args, **kwargs):
        raise AssertionError(f"{name} started its work ({work}) before checking --device")

    monkeypatch.setattr(module, work, refuse)
    out = tmp_path / "run"
    with pytest.raises(SystemExit) as exit_info:
        run(_argv(flags, out) + ["--device", "cuda"])
    assert exit_info.value.code == _common.DEVICE_MISSING
    assert "needs CuPy and a CUDA GPU" in _common.DEVICE_MISSING   # says what is missing
    assert not out.exists(), f"{name} wrote {sorted(p.name for p in out.iterdir())}"


def test_the_device_is_cpu_by_default_and_an_unknown_one_is_refused():
    for module in (gan_toy2d, train_mnist_classifier):
        assert module.parse_args([]).device == "cpu"
        assert module.parse_args(["--device", "cpu"]).device == "cpu"
        with pytest.raises(SystemExit):        # argparse: invalid choice 'tpu'
            module.parse_args(["--device", "tpu"])
    _common.check_device("cpu")                # the CPU always passes


# --- on a GPU -----------------------------------------------------------------------------------

@pytest.mark.gpu
@needs_gpu
@pytest.mark.parametrize("loss", toy2d.LOSSES)
def test_gan_toy2d_trains_on_the_gpu_and_writes_numpy(tmp_path, loss):
    flags = ["--data", "ring", "--loss", loss, "--steps", "4", "--batch", "8", "--g-hidden", "8,8",
             "--d-hidden", "8", "--pack", "2", "--snapshots", "2", "--log-every", "2",
             "--seed", "1", "--no-progress"]
    run = gan_toy2d.main(flags + ["--out", str(tmp_path / "cuda"), "--device", "cuda"])
    assert all(p.device == "cuda" for p in run.generator.parameters())
    assert all(p.device == "cuda" for p in run.discriminator.parameters())
    samples = np.load(tmp_path / "cuda" / "samples.npy")
    assert samples.dtype == np.float64 and samples.shape == (2500, 2)
    np.testing.assert_array_equal(samples, run.samples)
    record = json.loads((tmp_path / "cuda" / "metrics.json").read_text())
    assert record["metrics"]["n_modes"] == 8
    assert all((tmp_path / "cuda" / name).exists() for name in ("gan_lab.png", "curves.png"))
    for snap in run.snapshots:
        assert isinstance(snap["fake"], np.ndarray) and isinstance(snap["heat"], np.ndarray)
    # the weights are drawn on the CPU and moved, so before any step the GPU's generator draws
    # what the CPU's does (to float32 rounding)
    cpu = gan_toy2d.main(flags + ["--out", str(tmp_path / "cpu")])
    np.testing.assert_allclose(run.snapshots[0]["fake"], cpu.snapshots[0]["fake"],
                               rtol=2e-4, atol=2e-4)


@pytest.mark.gpu
@needs_gpu
def test_gan_1d_trains_on_the_gpu_from_the_cpu_weights(tmp_path, capsys):
    G, D, _ = gan_1d.train_gan(steps=0, seed=3, device="cuda")
    G_cpu, D_cpu, _ = gan_1d.train_gan(steps=0, seed=3)
    for model, reference in ((G, G_cpu), (D, D_cpu)):
        assert all(p.device == "cuda" for p in model.parameters())
        for (name, a), b in zip(model.state_dict().items(), reference.state_dict().values()):
            np.testing.assert_array_equal(a, b, err_msg=name)   # moved, not redrawn
    x = gan_1d.sample(G, 100, np.random.default_rng(0), device="cuda")
    assert isinstance(x, np.ndarray) and x.shape == (100,)
    path = tmp_path / "gan_1d.png"
    gan_1d.main(["--steps", "20", "--out", str(path), "--device", "cuda"])
    assert path.exists()
    assert "generator mean" in capsys.readouterr().out


@pytest.mark.gpu
@needs_gpu
def test_train_mnist_classifier_trains_on_the_gpu_and_saves_weights_that_load_on_the_cpu(
        tmp_path):
    path = tmp_path / "lenet.npz"
    accuracy = _train_classifier(["--bundled", "--epochs", "1", "--channels", "4", "8",
                                  "--features", "16", "--out", str(path), "--device", "cuda"])
    assert 0.0 <= accuracy <= 1.0
    clf = load_classifier(path)                 # a plain npz: the weights load on the CPU
    assert all(p.device == "cpu" for p in clf.net.parameters())
    assert clf.metadata["heldout_accuracy"] == accuracy
    images, labels = load_bundled("test")
    # scored again on the CPU: the same predictions but for float32 rounding near a tie
    assert abs(clf.accuracy(images, labels) - accuracy) <= 0.01
