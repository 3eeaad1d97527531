"""Batch normalisation on NumPy arrays: per-channel statistics, forward, training-mode backward,
each optionally followed by a LeakyReLU (ReLU: slope 0) in the same pass.

x is (N, C) or (N, C, H, W); the kernels see it as (N, C, S) with S = H*W (S = 1 for 2-D), so a
channel is N runs of S contiguous numbers. Reductions take a group of neighbouring channels per
task (_groups), spread over the cores by cpu_threads.run_tasks. Sums are accumulated in float64
whatever the array dtype, so float32 statistics are as good as float64 ones to float32
precision; results come back in the array dtype.
"""
import numba
import numpy as np

from . import cpu_memory
from .cpu_threads import num_threads, run_tasks

# Let LLVM reorder (vectorise) the float64 sums and fuse multiply-adds, but keep IEEE NaN/inf
# semantics (no 'nnan'/'ninf'), so a NaN in the batch still comes out as NaN.
_FAST = {"reassoc", "contract"}


# Channels per reduction task: enough that the task reads runs of at least _RUN contiguous numbers
# (a group's channels are neighbours in memory for each image). One channel's 64 runs of 49-196
# numbers, 100 KB apart, left the hardware prefetchers behind: G2's batch-norm backward at batch
# 64 took 2.2x as long on one core.
_RUN = 1024
# Split over the cores from SPLIT_SCALE * cpu_threads.MIN_PARALLEL_ELEMENTS = 2^18 elements: a
# batch norm's forward and its backward are one hand-off each, which a second core repays on
# D2's (64, 128, 7, 7), 401,408 numbers.
SPLIT_SCALE = 4


def _groups(x):
    """(channels per task, tasks) for a reduction over x (N, C, S)."""
    N, C, S = x.shape
    per = max(1, min(-(-_RUN // max(S, 1)), C // (2 * num_threads())))
    return per, -(-C // per)


@numba.njit(cache=True, nogil=True, fastmath=_FAST)
def _channel_stats(x, c0, c1, mean, var):
    """mean[c] = sum x[:, c, :] / M and var[c] = sum (x[:, c, :] - mean[c])**2 / M, M = N*S,
    for the neighbouring channels c0 <= c < c1.

    Two passes over the channels (the second mostly hits the cache) rather than sum of squares
    minus squared mean, which cancels catastrophically when |mean| >> std.
    """
    N, C, S = x.shape
    M = N * S
    for c in range(c0, c1):
        mean[c] = 0.0
        var[c] = 0.0
    for n in range(N):
        for c in range(c0, c1):
            s = 0.0
            for p in range(S):
                s += x[n, c, p]
            mean[c] += s
    for c in range(c0, c1):
        mean[c] /= M
    for n in range(N):
        for c in range(c0, c1):
            mu = mean[c]
            q = 0.0
            for p in range(S):
                d = x[n, c, p] - mu
                q += d * d
            var[c] += q
    for c in range(c0, c1):
        var[c] /= M


@numba.njit(cache=True, nogil=True, fastmath=_FAST)
def _stats(x, per, mean, var, t0, t1):
    """_channel_stats of the channels of tasks t0 <= t < t1, ``per`` neighbouring channels a
    task (mean and var float64)."""
    C = x.shape[1]
    for t in range(t0, t1):
        _channel_stats(x, t * per, min(C, (t + 1) * per), mean, var)


@numba.njit(cache=True, nogil=True, fastmath=_FAST)
def _forward(x, mean, scale, bias, slope, y, t0, t1):
    """y[n, c, :] = leaky((x[n, c, :] - mean[c]) * scale[c] + bias[c]) with leaky(v) = v if v > 0
    else slope * v (slope 1: plain batch norm, exactly); one task per (n, c) run."""
    N, C, S = x.shape
    for t in range(t0, t1):  # t = n*C + c
        n = t // C
        c = t - n * C
        mu = mean[c]
        a = scale[c]
        b = bias[c]
        for p in range(S):
            v = (x[n, c, p] - mu) * a + b
            y[n, c, p] = v if v > 0 else v * slope


@numba.njit(cache=True, nogil=True, fastmath=_FAST)
def _backward(gz, z, x, mean, invstd, weight, slope, per, gx, gweight, gbias, t0, t1):
    """Training-mode backward of z = leaky(batchnorm(x)) for the channels of tasks t0 <= t < t1
    (``per`` neighbouring channels a task: sums, then gx from them while the channels are still
    in cache). The activation's gradient is taken from its output z (z > 0 exactly where its
    input is, for slope >= 0): gy = gz if z > 0 else slope*gz (slope 1: plain batch norm, z
    unused). With xhat = (x - mean)*invstd and M = N*S:
    gbias = sum gy, gweight = sum gy*xhat, gx = weight*invstd * (gy - gbias/M - xhat*gweight/M);
    gweight and gbias are float64 arrays, the per-channel sums while the task runs.
    """
    N, C, S = x.shape
    M = N * S
    for t in range(t0, t1):
        c0, c1 = t * per, min(C, (t + 1) * per)
        for c in range(c0, c1):
            gbias[c] = 0.0
            gweight[c] = 0.0
        for n in range(N):
            for c in range(c0, c1):
                mu = mean[c]
                sg = 0.0
                sgx = 0.0
                for p in range(S):
                    g = gz[n, c, p] if z[n, c, p] > 0 else gz[n, c, p] * slope
                    sg += g
                    sgx += g * (x[n, c, p] - mu)
                gbias[c] += sg
                gweight[c] += sgx
        for c in range(c0, c1):
            gweight[c] *= invstd[c]
        for n in range(N):
            for c in range(c0, c1):
                mu = mean[c]
                r = invstd[c]
                a = weight[c] * r
                # gx = a*gy - a*sg/M - (x - mu) * a*r*sgx/M, coefficients formed in float64
                b = a * gbias[c] / M
                k = a * r * gweight[c] / M
                for p in range(S):
                    g = gz[n, c, p] if z[n, c, p] > 0 else gz[n, c, p] * slope
                    gx[n, c, p] = a * g - b - (x[n, c, p] - mu) * k


@numba.njit(cache=True, nogil=True, fastmath=_FAST)
def _train_forward(x, per, eps, weight, bias, slope, mean64, var64, mean, var, invstd, z, t0, t1):
    """Training-mode z = leaky(batchnorm(x)) with the batch's statistics, for the channels of
    tasks t0 <= t < t1: each task takes the statistics of its ``per`` channels (float64 mean64,
    var64), rounds them to x's dtype (mean, var), forms invstd = 1 / sqrt(var + eps) and then
    writes z for the same channels while they are still in cache: the numbers _stats, the NumPy
    invstd and _forward give, in one pass of the threads instead of two."""
    N, C, S = x.shape
    for t in range(t0, t1):
        c0, c1 = t * per, min(C, (t + 1) * per)
        _channel_stats(x, c0, c1, mean64, var64)
        for c in range(c0, c1):
            mean[c] = mean64[c]
            var[c] = var64[c]
            invstd[c] = 1.0 / np.sqrt(var[c] + eps)   # both rounded to x's dtype, as NumPy does
        for n in range(N):
            for c in range(c0, c1):
                mu = mean[c]
                a = invstd[c] * weight[c]
                b = bias[c]
                for p in range(S):
                    v = (x[n, c, p] - mu) * a + b
                    z[n, c, p] = v if v > 0 else v * slope


def _as_ncs(x):
    return x.reshape(x.shape[0], x.shape[1], -1)


def batchnorm_stats(x):
    """(mean, var) of x (N, C[, H, W]) per channel, shapes (C,), var biased (divided by N*H*W)."""
    C = x.shape[1]
    mean = np.empty(C, np.float64)
    var = np.empty(C, np.float64)
    per, tasks = _groups(_as_ncs(x))
    run_tasks(_stats, tasks, x.size, _as_ncs(x), per, mean, var, scale=SPLIT_SCALE)
    return mean.astype(x.dtype), var.astype(x.dtype)


def batchnorm_train_forward(x, weight, bias, eps, negative_slope):
    """(z, mean, var, invstd) of training-mode batch norm with the batch's statistics followed by
    leaky_relu(., negative_slope) (1: none), all in x's dtype, var biased; see _train_forward."""
    C = x.shape[1]
    if weight is None:
        weight = np.ones(C, x.dtype)
    if bias is None:
        bias = np.zeros(C, x.dtype)
    mean64, var64 = np.empty(C, np.float64), np.empty(C, np.float64)
    mean, var, invstd = (np.empty(C, x.dtype) for _ in range(3))
    z = cpu_memory.empty_like(x)
    per, tasks = _groups(_as_ncs(x))
    run_tasks(_train_forward, tasks, x.size, _as_ncs(x), per, x.dtype.type(eps), weight, bias,
              x.dtype.type(negative_slope), mean64, var64, mean, var, invstd, _as_ncs(z),
              scale=SPLIT_SCALE)
    return z, mean, var, invstd


def batchnorm_forward(x, mean, invstd, weight, bias):
    """y = (x - mean) * invstd * weight + bias per channel; weight/bias None mean 1/0."""
    return batchnorm_leaky_relu_forward(x, mean, invstd, weight, bias, 1.0)


def batchnorm_backward(gy, x, mean, invstd, weight):
    """(gx, gweight, gbias) of training-mode batchnorm (mean/invstd taken from this batch)."""
    return batchnorm_leaky_relu_backward(gy, gy, x, mean, invstd, weight, 1.0)


def batchnorm_leaky_relu_forward(x, mean, invstd, weight, bias, negative_slope):
    """z = leaky_relu(batchnorm_forward(x, ...), negative_slope) in one pass over x."""
    C = x.shape[1]
    scale = invstd if weight is None else invstd * weight
    if bias is None:
        bias = np.zeros(C, x.dtype)
    z = cpu_memory.empty_like(x)
    run_tasks(_forward, x.shape[0] * C, x.size, _as_ncs(x), mean, scale.astype(x.dtype), bias,
              x.dtype.type(negative_slope), _as_ncs(z), scale=SPLIT_SCALE)
    return z


def batchnorm_leaky_relu_backward(gz, z, x, mean, invstd, weight, negative_slope):
    """(gx, gweight, gbias) of z = leaky_relu(batchnorm(x)) in training mode, negative_slope >= 0,
    from z's gradient gz, z itself and x: the activation's backward folded into batch norm's."""
    C = x.shape[1]
    if weight is None:
        weight = np.ones(C, x.dtype)
    gx = cpu_memory.empty_like(x)
    gweight = np.empty(C, np.float64)
    gbias = np.empty(C, np.float64)
    per, tasks = _groups(_as_ncs(x))
    run_tasks(_backward, tasks, x.size, _as_ncs(gz), _as_ncs(z), _as_ncs(x), mean, invstd, weight,
              x.dtype.type(negative_slope), per, _as_ncs(gx), gweight, gbias,
              scale=SPLIT_SCALE)
    return gx, gweight.astype(x.dtype), gbias.astype(x.dtype)
