"""The mode-collapse cures on the 2-D benchmark: every new option trains a few steps at a tiny
size (loop, example flags, benchmark rows), bad combinations are refused by name; the 5-seed
goal runs of the unrolled GAN are slow tests."""
import dataclasses

import numpy as np
import pytest

from minigan import nn
from minigan.gan.toy2d import Toy2DConfig, build_models, discriminator_features, train_toy2d
from minigan.nn import MinibatchDiscrimination

TINY = dict(steps=4, batch=8, g_hidden=(8, 8), d_hidden=(8, 8), snapshots=2, log_every=2, pack=1)

OPTIONS = [dict(unroll=2), dict(loss="hinge", spectral_norm=True), dict(minibatch_disc=3),
           dict(feature_matching=True), dict(r1_gamma=1.0),
           dict(loss="hinge", unroll=1, spectral_norm=True),
           dict(minibatch_disc=2, feature_matching=True)]


@pytest.mark.parametrize("options", OPTIONS, ids=lambda o: ",".join(f"{k}={v}" for k, v in o.items()))
def test_every_cure_trains_a_few_steps_repeatably(options):
    config = Toy2DConfig(**{**TINY, **options})
    run = train_toy2d(config, seed=3)
    assert run.samples.shape == (2500, 2) and np.isfinite(run.samples).all()
    assert len(run.history) == 2 and len(run.snapshots) == 2
    assert all(np.isfinite(h["d_loss"]) and np.isfinite(h["g_loss"]) for h in run.history)
    again = train_toy2d(config, seed=3)
    np.testing.assert_array_equal(run.samples, again.samples)   # a seed repeats a run


def test_build_models_places_the_cures_in_d():
    config = Toy2DConfig(minibatch_disc=4, spectral_norm=True, d_hidden=(6, 5)).resolved()
    _, D = build_models(config)
    assert isinstance(D[-2], MinibatchDiscrimination) and D[-1].in_features == 5 + 4
    linears = [m for m in D if isinstance(m, nn.Linear)]
    assert len(linears) == 3 and all("weight_u" in dict(m.named_buffers()) for m in linears)
    feats = discriminator_features(D, config)
    assert isinstance(feats[-1], nn.LeakyReLU) and len(feats) == len(D) - 2


@pytest.mark.parametrize("bad, message", [
    (dict(unroll=-1), "unroll must be >= 0"),
    (dict(unroll=2, loss="wgan"), "unroll is implemented for the losses 'gan' and 'hinge'"),
    (dict(unroll=2, feature_matching=True), "does not combine"),
    (dict(minibatch_disc=-2), "minibatch_disc must be >= 0"),
    (dict(r1_gamma=-0.5), "r1_gamma must be >= 0"),
])
def test_bad_cure_configurations_are_refused_by_name(bad, message):
    with pytest.raises(ValueError, match=message):
        Toy2DConfig(**bad).resolved()


def test_example_flags_reach_the_configuration(tmp_path):
    from examples import gan_toy2d
    args = ["--data", "ring", "--loss", "hinge", "--spectral-norm", "--unroll", "1",
            "--minibatch-disc", "2", "--steps", "2", "--batch", "4", "--g-hidden", "4",
            "--d-hidden", "4", "--snapshots", "1", "--pack", "1", "--out", str(tmp_path),
            "--no-progress"]
    run = gan_toy2d.main(args)
    c = run.config
    assert (c.loss, c.spectral_norm, c.unroll, c.minibatch_disc) == ("hinge", True, 1, 2)
    assert (tmp_path / "gan_lab.png").exists()
    c = gan_toy2d.config_from_args(gan_toy2d.parse_args(["--feature-matching", "--r1", "2.5"]))
    assert c.feature_matching and c.r1_gamma == 2.5 and not c.spectral_norm and c.unroll == 0


def test_benchmark_has_the_cure_rows():
    from benchmarks import bench_toy2d
    for name in ("Unrolled5", "Unrolled10", "MBD", "FM", "SN-hinge", "R1", "GAN-short"):
        config = bench_toy2d.config_for(name, "ring")
        assert config.pack == 1
    assert bench_toy2d.config_for("Unrolled5", "grid").unroll == 5
    goal = bench_toy2d.config_for("Unrolled5-b256-5k", "grid")
    assert (goal.unroll, goal.pack, goal.batch, goal.steps) == (5, 1, 256, 5000)
    assert bench_toy2d.config_for("SN-hinge", "grid").spectral_norm
    # the published unrolled row (VEEGAN's Table 1, 5 runs) sits beside PacGAN's 10-trial rows
    row = next(line for line in bench_toy2d.table([], []).splitlines()
               if line.startswith("Unrolled GAN (VEEGAN T1)"))
    assert row.split()[-1] == "5" and "35.6" in row and "16.0" in row


# --- the goal (slow): unrolled GAN, K = 5, pack 1, mean over 5 seeds ----------------------------

@pytest.mark.slow
@pytest.mark.parametrize("data, modes, share", [("ring", 7.5, 0.90), ("grid", 22, 0.85)])
def test_unrolled_gan_goal(data, modes, share):
    from benchmarks import bench_toy2d
    config = bench_toy2d.config_for("Unrolled5-b256-5k", data)
    runs = [train_toy2d(config, seed=s) for s in range(5)]
    assert np.mean([r.metrics["modes"] for r in runs]) >= modes
    assert np.mean([r.metrics["high_quality"] for r in runs]) >= share
    assert max(r.cpu_seconds for r in runs) <= 600


def test_compare_stacks_the_gan_lab_strips_of_two_runs(tmp_path):
    from PIL import Image

    from examples import gan_toy2d, toy2d_compare
    common = ["--steps", "2", "--batch", "4", "--g-hidden", "4", "--d-hidden", "4",
              "--snapshots", "2", "--pack", "1", "--no-progress"]
    gan_toy2d.main(common + ["--out", str(tmp_path / "plain")])
    gan_toy2d.main(common + ["--unroll", "2", "--out", str(tmp_path / "unrolled")])
    out = toy2d_compare.compose([tmp_path / "plain", tmp_path / "unrolled"], tmp_path / "c.png")
    strip = Image.open(tmp_path / "plain" / "gan_lab.png")
    assert Image.open(out).size == (strip.width, 2 * (strip.height + 22))
    assert "unroll 2" in toy2d_compare.label(tmp_path / "unrolled")
    with pytest.raises(SystemExit):
        toy2d_compare.main([str(tmp_path / "missing"), "--out", str(tmp_path / "x.png")])


def test_bench_unrolled_prints_its_table_and_json():
    import json
    import os
    import subprocess
    import sys
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = dict(os.environ, PYTHONPATH=root + os.pathsep + os.environ.get("PYTHONPATH", ""))
    done = subprocess.run([sys.executable, os.path.join(root, "benchmarks", "bench_unrolled.py"),
                           "--k", "1,2", "--batch", "4", "--repeat", "1", "--no-torch"],
                          capture_output=True, text=True, cwd=root, env=env, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    last = json.loads(done.stdout.strip().splitlines()[-1])
    assert last["plain_ms"]["minigan"] > 0 and last["unrolled2_ms"]["minigan"] > 0
    assert "/(K+1) plain" in done.stdout


def test_snapshots_leave_a_spectrally_normalised_run_as_it_is():
    """decision_surface judges in eval mode: the power iteration's u does not move, so a run
    with GAN-Lab snapshots trains exactly like one without."""
    config = Toy2DConfig(**{**TINY, "loss": "hinge", "spectral_norm": True})
    with_views = train_toy2d(config, seed=4)
    without = train_toy2d(dataclasses.replace(config, snapshots=0, log_every=0), seed=4)
    np.testing.assert_array_equal(with_views.samples, without.samples)
    assert with_views.discriminator.training
