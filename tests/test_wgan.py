"""WGAN and WGAN-GP: the critic, the critic and generator steps of Algorithm 1, the NaN guard, and
the MNIST example end to end (tiny models)."""
import os

import numpy as np
import pytest

import minigan as mg
from minigan import backend, io, nn, optim
from minigan.data import write_idx
from minigan.gan import losses
from minigan.gan.models import Discriminator
from minigan.gan.train import NonFiniteLossError, generate, sample_noise
from minigan.gan.wgan import (Critic, WGANStats, critic_step, generator_step, make_wgan,
                              wgan_train_step)
from minigan.testing import gradcheck

TINY = dict(nz=8, ngf=4, ndf=4)


def tiny_setup(batch=8, seed=0, lr=1e-3):
    mg.manual_seed(seed)
    G, C = make_wgan(**TINY)
    opt_g = optim.Adam(G.parameters(), lr=lr, betas=(0.5, 0.9))
    opt_c = optim.Adam(C.parameters(), lr=lr, betas=(0.5, 0.9))
    real = mg.Tensor(np.random.default_rng(seed).uniform(-1, 1, (batch, 1, 28, 28))
                     .astype(np.float32))
    return G, C, opt_g, opt_c, real


def arrays(module):
    return {k: v.copy() for k, v in module.state_dict().items()}


def assert_unchanged(module, before):
    for name, p in module.named_parameters():
        np.testing.assert_array_equal(p.data, before[name], err_msg=name)


# --- the critic ---------------------------------------------------------------------------------

def test_critic_is_the_dcgan_discriminator_without_batch_norm():
    G, C = make_wgan(nz=10, ngf=8, ndf=6)
    assert C(G(mg.randn(5, 10))).shape == (5,)
    assert not any(isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)) for m in C.modules())
    convs = [m for m in C.modules() if isinstance(m, nn.Conv2d)]
    assert [m.weight.shape for m in convs] == [(6, 1, 4, 4), (12, 6, 4, 4), (1, 12, 7, 7)]
    assert [m.bias is not None for m in convs] == [True, True, False]
    # DCGAN's N(0, 0.02) init, not the layers' default uniform one
    big = convs[1].weight.data
    assert abs(float(big.std()) - 0.02) < 0.004 and not convs[1].bias.data.any()


def test_critic_rejects_wrong_shapes():
    with pytest.raises(ValueError, match=r"\(N, 1, 28, 28\)"):
        Critic(ndf=4)(mg.randn(2, 1, 32, 32))


def test_penalty_gradient_through_the_conv_critic_module():
    """The penalty's gradient in the critic's weights (second order through its convolutions and
    LeakyReLUs) against finite differences, float64, on the real module at width 1."""
    mg.manual_seed(1)
    C = Critic(ndf=1).to(dtype=np.float64)
    for p in C.parameters():     # larger weights than DCGAN's, so the penalty is not ~lam
        p.data[...] = np.random.default_rng(p.numel()).standard_normal(p.shape) * 0.5
    rng = np.random.default_rng(2)
    real, fake = (mg.Tensor(rng.uniform(-1, 1, (2, 1, 28, 28))) for _ in range(2))
    params = list(C.parameters())

    def penalty(*_):    # gradcheck perturbs the Parameters themselves, in place
        with mg.enable_grad():
            return losses.gradient_penalty(C, real, fake, lam=10.0, rng=3)

    assert gradcheck(penalty, params)


# --- the critic step ----------------------------------------------------------------------------

@pytest.mark.parametrize("constraint", [{"clip": 0.01}, {"gp_lambda": 10.0}])
def test_critic_step_reports_the_loss_estimate_and_penalty_it_used(constraint):
    G, C, opt_g, opt_c, real = tiny_setup()
    z = sample_noise(8, TINY["nz"])
    C_before, rng_before = arrays(C), backend.get_rng_state()
    loss, estimate, penalty = critic_step(G, C, opt_c, real, z, **constraint)
    # recompute with the critic from before the step and the same interpolation draws
    C.load_state_dict(C_before)
    backend.set_rng_state(rng_before)
    with mg.no_grad():
        fake = G(z)
    real_mean, fake_mean = C(real).data.mean(), C(fake).data.mean()
    assert estimate == pytest.approx(float(real_mean - fake_mean), rel=1e-5, abs=1e-9)
    expected_gp = (losses.gradient_penalty(C, real, fake, lam=constraint["gp_lambda"]).item()
                   if "gp_lambda" in constraint else 0.0)
    assert penalty == pytest.approx(expected_gp, rel=1e-5)
    assert loss == pytest.approx(-estimate + expected_gp, rel=1e-5, abs=1e-9)


def test_wgan_critic_step_clips_every_critic_weight_and_leaves_g_alone():
    G, C, opt_g, opt_c, real = tiny_setup()
    opt_c = optim.RMSprop(C.parameters(), lr=0.05)   # large steps: most weights hit the bound
    G_before = arrays(G)
    for _ in range(3):
        critic_step(G, C, opt_c, real, sample_noise(8, TINY["nz"]), clip=0.01)
    values = np.concatenate([p.data.ravel() for p in C.parameters()])
    assert np.abs(values).max() <= 0.01
    assert np.isclose(np.abs(values), 0.01).mean() > 0.5    # the clipping was active
    assert_unchanged(G, G_before)


def test_penalty_writes_no_grad_and_the_step_leaves_the_gradient_of_its_total_loss():
    G, C, opt_g, opt_c, real = tiny_setup()
    z = sample_noise(8, TINY["nz"])
    with mg.no_grad():
        fake = G(z)
    state = backend.get_rng_state()
    gp = losses.gradient_penalty(C, real, fake)
    assert all(p.grad is None for p in C.parameters())     # its grad() call wrote nothing
    assert gp.requires_grad                                # but the penalty reaches the weights
    # after the step (lr 0), .grad is that of E f(fake) - E f(real) + GP, with the same
    # interpolation draws, and nothing more: no leftover from the penalty's grad() call
    backend.set_rng_state(state)
    total = (losses.wasserstein_critic_loss(C(real), C(fake))
             + losses.gradient_penalty(C, real, fake))
    expected = mg.grad(total, list(C.parameters()))
    backend.set_rng_state(state)
    critic_step(G, C, optim.SGD(C.parameters(), lr=0.0), real, z, gp_lambda=10.0)
    for p, g in zip(C.parameters(), expected):
        np.testing.assert_allclose(p.grad.data, g.data, rtol=1e-4, atol=1e-7)


def test_critic_and_generator_steps_train_only_their_own_model():
    G, C, opt_g, opt_c, real = tiny_setup()
    G_before, C_before = arrays(G), arrays(C)
    critic_step(G, C, opt_c, real, sample_noise(8, TINY["nz"]), gp_lambda=10.0)
    assert_unchanged(G, G_before)
    assert any(not np.array_equal(p.data, C_before[n]) for n, p in C.named_parameters())
    C_before, C_grads = arrays(C), [p.grad.data.copy() for p in C.parameters()]
    generator_step(G, C, opt_g, sample_noise(8, TINY["nz"]))
    assert_unchanged(C, C_before)
    assert any(not np.array_equal(p.data, G_before[n]) for n, p in G.named_parameters())
    assert all(p.requires_grad for p in C.parameters())    # unfrozen after the G step
    for p, g in zip(C.parameters(), C_grads):              # frozen during it: nothing added
        np.testing.assert_array_equal(p.grad.data, g)


@pytest.mark.parametrize("constraint", [{"clip": 0.05}, {"gp_lambda": 10.0}])
def test_critic_steps_raise_the_wasserstein_estimate_on_a_fixed_batch(constraint):
    G, C, opt_g, opt_c, real = tiny_setup(batch=16, lr=2e-3)
    z = sample_noise(16, TINY["nz"])
    first = critic_step(G, C, opt_c, real, z, **constraint)[1]
    for _ in range(10):
        last = critic_step(G, C, opt_c, real, z, **constraint)[1]
    assert last > first + 1e-3 and last > 0


# --- one iteration ------------------------------------------------------------------------------

@pytest.mark.parametrize("constraint", [{"clip": 0.01}, {"gp_lambda": 10.0}])
def test_iteration_draws_n_critic_real_batches_and_reports_stats(constraint):
    G, C, opt_g, opt_c, real = tiny_setup()
    drawn = []

    def next_batch():
        drawn.append(1)
        return real

    stats = wgan_train_step(G, C, opt_g, opt_c, next_batch, TINY["nz"], n_critic=3, **constraint)
    assert isinstance(stats, WGANStats) and len(drawn) == 3
    assert all(np.isfinite(v) for v in stats)
    assert stats.loss_critic == pytest.approx(-stats.wasserstein + stats.gp, rel=1e-5, abs=1e-9)
    assert (stats.gp > 0) == ("gp_lambda" in constraint)
    if "clip" in constraint:
        assert max(float(np.abs(p.data).max()) for p in C.parameters()) <= 0.01


def test_iteration_rejects_bad_constraints():
    G, C, opt_g, opt_c, real = tiny_setup()

    def step(**constraint):
        return wgan_train_step(G, C, opt_g, opt_c, lambda: real, TINY["nz"], **constraint)

    with pytest.raises(ValueError, match="exactly one"):
        step()
    with pytest.raises(ValueError, match="exactly one"):
        step(clip=0.01, gp_lambda=10.0)
    with pytest.raises(ValueError, match="clip must be > 0"):
        step(clip=0.0)
    with pytest.raises(ValueError, match="n_critic"):
        step(clip=0.01, n_critic=0)
    D_bn = Discriminator(ndf=4)
    with pytest.raises(ValueError, match="BatchNorm2d.*per sample"):
        wgan_train_step(G, D_bn, opt_g, optim.Adam(D_bn.parameters()), lambda: real, TINY["nz"],
                        gp_lambda=10.0)


def test_nan_loss_raises_before_any_update():
    G, C, opt_g, opt_c, real = tiny_setup()
    real.data[0, 0, 0, 0] = np.nan
    G_before, C_before = arrays(G), arrays(C)
    with pytest.raises(NonFiniteLossError, match="critic loss is nan at step 3"):
        wgan_train_step(G, C, opt_g, opt_c, lambda: real, TINY["nz"], gp_lambda=10.0, step=3)
    assert_unchanged(G, G_before)
    assert_unchanged(C, C_before)
    assert not opt_c.state and not opt_g.state


# --- the example, end to end --------------------------------------------------------------------

def write_digits(folder, n=48, seed=0):
    """A small IDX training set the example reads through --data-dir."""
    rng = np.random.default_rng(seed)
    write_idx(os.path.join(folder, "train-images-idx3-ubyte"),
              rng.integers(0, 256, (n, 28, 28), dtype=np.uint8))
    write_idx(os.path.join(folder, "train-labels-idx1-ubyte"),
              rng.integers(0, 10, n, dtype=np.uint8))
    return folder


def tiny_argv(out, *extra):
    return ["--nz", "8", "--ngf", "4", "--ndf", "4", "--batch-size", "8", "--n-critic", "2",
            "--no-progress", "--no-metrics", "--samples", "16", "--out", str(out), *extra]


@pytest.mark.parametrize("mode", ["wgan", "wgan-gp"])
def test_example_runs_end_to_end_and_writes_every_file(tmp_path, mode):
    from examples import wgan_mnist
    data = write_digits(str(tmp_path / "data"))
    out = tmp_path / "run"
    gp = ["--gp"] if mode == "wgan-gp" else []
    # 48 digits in batches of 8: 6 batches, i.e. 3 iterations of 2 critic steps per epoch
    assert wgan_mnist.main(tiny_argv(out, "--iters", "4", "--data-dir", data, *gp)) == 0
    assert sorted(os.listdir(out)) == ["checkpoint.npz", "interpolation.png", "losses.png",
                                       "metrics.jsonl", "samples_epoch001.png",
                                       "samples_final.png"]
    records = io.read_jsonl(out / "metrics.jsonl", strict=True)
    assert [r.get("step") for r in records] == [3, 4, 4]
    assert records[-1]["final"] is True and records[-1]["mode"] == mode
    assert all(np.isfinite(records[0][k]) for k in ("loss_critic", "loss_g", "wasserstein", "gp"))
    assert (records[0]["gp"] > 0) == (mode == "wgan-gp")
    state = io.load_checkpoint(out / "checkpoint.npz")
    assert state["step"] == 4 and len(state["extra"]["history"]["wasserstein"]) == 4
    assert state["extra"]["config"]["mode"] == mode
    if mode == "wgan":
        assert all(np.abs(v).max() <= 0.01 for v in state["models"]["critic"].values())


def test_example_resume_continues_exactly(tmp_path):
    from examples import wgan_mnist
    data = write_digits(str(tmp_path / "data"))
    straight, split = tmp_path / "straight", tmp_path / "split"
    common = ("--data-dir", data, "--gp")
    assert wgan_mnist.main(tiny_argv(straight, "--iters", "5", *common)) == 0
    assert wgan_mnist.main(tiny_argv(split, "--iters", "2", *common)) == 0
    assert wgan_mnist.main(tiny_argv(split, "--iters", "5", "--resume", *common)) == 0
    a, b = (io.load_checkpoint(d / "checkpoint.npz") for d in (straight, split))
    for model in ("G", "critic"):
        for name, value in a["models"][model].items():
            np.testing.assert_array_equal(b["models"][model][name], value, err_msg=name)
    np.testing.assert_array_equal(a["extra"]["history"]["wasserstein"],
                                  b["extra"]["history"]["wasserstein"])


def test_example_resume_refuses_a_checkpoint_of_the_other_mode(tmp_path):
    from examples import wgan_mnist
    data = write_digits(str(tmp_path / "data"))
    out = tmp_path / "run"
    assert wgan_mnist.main(tiny_argv(out, "--iters", "1", "--data-dir", data)) == 0
    with pytest.raises(SystemExit, match="mode: checkpoint 'wgan' vs now 'wgan-gp'"):
        wgan_mnist.main(tiny_argv(out, "--iters", "2", "--resume", "--gp", "--data-dir", data))


def test_example_uses_each_paper_s_optimizer_and_learning_rate():
    from examples import wgan_mnist
    G, C = make_wgan(**TINY)
    for flags, kind, lr in (([], optim.RMSprop, 5e-5), (["--gp"], optim.Adam, 1e-4)):
        args = wgan_mnist.parse_args(flags)
        opt_g, opt_c = wgan_mnist.make_optimizers(G, C, args)
        assert type(opt_g) is kind and type(opt_c) is kind
        assert opt_c.param_groups[0]["lr"] == lr and args.n_critic == 5 and args.batch_size == 64
    assert opt_c.param_groups[0]["betas"] == (0.5, 0.9)


def test_nan_guard_stops_the_example_and_keeps_the_last_good_checkpoint(tmp_path, monkeypatch,
                                                                           capsys):
    from examples import wgan_mnist
    data = write_digits(str(tmp_path / "data"))
    out = tmp_path / "run"
    calls = {"n": 0}
    real_loss = losses.wasserstein_generator_loss

    def poisoned(scores):   # the generator loss turns NaN at the third iteration
        calls["n"] += 1
        loss = real_loss(scores)
        return loss * float("nan") if calls["n"] == 3 else loss

    monkeypatch.setattr(losses, "wasserstein_generator_loss", poisoned)
    code = wgan_mnist.main(tiny_argv(out, "--iters", "6", "--checkpoint-every", "2",
                                     "--data-dir", data))
    assert code == 1
    err = capsys.readouterr().err
    assert "generator loss is nan at step 3" in err and "last good checkpoint" in err
    assert io.load_checkpoint(out / "checkpoint.npz")["step"] == 2


# --- longer runs (python -m pytest -m slow) -------------------------------------------------------

@pytest.mark.slow
@pytest.mark.parametrize("gp", [False, True])
def test_default_mnist_runs_move_samples_towards_the_digits(tmp_path, gp):
    """The example's default runs on the bundled digits (13.5 and 15 minutes on 2 idle cores,
    twice that on busy ones): the FID of the samples against held-out digits falls far below
    that of the untrained generator, and the classifier sees digits. (Measured: FID 231.7 for
    WGAN and 139.7 for WGAN-GP against about 1950 untrained; classifier scores 5.05 and 6.40
    against 1.0.)"""
    from examples import wgan_mnist
    from minigan import metrics
    out = tmp_path / "run"
    flags = ["--bundled", "--no-progress", "--out", str(out)] + (["--gp"] if gp else [])
    assert wgan_mnist.main(flags) == 0
    final = io.read_jsonl(out / "metrics.jsonl")[-1]
    mg.manual_seed(0)
    G0, _ = make_wgan(100, wgan_mnist.DEFAULT_WIDTH, wgan_mnist.DEFAULT_WIDTH)
    untrained = metrics.evaluate_images(generate(G0, sample_noise(2000, 100)))
    assert final["fid"] < 0.2 * untrained["fid"]
    assert final["classifier_score"] > 4.0 > untrained["classifier_score"]
