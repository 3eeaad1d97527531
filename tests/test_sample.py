"""examples/sample.py and minigan.gan.rebuild: new images from the checkpoint alone, for the
DCGAN, WGAN, WGAN-GP and cGAN examples' tiny runs, and clear refusals."""
import os

import numpy as np
import pytest

import minigan as mg
from minigan import io
from minigan.gan.conditional import ConditionalGenerator
from minigan.gan.models import Generator, make_dcgan
from minigan.gan.rebuild import NotAGeneratorCheckpoint, generator_record, load_generator
from minigan.gan.train import run_state

TINY = ["--nz", "6", "--batch-size", "16", "--no-progress", "--no-metrics", "--bundled"]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Checkpoints of 2-iteration runs of every image example (4-channel-wide models)."""
    from examples import cgan_mnist, dcgan_mnist, wgan_mnist
    root = tmp_path_factory.mktemp("runs")
    made = {}
    for name, main, extra in (("dcgan", dcgan_mnist.main, ["--recipe", "small-data",
                                                           "--samples", "4"]),
                              ("dcgan_paper", dcgan_mnist.main, ["--recipe", "paper",
                                                                 "--samples", "4"]),
                              ("dcgan_clusters", dcgan_mnist.main, ["--samples", "4"]),
                              ("wgan", wgan_mnist.main, ["--n-critic", "1", "--samples", "4"]),
                              ("wgan_gp", wgan_mnist.main, ["--gp", "--n-critic", "1",
                                                            "--samples", "4"]),
                              ("cgan", cgan_mnist.main, [])):
        out = root / name
        assert main([*TINY, "--iters", "2", "--ngf", "4", "--ndf", "4", "--out", str(out),
                     *extra]) == 0
        made[name] = out
    return made


def noise(seed, n, nz):
    return np.random.default_rng(seed).standard_normal((n, nz)).astype(np.float32)


@pytest.mark.parametrize("name,model", [("dcgan", "G_ema"), ("dcgan_paper", "G"),
                                        ("wgan", "G"), ("wgan_gp", "G")])
def test_sample_draws_the_trained_generator_from_the_checkpoint_alone(runs, name, model,
                                                                      tmp_path):
    from examples import sample
    npy, png = tmp_path / "x.npy", tmp_path / "grid.png"
    assert sample.main([str(runs[name]), "--n", "10", "--seed", "3", "--out", str(png),
                        "--npy", str(npy)]) == 0
    images = np.load(npy)
    assert images.shape == (10, 1, 28, 28) and images.dtype == np.float32 and os.path.isfile(png)
    # the same images as the checkpoint's model under G(z) with z from the seed
    state = io.load_checkpoint(runs[name] / "checkpoint.npz")
    assert state["extra"]["generator"]["model"] == model
    G = Generator(nz=6, ngf=4)
    G.load_state_dict(state["models"][model])
    G.eval()
    with mg.no_grad():
        want = G(mg.Tensor(noise(3, 10, 6))).data
    np.testing.assert_allclose(images, want, rtol=1e-5, atol=1e-6)


def test_sample_draws_the_default_recipes_cluster_mixture(runs, tmp_path):
    """The default DCGAN recipe's G(z) is a mixture over 100 clusters: sampling it from the
    checkpoint rebuilds the prior from the record and draws what the trained G draws."""
    from examples import sample
    from minigan.gan.clusters import ClusterMixtureGenerator
    npy = tmp_path / "x.npy"
    assert sample.main([str(runs["dcgan_clusters"]), "--n", "12", "--seed", "2", "--npy",
                        str(npy)]) == 0
    state = io.load_checkpoint(runs["dcgan_clusters"] / "checkpoint.npz")
    record = state["extra"]["generator"]
    assert record["class"] == "minigan.gan.clusters.ClusterMixtureGenerator"
    assert len(record["kwargs"]["prior"]) == 100 and state["extra"]["config"]["clusters"] == 100
    G = ClusterMixtureGenerator(**record["kwargs"])
    G.load_state_dict(state["models"]["G"])
    G.eval()
    with mg.no_grad():
        want = G(mg.Tensor(noise(2, 12, 6))).data
    np.testing.assert_allclose(np.load(npy), want, rtol=1e-5, atol=1e-6)
    # --truncation leaves the cluster-picking coordinate alone: truncating it would draw only the
    # clusters in the middle of the prior
    from examples.sample import truncated_noise
    assert record["latent"] == {"nz": 6, "mixture": 1}
    assert sample.main([str(runs["dcgan_clusters"]), "--n", "200", "--seed", "2",
                        "--truncation", "0.3", "--npy", str(npy)]) == 0
    rng = np.random.default_rng(2)
    z = truncated_noise(rng, (200, 6), 0.3).astype(np.float32)
    z[:, :1] = rng.standard_normal((200, 1))
    assert np.abs(z[:, 1:]).max() <= 0.3 and np.abs(z[:, 0]).max() > 1.5
    assert len(np.unique(G.clusters_of(z))) > 50
    with mg.no_grad():
        want = G(mg.Tensor(z)).data
    np.testing.assert_allclose(np.load(npy), want, rtol=1e-5, atol=1e-6)


def test_sample_default_grid_lands_beside_the_checkpoint_and_seeds_differ(runs, tmp_path):
    from examples import sample
    a, b = tmp_path / "a.npy", tmp_path / "b.npy"
    assert sample.main([str(runs["dcgan"] / "checkpoint.npz"), "--n", "5", "--npy", str(a)]) == 0
    assert os.path.isfile(runs["dcgan"] / "samples_seed0.png")
    assert sample.main([str(runs["dcgan"]), "--n", "5", "--seed", "1", "--npy", str(b)]) == 0
    assert not np.allclose(np.load(a), np.load(b))


def test_sample_model_flag_picks_the_trained_weights_over_their_average(runs, tmp_path):
    from examples import sample
    ema, raw = tmp_path / "ema.npy", tmp_path / "raw.npy"
    assert sample.main([str(runs["dcgan"]), "--n", "4", "--npy", str(ema)]) == 0
    assert sample.main([str(runs["dcgan"]), "--n", "4", "--model", "G", "--npy", str(raw)]) == 0
    assert not np.allclose(np.load(ema), np.load(raw))


def test_sample_conditional_generator_draws_the_requested_labels(runs, tmp_path):
    from examples import sample
    state = io.load_checkpoint(runs["cgan"] / "checkpoint.npz")
    assert state["extra"]["generator"]["latent"] == {"nz": 6, "labels": 10}
    G = ConditionalGenerator(nz=6, ngf=4)
    G.load_state_dict(state["models"]["G"])
    G.eval()
    z = mg.Tensor(noise(0, 6, 6))
    for labels, flag in (([3] * 6, "3"), ([1, 7, 1, 7, 1, 7], "1,7"), ([0, 1, 2, 3, 4, 5], None)):
        out = tmp_path / f"{flag}.npy"
        argv = [str(runs["cgan"]), "--n", "6", "--npy", str(out)]
        assert sample.main(argv + (["--label", flag] if flag else [])) == 0
        with mg.no_grad():
            want = G(z, np.array(labels)).data
        np.testing.assert_allclose(np.load(out), want, rtol=1e-5, atol=1e-6)
    with pytest.raises(SystemExit, match="--label \\[10\\]: this generator draws classes 0..9"):
        sample.main([str(runs["cgan"]), "--label", "10"])
    with pytest.raises(SystemExit, match="is not conditional"):
        sample.main([str(runs["dcgan"]), "--label", "3"])


def test_truncation_keeps_every_noise_value_inside_and_is_the_conditioned_normal():
    from examples.sample import truncated_noise
    z = truncated_noise(np.random.default_rng(0), (20000, 4), truncation=0.5)
    assert np.abs(z).max() <= 0.5
    # N(0, 1) conditioned on |z| <= 0.5: variance 1 - 2 t phi(t) / (2 Phi(t) - 1) = 0.0797
    assert abs(z.var() - 0.0797) < 0.003
    plain = truncated_noise(np.random.default_rng(0), (5, 4))
    np.testing.assert_array_equal(plain, np.random.default_rng(0).standard_normal((5, 4)))


def test_sample_refuses_files_that_are_not_generator_checkpoints(tmp_path, runs):
    from examples import sample
    text = tmp_path / "notes.txt"
    text.write_text("not a checkpoint")
    with pytest.raises(SystemExit, match="notes.txt: not a minigan checkpoint"):
        sample.main([str(text)])
    plain = tmp_path / "plain.npz"
    np.savez(plain, a=np.zeros(3))
    with pytest.raises(SystemExit, match="not a minigan checkpoint"):
        sample.main([str(plain)])
    with pytest.raises(SystemExit, match="run folder without a checkpoint.npz"):
        sample.main([str(tmp_path)])
    G, D = make_dcgan(nz=5, ngf=2, ndf=2)   # an old checkpoint: models, but no record
    io.save_checkpoint(tmp_path / "old.npz", run_state({"G": G, "D": D}, {}, 3))
    with pytest.raises(SystemExit, match="old.npz records no generator \\(its models: "
                                         "\\['D', 'G'\\]\\)"):
        sample.main([str(tmp_path / "old.npz")])
    with pytest.raises(SystemExit, match="has no model 'H'"):
        sample.main([str(runs["dcgan"]), "--model", "H"])
    with pytest.raises(SystemExit, match="model 'D' does not fit minigan.gan.models.Generator"):
        sample.main([str(runs["dcgan"]), "--model", "D"])
    with pytest.raises(SystemExit, match="--truncation must be > 0"):
        sample.main([str(runs["dcgan"]), "--truncation", "0"])
    G = Generator(nz=5, ngf=2)
    for latent, message in (({"noise": "laplace"}, "trained on 'laplace' noise"),
                            ({"style": 3}, r"also takes \['style'\]")):
        record = generator_record(G, {"nz": 5, "ngf": 2}, **latent)
        io.save_checkpoint(tmp_path / "odd.npz", run_state({"G": G}, {}, 1,
                                                           extra={"generator": record}))
        with pytest.raises(SystemExit, match=message):
            sample.main([str(tmp_path / "odd.npz"), "--out", str(tmp_path / "odd.png")])


@pytest.mark.parametrize("path", ["os.system", "subprocess.Popen", "minigan_evil.G",
                                  "examples.dcgan_mnist.Generator", "minigan.io.save_checkpoint"])
def test_load_generator_imports_only_minigan_module_classes(tmp_path, path):
    G = Generator(nz=5, ngf=2)
    record = {**generator_record(G, {"nz": 5, "ngf": 2}), "class": path}
    io.save_checkpoint(tmp_path / "c.npz", run_state({"G": G}, {}, 1,
                                                     extra={"generator": record}))
    with pytest.raises(NotAGeneratorCheckpoint, match="not inside the minigan package|is not a "
                                                      "minigan.nn.Module class"):
        load_generator(tmp_path / "c.npz")


def test_generator_record_checks_itself_and_leaves_the_random_stream_alone():
    G = Generator(nz=5, ngf=2)
    mg.manual_seed(0)
    want = mg.randn(3).data
    mg.manual_seed(0)
    record = generator_record(G, {"nz": 5, "ngf": 2})
    np.testing.assert_array_equal(mg.randn(3).data, want)
    assert record == {"class": "minigan.gan.models.Generator", "kwargs": {"nz": 5, "ngf": 2},
                      "model": "G", "latent": {"nz": 5}}
    with pytest.raises(ValueError, match="does not rebuild this generator"):
        generator_record(G, {"nz": 5, "ngf": 3})
    with pytest.raises(ValueError, match="must be JSON values"):
        generator_record(G, {"nz": 5, "ngf": 2}, style=np.zeros(2))


def test_evaluate_scores_the_recorded_generator_unless_told_otherwise(runs, capsys):
    from examples import evaluate
    assert evaluate.main([str(runs["dcgan"]), "--n", "20", "--no-baseline"]) == 0
    assert "('G_ema', iteration 2" in capsys.readouterr().out
    assert evaluate.main([str(runs["dcgan"]), "--n", "20", "--no-baseline", "--model", "G"]) == 0
    assert "('G', iteration 2" in capsys.readouterr().out
