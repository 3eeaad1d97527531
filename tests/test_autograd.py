"""The autograd engine: how gradients flow (broadcasting, accumulation, grad() vs backward()),
higher derivatives, graph lifetime (retain_graph, freed graphs, long chains), grad modes, dtypes,
devices, and the errors for misuse."""
import numpy as np
import pytest

import minigan as mg
import minigan.functional as F
from minigan import backend
from minigan.testing import gradcheck


def leaf(array):
    return mg.tensor(np.asarray(array, dtype=np.float64), requires_grad=True)


def const(array):
    return mg.tensor(np.asarray(array, dtype=np.float64))


# ------------------------------------------------------------------------------------------------
# How gradients flow
# ------------------------------------------------------------------------------------------------
def test_broadcast_gradients_are_summed_back_to_each_input_shape():
    a = leaf(np.arange(6.0).reshape(2, 3))
    row = leaf([1.0, 2.0, 3.0])          # (3,): broadcast over a missing leading axis
    col = leaf([[10.0], [20.0]])         # (2, 1): broadcast over a size-1 axis
    s = leaf(2.0)                        # () : broadcast everywhere
    ((a * row + col) * s).sum().backward()
    np.testing.assert_allclose(a.grad.data, np.broadcast_to(row.data * 2.0, (2, 3)))
    np.testing.assert_allclose(row.grad.data, a.data.sum(axis=0) * 2.0)
    np.testing.assert_allclose(col.grad.data, [[6.0], [6.0]])
    np.testing.assert_allclose(s.grad.data, (a.data * row.data + col.data).sum())
    assert (a.grad.shape, row.grad.shape, col.grad.shape, s.grad.shape) == \
        ((2, 3), (3,), (2, 1), ())


def test_a_tensor_used_twice_gets_both_contributions():
    x = leaf([1.0, -2.0])
    (x * x + x).sum().backward()
    np.testing.assert_allclose(x.grad.data, 2 * x.data + 1)


def test_gradients_accumulate_across_backward_calls():
    x = leaf([1.0, 2.0])
    (x * 3.0).sum().backward()
    (x * x).sum().backward()
    np.testing.assert_allclose(x.grad.data, 3.0 + 2 * x.data)
    x.grad.zero_()
    (x * 3.0).sum().backward()
    np.testing.assert_allclose(x.grad.data, [3.0, 3.0])


def test_each_leaf_owns_a_writable_gradient():
    """Optimizers and gradient clipping update .grad in place: two leaves must never share a
    gradient array, and none may be a read-only broadcast view."""
    a, b, c = leaf([1.0, 2.0]), leaf([3.0, 4.0]), leaf(5.0)
    (a + b + c).sum().backward()
    assert not np.shares_memory(a.grad.data, b.grad.data)
    for t in (a, b, c):
        assert t.grad.data.flags.writeable
    a.grad.data *= 0.5
    np.testing.assert_allclose(b.grad.data, [1.0, 1.0])
    c.grad.zero_()
    assert c.grad.item() == 0.0
    upstream = const([1.0, 1.0])
    y = a * 1.0
    y.backward(upstream)
    upstream.data[:] = 7.0             # the caller's array is not the leaf's gradient
    np.testing.assert_allclose(a.grad.data, [1.5, 1.5])


def test_multiple_outputs_and_explicit_upstream_gradients():
    x = leaf([1.0, 2.0])
    y1, y2 = x * 2.0, x * x
    mg.backward([y1, y2], [const([1.0, 0.0]), const([0.0, 1.0])])
    np.testing.assert_allclose(x.grad.data, [2.0, 4.0])


def test_grad_leaves_every_dot_grad_untouched():
    w = leaf([[0.5, -1.0], [2.0, 0.25]])
    b = leaf([0.1, -0.2])
    x = leaf([[1.0, 2.0]])
    b.grad = mg.tensor(np.array([7.0, 7.0]))    # an earlier gradient must survive grad()
    y = F.tanh(F.linear(x, w, b)).sum()
    gx, = mg.grad(y, x)
    assert w.grad is None and x.grad is None
    np.testing.assert_array_equal(b.grad.data, [7.0, 7.0])
    pre = x.data @ w.data.T + b.data
    np.testing.assert_allclose(gx.data, ((1 - np.tanh(pre) ** 2)) @ w.data)
    assert gx.creator is None and not gx.requires_grad


def test_grad_with_respect_to_several_inputs_and_an_intermediate():
    x, y = leaf(3.0), leaf(4.0)
    h = x * y
    z = h * h
    gx, gy, gh = mg.grad(z, [x, y, h])
    assert (gx.item(), gy.item(), gh.item()) == (2 * 12 * 4, 2 * 12 * 3, 2 * 12)


def test_create_graph_gives_higher_derivatives_of_known_functions():
    x = leaf([0.5, -1.0, 2.0])
    g, = mg.grad((x ** 3).sum(), x, create_graph=True)       # 3x^2
    np.testing.assert_allclose(g.data, 3 * x.data ** 2)
    assert g.requires_grad
    g2, = mg.grad(g.sum(), x, create_graph=True)             # 6x
    np.testing.assert_allclose(g2.data, 6 * x.data)
    g3, = mg.grad(g2.sum(), x)                               # 6
    np.testing.assert_allclose(g3.data, [6.0, 6.0, 6.0])
    assert x.grad is None

    a, b = leaf(1.5), leaf(-2.0)                             # mixed: d/db d/da (a^2 b) = 2a
    ga, = mg.grad(a * a * b, a, create_graph=True)
    gab, = mg.grad(ga, b)
    assert gab.item() == pytest.approx(3.0)

    t = leaf([0.3, -0.7])                                    # d2/dx2 tanh = -2 tanh (1 - tanh^2)
    gt, = mg.grad(F.tanh(t).sum(), t, create_graph=True)
    gt.sum().backward()
    th = np.tanh(t.data)
    np.testing.assert_allclose(t.grad.data, -2 * th * (1 - th ** 2))


def test_gradient_penalty_is_differentiable_with_respect_to_the_critic_parameters():
    """WGAN-GP: penalty = mean((|d critic / d x| - 1)^2), backpropagated into the weights."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((3, 2))
    w1, b1, w2 = rng.standard_normal((4, 2)), rng.standard_normal(4), rng.standard_normal((1, 4))

    def penalty(w1, b1, w2):
        with mg.enable_grad():      # gradcheck's finite differences run under no_grad
            inp = const(x).requires_grad_()
            out = F.linear(F.tanh(F.linear(inp, w1, b1)), w2).sum()
            g, = mg.grad(out, inp, create_graph=True)
            return ((g * g).sum(axis=1).sqrt() - 1.0).pow(2).mean()

    assert gradcheck(penalty, [leaf(w1), leaf(b1), leaf(w2)])
    params = [leaf(w1), leaf(b1), leaf(w2)]
    penalty(*params).backward()
    assert all(p.grad is not None and np.isfinite(p.grad.data).all() for p in params)


def test_allow_unused():
    x, unused = leaf(2.0), leaf(5.0)
    y = x * x
    with pytest.raises(RuntimeError, match="allow_unused"):
        mg.grad(y, [x, unused], retain_graph=True)
    gx, gu = mg.grad(y, [x, unused], allow_unused=True)
    assert gx.item() == 4.0 and gu is None


def test_grad_needs_inputs_that_require_grad_and_outputs_with_a_graph():
    x = leaf(1.0)
    with pytest.raises(RuntimeError, match="input 0 .* does not require grad"):
        mg.grad(x * 2.0, const(1.0))
    with pytest.raises(RuntimeError, match="does not require grad"):
        (const([1.0]) * 2.0).sum().backward()


# ------------------------------------------------------------------------------------------------
# Grad modes and detach
# ------------------------------------------------------------------------------------------------
def test_no_grad_records_nothing_and_restores_the_mode():
    x = leaf([1.0, 2.0])
    with mg.no_grad():
        assert not mg.is_grad_enabled()
        y = (x * 2.0).sum()
        with mg.enable_grad():
            z = (x * 2.0).sum()
    assert mg.is_grad_enabled()
    assert y.creator is None and not y.requires_grad
    assert z.requires_grad and z.creator is not None
    with pytest.raises(RuntimeError, match="no_grad"):
        y.backward()
    with pytest.raises(ZeroDivisionError):
        with mg.no_grad():
            1 / 0
    assert mg.is_grad_enabled()
    with mg.set_grad_enabled(False):
        assert (x * 1.0).creator is None


def test_detach_shares_data_and_stops_the_gradient():
    x = leaf([1.0, 3.0])
    d = x.detach()
    assert d.data is x.data and not d.requires_grad and d.creator is None
    (x * x.detach()).sum().backward()       # d/dx (x * c) = c, not 2x
    np.testing.assert_allclose(x.grad.data, x.data)


# ------------------------------------------------------------------------------------------------
# Graph lifetime
# ------------------------------------------------------------------------------------------------
def test_a_10000_op_chain_backpropagates_without_recursion_error():
    x = leaf([1.0, 2.0])
    y = x
    for i in range(10_000):
        y = y * 1.0001 if i % 2 else y + 0.5
    y.sum().backward()
    np.testing.assert_allclose(x.grad.data, 1.0001 ** 5000, rtol=1e-9)
    del y          # freeing the long graph must not overflow either


def test_backward_twice_through_a_freed_graph_raises_and_retain_graph_allows_it():
    x = leaf([1.0, 2.0])
    y = (x * x).sum()
    y.backward()
    with pytest.raises(RuntimeError, match="second time.*retain_graph=True"):
        y.backward()
    z = (x * x).sum()
    x.grad = None
    z.backward(retain_graph=True)
    z.backward()
    np.testing.assert_allclose(x.grad.data, 4 * x.data)
    w = (x * x).sum()
    mg.grad(w, x)
    with pytest.raises(RuntimeError, match="second time"):
        mg.grad(w, x)


def test_backward_on_a_non_scalar_needs_a_gradient():
    x = leaf([1.0, 2.0])
    y = x * 2.0
    with pytest.raises(RuntimeError, match=r"scalar outputs.*\(2,\)"):
        y.backward()
    with pytest.raises(ValueError, match=r"\(3,\).*\(2,\)"):
        y.backward(const([1.0, 1.0, 1.0]))
    y.backward(const([1.0, -1.0]))
    np.testing.assert_allclose(x.grad.data, [2.0, -2.0])


# ------------------------------------------------------------------------------------------------
# Dtypes
# ------------------------------------------------------------------------------------------------
def test_float64_is_kept_end_to_end():
    x = leaf([[0.5, -1.5], [2.0, 0.25]])
    w = leaf([[1.0, 2.0], [3.0, 4.0]])
    y = F.log_softmax(F.tanh(F.linear(x, w) * 2 + 1) / 3, dim=1)
    loss = F.mse_loss(F.sigmoid(y).exp(), const(np.zeros((2, 2)))) + F.relu(x).mean() + x.var()
    assert loss.dtype == np.float64
    loss.backward()
    assert x.grad.dtype == np.float64 and w.grad.dtype == np.float64


def test_python_numbers_and_lists_default_to_float32_and_keep_it():
    x = mg.tensor([1.0, 2.0], requires_grad=True)
    assert x.dtype == np.float32
    for y in (x * 2, 2 * x, x + 1.5, 1.5 - x, x / 3, 3 / x, x ** 2, 2 ** x, x * np.float64(2.0),
              F.where(x > 1, x, 0.0), F.clip(x, 0.0, 1.5)):
        assert y.dtype == np.float32, y
    (x * 2.5).sum().backward()
    assert x.grad.dtype == np.float32
    assert mg.tensor([1, 2]).dtype.kind == "i"
    assert mg.tensor(np.arange(3.0)).dtype == np.float64      # arrays keep their dtype
    mg.set_default_dtype(np.float64)                           # the fixture restores it
    assert mg.tensor([1.0]).dtype == np.float64
    with pytest.raises(TypeError, match="float32 or float64"):
        mg.set_default_dtype(np.int32)


def test_reduction_results_are_arrays_that_keep_their_dtype():
    x = leaf([1.0, 2.0])
    s = x.sum()
    assert isinstance(s.data, np.ndarray) and s.data.shape == ()
    assert mg.tensor(s).dtype == np.float64
    s.detach().zero_()
    assert s.item() == 0.0


def test_integer_tensors_cannot_require_grad():
    with pytest.raises(TypeError, match="int64"):
        mg.tensor([1, 2], requires_grad=True)
    with pytest.raises(TypeError, match="floating-point"):
        mg.tensor(np.arange(3)).requires_grad_()


# ------------------------------------------------------------------------------------------------
# Leaving the graph, devices
# ------------------------------------------------------------------------------------------------
def test_item_numpy_tolist_and_to():
    x = leaf([[1.5, 2.5]])
    assert x[0, 1].item() == 2.5
    assert isinstance(x.numpy(), np.ndarray) and x.numpy().shape == (1, 2)
    assert x.tolist() == [[1.5, 2.5]]
    with pytest.raises(ValueError, match=r"one element.*\(1, 2\)"):
        x.item()
    assert x.to("cpu") is x and x.cpu() is x and x.device == "cpu"
    y = x.float()
    assert y.dtype == np.float32 and y.requires_grad and y.is_leaf
    assert x.double() is x


def test_truth_value_of_a_tensor():
    assert bool(const([2.0]) > 1.0)
    assert not bool(const(0.0))
    with pytest.raises(ValueError, match="ambiguous"):
        bool(const([1.0, 2.0]) == const([1.0, 2.0]))


def test_mixing_devices_raises_an_error_naming_both(monkeypatch):
    a, b = leaf([[1.0, 2.0], [3.0, 4.0]]), leaf([[5.0, 6.0], [7.0, 8.0]])

    class OtherArray(np.ndarray):   # another array type, as a CuPy array is: Function.apply
        pass                        # asks for devices only where the array types differ
    b.data = b.data.view(OtherArray)
    real_device_of = backend.device_of
    monkeypatch.setattr(backend, "device_of",
                        lambda array: "cuda" if array is b.data else real_device_of(array))
    assert b.device == "cuda" and a.device == "cpu"
    for op in (F.add, F.mul, F.matmul, lambda p, q: F.concat([p, q])):
        with pytest.raises(RuntimeError, match="cpu and cuda"):
            op(a, b)


@pytest.mark.skipif(backend.cupy_available(), reason="CuPy and a GPU are present")
def test_moving_to_cuda_without_cupy_is_a_clear_error():
    x = leaf([1.0])
    with pytest.raises(RuntimeError, match="CuPy"):
        x.to("cuda")
    with pytest.raises(RuntimeError, match="CuPy"):
        mg.tensor([1.0], device="cuda")
    with pytest.raises(ValueError, match="'tpu'"):
        x.to("tpu")


def test_to_inside_a_graph_passes_the_gradient_back_in_the_source_dtype():
    x = mg.tensor(np.array([1.0, -2.0, 3.0]), requires_grad=True, dtype=np.float64)
    y = (x * x).to(dtype=np.float32)
    assert y.dtype == np.float32 and y.creator is not None
    (y * 3).sum().backward()
    assert x.grad.dtype == np.float64
    np.testing.assert_allclose(x.grad.numpy(), 6 * x.numpy())


def test_to_on_a_leaf_gives_a_new_leaf_that_requires_grad():
    x = mg.tensor(np.ones(2), requires_grad=True, dtype=np.float64)
    y = x.to(dtype=np.float32)
    assert y.is_leaf and y.requires_grad and y.dtype == np.float32
