"""Every op and its gradient, models, optimizers, checkpoints and random numbers on each device.

The ``device`` fixture (conftest.py) runs each test on "cpu" and on "cuda"; the "cuda" runs are
marked ``gpu`` and skipped with "no CUDA device (CuPy missing or no GPU)" where there is none.
A computation on the device, in float32 with its inputs moved by ``Tensor.to(device)``, is
compared with the same computation on the CPU in float64 from the same float32 values, with
float32 tolerances (rtol = atol = 2e-4, as docs/GPU.md states). On "cpu" that checks the float32
kernels against float64 and the ``.to()`` plumbing; on "cuda" it checks the GPU against the CPU.

The last test reads the source of minigan/functional/ to hold the architecture rule that makes
all this possible: op code asks ``backend.array_module`` for its array module and never calls
NumPy's array functions itself, so there is one copy of each op's logic for both devices.
"""
import ast
import inspect
from collections import namedtuple
from pathlib import Path

import numpy as np
import pytest

import minigan as mg
import minigan.functional as F
from minigan import backend, nn, optim
from minigan.gan.models import make_dcgan
from minigan.gan.train import restore_run_state, run_state, sample_noise, train_step
from minigan.io import load_checkpoint, save_checkpoint

RTOL = ATOL = 2e-4
NO_GPU = "no CUDA device (CuPy missing or no GPU)"
needs_cuda = [pytest.mark.gpu, pytest.mark.skipif(not backend.cupy_available(), reason=NO_GPU)]


def _host(t):
    # a Tensor's array, on the host (a CuPy array's own .data is a memory pointer, not values)
    return backend.as_numpy(t.data if isinstance(t, mg.Tensor) else t)


def assert_close(got, want, what=""):
    """``got`` (a Tensor or array on any device) equals the CPU reference ``want`` within float32
    tolerances."""
    np.testing.assert_allclose(_host(got).astype(np.float64), _host(want), rtol=RTOL, atol=ATOL,
                               err_msg=what)


def assert_on(t, device, dtype=np.float32, what=""):
    assert t.device == device, f"{what} is on {t.device}, expected {device}"
    assert t.dtype == dtype, f"{what} has dtype {t.dtype}, expected {np.dtype(dtype)}"


# ------------------------------------------------------------------------------------------------
# Inputs: float32 values, away from the points where an op has a kink or a tie
# ------------------------------------------------------------------------------------------------
class Const:
    """A float input that is moved to the device but gets no gradient (a target, a condition)."""

    def __init__(self, array):
        self.array = array


def normal(rng, *shape, scale=1.0, shift=0.0):
    return (rng.standard_normal(shape) * scale + shift).astype(np.float32)


def uniform(rng, low, high, *shape):
    return rng.uniform(low, high, shape).astype(np.float32)


def away(rng, *shape, gap=0.1):
    """|values| in [gap, 2]: relu, leaky_relu and abs are smooth there, and a divisor is safe."""
    return (rng.choice([-1.0, 1.0], shape) * rng.uniform(gap, 2.0, shape)).astype(np.float32)


def distinct(rng, *shape):
    """All different, odd multiples of 1/8: max/min have no ties and none sits on a clip bound
    (the bounds below are multiples of 1/4)."""
    n = int(np.prod(shape))
    return ((rng.permutation(n) - n // 2 + 0.5) * 0.25).reshape(shape).astype(np.float32)


def probabilities(rng, *shape):
    return uniform(rng, 0.0, 1.0, *shape)


# ------------------------------------------------------------------------------------------------
# The ops: name -> (the functional ops it exercises, function of tensors, inputs from a generator)
# ------------------------------------------------------------------------------------------------
Case = namedtuple("Case", "ops fn make")


class _Mirror:
    """A communicator of two ranks that hold the same data: allreduce-sum doubles the array
    (on its own device)."""
    size = 2

    def allreduce(self, array, op="sum"):
        assert op == "sum"
        return array + array

CASES = {
    # elementwise, with broadcasting
    "add": Case([F.add], F.add, lambda r: [normal(r, 3, 4), normal(r, 4)]),
    "sub": Case([F.sub], lambda a, b: a - b, lambda r: [normal(r, 2, 1, 3), normal(r, 4, 3)]),
    "mul": Case([F.mul], F.mul, lambda r: [normal(r, 3, 4), normal(r, 3, 1)]),
    "div": Case([F.div], F.div, lambda r: [normal(r, 2, 3), away(r, 2, 3, gap=0.5)]),
    "neg": Case([F.neg], F.neg, lambda r: [normal(r, 5)]),
    "numbers_on_either_side_follow_the_device": Case(
        [], lambda a: (2.0 * a - 1.0) / 4.0 + (1.5 - a) * 0.5 + 2.0 ** a + 4.0 / (a * a + 1.0),
        lambda r: [normal(r, 2, 3)]),
    "pow_tensor_exponent": Case([F.pow], F.pow,
                                lambda r: [uniform(r, 0.5, 2.0, 2, 3), normal(r, 3)]),
    "pow_number_exponent": Case([F.pow], lambda a: F.pow(a, 3) + a ** 0.5 + a ** -1.5,
                                lambda r: [uniform(r, 0.5, 2.0, 2, 3)]),
    "exp": Case([F.exp], F.exp, lambda r: [normal(r, 3, 2)]),
    "log": Case([F.log], F.log, lambda r: [uniform(r, 0.3, 3.0, 3, 2)]),
    "sqrt": Case([F.sqrt], F.sqrt, lambda r: [uniform(r, 0.3, 3.0, 3, 2)]),
    "abs": Case([F.abs], F.abs, lambda r: [away(r, 3, 2)]),
    "where_device_condition": Case([F.where], lambda c, a, b: F.where(c > 0, a, b),
                                   lambda r: [Const(normal(r, 3, 1)), normal(r, 3, 4),
                                              normal(r, 4)]),
    "where_number_branch": Case([F.where], lambda a: F.where(a > 0, a * a, 0.5),
                                lambda r: [away(r, 3, 4)]),
    "clip_and_clamp": Case([F.clip, F.clamp],
                           lambda a: F.clip(a, -0.5, 0.75) + F.clamp(a, min=0.25) * 2.0,
                           lambda r: [distinct(r, 3, 4)]),
    # matrix products
    "matmul": Case([F.matmul], F.matmul, lambda r: [normal(r, 3, 4), normal(r, 4, 2)]),
    "matmul_batched_broadcast": Case([F.matmul], lambda a, b: a @ b,
                                     lambda r: [normal(r, 2, 3, 4), normal(r, 4, 2)]),
    "matmul_vectors": Case([F.matmul], lambda v, m, w: F.matmul(F.matmul(v, m), w) + (m @ w).sum(),
                           lambda r: [normal(r, 3), normal(r, 3, 4), normal(r, 4)]),
    "linear": Case([F.linear], F.linear,
                   lambda r: [normal(r, 5, 3), normal(r, 4, 3), normal(r, 4)]),
    "linear_3d_no_bias": Case([F.linear], F.linear,
                              lambda r: [normal(r, 2, 3, 4), normal(r, 5, 4)]),
    # reductions
    "sum": Case([F.sum], lambda a: F.sum(a, axis=(0, 2), keepdims=True),
                lambda r: [normal(r, 2, 3, 4)]),
    "sum_all": Case([F.sum], lambda a: a.sum(), lambda r: [normal(r, 2, 3)]),
    "mean": Case([F.mean], lambda a: F.mean(a, axis=1), lambda r: [normal(r, 2, 3, 4)]),
    "max": Case([F.max], lambda a: F.max(a, axis=1), lambda r: [distinct(r, 3, 4)]),
    "max_all": Case([F.max], F.max, lambda r: [distinct(r, 5)]),
    "min": Case([F.min], lambda a: F.min(a, axis=(0, 2), keepdims=True),
                lambda r: [distinct(r, 2, 3, 2)]),
    "var": Case([F.var], lambda a: F.var(a, axis=0), lambda r: [normal(r, 4, 3)]),
    "var_biased": Case([F.var], lambda a: F.var(a, axis=1, unbiased=False),
                       lambda r: [normal(r, 4, 3)]),
    "std": Case([F.std], F.std, lambda r: [normal(r, 4, 3)]),
    # shapes
    "reshape_and_view": Case([F.reshape], lambda a: F.reshape(a, (4, 6)) * a.view(6, 4).T,
                             lambda r: [normal(r, 2, 3, 4)]),
    "flatten": Case([F.flatten], lambda a: F.flatten(a, 1), lambda r: [normal(r, 2, 3, 4)]),
    "squeeze_unsqueeze": Case([F.squeeze, F.unsqueeze],
                              lambda a: F.unsqueeze(F.squeeze(a), 0) * F.squeeze(a, 1),
                              lambda r: [normal(r, 3, 1, 4)]),
    "permute_transpose": Case([F.permute, F.transpose],
                              lambda a, b, c: F.permute(a, (2, 0, 1)) + F.transpose(b, 0, 2) + c.T,
                              lambda r: [normal(r, 2, 3, 4), normal(r, 3, 2, 4),
                                         normal(r, 3, 2, 4)]),
    "broadcast_to_and_expand": Case([F.broadcast_to],
                                    lambda a, b: F.broadcast_to(a, (2, 3, 4)) * b.expand(2, 3, 4),
                                    lambda r: [normal(r, 3, 1), normal(r, 1, 4)]),
    "sum_to": Case([F.sum_to], lambda a: F.sum_to(a, (3, 1)), lambda r: [normal(r, 2, 3, 4)]),
    "concat": Case([F.concat], lambda a, b, c: F.concat([a, b, c], dim=1),
                   lambda r: [normal(r, 2, 1, 3), normal(r, 2, 2, 3), normal(r, 2, 3, 3)]),
    "cat_last_dim": Case([F.cat], lambda a, b: F.cat([a, b], dim=-1),
                         lambda r: [normal(r, 2, 3), normal(r, 2, 1)]),
    "stack": Case([F.stack], lambda a, b, c: F.stack([a, b, c], dim=-1),
                  lambda r: [normal(r, 2, 3), normal(r, 2, 3), normal(r, 2, 3)]),
    "getitem_basic": Case([F.getitem],
                          lambda a: F.getitem(a, (slice(1, None), slice(None, None, 2)))
                          + a[0, 1:3],
                          lambda r: [normal(r, 3, 4, 2)]),
    "getitem_list_with_repeats": Case([F.getitem], lambda a: a[[0, 2, 0, 0]],
                                      lambda r: [normal(r, 3, 4)]),
    "getitem_device_index_array": Case([F.getitem], lambda a, i: a[i],
                                       lambda r: [normal(r, 3, 4), np.array([2, 0, 2, 1])]),
    "getitem_device_mask": Case([F.getitem], lambda a: a[a > 0], lambda r: [away(r, 3, 4)]),
    # activations
    "relu": Case([F.relu], F.relu, lambda r: [away(r, 3, 4)]),
    "leaky_relu_default": Case([F.leaky_relu], F.leaky_relu, lambda r: [away(r, 3, 4)]),
    "leaky_relu_0.2": Case([F.leaky_relu], lambda a: F.leaky_relu(a, 0.2),
                           lambda r: [away(r, 2, 3, 2, 2)]),
    "sigmoid": Case([F.sigmoid], F.sigmoid, lambda r: [normal(r, 3, 4, scale=3.0)]),
    "tanh": Case([F.tanh], F.tanh, lambda r: [normal(r, 3, 4)]),
    "softplus": Case([F.softplus], F.softplus, lambda r: [normal(r, 3, 4, scale=3.0)]),
    "log_sigmoid": Case([F.log_sigmoid], F.log_sigmoid, lambda r: [normal(r, 3, 4, scale=3.0)]),
    "log_softmax": Case([F.log_softmax], lambda a: F.log_softmax(a, dim=1),
                        lambda r: [normal(r, 3, 4)]),
    "softmax": Case([F.softmax], lambda a: F.softmax(a, dim=0), lambda r: [normal(r, 3, 4)]),
    # losses
    "binary_cross_entropy_with_logits": Case(
        [F.binary_cross_entropy_with_logits], F.binary_cross_entropy_with_logits,
        lambda r: [normal(r, 4, 3, scale=2.0), Const(probabilities(r, 4, 3))]),
    "binary_cross_entropy": Case(
        [F.binary_cross_entropy],
        lambda x, t: F.binary_cross_entropy(F.sigmoid(x), t, reduction="sum"),
        lambda r: [normal(r, 4, 3, scale=2.0), Const(probabilities(r, 4, 3))]),
    "mse_loss": Case([F.mse_loss], lambda x, t: F.mse_loss(x, t, reduction="none"),
                     lambda r: [normal(r, 4, 3), normal(r, 4, 3)]),
    "nll_loss_device_target": Case([F.nll_loss], lambda x, t: F.nll_loss(F.log_softmax(x, 1), t),
                                   lambda r: [normal(r, 4, 3), np.array([2, 0, 1, 1])]),
    "cross_entropy_host_target": Case(
        [F.cross_entropy],
        lambda x: F.cross_entropy(x, np.array([2, 0, 1, 1]), reduction="sum"),
        lambda r: [normal(r, 4, 3)]),
    # convolutions
    "conv2d_bias_stride_padding": Case(
        [F.conv2d], lambda x, w, b: F.conv2d(x, w, b, stride=2, padding=1),
        lambda r: [normal(r, 2, 3, 6, 5), normal(r, 4, 3, 3, 3, scale=0.5), normal(r, 4)]),
    "conv2d_rectangular": Case(
        [F.conv2d], lambda x, w: F.conv2d(x, w, stride=(1, 2), padding=(0, 1)),
        lambda r: [normal(r, 1, 2, 5, 6), normal(r, 3, 2, 2, 3)]),
    # a convolution + activation, fused without a bias (tests/test_conv_act.py)
    "conv2d_leaky_relu": Case(
        [F.conv2d_leaky_relu],
        lambda x, w: F.conv2d_leaky_relu(x, w, stride=2, padding=1, negative_slope=0.2),
        lambda r: [normal(r, 2, 3, 6, 5), normal(r, 4, 3, 3, 3, scale=0.5)]),
    "conv_transpose2d_bias_output_padding": Case(
        [F.conv_transpose2d],
        lambda x, w, b: F.conv_transpose2d(x, w, b, stride=2, padding=1, output_padding=1),
        lambda r: [normal(r, 2, 3, 3, 4), normal(r, 3, 2, 3, 3, scale=0.5), normal(r, 2)]),
    "conv_transpose2d_from_noise": Case(
        [F.conv_transpose2d], F.conv_transpose2d,
        lambda r: [normal(r, 2, 4, 1, 1), normal(r, 4, 3, 7, 7)]),
    # batch normalisation (running statistics: test_batch_norm_running_statistics_on_device)
    "batch_norm_train_affine": Case(
        [F.batch_norm], lambda x, w, b: F.batch_norm(x, None, None, w, b, training=True),
        lambda r: [normal(r, 3, 2, 4, 4, scale=2.0, shift=0.5), normal(r, 2, shift=1.0),
                   normal(r, 2)]),
    "batch_norm_train_2d_plain": Case(
        [F.batch_norm], lambda x: F.batch_norm(x, None, None, training=True),
        lambda r: [normal(r, 6, 3, scale=1.5)]),
    "batch_norm_eval": Case(
        [F.batch_norm], lambda x, w, b, m, v: F.batch_norm(x, m, v, w, b, training=False),
        lambda r: [normal(r, 3, 2, 3, 3), normal(r, 2, shift=1.0), normal(r, 2),
                   Const(normal(r, 2)), Const(uniform(r, 0.5, 2.0, 2))]),
    # collectives over a "world" of two identical ranks (_Mirror): synced batch norm is then
    # plain batch norm, forward and backward, and an allreduce-sum doubles
    "sync_batch_norm_two_mirrored_ranks": Case(
        [F.sync_batch_norm],
        lambda x, w, b: F.sync_batch_norm(x, None, None, w, b, training=True, comm=_Mirror()),
        lambda r: [normal(r, 3, 2, 4, 4, scale=2.0, shift=0.5), normal(r, 2, shift=1.0),
                   normal(r, 2)]),
    "all_reduce_sum_two_mirrored_ranks": Case(
        [F.all_reduce_sum], lambda x: F.all_reduce_sum(x, _Mirror()),
        lambda r: [normal(r, 3, 4)]),
    # batch norm + activation, fused in training mode (tests/test_norm_act.py)
    "batch_norm_leaky_relu_train": Case(
        [F.batch_norm_leaky_relu],
        lambda x, w, b: F.batch_norm_leaky_relu(x, None, None, w, b, training=True,
                                                negative_slope=0.2),
        lambda r: [normal(r, 3, 2, 4, 4, scale=2.0, shift=0.5), normal(r, 2, shift=1.0),
                   normal(r, 2)]),
    "batch_norm_relu_train_2d_plain": Case(
        [F.batch_norm_leaky_relu],
        lambda x: F.batch_norm_leaky_relu(x, None, None, training=True),
        lambda r: [normal(r, 6, 3, scale=1.5)]),
    # instance normalisation (the batch-norm kernels on the (1, N*C, H, W) view) and padding
    "instance_norm_affine": Case(
        [F.instance_norm], lambda x, w, b: F.instance_norm(x, weight=w, bias=b),
        lambda r: [normal(r, 3, 2, 4, 5, scale=2.0, shift=0.5), normal(r, 2, shift=1.0),
                   normal(r, 2)]),
    "pad_reflect": Case([F.pad], lambda x: F.pad(x, (2, 1, 3, 0), "reflect"),
                        lambda r: [normal(r, 2, 3, 4, 5)]),
    "pad_replicate_constant": Case(
        [F.pad], lambda x: F.pad(F.pad(x, (1, 2), "replicate"), (1, 1, 2, 0), value=0.5),
        lambda r: [normal(r, 2, 3, 4)]),
}

# functions of minigan.functional tested by a test of their own below instead of a Case
OWN_TESTS = {F.dropout: "test_dropout_on_device",
             F.batch_norm: "test_batch_norm_running_statistics_on_device"}


def _leaves(inputs, dtype, device):
    """Tensors on ``device``: float inputs as ``dtype``, trainable unless Const; integer arrays
    (class indices, index arrays) as they are."""
    out = []
    for a in inputs:
        fixed = isinstance(a, Const)
        a = np.asarray(a.array if fixed else a)
        trainable = a.dtype.kind == "f" and not fixed
        if a.dtype.kind == "f":
            a = a.astype(dtype)
        out.append(mg.tensor(a, requires_grad=trainable).to(device))
    return out


def _forward_backward(fn, inputs, dtype, device):
    """(output, gradients of the trainable inputs) with a fixed random upstream gradient."""
    leaves = _leaves(inputs, dtype, device)
    y = fn(*leaves)
    gy = np.asarray(np.random.default_rng(99).standard_normal(y.shape)).astype(dtype)
    y.backward(mg.tensor(gy).to(device))
    return y, [t.grad for t in leaves if t.requires_grad]


@pytest.mark.parametrize("name", sorted(CASES))
def test_op_forward_and_backward_on_device_match_cpu(name, device):
    case = CASES[name]
    inputs = case.make(np.random.default_rng(sum(map(ord, name))))
    y, grads = _forward_backward(case.fn, inputs, np.float32, device)
    y_ref, grads_ref = _forward_backward(case.fn, inputs, np.float64, "cpu")
    assert_on(y, device, what="the output")
    assert y.shape == y_ref.shape
    assert_close(y, y_ref, f"{name}: output")
    assert len(grads) == len(grads_ref) >= 1
    for i, (g, g_ref) in enumerate(zip(grads, grads_ref)):
        assert g is not None, f"{name}: input {i} got no gradient"
        assert_on(g, device, what=f"the gradient of input {i}")
        assert_close(g, g_ref, f"{name}: gradient of input {i}")


def test_every_functional_op_is_covered():
    """A new op in minigan.functional fails here until it has a Case (or a test of its own)."""
    public = {fn for name, fn in vars(F).items()
              if inspect.isfunction(fn) and not name.startswith("_")}
    covered = {op for case in CASES.values() for op in case.ops} | set(OWN_TESTS)
    missing = sorted(fn.__name__ for fn in public - covered)
    assert not missing, f"ops with no device test: {missing}"
    assert all(name in globals() for name in OWN_TESTS.values())


def test_dropout_on_device(device):
    p = 0.3
    x = mg.tensor(np.linspace(1.0, 2.0, 4000, dtype=np.float32), requires_grad=True).to(device)
    mg.manual_seed(5)
    y = F.dropout(x, p)
    assert_on(y, device, what="dropout's output")
    assert y.shape == x.shape
    kept = y.numpy() != 0
    assert abs((~kept).mean() - p) < 0.04          # 0.3 +- 5 standard deviations of the share
    np.testing.assert_allclose(y.numpy()[kept], x.numpy()[kept] / (1 - p), rtol=1e-6)
    gy = np.random.default_rng(3).standard_normal(x.shape).astype(np.float32)
    y.backward(mg.tensor(gy).to(device))
    assert_on(x.grad, device, what="dropout's input gradient")
    np.testing.assert_allclose(x.grad.numpy(), gy * kept / (1 - p), rtol=1e-6)
    mg.manual_seed(5)
    np.testing.assert_array_equal(F.dropout(x, p).numpy(), y.numpy())
    assert not np.array_equal(F.dropout(x, p).numpy(), y.numpy())
    assert F.dropout(x, p, training=False) is x


def test_batch_norm_running_statistics_on_device(device):
    rng = np.random.default_rng(8)
    x = normal(rng, 4, 3, 2, 2, scale=2.0, shift=1.0)
    m0, v0 = normal(rng, 3), uniform(rng, 0.5, 2.0, 3)
    results = {}
    for dev, dtype in ((device, np.float32), ("cpu", np.float64)):
        m, v = (mg.tensor(a.astype(dtype)).to(dev) for a in (m0, v0))
        y = F.batch_norm(mg.tensor(x.astype(dtype)).to(dev), m, v, training=True, momentum=0.3)
        results[dev, dtype] = (y, m, v)
    (y, m, v), (y_ref, m_ref, v_ref) = results[device, np.float32], results["cpu", np.float64]
    for got, want, what in ((y, y_ref, "output"), (m, m_ref, "running_mean"),
                            (v, v_ref, "running_var")):
        assert_on(got, device, what=what)
        assert_close(got, want, what)
    assert not np.allclose(m.numpy(), m0)            # the update really happened


# ------------------------------------------------------------------------------------------------
# Second derivatives: a WGAN-GP gradient penalty through a conv + leaky_relu critic
# ------------------------------------------------------------------------------------------------
def _gradient_penalty(dtype, device):
    rng = np.random.default_rng(7)
    real, fake = normal(rng, 3, 2, 6, 6), normal(rng, 3, 2, 6, 6)
    eps = uniform(rng, 0.0, 1.0, 3, 1, 1, 1)
    w1, b1, w2 = (mg.tensor(a.astype(dtype), requires_grad=True).to(device)
                  for a in (normal(rng, 4, 2, 3, 3, scale=0.5), normal(rng, 4),
                            normal(rng, 1, 4, 3, 3, scale=0.5)))
    x_hat = mg.tensor((eps * real + (1 - eps) * fake).astype(dtype), requires_grad=True).to(device)

    def critic(x):                                   # (3, 2, 6, 6) -> (3, 4, 3, 3) -> (3,)
        hidden = F.leaky_relu(F.conv2d(x, w1, b1, stride=2, padding=1), 0.2)
        return F.reshape(F.conv2d(hidden, w2), (-1,))

    g, = mg.grad(critic(x_hat).sum(), x_hat, create_graph=True)
    norms = F.sqrt(F.sum(g * g, axis=(1, 2, 3)) + 1e-12)
    penalty = 10.0 * ((norms - 1) ** 2).mean()
    penalty.backward()
    # grad_x f does not depend on b1 (leaky_relu's slope mask is piecewise constant), so only the
    # weights get a gradient
    assert b1.grad is None or not np.any(b1.grad.numpy())
    return penalty, g, [w1.grad, w2.grad]


def test_gradient_penalty_second_derivatives_on_device_match_cpu(device):
    penalty, g, grads = _gradient_penalty(np.float32, device)
    penalty_ref, g_ref, grads_ref = _gradient_penalty(np.float64, "cpu")
    assert_on(penalty, device, what="the penalty")
    assert_close(penalty, penalty_ref, "penalty")
    assert_close(g, g_ref, "input gradient")
    for name, got, want in zip(("w1", "w2"), grads, grads_ref):
        assert_on(got, device, what=f"the gradient of {name}")
        assert_close(got, want, f"second-order gradient of {name}")
        # the penalty reaches each parameter only through the gradient graph: zero would mean
        # create_graph recorded nothing
        assert np.abs(want.numpy()).max() > 1e-3


# ------------------------------------------------------------------------------------------------
# Tensors and modules moving between devices
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.int64, np.bool_])
def test_tensor_to_device_and_back_keeps_values_dtype_and_shape(device, dtype):
    a = (np.arange(12).reshape(3, 4) % 3).astype(dtype)
    t = mg.tensor(a)
    d = t.to(device)
    assert d.device == device and d.dtype == dtype and d.shape == (3, 4)
    assert d.to(device) is d
    back = d.to("cpu")
    assert isinstance(back.data, np.ndarray) and back.dtype == dtype
    np.testing.assert_array_equal(back.data, a)
    assert ("device='cuda'" in repr(d)) == (device == "cuda")


def test_tensor_to_keeps_a_leaf_trainable_and_constructors_take_a_device(device):
    x = mg.tensor([1.0, -2.0], requires_grad=True)
    y = x.to(device, dtype=np.float64)
    assert y.device == device and y.dtype == np.float64 and y.requires_grad and y.is_leaf
    (y * y).sum().backward()
    assert_on(y.grad, device, np.float64, "the gradient")
    np.testing.assert_array_equal(y.grad.numpy(), [2.0, -4.0])
    for t in (mg.tensor([1.0, 2.0], device=device), mg.zeros(2, 3, device=device),
              mg.ones((2, 3), device=device), mg.Tensor(np.ones(2, np.float32), device=device)):
        assert_on(t, device, what="a new tensor")
    assert mg.ones(2, device=device).cpu().device == "cpu"


def test_module_to_moves_parameters_buffers_and_gradients_in_place(device):
    rng = np.random.default_rng(4)
    net = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.LeakyReLU(0.2), nn.Linear(4, 1))
    params = list(net.parameters())
    net(mg.tensor(normal(rng, 5, 3))).sum().backward()
    grads = [p.grad.numpy() for p in params]
    state = net.state_dict()
    assert net.to(device) is net
    assert [id(p) for p in net.parameters()] == [id(p) for p in params]   # optimizers keep them
    for name, t in list(net.named_parameters()) + list(net.named_buffers()):
        assert t.device == device, f"{name} is on {t.device}"
    for p, g in zip(params, grads):
        assert p.grad.device == device
        np.testing.assert_array_equal(p.grad.numpy(), g)
    for name, value in net.state_dict().items():          # on the host, whatever the device
        assert isinstance(value, np.ndarray), name
        np.testing.assert_array_equal(value, state[name])
    net.to("cpu")
    assert all(t.device == "cpu" for t in list(net.parameters()) + list(net.buffers()))


@pytest.mark.parametrize("case", ["binary", "conv2d", "numpy_operand", "module"])
@pytest.mark.gpu
@pytest.mark.skipif(not backend.cupy_available(), reason=NO_GPU)
def test_mixing_devices_is_a_clear_error(case):
    a = mg.tensor(np.ones((1, 1, 2, 2), np.float32))
    b = a.to("cuda")
    calls = {
        "binary": [lambda: F.add(a, b), lambda: F.mul(b, a), lambda: F.concat([b, a])],
        "conv2d": [lambda: F.conv2d(b, a), lambda: F.conv_transpose2d(a, b)],
        "numpy_operand": [lambda: b + np.ones((1, 1, 2, 2), np.float32)],
        "module": [lambda: nn.Conv2d(1, 2, 2).to("cuda")(a)],
    }[case]
    for call in calls:
        with pytest.raises(RuntimeError, match="cpu and cuda|cuda and cpu"):
            call()


# ------------------------------------------------------------------------------------------------
# A tiny DCGAN: one training step, checkpoints across devices
# ------------------------------------------------------------------------------------------------
NZ = 8


def _tiny_dcgan(device, dtype, seed=0):
    """G and D with widths 4 (28x28 images), both initialised from one seed on the CPU, then
    moved; SGD with momentum so the optimizer has state to carry."""
    mg.manual_seed(seed)
    G, D = make_dcgan(nz=NZ, ngf=4, ndf=4)
    G.to(device, dtype)
    D.to(device, dtype)
    return (G, D, optim.SGD(G.parameters(), lr=0.05, momentum=0.5),
            optim.SGD(D.parameters(), lr=0.05, momentum=0.5))


def _batch(device, dtype, seed=3):
    rng = np.random.default_rng(seed)
    real = mg.tensor(rng.uniform(-1.0, 1.0, (4, 1, 28, 28)).astype(dtype)).to(device)
    z = mg.tensor(rng.standard_normal((4, NZ)).astype(dtype)).to(device)
    return real, z


def _assert_models_match(models, references, device):
    for model, ref in zip(models, references):
        own, theirs = dict(model.named_parameters()), dict(ref.named_parameters())
        for name, p in own.items():
            assert_on(p, device, what=name)
            assert_close(p, theirs[name], f"parameter {name}")
            if theirs[name].grad is not None:
                assert_on(p.grad, device, what=f"{name}.grad")
                assert_close(p.grad, theirs[name].grad, f"gradient of {name}")
        for (name, b), (_, b_ref) in zip(model.named_buffers(), ref.named_buffers()):
            assert b.device == device, name
            assert_close(b, b_ref, f"buffer {name}")


def test_dcgan_training_steps_on_device_match_cpu(device):
    G, D, opt_g, opt_d = _tiny_dcgan(device, np.float32)
    G_ref, D_ref, opt_g_ref, opt_d_ref = _tiny_dcgan("cpu", np.float64)
    real, z = _batch(device, np.float32)
    real_ref, z_ref = _batch("cpu", np.float64)
    for step in range(2):
        stats = train_step(G, D, opt_g, opt_d, real, z)
        stats_ref = train_step(G_ref, D_ref, opt_g_ref, opt_d_ref, real_ref, z_ref)
        np.testing.assert_allclose(stats, stats_ref, rtol=RTOL, atol=ATOL, err_msg=f"step {step}")
    _assert_models_match((G, D), (G_ref, D_ref), device)
    for opt in (opt_g, opt_d):
        for state in opt.state.values():
            assert backend.device_of(state["momentum_buffer"]) == device


def _checkpoint(path, G, D, opt_g, opt_d):
    save_checkpoint(path, run_state({"G": G, "D": D}, {"G": opt_g, "D": opt_d}, step=1))
    return load_checkpoint(path)


def _assert_same_state(model, other):
    mine, theirs = model.state_dict(), other.state_dict()
    assert list(mine) == list(theirs)
    for name in mine:
        np.testing.assert_array_equal(mine[name], theirs[name], err_msg=name)


def test_checkpoint_written_on_a_device_loads_on_the_cpu_and_back(device, tmp_path):
    G, D, opt_g, opt_d = _tiny_dcgan(device, np.float32)
    real, z = _batch(device, np.float32)
    train_step(G, D, opt_g, opt_d, real, z)
    state = _checkpoint(tmp_path / "device.npz", G, D, opt_g, opt_d)

    # onto the CPU, into models that start from other weights
    G2, D2, opt_g2, opt_d2 = _tiny_dcgan("cpu", np.float32, seed=1)
    assert not np.array_equal(G2.state_dict()["net.0.weight"], G.state_dict()["net.0.weight"])
    restore_run_state(state, {"G": G2, "D": D2}, {"G": opt_g2, "D": opt_d2})
    for model, copy in ((G, G2), (D, D2)):
        _assert_same_state(model, copy)
        assert all(p.device == "cpu" for p in copy.parameters())
    for opt in (opt_g2, opt_d2):
        assert all(isinstance(s["momentum_buffer"], np.ndarray) for s in opt.state.values())

    # the next step (which uses the momentum buffers) is the same on both
    stats = train_step(G, D, opt_g, opt_d, real, z)
    stats2 = train_step(G2, D2, opt_g2, opt_d2, real.to("cpu"), z.to("cpu"))
    np.testing.assert_allclose(stats, stats2, rtol=RTOL, atol=ATOL)
    _assert_models_match((G2, D2), (G, D), "cpu")

    # and back onto the device
    state = _checkpoint(tmp_path / "cpu.npz", G2, D2, opt_g2, opt_d2)
    G3, D3, opt_g3, opt_d3 = _tiny_dcgan(device, np.float32, seed=2)
    restore_run_state(state, {"G": G3, "D": D3}, {"G": opt_g3, "D": opt_d3})
    for model, copy in ((G2, G3), (D2, D3)):
        _assert_same_state(model, copy)
        assert all(p.device == device for p in copy.parameters())
    for opt in (opt_g3, opt_d3):
        assert all(backend.device_of(s["momentum_buffer"]) == device for s in opt.state.values())


# ------------------------------------------------------------------------------------------------
# Optimizers
# ------------------------------------------------------------------------------------------------
OPTIMIZERS = {
    "sgd": lambda ps: optim.SGD(ps, lr=0.1),
    "sgd_nesterov_weight_decay": lambda ps: optim.SGD(ps, lr=0.1, momentum=0.9, nesterov=True,
                                                      weight_decay=0.01),
    "adam_weight_decay": lambda ps: optim.Adam(ps, lr=0.01, betas=(0.5, 0.999), weight_decay=0.01),
    "rmsprop_centered_momentum": lambda ps: optim.RMSprop(ps, lr=0.01, centered=True, momentum=0.5),
}


def _optimize(make, dtype, device, steps=3):
    """Parameters after ``steps`` updates with fixed gradients (|g| >= 0.5: Adam and RMSprop
    divide by their size, which would magnify rounding near 0)."""
    rng = np.random.default_rng(21)
    start = [normal(rng, 3, 4), normal(rng, 4)]
    params = [mg.tensor(a.astype(dtype), requires_grad=True).to(device) for a in start]
    opt = make(params)
    for _ in range(steps):
        for p in params:
            p.grad = mg.tensor(away(rng, *p.shape, gap=0.5).astype(dtype)).to(device)
        opt.step()
    return start, params, opt


@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_optimizer_steps_on_device_match_cpu(name, device):
    start, params, opt = _optimize(OPTIMIZERS[name], np.float32, device)
    _, params_ref, _ = _optimize(OPTIMIZERS[name], np.float64, "cpu")
    for i, (p, p_ref, p0) in enumerate(zip(params, params_ref, start)):
        assert_on(p, device, what=f"parameter {i}")
        assert_close(p, p_ref, f"{name}: parameter {i}")
        assert not np.allclose(p.numpy(), p0)
    for state in opt.state.values():
        for key, value in state.items():
            if hasattr(value, "shape"):
                assert backend.device_of(value) == device, key
    for state in opt.state_dict()["state"].values():       # a checkpoint holds host arrays
        assert all(isinstance(v, np.ndarray) for v in state.values() if hasattr(v, "shape"))


# ------------------------------------------------------------------------------------------------
# Random numbers
# ------------------------------------------------------------------------------------------------
def test_manual_seed_makes_randn_and_rand_reproducible_on_each_device(device):
    mg.manual_seed(123)
    a, u = mg.randn(64, 8, device=device), mg.rand(1000, device=device)
    mg.manual_seed(123)
    b, v = mg.randn(64, 8, device=device), mg.rand(1000, device=device)
    for t in (a, u):
        assert_on(t, device, what="a random tensor")
    np.testing.assert_array_equal(a.numpy(), b.numpy())
    np.testing.assert_array_equal(u.numpy(), v.numpy())
    assert not np.array_equal(mg.randn(64, 8, device=device).numpy(), a.numpy())  # moves on
    mg.manual_seed(124)
    assert not np.array_equal(mg.randn(64, 8, device=device).numpy(), a.numpy())
    # what they claim to be: N(0, 1) (512 samples) and U[0, 1) (1000 samples), +- 5 std errors
    assert abs(a.numpy().mean()) < 0.25 and abs(a.numpy().std() - 1) < 0.2
    assert 0 <= u.numpy().min() and u.numpy().max() < 1 and abs(u.numpy().mean() - 0.5) < 0.05
    assert_on(mg.randn(3, dtype=np.float64, device=device), device, np.float64, "float64 randn")


def test_sample_noise_is_the_same_on_every_device(device):
    """Training noise is drawn on the CPU and moved (docs/GPU.md): one seed, one z everywhere."""
    mg.manual_seed(9)
    z = sample_noise(6, NZ, device=device)
    mg.manual_seed(9)
    z_cpu = sample_noise(6, NZ, device="cpu")
    assert_on(z, device, what="the noise")
    np.testing.assert_array_equal(z.numpy(), z_cpu.numpy())


# ------------------------------------------------------------------------------------------------
# The architecture rule: op code never calls NumPy's array functions directly
# ------------------------------------------------------------------------------------------------
FUNCTIONAL = Path(F.__file__).parent

# (file, enclosing function, call) -> why that call never meets a device array
HOST_ONLY_NUMPY = {
    ("elementwise.py", "_broadcast_shape", "np.broadcast_shapes"): "works on shape tuples",
    ("shape.py", "flatten", "np.prod"): "multiplies the entries of a shape tuple",
    ("shape.py", "Permute.backward", "np.argsort"): "inverts a permutation of axis numbers",
    ("shape.py", "_raw_index", "np.asarray"):
        "makes an index array from a Python list index; CuPy indexes with NumPy index arrays",
}


def _dotted(node):
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        base = _dotted(node.value)
        return base and f"{base}.{node.attr}"
    return None


def numpy_calls(source):
    """[(enclosing function, dotted call, line)] for every call of a name imported from numpy,
    and [line] of every ``from numpy import``."""
    tree = ast.parse(source)
    aliases = {alias.asname or alias.name for node in ast.walk(tree) if isinstance(node, ast.Import)
               for alias in node.names if alias.name == "numpy"}
    from_imports = [node.lineno for node in ast.walk(tree)
                    if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("numpy")]
    calls = []

    def visit(node, scope):
        for child in ast.iter_child_nodes(node):
            inner = scope
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                inner = scope + (child.name,)
            elif isinstance(child, ast.Call):
                name = _dotted(child.func)
                if name and name.split(".")[0] in aliases:
                    calls.append((".".join(scope), name, child.lineno))
            visit(child, inner)

    visit(tree, ())
    return calls, from_imports


def test_the_numpy_call_finder_finds_calls():
    source = ("import numpy as np\nfrom numpy import zeros\n"
              "class Op:\n    def forward(self, x):\n        return np.add.at(np.zeros(3), 0, x)\n")
    calls, from_imports = numpy_calls(source)
    assert sorted(calls) == [("Op.forward", "np.add.at", 5), ("Op.forward", "np.zeros", 5)]
    assert from_imports == [2]


def test_functional_code_calls_numpy_only_on_host_values():
    violations, used = [], set()
    for path in sorted(FUNCTIONAL.glob("*.py")):
        calls, from_imports = numpy_calls(path.read_text())
        violations += [f"{path.name}:{line}: from numpy import" for line in from_imports]
        for scope, name, line in calls:
            key = (path.name, scope, name)
            if key in HOST_ONLY_NUMPY:
                used.add(key)
            else:
                violations.append(f"{path.name}:{line}: {name} in {scope or 'module level'}")
    assert not violations, ("op code must use xp = backend.array_module(x), not numpy, where a "
                            "CuPy array can arrive:\n" + "\n".join(violations))
    assert used == set(HOST_ONLY_NUMPY), f"stale entries: {set(HOST_ONLY_NUMPY) - used}"
