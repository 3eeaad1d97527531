"""InfoGAN: the latent layout, the generator's dependence on its codes, D and Q on one trunk, the
info loss on hand-computed values, where L_I's gradient goes (G, the trunk, the Q head), the
training step, that no label reaches training, and the example end to end."""
import inspect
import math
import os

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import minigan as mg
from minigan import functional as F
from minigan import io, nn, optim
from minigan.data import write_idx
from minigan.gan import losses
from minigan.gan.infogan import (LOG_STD_RANGE, InfoGANDiscriminator, InfoGANGenerator, Latent,
                                 QOutput, gaussian_nll, generate_infogan, info_loss,
                                 infogan_train_step, make_infogan, sample_latent)
from minigan.gan.train import NonFiniteLossError
from minigan.testing import gradcheck

from test_cgan import arrays, tiny_argv

TINY = dict(nz=8, ngf=4, ndf=4)


def tiny_setup(batch=16, lr=2e-4, seed=0, architecture="dcgan", q_update="d"):
    mg.manual_seed(seed)
    G, D = make_infogan(**TINY, architecture=architecture)
    g_params, d_params = ((G.parameters(), D.parameters()) if q_update == "d" else
                          (list(G.parameters()) + list(D.q.parameters()), D.d_parameters()))
    opt_g = optim.Adam(g_params, lr=lr, betas=(0.5, 0.999))
    opt_d = optim.Adam(d_params, lr=lr, betas=(0.5, 0.999))
    rng = np.random.default_rng(seed)
    real = mg.Tensor(rng.uniform(-1, 1, (batch, 1, 28, 28)).astype(np.float32))
    return G, D, opt_g, opt_d, real


# --- latent and models ----------------------------------------------------------------------------

def test_latent_layout_ranges_and_reproducibility():
    mg.manual_seed(3)
    latent = sample_latent(500, 8)
    assert isinstance(latent, Latent)
    assert latent.z.shape == (500, 8) and latent.continuous.shape == (500, 2)
    assert latent.categories.shape == (500,) and latent.categories.dtype.kind == "i"
    assert set(np.unique(latent.categories)) == set(range(10))
    assert latent.continuous.data.min() >= -1 and latent.continuous.data.max() <= 1
    assert abs(latent.continuous.data.mean()) < 0.1 and abs(latent.z.data.std() - 1) < 0.1
    mg.manual_seed(3)
    again = sample_latent(500, 8)
    np.testing.assert_array_equal(again.categories, latent.categories)
    np.testing.assert_array_equal(again.continuous.data, latent.continuous.data)


def test_generator_input_is_noise_onehot_code_and_continuous_codes():
    G, D = make_infogan(**TINY)
    assert G.net.net[0].weight.shape == (8 + 10 + 2, 16, 7, 7)
    latent = sample_latent(6, 8)
    x = G(*latent)
    assert x.shape == (6, 1, 28, 28)
    logits, q = D(x)
    assert logits.shape == (6,) and isinstance(q, QOutput)
    assert q.logits.shape == (6, 10) and q.mean.shape == (6, 2) and q.log_std.shape == (6, 2)
    with pytest.raises(ValueError, match=r"noise of shape \(N, 8\), got \(6, 9\)"):
        G(mg.Tensor(np.zeros((6, 9), np.float32)), latent.categories, latent.continuous)
    with pytest.raises(ValueError, match=r"continuous codes of shape \(6, 2\), got \(6, 3\)"):
        G(latent.z, latent.categories, mg.Tensor(np.zeros((6, 3), np.float32)))
    with pytest.raises(ValueError, match=r"\[0, 10\)"):
        G(latent.z, np.array([0, 1, 2, 3, 4, 10]), latent.continuous)


def test_the_papers_architecture_has_its_layers_and_shapes():
    G, D = make_infogan(**TINY, architecture="paper")
    linears = [m for m in G.net if isinstance(m, nn.Linear)]
    assert [tuple(m.weight.shape) for m in linears] == [(64, 8 + 10 + 2), (8 * 49, 64)]
    assert [type(m).__name__ for m in G.net][-3:] == ["ReLU", "ConvTranspose2d", "Tanh"]
    assert isinstance(D.features[-3], nn.Linear) and D.features[-3].weight.shape == (64, 8 * 49)
    assert isinstance(D.head, nn.Linear) and D.head.weight.shape == (1, 64)
    assert D.q[1].weight.shape == (128, 64)
    latent = sample_latent(6, 8)
    x = G(*latent)
    logits, q = D(x)
    assert x.shape == (6, 1, 28, 28) and logits.shape == (6,) and q.logits.shape == (6, 10)
    assert {id(p) for p in D.d_parameters()}.isdisjoint(id(p) for p in D.q.parameters())
    assert len(D.d_parameters()) + len(list(D.q.parameters())) == len(list(D.parameters()))
    with pytest.raises(ValueError, match=r"architecture must be one of \('dcgan', 'paper'\), "
                                         r"got 'big'"):
        InfoGANDiscriminator(architecture="big")
    with pytest.raises(ValueError, match="architecture must be one of"):
        InfoGANGenerator(architecture="big")


def test_each_code_changes_the_image():
    G, _ = make_infogan(**TINY)
    G.apply(lambda m: nn.init.normal_(m.weight, 0, 0.3)
            if isinstance(m, nn.ConvTranspose2d) else None)   # wide enough to see differences
    latent = sample_latent(4, 8)
    base = generate_infogan(G, *latent)
    other_c = generate_infogan(G, latent.z, (latent.categories + 1) % 10, latent.continuous)
    other_s = latent.continuous.data.copy()
    other_s[:, 1] = -other_s[:, 1]
    moved_s = generate_infogan(G, latent.z, latent.categories, other_s)
    for changed in (other_c, moved_s):
        assert np.abs(changed - base).reshape(4, -1).max(axis=1).min() > 1e-3
    assert G.training   # generate_infogan restores the mode


def test_q_log_std_is_clipped():
    _, D = make_infogan(**TINY)
    D.q[-1].bias.data[-2:] = 50.0    # the log-std outputs
    _, q = D(mg.Tensor(np.zeros((3, 1, 28, 28), np.float32)))
    np.testing.assert_array_equal(q.log_std.data, LOG_STD_RANGE[1])


# --- the info loss on hand-computed values --------------------------------------------------------

def test_gaussian_nll_on_hand_computed_values():
    half_log_2pi = 0.5 * math.log(2 * math.pi)
    one = mg.Tensor(np.array([[1.0]]))
    zero = mg.Tensor(np.array([[0.0]]))
    assert gaussian_nll(one, zero, zero).item() == pytest.approx(0.5 + half_log_2pi)
    # x = 2, mu = 0, sigma = 2: log 2 + (2 / 2)^2 / 2 + log(2 pi) / 2
    x, log_std = mg.Tensor(np.array([[2.0]])), mg.Tensor(np.array([[math.log(2)]]))
    assert gaussian_nll(x, zero, log_std).item() == pytest.approx(
        math.log(2) + 0.5 + half_log_2pi)
    # two codes are summed, two samples averaged
    x2 = mg.Tensor(np.array([[1.0, 2.0], [0.0, 0.0]]))
    zeros2 = mg.Tensor(np.zeros((2, 2)))
    assert gaussian_nll(x2, zeros2, zeros2).item() == pytest.approx(
        ((0.5 + 2.0) + 0.0) / 2 + 2 * half_log_2pi)
    with pytest.raises(ValueError, match=r"three \(N, M\) tensors"):
        gaussian_nll(x2, zeros2, mg.Tensor(np.zeros((2, 3))))


def test_info_loss_weights_the_categorical_code_1_and_the_continuous_ones_0_1():
    q = QOutput(mg.Tensor(np.array([[2.0, 0.0, 0.0]])), mg.Tensor(np.array([[0.5]])),
                mg.Tensor(np.array([[0.0]])))
    ce = -math.log(math.exp(2) / (math.exp(2) + 2))
    nll = 0.5 * 0.25 + 0.5 * math.log(2 * math.pi)   # s = 1, mu = 0.5, sigma = 1
    s = mg.Tensor(np.array([[1.0]]))
    assert info_loss(q, np.array([0]), s).item() == pytest.approx(ce + 0.1 * nll)
    assert info_loss(q, np.array([0]), s, lambda_cont=0.0).item() == pytest.approx(ce)
    # log K - CE is the categorical lower bound on I(c; x): 0 for uniform logits
    flat = QOutput(mg.Tensor(np.zeros((4, 10))), mg.Tensor(np.zeros((4, 1))),
                   mg.Tensor(np.zeros((4, 1))))
    assert info_loss(flat, np.arange(4), mg.Tensor(np.full((4, 1), 0.5)),
                     lambda_cont=0.0).item() == pytest.approx(math.log(10))


@settings(max_examples=10, deadline=None)
@given(st.integers(1, 4), st.integers(2, 4), st.integers(1, 3), st.integers(0, 2 ** 16))
def test_info_loss_gradients_match_finite_differences(n, k, m, seed):
    rng = np.random.default_rng(seed)
    codes = rng.integers(0, k, n)
    inputs = [mg.Tensor(rng.standard_normal(shape), requires_grad=True)
              for shape in ((n, k), (n, m), (n, m), (n, m))]
    assert gradcheck(lambda logits, mean, log_std, s: info_loss(
        QOutput(logits, mean, log_std), codes, s), inputs)


# --- where L_I's gradient goes --------------------------------------------------------------------

def test_the_info_loss_reaches_the_generator_the_trunk_and_q_but_not_ds_head():
    G, D, *_ = tiny_setup()
    latent = sample_latent(8, 8)
    _, q = D(G(*latent))
    info_loss(q, latent.categories, latent.continuous).backward()
    for module in (G, D.features, D.q):
        for name, p in module.named_parameters():
            assert p.grad is not None and np.abs(p.grad.data).max() > 0, name
    assert D.head.weight.grad is None or np.abs(D.head.weight.grad.data).max() == 0


def test_the_q_head_learns_to_read_the_codes():
    G, D, opt_g, opt_d, real = tiny_setup(lr=2e-3)
    q_before = arrays(D.q)
    latent = sample_latent(16, 8)
    first = infogan_train_step(G, D, opt_g, opt_d, real, latent)
    for name, value in D.q.state_dict().items():
        if name.endswith(("weight", "bias")):
            assert not np.array_equal(value, q_before[name]), name
    for _ in range(12):
        last = infogan_train_step(G, D, opt_g, opt_d, real, latent)
    assert last.loss_info < 0.7 * first.loss_info
    assert last.q_accuracy > first.q_accuracy


def test_the_step_trains_every_parameter_and_unfreezes_d():
    G, D, opt_g, opt_d, real = tiny_setup()
    G_before, D_before = arrays(G), arrays(D)
    stats = infogan_train_step(G, D, opt_g, opt_d, real, sample_latent(16, 8))
    assert all(np.isfinite(stats)) and 0 < stats.d_real < 1 and 0 <= stats.q_accuracy <= 1
    for model, before in ((G, G_before), (D, D_before)):
        for name, p in model.named_parameters():
            assert not np.array_equal(p.data, before[name]), name
    assert all(p.requires_grad for p in D.parameters())


@pytest.mark.parametrize("architecture", ["dcgan", "paper"])
def test_with_q_update_g_the_q_head_learns_in_gs_step_and_the_trunk_from_the_gan_loss_only(
        architecture):
    G, D, opt_g, opt_d, real = tiny_setup(architecture=architecture, q_update="g")
    latent = sample_latent(16, 8)
    # the trunk and D's head after a D step on the GAN loss alone, from the same start
    G2, D2, _, opt_d2, _ = tiny_setup(architecture=architecture, q_update="g")
    with mg.no_grad():
        fake = G2(latent.z, latent.categories, latent.continuous)
    real_logits, _ = D2(real)
    fake_logits, _ = D2(fake)
    opt_d2.zero_grad()
    losses.d_loss_minimax(real_logits, fake_logits).backward()
    opt_d2.step()
    G_before, q_before = arrays(G), arrays(D.q)
    stats = infogan_train_step(G, D, opt_g, opt_d, real, latent, q_update="g")
    assert all(np.isfinite(stats)) and 0 <= stats.q_accuracy <= 1
    for name, p in list(D.features.named_parameters()) + list(D.head.named_parameters()):
        twin = dict(list(D2.features.named_parameters()) + list(D2.head.named_parameters()))[name]
        np.testing.assert_allclose(p.data, twin.data, rtol=1e-6, atol=1e-7, err_msg=name)
    for name, p in D.q.named_parameters():
        assert not np.array_equal(p.data, q_before[name]), name
    for name, p in G.named_parameters():
        assert not np.array_equal(p.data, G_before[name]), name
    assert all(p.requires_grad for p in D.parameters())
    with pytest.raises(ValueError, match=r"q_update must be one of \('d', 'g'\), got 'q'"):
        infogan_train_step(G, D, opt_g, opt_d, real, latent, q_update="q")


def test_with_q_update_g_the_q_head_learns_to_read_the_codes():
    G, D, opt_g, opt_d, real = tiny_setup(lr=2e-3, architecture="paper", q_update="g")
    latent = sample_latent(16, 8)
    first = infogan_train_step(G, D, opt_g, opt_d, real, latent, q_update="g")
    for _ in range(12):
        last = infogan_train_step(G, D, opt_g, opt_d, real, latent, q_update="g")
    assert last.loss_info < 0.7 * first.loss_info
    assert last.q_accuracy > first.q_accuracy


@pytest.mark.parametrize("q_update", ["d", "g"])
def test_a_code_transform_is_what_q_reads_the_categorical_code_from(q_update):
    """With T = identity the step is the plain step (same parameters after it); with T that
    blanks the images, Q's categorical reading cannot depend on G, so the categorical code's
    gradient no longer reaches G: G's step equals a plain step with the categorical CE's
    gradient removed, i.e. G moves differently from the plain step."""
    def run(transform):
        G, D, opt_g, opt_d, real = tiny_setup(architecture="paper", q_update=q_update)
        mg.manual_seed(7)
        latent = sample_latent(16, 8)
        stats = infogan_train_step(G, D, opt_g, opt_d, real, latent, q_update=q_update,
                                   code_transform=transform)
        return arrays(G), arrays(D), stats

    calls = []

    def identity(x):
        calls.append(x.shape)
        return x

    G0, D0, s0 = run(None)
    G1, D1, s1 = run(identity)
    assert calls == ([(16, 1, 28, 28)] * (2 if q_update == "d" else 1))
    for name in G0:
        np.testing.assert_allclose(G1[name], G0[name], rtol=1e-5, atol=1e-7, err_msg=name)
    for name in D0:
        if "running" not in name and "batches_tracked" not in name:   # T passes through D again
            np.testing.assert_allclose(D1[name], D0[name], rtol=1e-5, atol=1e-7, err_msg=name)
    assert s1.loss_info == pytest.approx(s0.loss_info, rel=1e-5)
    G2, _, s2 = run(lambda x: x * 0.0 - 1.0)
    assert s2.loss_info != pytest.approx(s0.loss_info, rel=1e-3)
    assert any(not np.allclose(G2[name], G0[name], rtol=1e-5, atol=1e-7) for name in G0)


def test_with_a_code_transform_g_learns_through_it():
    """The gradient of the transformed reading reaches G: T(x) = x flipped upside down is
    differentiable, and G's parameters get a gradient from the categorical CE alone."""
    G, D, _, _, _ = tiny_setup(architecture="paper", q_update="g")
    latent = sample_latent(16, 8)
    fake = G(latent.z, latent.categories, latent.continuous)
    _, q = D(fake)
    _, q_flipped = D(fake[:, :, ::-1, :])
    loss = info_loss(q, latent.categories, latent.continuous, lambda_cont=0.0,
                     q_categorical=q_flipped)
    want = F.cross_entropy(q_flipped.logits, mg.Tensor(latent.categories))
    assert loss.item() == pytest.approx(want.item(), rel=1e-6)
    loss.backward()
    assert all(p.grad is not None and np.abs(p.grad.data).sum() > 0 for p in G.parameters())


def test_nan_loss_raises_before_any_update():
    G, D, opt_g, opt_d, real = tiny_setup()
    real.data[0, 0, 0, 0] = np.nan
    G_before, D_before = arrays(G), arrays(D)
    with pytest.raises(NonFiniteLossError, match="discriminator loss is nan at step 2"):
        infogan_train_step(G, D, opt_g, opt_d, real, sample_latent(16, 8), step=2)
    for model, before in ((G, G_before), (D, D_before)):
        for name, p in model.named_parameters():
            np.testing.assert_array_equal(p.data, before[name], err_msg=name)


# --- no label reaches training --------------------------------------------------------------------

def write_images_and_labels(folder, labels, n=48, seed=0):
    """The same random images with the given labels file."""
    os.makedirs(folder, exist_ok=True)
    rng = np.random.default_rng(seed)
    write_idx(os.path.join(folder, "train-images-idx3-ubyte"),
              rng.integers(0, 256, (n, 28, 28), dtype=np.uint8))
    write_idx(os.path.join(folder, "train-labels-idx1-ubyte"), labels.astype(np.uint8))
    return folder


def test_the_training_step_takes_no_labels():
    assert not any("label" in name for name in inspect.signature(infogan_train_step).parameters)


def test_no_label_reaches_training_other_labels_give_the_very_same_run(tmp_path):
    """Two runs on the same images with different labels files (all 0s; a random draw) must end
    bit for bit equal: any use of a label would make them differ."""
    from examples import infogan_mnist
    zeros = write_images_and_labels(str(tmp_path / "zeros"), np.zeros(48, np.int64))
    shuffled = write_images_and_labels(str(tmp_path / "random"),
                                       np.random.default_rng(5).integers(0, 10, 48))
    for name, data in (("a", zeros), ("b", shuffled)):
        assert infogan_mnist.main(tiny_argv(tmp_path / name, "--iters", "4", "--data-dir", data,
                                            "--no-metrics")) == 0
    a = io.load_checkpoint(tmp_path / "a" / "checkpoint.npz")
    b = io.load_checkpoint(tmp_path / "b" / "checkpoint.npz")
    for model in ("G", "D"):
        for name, value in a["models"][model].items():
            np.testing.assert_array_equal(value, b["models"][model][name], err_msg=name)


# --- the example, end to end ----------------------------------------------------------------------

def test_sweeps_hold_everything_but_one_continuous_code():
    from examples.infogan_mnist import code_grid_inputs, sweep_inputs
    z, c, s = sweep_inputs(5, seed=0, code=1)
    assert z.shape == (100, 5) and np.ptp(z, axis=0).max() == 0
    np.testing.assert_array_equal(c.reshape(10, 10), np.arange(10)[:, None].repeat(10, 1))
    np.testing.assert_array_equal(s[:, 0], 0)
    np.testing.assert_allclose(s[:10, 1], np.linspace(-1, 1, 10))
    z, c, s = code_grid_inputs(5, seed=0)
    np.testing.assert_array_equal(z.reshape(10, 10, 5), np.broadcast_to(z[:10], (10, 10, 5)))
    np.testing.assert_array_equal(c, np.repeat(np.arange(10), 10))
    np.testing.assert_array_equal(s, 0)


def test_example_runs_with_metrics_and_saves_its_evaluated_samples(tmp_path):
    from examples import infogan_mnist
    out = tmp_path / "run"
    assert infogan_mnist.main(tiny_argv(out, "--iters", "2", "--bundled")) == 0
    assert {"samples_final.png", "sweep_c1.png", "sweep_c2.png", "losses.png", "metrics.jsonl",
            "checkpoint.npz", "eval_samples.npy", "eval_codes.npy",
            "eval_continuous.npy"} <= set(os.listdir(out))
    final = io.read_jsonl(out / "metrics.jsonl", strict=True)[-1]
    samples, codes = np.load(out / "eval_samples.npy"), np.load(out / "eval_codes.npy")
    assert samples.shape == (2000, 1, 28, 28) and codes.shape == (2000,)
    assert np.load(out / "eval_continuous.npy").shape == (2000, 2)
    from minigan.metrics import code_accuracy, load_classifier
    rescored = code_accuracy(codes, load_classifier().predict(samples))
    assert rescored.accuracy == pytest.approx(final["code_accuracy"])
    assert sorted(final["code_assignment"]) == list(range(10))
    assert np.isfinite(final["fid"])


@pytest.mark.parametrize("noise", ["normal", "uniform"])
def test_checkpoint_records_the_latent_layout_and_rebuilds_the_generator(tmp_path, noise):
    from examples import infogan_mnist
    data = write_images_and_labels(str(tmp_path / "data"), np.zeros(48, np.int64))
    out = tmp_path / "run"
    assert infogan_mnist.main(tiny_argv(out, "--iters", "2", "--data-dir", data,
                                        "--no-metrics", "--noise", noise)) == 0
    state = io.load_checkpoint(out / "checkpoint.npz")
    meta = state["extra"]["generator"]
    assert meta["class"] == "minigan.gan.infogan.InfoGANGenerator"
    assert meta["latent"] == {"nz": 8, "codes": 10, "continuous": 2, "noise": noise}
    G = InfoGANGenerator(**meta["kwargs"])
    G.load_state_dict(state["models"][meta["model"]])
    assert (G.nz, G.num_categories, G.num_continuous) == (8, 10, 2)
    # examples.sample draws from it alone: noise, the asked code value, U(-1, 1) continuous codes
    from examples import sample
    npy = tmp_path / "code7.npy"
    assert sample.main([str(out), "--n", "5", "--label", "7", "--npy", str(npy),
                        "--out", str(tmp_path / "code7.png")]) in (0, None)
    G.eval()
    rng = np.random.default_rng(0)
    z = (rng.standard_normal((5, 8)) if noise == "normal" else rng.uniform(-1, 1, (5, 8)))
    c = rng.uniform(-1.0, 1.0, (5, 2)).astype(np.float32)
    with mg.no_grad():
        expected = G(mg.Tensor(z.astype(np.float32)), np.full(5, 7, np.int64), mg.Tensor(c)).data
    np.testing.assert_allclose(np.load(npy), expected, rtol=1e-5, atol=1e-6)


def test_resumed_run_ends_with_the_parameters_of_an_uninterrupted_one(tmp_path):
    from examples import infogan_mnist
    data = write_images_and_labels(str(tmp_path / "data"), np.zeros(48, np.int64))
    flags = ("--data-dir", data, "--no-metrics")
    assert infogan_mnist.main(tiny_argv(tmp_path / "a", "--iters", "5", *flags)) == 0
    assert infogan_mnist.main(tiny_argv(tmp_path / "b", "--iters", "2", *flags)) == 0
    assert infogan_mnist.main(tiny_argv(tmp_path / "b", "--iters", "5", "--resume", *flags)) == 0
    a = io.load_checkpoint(tmp_path / "a" / "checkpoint.npz")
    b = io.load_checkpoint(tmp_path / "b" / "checkpoint.npz")
    assert a["step"] == b["step"] == 5
    for model in ("G", "D"):
        for name, value in a["models"][model].items():
            np.testing.assert_array_equal(value, b["models"][model][name], err_msg=name)


def test_bad_flags_stop_the_example():
    from examples import infogan_mnist
    with pytest.raises(SystemExit, match="--lr-g must be > 0"):
        infogan_mnist.parse_args(["--lr-g", "0"])
    with pytest.raises(SystemExit, match="--lambda-cont must be >= 0"):
        infogan_mnist.parse_args(["--lambda-cont", "-1"])


@pytest.mark.slow
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_default_run_categorical_code_matches_digits_95_percent(tmp_path, seed):
    from examples import infogan_mnist
    out = tmp_path / "run"
    assert infogan_mnist.main(["--bundled", "--no-progress", "--seed", str(seed),
                               "--out", str(out)]) == 0
    final = io.read_jsonl(out / "metrics.jsonl", strict=True)[-1]
    assert final["code_accuracy"] >= 0.95, final


# --- devices --------------------------------------------------------------------------------------

NO_GPU = "no CUDA device (CuPy missing or no GPU)"


@pytest.mark.skipif(mg.backend.cupy_available(), reason="CuPy and a GPU are present")
def test_device_cuda_without_a_gpu_exits_before_any_work(tmp_path, monkeypatch):
    from examples import _common, infogan_mnist

    def refuse(*args, **kwargs):
        raise AssertionError("the example loaded data before checking --device")

    monkeypatch.setattr(infogan_mnist, "load_training_images", refuse)
    with pytest.raises(SystemExit) as exit_info:
        infogan_mnist.main(tiny_argv(tmp_path / "run", "--iters", "1", "--bundled",
                                    "--device", "cuda"))
    assert exit_info.value.code == _common.DEVICE_MISSING
    assert not (tmp_path / "run").exists()


@pytest.mark.gpu
@pytest.mark.skipif(not mg.backend.cupy_available(), reason=NO_GPU)
def test_example_trains_on_the_gpu_and_writes_numpy(tmp_path):
    from examples import infogan_mnist
    out = tmp_path / "run"
    assert infogan_mnist.main(tiny_argv(out, "--iters", "2", "--bundled", "--device", "cuda")) == 0
    samples = np.load(out / "eval_samples.npy")
    assert isinstance(samples, np.ndarray) and samples.shape == (2000, 1, 28, 28)
    assert io.load_checkpoint(out / "checkpoint.npz")["step"] == 2
