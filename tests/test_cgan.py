"""The conditional DCGAN: models that depend on the label, its training step, label accuracy (with
stub generators and classifiers whose answers are known), and the example end to end."""
import os

import numpy as np
import pytest

import minigan as mg
from minigan import functional as F
from minigan import io, nn, optim
from minigan.data import load_bundled, to_unit_range, write_idx
from minigan.gan import losses
from minigan.gan.conditional import (ConditionalDiscriminator, ConditionalGenerator,
                                     LabelAccuracy, conditional_train_step, generate_conditional,
                                     label_accuracy, make_conditional_dcgan, one_hot)
from minigan.gan.train import NonFiniteLossError, sample_noise

TINY = dict(nz=8, ngf=4, ndf=4)


def tiny_setup(batch=16, lr_d=2e-4, seed=0):
    mg.manual_seed(seed)
    G, D = make_conditional_dcgan(**TINY)
    opt_g = optim.Adam(G.parameters(), lr=2e-4, betas=(0.5, 0.999))
    opt_d = optim.Adam(D.parameters(), lr=lr_d, betas=(0.5, 0.999))
    rng = np.random.default_rng(seed)
    real = mg.Tensor(rng.uniform(-1, 1, (batch, 1, 28, 28)).astype(np.float32))
    labels = np.arange(batch) % 10
    return G, D, opt_g, opt_d, real, labels


def arrays(module):
    return {k: v.copy() for k, v in module.state_dict().items()}


# --- models ---------------------------------------------------------------------------------------

def test_one_hot_rows_are_identity_rows():
    like = mg.Tensor(np.zeros((4, 3), np.float32))
    y = one_hot(np.array([2, 0, 9, 2]), 10, like)
    assert y.dtype == np.float32 and not y.requires_grad
    np.testing.assert_array_equal(y.data, np.eye(10, dtype=np.float32)[[2, 0, 9, 2]])


@pytest.mark.parametrize("labels, error, match", [
    (np.array([0, 1, 10]), ValueError, r"\[0, 10\)"),
    (np.array([0, -1, 2]), ValueError, r"\[0, 10\)"),
    (np.array([0.0, 1.0, 2.0]), TypeError, "integers"),
    (np.array([0, 1]), ValueError, r"one label per sample, shape \(3,\)"),
    (np.zeros((3, 1), np.int64), ValueError, "one label per sample"),
])
def test_bad_labels_are_rejected_by_name(labels, error, match):
    G, D = make_conditional_dcgan(**TINY)
    with pytest.raises(error, match=match):
        G(sample_noise(3, 8), labels)
    with pytest.raises(error, match=match):
        D(mg.Tensor(np.zeros((3, 1, 28, 28), np.float32)), labels)


def test_shapes_and_ranges():
    G, D = make_conditional_dcgan(**TINY)
    z, y = sample_noise(6, 8), np.array([0, 1, 2, 3, 4, 9])
    x = G(z, y)
    assert x.shape == (6, 1, 28, 28) and x.data.min() >= -1 and x.data.max() <= 1
    assert D(x, y).shape == (6,)
    with pytest.raises(ValueError, match=r"noise of shape \(N, 8\)"):
        G(sample_noise(6, 9), y)
    with pytest.raises(ValueError, match=r"images of shape \(N, 1, 28, 28\)"):
        D(mg.Tensor(np.zeros((6, 1, 32, 32), np.float32)), y)


def test_the_generator_depends_on_the_label_and_only_on_each_samples_own():
    G, _ = make_conditional_dcgan(**TINY)
    G.apply(lambda m: nn.init.normal_(m.weight, 0, 0.3)
            if isinstance(m, nn.ConvTranspose2d) else None)   # wide enough to see differences
    z = sample_noise(10, 8).data
    labels = np.arange(10)
    images = generate_conditional(G, z, labels)
    changed = labels.copy()
    changed[3] = 7
    other = generate_conditional(G, z, changed)
    # in eval mode samples are independent: only sample 3 sees its new label
    differs = np.abs(other - images).reshape(10, -1).max(axis=1)
    assert differs[3] > 1e-2
    np.testing.assert_array_equal(np.delete(differs, 3), 0)
    # same z, each label: ten different pictures
    same_z = generate_conditional(G, np.repeat(z[:1], 10, axis=0), labels).reshape(10, -1)
    gaps = np.abs(same_z[:, None] - same_z[None]).max(axis=2) + np.eye(10)
    assert gaps.min() > 1e-3
    assert G.training   # generate_conditional restores the mode


def test_the_discriminator_depends_on_the_label():
    _, D = make_conditional_dcgan(**TINY)
    D.eval()
    x = mg.Tensor(np.random.default_rng(1).uniform(-1, 1, (10, 1, 28, 28)).astype(np.float32))
    with mg.no_grad():
        a = D(x, np.zeros(10, np.int64)).data
        b = D(x, np.arange(10)).data
    assert a[0] == b[0] and np.all(np.abs(a[1:] - b[1:]) > 1e-5)


def test_label_inputs_widen_the_dcgan_stacks():
    G, D = ConditionalGenerator(nz=8, ngf=4), ConditionalDiscriminator(ndf=4)
    assert G.net.net[0].weight.shape == (8 + 10, 16, 7, 7)
    assert D.features[0].weight.shape == (4, 2, 4, 4)
    assert D.head.weight.shape == (1, 8, 7, 7)
    assert D.label_map.weight.shape == (10, 28 * 28)
    assert D.projection.weight.shape == (10, 8 * 7 * 7)


def test_the_label_reaches_the_discriminator_only_through_its_map_and_projection():
    _, D = make_conditional_dcgan(**TINY)
    D.eval()
    x = mg.Tensor(np.random.default_rng(2).uniform(-1, 1, (4, 1, 28, 28)).astype(np.float32))
    with mg.no_grad():
        D.label_map.weight.data[:] = 0
        D.projection.weight.data[:] = 0
        logits = [D(x, np.full(4, k)).data for k in range(10)]
        np.testing.assert_array_equal(np.ptp(logits, axis=0), 0)
        D.projection.weight.data[7] = 1   # <P[7], h> = sum of the features h
        h = D.features(F.concat([x, mg.Tensor(np.zeros((4, 1, 28, 28), np.float32))], dim=1))
        shifted = D(x, np.full(4, 7)).data - logits[0]
    np.testing.assert_allclose(shifted, h.data.reshape(4, -1).sum(axis=1), rtol=1e-4, atol=1e-4)


# --- the training step ----------------------------------------------------------------------------

def test_a_few_steps_lower_the_discriminator_loss_on_a_fixed_batch():
    G, D, opt_g, opt_d, real, labels = tiny_setup(lr_d=2e-3)
    z = sample_noise(16, 8)
    first = conditional_train_step(G, D, opt_g, opt_d, real, labels, z)
    for _ in range(8):
        last = conditional_train_step(G, D, opt_g, opt_d, real, labels, z)
    assert last.loss_d < 0.8 * first.loss_d
    assert last.d_real > first.d_real


def test_the_step_trains_both_models_and_the_label_map():
    G, D, opt_g, opt_d, real, labels = tiny_setup()
    G_before, D_before = arrays(G), arrays(D)
    stats = conditional_train_step(G, D, opt_g, opt_d, real, labels, sample_noise(16, 8))
    assert all(np.isfinite(stats)) and 0 < stats.d_real < 1 and 0 < stats.d_fake < 1
    for model, before in ((G, G_before), (D, D_before)):
        for name, p in model.named_parameters():
            assert not np.array_equal(p.data, before[name]), name
    assert all(p.requires_grad for p in D.parameters())   # unfrozen after the G step


def test_reported_losses_match_the_loss_functions():
    G, D, opt_g, opt_d, real, labels = tiny_setup()
    z = sample_noise(16, 8)
    with mg.no_grad():   # D before the step (batch-norm statistics of the same batches)
        fake = G(z, labels)
        expected_d = losses.d_loss_minimax(D(real, labels), D(fake, labels)).item()
    G, D, opt_g, opt_d, real, labels = tiny_setup()
    stats = conditional_train_step(G, D, opt_g, opt_d, real, labels, sample_noise(16, 8))
    assert stats.loss_d == pytest.approx(expected_d, rel=1e-5)


def test_nan_loss_raises_before_any_update():
    G, D, opt_g, opt_d, real, labels = tiny_setup()
    real.data[0, 0, 0, 0] = np.nan
    G_before, D_before = arrays(G), arrays(D)
    with pytest.raises(NonFiniteLossError, match="discriminator loss is nan at step 5"):
        conditional_train_step(G, D, opt_g, opt_d, real, labels, sample_noise(16, 8), step=5)
    for model, before in ((G, G_before), (D, D_before)):
        for name, p in model.named_parameters():
            np.testing.assert_array_equal(p.data, before[name], err_msg=name)


# --- label accuracy -------------------------------------------------------------------------------

class LabelPainter(nn.Module):
    """A stub conditional generator: the image for label k is flat grey level -1 + 2k/9."""
    nz, num_classes = 3, 10

    def __init__(self):
        super().__init__()
        self.unused = nn.Parameter(np.zeros(1, np.float32))

    def forward(self, z, labels):
        level = -1 + 2 * np.asarray(labels, np.float32) / 9
        return mg.Tensor(np.broadcast_to(level[:, None, None, None], (z.shape[0], 1, 28, 28)))


class GreyReader:
    """A stub classifier that reads the grey level back as a class, confusing ``swap`` pairs."""

    def __init__(self, swap=None):
        self.swap, self.seen = dict(swap or {}), 0

    def predict(self, images):
        self.seen += len(images)
        k = np.rint((images.mean(axis=(1, 2, 3)) + 1) * 9 / 2).astype(np.int64)
        return np.array([self.swap.get(int(c), int(c)) for c in k])


def test_label_accuracy_counts_what_the_classifier_names():
    scored = label_accuracy(LabelPainter(), GreyReader(), n_per_class=7)
    assert isinstance(scored, LabelAccuracy)
    assert scored.accuracy == 1.0
    np.testing.assert_array_equal(scored.confusion, 7 * np.eye(10, dtype=np.int64))

    reader = GreyReader(swap={3: 5, 8: 0})
    scored = label_accuracy(LabelPainter(), reader, n_per_class=4)
    assert reader.seen == 40
    assert scored.accuracy == pytest.approx(0.8)
    expected = np.ones(10)
    expected[[3, 8]] = 0
    np.testing.assert_array_equal(scored.per_class, expected)
    assert scored.confusion[3, 5] == 4 and scored.confusion[8, 0] == 4
    assert scored.confusion.sum() == 40


def test_label_accuracy_through_the_real_classifier_equals_its_accuracy_on_replayed_digits():
    from minigan.metrics import load_classifier
    images, labels = load_bundled("test")
    digits = to_unit_range(images)
    by_class = [digits[labels == k][:20] for k in range(10)]

    class Replay(LabelPainter):   # "generates" the i-th held-out digit of the class asked for
        def forward(self, z, labels):
            counts = {}
            out = []
            for k in np.asarray(labels):
                i = counts[int(k)] = counts.get(int(k), -1) + 1
                out.append(by_class[int(k)][i])
            return mg.Tensor(np.stack(out))

    classifier = load_classifier()
    scored = label_accuracy(Replay(), classifier, n_per_class=20, batch_size=1000)
    direct = classifier.accuracy(np.concatenate(by_class), np.repeat(np.arange(10), 20))
    assert scored.accuracy == pytest.approx(direct)
    assert scored.accuracy > 0.9


def test_label_accuracy_rejects_bad_arguments():
    with pytest.raises(ValueError, match="n_per_class must be >= 1"):
        label_accuracy(LabelPainter(), GreyReader(), n_per_class=0)

    class Short(GreyReader):
        def predict(self, images):
            return super().predict(images)[:-1]

    with pytest.raises(ValueError, match="returned 19 predictions for 20 images"):
        label_accuracy(LabelPainter(), Short(), n_per_class=2)


# --- the example, end to end ----------------------------------------------------------------------

def write_digits(folder, n=48, seed=0):
    rng = np.random.default_rng(seed)
    write_idx(os.path.join(folder, "train-images-idx3-ubyte"),
              rng.integers(0, 256, (n, 28, 28), dtype=np.uint8))
    write_idx(os.path.join(folder, "train-labels-idx1-ubyte"),
              rng.integers(0, 10, n, dtype=np.uint8))
    return folder


def tiny_argv(out, *extra):
    return ["--nz", "8", "--ngf", "4", "--ndf", "4", "--batch-size", "16", "--no-progress",
            "--out", str(out), *extra]


def test_grid_rows_ask_for_one_digit_and_columns_share_noise():
    from examples.cgan_mnist import grid_inputs
    z, labels = grid_inputs(5, seed=0)
    assert z.shape == (100, 5) and labels.shape == (100,)
    np.testing.assert_array_equal(labels.reshape(10, 10), np.arange(10)[:, None].repeat(10, 1))
    np.testing.assert_array_equal(z.reshape(10, 10, 5), np.broadcast_to(z[:10], (10, 10, 5)))


def test_example_runs_end_to_end_and_writes_every_file(tmp_path):
    from examples import cgan_mnist
    data = write_digits(str(tmp_path / "data"))
    out = tmp_path / "run"
    assert cgan_mnist.main(tiny_argv(out, "--iters", "4", "--data-dir", data,
                                     "--no-metrics")) == 0
    assert sorted(os.listdir(out)) == ["checkpoint.npz", "losses.png", "metrics.jsonl",
                                       "samples_epoch001.png", "samples_final.png"]
    from PIL import Image
    with Image.open(out / "samples_final.png") as grid:   # 10 x (28 + 2) + 2 pixels, scale 2
        assert grid.size == (604, 604)
    records = io.read_jsonl(out / "metrics.jsonl", strict=True)
    assert [r.get("step") for r in records] == [3, 4, 4]
    assert records[-1]["final"] is True and "label_accuracy" not in records[-1]


def test_example_with_metrics_reports_label_accuracy_fid_and_score(tmp_path):
    from examples import cgan_mnist
    out = tmp_path / "run"
    assert cgan_mnist.main(tiny_argv(out, "--iters", "2", "--bundled")) == 0
    final = io.read_jsonl(out / "metrics.jsonl", strict=True)[-1]
    assert 0 <= final["label_accuracy"] <= 1 and len(final["label_accuracy_per_digit"]) == 10
    assert np.isfinite(final["fid"]) and 1 <= final["classifier_score"] <= 10


def test_resumed_run_ends_with_the_parameters_of_an_uninterrupted_one(tmp_path):
    from examples import cgan_mnist
    data = write_digits(str(tmp_path / "data"))
    flags = ("--data-dir", data, "--no-metrics")
    assert cgan_mnist.main(tiny_argv(tmp_path / "a", "--iters", "5", *flags)) == 0
    assert cgan_mnist.main(tiny_argv(tmp_path / "b", "--iters", "2", *flags)) == 0
    assert cgan_mnist.main(tiny_argv(tmp_path / "b", "--iters", "5", "--resume", *flags)) == 0
    a = io.load_checkpoint(tmp_path / "a" / "checkpoint.npz")
    b = io.load_checkpoint(tmp_path / "b" / "checkpoint.npz")
    assert a["step"] == b["step"] == 5
    for model in ("G", "D"):
        for name, value in a["models"][model].items():
            np.testing.assert_array_equal(value, b["models"][model][name], err_msg=name)


def test_nan_guard_stops_the_example(tmp_path, monkeypatch, capsys):
    from examples import cgan_mnist
    data = write_digits(str(tmp_path / "data"))
    real_loss = losses.g_loss_nonsaturating
    calls = {"n": 0}

    def poisoned(logits):   # the generator loss turns NaN at the second iteration
        calls["n"] += 1
        return real_loss(logits) * (float("nan") if calls["n"] == 2 else 1.0)

    monkeypatch.setattr(losses, "g_loss_nonsaturating", poisoned)
    assert cgan_mnist.main(tiny_argv(tmp_path / "run", "--iters", "4", "--data-dir", data,
                                     "--no-metrics")) == 1
    assert "generator loss is nan at step 2" in capsys.readouterr().err


@pytest.mark.slow
def test_default_run_draws_the_requested_digit_at_least_90_percent_of_the_time(tmp_path):
    from examples import cgan_mnist
    out = tmp_path / "run"
    assert cgan_mnist.main(["--bundled", "--no-progress", "--out", str(out)]) == 0
    final = io.read_jsonl(out / "metrics.jsonl", strict=True)[-1]
    assert final["label_accuracy"] >= 0.9, final
