"""examples.cyclegan_mnist at a tiny size: a short run writes everything the issue lists, and a
run stopped after a checkpoint and resumed ends exactly where an uninterrupted one does (models,
Adam moments, image pools, both loaders)."""
import json
import os

import numpy as np
import pytest

from examples import cyclegan_mnist
from minigan import io
from minigan.gan.cyclegan import CycleGAN

TINY = ["--batch-size", "2", "--ngf", "4", "--ndf", "4", "--n-blocks", "1", "--bundled",
        "--no-progress", "--pool-size", "3"]


def test_short_run_writes_grids_metrics_translations_and_architectures(tmp_path):
    out = str(tmp_path / "run")
    assert cyclegan_mnist.main(TINY + ["--iters", "3", "--out", out, "--eval-images", "60"]) == 0
    for name in ("samples_final.png", "losses.png", "checkpoint.npz", "metrics.jsonl",
                 "b_to_a.npy", "b_to_a_labels.npy"):
        assert os.path.isfile(os.path.join(out, name)), name
    b_to_a = np.load(os.path.join(out, "b_to_a.npy"))
    labels = np.load(os.path.join(out, "b_to_a_labels.npy"))
    assert b_to_a.shape == (60, 1, 28, 28) and labels.shape == (60,)
    assert -1 <= b_to_a.min() and b_to_a.max() <= 1
    final = io.read_jsonl(os.path.join(out, "metrics.jsonl"))[-1]
    for key in ("identity_preservation", "lenet_accuracy_b_untranslated", "lenet_accuracy_real_a",
                "reconstruction_l1_a_b_a", "fid_b_to_a", "fid_b_untranslated",
                "identity_preservation_dark_strokes", "identity_preservation_light_strokes"):
        assert np.isfinite(final[key]), key
    assert final["lenet_accuracy_real_a"] > 0.9   # the LeNet reads real digits
    share = final["share_dark_strokes"]
    assert 0.2 < share < 0.8   # both polarities are in domain B
    assert final["identity_preservation"] == pytest.approx(
        share * final["identity_preservation_dark_strokes"]
        + (1 - share) * final["identity_preservation_light_strokes"])
    # the checkpoint says how to rebuild each network, for a sampler
    extra = io.load_checkpoint(os.path.join(out, "checkpoint.npz"))["extra"]
    arch = extra["architectures"]
    assert arch["F"] == {"class": "minigan.gan.cyclegan.ResnetGenerator",
                         "kwargs": {"in_channels": 3, "out_channels": 3, "ngf": 4, "n_blocks": 1,
                                    "n_downsampling": 2}}
    assert arch["D_X"]["class"] == "minigan.gan.cyclegan.PatchDiscriminator"


def test_stopped_and_resumed_run_matches_an_uninterrupted_one(tmp_path, monkeypatch):
    straight, stopped = str(tmp_path / "straight"), str(tmp_path / "stopped")
    flags = TINY + ["--iters", "6", "--checkpoint-every", "3", "--no-metrics"]
    assert cyclegan_mnist.main(flags + ["--out", straight]) == 0

    original = CycleGAN.train_step

    def stop_at_four(self, real_x, real_y, step=None):
        if step == 4:
            raise KeyboardInterrupt
        return original(self, real_x, real_y, step)

    monkeypatch.setattr(CycleGAN, "train_step", stop_at_four)
    with pytest.raises(KeyboardInterrupt):
        cyclegan_mnist.main(flags + ["--out", stopped])
    monkeypatch.setattr(CycleGAN, "train_step", original)
    assert io.load_checkpoint(os.path.join(stopped, "checkpoint.npz"))["step"] == 3
    assert cyclegan_mnist.main(flags + ["--out", stopped, "--resume"]) == 0

    a = io.load_checkpoint(os.path.join(straight, "checkpoint.npz"))
    b = io.load_checkpoint(os.path.join(stopped, "checkpoint.npz"))
    assert a["step"] == b["step"] == 6
    for kind in ("models", "optimizers"):
        for name in a[kind]:
            _same(a[kind][name], b[kind][name], f"{kind}/{name}")
    _same(a["extra"]["state"], b["extra"]["state"], "pools")
    _same(a["loader"], b["loader"], "loaders")
    assert len(a["extra"]["state"]["pool_X"]["images"]) == 3   # full: the random path ran


def _same(x, y, where):
    if isinstance(x, dict):
        assert list(x) == list(y), where
        for k in x:
            _same(x[k], y[k], f"{where}/{k}")
    elif isinstance(x, (list, tuple)):
        assert len(x) == len(y), where
        for i, (p, q) in enumerate(zip(x, y)):
            _same(p, q, f"{where}/{i}")
    elif isinstance(x, np.ndarray):
        np.testing.assert_array_equal(x, y, err_msg=where)
    else:
        assert x == y or json.dumps(x) == json.dumps(y), where


def test_negative_is_the_colour_negative_of_images_in_minus_one_one():
    images = np.array([[-1.0, 0.0, 1.0]], np.float32)
    np.testing.assert_array_equal(cyclegan_mnist.negative(images), [[1.0, -0.0, -1.0]])
    # uint8 view: 255 - pixel, as B's construction with colour 1 - c on texture 1 - t
    np.testing.assert_array_equal((cyclegan_mnist.negative(images) + 1) * 127.5,
                                  255 - (images + 1) * 127.5)


@pytest.mark.slow
def test_default_run_keeps_the_digit_in_90_percent_of_translations(tmp_path):
    out = str(tmp_path / "run")
    assert cyclegan_mnist.main(["--bundled", "--no-progress", "--out", out]) == 0
    final = io.read_jsonl(os.path.join(out, "metrics.jsonl"), strict=True)[-1]
    assert final["identity_preservation"] >= 0.90, final
