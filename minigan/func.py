"""Functional forms of modules and optimizers, for differentiating through training itself.

    params = dict(D.named_parameters())
    out = functional_call(D, params, (x,))              # D's forward with these Tensors as weights
    grads = grad(loss, list(params.values()), create_graph=True)
    params, state = adam_step(params, dict(zip(params, grads)), state, lr=1e-3)

``functional_call`` runs a module with parameters (and buffers) given as Tensors instead of its
own, as ``torch.func.functional_call`` does; the update rules below are pure functions of the old
parameters, the gradients and the optimizer state, built from differentiable ops, so a loss
evaluated at the updated parameters can be differentiated back through the update into whatever
the gradients depended on (the unrolled GAN: the generator's weights, through the
discriminator's K updates on generated samples). ``optim``'s in-place optimizers stay the ones
to use when nothing needs to be differentiated through their step.
"""
import contextlib
import math

from . import functional as F
from .autograd import Tensor, as_tensor
from .nn.module import Module


@contextlib.contextmanager
def _swapped(module, tensors):
    """Put ``tensors`` (dotted name -> Tensor) in place of the module's parameters and buffers of
    those names, restoring the originals on the way out (also when the forward raises)."""
    owners = dict(module.named_modules())
    saved = []
    try:
        for name, value in tensors.items():
            prefix, _, leaf = name.rpartition(".")
            owner = owners.get(prefix)
            table = None
            if owner is not None:
                table = next((t for t in (owner._parameters, owner._buffers) if leaf in t), None)
            if table is None:
                raise KeyError(f"functional_call: {type(module).__name__} has no parameter or "
                               f"buffer named '{name}'")
            old = table[leaf]
            value = as_tensor(value)
            if old is not None and value.shape != old.shape:
                raise ValueError(f"functional_call: '{name}' has shape {old.shape} in the module "
                                 f"but {value.shape} was given")
            saved.append((table, leaf, old))
            table[leaf] = value
        yield
    finally:
        for table, leaf, old in reversed(saved):
            table[leaf] = old


def functional_call(module, parameters_and_buffers, args=(), kwargs=None):
    """``module(*args, **kwargs)`` with the named Tensors in ``parameters_and_buffers`` (a dict
    from the dotted names of ``named_parameters()`` / ``named_buffers()`` to Tensors of the same
    shapes) used in place of the module's own; names not given keep the module's own values.

    Nothing of the module is changed: its Parameters are back in place when the call returns.
    The output's graph leads to the Tensors given, so ``grad(out, list(params.values()))``
    differentiates with respect to them (``torch.func.functional_call``'s semantics; a tuple of
    dicts is merged in order). A buffer a layer updates in place (batchnorm's running stats)
    is updated in the Tensor given."""
    if not isinstance(module, Module):
        raise TypeError(f"functional_call needs an nn.Module, got {type(module).__name__}")
    if isinstance(parameters_and_buffers, (tuple, list)):
        merged = {}
        for d in parameters_and_buffers:
            merged.update(d)
        parameters_and_buffers = merged
    if not isinstance(args, tuple):
        args = (args,)
    with _swapped(module, dict(parameters_and_buffers)):
        return module(*args, **(kwargs or {}))


def _check_grads(name, params, grads):
    for what, d in (("params", params), ("grads", grads)):
        if not isinstance(d, dict):
            raise TypeError(f"{name}: {what} must be a dict name -> Tensor (as "
                            f"dict(module.named_parameters())), got {type(d).__name__}")
    missing = [k for k in params if k not in grads]
    if missing:
        raise KeyError(f"{name}: no gradient for parameters {missing}")
    for k, p in params.items():
        g = grads[k]
        if g is not None and tuple(g.shape) != tuple(p.shape):
            raise ValueError(f"{name}: gradient of '{k}' has shape {tuple(g.shape)}, the "
                             f"parameter {tuple(p.shape)}")


def sgd_step(params, grads, state=None, lr=1e-3, momentum=0.0, dampening=0.0, weight_decay=0.0,
             nesterov=False):
    """One step of ``optim.SGD`` as a pure function: returns (new params, new state).

        g' = g + weight_decay p,  buf = momentum buf + (1 - dampening) g'  (buf = g' at first),
        p_new = p - lr (g' + momentum buf if nesterov else buf)   (p - lr g' without momentum)

    ``params``, ``grads``: dicts name -> Tensor (a gradient of None leaves its parameter as is);
    ``state``: the dict this function returned last time (None at the start), name ->
    {"momentum_buffer": Tensor}. Every output is built from differentiable ops on the inputs:
    with gradients from ``grad(..., create_graph=True)`` the new parameters are differentiable
    with respect to whatever the gradients, the old parameters and the momentum buffers depend
    on."""
    if lr < 0 or momentum < 0 or weight_decay < 0:
        raise ValueError(f"sgd_step: invalid lr {lr}, momentum {momentum} or weight_decay "
                         f"{weight_decay}")
    if nesterov and (momentum <= 0 or dampening != 0):
        raise ValueError("sgd_step: Nesterov momentum needs momentum > 0 and dampening 0")
    _check_grads("sgd_step", params, grads)
    state = dict(state or {})
    new_params = {}
    for k, p in params.items():
        g = grads[k]
        if g is None:
            new_params[k] = p
            continue
        if weight_decay:
            g = g + weight_decay * p
        if momentum:
            buf = (state.get(k) or {}).get("momentum_buffer")
            buf = g if buf is None else momentum * as_tensor(buf) + (1 - dampening) * g
            state[k] = {"momentum_buffer": buf}
            g = g + momentum * buf if nesterov else buf
        new_params[k] = p - lr * g
    return new_params, state


def adam_step(params, grads, state=None, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0):
    """One step of ``optim.Adam`` as a pure function: returns (new params, new state).

        t = t + 1,  m = b1 m + (1 - b1) g,  v = b2 v + (1 - b2) g^2,
        p_new = p - lr / (1 - b1^t) * m / (sqrt(v) / sqrt(1 - b2^t) + eps)

    ``state``: name -> {"step": int, "exp_avg": Tensor or array, "exp_avg_sq": ...}, the dict
    returned by the previous call, or :func:`adam_state` of an ``optim.Adam`` to continue from
    where that optimizer is (None: fresh zeros at t = 0). What is differentiated through: the
    moments m and v as well as the parameters, as in the unrolled-GAN paper's code (Metz et al.,
    2017), so d p_new / d g includes the sqrt(v) normaliser's dependence on g, and moments that
    came out of an earlier differentiable step carry their graph along; the step count and the
    hyper-parameters are constants. sqrt(v)'s derivative is infinite where v is exactly 0,
    which happens only for a parameter whose every gradient so far is exactly 0."""
    beta1, beta2 = betas
    if lr < 0 or eps < 0 or not (0 <= beta1 < 1 and 0 <= beta2 < 1):
        raise ValueError(f"adam_step: invalid lr {lr}, betas {betas} or eps {eps}")
    _check_grads("adam_step", params, grads)
    state = dict(state or {})
    new_params = {}
    for k, p in params.items():
        g = grads[k]
        if g is None:
            new_params[k] = p
            continue
        if weight_decay:
            g = g + weight_decay * p
        old = state.get(k) or {}
        t = int(old.get("step", 0)) + 1
        m = (1 - beta1) * g if old.get("exp_avg") is None else \
            beta1 * as_tensor(old["exp_avg"]) + (1 - beta1) * g
        v = (1 - beta2) * (g * g) if old.get("exp_avg_sq") is None else \
            beta2 * as_tensor(old["exp_avg_sq"]) + (1 - beta2) * (g * g)
        denom = F.sqrt(v) * (1 / math.sqrt(1 - beta2 ** t)) + eps
        new_params[k] = p - (lr / (1 - beta1 ** t)) * (m / denom)
        state[k] = {"step": t, "exp_avg": m, "exp_avg_sq": v}
    return new_params, state


def adam_state(optimizer, named_params):
    """The state of an in-place ``optim.Adam`` in :func:`adam_step`'s form, for the parameters
    ``named_params`` (name -> Parameter, e.g. ``dict(D.named_parameters())``): constant Tensors
    (copies: the optimizer's own arrays are updated in place) and the step count; a parameter
    the optimizer has not stepped yet starts from zeros."""
    state = {}
    for k, p in named_params.items():
        entry = optimizer.state.get(id(p))
        if entry and "exp_avg" in entry:
            state[k] = {"step": entry["step"], "exp_avg": Tensor._wrap(entry["exp_avg"].copy()),
                        "exp_avg_sq": Tensor._wrap(entry["exp_avg_sq"].copy())}
    return state
