"""ACGAN: the two-headed discriminator, L_S and L_C on hand-computed values, where their gradients
go, the training step, and the example end to end (with the checkpoint's generator metadata)."""
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import minigan as mg
from minigan import io, optim
from minigan.gan.acgan import (ACGANDiscriminator, acgan_d_loss, acgan_g_loss, acgan_train_step,
                               class_loss, make_acgan)
from minigan.gan.conditional import ConditionalGenerator
from minigan.gan.train import NonFiniteLossError, sample_noise
from minigan.testing import gradcheck

from test_cgan import arrays, tiny_argv, write_digits

TINY = dict(nz=8, ngf=4, ndf=4)


def tiny_setup(batch=16, lr_d=2e-4, seed=0):
    mg.manual_seed(seed)
    G, D = make_acgan(**TINY)
    opt_g = optim.Adam(G.parameters(), lr=2e-4, betas=(0.5, 0.999))
    opt_d = optim.Adam(D.parameters(), lr=lr_d, betas=(0.5, 0.999))
    rng = np.random.default_rng(seed)
    real = mg.Tensor(rng.uniform(-1, 1, (batch, 1, 28, 28)).astype(np.float32))
    return G, D, opt_g, opt_d, real, np.arange(batch) % 10


# --- the discriminator ----------------------------------------------------------------------------

def test_one_trunk_two_heads_shapes_and_errors():
    G, D = make_acgan(**TINY)
    assert isinstance(G, ConditionalGenerator) and isinstance(D, ACGANDiscriminator)
    source, classes = D(G(sample_noise(6, 8), np.arange(6)))
    assert source.shape == (6,) and classes.shape == (6, 10)
    assert D.head.weight.shape == (1, 8, 7, 7) and D.classifier.weight.shape == (10, 8, 7, 7)
    with pytest.raises(ValueError, match=r"images of shape \(N, 1, 28, 28\), got \(6, 1, 32, 32\)"):
        D(mg.Tensor(np.zeros((6, 1, 32, 32), np.float32)))


def test_both_heads_read_the_same_trunk_features():
    _, D = make_acgan(**TINY)
    D.eval()
    x = mg.Tensor(np.random.default_rng(0).uniform(-1, 1, (3, 1, 28, 28)).astype(np.float32))
    with mg.no_grad():
        h = D.features(x).data.reshape(3, -1)
        source, classes = D(x)
    np.testing.assert_allclose(source.data, h @ D.head.weight.data.reshape(-1), rtol=1e-4,
                               atol=1e-5)
    expected = h @ D.classifier.weight.data.reshape(10, -1).T + D.classifier.bias.data
    np.testing.assert_allclose(classes.data, expected, rtol=1e-4, atol=1e-5)


# --- the losses on hand-computed values -----------------------------------------------------------

def test_losses_on_hand_computed_values():
    log2 = math.log(2)
    zero = mg.Tensor(np.zeros(1))
    flat = mg.Tensor(np.zeros((1, 2)))
    # all logits 0: each BCE and each 2-class CE is log 2
    assert acgan_d_loss(zero, zero, flat, flat, [0], [1]).item() == pytest.approx(4 * log2)
    assert acgan_g_loss(zero, flat, [1]).item() == pytest.approx(2 * log2)
    # sources l_r = 2, l_f = -1; classes (3, 0) for label 0 and (0, 1) for label 0
    real_s, fake_s = mg.Tensor(np.array([2.0])), mg.Tensor(np.array([-1.0]))
    real_c, fake_c = mg.Tensor(np.array([[3.0, 0.0]])), mg.Tensor(np.array([[0.0, 1.0]]))
    bce_real = math.log(1 + math.exp(-2))      # -log sigmoid(2)
    bce_fake = math.log(1 + math.exp(-1))      # -log(1 - sigmoid(-1))
    ce_real = math.log(1 + math.exp(-3))       # -log softmax(3, 0)[0]
    ce_fake = math.log(1 + math.exp(1))        # -log softmax(0, 1)[0]
    assert acgan_d_loss(real_s, fake_s, real_c, fake_c, [0], [0]).item() == pytest.approx(
        bce_real + bce_fake + ce_real + ce_fake)
    # G: non-saturating -log sigmoid(-1) plus the class term of the fakes
    assert acgan_g_loss(fake_s, fake_c, [0]).item() == pytest.approx(
        math.log(1 + math.exp(1)) + ce_fake)
    # batch means: the class loss of two samples is the mean of theirs
    two = mg.Tensor(np.array([[3.0, 0.0], [0.0, 1.0]]))
    assert class_loss(two, np.array([0, 0])).item() == pytest.approx((ce_real + ce_fake) / 2)


def test_the_fake_class_weight_scales_or_drops_ds_class_loss_on_fakes():
    real_s, fake_s = mg.Tensor(np.array([2.0])), mg.Tensor(np.array([-1.0]))
    real_c, fake_c = mg.Tensor(np.array([[3.0, 0.0]])), mg.Tensor(np.array([[0.0, 1.0]]))
    gan_and_real = (math.log(1 + math.exp(-2)) + math.log(1 + math.exp(-1))
                    + math.log(1 + math.exp(-3)))
    ce_fake = math.log(1 + math.exp(1))
    for w in (0.0, 0.25, 1.0):
        assert acgan_d_loss(real_s, fake_s, real_c, fake_c, [0], [0], w).item() == pytest.approx(
            gan_and_real + w * ce_fake)
    with pytest.raises(ValueError, match="fake_class_weight must be >= 0, got -1"):
        acgan_d_loss(real_s, fake_s, real_c, fake_c, [0], [0], -1)


def test_with_weight_0_ds_class_head_learns_from_real_digits_only():
    # D's class head sees the trunk's features; with weight 0 its update is a function of the
    # real batch alone, so fakes drawn for other labels (other images too) leave it the same
    results = {}
    for w in (0.0, 1.0):
        for fake_labels in (np.zeros(16, int), np.full(16, 7)):
            G, D, opt_g, opt_d, real, labels = tiny_setup()
            z = sample_noise(16, 8)
            acgan_train_step(G, D, opt_g, opt_d, real, labels, z, fake_labels=fake_labels,
                             fake_class_weight=w)
            results[w, int(fake_labels[0])] = D.classifier.weight.data.copy()
    np.testing.assert_array_equal(results[0.0, 0], results[0.0, 7])
    assert not np.array_equal(results[1.0, 0], results[1.0, 7])


def test_class_loss_rejects_bad_labels():
    logits = mg.Tensor(np.zeros((3, 10)))
    with pytest.raises(ValueError, match=r"\[0, 10\)"):
        class_loss(logits, np.array([0, 1, 10]))
    with pytest.raises(ValueError, match=r"one label per sample, shape \(3,\)"):
        class_loss(logits, np.array([0, 1]))
    with pytest.raises(ValueError, match=r"class logits of shape \(N, K\), got \(3,\)"):
        class_loss(mg.Tensor(np.zeros(3)), np.array([0, 1, 2]))


@settings(max_examples=10, deadline=None)
@given(st.integers(1, 4), st.integers(2, 4), st.integers(0, 2 ** 16))
def test_loss_gradients_match_finite_differences(n, k, seed):
    rng = np.random.default_rng(seed)
    labels, fake_labels = rng.integers(0, k, n), rng.integers(0, k, n)
    inputs = [mg.Tensor(rng.standard_normal(shape), requires_grad=True)
              for shape in ((n,), (n,), (n, k), (n, k))]
    assert gradcheck(lambda a, b, c, d: acgan_d_loss(a, b, c, d, labels, fake_labels), inputs)
    assert gradcheck(lambda b, d: acgan_g_loss(b, d, fake_labels), [inputs[1], inputs[3]])


# --- where L_C's gradient goes --------------------------------------------------------------------

def test_the_class_loss_of_fakes_reaches_the_generator_and_the_shared_trunk_only():
    G, D, *_ = tiny_setup()
    labels = np.arange(8)
    source, classes = D(G(sample_noise(8, 8), labels))
    class_loss(classes, labels).backward()
    for name, p in G.named_parameters():
        assert p.grad is not None and np.abs(p.grad.data).max() > 0, name
    for name, p in D.features.named_parameters():
        assert p.grad is not None and np.abs(p.grad.data).max() > 0, name
    assert np.abs(D.classifier.weight.grad.data).max() > 0
    assert D.head.weight.grad is None or np.abs(D.head.weight.grad.data).max() == 0


# --- the training step ----------------------------------------------------------------------------

def test_the_step_trains_every_parameter_and_reports_its_losses():
    G, D, opt_g, opt_d, real, labels = tiny_setup()
    z = sample_noise(16, 8)
    with mg.no_grad():   # the same forward passes as the step's, before any update
        fake = G(z, labels)
        (real_source, real_class), (fake_source, fake_class) = D(real), D(fake)
        expected_d = acgan_d_loss(real_source, fake_source, real_class, fake_class, labels,
                                  labels).item()
    G, D, opt_g, opt_d, real, labels = tiny_setup()
    G_before, D_before = arrays(G), arrays(D)
    stats = acgan_train_step(G, D, opt_g, opt_d, real, labels, sample_noise(16, 8))
    assert stats.loss_d == pytest.approx(expected_d, rel=1e-5)
    assert all(np.isfinite(stats)) and 0 <= stats.class_acc_real <= 1
    for model, before in ((G, G_before), (D, D_before)):
        for name, p in model.named_parameters():
            assert not np.array_equal(p.data, before[name]), name
    assert all(p.requires_grad for p in D.parameters())


def test_a_few_steps_teach_the_auxiliary_classifier_a_fixed_batch():
    G, D, opt_g, opt_d, real, labels = tiny_setup(lr_d=2e-3)
    z = sample_noise(16, 8)
    first = acgan_train_step(G, D, opt_g, opt_d, real, labels, z)
    for _ in range(10):
        last = acgan_train_step(G, D, opt_g, opt_d, real, labels, z)
    assert last.loss_d < 0.8 * first.loss_d
    assert last.class_acc_real > first.class_acc_real


def test_fakes_can_be_drawn_for_labels_other_than_the_batchs():
    G, D, opt_g, opt_d, real, labels = tiny_setup()
    stats = acgan_train_step(G, D, opt_g, opt_d, real, labels, sample_noise(16, 8),
                             fake_labels=np.full(16, 3))
    assert np.isfinite(stats.loss_g)


def test_nan_loss_raises_before_any_update():
    G, D, opt_g, opt_d, real, labels = tiny_setup()
    real.data[0, 0, 0, 0] = np.nan
    G_before, D_before = arrays(G), arrays(D)
    with pytest.raises(NonFiniteLossError, match="discriminator loss is nan at step 3"):
        acgan_train_step(G, D, opt_g, opt_d, real, labels, sample_noise(16, 8), step=3)
    for model, before in ((G, G_before), (D, D_before)):
        for name, p in model.named_parameters():
            np.testing.assert_array_equal(p.data, before[name], err_msg=name)


# --- the example, end to end ----------------------------------------------------------------------

def test_example_runs_with_metrics_and_saves_its_evaluated_samples(tmp_path):
    from examples import acgan_mnist
    out = tmp_path / "run"
    assert acgan_mnist.main(tiny_argv(out, "--iters", "2", "--bundled")) == 0
    final = io.read_jsonl(out / "metrics.jsonl", strict=True)[-1]
    assert 0 <= final["label_accuracy"] <= 1 and np.isfinite(final["fid"])
    assert final["real_intra_class_diversity"] > 0
    assert final["diversity_ratio"] == pytest.approx(
        final["intra_class_diversity"] / final["real_intra_class_diversity"])
    samples, labels = np.load(out / "eval_samples.npy"), np.load(out / "eval_labels.npy")
    assert samples.shape == (2000, 1, 28, 28) and samples.dtype == np.float32
    np.testing.assert_array_equal(labels, np.repeat(np.arange(10), 200))
    from minigan.metrics import load_classifier
    predicted = load_classifier().predict(samples)   # the saved samples are the ones scored
    assert (predicted == labels).mean() == pytest.approx(final["label_accuracy"])


def test_checkpoint_records_what_a_sampler_needs_to_rebuild_the_generator(tmp_path):
    from examples import acgan_mnist
    data = write_digits(str(tmp_path / "data"))
    out = tmp_path / "run"
    assert acgan_mnist.main(tiny_argv(out, "--iters", "2", "--data-dir", data,
                                      "--no-metrics")) == 0
    state = io.load_checkpoint(out / "checkpoint.npz")
    meta = state["extra"]["generator"]
    assert meta["class"] == "minigan.gan.conditional.ConditionalGenerator"
    assert meta["latent"] == {"nz": 8, "labels": 10}
    # rebuilt from the record alone, G draws the asked digits: examples.sample's rows of 3s
    from examples import sample
    npy = tmp_path / "threes.npy"
    assert sample.main([str(out), "--n", "6", "--label", "3", "--npy", str(npy),
                        "--out", str(tmp_path / "threes.png")]) in (0, None)
    G = ConditionalGenerator(**meta["kwargs"])
    G.load_state_dict(state["models"][meta["model"]])
    G.eval()
    rng = np.random.default_rng(0)
    z = rng.standard_normal((6, 8)).astype(np.float32)
    with mg.no_grad():
        expected = G(mg.Tensor(z), np.full(6, 3, np.int64)).data
    np.testing.assert_allclose(np.load(npy), expected, rtol=1e-5, atol=1e-6)


def test_resumed_run_ends_with_the_parameters_of_an_uninterrupted_one(tmp_path):
    from examples import acgan_mnist
    data = write_digits(str(tmp_path / "data"))
    flags = ("--data-dir", data, "--no-metrics")
    assert acgan_mnist.main(tiny_argv(tmp_path / "a", "--iters", "5", *flags)) == 0
    assert acgan_mnist.main(tiny_argv(tmp_path / "b", "--iters", "2", *flags)) == 0
    assert acgan_mnist.main(tiny_argv(tmp_path / "b", "--iters", "5", "--resume", *flags)) == 0
    a = io.load_checkpoint(tmp_path / "a" / "checkpoint.npz")
    b = io.load_checkpoint(tmp_path / "b" / "checkpoint.npz")
    assert a["step"] == b["step"] == 5
    for model in ("G", "D"):
        for name, value in a["models"][model].items():
            np.testing.assert_array_equal(value, b["models"][model][name], err_msg=name)


@pytest.mark.slow
def test_default_run_draws_the_requested_digit_at_least_95_percent_of_the_time(tmp_path):
    from examples import acgan_mnist
    out = tmp_path / "run"
    assert acgan_mnist.main(["--bundled", "--no-progress", "--out", str(out)]) == 0
    final = io.read_jsonl(out / "metrics.jsonl", strict=True)[-1]
    assert final["label_accuracy"] >= 0.95, final


# --- devices --------------------------------------------------------------------------------------

NO_GPU = "no CUDA device (CuPy missing or no GPU)"


@pytest.mark.skipif(mg.backend.cupy_available(), reason="CuPy and a GPU are present")
def test_device_cuda_without_a_gpu_exits_before_any_work(tmp_path, monkeypatch):
    from examples import _common, acgan_mnist

    def refuse(*args, **kwargs):
        raise AssertionError("the example loaded data before checking --device")

    monkeypatch.setattr(acgan_mnist, "load_labelled_images", refuse)
    with pytest.raises(SystemExit) as exit_info:
        acgan_mnist.main(tiny_argv(tmp_path / "run", "--iters", "1", "--bundled",
                                    "--device", "cuda"))
    assert exit_info.value.code == _common.DEVICE_MISSING
    assert not (tmp_path / "run").exists()


@pytest.mark.gpu
@pytest.mark.skipif(not mg.backend.cupy_available(), reason=NO_GPU)
def test_example_trains_on_the_gpu_and_writes_numpy(tmp_path):
    from examples import acgan_mnist
    out = tmp_path / "run"
    assert acgan_mnist.main(tiny_argv(out, "--iters", "2", "--bundled", "--device", "cuda")) == 0
    samples = np.load(out / "eval_samples.npy")
    assert isinstance(samples, np.ndarray) and samples.shape == (2000, 1, 28, 28)
    assert io.load_checkpoint(out / "checkpoint.npz")["step"] == 2
