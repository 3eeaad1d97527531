"""Tests for the 2-D mode-collapse benchmark: the metric on known sample sets, the training loop
(every loss, packing, determinism, the learning-rate schedule, the decision surface), the
example's files and flags, and the benchmark's table. The goal itself is a slow test."""
import dataclasses
import json
import math
import os

import numpy as np
import pytest
from PIL import Image

import minigan as mg
from minigan import nn
from minigan.data.toy import (GRID_STD, RING_STD, grid_modes, ring_modes, sample_grid,
                              sample_ring)
from minigan.gan import toy2d
from minigan.gan.toy2d import (GOAL_CONFIGS, Toy2DConfig, decision_surface, evaluate, lr_factor,
                               train_toy2d)
from minigan.metrics.modes import mode_coverage

TINY = dict(steps=6, batch=8, g_hidden=(8, 8), d_hidden=(8, 8), snapshots=2, log_every=3)


class FixedPoints(nn.Module):
    """A stand-in generator: ignores z and returns rows of ``points`` (cycled) in the
    networks' units (the mixture's points divided by its scale)."""

    def __init__(self, points):
        super().__init__()
        self.points = np.asarray(points, dtype=np.float32)

    def forward(self, z):
        idx = np.arange(z.shape[0]) % len(self.points)
        return mg.tensor(self.points[idx])


# --- the metric on known samples ----------------------------------------------------------------

def test_metric_perfect_samples_capture_every_mode_at_full_quality():
    points = np.tile(ring_modes(), (312, 1))   # 2,496 points, 312 on each mode
    m = mode_coverage(points, ring_modes(), RING_STD)
    assert m["modes"] == 8 and m["n_modes"] == 8
    assert m["high_quality"] == 1.0
    assert m["reverse_kl"] == pytest.approx(0.0, abs=1e-12)
    assert m["counts"].tolist() == [312] * 8


def test_metric_on_the_data_itself_matches_the_3_std_disc_probability():
    # a 2-D Gaussian puts 1 - exp(-9/2) = 98.89% of its mass within 3 std of its centre
    expected = 1 - math.exp(-4.5)
    for sample, modes, std in ((sample_ring, ring_modes(), RING_STD),
                               (sample_grid, grid_modes(), GRID_STD)):
        m = mode_coverage(sample(20000, rng=1), modes, std)
        assert m["modes"] == len(modes)
        assert abs(m["high_quality"] - expected) < 4 * math.sqrt(expected * (1 - expected) / 20000)
        assert m["reverse_kl"] < 0.01


def test_metric_collapsed_generator_captures_one_mode():
    rng = np.random.default_rng(0)
    points = ring_modes()[3] + RING_STD * rng.standard_normal((2500, 2))
    m = mode_coverage(points, ring_modes(), RING_STD)
    assert m["modes"] == 1
    assert m["counts"].argmax() == 3
    assert m["reverse_kl"] == pytest.approx(math.log(8))


def test_metric_noise_has_few_high_quality_samples():
    rng = np.random.default_rng(0)
    ring = mode_coverage(rng.uniform(-1.5, 1.5, (2500, 2)), ring_modes(), RING_STD)
    grid = mode_coverage(rng.uniform(-5, 5, (2500, 2)), grid_modes(), GRID_STD)
    # uniform noise lands in the 3-std discs in proportion to their area: 8 pi 0.03^2 / 9 and
    # 25 pi 0.15^2 / 100, i.e. 0.25% and 1.8%
    assert ring["high_quality"] < 0.01 and grid["high_quality"] < 0.04
    assert ring["high_quality"] > 0 or grid["high_quality"] > 0


def test_evaluate_scales_the_generator_output_to_the_mixture():
    _, _, _, scale = toy2d.mixture("grid")
    G = FixedPoints(grid_modes() / scale)
    samples, m = evaluate(G, "grid", np.random.default_rng(0), z_dim=2)
    assert samples.shape == (2500, 2)
    assert m["modes"] == 25 and m["high_quality"] == 1.0
    G = FixedPoints([[np.nan, 0.0]])
    _, m = evaluate(G, "ring", np.random.default_rng(0), z_dim=2)
    assert m["diverged"] and m["modes"] == 0 and m["high_quality"] == 0.0


# --- the training loop ---------------------------------------------------------------------------

@pytest.mark.parametrize("loss", toy2d.LOSSES)
@pytest.mark.parametrize("pack", [1, 3])
def test_every_loss_and_pack_trains_a_few_steps(loss, pack):
    run = train_toy2d(Toy2DConfig(data="ring", loss=loss, pack=pack, **TINY), seed=1)
    assert run.samples.shape == (2500, 2) and np.isfinite(run.samples).all()
    assert run.discriminator[0].in_features == 2 * pack
    assert [h["step"] for h in run.history] == [3, 6]
    assert all(np.isfinite(h["d_loss"]) and np.isfinite(h["g_loss"]) for h in run.history)
    assert [s["step"] for s in run.snapshots] == [0, 6]
    assert run.snapshots[0]["heat"].shape == (96, 96)
    assert run.seconds > 0 and run.cpu_seconds > 0
    if loss == "gan":
        assert 0.0 <= run.snapshots[-1]["heat"].min() <= run.snapshots[-1]["heat"].max() <= 1.0


def test_training_changes_the_models_and_the_wgan_clip_holds():
    run = train_toy2d(Toy2DConfig(data="grid", loss="wgan", **TINY), seed=0)
    assert max(float(np.abs(p.data).max()) for p in run.discriminator.parameters()) <= 0.01
    before = train_toy2d(Toy2DConfig(data="grid", loss="wgan", **{**TINY, "steps": 1}), seed=0)
    assert not np.allclose(before.snapshots[-1]["fake"], run.snapshots[-1]["fake"])


def test_a_seed_repeats_a_run_exactly_and_another_seed_differs():
    a = train_toy2d(Toy2DConfig(**TINY), seed=3)
    b = train_toy2d(Toy2DConfig(**TINY), seed=3)
    c = train_toy2d(Toy2DConfig(**TINY), seed=4)
    np.testing.assert_array_equal(a.samples, b.samples)
    assert a.metrics["counts"].tolist() == b.metrics["counts"].tolist()
    assert not np.array_equal(a.samples, c.samples)


def test_learning_rate_schedule_is_flat_then_linear_to_the_final_factor():
    config = Toy2DConfig(steps=100, decay_start=0.6, lr_final=0.1)
    assert [lr_factor(s, config) for s in (1, 60)] == [1.0, 1.0]
    assert lr_factor(80, config) == pytest.approx(0.55)
    assert lr_factor(100, config) == pytest.approx(0.1)
    assert lr_factor(100, Toy2DConfig(steps=100, decay_start=1.0)) == 1.0


def test_progress_reports_losses_and_the_scheduled_learning_rates():
    seen = []
    config = Toy2DConfig(**{**TINY, "steps": 4}, decay_start=0.5, lr_final=0.5, lr_g=1e-3,
                         lr_d=2e-3)
    train_toy2d(config, seed=0, progress=lambda step, stats: seen.append((step, stats)))
    assert [step for step, _ in seen] == [1, 2, 3, 4]
    for step, stats in seen:
        assert stats["lr_g"] == pytest.approx(1e-3 * lr_factor(step, config))
        assert stats["lr_d"] == pytest.approx(2e-3 * lr_factor(step, config))
        assert np.isfinite(stats["d_loss"]) and np.isfinite(stats["g_loss"])
    assert seen[-1][1]["lr_g"] == pytest.approx(5e-4)


def test_decision_surface_layout_and_packing():
    # a "discriminator" whose logit is the first coordinate: D(x) rises along x, not y
    class FirstCoordinate(nn.Module):
        def forward(self, x):
            return x[:, 0:1] * 10.0

    heat = decision_surface(FirstCoordinate(), (-1, 1, -2, 2), resolution=5)
    assert heat.shape == (5, 5)
    np.testing.assert_allclose(heat[0], heat[4])           # constant along y (rows)
    assert (np.diff(heat[2]) > 0).all()                    # increasing along x (columns)
    assert heat[0, 0] < 0.01 and heat[0, 4] > 0.99

    class SumOfSlots(nn.Module):
        def forward(self, x):
            return x[:, 0:1] + x[:, 2:3]

    companions = np.array([[[1.0, 0.0]], [[3.0, 0.0]]])   # (C=2, m-1=1, 2)
    raw = decision_surface(SumOfSlots(), (0, 1, 0, 1), pack_size=2, resolution=2,
                           companions=companions, sigmoid=False, scale=0.5)
    # x / 0.5 + mean companion / 0.5 = 2x + 4
    np.testing.assert_allclose(raw, [[4.0, 6.0], [4.0, 6.0]], rtol=1e-6)
    with pytest.raises(ValueError, match="companions of shape"):
        decision_surface(SumOfSlots(), (0, 1, 0, 1), pack_size=3, companions=companions)


@pytest.mark.parametrize("bad, message", [
    (dict(data="spiral"), "data must be one of"),
    (dict(loss="lsgan"), "loss must be one of"),
    (dict(pack=0), "pack must be >= 1"),
    (dict(steps=0), "steps must be >= 1"),
    (dict(decay_start=1.5), "decay_start"),
    (dict(lr_final=0.0), "lr_final"),
    (dict(lr_d=-1.0), "lr_d must be > 0"),
    (dict(d_steps=0), "d_steps must be >= 1"),
])
def test_bad_configurations_are_refused_by_name(bad, message):
    with pytest.raises(ValueError, match=message):
        train_toy2d(Toy2DConfig(**{**TINY, **bad}))


def test_loss_defaults_fill_in_and_explicit_values_win():
    assert Toy2DConfig(loss="wgan-gp").resolved().d_steps == 5
    assert Toy2DConfig(loss="wgan").resolved().lr_g == 5e-5
    assert Toy2DConfig(loss="gan", d_steps=2, lr_g=3e-4).resolved().d_steps == 2
    assert Toy2DConfig(loss="gan", lr_g=3e-4).resolved().lr_g == 3e-4


# --- the example ---------------------------------------------------------------------------------

def test_example_writes_samples_metrics_and_gan_lab_images(tmp_path, capsys):
    from examples import gan_toy2d
    out = tmp_path / "run"
    run = gan_toy2d.main(["--data", "grid", "--steps", "6", "--batch", "8", "--g-hidden", "8,8",
                          "--d-hidden", "8", "--pack", "2", "--seed", "2", "--snapshots", "3",
                          "--log-every", "2", "--out", str(out), "--no-progress"])
    samples = np.load(out / "samples.npy")
    np.testing.assert_array_equal(samples, run.samples)
    assert samples.shape == (2500, 2)
    record = json.loads((out / "metrics.json").read_text())
    assert record["metrics"]["modes"] == run.metrics["modes"]
    assert record["config"]["pack"] == 2 and record["config"]["g_hidden"] == [8, 8]
    assert record["seed"] == 2
    panels = sorted(p.name for p in out.glob("gan_lab_*.png"))
    assert panels == ["gan_lab_000000.png", "gan_lab_000003.png", "gan_lab_000006.png"]
    widths = [Image.open(out / p).width for p in panels]
    assert Image.open(out / "gan_lab.png").width == sum(widths)
    assert Image.open(out / "curves.png").size[0] > 100
    assert "modes" in capsys.readouterr().out


@pytest.mark.parametrize("loss", toy2d.LOSSES)
def test_example_runs_each_loss_a_few_steps(tmp_path, loss):
    from examples import gan_toy2d
    run = gan_toy2d.main(["--loss", loss, "--steps", "2", "--batch", "4", "--g-hidden", "4",
                          "--d-hidden", "4", "--snapshots", "1", "--out", str(tmp_path),
                          "--no-progress"])
    assert run.config.loss == loss
    assert os.path.exists(tmp_path / "gan_lab.png")
    if loss != "gan":
        # the goal's Adam settings belong to its loss; another loss takes its own defaults
        assert run.config.lr_g == Toy2DConfig(loss=loss).resolved().lr_g


def test_example_defaults_are_the_goal_configuration_and_bad_flags_exit():
    from examples import gan_toy2d
    for data in ("ring", "grid"):
        config = gan_toy2d.config_from_args(gan_toy2d.parse_args(["--data", data]))
        goal = GOAL_CONFIGS[data].resolved()
        assert dataclasses.replace(config, log_every=0, snapshots=0) == \
            dataclasses.replace(goal, log_every=0, snapshots=0)
    with pytest.raises(SystemExit):
        gan_toy2d.main(["--pack", "0", "--no-progress"])
    with pytest.raises(SystemExit):
        gan_toy2d.parse_args(["--g-hidden", "8,x"])


# --- the benchmark -------------------------------------------------------------------------------

def test_benchmark_runs_rows_and_prints_the_table_beside_the_published_rows(tmp_path, capsys):
    from benchmarks import bench_toy2d
    records = tmp_path / "records.jsonl"
    args = ["--seeds", "2", "--configs", "GAN,PacGAN2", "--steps", "2", "--records", str(records)]
    small = {"batch": 4, "g_hidden": (4,), "d_hidden": (4,)}
    saved = dict(bench_toy2d.GOAL_CONFIGS)
    try:
        for data in saved:
            bench_toy2d.GOAL_CONFIGS[data] = dataclasses.replace(saved[data], **small)
        shown = bench_toy2d.main(args)
        assert len(shown) == 2 * 2 * 2
        text = capsys.readouterr().out
        assert "GAN (PacGAN T1)" in text and "VEEGAN" in text and "minigan PacGAN2" in text
        assert "misses the goal" in text or "MEETS the goal" in text
        # a second call finds every run in the records and only reprints the table
        again = bench_toy2d.main(args)
        assert "0 runs to do" in capsys.readouterr().out
        assert len(again) == len(shown)
    finally:
        bench_toy2d.GOAL_CONFIGS.update(saved)
    assert len(records.read_text().splitlines()) == 8


def test_benchmark_mean_and_standard_error():
    from benchmarks import bench_toy2d
    mean, se = bench_toy2d.mean_se([1.0, 2.0, 3.0, 4.0])
    assert mean == 2.5 and se == pytest.approx(np.std([1, 2, 3, 4], ddof=1) / 2)
    assert bench_toy2d.mean_se([5.0]) == (5.0, 0.0)
    assert bench_toy2d.mean_se([1.0, math.inf])[0] == math.inf


# --- the goal (slow) -----------------------------------------------------------------------------

@pytest.mark.slow
@pytest.mark.parametrize("data", ["ring", "grid"])
def test_goal_configuration_captures_every_mode_with_high_quality(data):
    modes, share = {"ring": (8, 0.97), "grid": (25, 0.95)}[data]
    run = train_toy2d(GOAL_CONFIGS[data], seed=0)
    assert run.metrics["modes"] == modes
    assert run.metrics["high_quality"] >= share
