"""Issue 11: every bad input gets a clear error or the right answer, by category.

One test (or a few) per category of the issue: valid input refused, wrong numbers, in-place
changes of saved tensors (the version counter), half-done state on failure, argument validation,
files, data and flags. Then the Hypothesis property over layouts and dtypes for every kernel op
and its backward, and the kill -9 fault test of a checkpoint write. The corpus of single bad
inputs is tests/test_bad_inputs.py.
"""
import os
import signal
import struct
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import minigan as mg
import minigan.functional as F
from minigan import io, kernels, nn, optim
from minigan.data.idx import IdxError, parse_idx
from minigan.gan import models, train
from minigan.io import CheckpointError

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _rand(*shape, dtype=np.float32, seed=0):
    return np.random.default_rng(seed).standard_normal(shape).astype(dtype)


# --- valid input refused ------------------------------------------------------------------------

def test_valid_but_unusual_inputs_are_accepted(tmp_path):
    x = _rand(2, 1, 5, 5)
    w = _rand(3, 1, 3, 3, seed=1)
    expected = F.conv2d(x, w, stride=2, padding=1).data
    np.save(tmp_path / "x.npy", x)
    mapped = np.load(tmp_path / "x.npy", mmap_mode="r")               # read-only, 1 channel
    frozen = np.frombuffer(x.tobytes(), dtype=np.float32).reshape(x.shape)
    for variant in (mapped, frozen):
        np.testing.assert_array_equal(F.conv2d(variant, w, stride=np.int64(2), padding=1).data,
                                      expected)
    one = np.frombuffer(np.ones(1, np.float32).tobytes(), np.float32).reshape(1, 1, 1, 1)
    assert F.conv2d(one, one.copy(), padding=1).shape == (1, 1, 3, 3)  # 1x1 map with padding
    bn = nn.BatchNorm2d(1, momentum=None)                              # cumulative average
    batches = [_rand(4, 1, 3, 3, seed=s) for s in range(3)]
    for b in batches:
        bn(mg.tensor(b))
    means = [b.mean() for b in batches]
    np.testing.assert_allclose(bn.running_mean.data, [np.mean(means)], rtol=1e-5)


# --- wrong numbers ------------------------------------------------------------------------------

def test_activations_at_infinities_and_nan_match_pytorch():
    x = mg.tensor([-np.inf, np.inf, np.nan, -1.0])
    # the values torch 2.13 gives for these inputs
    expect = {
        "relu": [0, np.inf, np.nan, 0], "leaky_relu": [-np.inf, np.inf, np.nan, -0.01],
        "sigmoid": [0, 1, np.nan, 0.26894142], "tanh": [-1, 1, np.nan, -0.7615942],
        "softplus": [0, np.inf, np.nan, 0.31326169], "log_sigmoid": [-np.inf, 0, np.nan, -1.3132616],
    }
    for name, values in expect.items():
        np.testing.assert_allclose(getattr(F, name)(x).data, values, rtol=1e-6, err_msg=name)
    # a NaN logit gives a NaN loss (never a plausible number); +-inf logits give NaN or inf as
    # in PyTorch, whose formula also multiplies inf by 0 there
    loss = F.binary_cross_entropy_with_logits(mg.tensor([np.nan, 1e4]), mg.tensor([1.0, 0.0]),
                                              reduction="none")
    assert np.isnan(loss.data[0]) and loss.data[1] == 1e4


def test_integer_inputs_are_promoted_and_foreign_dtypes_refused():
    ints = mg.tensor([0, 1, 2])
    np.testing.assert_allclose(F.sigmoid(ints).data, [0.5, 0.7310586, 0.8807971], rtol=1e-6)
    assert F.sigmoid(ints).dtype == np.float32
    np.testing.assert_allclose(F.softplus(ints).data, np.log1p(np.exp([0, 1, 2])), rtol=1e-6)
    assert (ints / mg.tensor([2, 2, 2])).dtype == np.float32
    assert (ints * mg.tensor([0.5, 0.5, 0.5])).dtype == np.float32
    for bad in (np.array([1j]), np.array([1, "a"], dtype=object), "abc", np.array(["x"])):
        with pytest.raises(TypeError, match="dtype"):
            mg.tensor(bad)
    assert np.isnan(mg.tensor(np.zeros(0, np.float32)).mean().item())
    a = mg.tensor(np.ones(3, np.float32), requires_grad=True)
    (a * mg.tensor(np.ones(3))).sum().backward()
    assert a.grad.dtype == np.float32
    g, = mg.grad((a * mg.tensor(np.ones(3))).sum(), a)
    assert g.dtype == np.float32


def test_tensor_copies_as_tensor_and_from_numpy_share():
    data = np.ones(3, np.float32)
    copied, shared, same = mg.tensor(data), mg.as_tensor(data), mg.from_numpy(data)
    data[0] = 5
    assert copied.data[0] == 1 and shared.data[0] == 5 and same.data[0] == 5
    with pytest.raises(TypeError, match="numpy.ndarray"):
        mg.from_numpy([1.0, 2.0])


# --- in-place changes of saved tensors ----------------------------------------------------------

def test_in_place_change_of_a_saved_tensor_raises_naming_op_and_tensor():
    x = mg.tensor([1.0, 2.0], requires_grad=True)
    w = mg.tensor([3.0, 4.0], requires_grad=True)
    w.name = "w"
    y = (x * w).sum()
    assert w._version == 0
    with mg.no_grad():   # as in PyTorch: with grad mode on, zero_() of such a leaf is refused
        w.zero_()
    assert w._version == 1
    with pytest.raises(RuntimeError, match=r"input 1 of Mul, the tensor 'w' of shape \(2,\).*"
                                           r"version 1, changed after Mul saved it"):
        y.backward()


def test_version_counter_only_where_backward_reads_the_values():
    x = mg.tensor([1.0, 2.0], requires_grad=True)
    w = mg.tensor([3.0, 4.0], requires_grad=True)
    y = (x + w).sum()              # add's backward needs no values: PyTorch allows this too
    with mg.no_grad():
        w.zero_()
    y.backward()
    np.testing.assert_array_equal(x.grad.data, [1, 1])
    e = x.exp()                    # exp's backward reads its output
    out = e.sum()
    e.detach().zero_()             # detach shares memory and the counter
    with pytest.raises(RuntimeError, match="its output of Exp"):
        out.backward()
    v = mg.tensor([1.0, 2.0], requires_grad=True)
    r = v.reshape(2, 1)            # a view shares the counter of its base
    y = (r * r).sum()
    v.detach().zero_()
    with pytest.raises(RuntimeError, match="of Mul"):
        y.backward()


def test_optimizer_step_init_and_load_bump_versions():
    layer = nn.Linear(2, 1)
    opt = optim.SGD(layer.parameters(), lr=0.1)
    x = mg.tensor([[1.0, 2.0]])
    loss = layer(x).sum()
    loss.backward(retain_graph=True)
    opt.step()                       # changes the weight the graph saved
    with pytest.raises(RuntimeError, match="input 1 of Linear"):
        loss.backward()
    before = layer.weight._version
    nn.init.zeros_(layer.weight)
    layer.load_state_dict(layer.state_dict())
    assert layer.weight._version == before + 2


# --- half-done state on failure -----------------------------------------------------------------

def test_failing_calls_leave_module_and_optimizer_state_unchanged():
    bn = nn.BatchNorm2d(2)
    bn(mg.tensor(_rand(4, 2, 3, 3)))
    state = {k: v.copy() for k, v in bn.state_dict().items()}
    for bad in (mg.tensor(_rand(4, 2, 3, 3, dtype=np.float64)),     # dtype differs from weight
                mg.tensor(np.ones((4, 2, 3, 3), np.int64)),          # integer input
                mg.tensor(_rand(4, 3, 3, 3))):                       # wrong channel count
        with pytest.raises((TypeError, ValueError)):
            bn(bad)
    for k, v in bn.state_dict().items():
        np.testing.assert_array_equal(v, state[k], err_msg=k)
    layer = nn.Linear(2, 2)
    opt = optim.Adam(layer.parameters(), lr=0.1)
    layer(mg.tensor([[1.0, 2.0]])).sum().backward()
    opt.step()
    opt_state = opt.state_dict()
    good = layer.state_dict()
    with pytest.raises(TypeError, match="'bias'"):
        layer.load_state_dict({"weight": np.zeros((2, 2), np.float32), "bias": None})
    with pytest.raises(ValueError):
        broken = opt.state_dict()
        broken["state"][1]["exp_avg"] = np.zeros(7)
        opt.load_state_dict(broken)
    with pytest.raises(ValueError, match="lr"):
        broken = opt.state_dict()
        broken["param_groups"][0]["lr"] = float("nan")
        opt.load_state_dict(broken)
    for k, v in layer.state_dict().items():
        np.testing.assert_array_equal(v, good[k])
    after = opt.state_dict()
    assert after["param_groups"] == opt_state["param_groups"]
    for i, entry in opt_state["state"].items():
        for k, v in entry.items():
            np.testing.assert_array_equal(after["state"][i][k], v)


# --- missing argument validation ----------------------------------------------------------------

def test_optimizer_and_layer_arguments_are_validated():
    layer = nn.Linear(2, 2)
    cases = [
        (lambda: optim.SGD(layer.parameters(), lr=float("nan")), ValueError, "invalid lr"),
        (lambda: optim.Adam(layer.parameters(), weight_decay=-1), ValueError, "weight_decay"),
        (lambda: optim.SGD(layer.parameters(), lr=0.1, momentum=-0.5), ValueError, "momentum"),
        (lambda: optim.SGD(layer.weight, lr=0.1), TypeError, "iterable of Tensors"),
        (lambda: optim.SGD([np.ones(3)], lr=0.1), TypeError, "ndarray"),
        (lambda: optim.SGD([{"params": [layer.weight]}, {"params": [layer.weight]}], lr=0.1),
         ValueError, "appears twice"),
        (lambda: optim.SGD([{"params": [layer.weight], "lr": -1}], lr=0.1), ValueError, "lr"),
        (lambda: F.conv2d(np.ones((1, 1, 3, 3), np.float32), np.ones((1, 1, 0, 0), np.float32)),
         ValueError, "empty"),
        (lambda: F.conv2d(np.ones((1, 1, 3, 3), np.float32), np.ones((1, 1, 1, 1), np.float32),
                          stride=1.5), TypeError, "stride"),
        (lambda: F.conv2d(np.ones((1, 1, 3, 3), np.float32), np.ones((1, 1, 1, 1), np.float32),
                          padding=2 ** 40), ValueError, "padding"),
        (lambda: nn.Conv2d(1, 1, kernel_size=0), ValueError, "kernel_size"),
        (lambda: nn.BatchNorm2d(2, momentum=1.5), ValueError, "momentum"),
    ]
    for make, error, words in cases:
        with pytest.raises(error, match=words):
            make()


# --- files --------------------------------------------------------------------------------------

def test_idx_and_checkpoint_problems_name_the_file(tmp_path):
    huge = struct.pack(">I3I", 0x0803, 2 ** 32 - 1, 2 ** 32 - 1, 2) + bytes(84)
    with pytest.raises(IdxError, match=r"f\.idx: truncated.*\(4294967295, 4294967295, 2\)"):
        parse_idx(huge, "f.idx")
    plain = tmp_path / "plain.npz"
    with open(plain, "wb") as f:
        np.save(f, np.zeros(3))
    with pytest.raises(CheckpointError, match="plain.npz: a plain .npy"):
        io.load_checkpoint(plain)
    listed = tmp_path / "listed.npz"
    np.savez(listed, __minigan__=np.frombuffer(b"[1, 2]", np.uint8))
    with pytest.raises(CheckpointError, match="listed.npz: .*JSON list"):
        io.load_checkpoint(listed)
    # a member whose header claims 10^12 float64 values: refused before any allocation
    good, bomb = tmp_path / "good.npz", tmp_path / "bomb.npz"
    io.save_checkpoint(good, {"w": np.zeros(4)})
    _write_bomb(good, bomb)
    with pytest.raises(CheckpointError, match=r"bomb.npz: .*1000000000000"):
        io.load_checkpoint(bomb)


def _write_bomb(good, bomb):
    """Copy the zip ``good`` with its array member's header changed to claim 10^12 values."""
    import zipfile
    with zipfile.ZipFile(good) as z, zipfile.ZipFile(bomb, "w") as out:
        for info in z.infolist():
            data = z.read(info)
            if info.filename == "w.npy":
                data = data.replace(b"'shape': (4,), ", b"'shape': (1000000000000,), ")
            out.writestr(info.filename, data)


KILLED_WRITER = textwrap.dedent("""
    import sys
    sys.path.insert(0, {root!r})
    import numpy as np
    from minigan import io
    write_array = np.lib.format.write_array
    def write_then_wait(member, array, **kwargs):
        write_array(member, array, **kwargs)
        if array.size > 1000:           # the weights are half written: stop here until killed
            print("writing", flush=True)
            sys.stdin.read()
    np.lib.format.write_array = write_then_wait
    io.save_checkpoint({path!r}, {{"step": 3, "w": np.ones(5000), "v": np.ones(5000)}})
""")


def test_kill_9_during_checkpoint_write_leaves_no_temp_file_after_the_next_save(tmp_path):
    path = str(tmp_path / "checkpoint.npz")
    io.save_checkpoint(path, {"step": 1})
    for _ in range(2):    # twice in a row; the second write already removes the first's orphan
        child = subprocess.Popen([sys.executable, "-c", KILLED_WRITER.format(root=ROOT, path=path)],
                                 stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        assert child.stdout.readline().strip() == b"writing"
        os.kill(child.pid, signal.SIGKILL)
        child.wait()
        orphans = [n for n in os.listdir(tmp_path) if n.endswith(".tmp")]
        assert len(orphans) == 1 and os.path.getsize(tmp_path / orphans[0]) > 40000
        assert io.load_checkpoint(path) == {"step": 1}      # the old file is intact
    io.save_checkpoint(path, {"step": 2})
    assert sorted(os.listdir(tmp_path)) == ["checkpoint.npz"]
    assert io.load_checkpoint(path) == {"step": 2}


def test_a_live_writers_temp_file_is_not_removed(tmp_path):
    path = str(tmp_path / "c.npz")
    seen = []

    def write(f):
        io.save_checkpoint(path, {"inner": 1})            # a second save while this one writes
        seen.extend(os.listdir(tmp_path))
        f.write(b"x")

    io.atomic_write(path, write)
    assert sum(n.endswith(".tmp") for n in seen) == 1     # ours survived the inner save


# --- data and flags -----------------------------------------------------------------------------

def test_missing_data_dir_and_bad_flags_are_named(tmp_path):
    from minigan.data import load_mnist
    missing = str(tmp_path / "nowhere")
    with pytest.raises(FileNotFoundError, match="nowhere"):
        load_mnist(data_dir=missing, download=False, verbose=False)
    run = subprocess.run([sys.executable, "-m", "examples.dcgan_mnist", "--seed", "-1"],
                         cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert run.returncode == 2 and "argument --seed: must be >= 0" in run.stderr


def test_nan_in_the_real_batch_is_blamed_on_the_data():
    G, D = models.make_dcgan(nz=4, ngf=4, ndf=4)
    opt_g, opt_d = optim.Adam(G.parameters()), optim.Adam(D.parameters())
    real = _rand(2, 1, 28, 28)
    real[0, 0, 3, 3] = np.nan
    z = mg.tensor(_rand(2, 4))
    weights = [p.data.copy() for p in D.parameters()]
    with pytest.raises(train.NonFiniteLossError, match="real batch holds 1 NaN"):
        train.train_step(G, D, opt_g, opt_d, mg.tensor(real), z)
    for p, w in zip(D.parameters(), weights):
        np.testing.assert_array_equal(p.data, w)


# --- layouts and dtypes of every kernel op and its backward -------------------------------------

LAYOUTS = ("C", "F", "negative strides", "non-contiguous", "read-only")
DTYPES = (np.float32, np.float64, np.float16, np.int64, np.bool_, np.complex64)


def _layout(a, layout, dtype):
    """``a``'s values as ``dtype`` in the given memory layout."""
    a = a.astype(dtype)
    if layout == "F":
        return np.asfortranarray(a)
    if layout == "negative strides":
        flipped = np.ascontiguousarray(a[(slice(None, None, -1),) * a.ndim])
        return flipped[(slice(None, None, -1),) * a.ndim]
    if layout == "non-contiguous":
        wide = np.zeros(a.shape[:-1] + (2 * a.shape[-1],), dtype)
        wide[..., ::2] = a
        return wide[..., ::2]
    if layout == "read-only":
        a = a.copy()
        a.flags.writeable = False
    return a


def _kernel_cases(rng):
    x, gy = rng.standard_normal((2, 3, 5, 5)), rng.standard_normal((2, 4, 3, 3))
    w = rng.standard_normal((4, 3, 3, 3))
    c = x.shape[1]
    mean, invstd = rng.standard_normal(c), rng.uniform(0.5, 2, c)
    weight, bias = rng.standard_normal(c), rng.standard_normal(c)
    return {
        "conv2d": (lambda x, w: kernels.conv2d(x, w, (1, 1), (0, 0)), (x, w)),
        "conv2d_grad_input": (lambda gy, w: kernels.conv2d_grad_input(gy, w, (5, 5)), (gy, w)),
        "conv2d_grad_weight": (lambda x, gy: kernels.conv2d_grad_weight(x, gy, (3, 3)), (x, gy)),
        "batchnorm_stats": (kernels.batchnorm_stats, (x,)),
        "batchnorm_forward": (kernels.batchnorm_forward, (x, mean, invstd, weight, bias)),
        "batchnorm_backward": (kernels.batchnorm_backward, (x * 0.5, x, mean, invstd, weight)),
        "batchnorm_train_forward": (
            lambda x, weight, bias: kernels.batchnorm_train_forward(x, weight, bias, 1e-5, 0.2),
            (x, weight, bias)),
        "leaky_relu": (lambda x: kernels.leaky_relu(x, 0.2), (x,)),
        "leaky_relu_grad": (lambda gy, x: kernels.leaky_relu_grad(gy, x, 0.2), (x * 2, x)),
    }


KERNEL_OPS = sorted(_kernel_cases(np.random.default_rng(0)))


def _same(result, expected):
    for r, e in zip(result if isinstance(result, tuple) else (result,),
                    expected if isinstance(expected, tuple) else (expected,)):
        assert r.flags.c_contiguous
        np.testing.assert_allclose(r, e, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("op", KERNEL_OPS)
@pytest.mark.parametrize("layout", LAYOUTS)
@settings(max_examples=6)
@given(dtype=st.sampled_from(DTYPES), seed=st.integers(0, 2 ** 16))
def test_every_kernel_op_takes_any_layout_or_names_the_dtype(op, layout, dtype, seed):
    fn, args = _kernel_cases(np.random.default_rng(seed))[op]
    float_dtype = dtype if np.dtype(dtype).kind == "f" and dtype != np.float16 else np.float64
    expected = fn(*[a.astype(float_dtype) for a in args])
    given_args = [_layout(a, layout, dtype) for a in args]
    if float_dtype != dtype:
        with pytest.raises(TypeError, match=np.dtype(dtype).name):
            fn(*given_args)
        return
    _same(fn(*given_args), expected)
    # the first argument alone in the odd layout, the others contiguous
    _same(fn(given_args[0], *[a.astype(dtype) for a in args[1:]]), expected)


FUNCTIONAL_OPS = {
    "conv2d": lambda x, w: F.conv2d(x, w, stride=2, padding=1),
    "conv_transpose2d": lambda x, w: F.conv_transpose2d(x, w.permute(1, 0, 2, 3), stride=2),
    "batch_norm": lambda x, w: F.batch_norm(x, None, None, training=True) * w.sum(),
    "leaky_relu": lambda x, w: F.leaky_relu(x, 0.2) * w.sum(),
}


@settings(max_examples=30)
@given(op=st.sampled_from(sorted(FUNCTIONAL_OPS)), layout=st.sampled_from(LAYOUTS),
       dtype=st.sampled_from((np.float32, np.float64)), seed=st.integers(0, 2 ** 16))
def test_every_op_and_its_backward_take_any_layout(op, layout, dtype, seed):
    rng = np.random.default_rng(seed)
    x0, w0 = rng.standard_normal((2, 3, 5, 5)), rng.standard_normal((4, 3, 3, 3))
    gy0 = None

    def run(x_array, w_array, gy_layout):
        nonlocal gy0
        x = mg.Tensor(x_array, requires_grad=True)
        w = mg.Tensor(w_array, requires_grad=True)
        y = FUNCTIONAL_OPS[op](x, w)
        if gy0 is None:
            gy0 = rng.standard_normal(y.shape)
        y.backward(mg.Tensor(_layout(gy0, gy_layout, dtype)))
        return y.data, x.grad.data, w.grad.data

    expected = run(x0.astype(dtype), w0.astype(dtype), "C")
    got = run(_layout(x0, layout, dtype), _layout(w0, layout, dtype), layout)
    for g, e in zip(got, expected):
        assert g.dtype == dtype
        np.testing.assert_allclose(g, e, rtol=1e-5, atol=1e-5)


def test_resume_with_fewer_iterations_than_the_checkpoint_says_so(tmp_path):
    from examples import dcgan_mnist
    from test_checkpoint_resume import example_argv
    from test_dcgan import write_digits
    data = write_digits(str(tmp_path / "data"))
    assert dcgan_mnist.main(example_argv(tmp_path / "run", data, "--clusters", "4",
                                         "--iters", "3")) == 0
    before = (tmp_path / "run" / "checkpoint.npz").read_bytes()
    with pytest.raises(SystemExit, match="at iteration 3, past the 2 iterations asked for"):
        dcgan_mnist.main(example_argv(tmp_path / "run", data, "--clusters", "4",
                                      "--iters", "2", "--resume"))
    assert (tmp_path / "run" / "checkpoint.npz").read_bytes() == before


def test_a_refused_optimizer_step_updates_nothing():
    a, b = nn.Linear(2, 2), nn.Linear(2, 2)
    opt = optim.Adam(list(a.parameters()) + list(b.parameters()), lr=0.1)
    for p in opt.param_groups[0]["params"]:
        p.grad = mg.tensor(np.ones(p.shape, np.float32))
    b.bias.grad = mg.tensor(np.ones(3, np.float32))       # the last parameter's is wrong
    before = [p.data.copy() for p in opt.param_groups[0]["params"]]
    with pytest.raises(RuntimeError, match=r"gradient of shape \(3,\) on cpu for a parameter of "
                                           r"shape \(2,\) on cpu \(parameter 3\)"):
        opt.step()
    for p, w in zip(opt.param_groups[0]["params"], before):
        np.testing.assert_array_equal(p.data, w)
    assert opt.state == {}


@pytest.mark.gpu
@pytest.mark.skipif(not mg.cupy_available(), reason="no CUDA device (CuPy missing or no GPU)")
@pytest.mark.parametrize("op", KERNEL_OPS)
@pytest.mark.parametrize("layout", ("F", "negative strides", "non-contiguous"))
def test_every_kernel_op_takes_any_cupy_layout(op, layout):
    import cupy
    fn, args = _kernel_cases(np.random.default_rng(0))[op]
    expected = fn(*[a.astype(np.float64) for a in args])
    got = fn(*[_cupy_layout(cupy, a, layout) for a in args])
    for g, e in zip(got if isinstance(got, tuple) else (got,),
                    expected if isinstance(expected, tuple) else (expected,)):
        assert g.flags.c_contiguous
        np.testing.assert_allclose(cupy.asnumpy(g), e, rtol=1e-6, atol=1e-6)


def _cupy_layout(cupy, a, layout):
    a = cupy.asarray(a)
    if layout == "F":
        return cupy.asfortranarray(a)
    if layout == "negative strides":
        flipped = cupy.ascontiguousarray(a[(slice(None, None, -1),) * a.ndim])
        return flipped[(slice(None, None, -1),) * a.ndim]
    wide = cupy.zeros(a.shape[:-1] + (2 * a.shape[-1],), a.dtype)
    wide[..., ::2] = a
    return wide[..., ::2]
