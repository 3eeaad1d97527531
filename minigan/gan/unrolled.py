"""Unrolled GAN (Metz et al., 2017): the generator looks K discriminator updates ahead.

With theta_D^0 = D's current weights and the discriminator's update rule U (here Adam's, as in
the paper's code; or SGD's),

    theta_D^{k+1} = U(theta_D^k, grad_{theta_D} L_D(theta_D^k, G(z)), state^k),  k = 0..K-1
    f_K(theta_G) = L_G(D(G(z); theta_D^K))

and G descends d f_K / d theta_G, which includes the path through every theta_D^k: each D
gradient is taken with ``create_graph=True`` and the update rule is a differentiable function
(:mod:`minigan.func`), so the generator sees how D would answer its move and is pushed away
from collapsing onto the mode D is about to leave. K = 0 is the plain generator loss. D's own
(real) update is the first of the K steps: theta_D^1 is where D goes next.

All K steps use the same real batch and the same generated samples (the paper's code does too);
packing (PacGAN) applies inside every step as in the plain loop.
"""
import functools

from ..autograd import Tensor, enable_grad, grad
from ..func import adam_state, adam_step, functional_call, sgd_step
from .losses import d_loss_minimax, g_loss_nonsaturating, pack


def unrolled_losses(D, real, fake, unroll, update, state=None, d_loss=d_loss_minimax,
                    g_loss=g_loss_nonsaturating, pack_size=1):
    """(f_K, L_D at theta_D^0, D's first-step gradients) for K = ``unroll`` >= 0.

    ``D``: the discriminator Module (its own weights are theta_D^0 and are not changed);
    ``real`` (N, ...), ``fake`` = G(z) (N, ...) with its graph to G; ``update(params, grads,
    state) -> (params, state)``: a differentiable rule such as ``functools.partial(adam_step,
    lr=1e-3)``; ``state``: the rule's state at theta_D^0 (e.g. :func:`minigan.func.adam_state`
    of D's in-place optimizer). ``d_loss(real_out, fake_out)``, ``g_loss(fake_out)``: the
    losses on D's outputs. The first-step gradients come back as constant Tensors by parameter
    name (the values D's real optimizer step takes; None for K = 0)."""
    unroll = int(unroll)
    if unroll < 0:
        raise ValueError(f"unrolled_losses: unroll must be >= 0, got {unroll}")
    params = dict(D.named_parameters())
    real_in, fake_in = pack(real, pack_size), pack(fake, pack_size)
    first_loss, first_grads = None, None
    for k in range(unroll):
        with enable_grad():   # D's gradients are part of the value f_K, even under no_grad
            loss = d_loss(functional_call(D, params, (real_in,)),
                          functional_call(D, params, (fake_in,)))
            grads = grad(loss, list(params.values()), create_graph=True)
            if k == 0:
                first_loss = loss
                first_grads = {name: Tensor._wrap(g.data.copy()) for name, g in zip(params, grads)}
            params, state = update(params, dict(zip(params, grads)), state)
    return g_loss(functional_call(D, params, (fake_in,))), first_loss, first_grads


def _update_rule(opt_d, named):
    """The differentiable twin of D's in-place optimizer at its current hyper-parameters, and its
    state for D's parameters ``named``."""
    group = opt_d.param_groups[0]
    name = type(opt_d).__name__
    if name == "Adam":
        return functools.partial(adam_step, lr=group["lr"], betas=group["betas"],
                                 eps=group["eps"], weight_decay=group["weight_decay"]), \
            adam_state(opt_d, named)
    if name == "SGD" and not group["momentum"]:
        return functools.partial(sgd_step, lr=group["lr"], weight_decay=group["weight_decay"]), None
    raise TypeError(f"unrolled_train_step: D's optimizer must be Adam or SGD without momentum, "
                    f"got {name}")


def unrolled_train_step(G, D, opt_g, opt_d, real, z, unroll, pack_size=1,
                        d_loss=d_loss_minimax, g_loss=g_loss_nonsaturating):
    """One iteration of the unrolled GAN: G descends f_K, then D takes its first unrolled step
    for real (``opt_d.step()`` with the step's gradients, so D's optimizer state advances as in
    a plain loop). ``unroll`` >= 1. Returns (L_D before the step, f_K) as Tensors.

    G's backward runs before D's in-place step: the unrolled graph holds D's weight arrays."""
    if int(unroll) < 1:
        raise ValueError(f"unrolled_train_step: unroll must be >= 1 (0 is the plain step), "
                         f"got {unroll}")
    named = dict(D.named_parameters())
    update, state = _update_rule(opt_d, named)
    fake = G(z)
    f_k, d_value, first_grads = unrolled_losses(D, real, fake, unroll, update, state, d_loss,
                                                g_loss, pack_size)
    g_params = list(G.parameters())
    opt_g.zero_grad()
    for p, g in zip(g_params, grad(f_k, g_params)):
        p.grad = g
    opt_g.step()
    opt_d.zero_grad()
    for name, p in named.items():
        p.grad = first_grads[name]
    opt_d.step()
    return d_value.detach(), f_k.detach()
