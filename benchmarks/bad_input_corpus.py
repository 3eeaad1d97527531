"""An independent corpus of bad (and awkward but valid) inputs thrown at minigan's public API and
examples, written from the README, the docstrings and PyTorch's behaviour for the same call.

Run:  python benchmarks/bad_input_corpus.py [--fast] [--category NAME] [--verbose]

Each case is a callable and what a user should get from it:
  right    the call succeeds and a checker accepts the value (PyTorch's value where it has one);
  error    the call raises, and the message contains every listed word (a word "a|b" is satisfied
           by either spelling) so that the user learns what they did wrong;
  either   a right value or such an error (where PyTorch's choice is not the only sensible one).
Verdicts: right, clear error, unclear error (raised, but the message does not name the problem,
or a valid call was refused), silent wrong (a wrong value, or no error where one was due), crash
(an internal error such as numba's TypingError, a ZeroDivisionError, a RecursionError, or a
process killed by a signal). --fast leaves out the cases that start example processes.
The last line is JSON: counts by verdict and by category, and the cases not right / clear.
"""
import argparse
import collections
import json
import math
import os
import shutil
import struct
import subprocess
import sys
import tempfile
import warnings
import zipfile

import numpy as np

REPO = os.path.abspath(os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir))
if REPO not in sys.path:
    sys.path.insert(0, REPO)

import minigan as mg  # noqa: E402
import minigan.functional as F  # noqa: E402
from minigan import data, density, func, gan, io, nn, optim  # noqa: E402
from minigan.gan.augment import DiffAugment  # noqa: E402
from minigan.gan.ema import EMA  # noqa: E402
from minigan.nn.utils import spectral_norm  # noqa: E402

Case = collections.namedtuple("Case", "category name fn expect check words slow")
# every file and folder the cases write goes under one folder, removed by cleanup()
WORK = tempfile.mkdtemp(prefix="bad_input_corpus_")


def _folder():
    return tempfile.mkdtemp(dir=WORK)


def cleanup():
    shutil.rmtree(WORK, ignore_errors=True)
CASES = []
INTERNAL = (AssertionError, NameError, UnboundLocalError, RecursionError, SystemError, MemoryError,
            ZeroDivisionError)


def right(category, name, fn, check, slow=False):
    CASES.append(Case(category, name, fn, "right", check, (), slow))


def error(category, name, fn, *words, slow=False):
    CASES.append(Case(category, name, fn, "error", None, words, slow))


def either(category, name, fn, check, *words, slow=False):
    CASES.append(Case(category, name, fn, "either", check, words, slow))


# ---------------------------------------------------------------------------------- helpers
def t(values, dtype=np.float32, **kw):
    return mg.tensor(np.asarray(values, dtype=dtype), **kw)


def arr(v):
    if isinstance(v, mg.Tensor):
        return np.asarray(v.numpy())
    return np.asarray(v)


def close(expected, dtype=None, atol=1e-5, rtol=1e-4):
    """A checker: the value equals ``expected`` (NaN where NaN, inf where inf, the same shape)."""
    expected = np.asarray(expected)

    def check(v):
        a = arr(v)
        if a.shape != expected.shape:
            return False
        if dtype is not None and a.dtype != np.dtype(dtype):
            return False
        return bool(np.allclose(a.astype(np.float64), expected.astype(np.float64),
                                atol=atol, rtol=rtol, equal_nan=True))
    return check


def is_true(v):
    return v is True or (isinstance(v, (bool, np.bool_)) and bool(v))


def rng(seed=0):
    return np.random.default_rng(seed)


def conv_ref(x, w, stride=1, padding=0):
    """Cross-correlation of (N, C, H, W) with (O, C, kh, kw) in float64, by loops."""
    x = np.pad(np.asarray(x, np.float64), ((0, 0), (0, 0), (padding, padding), (padding, padding)))
    n, c, h, wd = x.shape
    o, _, kh, kw = w.shape
    oh, ow = (h - kh) // stride + 1, (wd - kw) // stride + 1
    out = np.zeros((n, o, oh, ow))
    for i in range(oh):
        for j in range(ow):
            patch = x[:, :, i * stride:i * stride + kh, j * stride:j * stride + kw]
            out[:, :, i, j] = np.einsum("nchw,ochw->no", patch, w)
    return out


X4 = rng(1).standard_normal((2, 1, 6, 6)).astype(np.float32)
W3 = rng(2).standard_normal((3, 1, 3, 3)).astype(np.float32)
CONV_REF = conv_ref(X4, W3)


def readonly(a):
    a = np.array(a)
    a.flags.writeable = False
    return a


def layouts():
    base = X4
    return {
        "read-only": readonly(base),
        "frombuffer": np.frombuffer(base.tobytes(), dtype=np.float32).reshape(base.shape),
        "Fortran order": np.asfortranarray(base),
        "negative strides": np.ascontiguousarray(base[:, :, ::-1, ::-1])[:, :, ::-1, ::-1],
        "non-contiguous view": np.concatenate([base, base], axis=3)[:, :, :, ::2] * 0
        + np.repeat(base, 2, axis=3)[:, :, :, ::2],
    }


# ============================================================ valid layouts must not be refused
for _name, _a in layouts().items():
    right("layouts", f"conv2d, 1-channel {_name} input",
          lambda a=_a: F.conv2d(mg.as_tensor(a), mg.tensor(W3)), close(CONV_REF, atol=1e-4))
    right("layouts", f"leaky_relu on a {_name} input",
          lambda a=_a: F.leaky_relu(mg.as_tensor(a), 0.2),
          close(np.where(X4 > 0, X4, 0.2 * X4)))
right("layouts", "conv2d with a read-only weight",
      lambda: F.conv2d(mg.tensor(X4), mg.as_tensor(readonly(W3))), close(CONV_REF, atol=1e-4))
right("layouts", "conv2d on a 1x1 map with padding 1",
      lambda: F.conv2d(t(np.ones((1, 1, 1, 1))), t(np.ones((1, 1, 3, 3))), padding=1),
      close(np.ones((1, 1, 1, 1))))
right("layouts", "conv2d on a read-only 1x1 map with padding 1",
      lambda: F.conv2d(mg.as_tensor(readonly(np.ones((1, 1, 1, 1), np.float32))),
                       t(np.ones((1, 1, 3, 3))), padding=1), close(np.ones((1, 1, 1, 1))))
right("layouts", "conv2d with stride=np.int64(2)",
      lambda: F.conv2d(mg.tensor(X4), mg.tensor(W3), stride=np.int64(2)),
      close(conv_ref(X4, W3, stride=2), atol=1e-4))
right("layouts", "conv2d with padding=(1, 1) tuple and stride=(2, 2)",
      lambda: F.conv2d(mg.tensor(X4), mg.tensor(W3), stride=(2, 2), padding=(1, 1)),
      close(conv_ref(X4, W3, stride=2, padding=1), atol=1e-4))
right("layouts", "Conv2d(kernel_size=np.int32(3))",
      lambda: nn.Conv2d(1, 2, np.int32(3))(mg.tensor(X4)).shape, lambda s: tuple(s) == (2, 2, 4, 4))
right("layouts", "conv_transpose2d on a Fortran-order input",
      lambda: F.conv_transpose2d(mg.as_tensor(np.asfortranarray(X4)), mg.tensor(W3.transpose(1, 0, 2, 3).copy())),
      close(arr(F.conv_transpose2d(mg.tensor(X4), mg.tensor(W3.transpose(1, 0, 2, 3).copy()))), atol=1e-4))
right("layouts", "matmul of a transposed (non-contiguous) view",
      lambda: mg.as_tensor(np.arange(12.0, dtype=np.float32).reshape(3, 4).T).matmul(t(np.ones((3, 2)))),
      close(np.arange(12.0).reshape(3, 4).T @ np.ones((3, 2))))
right("layouts", "linear on a negative-stride input",
      lambda: F.linear(mg.as_tensor(np.arange(8.0, dtype=np.float32).reshape(2, 4)[::-1]), t(np.eye(4))),
      close(np.arange(8.0).reshape(2, 4)[::-1]))


def _bn_readonly():
    bn = nn.BatchNorm2d(1)
    return bn(mg.as_tensor(readonly(X4)))


right("layouts", "BatchNorm2d on a read-only input", _bn_readonly,
      close((X4 - X4.mean()) / np.sqrt(X4.var() + 1e-5), atol=1e-4))


def _bn_momentum_none():
    bn = nn.BatchNorm2d(1, momentum=None)
    a = np.full((4, 1, 2, 2), 2.0, np.float32)
    b = np.full((4, 1, 2, 2), 4.0, np.float32)
    bn(mg.tensor(a))
    bn(mg.tensor(b))
    return bn.running_mean   # cumulative average of the batch means: (2 + 4) / 2


right("layouts", "BatchNorm2d(momentum=None): cumulative average", _bn_momentum_none, close([3.0]))
right("layouts", "instance_norm on a Fortran-order input",
      lambda: F.instance_norm(mg.as_tensor(np.asfortranarray(X4))),
      close((X4 - X4.mean(axis=(2, 3), keepdims=True)) / np.sqrt(X4.var(axis=(2, 3), keepdims=True) + 1e-5), atol=1e-4))
right("layouts", "pad (reflect) on a negative-stride input",
      lambda: F.pad(mg.as_tensor(X4[:, :, ::-1]), (1, 1, 1, 1), mode="reflect"),
      close(np.pad(X4[:, :, ::-1], ((0, 0), (0, 0), (1, 1), (1, 1)), mode="reflect")))
right("layouts", "sum over a dim of a Fortran array",
      lambda: F.sum(mg.as_tensor(np.asfortranarray(X4[0, 0])), dim=1), close(X4[0, 0].sum(1)))
right("layouts", "softmax on a non-contiguous column view",
      lambda: F.softmax(mg.as_tensor(X4[0, 0][:, ::2]), dim=1),
      close(np.exp(X4[0, 0][:, ::2]) / np.exp(X4[0, 0][:, ::2]).sum(1, keepdims=True)))


def _grad_of_view():
    x = mg.tensor(np.asfortranarray(X4), requires_grad=True)
    F.sum(F.leaky_relu(x, 0.2)).backward()
    return x.grad


right("layouts", "backward through leaky_relu of a Fortran-order leaf", _grad_of_view,
      close(np.where(X4 > 0, 1.0, 0.2)))
right("layouts", "mg.tensor copies the caller's array",
      lambda: (lambda a: (mg.tensor(a), a.__setitem__(0, 9.0))[0])(np.zeros(3, np.float32)), close([0, 0, 0]))
right("layouts", "mg.from_numpy shares the caller's array",
      lambda: (lambda a: (mg.from_numpy(a), a.__setitem__(0, 9.0))[0])(np.zeros(3, np.float32)), close([9, 0, 0]))

# ============================================================== wrong numbers: inf, nan, int, empty
INF, NAN = np.inf, np.nan
right("numbers", "relu at -inf, inf, nan", lambda: F.relu(t([-INF, INF, NAN])), close([0, INF, NAN]))
right("numbers", "sigmoid at -inf, inf, nan", lambda: F.sigmoid(t([-INF, INF, NAN])), close([0, 1, NAN]))
right("numbers", "tanh at -inf, inf", lambda: F.tanh(t([-INF, INF])), close([-1, 1]))
right("numbers", "softplus at -inf, inf, 100", lambda: F.softplus(t([-INF, INF, 100.0])), close([0, INF, 100]))
right("numbers", "leaky_relu at -inf, inf", lambda: F.leaky_relu(t([-INF, INF]), 0.2), close([-INF, INF]))
right("numbers", "log_sigmoid at -inf, inf, -200", lambda: F.log_sigmoid(t([-INF, INF, -200.0])),
      close([-INF, 0, -200]))
right("numbers", "nn.ReLU module at -inf", lambda: nn.ReLU()(t([-INF])), close([0]))
right("numbers", "nn.Tanh / Sigmoid modules at inf", lambda: nn.Sigmoid()(nn.Tanh()(t([INF]))),
      close([1 / (1 + np.exp(-1))]))
right("numbers", "softmax with a -inf logit", lambda: F.softmax(t([[-INF, 0.0, 0.0]]), dim=1), close([[0, 0.5, 0.5]]))
right("numbers", "log_softmax with a -inf logit", lambda: F.log_softmax(t([[-INF, 0.0]]), dim=1),
      close([[-INF, 0.0]]))
right("numbers", "softmax of large logits (no overflow)", lambda: F.softmax(t([[1000.0, 0.0]]), dim=1),
      close([[1.0, 0.0]]))
right("numbers", "binary_cross_entropy at p=0 and p=1 (log clamped at -100)",
      lambda: F.binary_cross_entropy(t([0.0, 1.0]), t([1.0, 1.0]), reduction="none"), close([100.0, 0.0]))
right("numbers", "binary_cross_entropy_with_logits at logits +-100",
      lambda: F.binary_cross_entropy_with_logits(t([100.0, -100.0]), t([1.0, 0.0]), reduction="none"),
      close([0.0, 0.0], atol=1e-6))
right("numbers", "binary_cross_entropy_with_logits at logit -100, target 1",
      lambda: F.binary_cross_entropy_with_logits(t([-100.0]), t([1.0]), reduction="none"), close([100.0]))
right("numbers", "cross_entropy with large logits", lambda: F.cross_entropy(t([[1000.0, 0.0]]), mg.tensor(np.array([1]))),
      close(1000.0))
right("numbers", "mse_loss with a nan propagates", lambda: F.mse_loss(t([NAN, 1.0]), t([0.0, 1.0])), close(NAN))
right("numbers", "exp of 1000 is inf (float32)", lambda: F.exp(t([1000.0])), close([INF]))
right("numbers", "log of 0 and -1", lambda: F.log(t([0.0, -1.0])), close([-INF, NAN]))
right("numbers", "sqrt of -1", lambda: F.sqrt(t([-1.0])), close([NAN]))
right("numbers", "division by zero", lambda: F.div(t([1.0, -1.0, 0.0]), t([0.0, 0.0, 0.0])), close([INF, -INF, NAN]))
right("numbers", "clamp leaves nan as nan", lambda: F.clamp(t([NAN, 5.0]), -1.0, 1.0), close([NAN, 1.0]))
right("numbers", "max propagates nan", lambda: F.max(t([1.0, NAN, 3.0])), close(NAN))
right("numbers", "mean of an empty tensor is nan", lambda: F.mean(t(np.zeros((0,)))), close(NAN))
right("numbers", "sum of an empty tensor is 0", lambda: F.sum(t(np.zeros((0, 3)))), close(0.0))
right("numbers", "sum over dim of an empty tensor", lambda: F.sum(t(np.zeros((0, 3))), dim=0), close([0, 0, 0]))
error("numbers", "max of an empty tensor", lambda: F.max(t(np.zeros((0,)))), "empty|zero-size|numel")
either("numbers", "var of one value (PyTorch: nan and a warning)", lambda: F.var(t([3.0])), close(NAN),
       "1 element", "correction")
either("numbers", "sigmoid of int64 [0, 1, 2]", lambda: F.sigmoid(mg.tensor(np.array([0, 1, 2]))),
       lambda v: close(1 / (1 + np.exp(-np.array([0.0, 1, 2]))))(v) and arr(v).dtype.kind == "f", "int64")
either("numbers", "softplus of an int tensor", lambda: F.softplus(mg.tensor(np.array([0, 1]))),
       lambda v: close(np.log1p(np.exp([0.0, 1.0])))(v), "int64")
either("numbers", "exp of a Python-int tensor", lambda: F.exp(mg.tensor([0, 1])),
       lambda v: close(np.exp([0.0, 1.0]))(v), "int64")
either("numbers", "tanh of a bool tensor", lambda: F.tanh(mg.tensor(np.array([True, False]))),
       lambda v: close(np.tanh([1.0, 0.0]))(v), "bool")
either("numbers", "int tensor times 0.5", lambda: mg.tensor([1, 3]) * 0.5, close([0.5, 1.5]), "int64")
either("numbers", "int tensor divided by int tensor (true division)",
       lambda: F.div(mg.tensor([1, 3]), mg.tensor([2, 2])), close([0.5, 1.5]), "int64")
either("numbers", "mean of an int tensor", lambda: F.mean(mg.tensor([1, 2])), close(1.5), "int64")
either("numbers", "conv2d with an int input", lambda: F.conv2d(mg.tensor(X4.astype(np.int64)), mg.tensor(W3)),
       close(conv_ref(X4.astype(np.int64), W3), atol=1e-3), "int64")
error("numbers", "complex array at tensor creation", lambda: mg.tensor(np.array([1 + 2j])), "complex")
error("numbers", "object array at tensor creation", lambda: mg.tensor(np.array([1, "a"], dtype=object)), "object")
error("numbers", "string array at tensor creation", lambda: mg.tensor(np.array(["a", "b"])), "<U1|str")
error("numbers", "ragged nested list at tensor creation", lambda: mg.tensor([[1.0, 2.0], [3.0]]), "shape|ragged|sequence")
error("numbers", "an int tensor that requires grad", lambda: mg.tensor([1, 2], requires_grad=True), "float", "grad")
error("numbers", "a string at tensor creation", lambda: mg.tensor("abc"), "str")
right("numbers", "scalar tensor from a Python float", lambda: mg.tensor(2.5), close(2.5))


def _mixed_dtype_grad():
    x = t([1.0, 2.0], requires_grad=True)
    y = mg.tensor(np.array([3.0, 4.0]))         # float64
    F.sum(x * y).backward()
    return x.grad


right("numbers", "float32 leaf times float64 tensor: gradient keeps float32", _mixed_dtype_grad,
      close([3.0, 4.0], dtype=np.float32))


def _relu_grad_inf():
    x = t([-INF, 1.0], requires_grad=True)
    F.sum(F.relu(x)).backward()
    return x.grad


right("numbers", "relu's gradient at -inf is 0", _relu_grad_inf, close([0.0, 1.0]))


def _sigmoid_grad_inf():
    x = t([INF, -INF], requires_grad=True)
    F.sum(F.sigmoid(x)).backward()
    return x.grad


right("numbers", "sigmoid's gradient at +-inf is 0", _sigmoid_grad_inf, close([0.0, 0.0]))
right("numbers", "conv2d on an empty batch", lambda: F.conv2d(t(np.zeros((0, 1, 5, 5))), mg.tensor(W3)).shape,
      lambda s: tuple(s) == (0, 3, 3, 3))
right("numbers", "linear on an empty batch", lambda: nn.Linear(4, 3)(t(np.zeros((0, 4)))).shape,
      lambda s: tuple(s) == (0, 3))
error("numbers", "BatchNorm1d training on a batch of one",
      lambda: nn.BatchNorm1d(4)(t(np.ones((1, 4)))), "more than 1 value|batch")
right("numbers", "float64 conv2d keeps float64",
      lambda: F.conv2d(mg.tensor(X4.astype(np.float64)), mg.tensor(W3.astype(np.float64))),
      close(CONV_REF, dtype=np.float64))
either("numbers", "conv2d with float32 input and float64 weight",
       lambda: F.conv2d(mg.tensor(X4), mg.tensor(W3.astype(np.float64))), close(CONV_REF, atol=1e-4),
       "float32", "float64")
either("numbers", "float16 tensor through leaky_relu", lambda: F.leaky_relu(mg.tensor(np.array([-1.0, 2.0], np.float16)), 0.5),
       close([-0.5, 2.0]), "float16")
right("numbers", "item() of a one-element tensor", lambda: t([[2.5]]).item(), lambda v: v == 2.5)
error("numbers", "item() of a 3-element tensor", lambda: t([1.0, 2.0, 3.0]).item(), "one element|1 element|3 elements|size")
error("numbers", "bool() of a 3-element tensor", lambda: bool(t([1.0, 2.0, 3.0])), "ambiguous|one element|more than one")
right("numbers", "pow with a negative exponent", lambda: F.pow(t([2.0, 4.0]), -1.0), close([0.5, 0.25]))
right("numbers", "std of constant values is 0", lambda: F.std(t([2.0, 2.0, 2.0])), close(0.0))
right("numbers", "abs at -inf", lambda: F.abs(t([-INF, -0.0])), close([INF, 0.0]))
right("numbers", "where picks finite branch (no nan leak in forward)",
      lambda: F.where(mg.tensor(np.array([True, False])), t([1.0, 2.0]), t([NAN, 5.0])), close([1.0, 5.0]))

# ======================================================================== in-place after save


def _zero_after_mul():
    x = t([1.0, 2.0], requires_grad=True)
    w = t([3.0, 4.0], requires_grad=True)
    y = F.sum(x * w)
    with mg.no_grad():
        w.zero_()
    y.backward()
    return x.grad


error("inplace", "w.zero_() after (x * w).sum(), then backward", _zero_after_mul, "modified|in-place|inplace|version")


def _zero_after_matmul():
    x = t(np.ones((2, 3)), requires_grad=True)
    w = t(np.ones((3, 2)), requires_grad=True)
    y = F.sum(x.matmul(w))
    with mg.no_grad():
        w.zero_()
    y.backward()
    return x.grad


error("inplace", "w.zero_() after a matmul, then backward", _zero_after_matmul, "modified|in-place|inplace|version")


def _zero_view_after_save():
    x = t(np.ones((2, 3)), requires_grad=True)
    w = t(np.ones((3, 2)), requires_grad=True)
    wt = w.T
    y = F.sum(x.matmul(w))
    with mg.no_grad():
        wt.zero_()
    y.backward()
    return x.grad


error("inplace", "zero_() of a view of a saved tensor", _zero_view_after_save, "modified|in-place|inplace|version")


def _optimizer_step_between():
    lin = nn.Linear(3, 1)
    opt = optim.SGD(lin.parameters(), lr=0.1)
    x = t(np.ones((2, 3)), requires_grad=True)
    y = F.sum(lin(x) ** 2)
    y2 = F.sum(lin(x) ** 2)
    y.backward()
    opt.step()
    y2.backward()
    return x.grad


error("inplace", "optimizer.step() between forward and a second backward", _optimizer_step_between,
      "modified|in-place|inplace|version")


def _sigmoid_out_modified():
    x = t([0.0, 1.0], requires_grad=True)
    s = F.sigmoid(x)
    y = F.sum(s * 2.0)
    with mg.no_grad():
        s.zero_()
    y.backward()
    return x.grad


error("inplace", "zero_() of a sigmoid output (sigmoid's backward needs it), then a mul by 2", _sigmoid_out_modified,
      "modified|in-place|inplace|version")


def _sigmoid_saved_modified():
    x = t([0.0, 1.0], requires_grad=True)
    s = F.sigmoid(x)
    y = F.sum(s)
    with mg.no_grad():
        s.zero_()
    y.backward()
    return x.grad


either("inplace", "zero_() of a sigmoid output its backward needs", _sigmoid_saved_modified,
       close([0.25, 0.19661193]), "modified|in-place|inplace|version")


def _inplace_leaf_requires_grad():
    w = t([1.0, 2.0], requires_grad=True)
    w.zero_()
    return w


error("inplace", "zero_() on a leaf that requires grad, grad mode on", _inplace_leaf_requires_grad,
      "leaf", "grad")


def _zero_nonleaf():
    a = t([1.0, 2.0], requires_grad=True)
    h = a * 2
    h.zero_()
    F.sum(h + 1).backward()
    return a.grad


either("inplace", "zero_() of a non-leaf with grad mode on, then backward (PyTorch: gradient 0)", _zero_nonleaf,
       close([0.0, 0.0]), "in-place|inplace|zero_", "grad")


def _zero_unsaved_mul_operand():
    x = t([1.0, 2.0], requires_grad=True)
    c = t([3.0, 4.0])
    y = F.sum(x * c)   # x's gradient needs c; nothing needs x's value
    with mg.no_grad():
        x.zero_()
    y.backward()
    return x.grad


either("inplace", "x.zero_() after (x * c).sum() with c constant (PyTorch: allowed, gradient c)",
       _zero_unsaved_mul_operand, close([3.0, 4.0]), "modified|in-place|inplace|version")


def _init_after_forward():
    lin = nn.Linear(2, 1)
    x = t(np.ones((1, 2)), requires_grad=True)
    y = F.sum(lin(x))
    nn.init.zeros_(lin.weight)
    y.backward()
    return x.grad


error("inplace", "nn.init.zeros_ on a weight after the forward", _init_after_forward, "modified|in-place|inplace|version")


def _clip_after_forward():
    critic = nn.Linear(2, 1)
    with mg.no_grad():
        critic.weight.data[...] = 5.0
    x = t(np.ones((1, 2)), requires_grad=True)
    y = F.sum(critic(x))
    gan.clip_weights_(critic, 0.01)
    y.backward()
    return x.grad


error("inplace", "clip_weights_ after the critic's forward", _clip_after_forward, "modified|in-place|inplace|version")


def _backward_twice():
    x = t([1.0, 2.0], requires_grad=True)
    y = F.sum(x * x)
    y.backward()
    y.backward()
    return x.grad


either("inplace", "backward twice on the same graph", _backward_twice, close([4.0, 8.0]),
       "second time|twice|retain_graph|freed")


def _no_saved_unaffected():
    x = t([1.0, 2.0], requires_grad=True)
    b = t([5.0, 5.0])
    y = F.sum(x + b)
    b.zero_()
    y.backward()
    return x.grad


right("inplace", "zero_() of an addend that add does not save", _no_saved_unaffected, close([1.0, 1.0]))


def _zero_then_fresh_forward():
    x = t([1.0, 2.0], requires_grad=True)
    w = t([3.0, 4.0])
    w.zero_()
    F.sum(x * w).backward()
    return x.grad


right("inplace", "zero_() before the forward is fine", _zero_then_fresh_forward, close([0.0, 0.0]))

# ====================================================== half-done state: a failing call changes nothing


def _state(module):
    return {k: arr(v).copy() for k, v in module.state_dict().items()}


def _same_state(a, b):
    return a.keys() == b.keys() and all(np.array_equal(a[k], b[k], equal_nan=True) for k in a)


def _bn_wrong_dtype():
    bn = nn.BatchNorm2d(1)
    before = _state(bn)
    try:
        bn(mg.tensor(X4.astype(np.float64) + 3))
    except Exception:
        pass
    return _same_state(before, _state(bn)) or "changed"


either("state", "BatchNorm2d on a float64 batch: right, or fails with stats untouched", _bn_wrong_dtype, is_true)


def _bn_wrong_channels():
    bn = nn.BatchNorm2d(3)
    before = _state(bn)
    try:
        bn(mg.tensor(X4))
    except Exception as e:
        if not _same_state(before, _state(bn)):
            return "changed"
        raise e
    return "accepted"


error("state", "BatchNorm2d(3) on a 1-channel batch", _bn_wrong_channels, "3", "1", "channel|features|running_mean")


def _load_state_dict_partial():
    lin = nn.Linear(3, 2)
    before = _state(lin)
    sd = {"weight": np.zeros((2, 3), np.float32), "bias": np.zeros((5,), np.float32)}
    try:
        lin.load_state_dict(sd)
    except Exception as e:
        if not _same_state(before, _state(lin)):
            return "half-loaded"
        raise e
    return "accepted"


error("state", "load_state_dict with one wrong-shaped member: nothing loaded", _load_state_dict_partial,
      "bias", "5", "2")


def _load_state_dict_missing():
    lin = nn.Linear(3, 2)
    before = _state(lin)
    try:
        lin.load_state_dict({"weight": np.zeros((2, 3), np.float32)})
    except Exception as e:
        if not _same_state(before, _state(lin)):
            return "half-loaded"
        raise e
    return "accepted"


error("state", "load_state_dict missing a key: nothing loaded", _load_state_dict_missing, "bias", "missing")


def _load_state_dict_extra():
    lin = nn.Linear(3, 2)
    sd = {k: arr(v) for k, v in lin.state_dict().items()}
    sd["gamma"] = np.zeros(2, np.float32)
    lin.load_state_dict(sd)


error("state", "load_state_dict with an unexpected key", _load_state_dict_extra, "gamma", "unexpected")
error("state", "load_state_dict with None as a value",
      lambda: nn.Linear(3, 2).load_state_dict({"weight": None, "bias": np.zeros(2, np.float32)}), "weight")
error("state", "load_state_dict with a string value",
      lambda: nn.Linear(3, 2).load_state_dict({"weight": "abc", "bias": np.zeros(2, np.float32)}), "weight")


def _load_state_dict_int():
    lin = nn.Linear(1, 1)
    lin.load_state_dict({"weight": np.array([[2]]), "bias": np.array([1])})
    return lin(t([[3.0]]))


either("state", "load_state_dict with int arrays (cast as PyTorch copies)", _load_state_dict_int,
       close([[7.0]], dtype=np.float32), "int64")


def _adam_bad_grad_shape():
    lin = nn.Linear(3, 2)
    opt = optim.Adam(lin.parameters(), lr=0.1)
    before = _state(lin)
    F.sum(lin(t(np.ones((1, 3))))).backward()
    lin.bias.grad = np.zeros((7,), np.float32)
    try:
        opt.step()
    except Exception as e:
        if not _same_state(before, _state(lin)) or opt.state_dict()["state"]:
            return "half-stepped"
        raise e
    return "accepted"


error("state", "Adam.step with one gradient of the wrong shape: nothing stepped", _adam_bad_grad_shape, "7", "2|shape")


def _adam_nan_grad():
    lin = nn.Linear(3, 2)
    opt = optim.Adam(lin.parameters(), lr=0.1)
    F.sum(lin(t(np.ones((1, 3))))).backward()
    lin.bias.grad = mg.tensor(np.array([NAN, 0.0], np.float32))
    opt.step()
    return arr(lin.bias)


right("state", "Adam.step with a nan gradient propagates nan (as PyTorch)", _adam_nan_grad,
      lambda b: np.isnan(b[0]) and np.isfinite(b[1]))


def _save_unserialisable():
    folder = _folder()
    path = os.path.join(folder, "c.npz")
    io.save_checkpoint(path, {"a": np.ones(2)})
    before = open(path, "rb").read()
    try:
        io.save_checkpoint(path, {"a": np.ones(3), "f": object()})
    except Exception as e:
        if open(path, "rb").read() != before or len(os.listdir(folder)) != 1:
            return "file changed or temp left"
        raise e
    return "accepted"


error("state", "save_checkpoint of an object it cannot store: old file intact", _save_unserialisable, "object", "f")


def _dataparallel_like_opt_state():
    lin = nn.Linear(2, 1)
    opt = optim.SGD(lin.parameters(), lr=0.1, momentum=0.9)
    sd = opt.state_dict()
    sd["param_groups"][0]["lr"] = "fast"
    before = json.dumps(opt.state_dict()["param_groups"], default=str)
    try:
        opt.load_state_dict(sd)
    except Exception as e:
        if json.dumps(opt.state_dict()["param_groups"], default=str) != before:
            return "half-loaded"
        raise e
    return "accepted"


error("state", "optimizer.load_state_dict with lr='fast'", _dataparallel_like_opt_state, "lr")


def _opt_load_wrong_groups():
    a, b = nn.Linear(2, 1), nn.Linear(2, 1)
    opt = optim.SGD(list(a.parameters()) + list(b.parameters()), lr=0.1)
    other = optim.SGD(a.parameters(), lr=0.5)
    opt.load_state_dict(other.state_dict())
    return opt.param_groups[0]["lr"]


error("state", "optimizer.load_state_dict from an optimizer with fewer parameters", _opt_load_wrong_groups,
      "parameters|size|group")

# ================================================================ argument validation


def _p():
    return nn.Linear(2, 2).parameters()


for _opt, _kw, _words in [
        ("SGD", {"lr": -0.1}, ("lr", "-0.1")),
        ("SGD", {"lr": float("nan")}, ("lr", "nan")),
        ("SGD", {"momentum": -0.5}, ("momentum",)),
        ("SGD", {"weight_decay": -1e-4}, ("weight_decay",)),
        ("SGD", {"nesterov": True}, ("nesterov", "momentum")),
        ("SGD", {"lr": "0.1"}, ("lr",)),
        ("Adam", {"lr": -1.0}, ("lr",)),
        ("Adam", {"betas": (1.0, 0.999)}, ("beta",)),
        ("Adam", {"betas": (0.9, -0.1)}, ("beta",)),
        ("Adam", {"eps": -1e-8}, ("eps",)),
        ("Adam", {"weight_decay": -0.1}, ("weight_decay",)),
        ("Adam", {"betas": 0.9}, ("betas",)),
        ("RMSprop", {"alpha": -0.5}, ("alpha",)),
        ("RMSprop", {"momentum": -1}, ("momentum",)),
        ("RMSprop", {"eps": -1.0}, ("eps",))]:
    error("args", f"{_opt}({', '.join(f'{k}={v!r}' for k, v in _kw.items())})",
          lambda o=_opt, kw=_kw: getattr(optim, o)(_p(), **kw), *_words)


either("args", "RMSprop(lr=inf): PyTorch accepts it", lambda: optim.RMSprop(_p(), lr=float("inf")),
       lambda o: o.param_groups[0]["lr"] == float("inf"), "lr", "inf")


def _same_param_twice():
    lin = nn.Linear(2, 2)
    return optim.SGD([{"params": [lin.weight]}, {"params": [lin.weight, lin.bias]}], lr=0.1)


error("args", "the same parameter in two groups", _same_param_twice, "more than one|two|twice|same|duplicate")
either("args", "the same parameter twice in one list",
       lambda: optim.SGD([nn.Linear(2, 2).weight] * 2, lr=0.1), lambda o: False, "more than one|twice|duplicate|same")
error("args", "a single Parameter instead of an iterable", lambda: optim.Adam(nn.Linear(2, 2).weight), "iterable")
error("args", "a NumPy array in the parameter list", lambda: optim.SGD([np.zeros(3)], lr=0.1), "ndarray|Tensor|Parameter")
error("args", "an empty parameter list", lambda: optim.Adam([], lr=0.1), "empty")
error("args", "a generator already consumed (empty)",
      lambda: (lambda g: (list(g), optim.SGD(g, lr=0.1)))(nn.Linear(2, 2).parameters()), "empty")
error("args", "a param group without 'params'", lambda: optim.SGD([{"lr": 0.1}], lr=0.1), "params")
error("args", "a non-leaf tensor as a parameter",
      lambda: optim.SGD([t([1.0], requires_grad=True) * 2], lr=0.1), "leaf")
error("args", "Conv2d(kernel_size=0)", lambda: nn.Conv2d(1, 1, 0), "kernel_size")
error("args", "Conv2d(stride=0)", lambda: nn.Conv2d(1, 1, 3, stride=0), "stride")
error("args", "Conv2d(padding=-1)", lambda: nn.Conv2d(1, 1, 3, padding=-1), "padding")
error("args", "Conv2d(in_channels=0)", lambda: nn.Conv2d(0, 1, 3), "in_channels")
error("args", "Conv2d(out_channels=-2)", lambda: nn.Conv2d(1, -2, 3), "out_channels")
error("args", "Conv2d(kernel_size=2.5)", lambda: nn.Conv2d(1, 1, 2.5), "kernel_size")
error("args", "Conv2d on a 2-channel input with in_channels=1", lambda: nn.Conv2d(1, 2, 3)(t(np.zeros((1, 2, 5, 5)))),
      "1", "2", "channel")
error("args", "Conv2d kernel larger than the padded input", lambda: nn.Conv2d(1, 1, 5)(t(np.zeros((1, 1, 3, 3)))),
      "kernel|size")
either("args", "Conv2d on an unbatched (C, H, W) input (PyTorch accepts)",
       lambda: nn.Conv2d(1, 2, 3)(t(np.zeros((1, 5, 5)))).shape, lambda s: tuple(s) == (2, 3, 3), "4-D|(N, C, H, W)",
       "(1, 5, 5)")
error("args", "conv2d with a 0x0 kernel", lambda: F.conv2d(t(np.ones((1, 1, 3, 3))), t(np.ones((1, 1, 0, 0)))), "kernel|weight")
error("args", "conv2d with stride=1.5", lambda: F.conv2d(mg.tensor(X4), mg.tensor(W3), stride=1.5), "stride")
error("args", "conv2d with padding=2**40", lambda: F.conv2d(mg.tensor(X4), mg.tensor(W3), padding=2 ** 40), "padding")
error("args", "conv2d with stride=(1, 2, 3)", lambda: F.conv2d(mg.tensor(X4), mg.tensor(W3), stride=(1, 2, 3)), "stride")
error("args", "conv2d with a 3-D weight", lambda: F.conv2d(mg.tensor(X4), t(np.ones((3, 3, 3)))), "weight", "4")
error("args", "conv2d with a bias of the wrong length",
      lambda: F.conv2d(mg.tensor(X4), mg.tensor(W3), bias=t(np.zeros(5))), "bias", "5", "3")
error("args", "ConvTranspose2d output_padding >= stride",
      lambda: nn.ConvTranspose2d(1, 1, 3, stride=1, output_padding=1)(t(np.zeros((1, 1, 4, 4)))), "output_padding")
error("args", "Linear on the wrong feature count", lambda: nn.Linear(4, 3)(t(np.zeros((2, 5)))), "4", "5")
error("args", "Linear(-1, 3)", lambda: nn.Linear(-1, 3), "in_features|-1")
error("args", "matmul of mismatched shapes", lambda: t(np.zeros((2, 3))).matmul(t(np.zeros((4, 2)))), "3", "4")
error("args", "BatchNorm2d(0)", lambda: nn.BatchNorm2d(0), "num_features")
error("args", "BatchNorm2d on a 2-D input", lambda: nn.BatchNorm2d(4)(t(np.zeros((2, 4)))), "4D|4-D|dim")
error("args", "BatchNorm1d on the wrong feature count", lambda: nn.BatchNorm1d(4)(t(np.zeros((3, 5)))), "4", "5")
error("args", "Dropout(p=1.5)", lambda: nn.Dropout(1.5), "1.5|probability|p")
error("args", "F.dropout(p=-0.1)", lambda: F.dropout(t([1.0]), p=-0.1), "probability|-0.1")
right("args", "F.dropout(p=1) zeroes everything", lambda: F.dropout(t([1.0, 2.0]), p=1.0), close([0.0, 0.0]))
right("args", "F.dropout(training=False) is the identity", lambda: F.dropout(t([1.0, 2.0]), p=0.5, training=False), close([1.0, 2.0]))
error("args", "Embedding index out of range", lambda: nn.Embedding(3, 2)(mg.tensor(np.array([3]))), "3", "index|range")
error("args", "Embedding negative index", lambda: nn.Embedding(3, 2)(mg.tensor(np.array([-1]))), "-1", "index|range")
error("args", "Embedding with float indices", lambda: nn.Embedding(3, 2)(t([1.0])), "int|Long|index")
error("args", "cross_entropy target out of range", lambda: F.cross_entropy(t(np.zeros((2, 3))), mg.tensor(np.array([0, 3]))),
      "3", "target|class|range")
error("args", "cross_entropy target of the wrong length",
      lambda: F.cross_entropy(t(np.zeros((2, 3))), mg.tensor(np.array([0, 1, 2]))), "2", "3")
error("args", "nll_loss negative target", lambda: F.nll_loss(t(np.zeros((2, 3))), mg.tensor(np.array([0, -1]))),
      "-1", "target|class|range")
error("args", "cross_entropy with float targets of the wrong shape",
      lambda: F.cross_entropy(t(np.zeros((2, 3))), t([0.0, 1.0])), "target|float|int|shape")
error("args", "mse_loss reduction='avg'", lambda: F.mse_loss(t([1.0]), t([1.0]), reduction="avg"), "avg", "reduction")
error("args", "cross_entropy reduction=None", lambda: F.cross_entropy(t(np.zeros((1, 2))), mg.tensor(np.array([0])), reduction=None), "reduction")
either("args", "mse_loss with broadcasting shapes (PyTorch warns, then broadcasts)",
       lambda: F.mse_loss(t(np.zeros((3, 1))), t(np.ones((3,)))), close(1.0), "3", "shape|size")
error("args", "mse_loss with incompatible shapes", lambda: F.mse_loss(t(np.zeros((3,))), t(np.ones((4,)))), "3", "4")
error("args", "binary_cross_entropy with a probability above 1",
      lambda: F.binary_cross_entropy(t([1.5]), t([1.0])), "between 0 and 1|[0, 1]")
error("args", "binary_cross_entropy target shape differs", lambda: F.binary_cross_entropy(t([0.5, 0.5]), t([1.0])),
      "size|shape")
error("args", "softmax dim out of range", lambda: F.softmax(t(np.zeros((2, 3))), dim=2), "dim|axis", "2")
error("args", "sum over dim 5 of a 2-D tensor", lambda: F.sum(t(np.zeros((2, 3))), dim=5), "dim|axis", "5")
error("args", "reshape to a wrong size", lambda: t(np.zeros((2, 3))).reshape(4, 2), "shape|size", "6")
error("args", "cat of mismatched shapes", lambda: F.cat([t(np.zeros((2, 3))), t(np.zeros((2, 4)))], dim=0), "3", "4")
error("args", "stack of an empty list", lambda: F.stack([]), "empty|at least one|non-empty")
error("args", "transpose with dim 3 of a 2-D tensor", lambda: F.transpose(t(np.zeros((2, 3))), 0, 3), "dim|axis", "3")
error("args", "permute with too few dims", lambda: F.permute(t(np.zeros((2, 3, 4))), (1, 0)), "dims|axes|permut")
error("args", "index out of range", lambda: t(np.zeros((2, 3)))[5], "5", "index|bounds|range")
error("args", "where with incompatible shapes",
      lambda: F.where(mg.tensor(np.array([True, False, True])), t([1.0, 2.0]), t([3.0, 4.0])), "shape|broadcast")
right("args", "clamp with min > max gives max (as PyTorch)", lambda: F.clamp(t([0.0, 5.0]), 2.0, 1.0), close([1.0, 1.0]))
error("args", "leaky_relu with a string slope", lambda: F.leaky_relu(t([1.0]), "0.2"), "negative_slope|slope")
error("args", "pad with an odd-length pad", lambda: F.pad(mg.tensor(X4), (1, 1, 1)), "pad", "(1, 1, 1)")
error("args", "reflect pad as wide as the input", lambda: F.pad(mg.tensor(X4), (6, 6, 0, 0), mode="reflect"), "pad", "6")
error("args", "pad mode 'circular-ish'", lambda: F.pad(mg.tensor(X4), (1, 1, 1, 1), mode="wrap"), "wrap", "mode")
either("args", "pad with negative values crops (as PyTorch)", lambda: F.pad(mg.tensor(X4), (-1, -1, -1, -1)),
       close(X4[:, :, 1:-1, 1:-1]), "negative", "(-1, -1, -1, -1)")
error("args", "ReflectionPad2d(-1)", lambda: nn.ReflectionPad2d(-1)(mg.tensor(X4)), "pad|-1")
error("args", "instance_norm on a 2-D input", lambda: F.instance_norm(t(np.zeros((3, 4)))), "(N, C, H, W)|4-D|dim", "(3, 4)")
error("args", "InstanceNorm2d(affine=True) on the wrong channel count",
      lambda: nn.InstanceNorm2d(3, affine=True)(mg.tensor(X4)), "3", "1")
either("args", "InstanceNorm2d on a 1x1 map (PyTorch refuses: one value per channel)",
       lambda: nn.InstanceNorm2d(2)(t(np.ones((2, 2, 1, 1)))), close(np.zeros((2, 2, 1, 1))),
       "more than one|more than 1|spatial|1x1")
error("args", "spectral_norm on a module without 'weight'", lambda: spectral_norm(nn.ReLU()), "weight")
error("args", "spectral_norm n_power_iterations=0", lambda: spectral_norm(nn.Linear(2, 2), n_power_iterations=0),
      "n_power_iterations")
error("args", "spectral_norm name='kernel'", lambda: spectral_norm(nn.Linear(2, 2), name="kernel"), "kernel")


def _spectral_norm_value():
    mg.manual_seed(0)
    lin = spectral_norm(nn.Linear(3, 3), n_power_iterations=30)
    with mg.no_grad():
        lin(t(np.zeros((1, 3))))
    w = arr(lin.weight)
    return np.linalg.svd(w, compute_uv=False)[0]


right("args", "spectral_norm: the weight's top singular value is 1", _spectral_norm_value,
      lambda s: abs(s - 1.0) < 1e-3)


def _spectral_norm_twice():
    lin = spectral_norm(nn.Linear(2, 2))
    return spectral_norm(lin)


error("args", "spectral_norm applied twice", _spectral_norm_twice, "spectral_norm|twice|already")
error("args", "MinibatchDiscrimination on the wrong feature count",
      lambda: nn.MinibatchDiscrimination(4, 3)(t(np.zeros((5, 6)))), "4", "6")
error("args", "MinibatchDiscrimination(kernel_dims=0)", lambda: nn.MinibatchDiscrimination(4, 3, kernel_dims=0), "kernel_dims")
either("args", "MinibatchDiscrimination on a batch of one",
       lambda: nn.MinibatchDiscrimination(4, 3)(t(np.ones((1, 4)))).shape, lambda s: tuple(s) == (1, 7), "batch")
error("args", "MaskedConv2d(mask_type='C')", lambda: nn.MaskedConv2d("C", 1, 1, 3), "mask_type|'C'")
error("args", "MaskedConv2d with an even kernel", lambda: nn.MaskedConv2d("A", 1, 1, 4), "kernel|odd")
error("args", "Unflatten to a size that does not multiply out",
      lambda: nn.Unflatten(1, (2, 2))(t(np.zeros((3, 5)))), "5", "4|2, 2|(2, 2)")


def _functional_call_unknown():
    lin = nn.Linear(2, 1)
    return func.functional_call(lin, {"wieght": t(np.zeros((1, 2)))}, (t(np.ones((1, 2))),))


error("args", "functional_call with an unknown name", _functional_call_unknown, "wieght")
error("args", "functional_call with a wrong-shaped parameter",
      lambda: func.functional_call(nn.Linear(2, 1), {"weight": t(np.zeros((3, 3)))}, (t(np.ones((1, 2))),)),
      "weight|shape|2", "3")


def _functional_call_restores():
    lin = nn.Linear(2, 1)
    before = _state(lin)
    try:
        func.functional_call(lin, {"weight": t(np.zeros((1, 2)))}, (t(np.ones((1, 3))),))
    except Exception:
        pass
    return _same_state(before, _state(lin)) and arr(lin.weight).shape == (1, 2)


right("args", "functional_call that fails inside forward restores the module", _functional_call_restores, is_true)


def _functional_call_value():
    lin = nn.Linear(2, 1)
    w = t([[1.0, 2.0]], requires_grad=True)
    y = func.functional_call(lin, {"weight": w, "bias": t([0.5])}, (t([[3.0, 4.0]]),))
    F.sum(y).backward()
    return np.concatenate([arr(y).ravel(), arr(w.grad).ravel()])


right("args", "functional_call's value and gradient", _functional_call_value, close([11.5, 3.0, 4.0]))
error("args", "DiffAugment with an unknown policy", lambda: DiffAugment(policy=("color",)), "color")
error("args", "DiffAugment with a string policy 'translation,cutout' typo",
      lambda: DiffAugment(policy="translaton"), "translaton")
error("args", "DiffAugment translation_ratio=-0.1", lambda: DiffAugment(translation_ratio=-0.1), "translation_ratio")
error("args", "DiffAugment on a 2-D tensor", lambda: DiffAugment()(t(np.zeros((4, 784)))), "4D|4-D|(N, C, H, W)|dim")
right("args", "DiffAugment(policy=()) is the identity", lambda: DiffAugment(policy=())(mg.tensor(X4)), close(X4))
error("args", "sample_noise with n=-1", lambda: gan.sample_noise(-1, 10), "-1|n")
error("args", "ImagePool(pool_size=-3)", lambda: gan.ImagePool(pool_size=-3), "pool_size")
error("args", "make_image_grid on a 2-D array", lambda: io.make_image_grid(np.zeros((28, 28))), "shape|dim|4")
error("args", "make_image_grid nrow=0", lambda: io.make_image_grid(np.zeros((4, 1, 8, 8)), nrow=0), "nrow")
error("args", "mg.zeros with a negative size", lambda: mg.zeros(-2, 3), "-2|negative")
error("args", "set_default_dtype(int)", lambda: mg.set_default_dtype(np.int64), "int64|float")
right("args", "manual_seed(-1) seeds reproducibly (PyTorch: 2**64 - 1)",
      lambda: [(mg.manual_seed(-1), arr(mg.randn(3)))[1] for _ in range(2)], lambda v: np.array_equal(v[0], v[1]))
error("args", "Tensor.to('tpu')", lambda: t([1.0]).to("tpu"), "tpu")
error("args", "backward on a non-scalar without a gradient", lambda: t([1.0, 2.0], requires_grad=True).__mul__(2).backward(),
      "scalar|grad")
error("args", "backward on a tensor that does not require grad", lambda: F.sum(t([1.0, 2.0])).backward(), "grad")
error("args", "backward with a gradient of the wrong shape",
      lambda: (t([1.0, 2.0], requires_grad=True) * 2).backward(t([1.0, 1.0, 1.0])), "shape|size", "3")
error("args", "mg.grad of an output with respect to an unused input",
      lambda: mg.grad(F.sum(t([1.0], requires_grad=True) * 2), [t([1.0], requires_grad=True)]), "not have been used|unused|allow_unused")
error("args", "VAE on a 3-channel image with nc=1",
      lambda: density.VAE(nz=4, ngf=4, ndf=4, nc=1)(t(np.zeros((2, 3, 28, 28)))), "3", "1")
error("args", "VAE on a 32x32 image", lambda: density.VAE(nz=4, ngf=4, ndf=4)(t(np.zeros((2, 1, 32, 32)))), "32|28|size")
error("args", "PixelCNN on a 3-channel batch", lambda: density.PixelCNN(h=4, layers=2)(t(np.zeros((1, 3, 8, 8)))), "3", "1|channel")
error("args", "bernoulli_nll with shapes that differ",
      lambda: density.bernoulli_nll(t(np.zeros((2, 1, 4, 4))), t(np.zeros((2, 1, 4, 5)))), "shape|size")
error("args", "gaussian_kl with mu and logvar of different shapes",
      lambda: density.gaussian_kl(t(np.zeros((2, 4))), t(np.zeros((2, 3)))), "4", "3")
right("args", "gaussian_kl of N(0, 1) is 0 per sample", lambda: density.gaussian_kl(t(np.zeros((2, 4))), t(np.zeros((2, 4)))),
      lambda v: np.allclose(arr(v), 0.0))
error("args", "binarize with a threshold outside 0..255", lambda: density.binarize(np.zeros((1, 1, 2, 2), np.uint8), threshold=300), "threshold")


def _syncbn_one_process():
    bn = nn.SyncBatchNorm(1)
    y = bn(mg.tensor(X4))
    ref = (X4 - X4.mean()) / np.sqrt(X4.var() + 1e-5)
    return np.concatenate([arr(y).ravel(), arr(bn.running_mean).ravel()]), ref


right("args", "SyncBatchNorm in one process equals BatchNorm2d",
      lambda: _syncbn_one_process(), lambda v: np.allclose(v[0][:-1], v[1].ravel(), atol=1e-4)
      and np.isclose(v[0][-1], 0.1 * X4.mean(), atol=1e-5))
error("args", "SyncBatchNorm on the wrong channel count", lambda: nn.SyncBatchNorm(2)(mg.tensor(X4)), "2", "1")

# ----------------------------------------------- more of the API: func steps, GAN helpers, EMA
def _two_params():
    return {"w": t([1.0, 2.0], requires_grad=True), "b": t([[3.0]], requires_grad=True)}


error("args", "func.sgd_step with lists instead of dicts",
      lambda: func.sgd_step(list(_two_params().values()), [t([1.0, 1.0]), t([[1.0]])], lr=0.1), "dict", "list")
error("args", "func.sgd_step with a gradient missing",
      lambda: func.sgd_step(_two_params(), {"w": t([1.0, 1.0])}, lr=0.1), "b")
error("args", "func.sgd_step with a gradient of the wrong shape",
      lambda: func.sgd_step(_two_params(), {"w": t([1.0, 1.0, 1.0]), "b": t([[1.0]])}, lr=0.1), "shape", "3")
error("args", "func.adam_step(lr=-1)",
      lambda: func.adam_step(_two_params(), {"w": t([1.0, 1.0]), "b": t([[1.0]])}, lr=-1.0), "lr")
error("args", "func.adam_step(betas=(1.0, 0.999))",
      lambda: func.adam_step(_two_params(), {"w": t([1.0, 1.0]), "b": t([[1.0]])}, betas=(1.0, 0.999)), "beta")
right("args", "func.sgd_step value (lr 0.1, momentum 0)",
      lambda: func.sgd_step(_two_params(), {"w": t([1.0, 1.0]), "b": t([[2.0]])}, lr=0.1)[0]["w"],
      close([0.9, 1.9]))
error("args", "one_hot with a label >= num_classes",
      lambda: gan.one_hot(mg.tensor(np.array([0, 10])), 10, t(np.zeros((2, 1)))), "10", "label|class|range")
error("args", "one_hot with a negative label",
      lambda: gan.one_hot(mg.tensor(np.array([-1])), 10, t(np.zeros((1, 1)))), "-1", "label|class|range")
error("args", "pack with a batch not divisible by m", lambda: gan.pack(t(np.zeros((5, 2))), 2), "5", "2")
error("args", "pack with m=0", lambda: gan.pack(t(np.zeros((4, 2))), 0), "m|pack", "0")
right("args", "pack of (4, 1, 2, 2) by 2 is a reshape",
      lambda: gan.pack(t(np.arange(16.0).reshape(4, 1, 2, 2)), 2), close(np.arange(16.0).reshape(2, 2, 2, 2)))
either("args", "linear_decay at step 0 (steps are 1-based): the base rate, or an error",
       lambda: gan.linear_decay(0, 10, 1e-3), close(1e-3), "step", "0")
error("args", "linear_decay with total 0", lambda: gan.linear_decay(1, 0, 1e-3), "total", "0")
error("args", "EMA(beta=1.5)", lambda: EMA(nn.Linear(2, 2), nn.Linear(2, 2), beta=1.5), "beta", "1.5")
error("args", "EMA with an average of another type", lambda: EMA(nn.Linear(2, 2), nn.ReLU()), "Linear", "ReLU")
error("args", "gradient_penalty with real and fake of different shapes",
      lambda: gan.gradient_penalty(nn.Sequential(nn.Flatten(), nn.Linear(4, 1)), t(np.zeros((2, 1, 2, 2))),
                                   t(np.zeros((3, 1, 2, 2)))), "shape|size", "3")
error("args", "sample_latent with num_categories=0", lambda: gan.sample_latent(4, 12, num_categories=0),
      "num_categories", "0")
right("args", "ImagePool.query while filling returns its input (any shape)",
      lambda: gan.ImagePool(pool_size=2).query(t([1.0, 2.0])), close([1.0, 2.0]))
right("args", "ImagePool(pool_size=0) passes images through",
      lambda: gan.ImagePool(pool_size=0).query(t(np.ones((2, 1, 2, 2)))), close(np.ones((2, 1, 2, 2))))
error("args", "feature_matching_loss on features of different widths",
      lambda: gan.feature_matching_loss(t(np.zeros((4, 3))), t(np.zeros((4, 5)))), "3", "5")
right("numbers", "log_softmax's gradient at a -inf logit is finite",
      lambda: (lambda x: (F.sum(F.log_softmax(x, dim=1)[:, 1]).backward(), x.grad)[1])(
          t([[-INF, 0.0]], requires_grad=True)), close([[0.0, 0.0]]))
right("numbers", "binary_cross_entropy_with_logits at logit +-inf, matching targets (PyTorch: nan, nan)",
      lambda: F.binary_cross_entropy_with_logits(t([INF, -INF]), t([1.0, 0.0]), reduction="none"), close([NAN, NAN]))
right("numbers", "cross_entropy of a float64 batch stays float64",
      lambda: F.cross_entropy(mg.tensor(np.zeros((2, 3))), mg.tensor(np.array([0, 2]))), close(np.log(3), dtype=np.float64))
right("layouts", "ConvTranspose2d on a read-only batch",
      lambda: nn.ConvTranspose2d(1, 2, 3, stride=2)(mg.as_tensor(readonly(X4))).shape, lambda s: tuple(s) == (2, 2, 13, 13))
right("layouts", "MaskedConv2d on a Fortran-order batch equals the C-order result",
      lambda: (lambda m: np.allclose(arr(m(mg.as_tensor(np.asfortranarray(X4)))), arr(m(mg.tensor(X4))), atol=1e-5))(
          nn.MaskedConv2d("A", 1, 2, 3)), is_true)
right("layouts", "InstanceNorm2d on a negative-stride batch equals the C-order result",
      lambda: np.allclose(arr(nn.InstanceNorm2d(1)(mg.as_tensor(X4[::-1]))), arr(nn.InstanceNorm2d(1)(mg.tensor(X4[::-1].copy()))),
                          atol=1e-5), is_true)
right("layouts", "DiffAugment on a read-only batch keeps the shape",
      lambda: DiffAugment()(mg.as_tensor(readonly(X4))).shape, lambda s: tuple(s) == X4.shape)


def _vae_value():
    mg.manual_seed(0)
    vae = density.VAE(nz=4, ngf=4, ndf=4)
    out = vae(t(np.zeros((2, 1, 28, 28))))
    return out


right("args", "VAE forward on a (2, 1, 28, 28) batch gives finite outputs",
      _vae_value, lambda o: all(np.isfinite(arr(v)).all() for v in o if isinstance(v, mg.Tensor)))
right("args", "PixelCNN's logits on a grey (non-binary) batch: defined, finite",
      lambda: density.PixelCNN(h=4, layers=2)(t(np.full((1, 1, 8, 8), 0.5))), lambda v: np.isfinite(arr(v)).all())


# =============================================================================== files


def _tmp(name):
    return os.path.join(_folder(), name)


def _idx_file(magic_type, dims, body):
    path = _tmp("x-idx.ubyte")
    with open(path, "wb") as f:
        f.write(bytes([0, 0, magic_type, len(dims)]))
        for d in dims:
            f.write(struct.pack(">I", d))
        f.write(body)
    return path


_IDXWORDS = ("x-idx.ubyte",)


def _idx_header_cut():
    """A header that says three dimensions but holds one and a half."""
    path = _tmp("x-idx.ubyte")
    with open(path, "wb") as f:
        f.write(bytes([0, 0, 0x08, 3]) + struct.pack(">I", 5) + b"\0\0")
    return path
error("files", "IDX header claiming (2**32-1, 2**32-1, 2) over 100 bytes",
      lambda: data.read_idx(_idx_file(0x08, (2 ** 32 - 1, 2 ** 32 - 1, 2), b"\0" * 100)), *_IDXWORDS, "116", "4294967295")
error("files", "IDX with fewer bytes than its header says",
      lambda: data.read_idx(_idx_file(0x08, (10, 28, 28), b"\0" * 500)), *_IDXWORDS, "516", "7856")
error("files", "IDX with trailing bytes", lambda: data.read_idx(_idx_file(0x08, (2, 2), b"\0" * 9)), *_IDXWORDS, "trailing|9|4")
error("files", "IDX with an unknown type byte", lambda: data.read_idx(_idx_file(0x07, (2,), b"\0" * 2)), *_IDXWORDS, "type|0x07|7")
error("files", "IDX truncated inside its header", lambda: data.read_idx(_idx_header_cut()),
      *_IDXWORDS, "header|truncated|short")
error("files", "IDX with a bad magic", lambda: (lambda p: (open(p, "wb").write(b"PK\3\4" + b"\0" * 20), data.read_idx(p)))(_tmp("x-idx.ubyte")),
      *_IDXWORDS, "magic|not an IDX|header")
error("files", "IDX file that does not exist", lambda: data.read_idx("/nonexistent/x-idx.ubyte"), "/nonexistent/x-idx.ubyte")
error("files", "IDX path that is a folder", lambda: data.read_idx(_folder()), "directory|folder")
error("files", "empty IDX file", lambda: data.read_idx((lambda p: (open(p, "wb").close(), p)[1])(_tmp("x-idx.ubyte"))),
      *_IDXWORDS, "empty|header|short|0 bytes")
right("files", "IDX round trip of float32 (type 0x0D)",
      lambda: (lambda p: (data.write_idx(p, np.arange(6, dtype=np.float32).reshape(2, 3)), data.read_idx(p))[1])(_tmp("f.idx")),
      close(np.arange(6.0).reshape(2, 3), dtype=np.float32))
error("files", "write_idx of an int64 array (IDX has no 64-bit ints)",
      lambda: data.write_idx(_tmp("i.idx"), np.arange(3, dtype=np.int64)), "int64")
error("files", "write_idx of a dimension over 2**32-1 (a 0-d array instead)",
      lambda: data.write_idx(_tmp("z.idx"), np.float32(3.0)), "0-d|dimension|scalar|ndim")
right("files", "IDX gzip round trip (.gz name)",
      lambda: (lambda p: (data.write_idx(p, np.arange(4, dtype=np.uint8)), data.read_idx(p))[1])(_tmp("g-idx.gz")),
      close(np.arange(4), dtype=np.uint8))


def _npy_as_checkpoint():
    path = _tmp("ckpt.npz")
    with open(path, "wb") as f:
        np.save(f, np.ones(3))
    return io.load_checkpoint(path)


error("files", "a plain .npy saved under a .npz name", _npy_as_checkpoint, "ckpt.npz")


def _ckpt_meta_list():
    path = _tmp("list.npz")
    io.save_checkpoint(path, {"a": np.ones(2)})
    with zipfile.ZipFile(path) as z:
        members = {n: z.read(n) for n in z.namelist()}
    meta = [n for n in members if n.startswith("__")]   # the one member that is not an array of the tree
    if len(meta) != 1:
        raise RuntimeError("corpus: no single metadata member among " + ", ".join(members))
    buf = __import__("io").BytesIO()
    np.save(buf, np.frombuffer(b"[1, 2, 3]", dtype=np.uint8))
    members[meta[0]] = buf.getvalue()
    with zipfile.ZipFile(path, "w") as z:
        for n, b in members.items():
            z.writestr(n, b)
    return io.load_checkpoint(path)


error("files", "checkpoint metadata holding a JSON list", _ckpt_meta_list, "list.npz")


def _ckpt_huge_member():
    path = _tmp("huge.npz")
    header = {"descr": "<f8", "fortran_order": False, "shape": (10 ** 12,)}
    buf = __import__("io").BytesIO()
    np.lib.format.write_array_header_1_0(buf, header)
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("a.npy", buf.getvalue() + b"\0" * 64)
    return io.load_checkpoint(path)


error("files", "checkpoint member claiming 10**12 values", _ckpt_huge_member, "huge.npz")
error("files", "checkpoint that does not exist", lambda: io.load_checkpoint("/nonexistent/run/ckpt.npz"),
      "/nonexistent/run/ckpt.npz")
error("files", "checkpoint that is an empty file",
      lambda: io.load_checkpoint((lambda p: (open(p, "wb").close(), p)[1])(_tmp("empty.npz"))), "empty.npz")
error("files", "checkpoint that is a text file",
      lambda: io.load_checkpoint((lambda p: (open(p, "w").write("hello"), p)[1])(_tmp("text.npz"))), "text.npz")


def _ckpt_truncated():
    path = _tmp("trunc.npz")
    io.save_checkpoint(path, {"a": np.arange(1000.0), "b": {"c": np.ones(5)}})
    size = os.path.getsize(path)
    with open(path, "r+b") as f:
        f.truncate(size // 2)
    return io.load_checkpoint(path)


error("files", "checkpoint truncated to half its size", _ckpt_truncated, "trunc.npz")


def _ckpt_flipped_byte():
    path = _tmp("flip.npz")
    io.save_checkpoint(path, {"a": np.arange(1000.0)})
    with open(path, "r+b") as f:
        f.seek(300)
        b = f.read(1)
        f.seek(300)
        f.write(bytes([b[0] ^ 0xFF]))
    return io.load_checkpoint(path)["a"]


either("files", "checkpoint with one flipped byte in the data", _ckpt_flipped_byte,
       lambda v: np.array_equal(arr(v), np.arange(1000.0)), "flip.npz")
error("files", "load_checkpoint on a folder", lambda: io.load_checkpoint(_folder()), "directory|folder|is a")


def _ckpt_roundtrip():
    path = _tmp("rt.npz")
    tree = {"model": {"w": np.arange(4, dtype=np.float32)}, "step": 7, "lr": 2e-4, "name": "x", "hist": [1.0, 2.0]}
    io.save_checkpoint(path, tree)
    back = io.load_checkpoint(path)
    return (np.array_equal(arr(back["model"]["w"]), tree["model"]["w"]) and back["step"] == 7
            and back["lr"] == 2e-4 and back["name"] == "x" and list(back["hist"]) == [1.0, 2.0]
            and arr(back["model"]["w"]).dtype == np.float32)


right("files", "checkpoint round trip of a nested tree", _ckpt_roundtrip, is_true)


def _ckpt_tensor():
    path = _tmp("t.npz")
    io.save_checkpoint(path, {"w": t([1.0, 2.0])})
    return io.load_checkpoint(path)["w"]


either("files", "save_checkpoint of a Tensor", _ckpt_tensor, close([1.0, 2.0]), "Tensor")


def _ckpt_nan_metadata():
    path = _tmp("nan.npz")
    io.save_checkpoint(path, {"loss": float("nan"), "best": float("inf")})
    back = io.load_checkpoint(path)
    return math.isnan(back["loss"]) and back["best"] == float("inf")


either("files", "checkpoint metadata holding nan and inf", _ckpt_nan_metadata, is_true, "nan")


def _ckpt_orphan_removed():
    folder = _folder()
    path = os.path.join(folder, "c.npz")
    orphan = os.path.join(folder, ".c.npz.0123456789ab.tmp")
    with open(orphan, "wb") as f:
        f.write(b"half a checkpoint")
    io.save_checkpoint(path, {"a": np.ones(2)})
    return sorted(os.listdir(folder)) == ["c.npz"]


right("files", "a temp file left by a killed write is removed by the next save", _ckpt_orphan_removed, is_true)


def _ckpt_key_with_slash():
    path = _tmp("slash.npz")
    io.save_checkpoint(path, {"a/b": np.ones(2), "a": {"b": np.zeros(2)}})
    back = io.load_checkpoint(path)
    return np.array_equal(back["a/b"], np.ones(2)) and np.array_equal(back["a"]["b"], np.zeros(2))


either("files", "checkpoint keys 'a/b' and a['b'] do not collide", _ckpt_key_with_slash, is_true, "a/b")


def _ckpt_int_keys():
    path = _tmp("intkeys.npz")
    io.save_checkpoint(path, {"state": {0: np.ones(1), 1: np.zeros(1)}})
    back = io.load_checkpoint(path)
    return set(back["state"].keys()) in ({0, 1}, {"0", "1"})


either("files", "checkpoint with integer dict keys (optimizer state)", _ckpt_int_keys, is_true, "key")


def _load_mnist_missing():
    return data.load_mnist(data_dir="/nonexistent/mnist", download=False, verbose=False)


error("files", "load_mnist(data_dir=) of a missing folder", _load_mnist_missing, "/nonexistent/mnist")
error("files", "load_mnist(split='validation')", lambda: data.load_mnist(split="validation", verbose=False, download=False),
      "validation", "split")
error("files", "load_mnist(dataset='cifar')", lambda: data.load_mnist(dataset="cifar", verbose=False, download=False), "cifar")


def _load_mnist_empty_dir():
    return data.load_mnist(data_dir=_folder(), download=False, verbose=False)


error("files", "load_mnist(data_dir=) of an empty folder", _load_mnist_empty_dir, "idx|images|not found|no ")
error("files", "Batches with arrays of different lengths",
      lambda: data.Batches(np.zeros((10, 2)), np.zeros(9), batch_size=2), "10", "9")
error("files", "Batches(batch_size=0)", lambda: data.Batches(np.zeros((10, 2)), batch_size=0), "batch_size")
either("files", "Batches with batch_size above the data and drop_last",
       lambda: list(data.Batches(np.zeros((3, 2)), batch_size=5)), lambda v: False, "batch_size", "3")


def _save_grid_bad_folder():
    path = os.path.join(_folder(), "f")
    open(path, "w").close()
    io.save_image_grid(np.zeros((4, 1, 8, 8)), os.path.join(path, "grid.png"))


error("files", "save_image_grid under a path whose parent is a file", _save_grid_bad_folder, "f")

# ================================================================== examples: data and flags
def run_example(module, *args, timeout=600):
    env = dict(os.environ, PYTHONPATH=REPO + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return subprocess.run([sys.executable, "-m", f"examples.{module}", *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=timeout)


class ExampleFailed(Exception):
    """An example exited non-zero; the message is what the user saw last."""


def example(module, *args):
    def go():
        p = run_example(module, *args)
        if p.returncode < 0:
            raise SystemError(f"killed by signal {-p.returncode}")
        if p.returncode != 0:
            lines = [ln for ln in p.stderr.strip().splitlines() if ln.strip()]
            raise ExampleFailed(lines[-1] if lines else f"exit status {p.returncode}, no message")
        return p
    return go


TINY = ("--iters", "2", "--bundled", "--no-progress", "--no-metrics", "--batch-size", "8",
        "--nz", "4", "--ngf", "4", "--ndf", "4", "--samples", "4")


def out_dir():
    return os.path.join(_folder(), "run")


error("flags", "dcgan --data-dir /nonexistent", example("dcgan_mnist", *TINY, "--out", out_dir(), "--data-dir", "/nonexistent"),
      "/nonexistent", slow=True)
error("flags", "dcgan --seed -1", example("dcgan_mnist", *TINY, "--out", out_dir(), "--seed", "-1"), "seed", slow=True)
error("flags", "dcgan --iters -5", example("dcgan_mnist", "--iters", "-5", "--bundled", "--out", out_dir()), "iters", slow=True)
error("flags", "dcgan --batch-size 0", example("dcgan_mnist", "--iters", "2", "--bundled", "--batch-size", "0", "--out", out_dir()),
      "batch", slow=True)
error("flags", "dcgan --lr nan", example("dcgan_mnist", *TINY, "--lr", "nan", "--out", out_dir()), "lr", slow=True)
error("flags", "dcgan --lr -1", example("dcgan_mnist", *TINY, "--lr", "-1", "--out", out_dir()), "lr", slow=True)
error("flags", "dcgan --nz 0", example("dcgan_mnist", "--iters", "2", "--bundled", "--nz", "0", "--out", out_dir()), "nz", slow=True)
error("flags", "dcgan --augment colour", example("dcgan_mnist", *TINY, "--augment", "colour", "--out", out_dir()), "colour",
      slow=True)
error("flags", "dcgan --ema 1.5", example("dcgan_mnist", *TINY, "--ema", "1.5", "--out", out_dir()), "ema", slow=True)
error("flags", "dcgan --resume of a folder with no checkpoint", example("dcgan_mnist", *TINY, "--resume", "--out", out_dir()),
      "checkpoint", slow=True)
error("flags", "dcgan --checkpoint-every -1", example("dcgan_mnist", *TINY, "--checkpoint-every", "-1", "--out", out_dir()),
      "checkpoint-every", slow=True)
_CK = out_dir()
either("flags", "dcgan --checkpoint-every 0 (0: the default, one epoch)",
       lambda: (example("dcgan_mnist", *TINY, "--checkpoint-every", "0", "--out", _CK)(),
                os.path.exists(os.path.join(_CK, "checkpoint.npz")))[1], is_true, "checkpoint-every", slow=True)

_RUN = os.path.join(_folder(), "run")


def _resume_shorter():
    p = run_example("dcgan_mnist", *TINY[:1], "4", *TINY[2:], "--out", _RUN)
    if p.returncode != 0:
        raise RuntimeError("corpus: the 4-iteration run failed: " + p.stderr[-500:])
    return example("dcgan_mnist", *TINY, "--resume", "--out", _RUN)()


error("flags", "dcgan --resume with --iters below the checkpoint's step", _resume_shorter, "iters", "4", slow=True)


def _tiny_run_then(fn):
    def go():
        if not os.path.exists(os.path.join(_RUN, "checkpoint.npz")):
            p = run_example("dcgan_mnist", *TINY, "--out", _RUN)
            if p.returncode != 0:
                raise RuntimeError("corpus: the tiny run failed: " + p.stderr[-500:])
        return fn()
    return go


error("flags", "sample.py --n 0", _tiny_run_then(lambda: example("sample", _RUN, "--n", "0")()), "--n|n", slow=True)
error("flags", "sample.py --n -4", _tiny_run_then(lambda: example("sample", _RUN, "--n", "-4")()), "-4|--n", slow=True)
error("flags", "sample.py --truncation -1", _tiny_run_then(lambda: example("sample", _RUN, "--truncation", "-1")()),
      "truncation", slow=True)
error("flags", "sample.py --label 3 on an unconditional G", _tiny_run_then(lambda: example("sample", _RUN, "--label", "3")()),
      "label|conditional", slow=True)
error("flags", "sample.py --model nonexistent", _tiny_run_then(lambda: example("sample", _RUN, "--model", "nosuch")()),
      "nosuch", slow=True)
error("flags", "sample.py on a folder with no checkpoint", example("sample", _folder()), "checkpoint", slow=True)
error("flags", "sample.py on a text file", lambda: example("sample", (lambda p: (open(p, "w").write("x"), p)[1])(_tmp("a.npz")))(),
      "a.npz", slow=True)
right("flags", "sample.py writes the grid it is asked for",
      _tiny_run_then(lambda: (example("sample", _RUN, "--n", "4", "--out", os.path.join(_RUN, "s.png"))(),
                              os.path.exists(os.path.join(_RUN, "s.png")))[1]), is_true, slow=True)
error("flags", "evaluate.py on a missing path", example("evaluate", "/nonexistent/run"), "/nonexistent/run", slow=True)


def _nan_in_real_batch():
    folder = _folder()
    images = (rng(0).random((64, 28, 28)) * 255).astype(np.float32)
    images[3, 4, 5] = np.nan
    data.write_idx(os.path.join(folder, "train-images-idx3-ubyte"), images)
    data.write_idx(os.path.join(folder, "train-labels-idx1-ubyte"), (np.arange(64) % 10).astype(np.uint8))
    return example("dcgan_mnist", "--iters", "3", "--no-progress", "--no-metrics", "--batch-size", "8", "--nz", "4",
                   "--ngf", "4", "--ndf", "4", "--samples", "4", "--data-dir", folder, "--out", out_dir())()


error("flags", "float32 IDX images (with a NaN) as --data-dir", _nan_in_real_batch, "train-images", "uint8",
      slow=True)


def _nan_real_train_step():
    G, D = gan.make_dcgan(nz=4, ngf=4, ndf=4)
    opt_g = optim.Adam(G.parameters(), lr=2e-4, betas=(0.5, 0.999))
    opt_d = optim.Adam(D.parameters(), lr=2e-4, betas=(0.5, 0.999))
    real = np.zeros((4, 1, 28, 28), np.float32)
    real[1, 0, 3, 3] = np.nan
    before = _state(D)
    try:
        gan.train_step(G, D, opt_g, opt_d, mg.tensor(real), mg.randn(4, 4))
    except Exception as e:
        if not _same_state(before, _state(D)):
            return "D was updated with the NaN batch"
        raise e
    return "accepted"


error("state", "train_step on a real batch holding a NaN: the data is blamed, nothing updated", _nan_real_train_step,
      "real batch", "nan")
error("flags", "wgan --gp with --iters -1", example("wgan_mnist", "--gp", "--iters", "-1", "--bundled", "--out", out_dir()),
      "iters", slow=True)
error("flags", "gan_toy2d --pack 0", example("gan_toy2d", "--pack", "0", "--steps", "2", "--out", out_dir()), "pack", slow=True)
error("flags", "gan_toy2d --data spiral", example("gan_toy2d", "--data", "spiral", "--steps", "2", "--out", out_dir()), "spiral",
      slow=True)
error("flags", "vae_mnist --nz -3", example("vae_mnist", "--nz", "-3", "--iters", "2", "--bundled", "--out", out_dir()), "nz",
      slow=True)


# ==================================================================================== runner
def classify(case):
    """(verdict, detail) for one case."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with np.errstate(all="ignore"):
                value = case.fn()
    except Exception as e:
        msg = f"{type(e).__name__}: {e}"
        if isinstance(e, INTERNAL) or type(e).__module__.startswith("numba"):
            return "crash", msg
        if isinstance(e, RuntimeError) and str(e).startswith("corpus:"):
            return "crash", msg   # the corpus's own set-up failed: counted against the run
        if case.expect == "right":
            return "unclear error", "refused: " + msg
        text = msg.lower()
        if all(any(alt.lower() in text for alt in w.split("|")) for w in case.words):
            return "clear error", msg
        return "unclear error", msg
    if case.expect == "error":
        return "silent wrong", f"no error; returned {_short(value)}"
    try:
        ok = case.check(value)
    except Exception as e:
        return "silent wrong", f"checker failed on {_short(value)}: {type(e).__name__}: {e}"
    return ("right", "") if ok else ("silent wrong", f"returned {_short(value)}")


def _short(v):
    try:
        if isinstance(v, mg.Tensor):
            return f"Tensor{arr(v).tolist()!r}"[:160] + f" {v.dtype}"
        return repr(v)[:160]
    except Exception:
        return type(v).__name__


VERDICTS = ("right", "clear error", "unclear error", "silent wrong", "crash")


def run(cases, verbose=False, out=sys.stdout):
    table = collections.defaultdict(collections.Counter)
    bad = []
    for case in cases:
        verdict, detail = classify(case)
        table[case.category][verdict] += 1
        if verdict not in ("right", "clear error"):
            bad.append({"category": case.category, "case": case.name, "verdict": verdict, "detail": detail[:300]})
        if verbose:
            print(f"  [{verdict:13s}] {case.category}: {case.name}: {detail[:200]}", file=out)
    return table, bad


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--fast", action="store_true", help="leave out the cases that start example processes")
    ap.add_argument("--category", help="only this category")
    ap.add_argument("--verbose", action="store_true", help="one line per case")
    args = ap.parse_args(argv)
    cases = [c for c in CASES if not (args.fast and c.slow) and (args.category in (None, c.category))]
    try:
        table, bad = run(cases, verbose=args.verbose)
    finally:
        cleanup()
    print(f"{len(cases)} cases")
    print("| category | cases | " + " | ".join(VERDICTS) + " |")
    print("| --- " * (len(VERDICTS) + 2) + "|")
    total = collections.Counter()
    for cat, counts in table.items():
        total.update(counts)
        print(f"| {cat} | {sum(counts.values())} | " + " | ".join(str(counts[v]) for v in VERDICTS) + " |")
    print(f"| all | {sum(total.values())} | " + " | ".join(str(total[v]) for v in VERDICTS) + " |")
    for b in bad:
        print(f"{b['verdict']}: {b['category']}: {b['case']}: {b['detail']}")
    print(json.dumps({"cases": len(cases), "verdicts": {v: total[v] for v in VERDICTS},
                      "by_category": {c: dict(n) for c, n in table.items()}, "not_right": bad}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
