"""Adam's update on NumPy arrays: the whole step in one pass over each parameter, on all cores.

Written with NumPy the step is eleven passes over the parameter, its gradient and two moment
arrays (m *= b1, m += (1-b1) g, v *= b2, ...), each on one core; the DCGAN's 1.9 M parameters took
3.4 ms of CPU per iteration like that, while the other core idled. Here each element is read and
written once, in the same order of operations and in the arrays' own dtype, so the result is
the same to the last bit as the NumPy code's (no fused multiply-add: numba, like NumPy, rounds
each product before adding).
"""
import math

import numba
import numpy as np

from .cpu_threads import run_tasks

# Elements per task: big enough that splitting costs nothing, small enough to share out evenly.
_BLOCK = 1 << 14
# Unsigned loop indices: numba checks every signed index for negative values, which stops LLVM
# from vectorising the loop.
_u = numba.uintp
# Split over threads from 4 * cpu_threads.MIN_PARALLEL_ELEMENTS = 2^18 elements: the step
# touches seven arrays per element, so half of 2^18 elements is worth a ~40 us hand-off.
_SPLIT_SCALE = 4


# error_model="numpy": a division by zero gives inf as in NumPy instead of a check that raises
# ZeroDivisionError, which kept LLVM from vectorising the loop (6x slower measured).
@numba.njit(cache=True, nogil=True, error_model="numpy")
def _adam(p, g, m, v, b1, c1, b2, c2, inv_bc2_sqrt, eps, step, weight_decay, t0, t1):
    """For elements [t0*_BLOCK, t1*_BLOCK) of the flat arrays, with c1 = 1 - b1, c2 = 1 - b2,
    inv_bc2_sqrt = 1/sqrt(1 - b2^t), step = lr / (1 - b1^t), all in the arrays' dtype:
    g' = g + weight_decay p (when weight_decay != 0), m = b1 m + c1 g', v = b2 v + c2 g'^2,
    p -= step * m / (sqrt(v) inv_bc2_sqrt + eps)."""
    for i in range(_u(t0 * _BLOCK), _u(min(t1 * _BLOCK, p.size))):
        gi = g[i]
        if weight_decay != 0:
            gi = gi + weight_decay * p[i]
        mi = m[i] * b1 + gi * c1
        vi = v[i] * b2 + (gi * gi) * c2
        m[i] = mi
        v[i] = vi
        p[i] = p[i] - (mi / (np.sqrt(vi) * inv_bc2_sqrt + eps)) * step


def adam_step(p, g, m, v, lr, beta1, beta2, eps, weight_decay, t):
    """One Adam step (PyTorch's torch.optim.Adam, not AdamW) in place on p, m (exp_avg) and
    v (exp_avg_sq), at step number t >= 1; all four arrays flat-contiguous, one shape, one dtype."""
    dt = p.dtype.type
    run_tasks(_adam, (p.size + _BLOCK - 1) // _BLOCK, p.size,
              p.reshape(-1), g.reshape(-1), m.reshape(-1), v.reshape(-1),
              dt(beta1), dt(1 - beta1), dt(beta2), dt(1 - beta2),
              dt(1 / math.sqrt(1 - beta2 ** t)), dt(eps), dt(lr / (1 - beta1 ** t)),
              dt(weight_decay), scale=_SPLIT_SCALE)
