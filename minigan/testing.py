"""Gradient checks: compare analytic gradients with central finite differences, in float64.

``gradcheck(fn, inputs)`` checks first derivatives, ``gradgradcheck(fn, inputs)`` second ones.
Both contract the output with a *random* upstream gradient v and check d<v, fn(x)>/dx: a plain
sum (v = 1) hides whole classes of bugs, such as a batchnorm whose input gradient is zero for a
summed output because normalised values sum to zero.
"""
import numpy as np

from . import backend
from .autograd import Tensor, enable_grad, grad, no_grad


class GradcheckError(AssertionError):
    pass


def _as_outputs(out):
    return list(out) if isinstance(out, (tuple, list)) else [out]


def _contract(fn, inputs, vs):
    """sum_k <v_k, fn(inputs)_k> as a float (the scalar whose gradient we check)."""
    outs = _as_outputs(fn(*inputs))
    return sum(float((o.data.astype(np.float64) * v).sum()) for o, v in zip(outs, vs))


def _numeric_grad(fn, inputs, vs, i, eps):
    x = inputs[i]
    flat = x.data.reshape(-1)    # a view: we perturb x in place and restore it
    g = np.zeros(flat.shape, dtype=np.float64)
    with no_grad():
        for j in range(flat.size):
            old = flat[j]
            flat[j] = old + eps
            plus = _contract(fn, inputs, vs)
            flat[j] = old - eps
            minus = _contract(fn, inputs, vs)
            flat[j] = old
            g[j] = (plus - minus) / (2 * eps)
    return g.reshape(x.shape)


def _report(name, i, analytic, numeric, atol, rtol):
    err = np.abs(analytic - numeric) - (atol + rtol * np.abs(numeric))
    worst = np.unravel_index(int(np.argmax(err)), err.shape) if err.size else ()
    return (f"{name}: gradient of input {i} (shape {analytic.shape}) is wrong; worst element "
            f"{tuple(int(k) for k in worst)}: analytic {analytic[worst]:.6g}, numeric "
            f"{numeric[worst]:.6g}, |diff| {abs(analytic[worst] - numeric[worst]):.3g} "
            f"(atol {atol}, rtol {rtol})")


def _prepare(inputs):
    prepared = []
    for x in inputs:
        if not isinstance(x, Tensor):
            x = Tensor(np.asarray(x, dtype=np.float64))
        if x.dtype != np.float64 and x.dtype.kind == "f":
            raise TypeError(f"gradcheck needs float64 inputs (finite differences in float32 are "
                            f"too coarse), got {x.dtype}")
        prepared.append(x)
    return prepared


def gradcheck(fn, inputs, eps=1e-6, atol=1e-5, rtol=1e-4, seed=0, raise_exception=True):
    """Check the gradients of ``fn(*inputs)`` for every input with ``requires_grad``.

    Returns True, or raises GradcheckError naming the input and worst element (or returns False
    with ``raise_exception=False``)."""
    inputs = _prepare(inputs)
    rng = np.random.default_rng(seed)
    outs = _as_outputs(fn(*inputs))
    vs = [rng.standard_normal(o.shape) for o in outs]
    wrt = [i for i, x in enumerate(inputs) if x.requires_grad]
    if not wrt:
        raise ValueError("gradcheck: no input has requires_grad=True")
    live = [(o, v) for o, v in zip(outs, vs) if o.requires_grad]
    analytic = grad([o for o, _ in live], [inputs[i] for i in wrt],
                    grad_outputs=[Tensor(v.astype(o.dtype)) for o, v in live], allow_unused=True)
    for i, g in zip(wrt, analytic):
        a = np.zeros(inputs[i].shape) if g is None else backend.as_numpy(g.data).astype(np.float64)
        n = _numeric_grad(fn, inputs, vs, i, eps)
        if not np.allclose(a, n, atol=atol, rtol=rtol):
            if raise_exception:
                raise GradcheckError(_report("gradcheck", i, a, n, atol, rtol))
            return False
    return True


def gradgradcheck(fn, inputs, eps=1e-6, atol=1e-4, rtol=1e-3, seed=1, raise_exception=True):
    """Check second derivatives: gradcheck of x -> <v, d<u, fn(x)>/dx> with random u and v.

    The first gradient is taken with ``create_graph=True``, so this tests that every backward
    rule is itself differentiable and right."""
    inputs = _prepare(inputs)
    rng = np.random.default_rng(seed)
    outs = _as_outputs(fn(*inputs))
    us = [Tensor(rng.standard_normal(o.shape)) for o in outs]
    wrt = [i for i, x in enumerate(inputs) if x.requires_grad]

    def first_grads(*xs):
        with enable_grad():   # finite differences call this under no_grad; it needs a graph
            return _first_grads(*xs)

    def _first_grads(*xs):
        live = [(o, u) for o, u in zip(_as_outputs(fn(*xs)), us) if o.requires_grad]
        gs = grad([o for o, _ in live], [xs[i] for i in wrt], grad_outputs=[u for _, u in live],
                  create_graph=True, allow_unused=True)
        return [g if g is not None else Tensor(np.zeros(xs[i].shape))
                for i, g in zip(wrt, gs)]

    return gradcheck(first_grads, inputs, eps=eps, atol=atol, rtol=rtol, seed=seed,
                     raise_exception=raise_exception)
