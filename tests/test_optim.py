"""SGD, Adam and RMSprop against updates computed here in NumPy from the published formulas
(PyTorch's semantics), over three steps with fixed gradients; defaults; state round trips; errors.

Gradients are set by hand on float64 parameters, so each expected value is a few lines of
arithmetic that can be read against the paper / PyTorch documentation.
"""
import numpy as np
import pytest

from minigan import optim
from minigan.autograd import Tensor
from minigan.nn import Parameter

P0 = np.array([[0.5, -1.5, 2.0], [0.0, 0.25, -0.75]])
GRADS = [np.array([[0.1, -0.2, 0.3], [1.0, 0.0, -0.5]]),
         np.array([[-0.3, 0.4, 0.1], [0.2, -0.1, 0.05]]),
         np.array([[0.7, 0.2, -0.6], [-0.4, 0.3, 0.0]])]


def run(opt_class, grads=GRADS, p0=P0, **hyper):
    """Parameter values after each optimizer step with the given gradients."""
    p = Parameter(p0.copy())
    opt = opt_class([p], **hyper)
    values = []
    for g in grads:
        p.grad = Tensor(g.copy())
        opt.step()
        values.append(p.numpy().copy())
    return values


def check(actual, expected):
    assert len(actual) == len(expected)
    for t, (a, e) in enumerate(zip(actual, expected)):
        np.testing.assert_allclose(a, e, rtol=1e-12, atol=1e-14, err_msg=f"step {t + 1}")


# ------------------------------------------------------------------------------------------------
# References (PyTorch documentation's pseudo-code)
# ------------------------------------------------------------------------------------------------
def ref_sgd(lr, momentum=0.0, dampening=0.0, weight_decay=0.0, nesterov=False):
    p, buf, out = P0.copy(), None, []
    for g in GRADS:
        g = g + weight_decay * p
        if momentum:
            buf = g.copy() if buf is None else momentum * buf + (1 - dampening) * g
            g = g + momentum * buf if nesterov else buf
        p = p - lr * g
        out.append(p)
    return out


def ref_adam(lr, betas, eps, weight_decay=0.0):
    b1, b2 = betas
    p, m, v, out = P0.copy(), np.zeros_like(P0), np.zeros_like(P0), []
    for t, g in enumerate(GRADS, start=1):
        g = g + weight_decay * p
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g * g
        m_hat = m / (1 - b1 ** t)
        v_hat = v / (1 - b2 ** t)
        p = p - lr * m_hat / (np.sqrt(v_hat) + eps)
        out.append(p)
    return out


def ref_rmsprop(lr, alpha, eps, weight_decay=0.0, momentum=0.0, centered=False):
    p, out = P0.copy(), []
    v, g_avg, buf = np.zeros_like(P0), np.zeros_like(P0), np.zeros_like(P0)
    for g in GRADS:
        g = g + weight_decay * p
        v = alpha * v + (1 - alpha) * g * g
        if centered:
            g_avg = alpha * g_avg + (1 - alpha) * g
            denom = np.sqrt(v - g_avg * g_avg) + eps
        else:
            denom = np.sqrt(v) + eps
        if momentum > 0:
            buf = momentum * buf + g / denom
            p = p - lr * buf
        else:
            p = p - lr * g / denom
        out.append(p)
    return out


# ------------------------------------------------------------------------------------------------
# SGD
# ------------------------------------------------------------------------------------------------
def test_sgd_plain_first_step_by_hand():
    (p1,) = run(optim.SGD, GRADS[:1], lr=0.1)
    np.testing.assert_allclose(p1, [[0.49, -1.48, 1.97], [-0.1, 0.25, -0.7]], rtol=1e-14)


@pytest.mark.parametrize("hyper", [
    dict(lr=0.1),
    dict(lr=0.1, momentum=0.9),
    dict(lr=0.05, momentum=0.8, dampening=0.3),
    dict(lr=0.1, momentum=0.9, nesterov=True),
    dict(lr=0.1, weight_decay=0.01),
    dict(lr=0.1, momentum=0.5, weight_decay=0.1, nesterov=True),
])
def test_sgd_matches_reference(hyper):
    check(run(optim.SGD, **hyper), ref_sgd(**hyper))


def test_sgd_momentum_first_step_takes_the_gradient_undamped():
    """PyTorch starts the buffer at g itself (not (1 - dampening) g)."""
    (p1,) = run(optim.SGD, GRADS[:1], lr=1.0, momentum=0.9, dampening=0.5)
    np.testing.assert_allclose(p1, P0 - GRADS[0], rtol=1e-14)


# ------------------------------------------------------------------------------------------------
# Adam
# ------------------------------------------------------------------------------------------------
def test_adam_first_step_is_lr_times_sign():
    """With bias correction, step 1 is m_hat / sqrt(v_hat) = g / |g| (eps aside)."""
    g = np.array([[0.1, -0.2, 0.3], [1.0, -3.0, -0.5]])
    (p1,) = run(optim.Adam, [g], lr=0.01)
    np.testing.assert_allclose(p1, P0 - 0.01 * np.sign(g), rtol=1e-6)


@pytest.mark.parametrize("hyper", [
    dict(lr=1e-3, betas=(0.9, 0.999), eps=1e-8),
    dict(lr=0.1, betas=(0.5, 0.999), eps=1e-8),            # the DCGAN setting
    dict(lr=0.05, betas=(0.0, 0.9), eps=1e-3),
    dict(lr=0.05, betas=(0.8, 0.95), eps=0.5),              # large eps: its place matters
    dict(lr=0.05, betas=(0.9, 0.99), eps=1e-8, weight_decay=0.1),
])
def test_adam_matches_reference(hyper):
    check(run(optim.Adam, **hyper), ref_adam(**hyper))


# ------------------------------------------------------------------------------------------------
# RMSprop
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("hyper", [
    dict(lr=0.01, alpha=0.99, eps=1e-8),
    dict(lr=0.05, alpha=0.9, eps=1e-3),
    dict(lr=0.05, alpha=0.9, eps=1e-8, centered=True),
    dict(lr=0.05, alpha=0.9, eps=1e-8, momentum=0.7),
    dict(lr=0.05, alpha=0.8, eps=1e-4, momentum=0.5, centered=True, weight_decay=0.2),
])
def test_rmsprop_matches_reference(hyper):
    check(run(optim.RMSprop, **hyper), ref_rmsprop(**hyper))


def test_rmsprop_first_step_by_hand():
    """v = (1 - alpha) g^2, so step 1 moves by lr * g / (sqrt(1 - alpha) |g|)."""
    g = np.array([[0.1, -0.2, 0.3], [1.0, -3.0, -0.5]])
    (p1,) = run(optim.RMSprop, [g], lr=0.01, alpha=0.75, eps=0.0)
    np.testing.assert_allclose(p1, P0 - 0.01 * np.sign(g) / 0.5, rtol=1e-12)


# ------------------------------------------------------------------------------------------------
# Defaults, bookkeeping
# ------------------------------------------------------------------------------------------------
def _param():
    return Parameter(P0.copy())


def test_defaults_equal_pytorchs():
    sgd = optim.SGD([_param()]).param_groups[0]
    assert (sgd["lr"], sgd["momentum"], sgd["dampening"], sgd["weight_decay"],
            sgd["nesterov"]) == (1e-3, 0, 0, 0, False)
    adam = optim.Adam([_param()]).param_groups[0]
    assert (adam["lr"], tuple(adam["betas"]), adam["eps"], adam["weight_decay"]) == \
        (1e-3, (0.9, 0.999), 1e-8, 0)
    rms = optim.RMSprop([_param()]).param_groups[0]
    assert (rms["lr"], rms["alpha"], rms["eps"], rms["weight_decay"], rms["momentum"],
            rms["centered"]) == (1e-2, 0.99, 1e-8, 0, 0, False)


def test_defaults_are_used_by_step():
    check(run(optim.Adam), ref_adam(1e-3, (0.9, 0.999), 1e-8))
    check(run(optim.RMSprop), ref_rmsprop(1e-2, 0.99, 1e-8))
    check(run(optim.SGD), ref_sgd(1e-3))


def test_zero_grad_clears_every_gradient():
    a, b = _param(), _param()
    opt = optim.SGD([a, b], lr=0.1)
    a.grad, b.grad = Tensor(GRADS[0]), Tensor(GRADS[1])
    opt.zero_grad()
    assert a.grad is None and b.grad is None


@pytest.mark.parametrize("opt_class", [optim.SGD, optim.Adam, optim.RMSprop])
def test_parameters_without_gradient_are_skipped(opt_class):
    a, b = _param(), _param()
    opt = opt_class([a, b], lr=0.1, weight_decay=0.1)      # decay would move b if it were visited
    for g in GRADS:
        a.grad = Tensor(g)
        opt.step()
    np.testing.assert_array_equal(b.numpy(), P0)
    assert id(b) not in opt.state
    assert not np.allclose(a.numpy(), P0)


def test_parameter_groups_with_their_own_lr():
    a, b = _param(), _param()
    opt = optim.SGD([{"params": [a]}, {"params": [b], "lr": 1.0}], lr=0.1)
    a.grad, b.grad = Tensor(GRADS[0]), Tensor(GRADS[0])
    opt.step()
    np.testing.assert_allclose(a.numpy(), P0 - 0.1 * GRADS[0])
    np.testing.assert_allclose(b.numpy(), P0 - 1.0 * GRADS[0])


def test_updates_in_place_keep_the_parameter_array():
    p = _param()
    array = p.data
    opt = optim.Adam([p], lr=0.1)
    p.grad = Tensor(GRADS[0])
    opt.step()
    assert p.data is array


# ------------------------------------------------------------------------------------------------
# state_dict / load_state_dict
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("opt_class, hyper", [
    (optim.SGD, dict(lr=0.1, momentum=0.9, nesterov=True)),
    (optim.Adam, dict(lr=0.05, betas=(0.5, 0.9))),
    (optim.RMSprop, dict(lr=0.05, momentum=0.5, centered=True)),
])
def test_state_dict_round_trip_gives_identical_steps(opt_class, hyper):
    a = [_param(), Parameter(np.array([1.0, -2.0]))]
    grads_b = [np.array([0.3, -0.1]), np.array([-0.2, 0.4]), np.array([0.5, 0.5])]
    opt_a = opt_class(a, **hyper)
    for g, gb in zip(GRADS[:2], grads_b[:2]):
        a[0].grad, a[1].grad = Tensor(g), Tensor(gb)
        opt_a.step()
    state = opt_a.state_dict()

    # a fresh optimizer, with other hyper-parameters, on copies of the parameters
    b = [Parameter(p.numpy().copy()) for p in a]
    opt_b = opt_class(b, lr=123.0)
    opt_b.load_state_dict(state)
    assert opt_b.param_groups[0]["lr"] == hyper["lr"]

    for opt, params in ((opt_a, a), (opt_b, b)):
        params[0].grad, params[1].grad = Tensor(GRADS[2]), Tensor(grads_b[2])
        opt.step()
    for pa, pb in zip(a, b):
        np.testing.assert_array_equal(pa.numpy(), pb.numpy())
    assert opt_b.state[id(b[0])]["step"] == 3


def test_state_dict_is_a_copy():
    p = _param()
    opt = optim.Adam([p], lr=0.1)
    p.grad = Tensor(GRADS[0])
    opt.step()
    state = opt.state_dict()
    saved = state["state"][0]["exp_avg"].copy()
    opt.step()
    np.testing.assert_array_equal(state["state"][0]["exp_avg"], saved)
    assert state["param_groups"][0]["params"] == [0]


def test_loading_changes_nothing_the_saving_optimizer_holds():
    p = _param()
    opt = optim.SGD([p], lr=0.1, momentum=0.9)
    p.grad = Tensor(GRADS[0])
    opt.step()
    state = opt.state_dict()
    q = _param()
    other = optim.SGD([q], lr=0.1, momentum=0.9)
    other.load_state_dict(state)
    other.state[id(q)]["momentum_buffer"][...] = 0
    assert np.any(opt.state[id(p)]["momentum_buffer"] != 0)


# ------------------------------------------------------------------------------------------------
# Errors
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("opt_class", [optim.SGD, optim.Adam, optim.RMSprop])
def test_empty_parameter_list(opt_class):
    with pytest.raises(ValueError, match=f"{opt_class.__name__} got an empty parameter list"):
        opt_class([])
    with pytest.raises(ValueError, match="empty parameter list"):
        opt_class(iter([]))


def test_parameter_that_does_not_require_grad():
    with pytest.raises(ValueError, match=r"shape \(2, 3\) does not require grad"):
        optim.SGD([Parameter(P0.copy(), requires_grad=False)])


def test_invalid_hyper_parameters():
    with pytest.raises(ValueError, match="invalid lr"):
        optim.SGD([_param()], lr=-1)
    with pytest.raises(ValueError, match="Nesterov momentum needs momentum > 0"):
        optim.SGD([_param()], lr=0.1, nesterov=True)
    with pytest.raises(ValueError, match="betas"):
        optim.Adam([_param()], betas=(1.0, 0.999))
    with pytest.raises(ValueError, match="alpha"):
        optim.RMSprop([_param()], alpha=1.5)


def test_load_state_dict_with_other_parameter_count():
    opt = optim.Adam([_param(), _param()], lr=0.1)
    state = opt.state_dict()
    with pytest.raises(ValueError, match="different number of parameter groups or parameters"):
        optim.Adam([_param()]).load_state_dict(state)


def test_load_state_dict_with_other_parameter_shape():
    p = _param()
    opt = optim.Adam([p], lr=0.1)
    p.grad = Tensor(GRADS[0])
    opt.step()
    other = optim.Adam([Parameter(np.zeros(6))])
    with pytest.raises(ValueError, match=r"exp_avg.*shape \(2, 3\).*\(6,\)"):
        other.load_state_dict(opt.state_dict())


def test_gradient_of_wrong_shape():
    p = _param()
    opt = optim.SGD([p], lr=0.1)
    p.grad = Tensor(np.zeros(6))
    with pytest.raises(RuntimeError, match=r"gradient of shape \(6,\) on cpu for a parameter of "
                                           r"shape \(2, 3\)"):
        opt.step()


# ------------------------------------------------------------------------------------------------
# Adam's one-pass CPU kernel (minigan.kernels.adam_step) against the NumPy code it replaces
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("weight_decay", [0.0, 0.01])
def test_adam_kernel_gives_the_numpy_codes_numbers_bit_for_bit(monkeypatch, dtype, weight_decay):
    """Same parameters, gradients and hyper-parameters through the kernel and through the NumPy
    code (the kernel switched off), three steps: identical to the last bit. 300 000 elements,
    so that the kernel shares the work over the cores where there are several."""
    rng = np.random.default_rng(3)
    p0 = rng.standard_normal((600, 500)).astype(dtype)
    grads = [rng.standard_normal(p0.shape).astype(dtype) for _ in range(3)]
    hyper = dict(lr=2e-4, betas=(0.5, 0.999), eps=1e-8, weight_decay=weight_decay)
    one_pass = run(optim.Adam, grads, p0, **hyper)
    monkeypatch.setattr(optim, "_one_pass_fits", lambda *arrays: False)
    numpy_code = run(optim.Adam, grads, p0, **hyper)
    for t, (a, b) in enumerate(zip(one_pass, numpy_code)):
        assert a.dtype == dtype
        np.testing.assert_array_equal(a, b, err_msg=f"step {t + 1}")
    assert not np.array_equal(one_pass[0], p0)


def test_adam_kernel_refuses_what_it_cannot_update_in_place():
    from minigan import kernels
    p = np.zeros((4, 3), np.float32)
    ok = [np.zeros_like(p) for _ in range(3)]
    hyper = (1e-3, 0.9, 0.999, 1e-8, 0.0)
    with pytest.raises(ValueError, match=r"exp_avg has shape \(3, 4\)"):
        kernels.adam_step(p, ok[0], np.zeros((3, 4), np.float32), ok[2], *hyper, 1)
    with pytest.raises(ValueError, match="p .* C-contiguous"):
        kernels.adam_step(np.zeros((3, 4), np.float32).T, *ok, *hyper, 1)
    with pytest.raises(TypeError, match="dtype mismatch"):
        kernels.adam_step(p, ok[0].astype(np.float64), ok[1], ok[2], *hyper, 1)
    with pytest.raises(ValueError, match="step must be >= 1"):
        kernels.adam_step(p, *ok, *hyper, 0)


def test_adam_keeps_a_transposed_parameter_on_the_numpy_code():
    """A parameter array that is a transposed view cannot be updated by the flat kernel; the
    optimizer then takes the NumPy code, with the reference's numbers."""
    p = Parameter(P0.copy())
    p.data = np.ascontiguousarray(P0.T).T   # P0's values, Fortran order
    assert not p.data.flags.c_contiguous
    opt = optim.Adam([p], lr=0.05, betas=(0.9, 0.99), eps=1e-8)
    values = []
    for g in GRADS:
        p.grad = Tensor(g.copy())
        opt.step()
        values.append(p.numpy().copy())
    check(values, ref_adam(lr=0.05, betas=(0.9, 0.99), eps=1e-8))
