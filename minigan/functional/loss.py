"""Losses with PyTorch's names, arguments and reductions ('mean', 'sum', 'none')."""
from ..autograd import Tensor, as_tensor
from .activation import log_softmax, softplus
from .elementwise import clip, log
from .shape import getitem
from .. import backend


# Below e^-100, so the clamp of the log at -100 (PyTorch's) still sets the value; above float32's
# smallest subnormal, so it is not rounded to 0.
_TINY = 1e-44


def _reduce(loss, reduction):
    if reduction == "mean":
        return loss.mean()
    if reduction == "sum":
        return loss.sum()
    if reduction == "none":
        return loss
    raise ValueError(f"reduction must be 'mean', 'sum' or 'none', got {reduction!r}")


def _same_shape(name, a, b):
    if a.shape != b.shape:
        raise ValueError(f"{name}: input has shape {a.shape} but target has shape {b.shape}; "
                         "they must match")


def binary_cross_entropy_with_logits(logits, target, reduction="mean"):
    """-[t log sigmoid(x) + (1 - t) log(1 - sigmoid(x))] = softplus(x) - t x.

    Written through softplus, it stays finite and exact for logits of +-100, where computing
    sigmoid first would give log(0). Its gradient is sigmoid(x) - t."""
    logits = as_tensor(logits)
    target = as_tensor(target, like=logits)
    _same_shape("binary_cross_entropy_with_logits", logits, target)
    return _reduce(softplus(logits) - logits * target, reduction)


def binary_cross_entropy(probs, target, reduction="mean"):
    """-[t log p + (1 - t) log(1 - p)] with each log clamped at -100, as PyTorch does."""
    probs = as_tensor(probs)
    target = as_tensor(target, like=probs)
    _same_shape("binary_cross_entropy", probs, target)
    xp = backend.array_module(probs.data)
    # PyTorch's check; NaN passes it here, to reach the training loop's non-finite loss check
    if probs.data.size and bool(xp.any((probs.data < 0) | (probs.data > 1))):
        p = probs.data
        raise ValueError(f"binary_cross_entropy: every input must be between 0 and 1, got values "
                         f"in [{float(xp.nanmin(p))}, {float(xp.nanmax(p))}]; for logits use "
                         "binary_cross_entropy_with_logits")
    # log's argument is clamped too: at p of exactly 0 or 1 the log's backward would compute
    # 0 / 0 = nan, even where the target agrees and the gradient should be 0
    log_p = clip(log(clip(probs, min=_TINY)), min=-100.0)
    log_1mp = clip(log(clip(1 - probs, min=_TINY)), min=-100.0)
    return _reduce(-(target * log_p + (1 - target) * log_1mp), reduction)


def mse_loss(input, target, reduction="mean"):  # noqa: A002 - PyTorch's name
    input = as_tensor(input)
    target = as_tensor(target, like=input)
    _same_shape("mse_loss", input, target)
    diff = input - target
    return _reduce(diff * diff, reduction)


def nll_loss(log_probs, target, reduction="mean"):
    """-log_probs[i, target[i]] for log-probabilities of shape (N, C) and class indices (N,)."""
    log_probs = as_tensor(log_probs)
    t = target.data if isinstance(target, Tensor) else target   # a CuPy array's .data: a pointer
    xp = backend.array_module(log_probs.data)
    t = xp.asarray(t)
    if log_probs.ndim != 2 or t.shape != (log_probs.shape[0],):
        raise ValueError(f"nll_loss: expected input (N, C) and target (N,), got {log_probs.shape} "
                         f"and {tuple(t.shape)}")
    if t.dtype.kind not in "iu":
        raise TypeError(f"nll_loss: target must hold integer class indices, got dtype {t.dtype}")
    if t.size and (int(t.min()) < 0 or int(t.max()) >= log_probs.shape[1]):
        bad = t[(t < 0) | (t >= log_probs.shape[1])]
        raise ValueError(f"nll_loss: target {int(bad.ravel()[0])} is out of range [0, "
                         f"{log_probs.shape[1]}) ({int(bad.size)} bad of {int(t.size)})")
    picked = getitem(log_probs, (xp.arange(t.shape[0]), t))
    return _reduce(-picked, reduction)


def cross_entropy(logits, target, reduction="mean"):
    """nll_loss(log_softmax(logits)) for logits (N, C) and integer targets (N,)."""
    logits = as_tensor(logits)
    if logits.ndim != 2:
        raise ValueError(f"cross_entropy: expected logits (N, C), got shape {logits.shape}")
    return nll_loss(log_softmax(logits, dim=1), target, reduction)
