"""Checkpoints of a training run: exact round trip, and a stopped-and-resumed run that ends with
exactly the parameters of an uninterrupted one (tiny DCGAN widths, CPU)."""
import os

import numpy as np
import pytest

import minigan as mg
from minigan import backend, io, optim
from minigan.data import Batches
from minigan.gan.models import make_dcgan
from minigan.gan.train import restore_run_state, run_state, sample_noise, train_step

NZ, BATCH = 8, 8
DATA = np.random.default_rng(7).uniform(-1, 1, (40, 1, 28, 28)).astype(np.float32)


def fresh_run(seed=3):
    """Models, optimizers and a loader as a new process would make them."""
    mg.manual_seed(seed)
    G, D = make_dcgan(nz=NZ, ngf=4, ndf=4)
    opt_g = optim.Adam(G.parameters(), lr=2e-4, betas=(0.5, 0.999))
    opt_d = optim.Adam(D.parameters(), lr=2e-4, betas=(0.5, 0.999))
    loader = Batches(DATA, batch_size=BATCH, seed=seed)
    return {"G": G, "D": D}, {"G": opt_g, "D": opt_d}, loader


def train(models, optimizers, loader, iterations):
    # 40 samples in batches of 8: 5 iterations per epoch, so runs here cross epoch boundaries
    batches = iter(loader.forever())
    for _ in range(iterations):
        train_step(models["G"], models["D"], optimizers["G"], optimizers["D"],
                   mg.Tensor(next(batches)), sample_noise(BATCH, NZ))


def assert_same_models(a, b):
    for name in a:
        sa, sb = a[name].state_dict(), b[name].state_dict()
        assert list(sa) == list(sb)
        for key in sa:
            np.testing.assert_array_equal(sa[key], sb[key], err_msg=f"{name}.{key}")


def assert_same_tree(a, b, where="state"):
    """Equal nested trees: arrays equal in dtype and value, everything else equal."""
    assert type(a) is type(b) or (np.isscalar(a) and np.isscalar(b)), where
    if isinstance(a, dict):
        assert list(a) == list(b), where
        for k in a:
            assert_same_tree(a[k], b[k], f"{where}/{k}")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            assert_same_tree(x, y, f"{where}/{i}")
    elif isinstance(a, np.ndarray):
        assert a.dtype == b.dtype, where
        np.testing.assert_array_equal(a, b, err_msg=where)
    else:
        assert a == b, where


def test_run_state_round_trips_exactly_through_a_checkpoint(tmp_path):
    models, optimizers, loader = fresh_run()
    train(models, optimizers, loader, 3)
    state = run_state(models, optimizers, 3, loader, extra={"history": np.arange(3.0)})
    path = io.save_checkpoint(tmp_path / "c.npz", state)
    back = io.load_checkpoint(path)
    assert_same_tree(state, back)
    # the file is plain npz: readable without pickle
    with np.load(path, allow_pickle=False) as z:
        assert any(name.startswith("models/G/") for name in z.files)

    models2, optimizers2, loader2 = fresh_run(seed=11)
    step, extra = restore_run_state(back, models2, optimizers2, loader2)
    assert step == 3 and np.array_equal(extra["history"], np.arange(3.0))
    assert_same_models(models, models2)
    assert_same_tree(run_state(models2, optimizers2, 3, loader2, extra), state)
    assert backend.get_rng_state() == state["rng"]


@pytest.mark.parametrize("total, stop", [(8, 4), (7, 5)])
def test_stopped_and_resumed_run_equals_an_uninterrupted_one(tmp_path, total, stop):
    straight = fresh_run()
    train(*straight, total)

    first = fresh_run()
    train(*first, stop)
    path = io.save_checkpoint(tmp_path / "c.npz", run_state(*first[:2], stop, first[2]))
    del first

    # a new "process": other seed, other global RNG position; the checkpoint must restore it all
    resumed = fresh_run(seed=99)
    mg.randn(5)
    step, _ = restore_run_state(io.load_checkpoint(path), *resumed)
    assert step == stop
    train(*resumed, total - step)
    assert_same_models(straight[0], resumed[0])
    assert_same_tree(straight[1]["G"].state_dict(), resumed[1]["G"].state_dict())
    assert_same_tree(straight[1]["D"].state_dict(), resumed[1]["D"].state_dict())


def test_restore_names_what_the_checkpoint_lacks():
    models, optimizers, loader = fresh_run()
    state = run_state({"G": models["G"]}, optimizers, 0, None)
    with pytest.raises(KeyError, match="no models named \\['D'\\]"):
        restore_run_state(state, models, optimizers, loader)
    state = run_state(models, optimizers, 0, None)
    with pytest.raises(KeyError, match="no data loader state"):
        restore_run_state(state, models, optimizers, loader)


# --- the example's --resume ---------------------------------------------------------------------

def example_argv(out, data, *extra):
    return ["--nz", "8", "--ngf", "4", "--ndf", "4", "--batch-size", "16", "--no-progress",
            "--no-metrics", "--samples", "16", "--data-dir", data, "--out", str(out), *extra]


def test_example_resume_continues_exactly(tmp_path):
    from examples import dcgan_mnist
    from test_dcgan import write_digits
    data = write_digits(str(tmp_path / "data"))
    # 48 digits, batch 16: 3 iterations per epoch; stop mid-epoch at 4, finish at 7
    assert dcgan_mnist.main(example_argv(tmp_path / "a", data, "--clusters", "4",
                                         "--iters", "7")) == 0
    assert dcgan_mnist.main(example_argv(tmp_path / "b", data, "--clusters", "4",
                                         "--iters", "4")) == 0
    mg.manual_seed(1234)   # whatever the process did in between
    assert dcgan_mnist.main(example_argv(tmp_path / "b", data, "--clusters", "4",
                                         "--iters", "7", "--resume")) == 0
    a = io.load_checkpoint(tmp_path / "a" / "checkpoint.npz")
    b = io.load_checkpoint(tmp_path / "b" / "checkpoint.npz")
    assert a["step"] == b["step"] == 7
    assert_same_tree(a["models"], b["models"])
    assert_same_tree(a["optimizers"], b["optimizers"])
    assert_same_tree(a["loader"], b["loader"])
    assert_same_tree(a["extra"]["history"], b["extra"]["history"])
    with open(tmp_path / "a" / "samples_final.png", "rb") as fa, \
            open(tmp_path / "b" / "samples_final.png", "rb") as fb:
        assert fa.read() == fb.read()


def test_example_resume_refuses_other_settings_or_a_missing_checkpoint(tmp_path):
    from examples import dcgan_mnist
    from test_dcgan import write_digits
    data = write_digits(str(tmp_path / "data"))
    with pytest.raises(SystemExit, match="no checkpoint at"):
        dcgan_mnist.main(example_argv(tmp_path / "none", data, "--clusters", "4",
                                      "--iters", "2", "--resume"))
    assert dcgan_mnist.main(example_argv(tmp_path / "run", data, "--clusters", "4",
                                         "--iters", "2")) == 0
    before = os.path.getmtime(tmp_path / "run" / "checkpoint.npz")
    with pytest.raises(SystemExit, match="ngf: checkpoint 4 vs now 8"):
        dcgan_mnist.main(example_argv(tmp_path / "run", data, "--clusters", "4",
                                      "--iters", "4", "--resume",
                                      "--ngf", "8"))
    assert os.path.getmtime(tmp_path / "run" / "checkpoint.npz") == before
    with pytest.raises(SystemExit, match="clusters: checkpoint 4 vs now 5"):
        dcgan_mnist.main(example_argv(tmp_path / "run", data, "--clusters", "5", "--iters", "4",
                                      "--resume"))
