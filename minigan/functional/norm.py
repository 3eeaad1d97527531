"""Batch normalisation with PyTorch's semantics.

    y = (x - mean) / sqrt(var + eps) * weight + bias,   per channel over (N, H, W)

Training normalises with the batch's biased variance and updates the running estimates with the
unbiased one; evaluation uses the running estimates. The running statistics are buffers updated
outside the graph, so the graph never grows from step to step.
"""
from .. import autograd, backend, kernels
from ..autograd import Function, Tensor, as_tensor
from .activation import LeakyReLUGrad, leaky_relu
from .reduce import mean as _mean
from .reduce import sum as _sum
from .shape import reshape


def _axes(x):
    return (0,) if x.ndim == 2 else (0, 2, 3)


def _per_channel(t, x):
    return reshape(t, (1, -1) + (1,) * (x.ndim - 2))


def _wrap_grads(gx, affine):
    """The fused kernels' raw gradients as the backward's tuple: (gx,) or (gx, gw, gb)."""
    return (Tensor._wrap(gx),) + (() if affine is None else tuple(map(Tensor._wrap, affine)))


class BatchNormTrain(Function):
    """Normalise with the batch statistics; fused forward and backward kernels.

    With ``create_graph=True`` the backward is instead written with differentiable ops (the
    statistics recomputed from x), so second derivatives are right, not zero."""
    saved_inputs = (0, 1)   # x and weight; the bias gradient needs only gy

    def forward(self, x, weight=None, bias=None, eps=1e-5, stats=None):
        """``stats``, a list, receives the batch's (mean, var) for the running estimates."""
        return self._normalise(x, weight, bias, eps, 1.0, stats)

    def _normalise(self, x, weight, bias, eps, negative_slope, stats):
        y, self.mean, var, self.invstd = kernels.batchnorm_train_forward(x, weight, bias, eps,
                                                                         negative_slope)
        self.eps = eps
        if stats is not None:
            stats.extend((self.mean, var))
        return y

    def backward(self, gy):
        x = self.inputs[0]
        w = self.inputs[1] if len(self.inputs) > 1 else None
        if autograd.is_grad_enabled():
            return self._differentiable_backward(gy, x, w)
        gx, gw, gb = kernels.batchnorm_backward(gy.data, x.data, self.mean, self.invstd,
                                                None if w is None else w.data)
        return _wrap_grads(gx, None if w is None else (gw, gb))

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


class BatchNormLeakyReLUTrain(BatchNormTrain):
    """z = leaky_relu(batch norm with the batch statistics, negative_slope), slope >= 0, in one
    kernel pass forward and one backward: z is written without the normalised y ever being
    stored, and the activation's gradient (1 where z > 0, else the slope: z > 0 exactly where
    y > 0) is applied inside batch norm's backward instead of in a pass of its own."""

    def forward(self, x, weight=None, bias=None, eps=1e-5, negative_slope=0.0, stats=None):
        self.slope = negative_slope
        self.z = self._normalise(x, weight, bias, eps, negative_slope, stats)
        return self.z

    def backward(self, gz):
        x = self.inputs[0]
        w = self.inputs[1] if len(self.inputs) > 1 else None
        if autograd.is_grad_enabled():
            gy = LeakyReLUGrad.apply(gz, x=self.z, negative_slope=self.slope)
            return self._differentiable_backward(gy, x, w)
        gx, gw, gb = kernels.batchnorm_leaky_relu_backward(
            gz.data, self.z, x.data, self.mean, self.invstd, None if w is None else w.data,
            self.slope)
        return _wrap_grads(gx, None if w is None else (gw, gb))


def _update_running(running_mean, running_var, mean, var, count, momentum):
    """The running estimates move towards the batch's mean and unbiased variance (count values
    per channel), in place, after the forward succeeded; their versions move with them."""
    if running_mean is not None:
        running_mean.data *= 1 - momentum
        running_mean.data += (momentum * mean).astype(running_mean.dtype)
        running_mean._bump_version()
    if running_var is not None:
        running_var.data *= 1 - momentum
        running_var.data += (momentum * var * count / (count - 1)).astype(running_var.dtype)
        running_var._bump_version()


def batch_norm(input, running_mean, running_var, weight=None, bias=None,  # noqa: A002
               training=False, momentum=0.1, eps=1e-5):
    """Batch norm of (N, C) or (N, C, H, W) input (``torch.nn.functional.batch_norm``)."""
    return _batch_norm(input, running_mean, running_var, weight, bias, training, momentum, eps)


def batch_norm_leaky_relu(input, running_mean, running_var, weight=None, bias=None,  # noqa: A002
                          training=False, momentum=0.1, eps=1e-5, negative_slope=0.0):
    """``leaky_relu(batch_norm(input, ...), negative_slope)`` (ReLU: slope 0), the same numbers;
    in training mode with negative_slope >= 0 computed by one fused op (one memory pass each
    way instead of two), otherwise by the two ops in turn."""
    slope = float(negative_slope)
    if training and slope >= 0:
        return _batch_norm(input, running_mean, running_var, weight, bias, training, momentum,
                           eps, slope)
    return leaky_relu(batch_norm(input, running_mean, running_var, weight, bias, training,
                                 momentum, eps), slope)


def _checked_input(op, input, running_mean, running_var, weight, bias):  # noqa: A002
    """(input as a Tensor, its channel count) after the shape checks every batch norm makes:
    (N, C) or (N, C, H, W) input, per-channel (C,) weight, bias and running statistics, weight
    and bias both given or both None; ValueError naming ``op`` otherwise."""
    x = as_tensor(input)
    if x.ndim not in (2, 4):
        raise ValueError(f"{op} expects (N, C) or (N, C, H, W) input, got shape {x.shape}")
    channels = x.shape[1]
    for name, t in (("weight", weight), ("bias", bias), ("running_mean", running_mean),
                    ("running_var", running_var)):
        if t is not None and tuple(t.shape) != (channels,):
            raise ValueError(f"{op}: {name} has shape {tuple(t.shape)} but the input has "
                             f"{channels} channels")
    if (weight is None) != (bias is None):
        raise ValueError(f"{op}: pass both weight and bias, or neither")
    return x, channels


def _batch_norm(input, running_mean, running_var, weight, bias, training,  # noqa: A002
                momentum, eps, negative_slope=None):
    """batch_norm, followed in training mode by a LeakyReLU of that slope when one is given."""
    x, channels = _checked_input("batch_norm", input, running_mean, running_var, weight, bias)
    # every check before any running statistic moves: a refused call changes no state
    if x.dtype.kind != "f":
        raise TypeError(f"batch_norm: input must be float32 or float64, got dtype {x.dtype}")
    for name, t in (("weight", weight), ("bias", bias)):
        if t is not None and t.dtype != x.dtype:
            raise TypeError(f"batch_norm: input dtype {x.dtype} and {name} dtype {t.dtype} differ")
    if not 0 <= momentum <= 1:
        raise ValueError(f"batch_norm: momentum must be in [0, 1], got {momentum}")
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
    stats = []
    if negative_slope is None:
        y = BatchNormTrain.apply(x, *affine, eps=eps, stats=stats)
    else:
        y = BatchNormLeakyReLUTrain.apply(x, *affine, eps=eps, negative_slope=negative_slope,
                                          stats=stats)
    _update_running(running_mean, running_var, *stats, count, momentum)
    return y


# --- batch norm over the ranks of a data-parallel run --------------------------------------------

class SyncBatchNormTrain(Function):
    """Training-mode batch norm whose statistics are those of the global batch: the union of
    every rank's batch (``comm``: see :mod:`minigan.functional.collective`).

    Forward, per channel c, with M = the global count of values per channel (sum of the ranks'
    N*H*W) and each rank's x of shape (N_r, C[, H, W]):

        mean = allreduce(sum x) / M,   var = allreduce(sum x^2) / M - mean^2   (sums in float64)
        y = (x - mean) * invstd * weight + bias,   invstd = 1 / sqrt(var + eps)

    with mean and var rounded to x's dtype before invstd is taken, as :func:`batch_norm` does:
    then they are, but for a float64 rounding tie, the numbers batch_norm finds on the whole
    batch, and the step is the single process's to rounding (tests/distributed).

    Backward, with the run's loss L = sum_r L_r (so each rank's gy is dL/dy on its own slice):

        gb_r = sum gy,   gw_r = sum gy * xhat                  (this rank's sums)
        gx = weight * invstd / M * (M gy - allreduce(gb_r) - xhat * allreduce(gw_r))

    which is single-process batch norm's backward over the global batch, restricted to this
    rank's rows. weight and bias get this rank's sums gw_r and gb_r: the gradient averaging of
    :meth:`~minigan.distributed.MpiCommunicator.allreduce_grad` adds them up (and divides by the
    ranks, as for every other parameter). With ``create_graph=True`` the backward is written with
    differentiable ops and :func:`all_reduce_sum`, so second derivatives are right too.

    Every rank must run this forward and its backward in the same order (they are collectives).
    """

    def forward(self, x, weight=None, bias=None, mean=None, invstd=None, count=None, comm=None,
                eps=1e-5):
        self.mean, self.invstd, self.count, self.comm, self.eps = mean, invstd, count, comm, eps
        return kernels.batchnorm_forward(x, mean, invstd, weight, bias)

    def backward(self, gy):
        x = self.inputs[0]
        w = self.inputs[1] if len(self.inputs) > 1 else None
        if autograd.is_grad_enabled():
            return self._differentiable_backward(gy, x, w)
        xp = backend.array_module(x.data)
        # The fused kernel gives this rank's sums gb_r, gw_r and its gx over its own rows alone
        # (count m); the global gx differs from that by a per-channel affine function of x:
        #   gx - gx_r = w invstd [(gb_r/m - gb/M) + xhat (gw_r/m - gw/M)] = a + (x - mean) c
        # which the fused forward kernel evaluates in one pass.
        w_data = None if w is None else w.data
        gx, gw_r, gb_r = kernels.batchnorm_backward(gy.data, x.data, self.mean, self.invstd,
                                                    w_data)
        channels = x.shape[1]
        sums = self.comm.allreduce(xp.concatenate([gb_r, gw_r]).astype(xp.float64), "sum")
        m, M = x.numel() // channels, self.count
        scale = self.invstd.astype(xp.float64)
        if w is not None:
            scale = scale * w_data
        a = scale * (gb_r / m - sums[:channels] / M)
        c = scale * self.invstd * (gw_r / m - sums[channels:] / M)
        gx += kernels.batchnorm_forward(x.data, self.mean, c.astype(x.dtype), None,
                                        a.astype(x.dtype))
        return _wrap_grads(gx, None if w is None else (gw_r, gb_r))

    def _differentiable_backward(self, gy, x, w):
        from .collective import all_reduce_sum
        axes = _axes(x)
        count = self.count
        mean = all_reduce_sum(_sum(x, axes), self.comm) * (1.0 / count)
        centred = x - _per_channel(mean, x)
        var = all_reduce_sum(_sum(centred * centred, axes), self.comm) * (1.0 / count)
        invstd = _per_channel((var + self.eps) ** -0.5, x)
        xhat = centred * invstd
        gb = _sum(gy, axes)
        gw = _sum(gy * xhat, axes)
        gb_all = all_reduce_sum(gb, self.comm)
        gw_all = all_reduce_sum(gw, self.comm)
        scale = invstd if w is None else invstd * _per_channel(w, x)
        gx = scale * (1.0 / count) * (count * gy - _per_channel(gb_all, x)
                                      - xhat * _per_channel(gw_all, x))
        return (gx,) if w is None else (gx, gw, gb)


def sync_batch_norm(input, running_mean, running_var, weight=None, bias=None,  # noqa: A002
                    training=False, momentum=0.1, eps=1e-5, comm=None):
    """:func:`batch_norm` with the statistics of the batch of every rank of ``comm`` put together
    (:class:`SyncBatchNormTrain`); the same as :func:`batch_norm` in evaluation mode (running
    estimates, no communication) and when ``comm`` is None or has one rank."""
    if not training or comm is None or comm.size == 1:
        return batch_norm(input, running_mean, running_var, weight, bias, training, momentum, eps)
    x, channels = _checked_input("sync_batch_norm", input, running_mean, running_var, weight,
                                 bias)
    xp = backend.array_module(x.data)
    local = x.numel() // channels if channels else 0
    if local == 0:
        raise ValueError(f"sync_batch_norm: this rank's input {x.shape} is empty; every rank "
                         "needs rows (ShardedBatches gives each the same number)")
    # This rank's statistics of a float64 copy: statistics rounded to float32 before the ranks
    # add them would differ from the global batch's by an ulp, and the global mean and variance
    # are to round to the very numbers batch_norm's would on the whole batch.
    mean_r, var_r = kernels.batchnorm_stats(x.data.astype(xp.float64, copy=False))
    # sum x and sum x^2 per channel, and the count, in one message (float64: the variance below
    # subtracts two sums, which float32 would leave with ~1e-7 * mean^2 of rounding)
    sums = comm.allreduce(xp.concatenate([local * mean_r, local * (var_r + mean_r * mean_r),
                                          xp.full(1, float(local))]), "sum")
    count = int(round(float(sums[-1])))
    if count <= 1:
        raise ValueError(f"sync_batch_norm in training mode needs more than one value per channel "
                         f"over all ranks, got {count} (this rank's input shape {x.shape})")
    mean = sums[:channels] / count
    var = xp.maximum(sums[channels:2 * channels] / count - mean * mean, 0.0).astype(x.dtype)
    mean = mean.astype(x.dtype)
    invstd = (1.0 / xp.sqrt(var + eps)).astype(x.dtype)     # as batch_norm computes it
    affine = () if weight is None else (weight, bias)
    y = SyncBatchNormTrain.apply(x, *affine, mean=mean, invstd=invstd, count=count, comm=comm,
                                 eps=eps)
    _update_running(running_mean, running_var, mean, var, count, momentum)
    return y


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
    if x.dtype.kind != "f":
        raise TypeError(f"instance_norm: input must be float32 or float64, got dtype {x.dtype}")
    if h * w <= 1:
        raise ValueError(f"instance_norm needs more than one value per channel, got input shape "
                         f"{x.shape}")
    flat = reshape(x, (1, n * channels, h, w))
    stats = []
    y = reshape(BatchNormTrain.apply(flat, eps=eps, stats=stats), x.shape)
    if running_mean is not None:
        mean, var = (s.reshape(n, channels).mean(axis=0) for s in stats)
        count = h * w
        running_mean.data *= 1 - momentum
        running_mean.data += (momentum * mean).astype(running_mean.dtype)
        running_var.data *= 1 - momentum
        running_var.data += (momentum * var * count / (count - 1)).astype(running_var.dtype)
        running_mean._bump_version()
        running_var._bump_version()
    if weight is None:
        return y
    return y * _per_channel(weight, x) + _per_channel(bias, x)
