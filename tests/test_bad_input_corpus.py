"""The independent corpus of bad inputs (benchmarks/bad_input_corpus.py), its in-process cases in
the default run: no silent wrong answer, no crash, at most 5 errors that do not name the problem.
The cases that start example processes are marked slow (`-m slow`, or the script itself)."""
import importlib.util
import os

import numpy as np
import pytest

import minigan as mg
import minigan.functional as F
from minigan import data, density, io, nn
from minigan.gan.augment import DiffAugment
from minigan.nn.utils import spectral_norm

HERE = os.path.dirname(os.path.abspath(__file__))


@pytest.fixture
def corpus():
    path = os.path.join(HERE, os.pardir, "benchmarks", "bad_input_corpus.py")
    spec = importlib.util.spec_from_file_location("bad_input_corpus", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    yield module
    module.cleanup()   # the files and folders its cases wrote


def test_corpus_fast_cases_no_silent_wrong_no_crash(corpus):
    fast = [c for c in corpus.CASES if not c.slow]
    assert len(fast) >= 150
    assert {c.category for c in fast} >= {"layouts", "numbers", "inplace", "state", "args", "files"}
    table, bad = corpus.run(fast)
    counts = {v: sum(t[v] for t in table.values()) for v in corpus.VERDICTS}
    assert counts["silent wrong"] == 0 and counts["crash"] == 0, bad
    assert counts["unclear error"] <= 5, bad
    assert counts["right"] + counts["clear error"] == len(fast)


@pytest.mark.slow
def test_corpus_example_cases(corpus):
    slow = [c for c in corpus.CASES if c.slow]
    table, bad = corpus.run(slow)
    counts = {v: sum(t[v] for t in table.values()) for v in corpus.VERDICTS}
    assert counts["silent wrong"] == 0 and counts["crash"] == 0, bad
    assert counts["unclear error"] <= 1, bad


def test_corpus_classifier_tells_the_verdicts_apart(corpus):
    C = corpus.Case
    cases = [C("x", "right", lambda: 1, "right", lambda v: v == 1, (), False),
             C("x", "wrong", lambda: 2, "right", lambda v: v == 1, (), False),
             C("x", "clear", lambda: int("a"), "error", None, ("invalid literal",), False),
             C("x", "unclear", lambda: int("a"), "error", None, ("base 10 digits",), False),
             C("x", "no error", lambda: 3, "error", None, ("x",), False),
             C("x", "crash", lambda: 1 / 0, "error", None, ("zero",), False)]
    assert [corpus.classify(c)[0] for c in cases] == [
        "right", "silent wrong", "clear error", "unclear error", "silent wrong", "crash"]


# --- the fixes the corpus asked for, one test each ---------------------------------------------
def test_zero_in_grad_mode_refused_for_tensors_that_require_grad():
    a = mg.tensor([1.0, 2.0], requires_grad=True)
    with pytest.raises(RuntimeError, match="leaf.*no_grad"):
        a.zero_()
    h = a * 2
    with pytest.raises(RuntimeError, match="non-leaf"):
        h.zero_()
    with mg.no_grad():
        a.zero_()
    np.testing.assert_array_equal(a.data, [0, 0])
    mg.tensor([1.0]).zero_()   # no grad needed: allowed anywhere


def test_index_errors_name_the_bad_value():
    with pytest.raises(IndexError, match="index -1 is out of range"):
        nn.Embedding(3, 2)(mg.tensor(np.array([0, -1])))
    with pytest.raises(ValueError, match="target 7 is out of range"):
        F.nll_loss(mg.tensor(np.zeros((2, 3), np.float32)), mg.tensor(np.array([7, 0])))


def test_binary_cross_entropy_refuses_probabilities_outside_0_1_but_lets_nan_through():
    with pytest.raises(ValueError, match="between 0 and 1.*1.5"):
        F.binary_cross_entropy(mg.tensor([0.5, 1.5]), mg.tensor([1.0, 1.0]))
    loss = F.binary_cross_entropy(mg.tensor([np.nan]), mg.tensor([1.0]))
    assert np.isnan(loss.item())


def test_argument_checks_added():
    with pytest.raises(ValueError, match="non-empty"):
        F.stack([])
    with pytest.raises(ValueError, match="n_power_iterations must be >= 1"):
        spectral_norm(nn.Linear(2, 2), n_power_iterations=0)
    with pytest.raises(ValueError, match="nrow"):
        io.make_image_grid(np.zeros((4, 1, 8, 8)), nrow=0)
    with pytest.raises(ValueError, match="threshold"):
        density.binarize(np.zeros((1, 2, 2), np.uint8), threshold=256)
    assert DiffAugment(policy="translation, cutout").policy == ("translation", "cutout")
    with pytest.raises(ValueError, match="translaton"):
        DiffAugment(policy="translaton")


def test_file_errors_added(tmp_path):
    with pytest.raises(IsADirectoryError, match="is a folder"):
        io.load_checkpoint(tmp_path)
    with pytest.raises(FileNotFoundError, match="train-images-idx3-ubyte"):
        data.load_mnist(data_dir=tmp_path, download=False, verbose=False)


def test_mul_checks_only_the_operand_a_gradient_reads():
    x = mg.tensor([1.0, 2.0], requires_grad=True)
    c = mg.tensor([3.0, 4.0])
    y = (x * c).sum()
    with mg.no_grad():
        x.zero_()          # nothing reads x: its gradient is c (PyTorch allows this too)
    y.backward()
    np.testing.assert_array_equal(x.grad.data, [3.0, 4.0])
    w = mg.tensor([3.0, 4.0], requires_grad=True)
    y = (x * w).sum()
    with mg.no_grad():
        w.zero_()          # x's gradient reads w
    with pytest.raises(RuntimeError, match="input 1 of Mul"):
        y.backward()


def test_helper_argument_checks_added():
    from minigan import func, gan
    p = {"w": mg.tensor([1.0], requires_grad=True)}
    with pytest.raises(TypeError, match="params must be a dict.*list"):
        func.sgd_step(list(p.values()), [mg.tensor([1.0])], lr=0.1)
    with pytest.raises(ValueError, match="total >= 1"):
        gan.linear_decay(1, 0, 1e-3)
    assert gan.linear_decay(1, 10, 1e-3) == 1e-3
    with pytest.raises(ValueError, match="num_categories=0"):
        gan.sample_latent(4, 12, num_categories=0)
