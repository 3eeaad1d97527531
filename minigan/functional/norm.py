"""Batch normalisation with PyTorch's semantics.

    y = (x - mean) / sqrt(var + eps) * weight + bias,   per channel over (N, H, W)

Training normalises with the batch's biased variance and updates the running estimates with the
unbiased one; evaluation uses the running estimates. The running statistics are buffers updated
outside the graph, so the graph never grows from step to step.
"""
from .. import autograd, backend, kernels
from ..autograd import Function, Tensor, as_tensor
from .reduce import mean as _mean
from .reduce import sum as _sum
from .shape import reshape


def _axes(x):
    return (0,) if x.ndim == 2 else (0, 2, 3)


def _per_channel(t, x):
    return reshape(t, (1, -1) + (1,) * (x.ndim - 2))


class BatchNormTrain(Function):
    """Normalise with the batch statistics; fused forward and backward kernels.

    With ``create_graph=True`` the backward is instead written with differentiable ops (the
    statistics recomputed from x), so second derivatives are right, not zero."""

    def forward(self, x, weight=None, bias=None, mean=None, invstd=None, eps=1e-5):
        self.mean, self.invstd, self.eps = mean, invstd, eps
        return kernels.batchnorm_forward(x, mean, invstd, weight, bias)

    def backward(self, gy):
        x = self.inputs[0]
        w = self.inputs[1] if len(self.inputs) > 1 else None
        if autograd.is_grad_enabled():
            return self._differentiable_backward(gy, x, w)
        gx, gw, gb = kernels.batchnorm_backward(gy.data, x.data, self.mean, self.invstd,
                                                None if w is None else w.data)
        grads = (Tensor._wrap(gx),)
        if w is not None:
            grads += (Tensor._wrap(gw), Tensor._wrap(gb))
        return grads

    def _differentiable_backward(self, gy, x, w):
        axes = _axes(x)
        count = x.numel() // x.shape[1]
        centred = x - _mean(x, axes, keepdims=True)
        invstd = (_mean(centred * centred, axes, keepdims=True) + self.eps) ** -0.5
        xhat = centred * invstd
        gb = _sum(gy, axes)
        gw = _sum(gy * xhat, axes)
        scale = invstd if w is None else invstd * _per_channel(w, x)
        gx = scale * (1.0 / count) * (count * gy - _per_channel(gb, x) - xhat * _per_channel(gw, x))
        return (gx,) if w is None else (gx, gw, gb)


def batch_norm(input, running_mean, running_var, weight=None, bias=None,  # noqa: A002
               training=False, momentum=0.1, eps=1e-5):
    """Batch norm of (N, C) or (N, C, H, W) input (``torch.nn.functional.batch_norm``)."""
    x = as_tensor(input)
    if x.ndim not in (2, 4):
        raise ValueError(f"batch_norm expects (N, C) or (N, C, H, W) input, got shape {x.shape}")
    channels = x.shape[1]
    for name, t in (("weight", weight), ("bias", bias), ("running_mean", running_mean),
                    ("running_var", running_var)):
        if t is not None and tuple(t.shape) != (channels,):
            raise ValueError(f"batch_norm: {name} has shape {tuple(t.shape)} but the input has "
                             f"{channels} channels")
    if (weight is None) != (bias is None):
        raise ValueError("batch_norm: pass both weight and bias, or neither")
    affine = () if weight is None else (weight, bias)
    if not training:
        if running_mean is None or running_var is None:
            raise ValueError("batch_norm in evaluation mode needs running_mean and running_var")
        scale = (running_var + eps) ** -0.5
        if weight is not None:
            scale = scale * weight
        y = (x - _per_channel(running_mean, x)) * _per_channel(scale, x)
        return y + _per_channel(bias, x) if bias is not None else y
    count = x.numel() // channels
    if count <= 1:
        raise ValueError(f"batch_norm in training mode needs more than one value per channel, "
                         f"got input shape {x.shape}")
    mean, var = kernels.batchnorm_stats(x.data)
    xp = backend.array_module(x.data)
    invstd = (1.0 / xp.sqrt(var + eps)).astype(x.dtype)
    if running_mean is not None:
        running_mean.data *= 1 - momentum
        running_mean.data += (momentum * mean).astype(running_mean.dtype)
    if running_var is not None:
        running_var.data *= 1 - momentum
        running_var.data += (momentum * var * count / (count - 1)).astype(running_var.dtype)
    return BatchNormTrain.apply(x, *affine, mean=mean.astype(x.dtype), invstd=invstd, eps=eps)


def instance_norm(input, running_mean=None, running_var=None, weight=None, bias=None,  # noqa: A002
                  use_input_stats=True, momentum=0.1, eps=1e-5):
    """Instance norm of (N, C, H, W) input (``torch.nn.functional.instance_norm``):

        y[n, c] = (x[n, c] - mean[n, c]) / sqrt(var[n, c] + eps) * weight[c] + bias[c]

    with the mean and biased variance of each image's channel over (H, W). That is batch norm of
    the same values viewed as (1, N*C, H, W), so the batch-norm kernels (CPU and GPU) and their
    fused and differentiable backwards do the work; the affine (C,) is applied per channel after.
    running_mean / running_var, when given, are updated with the batch's average of the
    per-instance statistics (the variance unbiased, as batch norm does); ``use_input_stats=False``
    normalises with them instead.
    """
    x = as_tensor(input)
    if x.ndim != 4:
        raise ValueError(f"instance_norm expects (N, C, H, W) input, got shape {x.shape}")
    n, channels, h, w = x.shape
    for name, t in (("weight", weight), ("bias", bias), ("running_mean", running_mean),
                    ("running_var", running_var)):
        if t is not None and tuple(t.shape) != (channels,):
            raise ValueError(f"instance_norm: {name} has shape {tuple(t.shape)} but the input "
                             f"has {channels} channels")
    if (weight is None) != (bias is None):
        raise ValueError("instance_norm: pass both weight and bias, or neither")
    if (running_mean is None) != (running_var is None):
        raise ValueError("instance_norm: pass both running_mean and running_var, or neither")
    if not use_input_stats:
        if running_mean is None:
            raise ValueError("instance_norm with use_input_stats=False needs running_mean and "
                             "running_var")
        return batch_norm(x, running_mean, running_var, weight, bias, training=False, eps=eps)
    if h * w <= 1:
        raise ValueError(f"instance_norm needs more than one value per channel, got input shape "
                         f"{x.shape}")
    flat = reshape(x, (1, n * channels, h, w))
    mean, var = kernels.batchnorm_stats(flat.data)
    xp = backend.array_module(x.data)
    if running_mean is not None:
        count = h * w
        running_mean.data *= 1 - momentum
        running_mean.data += (momentum * mean.reshape(n, channels).mean(axis=0)).astype(
            running_mean.dtype)
        unbiased = var.reshape(n, channels).mean(axis=0) * count / (count - 1)
        running_var.data *= 1 - momentum
        running_var.data += (momentum * unbiased).astype(running_var.dtype)
    invstd = (1.0 / xp.sqrt(var + eps)).astype(x.dtype)
    y = reshape(BatchNormTrain.apply(flat, mean=mean.astype(x.dtype), invstd=invstd, eps=eps),
                x.shape)
    if weight is None:
        return y
    return y * _per_channel(weight, x) + _per_channel(bias, x)
