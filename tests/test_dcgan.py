"""DCGAN models, the training step (Algorithm 1), its NaN guard, and the example run end to end."""
import os

import numpy as np
import pytest

import minigan as mg
from minigan import io, nn, optim
from minigan.data import write_idx
from minigan.gan import losses
from minigan.gan.models import Discriminator, Generator, dcgan_init_, make_dcgan
from minigan.gan.train import NonFiniteLossError, StepStats, sample_noise, train_step

TINY = dict(nz=8, ngf=4, ndf=4)


def tiny_setup(lr_g=2e-4, lr_d=2e-4, batch=8, seed=0):
    mg.manual_seed(seed)
    G, D = make_dcgan(**TINY)
    opt_g = optim.Adam(G.parameters(), lr=lr_g, betas=(0.5, 0.999))
    opt_d = optim.Adam(D.parameters(), lr=lr_d, betas=(0.5, 0.999))
    real = mg.Tensor(np.random.default_rng(seed).uniform(-1, 1, (batch, 1, 28, 28))
                     .astype(np.float32))
    return G, D, opt_g, opt_d, real


def arrays(module):
    return {k: v.copy() for k, v in module.state_dict().items()}


# --- models ---------------------------------------------------------------------------------------

def test_shapes_and_ranges():
    G, D = make_dcgan(nz=10, ngf=8, ndf=6)
    images = G(mg.randn(5, 10))
    assert images.shape == (5, 1, 28, 28)
    assert float(np.abs(images.data).max()) <= 1.0
    assert G(mg.randn(5, 10, 1, 1)).shape == (5, 1, 28, 28)
    assert D(images).shape == (5,)


def test_layer_widths_follow_ngf_ndf_and_pytorch_parameter_counts():
    G, D = make_dcgan(nz=100, ngf=64, ndf=64)
    g_convs = [m for m in G.modules() if isinstance(m, nn.ConvTranspose2d)]
    d_convs = [m for m in D.modules() if isinstance(m, nn.Conv2d)]
    assert [m.weight.shape for m in g_convs] == [(100, 256, 7, 7), (256, 128, 4, 4), (128, 1, 4, 4)]
    assert [m.weight.shape for m in d_convs] == [(64, 1, 4, 4), (128, 64, 4, 4), (1, 128, 7, 7)]
    # no conv has a bias (BN follows, or it is the last layer, as in PyTorch's DCGAN)
    assert all(m.bias is None for m in g_convs + d_convs)
    # the counts torch.nn gives for the same layers (conv weights + BN weight and bias)
    assert sum(p.numel() for p in G.parameters()) == 100 * 256 * 49 + 256 * 128 * 16 + 128 * 16 \
        + 2 * (256 + 128)
    assert sum(p.numel() for p in D.parameters()) == 64 * 16 + 128 * 64 * 16 + 128 * 49 + 2 * 128


def test_dcgan_init_statistics():
    G, D = make_dcgan()
    big = [m for m in G.modules() if isinstance(m, nn.ConvTranspose2d)][1].weight.data
    assert abs(big.mean()) < 1e-3 and abs(big.std() - 0.02) < 1e-3
    bns = [m for m in list(G.modules()) + list(D.modules()) if isinstance(m, nn.BatchNorm2d)]
    weights = np.concatenate([m.weight.data for m in bns])
    assert abs(weights.mean() - 1) < 0.01 and 0.01 < weights.std() < 0.03
    assert all(not m.bias.data.any() for m in bns)
    # and it is applied by make_dcgan, not left at PyTorch's default uniform init
    default = Generator()
    assert not np.array_equal(default.net[3].weight.data, G.net[3].weight.data)
    assert abs(default.apply(dcgan_init_).net[3].weight.data.std() - 0.02) < 1e-3


def test_models_reject_wrong_shapes():
    G, D = make_dcgan(**TINY)
    with pytest.raises(ValueError, match=r"\(N, 8\)"):
        G(mg.randn(2, 9))
    with pytest.raises(ValueError, match="28, 28"):
        D(mg.randn(2, 1, 32, 32))


def test_discriminator_batch_norm_uses_no_bias_before_it():
    D = Discriminator(ndf=4)
    assert D.net[2].bias is None and isinstance(D.net[3], nn.BatchNorm2d)


# --- the training step ----------------------------------------------------------------------------

def test_train_step_reports_losses_that_match_the_loss_functions():
    G, D, opt_g, opt_d, real = tiny_setup()
    z = sample_noise(8, TINY["nz"])
    G_before, D_before = arrays(G), arrays(D)
    stats = train_step(G, D, opt_g, opt_d, real, z)
    assert isinstance(stats, StepStats)
    # recompute the D loss and D(x), D(G(z)) with the parameters from before the step
    G.load_state_dict(G_before)
    D.load_state_dict(D_before)
    real_logits, fake_logits = D(real), D(G(z))
    assert stats.loss_d == pytest.approx(losses.d_loss_minimax(real_logits, fake_logits).item(),
                                         rel=1e-5)
    assert stats.d_real == pytest.approx(float((1 / (1 + np.exp(-real_logits.data))).mean()),
                                         rel=1e-5)
    assert stats.d_fake == pytest.approx(float((1 / (1 + np.exp(-fake_logits.data))).mean()),
                                         rel=1e-5)


@pytest.mark.parametrize("frozen", ["G", "D"])
def test_each_half_of_the_step_updates_only_its_own_model(frozen):
    G, D, opt_g, opt_d, real = tiny_setup(lr_g=0.0 if frozen == "G" else 2e-4,
                                          lr_d=0.0 if frozen == "D" else 2e-4)
    G_before, D_before = arrays(G), arrays(D)
    train_step(G, D, opt_g, opt_d, real, sample_noise(8, TINY["nz"]))
    params = {"G": (G, G_before), "D": (D, D_before)}
    still, moved = params[frozen], params["D" if frozen == "G" else "G"]
    for name, p in still[0].named_parameters():
        np.testing.assert_array_equal(p.data, still[1][name], err_msg=name)
    assert any(not np.array_equal(p.data, moved[1][name]) for name, p in moved[0].named_parameters())
    assert all(p.requires_grad for p in D.parameters())   # D is unfrozen after the G step


def test_a_few_iterations_lower_the_discriminator_loss_on_a_fixed_batch():
    G, D, opt_g, opt_d, real = tiny_setup(lr_g=2e-4, lr_d=2e-3, batch=16)
    z = sample_noise(16, TINY["nz"])
    first = train_step(G, D, opt_g, opt_d, real, z)
    for _ in range(8):
        last = train_step(G, D, opt_g, opt_d, real, z)
    assert last.loss_d < 0.8 * first.loss_d
    assert last.d_real > first.d_real


def test_nan_loss_raises_before_any_update():
    G, D, opt_g, opt_d, real = tiny_setup()
    real.data[0, 0, 0, 0] = np.nan
    G_before, D_before = arrays(G), arrays(D)
    with pytest.raises(NonFiniteLossError, match="discriminator loss is nan at step 7"):
        train_step(G, D, opt_g, opt_d, real, sample_noise(8, TINY["nz"]), step=7)
    for model, before in ((G, G_before), (D, D_before)):
        for name, p in model.named_parameters():
            np.testing.assert_array_equal(p.data, before[name], err_msg=name)
    assert not opt_d.state and not opt_g.state


# --- the example, end to end ----------------------------------------------------------------------

def write_digits(folder, n=48, seed=0):
    """A small IDX training set the example reads through --data-dir."""
    rng = np.random.default_rng(seed)
    write_idx(os.path.join(folder, "train-images-idx3-ubyte"),
              rng.integers(0, 256, (n, 28, 28), dtype=np.uint8))
    write_idx(os.path.join(folder, "train-labels-idx1-ubyte"),
              rng.integers(0, 10, n, dtype=np.uint8))
    return folder


def tiny_argv(out, *extra):
    return ["--nz", "8", "--ngf", "4", "--ndf", "4", "--batch-size", "16", "--no-progress",
            "--no-metrics", "--samples", "16", "--out", str(out), *extra]


def test_example_runs_end_to_end_and_writes_every_file(tmp_path):
    from examples import dcgan_mnist
    data = write_digits(str(tmp_path / "data"))
    out = tmp_path / "run"
    # the default recipe, with 4 clusters of the 48 digits: its 100 are more than there are
    with pytest.raises(SystemExit, match=r"--clusters 100: .*k must be an integer in \[1, 48\]"):
        dcgan_mnist.main(tiny_argv(out, "--iters", "4", "--data-dir", data))
    assert dcgan_mnist.main(tiny_argv(out, "--iters", "4", "--data-dir", data,
                                      "--clusters", "4")) == 0
    names = sorted(os.listdir(out))
    # 48 digits in batches of 16: 3 per epoch, so iteration 3 ends epoch 1
    assert names == ["checkpoint.npz", "interpolation.png", "losses.png", "metrics.jsonl",
                     "samples_epoch001.png", "samples_final.png"]
    records = io.read_jsonl(out / "metrics.jsonl", strict=True)
    assert [r.get("step") for r in records] == [3, 4, 4]
    assert records[-1]["final"] is True
    assert all(np.isfinite(records[0][k]) for k in ("loss_d", "loss_g", "d_real", "d_fake"))
    state = io.load_checkpoint(out / "checkpoint.npz")
    assert state["step"] == 4 and len(state["extra"]["history"]["loss_d"]) == 4


def test_example_cli_runs_with_the_bundled_digits(tmp_path):
    from examples import dcgan_mnist
    out = tmp_path / "run"
    assert dcgan_mnist.main(tiny_argv(out, "--iters", "3", "--bundled")) == 0
    assert {"samples_final.png", "losses.png", "interpolation.png", "metrics.jsonl",
            "checkpoint.npz"} <= set(os.listdir(out))


def test_nan_guard_stops_the_example_and_keeps_the_last_good_checkpoint(tmp_path, monkeypatch,
                                                                           capsys):
    from examples import dcgan_mnist
    data = write_digits(str(tmp_path / "data"))
    out = tmp_path / "run"
    calls = {"n": 0}
    real_loss = losses.g_loss_nonsaturating

    def poisoned(logits):   # the generator loss turns NaN at the third iteration
        calls["n"] += 1
        loss = real_loss(logits)
        return loss * float("nan") if calls["n"] == 3 else loss

    monkeypatch.setattr(losses, "g_loss_nonsaturating", poisoned)
    code = dcgan_mnist.main(tiny_argv(out, "--iters", "6", "--checkpoint-every", "2",
                                      "--data-dir", data, "--clusters", "4"))
    assert code == 1
    err = capsys.readouterr().err
    assert "generator loss is nan at step 3" in err and "last good checkpoint" in err
    state = io.load_checkpoint(out / "checkpoint.npz")
    assert state["step"] == 2
    assert all(np.isfinite(v).all() for v in state["models"]["G"].values())


@pytest.mark.slow
def test_default_run_meets_the_main_jobs_goal(tmp_path):
    """Issue 17's goal for the README's first command (seed 0, bundled digits): FID <= 90,
    classifier score >= 7.5, every digit drawn 5-15% of the time (about 2.5 minutes on 2 cores)."""
    from examples import dcgan_mnist
    out = tmp_path / "run"
    assert dcgan_mnist.main(["--bundled", "--no-progress", "--out", str(out)]) == 0
    final = io.read_jsonl(out / "metrics.jsonl", strict=True)[-1]
    assert final["step"] == 2500 and final["fid"] <= 90, final
    assert final["classifier_score"] >= 7.5, final
    assert all(0.05 <= share <= 0.15 for share in final["class_shares"]), final
