"""Differentiable functions, imported by users as ``F`` like ``torch.nn.functional``.

Each op is a ``Function`` with its forward (raw arrays) beside its backward (Tensor ops):
elementwise.py, reduce.py, shape.py, linalg.py, activation.py, loss.py, conv.py, norm.py, pad.py.
"""
from . import methods as _methods  # noqa: F401 - attaches operators to Tensor
from .activation import (dropout, leaky_relu, log_sigmoid, log_softmax, relu, sigmoid, softmax,
                         softplus, tanh)
from .elementwise import abs, add, clamp, clip, div, exp, log, mul, neg, pow, sqrt, sub, where
from .linalg import linear, matmul
from .loss import (binary_cross_entropy, binary_cross_entropy_with_logits, cross_entropy,
                   mse_loss, nll_loss)
from .reduce import max, mean, min, std, sum, var
from .shape import (broadcast_to, cat, concat, flatten, getitem, permute, reshape, squeeze, stack,
                    sum_to, transpose, unsqueeze)
from .conv import conv2d, conv2d_leaky_relu, conv_transpose2d
from .norm import batch_norm, instance_norm
from .norm import sync_batch_norm
from .collective import all_reduce_sum
from .norm import batch_norm_leaky_relu
from .pad import pad
