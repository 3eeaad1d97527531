"""Optimizers with PyTorch's names, arguments, defaults and update rules: SGD, Adam, RMSprop.

Updates happen in place on each parameter's array (``p.data``), outside the graph, so models and
optimizers keep referring to the same Parameter objects. State arrays live on the parameter's
device; ``state_dict()`` copies them to NumPy so a checkpoint loads on any device.
"""
import math

import numpy as np

from . import backend, kernels
from .autograd import Tensor


def _number(value):
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)


def _params_list(owner, params, what="params argument"):
    """The parameters as a list; a single Tensor (or a set, whose order is arbitrary) refused the
    way PyTorch refuses it: iterating one Parameter would give views of its rows, never trained."""
    if isinstance(params, Tensor) or hasattr(params, "shape") or isinstance(params, (set, str)):
        raise TypeError(f"{owner}: {what} should be an iterable of Tensors or dicts, but got "
                        f"{type(params).__name__}; pass model.parameters() or [tensor]")
    try:
        return list(params)
    except TypeError:
        raise TypeError(f"{owner}: {what} should be an iterable of Tensors or dicts, but got "
                        f"{type(params).__name__}") from None


class Optimizer:
    defaults = {}

    def __init__(self, params, **hyper):
        owner = type(self).__name__
        params = _params_list(owner, params)
        if not params:
            raise ValueError(f"{owner} got an empty parameter list")
        groups = params if isinstance(params[0], dict) else [{"params": params}]
        # everything is checked before anything is stored: a refused call leaves nothing behind
        param_groups, seen = [], set()
        for g, group in enumerate(groups):
            if not isinstance(group, dict):
                raise TypeError(f"{owner}: parameter group {g} is a {type(group).__name__}; mix "
                                "no dicts and Tensors in one list")
            if "params" not in group:
                raise ValueError(f"{owner}: parameter group {g} has no 'params' entry")
            known = set(self.defaults) | set(hyper)
            unknown = sorted(set(group) - known - {"params"})
            if unknown:
                raise ValueError(f"{owner}: parameter group {g} has unknown options {unknown}; "
                                 f"{owner} takes {sorted(known)}")
            group = {**self.defaults, **hyper, **group}
            group["params"] = _params_list(owner, group["params"], f"group {g}'s 'params'")
            for i, p in enumerate(group["params"]):
                if not isinstance(p, Tensor):
                    raise TypeError(f"{owner} can only optimize Tensors, but parameter {i} of "
                                    f"group {g} is a {type(p).__name__}")
                if not p.is_leaf:
                    raise ValueError(f"{owner} can't optimize a non-leaf Tensor (parameter {i} "
                                     f"of group {g}, shape {p.shape}, made by "
                                     f"{type(p.creator).__name__})")
                if not p.requires_grad:
                    raise ValueError(f"{owner}: a parameter of shape {p.shape} "
                                     "does not require grad")
                if id(p) in seen:
                    raise ValueError(f"{owner}: the parameter of shape {p.shape} (parameter {i} "
                                     f"of group {g}) appears twice; it would be updated twice "
                                     "per step")
                seen.add(id(p))
            self._check_hyper(group, f"{owner}" + (f" (parameter group {g})" if g else ""))
            if "betas" in group:
                group["betas"] = tuple(group["betas"])
            param_groups.append(group)
        self.param_groups = param_groups
        self.state = {}     # id(param) -> dict of state arrays

    # (name, lowest, highest, whether the highest value is allowed); checked for every group
    _ranges = {"lr": (0, math.inf, True), "weight_decay": (0, math.inf, True),
               "momentum": (0, math.inf, True), "dampening": (0, 1, True), "eps": (0, math.inf, True),
               "alpha": (0, 1, True)}

    def _check_hyper(self, group, owner):
        """ValueError naming the hyper-parameter for NaN, negative or out-of-range values."""
        for name, (low, high, closed) in self._ranges.items():
            if name not in group:
                continue
            v = group[name]
            if not _number(v):
                raise TypeError(f"{owner}: {name} must be a number, got {v!r} "
                                f"({type(v).__name__})")
            if not (low <= v < high or closed and v == high):
                where = f">= {low}" if high == math.inf else f"in [{low}, {high}]"
                raise ValueError(f"{owner}: invalid {name} value: {v} (must be {where})")
        if "betas" in group:
            betas = group["betas"]
            if not isinstance(betas, (tuple, list)) or len(betas) != 2 or not all(
                    _number(b) for b in betas):
                raise TypeError(f"{owner}: betas must be a pair of numbers, got {betas!r}")
            for k, beta in enumerate(betas):
                if not 0 <= beta < 1:
                    raise ValueError(f"{owner}: invalid betas value at index {k}: {beta} "
                                     "(must be in [0, 1))")
        if group.get("nesterov") and (group["momentum"] <= 0 or group["dampening"] != 0):
            raise ValueError(f"{owner}: Nesterov momentum needs momentum > 0 and dampening 0")

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
        # every gradient is checked before the first parameter moves: a refused step leaves
        # parameters and state exactly as they were
        for i, (_, p) in enumerate(self._params()):
            g = p.grad
            if g is not None and (g.shape != p.shape or g.device != p.device):
                raise RuntimeError(f"{type(self).__name__}.step: gradient of shape {g.shape} on "
                                   f"{g.device} for a parameter of shape {p.shape} on "
                                   f"{p.device} (parameter {i}); nothing was updated")
        for group, p in self._params():
            if p.grad is None:
                continue
            g = p.grad.data
            state = self.state.setdefault(id(p), {"step": 0})
            state["step"] += 1
            self._update(p.data, g, state, group, backend.array_module(p.data))
            p._bump_version()   # graphs that saved p before this step must not backward

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
        """Restore hyper-parameters and state from :meth:`state_dict`'s output. Everything is
        checked first: a refused state_dict leaves the optimizer exactly as it was."""
        owner = f"{type(self).__name__}.load_state_dict"
        if not isinstance(state_dict, dict) or set(state_dict) != {"state", "param_groups"}:
            keys = sorted(state_dict) if isinstance(state_dict, dict) else type(state_dict).__name__
            raise ValueError(f"{owner}: expected a dict with keys 'state' and 'param_groups', "
                             f"got {keys}")
        groups, saved_state = state_dict["param_groups"], state_dict["state"]
        if not isinstance(groups, (list, tuple)) or not all(
                isinstance(g, dict) and isinstance(g.get("params"), (list, tuple)) for g in groups):
            raise ValueError(f"{owner}: 'param_groups' must be a list of dicts with a 'params' "
                             "list")
        if not isinstance(saved_state, dict):
            raise ValueError(f"{owner}: 'state' must be a dict, got {type(saved_state).__name__}")
        if len(groups) != len(self.param_groups) or any(
                len(g["params"]) != len(own["params"]) for g, own in zip(groups, self.param_groups)):
            raise ValueError("load_state_dict: the saved optimizer has a different number of "
                             "parameter groups or parameters than this one")
        new_groups = []
        for g, (group, saved) in enumerate(zip(self.param_groups, groups)):
            new = {**group, **{k: (tuple(v) if isinstance(v, list) else v)
                               for k, v in saved.items() if k != "params"}}
            self._check_hyper(new, f"{owner} (parameter group {g})")
            new_groups.append(new)
        params = [p for _, p in self._params()]
        state = {}
        for key, values in saved_state.items():
            try:
                p = params[int(key)]
            except (ValueError, TypeError, IndexError):
                raise ValueError(f"{owner}: state key {key!r} is not the index of one of the "
                                 f"{len(params)} parameters") from None
            if not isinstance(values, dict):
                raise ValueError(f"{owner}: state of parameter {key} must be a dict, got "
                                 f"{type(values).__name__}")
            entry = {}
            for k, v in values.items():
                if hasattr(v, "shape") and np.ndim(v) > 0:
                    if tuple(v.shape) != p.shape:
                        raise ValueError(f"load_state_dict: state '{k}' of parameter {key} has "
                                         f"shape {tuple(v.shape)}, the parameter {p.shape}")
                    if v.dtype.kind not in "biuf":
                        raise TypeError(f"{owner}: state '{k}' of parameter {key} has dtype "
                                        f"{v.dtype}")
                    v = backend.to_device(np.asarray(v), p.device).astype(p.dtype)
                elif hasattr(v, "shape"):
                    v = v.item()
                elif not _number(v):
                    raise TypeError(f"{owner}: state '{k}' of parameter {key} must be an array "
                                    f"or a number, got {type(v).__name__}")
                entry[k] = v
            state[id(p)] = entry
        for group, new in zip(self.param_groups, new_groups):
            group.update(new)
        self.state = state


class SGD(Optimizer):
    """p -= lr * g, with optional momentum (buf = momentum * buf + (1 - dampening) g),
    Nesterov momentum and L2 weight decay (g += weight_decay * p)."""

    def __init__(self, params, lr=1e-3, momentum=0.0, dampening=0.0, weight_decay=0.0,
                 nesterov=False):
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


def _one_pass_fits(p, *arrays):
    """Whether the CPU kernels can update p in place with these arrays: one float dtype and
    shape, p and the state arrays C-contiguous and writeable (a parameter whose array is, say,
    a transposed view keeps the NumPy code)."""
    return (p.dtype in (np.float32, np.float64) and p.flags.c_contiguous and p.flags.writeable
            and all(a.dtype == p.dtype and a.shape == p.shape for a in arrays)
            and all(a.flags.c_contiguous and a.flags.writeable for a in arrays[1:]))


class Adam(Optimizer):
    """Adam (Kingma & Ba 2015):  m = b1 m + (1 - b1) g,  v = b2 v + (1 - b2) g^2,
    p -= lr / (1 - b1^t) * m / (sqrt(v) / sqrt(1 - b2^t) + eps)."""

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0):
        super().__init__(params, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay)

    def _update(self, p, g, state, group, xp):
        beta1, beta2 = group["betas"]
        if "exp_avg" not in state:
            state["exp_avg"] = xp.zeros_like(p)
            state["exp_avg_sq"] = xp.zeros_like(p)
        m, v, t = state["exp_avg"], state["exp_avg_sq"], state["step"]
        if xp is np and _one_pass_fits(p, g, m, v):
            # one pass over the four arrays on all cores, the same numbers as the code below
            kernels.adam_step(p, g, m, v, group["lr"], beta1, beta2, group["eps"],
                              group["weight_decay"], t)
            return
        if group["weight_decay"]:
            g = g + group["weight_decay"] * p
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
