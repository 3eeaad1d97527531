"""A corpus of bad (and unusual but valid) inputs thrown at the public API, each with the right
behaviour written beside it: an error of a given type whose message names the problem, or a
result that is checked. Built for issue 11, independently of the cases the issue lists.

Under pytest every case is one test. Run as a script it sorts every case into ok, silent wrong
answer, crash (an exception of a type nobody asked for: a numba TypingError, AttributeError,
ZeroDivisionError, MemoryError...) and unclear error (the right type, a message that does not
name the problem), and prints the counts; with ``PYTHONPATH=/other/checkout`` it grades that
checkout's minigan instead:

    python tests/test_bad_inputs.py            # this checkout (run from the repository root)
"""
import gzip
import math
import os
import struct
import sys
import tempfile
import zipfile

import numpy as np
import pytest

import minigan as mg
import minigan.functional as F
from minigan import io, nn, optim

ERRORS = (TypeError, ValueError, RuntimeError, IndexError, KeyError, FileNotFoundError,
          FloatingPointError)


class Raises:
    """The right behaviour is an exception of one of ``types`` whose message contains every one
    of ``words`` (case-insensitive)."""

    def __init__(self, types, *words):
        self.types = types if isinstance(types, tuple) else (types,)
        self.words = words


class Gives:
    """The right behaviour is a result for which ``check(result)`` holds."""

    def __init__(self, check, what):
        self.check, self.what = check, what


def equal(expected, rtol=1e-6):
    def check(result):
        got = result.data if isinstance(result, mg.Tensor) else result
        np.testing.assert_allclose(np.asarray(got, dtype=np.float64),
                                   np.asarray(expected, dtype=np.float64), rtol=rtol, atol=1e-7)
        return True
    return Gives(check, f"values {expected}")


def holds(predicate, what):
    return Gives(predicate, what)


CASES = []


def case(name, expected):
    def register(fn):
        CASES.append((name, fn, expected))
        return fn
    return register


def t(*values, **kwargs):
    return mg.tensor(np.array(values, dtype=kwargs.pop("dtype", np.float32)), **kwargs)


def img(*shape, dtype=np.float32):
    return mg.tensor(np.random.default_rng(0).standard_normal(shape).astype(dtype))


INF, NAN = math.inf, math.nan

# --- tensor creation ----------------------------------------------------------------------------
for _name, _data in [("complex array", np.array([1j])), ("complex list", [1 + 2j]),
                     ("object array", np.array([1, None], dtype=object)), ("string", "abc"),
                     ("string array", np.array(["a", "b"])), ("bytes array", np.array([b"x"])),
                     ("datetime array", np.array(["2020-01-01"], dtype="datetime64[D]")),
                     ("structured array", np.zeros(2, dtype=[("a", "f4")])),
                     ("nested ragged list", [[1.0], [1.0, 2.0]])]:
    case(f"tensor({_name})", Raises((TypeError, ValueError), "dtype" if "ragged" not in _name
                                    else "shape"))(lambda d=_data: mg.tensor(d))
case("tensor(dtype=complex64)", Raises(TypeError, "complex64"))(
    lambda: mg.tensor([1.0], dtype=np.complex64))
case("tensor copies its ndarray", holds(lambda r: r[0] == 1, "unchanged after the array changes"))(
    lambda: (lambda a: (mg.tensor(a), a.__setitem__(0, 9))[0].data)(np.ones(2, np.float32)))
case("tensor copies another tensor", holds(lambda r: r[0] == 1, "a copy"))(
    lambda: (lambda a: (mg.tensor(a), a.zero_())[0].data)(t(1.0, 1.0)))
case("as_tensor shares", holds(lambda r: r[0] == 9, "shares memory"))(
    lambda: (lambda a: (mg.as_tensor(a), a.__setitem__(0, 9))[0].data)(np.ones(2, np.float32)))
case("from_numpy(list)", Raises(TypeError, "ndarray", "list"))(lambda: mg.from_numpy([1.0]))
case("from_numpy(object array)", Raises(TypeError, "object"))(
    lambda: mg.from_numpy(np.array([None])))
case("requires_grad on ints", Raises(TypeError, "floating", "int64"))(
    lambda: mg.tensor([1, 2], requires_grad=True))
case("tensor(float64 list) -> float32", holds(lambda r: r.dtype == np.float32, "float32"))(
    lambda: mg.tensor([0.1, 0.2]))
case("tensor(np.float64 array) keeps float64", holds(lambda r: r.dtype == np.float64, "float64"))(
    lambda: mg.tensor(np.zeros(2)))
case("zeros(-1)", Raises(ValueError, "negative"))(lambda: mg.zeros(-1))
case("randn(2.5)", Raises(TypeError, "float"))(lambda: mg.randn(2.5))
case("set_default_dtype(int32)", Raises(TypeError, "int32"))(
    lambda: mg.set_default_dtype(np.int32))
case("tensor on device 'tpu'", Raises(ValueError, "tpu"))(lambda: mg.tensor([1.0], device="tpu"))
case("item() of 2 values", Raises(ValueError, "one element", "(2,)"))(lambda: t(1, 2).item())
case("bool() of 2 values", Raises(ValueError, "ambiguous"))(lambda: bool(t(1, 2)))

# --- wrong numbers: activations and losses at +-inf and NaN (PyTorch's values) ----------------
_SPECIAL = t(-INF, INF, NAN)
for _name, _fn, _want in [
        ("relu", F.relu, [0, INF, NAN]),
        ("leaky_relu", lambda x: F.leaky_relu(x, 0.1), [-INF, INF, NAN]),
        ("leaky_relu slope 0", lambda x: F.leaky_relu(x, 0.0), [0, INF, NAN]),
        ("sigmoid", F.sigmoid, [0, 1, NAN]),
        ("tanh", F.tanh, [-1, 1, NAN]),
        ("softplus", F.softplus, [0, INF, NAN]),
        ("log_sigmoid", F.log_sigmoid, [-INF, 0, NAN]),
        ("exp", lambda x: x.exp(), [0, INF, NAN]),
        ("abs", lambda x: x.abs(), [INF, INF, NAN]),
        ("clamp", lambda x: x.clamp(-1, 1), [-1, 1, NAN]),
        ("nn.ReLU", nn.ReLU(), [0, INF, NAN]),
        ("nn.LeakyReLU", nn.LeakyReLU(0.2), [-INF, INF, NAN])]:
    case(f"{_name}(-inf, inf, nan)", equal(_want))(lambda f=_fn: f(_SPECIAL))
case("relu grad at -inf", equal([0.0, 1.0]))(
    lambda: (lambda x: (F.relu(x).sum().backward(), x.grad)[1])(t(-INF, 2.0, requires_grad=True)))
case("sigmoid grad at +-inf", equal([0.0, 0.0]))(
    lambda: (lambda x: (F.sigmoid(x).sum().backward(), x.grad)[1])(t(-INF, INF, requires_grad=True)))
case("softplus grad at +-inf", equal([0.0, 1.0]))(
    lambda: (lambda x: (F.softplus(x).sum().backward(), x.grad)[1])(t(-INF, INF, requires_grad=True)))
case("softmax with -inf", equal([[0.0, 1.0]]))(lambda: F.softmax(mg.tensor([[-INF, 0.0]]), 1))
case("log_softmax with nan", holds(lambda r: np.isnan(r.data).all(), "all NaN"))(
    lambda: F.log_softmax(mg.tensor([[NAN, 0.0]]), 1))
case("bce_with_logits at +-100", equal([0.0, 0.0], rtol=0))(
    lambda: F.binary_cross_entropy_with_logits(t(100.0, -100.0), t(1.0, 0.0), reduction="none"))
case("bce_with_logits at nan", holds(lambda r: np.isnan(r.item()), "NaN"))(
    lambda: F.binary_cross_entropy_with_logits(t(NAN), t(1.0)))
case("bce at p=0 and 1 clamps to 100", equal([100.0, 100.0]))(
    lambda: F.binary_cross_entropy(t(0.0, 1.0), t(1.0, 0.0), reduction="none"))
case("bce with p > 1", holds(lambda r: np.isfinite(r.item()) or np.isnan(r.item()), "no crash"))(
    lambda: F.binary_cross_entropy(t(0.5), t(1.0)))
case("mse with inf", equal([INF]))(lambda: F.mse_loss(t(INF), t(0.0), reduction="none"))
case("loss reduction='avg'", Raises(ValueError, "reduction", "avg"))(
    lambda: F.mse_loss(t(1.0), t(1.0), reduction="avg"))
case("loss shapes differ", Raises(ValueError, "(2,)", "(3,)"))(
    lambda: F.mse_loss(t(1, 2), t(1, 2, 3)))
case("nll_loss float target", Raises(TypeError, "integer", "float32"))(
    lambda: F.nll_loss(mg.tensor([[0.0, 0.0]]), np.array([0.0], np.float32)))
case("nll_loss class out of range", Raises(ValueError, "out of range"))(
    lambda: F.nll_loss(mg.tensor([[0.0, 0.0]]), np.array([2])))
case("cross_entropy 1-D logits", Raises(ValueError, "(N, C)"))(
    lambda: F.cross_entropy(t(1.0, 2.0), np.array([0])))

# --- wrong numbers: integer inputs into float ops -----------------------------------------------
_INTS = mg.tensor([0, 1, 2])
for _name, _fn, _want in [
        ("sigmoid", F.sigmoid, 1 / (1 + np.exp(-np.arange(3.0)))),
        ("softplus", F.softplus, np.log1p(np.exp(np.arange(3.0)))),
        ("tanh", F.tanh, np.tanh(np.arange(3.0))),
        ("exp", lambda x: x.exp(), np.exp(np.arange(3.0))),
        ("sqrt", lambda x: x.sqrt(), np.sqrt(np.arange(3.0))),
        ("log", lambda x: (x + 1).log(), np.log(np.arange(1.0, 4.0))),
        ("relu", F.relu, [0, 1, 2]),
        ("true division", lambda x: x / 2, [0, 0.5, 1]),
        ("int / int tensor", lambda x: x / mg.tensor([2, 2, 2]), [0, 0.5, 1]),
        ("mean", lambda x: x.mean(), 1.0),
        ("softmax", lambda x: F.softmax(x, 0), np.exp(np.arange(3.0)) / np.exp(np.arange(3.0)).sum()),
        ("log_sigmoid", F.log_sigmoid, -np.log1p(np.exp(-np.arange(3.0))))]:
    case(f"{_name} of int tensor", equal(_want))(lambda f=_fn: f(_INTS))
case("int * float32 stays float32", holds(lambda r: r.dtype == np.float32, "float32"))(
    lambda: _INTS * t(1.0, 1.0, 1.0))
case("bool tensor into sigmoid", equal([0.5, 0.7310586]))(
    lambda: F.sigmoid(mg.tensor([False, True])))
case("float32 leaf grad with float64 partner", holds(lambda r: r.dtype == np.float32, "float32"))(
    lambda: (lambda a: ((a * mg.tensor(np.ones(2))).sum().backward(), a.grad)[1])(
        t(1.0, 2.0, requires_grad=True)))
case("float64 leaf grad with float32 partner", holds(lambda r: r.dtype == np.float64, "float64"))(
    lambda: (lambda a: ((a * t(1.0, 1.0)).sum().backward(), a.grad)[1])(
        mg.tensor(np.ones(2), requires_grad=True)))
case("grad() keeps the input's dtype", holds(lambda r: r[0].dtype == np.float32, "float32"))(
    lambda: (lambda a: mg.grad((a * mg.tensor(np.ones(2))).sum(), a))(t(1.0, 2.0, requires_grad=True)))

# --- reductions and shapes ----------------------------------------------------------------------
case("mean of empty", holds(lambda r: np.isnan(r.item()), "NaN"))(
    lambda: mg.tensor(np.zeros(0, np.float32)).mean())
case("mean over an empty axis", holds(lambda r: r.shape == (3,) and np.isnan(r.data).all(), "NaN x3"))(
    lambda: mg.tensor(np.zeros((0, 3), np.float32)).mean(0))
case("sum of empty", equal(0.0))(lambda: mg.tensor(np.zeros(0, np.float32)).sum())
case("max of empty", Raises(ValueError, "empty"))(lambda: mg.tensor(np.zeros(0, np.float32)).max())
case("sum axis out of range", Raises(IndexError, "axis 2", "2 dimensions"))(
    lambda: img(2, 2).sum(axis=2))
case("var of one value", Raises(ValueError, "1 element"))(lambda: t(1.0).var())
case("var with nan", holds(lambda r: np.isnan(r.item()), "NaN"))(lambda: t(NAN, 1.0).var())
case("reshape to wrong size", Raises(ValueError, "(2, 3)", "(4,)"))(lambda: img(2, 3).reshape(4))
case("permute not a permutation", Raises(ValueError, "permutation"))(
    lambda: img(2, 3).permute(0, 0))
case("transpose dim out of range", Raises(IndexError, "dim1"))(lambda: img(2, 3).transpose(0, 5))
case("broadcast_to impossible", Raises(ValueError, "(2, 3)", "(4, 3)"))(
    lambda: F.broadcast_to(img(2, 3), (4, 3)))
case("add shapes that do not broadcast", Raises(ValueError, "(2,)", "(3,)"))(
    lambda: t(1, 2) + t(1, 2, 3))
case("concat mismatched", Raises(ValueError, "differ"))(lambda: F.concat([img(2, 3), img(2, 4)]))
case("concat empty list", Raises(ValueError, "at least one"))(lambda: F.concat([]))
case("stack different shapes", Raises(ValueError, "one shape"))(lambda: F.stack([img(2), img(3)]))
case("matmul misaligned", Raises(ValueError, "not aligned"))(lambda: img(2, 3) @ img(2, 3))
case("matmul scalar", Raises(ValueError, "at least 1 dimension"))(lambda: mg.tensor(2.0) @ img(2))
case("linear wrong input width", Raises(ValueError, "(N, 3)"))(
    lambda: F.linear(img(2, 4), img(5, 3)))
case("getitem out of range", Raises(IndexError, "out of bounds"))(lambda: img(2, 3)[5])
case("dropout p=1.5", Raises(ValueError, "[0, 1]"))(lambda: F.dropout(img(2), 1.5))
case("clip without bounds", Raises(ValueError, "min"))(lambda: img(2).clip())
case("float ** negative power of zero", equal([INF]))(lambda: t(0.0) ** -1)
case("log_softmax dim out of range", Raises(IndexError, "dim 5", "(2, 3)"))(
    lambda: F.log_softmax(img(2, 3), 5))
case("unsqueeze dim out of range", Raises(IndexError, "dim 7", "(2, 3)"))(lambda: img(2, 3).unsqueeze(7))
case("unsqueeze at -3 of a 2-D tensor", holds(lambda r: r.shape == (1, 2, 3), "(1, 2, 3)"))(
    lambda: img(2, 3).unsqueeze(-3))
case("flatten start_dim after end_dim", Raises(ValueError, "start_dim", "end_dim"))(
    lambda: F.flatten(img(2, 3, 4), 2, 1))
case("sum over a float axis", Raises(TypeError, "axis", "1.0"))(lambda: img(2, 3).sum(axis=1.0))
case("leaky_relu slope given as a string", Raises(TypeError, "negative_slope", "'0.2'"))(
    lambda: F.leaky_relu(img(2), "0.2"))
case("Sequential with a plain function", Raises(TypeError, "entry 1", "function"))(
    lambda: nn.Sequential(nn.Linear(1, 1), lambda x: x))
case("manual_seed(-1) as PyTorch (2**64 - 1)", holds(lambda r: r is None, "accepted"))(
    lambda: mg.manual_seed(-1))
case("manual_seed(2**70)", Raises(ValueError, "seed", str(2 ** 70)))(lambda: mg.manual_seed(2 ** 70))

# --- layouts: any valid NumPy array must be accepted ----------------------------------------------
def _ro(a):
    a = np.array(a)
    a.flags.writeable = False
    return a


_X = np.random.default_rng(1).standard_normal((2, 1, 6, 6)).astype(np.float32)
_W = np.random.default_rng(2).standard_normal((3, 1, 3, 3)).astype(np.float32)
_Y = F.conv2d(_X, _W, padding=1).data
_X3 = np.random.default_rng(3).standard_normal((2, 3, 5, 5)).astype(np.float32)
_W3 = np.random.default_rng(4).standard_normal((4, 3, 3, 3)).astype(np.float32)
_Y3 = F.conv2d(_X3, _W3, stride=2).data


def _layouts(a):
    return [("read-only", _ro(a)), ("Fortran order", np.asfortranarray(a)),
            ("negative strides", a[:, :, ::-1, ::-1].copy()[:, :, ::-1, ::-1]),
            ("non-contiguous", np.repeat(a, 2, axis=3)[:, :, :, ::2]),
            ("frombuffer", np.frombuffer(a.tobytes(), np.float32).reshape(a.shape))]


for (_name, _x), (_, _w3) in zip(_layouts(_X), _layouts(_W3)):
    case(f"conv2d on a {_name} 1-channel input", equal(_Y, rtol=1e-5))(
        lambda x=_x: F.conv2d(x, _W, padding=1))
    case(f"conv2d with a {_name} weight", equal(_Y3, rtol=1e-5))(
        lambda w=_w3: F.conv2d(_X3, w, stride=2))
case("conv2d 1x1 read-only map with padding", holds(lambda r: r.shape == (1, 1, 3, 3), "(1,1,3,3)"))(
    lambda: F.conv2d(_ro(np.ones((1, 1, 1, 1), np.float32)), np.ones((1, 1, 1, 1), np.float32),
                     padding=1))
case("conv_transpose2d read-only", holds(lambda r: r.shape == (2, 1, 8, 8), "(2,1,8,8)"))(
    lambda: F.conv_transpose2d(_ro(np.ones((2, 3, 6, 6), np.float32)), _ro(_W)))
case("batch_norm read-only", holds(lambda r: abs(float(r.data.mean())) < 1e-5, "zero mean"))(
    lambda: F.batch_norm(_ro(_X), None, None, training=True))
case("leaky_relu Fortran", equal(np.where(_X > 0, _X, 0.2 * _X)))(
    lambda: F.leaky_relu(np.asfortranarray(_X), 0.2))
case("relu read-only", equal(np.maximum(_X, 0)))(lambda: F.relu(_ro(_X)))
case("linear on a transposed view", equal(_X[0, 0].T @ _X[0, 0].T, rtol=1e-5))(
    lambda: F.linear(_X[0, 0].T, _X[0, 0]))
case("conv2d float16", Raises(TypeError, "float16"))(lambda: F.conv2d(_X.astype(np.float16),
                                                                     _W.astype(np.float16)))
case("conv2d int input", Raises(TypeError, "int64"))(lambda: F.conv2d(_X.astype(np.int64), _W))
case("conv2d mixed dtypes", Raises(TypeError, "float64", "float32"))(
    lambda: F.conv2d(_X.astype(np.float64), _W))

# --- convolution arguments ----------------------------------------------------------------------
_x, _w = img(1, 1, 5, 5), img(2, 1, 3, 3)
for _name, _kw, _expected in [
        ("stride=np.int64(2)", {"stride": np.int64(2)}, holds(lambda r: r.shape == (1, 2, 2, 2), "(1,2,2,2)")),
        ("padding=np.int32(1)", {"padding": np.int32(1)}, holds(lambda r: r.shape == (1, 2, 5, 5), "(1,2,5,5)")),
        ("stride=(np.int64(1), 2)", {"stride": (np.int64(1), 2)}, holds(lambda r: r.shape == (1, 2, 3, 2), "(1,2,3,2)")),
        ("stride=1.5", {"stride": 1.5}, Raises(TypeError, "stride", "1.5")),
        ("stride=2.0", {"stride": 2.0}, Raises(TypeError, "stride", "2.0")),
        ("stride=0", {"stride": 0}, Raises(ValueError, "stride", "positive")),
        ("stride=-1", {"stride": -1}, Raises(ValueError, "stride", "-1")),
        ("stride=(1,2,3)", {"stride": (1, 2, 3)}, Raises(TypeError, "stride", "(1, 2, 3)")),
        ("stride='2'", {"stride": "2"}, Raises(TypeError, "stride")),
        ("stride=True", {"stride": True}, Raises(TypeError, "stride", "True")),
        ("stride=None", {"stride": None}, Raises(TypeError, "stride", "None")),
        ("padding=-1", {"padding": -1}, Raises(ValueError, "padding", "-1")),
        ("padding=0.5", {"padding": 0.5}, Raises(TypeError, "padding", "0.5")),
        ("padding=2**40", {"padding": 2 ** 40}, Raises(ValueError, "padding", "too large")),
        ("padding=2**62", {"padding": 2 ** 62}, Raises(ValueError, "padding", "too large"))]:
    case(f"conv2d {_name}", _expected)(lambda kw=_kw: F.conv2d(_x, _w, **kw))
case("conv2d 0x0 kernel", Raises(ValueError, "(2, 1, 0, 0)", "empty"))(
    lambda: F.conv2d(_x, img(2, 1, 0, 0)))
case("conv2d 0 output channels", Raises(ValueError, "empty"))(lambda: F.conv2d(_x, img(0, 1, 3, 3)))
case("conv2d kernel larger than input", Raises(ValueError, "larger than the padded input"))(
    lambda: F.conv2d(_x, img(2, 1, 7, 7)))
case("conv2d 3-D input", Raises(ValueError, "4-D input", "(1, 5, 5)"))(
    lambda: F.conv2d(img(1, 5, 5), _w))
case("conv2d channel mismatch", Raises(ValueError, "2 channels", "expects 1"))(
    lambda: F.conv2d(img(1, 2, 5, 5), _w))
case("conv2d bias wrong size", Raises(ValueError, "bias", "(3,)"))(
    lambda: F.conv2d(_x, _w, img(3)))
case("conv_transpose2d output_padding >= stride", Raises(ValueError, "output_padding"))(
    lambda: F.conv_transpose2d(img(1, 2, 3, 3), img(2, 1, 3, 3), stride=1, output_padding=1))
case("conv_transpose2d stride=2.5", Raises(TypeError, "stride", "2.5"))(
    lambda: F.conv_transpose2d(img(1, 2, 3, 3), img(2, 1, 3, 3), stride=2.5))
case("conv_transpose2d empty kernel", Raises(ValueError, "empty"))(
    lambda: F.conv_transpose2d(img(1, 2, 3, 3), img(2, 1, 0, 3)))

# --- layers ---------------------------------------------------------------------------------------
for _name, _make, _expected in [
        ("Conv2d(kernel_size=0)", lambda: nn.Conv2d(1, 1, 0), Raises(ValueError, "kernel_size", "0")),
        ("Conv2d(kernel_size=-3)", lambda: nn.Conv2d(1, 1, -3), Raises(ValueError, "kernel_size")),
        ("Conv2d(kernel_size=2.5)", lambda: nn.Conv2d(1, 1, 2.5), Raises(TypeError, "kernel_size", "2.5")),
        ("Conv2d(kernel_size=(3,))", lambda: nn.Conv2d(1, 1, (3,)), Raises(ValueError, "kernel_size")),
        ("Conv2d(in_channels=0)", lambda: nn.Conv2d(0, 1, 3), Raises(ValueError, "in_channels")),
        ("Conv2d(out_channels=-1)", lambda: nn.Conv2d(1, -1, 3), Raises(ValueError, "out_channels")),
        ("Conv2d(stride=0)", lambda: nn.Conv2d(1, 1, 3, stride=0), Raises(ValueError, "stride")),
        ("Conv2d(padding=-1)", lambda: nn.Conv2d(1, 1, 3, padding=-1), Raises(ValueError, "padding")),
        ("Conv2d(in_channels=np.int64(2))", lambda: nn.Conv2d(np.int64(2), 1, 3),
         holds(lambda m: m.weight.shape == (1, 2, 3, 3), "weight (1,2,3,3)")),
        ("ConvTranspose2d(kernel_size=0)", lambda: nn.ConvTranspose2d(1, 1, 0), Raises(ValueError, "kernel_size")),
        ("ConvTranspose2d(output_padding=-1)", lambda: nn.ConvTranspose2d(1, 1, 3, output_padding=-1),
         Raises(ValueError, "output_padding")),
        ("Linear(-1, 2)", lambda: nn.Linear(-1, 2), Raises(ValueError, "in_features")),
        ("Linear(2.5, 2)", lambda: nn.Linear(2.5, 2), Raises(TypeError, "in_features")),
        ("Linear(0, 2) (PyTorch allows it)", lambda: nn.Linear(0, 2),
         holds(lambda m: m.weight.shape == (2, 0), "weight (2, 0)")),
        ("BatchNorm2d(0)", lambda: nn.BatchNorm2d(0), Raises(ValueError, "num_features")),
        ("BatchNorm2d(momentum=None)", lambda: nn.BatchNorm2d(2, momentum=None),
         holds(lambda m: m.momentum is None, "cumulative average")),
        ("BatchNorm2d(momentum=-0.1)", lambda: nn.BatchNorm2d(2, momentum=-0.1), Raises(ValueError, "momentum")),
        ("BatchNorm2d(eps=0)", lambda: nn.BatchNorm2d(2, eps=0), Raises(ValueError, "eps")),
        ("Dropout(p=2)", lambda: nn.Dropout(2), Raises(ValueError, "[0, 1]"))]:
    case(_name, _expected)(_make)


def _bn_cumulative():
    bn = nn.BatchNorm1d(1, momentum=None)
    for values in ([1.0, 3.0], [5.0, 7.0], [0.0, 2.0]):
        bn(mg.tensor(np.array(values, np.float32).reshape(2, 1)))
    return bn.running_mean


case("BatchNorm momentum=None is the cumulative mean", equal([3.0]))(_bn_cumulative)
case("BatchNorm2d on 2-D input", Raises(ValueError, "4-D", "(2, 3)"))(
    lambda: nn.BatchNorm2d(3)(img(2, 3)))
case("BatchNorm2d wrong channels", Raises(ValueError, "channels"))(
    lambda: nn.BatchNorm2d(3)(img(2, 4, 2, 2)))
case("BatchNorm2d one value per channel", Raises(ValueError, "more than one value"))(
    lambda: nn.BatchNorm2d(3)(img(1, 3, 1, 1)))
case("BatchNorm2d float64 input, float32 weights", Raises(TypeError, "float64", "float32"))(
    lambda: nn.BatchNorm2d(3)(img(2, 3, 2, 2, dtype=np.float64)))
case("BatchNorm2d int input", Raises(TypeError, "int64"))(
    lambda: nn.BatchNorm2d(1)(mg.tensor(np.ones((2, 1, 2, 2), np.int64))))


def _bn_refused_keeps_state(bad):
    bn = nn.BatchNorm2d(2)
    before = {k: v.copy() for k, v in bn.state_dict().items()}
    try:
        bn(bad)
    except (TypeError, ValueError):
        pass
    return all(np.array_equal(before[k], v) for k, v in bn.state_dict().items())


for _name, _bad in [("float64", img(2, 2, 2, 2, dtype=np.float64)), ("3 channels", img(2, 3, 2, 2)),
                    ("int", mg.tensor(np.ones((2, 2, 2, 2), np.int64))), ("1 value", img(1, 2, 1, 1))]:
    case(f"BatchNorm2d refused ({_name}) leaves its state", holds(lambda r: r is True, "unchanged"))(
        lambda b=_bad: _bn_refused_keeps_state(b))
case("Embedding float index", Raises(TypeError, "integer", "float"))(
    lambda: nn.Embedding(3, 2)(np.array([0.0])))
case("Embedding index out of range", Raises(IndexError, "out of range"))(
    lambda: nn.Embedding(3, 2)(np.array([3])))
case("Linear on wrong width", Raises(ValueError, "(N, 2)"))(lambda: nn.Linear(2, 1)(img(4, 3)))

# --- optimizers -----------------------------------------------------------------------------------
_lin = nn.Linear(2, 2)
for _name, _make, _expected in [
        ("SGD lr=nan", lambda: optim.SGD(_lin.parameters(), lr=NAN), Raises(ValueError, "lr", "nan")),
        ("SGD lr=-1", lambda: optim.SGD(_lin.parameters(), lr=-1), Raises(ValueError, "lr")),
        ("SGD lr='0.1'", lambda: optim.SGD(_lin.parameters(), lr="0.1"), Raises(TypeError, "lr", "str")),
        ("SGD lr=None", lambda: optim.SGD(_lin.parameters(), lr=None), Raises(TypeError, "lr")),
        ("SGD momentum=-0.9", lambda: optim.SGD(_lin.parameters(), lr=0.1, momentum=-0.9), Raises(ValueError, "momentum")),
        ("SGD momentum=nan", lambda: optim.SGD(_lin.parameters(), lr=0.1, momentum=NAN), Raises(ValueError, "momentum")),
        ("SGD weight_decay=-1e-4", lambda: optim.SGD(_lin.parameters(), lr=0.1, weight_decay=-1e-4), Raises(ValueError, "weight_decay")),
        ("SGD dampening=2", lambda: optim.SGD(_lin.parameters(), lr=0.1, dampening=2), Raises(ValueError, "dampening")),
        ("SGD nesterov without momentum", lambda: optim.SGD(_lin.parameters(), lr=0.1, nesterov=True), Raises(ValueError, "Nesterov")),
        ("Adam lr=nan", lambda: optim.Adam(_lin.parameters(), lr=NAN), Raises(ValueError, "lr")),
        ("Adam lr=inf (PyTorch allows it)", lambda: optim.Adam(_lin.parameters(), lr=INF), holds(lambda o: True, "accepted")),
        ("Adam betas=(1, 0.9)", lambda: optim.Adam(_lin.parameters(), betas=(1.0, 0.9)), Raises(ValueError, "betas")),
        ("Adam betas=(0.9, nan)", lambda: optim.Adam(_lin.parameters(), betas=(0.9, NAN)), Raises(ValueError, "betas")),
        ("Adam betas=0.9", lambda: optim.Adam(_lin.parameters(), betas=0.9), Raises(TypeError, "betas")),
        ("Adam betas=(0.9,)", lambda: optim.Adam(_lin.parameters(), betas=(0.9,)), Raises(TypeError, "betas")),
        ("Adam eps=-1", lambda: optim.Adam(_lin.parameters(), eps=-1), Raises(ValueError, "eps")),
        ("Adam weight_decay=-1", lambda: optim.Adam(_lin.parameters(), weight_decay=-1), Raises(ValueError, "weight_decay")),
        ("RMSprop alpha=1.5", lambda: optim.RMSprop(_lin.parameters(), alpha=1.5), Raises(ValueError, "alpha")),
        ("RMSprop momentum=-1", lambda: optim.RMSprop(_lin.parameters(), momentum=-1), Raises(ValueError, "momentum")),
        ("SGD on a single Parameter", lambda: optim.SGD(_lin.weight, lr=0.1), Raises(TypeError, "iterable", "Parameter")),
        ("SGD on a NumPy array list", lambda: optim.SGD([np.ones(2)], lr=0.1), Raises(TypeError, "Tensors", "ndarray")),
        ("SGD on a NumPy array", lambda: optim.SGD(np.ones(2), lr=0.1), Raises(TypeError, "iterable")),
        ("SGD on a set", lambda: optim.SGD({_lin.weight}, lr=0.1), Raises(TypeError, "set")),
        ("SGD on an empty list", lambda: optim.SGD([], lr=0.1), Raises(ValueError, "empty")),
        ("SGD on an int", lambda: optim.SGD(3, lr=0.1), Raises(TypeError, "iterable", "int")),
        ("SGD same parameter twice in one group", lambda: optim.SGD([_lin.weight, _lin.weight], lr=0.1), Raises(ValueError, "twice")),
        ("SGD same parameter in two groups", lambda: optim.SGD([{"params": [_lin.weight]}, {"params": [_lin.weight]}], lr=0.1), Raises(ValueError, "twice")),
        ("SGD group with lr=-1", lambda: optim.SGD([{"params": [_lin.weight], "lr": -1}], lr=0.1), Raises(ValueError, "lr")),
        ("SGD group with a typo'd option", lambda: optim.SGD([{"params": [_lin.weight], "mometum": 0.9}], lr=0.1), Raises(ValueError, "mometum")),
        ("SGD group without params", lambda: optim.SGD([{"lr": 0.1}], lr=0.1), Raises(ValueError, "params")),
        ("SGD on a non-leaf tensor", lambda: optim.SGD([_lin.weight * 2], lr=0.1), Raises(ValueError, "non-leaf")),
        ("SGD on a frozen tensor", lambda: optim.SGD([mg.tensor([1.0])], lr=0.1), Raises(ValueError, "require grad"))]:
    case(_name, _expected)(_make)


def _opt_load(mutate):
    opt = optim.Adam(_lin.parameters(), lr=0.1)
    _lin(img(1, 2)).sum().backward()
    opt.step()
    state = opt.state_dict()
    mutate(state)
    opt.load_state_dict(state)


for _name, _mutate, _expected in [
        ("lr=nan", lambda s: s["param_groups"][0].update(lr=NAN), Raises(ValueError, "lr")),
        ("state entry None", lambda s: s["state"][0].update(exp_avg=None), Raises(TypeError, "exp_avg", "NoneType")),
        ("state entry a string", lambda s: s["state"][0].update(exp_avg="x"), Raises(TypeError, "exp_avg")),
        ("state entry wrong shape", lambda s: s["state"][0].update(exp_avg=np.zeros(9)), Raises(ValueError, "exp_avg", "(9,)")),
        ("state key 99", lambda s: s["state"].update({99: {}}), Raises(ValueError, "99")),
        ("state not a dict", lambda s: s.update(state=[1]), Raises(ValueError, "state")),
        ("missing param_groups", lambda s: s.pop("param_groups"), Raises(ValueError, "param_groups"))]:
    case(f"optimizer load_state_dict {_name}", _expected)(lambda m=_mutate: _opt_load(m))
case("optimizer load_state_dict(None)", Raises(ValueError, "dict", "NoneType"))(
    lambda: optim.SGD(_lin.parameters(), lr=0.1).load_state_dict(None))

# --- module state_dict ------------------------------------------------------------------------------
for _name, _value, _expected in [
        ("None", None, Raises(TypeError, "'bias'", "NoneType")),
        ("a list", [0.0, 0.0], Raises(TypeError, "'bias'", "list")),
        ("a string", "zeros", Raises(TypeError, "'bias'", "str")),
        ("a float", 0.0, Raises(TypeError, "'bias'", "float")),
        ("a wrong shape", np.zeros(3, np.float32), Raises(ValueError, "'bias'", "(3,)")),
        ("complex values", np.zeros(2, np.complex64), Raises(TypeError, "'bias'", "complex64")),
        ("object values", np.array([None, None]), Raises(TypeError, "'bias'", "object")),
        ("float64 values (cast, as PyTorch)", np.ones(2), holds(lambda r: r == ([], []), "loaded"))]:
    case(f"load_state_dict with {_name}", _expected)(
        lambda v=_value: nn.Linear(2, 2).load_state_dict(
            {"weight": np.zeros((2, 2), np.float32), "bias": v}))


def _partial_load_keeps_weights():
    layer = nn.Linear(2, 2)
    before = layer.weight.data.copy()
    try:
        layer.load_state_dict({"weight": np.full((2, 2), 7, np.float32), "bias": None})
    except TypeError:
        pass
    return np.array_equal(layer.weight.data, before)


case("a refused load_state_dict changes no weight", holds(lambda r: r is True, "unchanged"))(
    _partial_load_keeps_weights)
case("load_state_dict missing key", Raises(KeyError, "missing keys", "bias"))(
    lambda: nn.Linear(2, 2).load_state_dict({"weight": np.zeros((2, 2), np.float32)}))
case("load_state_dict unexpected key", Raises(KeyError, "unexpected", "extra"))(
    lambda: nn.Linear(2, 2).load_state_dict({**nn.Linear(2, 2).state_dict(), "extra": np.zeros(1)}))

# --- autograd misuse and in-place changes ---------------------------------------------------------
def _inplace(make_graph, change):
    x = t(1.0, 2.0, requires_grad=True)
    w = t(3.0, 4.0, requires_grad=True)
    y = make_graph(x, w)
    with mg.no_grad():   # as in PyTorch: a leaf that requires grad is changed in place only there
        change(x, w)
    y.backward()
    return x.grad


case("w.zero_() after x * w", Raises(RuntimeError, "Mul", "in-place", "version"))(
    lambda: _inplace(lambda x, w: (x * w).sum(), lambda x, w: w.zero_()))
case("init.ones_ after x / w", Raises(RuntimeError, "Div", "version"))(
    lambda: _inplace(lambda x, w: (x / w).sum(), lambda x, w: nn.init.ones_(w)))
case("w.zero_() after x + w (not needed: as PyTorch)", equal([1.0, 1.0]))(
    lambda: _inplace(lambda x, w: (x + w).sum(), lambda x, w: w.zero_()))
case("x.zero_() after exp(x) (output saved, not x: as PyTorch)", equal(np.exp([1.0, 2.0])))(
    lambda: _inplace(lambda x, w: x.exp().sum(), lambda x, w: x.detach().zero_()))
case("detach().zero_() after sigmoid output saved", Raises(RuntimeError, "Sigmoid", "output"))(
    lambda: (lambda x: (lambda s: (s.detach().zero_(), s.sum().backward()))(F.sigmoid(x)))(
        t(1.0, requires_grad=True)))
case("zero_ of a reshape view after x * x", Raises(RuntimeError, "Mul", "version"))(
    lambda: _inplace(lambda x, w: (x * x).sum(), lambda x, w: x.detach().reshape(2, 1).zero_()))
case("optimizer step between forward and backward", Raises(RuntimeError, "Linear", "version"))(
    lambda: (lambda lin, o: (lambda y: (o.step(), y.backward()))(lin(img(1, 2)).sum()))(
        _lin, optim.SGD(_lin.parameters(), lr=0.1)))
case("backward twice", Raises(RuntimeError, "second time", "retain_graph"))(
    lambda: (lambda y: (y.backward(), y.backward()))((t(1.0, requires_grad=True) * 2).sum()))
case("backward of a non-scalar", Raises(RuntimeError, "scalar", "(2,)"))(
    lambda: (t(1.0, 2.0, requires_grad=True) * 2).backward())
case("backward without requires_grad", Raises(RuntimeError, "does not require grad"))(
    lambda: (t(1.0) * 2).sum().backward())
case("backward gradient of wrong shape", Raises(ValueError, "(3,)", "(2,)"))(
    lambda: (t(1.0, 2.0, requires_grad=True) * 2).backward(t(1, 1, 1)))
case("grad of an unused input", Raises(RuntimeError, "not used", "allow_unused"))(
    lambda: mg.grad((t(1.0, requires_grad=True) * 2).sum(), t(1.0, requires_grad=True)))


# --- files: IDX ---------------------------------------------------------------------------------------
def _idx(tmp, name, data, gz=False):
    path = os.path.join(tmp, name)
    with open(path, "wb") as f:
        f.write(gzip.compress(data) if gz else data)
    from minigan.data.idx import read_idx
    return read_idx(path)


_IdxError = ValueError   # minigan.data.idx.IdxError is a ValueError naming the file
for _name, _data, _words in [
        ("huge dims over 100 bytes", struct.pack(">I3I", 0x0803, 2 ** 32 - 1, 2 ** 32 - 1, 2) + bytes(84),
         ("huge dims over 100 bytes", "truncated", "4294967295")),
        ("dims whose product wraps int64", struct.pack(">I3I", 0x0803, 2 ** 32 - 1, 2 ** 32 - 1, 2 ** 32 - 1) + bytes(10),
         ("truncated", "4294967295")),
        ("trailing bytes", struct.pack(">II", 0x0801, 2) + bytes(5), ("trailing",)),
        ("truncated body", struct.pack(">II", 0x0801, 10) + bytes(3), ("truncated", "10")),
        ("bad magic", b"\x01\x02\x03\x04" + bytes(8), ("magic",)),
        ("unknown type byte", b"\x00\x00\x07\x01" + struct.pack(">I", 1) + bytes(1), ("magic",)),
        ("zero dims", b"\x00\x00\x08\x00", ("magic",)),
        ("header cut short", b"\x00\x00\x08\x03" + bytes(5), ("truncated header",)),
        ("empty file", b"", ("too short",)),
        ("float32 count mismatch", b"\x00\x00\x0d\x01" + struct.pack(">I", 3) + bytes(8), ("truncated", "(3,)"))]:
    case(f"IDX {_name}", Raises(_IdxError, *_words))(
        lambda d=_data, n=_name: _idx(_TMP(), n, d))
case("IDX .gz that is not gzip", Raises(_IdxError, "gzip"))(
    lambda: _idx(_TMP(), "x.gz", struct.pack(">II", 0x0801, 1) + b"\x01"))
case("IDX corrupt gzip", Raises(_IdxError, "gzip"))(
    lambda: _idx(_TMP(), "y.gz", gzip.compress(struct.pack(">II", 0x0801, 1) + b"\x01")[:-6]))
case("IDX missing file", Raises(FileNotFoundError, "nothere"))(
    lambda: __import__("minigan.data.idx", fromlist=["read_idx"]).read_idx(os.path.join(_TMP(), "nothere")))

# --- files: checkpoints -----------------------------------------------------------------------------


def _ckpt(name, write):
    path = os.path.join(_TMP(), name)
    write(path)
    return io.load_checkpoint(path)


def _npz_with(members):
    def write(path):
        with zipfile.ZipFile(path, "w") as z:
            for member, data in members.items():
                z.writestr(member, data)
    return write


def _npy_bytes(array, header_shape=None):
    import io as _io
    buffer = _io.BytesIO()
    np.save(buffer, array)
    raw = buffer.getvalue()
    if header_shape is not None:
        raw = raw.replace(f"'shape': {array.shape}".encode(), f"'shape': {header_shape}".encode())
    return raw


_META_OK = _npy_bytes(np.frombuffer(b'{"format": "minigan-checkpoint", "version": 1, "tree": {"__array__": "w"}}', np.uint8))
for _name, _write, _words in [
        ("a plain .npy", lambda p: np.save(open(p, "wb"), np.zeros(3)), ("plain .npy",)),
        ("a text file", lambda p: open(p, "w").write("hello"), ("not an .npz",)),
        ("an empty file", lambda p: open(p, "wb").close(), ("not an .npz",)),
        ("an npz without metadata", lambda p: np.savez(p, a=np.zeros(2)), ("not a minigan checkpoint",)),
        ("metadata a JSON list", lambda p: np.savez(p, __minigan__=np.frombuffer(b"[1, 2]", np.uint8)), ("JSON list",)),
        ("metadata a JSON number", lambda p: np.savez(p, __minigan__=np.frombuffer(b"3", np.uint8)), ("JSON int",)),
        ("metadata not JSON", lambda p: np.savez(p, __minigan__=np.frombuffer(b"{oops", np.uint8)), ("corrupt",)),
        ("metadata not UTF-8", lambda p: np.savez(p, __minigan__=np.frombuffer(b"\xff\xfe", np.uint8)), ("corrupt",)),
        ("another format", lambda p: np.savez(p, __minigan__=np.frombuffer(b'{"format": "x", "version": 1, "tree": 1}', np.uint8)), ("format 'x'",)),
        ("a newer version", lambda p: np.savez(p, __minigan__=np.frombuffer(b'{"format": "minigan-checkpoint", "version": 9, "tree": 1}', np.uint8)), ("version 9",)),
        ("a member claiming 10**12 values", _npz_with({"__minigan__.npy": _META_OK, "w.npy": _npy_bytes(np.zeros(4), "(1000000000000,)")}), ("1000000000000", "w.npy")),
        ("a member claiming fewer values", _npz_with({"__minigan__.npy": _META_OK, "w.npy": _npy_bytes(np.zeros(4), "(2,)")}), ("(2,)", "w.npy")),
        ("an object member", _npz_with({"__minigan__.npy": _META_OK, "w.npy": _npy_bytes(np.zeros(2)).replace(b"'<f8'", b"'|O' ")}), ("w.npy",)),
        ("a tree naming a missing array", _npz_with({"__minigan__.npy": _META_OK}), ("corrupt", "w")),
        ("a non-npy member", _npz_with({"__minigan__.npy": _META_OK, "notes.txt": b"hi"}), ("notes.txt",)),
        ("a truncated archive", lambda p: (io.save_checkpoint(p, {"w": np.zeros(100)}),
                                           open(p, "r+b").truncate(300)), ("corrupt",)),
        ("garbage after a zip signature", lambda p: open(p, "wb").write(b"PK\x03\x04" + bytes(50)), ("truncated",))]:
    case(f"checkpoint: {_name}", Raises(io.CheckpointError, "checkpoint_", *_words))(
        lambda w=_write, n=_name: _ckpt("checkpoint_" + n.replace(" ", "_").replace("*", "") + ".npz", w))
case("checkpoint missing", Raises(FileNotFoundError, "absent.npz"))(
    lambda: io.load_checkpoint(os.path.join(_TMP(), "absent.npz")))
case("save_checkpoint with an object array", Raises(TypeError, "object"))(
    lambda: io.save_checkpoint(os.path.join(_TMP(), "o.npz"), {"a": np.array([None])}))
case("save_checkpoint with a set", Raises(TypeError, "set"))(
    lambda: io.save_checkpoint(os.path.join(_TMP(), "s.npz"), {"a": {1, 2}}))
case("checkpoint round trip of nan and inf", holds(lambda r: math.isnan(r["a"]) and r["b"] == INF, "exact"))(
    lambda: _ckpt("nan.npz", lambda p: io.save_checkpoint(p, {"a": NAN, "b": INF})))


def _orphan_then_save():
    folder = tempfile.mkdtemp(dir=_TMP())
    path = os.path.join(folder, "c.npz")
    with open(os.path.join(folder, ".c.npz.0123456789ab.tmp"), "wb") as f:
        f.write(b"half a checkpoint")
    io.save_checkpoint(path, {"a": 1})
    return sorted(os.listdir(folder))


case("an orphaned temp file is removed by the next save", holds(lambda r: r == ["c.npz"], "only c.npz"))(
    _orphan_then_save)

# --- data and flags ------------------------------------------------------------------------------


def _example(module, *argv):
    from importlib import import_module
    return import_module(f"examples.{module}").main(list(argv))


case("load_mnist(data_dir=missing)", Raises(FileNotFoundError, "no_such_folder"))(
    lambda: __import__("minigan.data", fromlist=["load_mnist"]).load_mnist(
        data_dir=os.path.join(_TMP(), "no_such_folder"), download=False, verbose=False))
case("load_mnist(dataset='cifar')", Raises(ValueError, "cifar"))(
    lambda: __import__("minigan.data", fromlist=["load_mnist"]).load_mnist(dataset="cifar"))
case("load_mnist(split='val')", Raises(ValueError, "val"))(
    lambda: __import__("minigan.data", fromlist=["load_mnist"]).load_mnist(split="val"))
for _name, _argv, _words in [
        ("--data-dir /nonexistent", ("--data-dir", "/nonexistent/x"), ("--data-dir", "/nonexistent/x")),
        ("--seed -1", ("--seed", "-1"), ("--seed", "-1")),
        ("--seed 1.5", ("--seed", "1.5"), ("--seed", "1.5")),
        ("--lr nan", ("--lr", "nan"), ("--lr", "nan")),
        ("--lr -1", ("--lr", "-1"), ("--lr", "-1")),
        ("--batch-size 0", ("--batch-size", "0"), ("--batch-size", "0")),
        ("--iters 0", ("--iters", "0"), ("--iters", "0")),
        ("--nz -5", ("--nz", "-5"), ("--nz", "-5")),
        ("--checkpoint-every -1", ("--checkpoint-every", "-1"), ("--checkpoint-every",)),
        ("--dataset cifar", ("--dataset", "cifar"), ("--dataset", "cifar"))]:
    case(f"dcgan_mnist {_name}", Raises(SystemExit, *_words))(
        lambda a=_argv: _run_and_capture("dcgan_mnist", *a))
case("gan_toy2d --seed -3", Raises(SystemExit, "--seed", "-3"))(
    lambda: _run_and_capture("gan_toy2d", "--seed", "-3"))
case("gan_1d --seed -3", Raises(SystemExit, "--seed", "-3"))(
    lambda: _run_and_capture("gan_1d", "--seed", "-3"))


def _run_and_capture(module, *argv):
    """Run an example's main; a SystemExit carries what argparse printed, so the message can be
    graded (argparse writes to stderr and exits with code 2)."""
    import contextlib
    import io as _io
    err = _io.StringIO()
    try:
        with contextlib.redirect_stderr(err):
            return _example(module, *argv)
    except SystemExit as e:
        raise SystemExit(f"{e.code}: {err.getvalue()}") from None


def _nan_batch():
    from minigan.gan import models, train
    G, D = models.make_dcgan(nz=4, ngf=4, ndf=4)
    real = np.zeros((2, 1, 28, 28), np.float32)
    real[1, 0, 0, 0] = NAN
    train.train_step(G, D, optim.Adam(G.parameters()), optim.Adam(D.parameters()),
                     mg.tensor(real), mg.randn(2, 4))


case("NaN in the real batch", Raises(FloatingPointError, "real batch", "NaN"))(_nan_batch)


# --- the machinery ----------------------------------------------------------------------------------
_tmp_root = []


def _TMP():
    if not _tmp_root:
        _tmp_root.append(tempfile.mkdtemp(prefix="minigan_bad_inputs_"))
    return _tmp_root[0]


def grade(fn, expected):
    """'ok', 'silent wrong answer', 'crash' or 'unclear error', and a one-line detail."""
    import warnings
    try:
        with warnings.catch_warnings(), np.errstate(all="ignore"):
            warnings.simplefilter("ignore")
            result = fn()
    except BaseException as e:   # noqa: B902 - SystemExit from argparse is graded too
        if isinstance(e, KeyboardInterrupt) or type(e).__name__ == "_TookTooLong":
            raise
        message = str(e)
        if isinstance(expected, Gives):
            return "crash", f"valid input refused: {type(e).__name__}: {message[:200]}"
        if not isinstance(e, expected.types):
            return "crash", f"{type(e).__name__}: {message[:200]}"
        missing = [w for w in expected.words if w.lower() not in message.lower()]
        if missing:
            return "unclear error", f"{type(e).__name__}: {message[:200]} (does not say {missing})"
        return "ok", ""
    if isinstance(expected, Raises):
        return "silent wrong answer", f"returned {str(result)[:120]} instead of raising"
    try:
        good = expected.check(result)
    except AssertionError as e:
        return "silent wrong answer", f"expected {expected.what}: {str(e)[:200]}"
    except Exception as e:
        return "silent wrong answer", f"expected {expected.what}: {type(e).__name__} {e}"
    return ("ok", "") if good else ("silent wrong answer", f"expected {expected.what}, got "
                                                          f"{str(result)[:120]}")


@pytest.mark.parametrize("name, fn, expected", CASES, ids=[c[0] for c in CASES])
def test_bad_input(name, fn, expected):
    outcome, detail = grade(fn, expected)
    assert outcome == "ok", f"{name}: {outcome}: {detail}"


def test_the_corpus_is_large_enough():
    assert len(CASES) >= 150, len(CASES)


class _TookTooLong(BaseException):
    pass


def _alarm(signum, frame):
    raise _TookTooLong()


if __name__ == "__main__":
    import signal
    signal.signal(signal.SIGALRM, _alarm)
    counts = {}
    for name, fn, expected in CASES:
        signal.alarm(60)   # an example that should have refused its flags trains instead
        try:
            outcome, detail = grade(fn, expected)
        except _TookTooLong:
            outcome, detail = "silent wrong answer", "still running after 60 s instead of refusing"
        signal.alarm(0)
        counts[outcome] = counts.get(outcome, 0) + 1
        if outcome != "ok":
            print(f"{outcome:20s} {name}: {detail}")
    print(f"{len(CASES)} cases from {os.path.dirname(mg.__file__)}: "
          + ", ".join(f"{k} {v}" for k, v in sorted(counts.items())))
