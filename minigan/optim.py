"""Optimizers with PyTorch's names, arguments, defaults and update rules: SGD, Adam, RMSprop.

Updates happen in place on each parameter's array (``p.data``), outside the graph, so models and
optimizers keep referring to the same Parameter objects. State arrays live on the parameter's
device; ``state_dict()`` copies them to NumPy so a checkpoint loads on any device.
"""
import math

import numpy as np

from . import backend


class Optimizer:
    defaults = {}

    def __init__(self, params, **hyper):
        params = list(params)
        if not params:
            raise ValueError(f"{type(self).__name__} got an empty parameter list")
        groups = params if isinstance(params[0], dict) else [{"params": params}]
        self.param_groups = []
        for group in groups:
            group = {**self.defaults, **hyper, **group}
            group["params"] = list(group["params"])
            for p in group["params"]:
                if not p.requires_grad:
                    raise ValueError(f"{type(self).__name__}: a parameter of shape {p.shape} "
                                     "does not require grad")
            self.param_groups.append(group)
        self.state = {}     # id(param) -> dict of state arrays

    def _params(self):
        for group in self.param_groups:
            for p in group["params"]:
                yield group, p

    def zero_grad(self, set_to_none=True):
        """Drop every parameter's gradient (or zero it in place with ``set_to_none=False``)."""
        for _, p in self._params():
            if set_to_none or p.grad is None:
                p.grad = None
            else:
                p.grad.data[...] = 0

    def step(self):
        for group, p in self._params():
            if p.grad is None:
                continue
            g = p.grad.data
            if g.shape != p.data.shape:
                raise RuntimeError(f"gradient of shape {g.shape} for a parameter of shape "
                                   f"{p.data.shape}")
            state = self.state.setdefault(id(p), {"step": 0})
            state["step"] += 1
            self._update(p.data, g, state, group, backend.array_module(p.data))

    def _update(self, p, g, state, group, xp):
        raise NotImplementedError

    def state_dict(self):
        """{"state": {index: {name: array or number}}, "param_groups": [hyper-parameters and
        parameter indices]}; arrays copied to NumPy."""
        index = {id(p): i for i, (_, p) in enumerate(self._params())}
        state = {}
        for key, values in self.state.items():
            if key in index:
                state[index[key]] = {k: backend.as_numpy(v).copy() if hasattr(v, "shape") else v
                                     for k, v in values.items()}
        groups, start = [], 0
        for group in self.param_groups:
            entry = {k: v for k, v in group.items() if k != "params"}
            entry["params"] = list(range(start, start + len(group["params"])))
            start += len(group["params"])
            groups.append(entry)
        return {"state": state, "param_groups": groups}

    def load_state_dict(self, state_dict):
        groups = state_dict["param_groups"]
        if len(groups) != len(self.param_groups) or any(
                len(g["params"]) != len(own["params"]) for g, own in zip(groups, self.param_groups)):
            raise ValueError("load_state_dict: the saved optimizer has a different number of "
                             "parameter groups or parameters than this one")
        params = [p for _, p in self._params()]
        for group, saved in zip(self.param_groups, groups):
            group.update({k: (tuple(v) if isinstance(v, list) else v)
                          for k, v in saved.items() if k != "params"})
        self.state = {}
        for key, values in state_dict["state"].items():
            p = params[int(key)]
            entry = {}
            for k, v in values.items():
                if hasattr(v, "shape") and np.ndim(v) > 0:
                    if tuple(v.shape) != p.shape:
                        raise ValueError(f"load_state_dict: state '{k}' of parameter {key} has "
                                         f"shape {tuple(v.shape)}, the parameter {p.shape}")
                    v = backend.to_device(np.asarray(v), p.device).astype(p.dtype)
                elif hasattr(v, "shape"):
                    v = v.item()
                entry[k] = v
            self.state[id(p)] = entry


class SGD(Optimizer):
    """p -= lr * g, with optional momentum (buf = momentum * buf + (1 - dampening) g),
    Nesterov momentum and L2 weight decay (g += weight_decay * p)."""

    def __init__(self, params, lr=1e-3, momentum=0.0, dampening=0.0, weight_decay=0.0,
                 nesterov=False):
        if lr < 0 or momentum < 0 or weight_decay < 0:
            raise ValueError(f"SGD: invalid lr {lr}, momentum {momentum} or weight_decay "
                             f"{weight_decay}")
        if nesterov and (momentum <= 0 or dampening != 0):
            raise ValueError("SGD: Nesterov momentum needs momentum > 0 and dampening 0")
        super().__init__(params, lr=lr, momentum=momentum, dampening=dampening,
                         weight_decay=weight_decay, nesterov=nesterov)

    def _update(self, p, g, state, group, xp):
        if group["weight_decay"]:
            g = g + group["weight_decay"] * p
        momentum = group["momentum"]
        if momentum:
            if "momentum_buffer" not in state:
                state["momentum_buffer"] = g.copy()
            else:
                buf = state["momentum_buffer"]
                buf *= momentum
                buf += (1 - group["dampening"]) * g
            buf = state["momentum_buffer"]
            g = g + momentum * buf if group["nesterov"] else buf
        p -= group["lr"] * g


class Adam(Optimizer):
    """Adam (Kingma & Ba 2015):  m = b1 m + (1 - b1) g,  v = b2 v + (1 - b2) g^2,
    p -= lr / (1 - b1^t) * m / (sqrt(v) / sqrt(1 - b2^t) + eps)."""

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0):
        if lr < 0 or eps < 0 or not (0 <= betas[0] < 1 and 0 <= betas[1] < 1):
            raise ValueError(f"Adam: invalid lr {lr}, betas {betas} or eps {eps}")
        super().__init__(params, lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay)

    def _update(self, p, g, state, group, xp):
        beta1, beta2 = group["betas"]
        if group["weight_decay"]:
            g = g + group["weight_decay"] * p
        if "exp_avg" not in state:
            state["exp_avg"] = xp.zeros_like(p)
            state["exp_avg_sq"] = xp.zeros_like(p)
        m, v, t = state["exp_avg"], state["exp_avg_sq"], state["step"]
        work = self._work(p, xp)   # one scratch array per parameter: no temporaries per step
        m *= beta1
        xp.multiply(g, 1 - beta1, out=work)
        m += work
        v *= beta2
        xp.multiply(g, g, out=work)
        work *= 1 - beta2
        v += work
        xp.sqrt(v, out=work)                       # denominator sqrt(v_hat) + eps, in place
        work *= 1 / math.sqrt(1 - beta2 ** t)
        work += group["eps"]
        xp.divide(m, work, out=work)
        work *= group["lr"] / (1 - beta1 ** t)
        p -= work

    def _work(self, p, xp):
        buffers = self.__dict__.setdefault("_buffers", {})
        buf = buffers.get(id(p))
        if (buf is None or buf.shape != p.shape or buf.dtype != p.dtype
                or backend.array_module(buf) is not xp):
            buf = buffers[id(p)] = xp.empty_like(p)
        return buf


class RMSprop(Optimizer):
    """RMSprop (Hinton 2012): v = alpha v + (1 - alpha) g^2, p -= lr g / (sqrt(v) + eps);
    ``centered`` subtracts the squared mean gradient, ``momentum`` accumulates the step."""

    def __init__(self, params, lr=1e-2, alpha=0.99, eps=1e-8, weight_decay=0.0, momentum=0.0,
                 centered=False):
        if lr < 0 or eps < 0 or not 0 <= alpha <= 1:
            raise ValueError(f"RMSprop: invalid lr {lr}, alpha {alpha} or eps {eps}")
        super().__init__(params, lr=lr, alpha=alpha, eps=eps, weight_decay=weight_decay,
                         momentum=momentum, centered=centered)

    def _update(self, p, g, state, group, xp):
        alpha = group["alpha"]
        if group["weight_decay"]:
            g = g + group["weight_decay"] * p
        if "square_avg" not in state:
            state["square_avg"] = xp.zeros_like(p)
        v = state["square_avg"]
        v *= alpha
        v += (1 - alpha) * (g * g)
        if group["centered"]:
            if "grad_avg" not in state:
                state["grad_avg"] = xp.zeros_like(p)
            gavg = state["grad_avg"]
            gavg *= alpha
            gavg += (1 - alpha) * g
            avg = xp.sqrt(v - gavg * gavg) + group["eps"]
        else:
            avg = xp.sqrt(v) + group["eps"]
        if group["momentum"] > 0:
            if "momentum_buffer" not in state:
                state["momentum_buffer"] = xp.zeros_like(p)
            buf = state["momentum_buffer"]
            buf *= group["momentum"]
            buf += g / avg
            p -= group["lr"] * buf
        else:
            p -= group["lr"] * (g / avg)
