"""minigan.func (functional_call, differentiable SGD / Adam steps) and the unrolled GAN objective.

The update rules are checked against ``optim``'s in-place optimizers value for value; the
unrolled objective f_K is gradchecked (float64, finite differences) with respect to the
generator's parameters for K = 1, 2, 3 through SGD and through Adam, and K = 0 must give exactly
the plain generator gradient.
"""
import functools

import numpy as np
import pytest

import minigan as mg
from minigan import nn, optim
from minigan.autograd import Tensor, grad
from minigan.func import adam_state, adam_step, functional_call, sgd_step
from minigan.gan.losses import g_loss_nonsaturating
from minigan.gan.unrolled import unrolled_losses, unrolled_train_step
from minigan.testing import gradcheck


def tiny(seed=0):
    """G: z (N, 2) -> x (N, 2), D: x (N, 2) -> logit (N, 1); tanh hidden layers (smooth, so
    finite differences see no kinks), float64."""
    mg.manual_seed(seed)
    G = nn.Sequential(nn.Linear(2, 3), nn.Tanh(), nn.Linear(3, 2)).double()
    D = nn.Sequential(nn.Linear(2, 4), nn.Tanh(), nn.Linear(4, 1)).double()
    rng = np.random.default_rng(seed)
    return G, D, Tensor(rng.standard_normal((6, 2))), Tensor(rng.standard_normal((6, 2)))


# ------------------------------------------------------------------------------------------------
# functional_call
# ------------------------------------------------------------------------------------------------
def test_functional_call_uses_the_given_tensors_and_restores_the_module():
    _, D, x, _ = tiny()
    own = {k: p for k, p in D.named_parameters()}
    doubled = {k: Tensor(2 * p.data, requires_grad=True) for k, p in own.items()}
    out = functional_call(D, doubled, (x,))
    h = np.tanh(x.data @ (2 * own["0.weight"].data).T + 2 * own["0.bias"].data)
    expected = h @ (2 * own["2.weight"].data).T + 2 * own["2.bias"].data
    np.testing.assert_allclose(out.numpy(), expected, rtol=1e-12)
    assert all(D._modules[k.split(".")[0]]._parameters[k.split(".")[1]] is p
               for k, p in own.items())
    g = grad(out.sum(), list(doubled.values()))
    assert all(gi.shape == p.shape for gi, p in zip(g, doubled.values()))
    # a partial dict keeps the module's own values for the rest
    partial = functional_call(D, {"2.bias": Tensor(np.array([10.0]))}, x)
    np.testing.assert_allclose(partial.numpy(), D(x).numpy() - own["2.bias"].data + 10.0)


def test_functional_call_errors_name_the_key_and_shapes():
    _, D, x, _ = tiny()
    with pytest.raises(KeyError, match="no parameter or buffer named '3.weight'"):
        functional_call(D, {"3.weight": Tensor(np.zeros((1, 4)))}, (x,))
    with pytest.raises(ValueError, match=r"'0.weight' has shape \(4, 2\).*\(2, 4\)"):
        functional_call(D, {"0.weight": Tensor(np.zeros((2, 4)))}, (x,))
    assert D[0].weight.shape == (4, 2)   # restored after the error
    with pytest.raises(TypeError, match="needs an nn.Module"):
        functional_call(lambda x: x, {}, (x,))


def test_functional_call_reaches_buffers():
    bn = nn.BatchNorm1d(3).double().eval()
    x = Tensor(np.random.default_rng(0).standard_normal((4, 3)))
    mean = Tensor(np.array([1.0, 2.0, 3.0]))
    out = functional_call(bn, {"running_mean": mean}, (x,))
    np.testing.assert_allclose(out.numpy(), (x.data - mean.data) / np.sqrt(1 + bn.eps), rtol=1e-12)
    assert np.all(bn.running_mean.data == 0)


# ------------------------------------------------------------------------------------------------
# differentiable update rules against optim's in-place optimizers
# ------------------------------------------------------------------------------------------------
P0 = np.array([[0.5, -1.5, 2.0], [0.0, 0.25, -0.75]])
GRADS = [np.array([[0.1, -0.2, 0.3], [1.0, 0.0, -0.5]]),
         np.array([[-0.3, 0.4, 0.1], [0.2, -0.1, 0.05]]),
         np.array([[0.7, 0.2, -0.6], [-0.4, 0.3, 0.0]])]


@pytest.mark.parametrize("rule, cls, hyper", [
    (sgd_step, optim.SGD, {"lr": 0.1}),
    (sgd_step, optim.SGD, {"lr": 0.1, "momentum": 0.9, "weight_decay": 0.01}),
    (sgd_step, optim.SGD, {"lr": 0.1, "momentum": 0.9, "nesterov": True}),
    (adam_step, optim.Adam, {"lr": 0.01, "betas": (0.5, 0.999)}),
    (adam_step, optim.Adam, {"lr": 0.01, "weight_decay": 0.1}),
])
def test_update_rules_match_the_in_place_optimizers(rule, cls, hyper):
    p = nn.Parameter(P0.copy())
    opt = cls([p], **hyper)
    params, state = {"w": Tensor(P0.copy())}, None
    for g in GRADS:
        p.grad = Tensor(g.copy())
        opt.step()
        params, state = rule(params, {"w": Tensor(g.copy())}, state, **hyper)
        np.testing.assert_allclose(params["w"].numpy(), p.numpy(), rtol=1e-12, atol=1e-15)


def test_adam_state_continues_an_in_place_adam():
    p = nn.Parameter(P0.copy())
    opt = optim.Adam([p], lr=0.01)
    p.grad = Tensor(GRADS[0].copy())
    opt.step()
    params, state = adam_step({"w": Tensor(p.data.copy())}, {"w": Tensor(GRADS[1].copy())},
                              adam_state(opt, {"w": p}), lr=0.01)
    p.grad = Tensor(GRADS[1].copy())
    opt.step()
    np.testing.assert_allclose(params["w"].numpy(), p.numpy(), rtol=1e-12)
    assert state["w"]["step"] == 2


def test_update_rules_reject_bad_input():
    params = {"w": Tensor(P0.copy())}
    with pytest.raises(KeyError, match=r"no gradient for parameters \['w'\]"):
        sgd_step(params, {}, lr=0.1)
    with pytest.raises(ValueError, match=r"gradient of 'w' has shape \(3,\), the parameter \(2, 3\)"):
        adam_step(params, {"w": Tensor(np.zeros(3))})
    with pytest.raises(ValueError, match="invalid lr"):
        adam_step(params, {"w": Tensor(P0)}, lr=-1)


def test_adam_step_is_differentiable_in_the_gradient_and_the_moments():
    rng = np.random.default_rng(3)
    p = Tensor(rng.standard_normal((2, 3)))
    m0, v0 = rng.standard_normal((2, 3)), rng.random((2, 3)) + 0.1

    def step(g, m, v):
        new, state = adam_step({"w": p}, {"w": g}, {"w": {"step": 3, "exp_avg": m,
                                                         "exp_avg_sq": v}}, lr=0.1,
                               betas=(0.5, 0.9))
        return new["w"] * state["w"]["exp_avg"] + state["w"]["exp_avg_sq"]

    gradcheck(step, [Tensor(rng.standard_normal((2, 3)), requires_grad=True),
                     Tensor(m0, requires_grad=True), Tensor(v0, requires_grad=True)])


# ------------------------------------------------------------------------------------------------
# the unrolled objective
# ------------------------------------------------------------------------------------------------
def _f_k(G, D, real, z, unroll, update, state):
    names = [k for k, _ in G.named_parameters()]

    def f(*g_params):
        fake = functional_call(G, dict(zip(names, g_params)), (z,))
        return unrolled_losses(D, real, fake, unroll, update, state)[0]
    return f


@pytest.mark.parametrize("unroll", [1, 2, 3])
@pytest.mark.parametrize("rule", ["sgd", "adam"])
def test_unrolled_objective_gradcheck(unroll, rule):
    G, D, real, z = tiny(unroll)
    if rule == "sgd":
        update, state = functools.partial(sgd_step, lr=0.5), None
    else:
        # a state part-way through training, so the moments are not zero
        rng = np.random.default_rng(7)
        state = {k: {"step": 5, "exp_avg": Tensor(0.1 * rng.standard_normal(p.shape)),
                     "exp_avg_sq": Tensor(0.01 * rng.random(p.shape) + 1e-3)}
                 for k, p in D.named_parameters()}
        update = functools.partial(adam_step, lr=0.05, betas=(0.5, 0.999))
    g_params = [Tensor(p.data.copy(), requires_grad=True) for p in G.parameters()]
    f = _f_k(G, D, real, z, unroll, update, state)
    gradcheck(f, g_params, atol=1e-6, rtol=1e-5)
    # the path through D's updates matters: freezing D at theta_D^K gives another gradient
    unrolled = grad(f(*g_params), g_params)
    names = [k for k, _ in G.named_parameters()]
    with mg.no_grad():
        fake = functional_call(G, dict(zip(names, g_params)), (z,))
    _, d_k = _final_params(D, real, fake, unroll, update, state)
    frozen_fake = functional_call(G, dict(zip(names, g_params)), (z,))
    frozen = grad(g_loss_nonsaturating(functional_call(D, d_k, (frozen_fake,))), g_params)
    gap = max(np.abs(a.data - b.data).max() for a, b in zip(unrolled, frozen))
    assert gap > 1e-4, f"K={unroll}: the unrolled gradient equals the frozen-D one ({gap:.2e})"


def _final_params(D, real, fake, unroll, update, state):
    """theta_D^K as constants, computed here without minigan.gan.unrolled."""
    params = {k: Tensor(p.data.copy(), requires_grad=True) for k, p in D.named_parameters()}
    from minigan.gan.losses import d_loss_minimax
    for _ in range(unroll):
        loss = d_loss_minimax(functional_call(D, params, (real,)), functional_call(D, params, (fake,)))
        gs = grad(loss, list(params.values()))
        params, state = update(params, dict(zip(params, gs)), state)
        params = {k: Tensor(p.data.copy(), requires_grad=True) for k, p in params.items()}
    return None, params


def test_unroll_zero_is_exactly_the_plain_generator_gradient():
    G, D, real, z = tiny(5)
    g_params = list(G.parameters())
    f0 = unrolled_losses(D, real, G(z), 0, functools.partial(sgd_step, lr=0.5))[0]
    plain = g_loss_nonsaturating(D(G(z)))
    assert f0.item() == plain.item()
    for a, b in zip(grad(f0, g_params), grad(plain, g_params)):
        np.testing.assert_array_equal(a.data, b.data)


def test_unrolled_train_step_takes_ds_first_step_for_real():
    G, D, real, z = tiny(2)
    G2, D2, _, _ = tiny(2)
    opt_g, opt_d = optim.Adam(G.parameters(), lr=0.01), optim.Adam(D.parameters(), lr=0.01)
    opt_g2, opt_d2 = optim.Adam(G2.parameters(), lr=0.01), optim.Adam(D2.parameters(), lr=0.01)
    for _ in range(2):
        d_before = [p.data.copy() for p in D.parameters()]
        unrolled_train_step(G, D, opt_g, opt_d, real, z, unroll=3)
        # the reference: the plain D step on the same samples (from G before its update)
        from minigan.gan.losses import d_loss_minimax
        fake = G2(z).detach()
        opt_d2.zero_grad()
        d_loss_minimax(D2(real), D2(fake)).backward()
        opt_d2.step()
        for a, b, before in zip(D.parameters(), D2.parameters(), d_before):
            np.testing.assert_allclose(a.data, b.data, rtol=1e-10, atol=1e-13)
            assert np.abs(a.data - before).max() > 0
        with mg.no_grad():
            for a, b in zip(G2.parameters(), G.parameters()):
                a.data[...] = b.data
    with pytest.raises(ValueError, match="unroll must be >= 1"):
        unrolled_train_step(G, D, opt_g, opt_d, real, z, unroll=0)
    with pytest.raises(TypeError, match="Adam or SGD without momentum"):
        unrolled_train_step(G, D, opt_g, optim.RMSprop(D.parameters()), real, z, unroll=1)


def test_grad_runs_only_the_backward_rules_that_lead_to_its_inputs():
    """grad(loss, w) must not walk back through branches that do not reach w: an unrolled
    optimizer's grad(L_k, params_k) would otherwise rerun every earlier step's backward."""
    from minigan import profiler
    x = Tensor(np.ones(3), requires_grad=True)
    w = Tensor(np.full(3, 2.0), requires_grad=True)
    y = (x * 3.0).exp()           # a branch that does not lead to w
    with profiler.profile() as prof:
        gw, = grad((y * w).sum(), w)
    np.testing.assert_allclose(gw.data, np.exp(3.0))
    assert "Exp" not in prof.stats or prof.stats["Exp"][2] == 0
    gx, gw2 = grad((y * w).sum(), [x, w])   # both still reachable when both are asked for
    np.testing.assert_allclose(gx.data, 3 * np.exp(3.0) * 2.0)
    np.testing.assert_allclose(gw2.data, np.exp(3.0))


def test_grad_with_respect_to_a_later_tensor_does_not_walk_the_older_graph():
    """Functions recorded before the tensors asked for cannot lie between them and the output,
    so grad() does not visit them: here that older part was already freed by a backward, and
    grad() still answers (as PyTorch's does) instead of saying it was freed."""
    x = Tensor(np.array([0.5, -1.0]), requires_grad=True)
    b = (x * 2.0).exp()
    b.sum().backward()                       # frees Mul and Exp's saved inputs
    g, = grad((b * 3.0).sum(), b)
    np.testing.assert_allclose(g.data, 3.0)
    with pytest.raises(RuntimeError, match="second time"):
        grad((b * 3.0).sum(), x)             # x does need the freed part
