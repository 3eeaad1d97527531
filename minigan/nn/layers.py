"""Layers with PyTorch's names, arguments and default initialisation."""
import math

import numpy as np

from .. import backend
from .. import functional as F
from . import init
from .module import Module, Parameter


def _empty(*shape):
    return Parameter(np.zeros(shape, dtype=backend.get_default_dtype()))


def _size(layer, name, value, minimum):
    """``value`` as an int >= minimum, or the error PyTorch would give naming the argument."""
    if isinstance(value, bool) or not hasattr(value, "__index__"):
        raise TypeError(f"{layer}: {name} must be an int, got {value!r} ({type(value).__name__})")
    value = value.__index__()
    if value < minimum:
        raise ValueError(f"{layer}: {name} must be >= {minimum}, got {value}")
    return value


def _sizes(layer, name, value, minimum):
    """An int or a pair of ints, each >= minimum, as a pair."""
    pair = (value, value) if not isinstance(value, (tuple, list)) else tuple(value)
    if len(pair) != 2:
        raise ValueError(f"{layer}: {name} must be an int or a pair of ints, got {value!r}")
    return tuple(_size(layer, name, v, minimum) for v in pair)


class Identity(Module):
    def forward(self, x):
        return x


class Linear(Module):
    """y = x W^T + b, W of shape (out_features, in_features); W and b ~ U(-1/sqrt(in), 1/sqrt(in))."""

    def __init__(self, in_features, out_features, bias=True):
        super().__init__()
        in_features = _size("Linear", "in_features", in_features, 0)
        out_features = _size("Linear", "out_features", out_features, 0)
        self.in_features, self.out_features = in_features, out_features
        self.weight = _empty(out_features, in_features)
        self.bias = _empty(out_features) if bias else None
        self.reset_parameters()

    def reset_parameters(self):
        init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        if self.bias is not None:
            bound = 1 / math.sqrt(self.in_features) if self.in_features else 0
            init.uniform_(self.bias, -bound, bound)

    def forward(self, x):
        return F.linear(x, self.weight, self.bias)

    def extra_repr(self):
        return f"in_features={self.in_features}, out_features={self.out_features}, " \
               f"bias={self.bias is not None}"


class _ConvNd(Module):
    def __init__(self, in_channels, out_channels, kernel_size, stride, padding, bias, transposed):
        super().__init__()
        layer = type(self).__name__
        in_channels = _size(layer, "in_channels", in_channels, 1)
        out_channels = _size(layer, "out_channels", out_channels, 1)
        self.in_channels, self.out_channels = in_channels, out_channels
        self.kernel_size = _sizes(layer, "kernel_size", kernel_size, 1)
        _sizes(layer, "stride", stride, 1)
        _sizes(layer, "padding", padding, 0)
        self.stride, self.padding = stride, padding
        shape = (in_channels, out_channels) if transposed else (out_channels, in_channels)
        self.weight = _empty(*shape, *self.kernel_size)
        self.bias = _empty(out_channels) if bias else None
        self.reset_parameters()

    def reset_parameters(self):
        # PyTorch: kaiming_uniform(a=sqrt(5)) -> U(-1/sqrt(fan_in), 1/sqrt(fan_in)), with fan_in
        # taken from the weight's second axis (so Cout * k * k for a transposed convolution).
        init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        if self.bias is not None:
            fan_in, _ = init.fan_in_and_fan_out(self.weight)
            bound = 1 / math.sqrt(fan_in) if fan_in else 0
            init.uniform_(self.bias, -bound, bound)

    def extra_repr(self):
        return f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, " \
               f"stride={self.stride}, padding={self.padding}"


class Conv2d(_ConvNd):
    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, bias=True):
        super().__init__(in_channels, out_channels, kernel_size, stride, padding, bias, False)

    def forward(self, x):
        return F.conv2d(x, self.weight, self.bias, self.stride, self.padding)

    def forward_leaky_relu(self, x, negative_slope):
        """leaky_relu(forward(x), negative_slope), fused where F.conv2d_leaky_relu can: what
        Sequential calls for a convolution followed by a ReLU or LeakyReLU."""
        return F.conv2d_leaky_relu(x, self.weight, self.bias, self.stride, self.padding,
                                   negative_slope)


class ConvTranspose2d(_ConvNd):
    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0,
                 output_padding=0, bias=True):
        super().__init__(in_channels, out_channels, kernel_size, stride, padding, bias, True)
        _sizes("ConvTranspose2d", "output_padding", output_padding, 0)
        self.output_padding = output_padding

    def forward(self, x):
        return F.conv_transpose2d(x, self.weight, self.bias, self.stride, self.padding,
                                  self.output_padding)


class _BatchNorm(Module):
    expected_ndim = None

    def __init__(self, num_features, eps=1e-5, momentum=0.1, affine=True,
                 track_running_stats=True):
        super().__init__()
        layer = type(self).__name__
        num_features = _size(layer, "num_features", num_features, 1)
        if not eps > 0:
            raise ValueError(f"{layer}: eps must be > 0, got {eps}")
        if momentum is not None and not 0 <= momentum <= 1:
            raise ValueError(f"{layer}: momentum must be in [0, 1] or None (cumulative average), "
                             f"got {momentum}")
        self.num_features, self.eps, self.momentum = num_features, eps, momentum
        self.affine, self.track_running_stats = affine, track_running_stats
        dtype = backend.get_default_dtype()
        self.weight = Parameter(np.ones(num_features, dtype=dtype)) if affine else None
        self.bias = Parameter(np.zeros(num_features, dtype=dtype)) if affine else None
        if track_running_stats:
            self.register_buffer("running_mean", np.zeros(num_features, dtype=dtype))
            self.register_buffer("running_var", np.ones(num_features, dtype=dtype))
            self.register_buffer("num_batches_tracked", np.zeros((), dtype=np.int64))
        else:
            self.running_mean = self.running_var = None

    def forward(self, x):
        return self.forward_leaky_relu(x, None)

    def forward_leaky_relu(self, x, negative_slope):
        """forward(x) followed by leaky_relu(., negative_slope) (none when it is None), fused
        where F.batch_norm_leaky_relu can: what Sequential calls for a batch norm followed by a
        ReLU or LeakyReLU."""
        if x.ndim not in self.expected_ndim:
            raise ValueError(f"{type(self).__name__} expects a {' or '.join(map(str, self.expected_ndim))}-D "
                             f"input, got shape {x.shape}")
        use_batch_stats = self.training or not self.track_running_stats
        momentum = self.momentum
        if momentum is None:   # PyTorch's cumulative moving average: batch k weighs 1/k
            momentum = 1.0 / (int(self.num_batches_tracked.data) + 1) \
                if self.track_running_stats else 0.0
        args = (x, self.running_mean if self.track_running_stats else None,
                self.running_var if self.track_running_stats else None,
                self.weight, self.bias, use_batch_stats, momentum, self.eps)
        y = (F.batch_norm(*args) if negative_slope is None
             else F.batch_norm_leaky_relu(*args, negative_slope=negative_slope))
        # counted only once batch_norm accepted the input: a rejected call changes no state
        if self.training and self.track_running_stats:
            self.num_batches_tracked.data += 1
            self.num_batches_tracked._bump_version()
        return y

    def extra_repr(self):
        return f"{self.num_features}, eps={self.eps}, momentum={self.momentum}, affine={self.affine}"


class BatchNorm1d(_BatchNorm):
    """Batch norm over (N, C) input."""
    expected_ndim = (2,)


class BatchNorm2d(_BatchNorm):
    """Batch norm over (N, C, H, W) input, per channel."""
    expected_ndim = (4,)


class SyncBatchNorm(_BatchNorm):
    """Batch norm over (N, C) or (N, C, H, W) input whose training-mode statistics are those of
    the global batch of a data-parallel run: every rank's batch together (per-channel sums
    allreduced in the forward and the backward, :func:`minigan.functional.sync_batch_norm`).

    ``process_group``: the communicator (``minigan.distributed.create_communicator()``); None,
    or one rank, makes it plain batch norm. Evaluation mode uses the running estimates and does
    not communicate, so rank 0 alone may sample in evaluation mode. The running estimates are
    updated from the global statistics, so they stay equal on all ranks. Build one with
    :meth:`convert_sync_batchnorm`; docs/DISTRIBUTED.md says when to (the BN policy)."""
    expected_ndim = (2, 4)

    def __init__(self, num_features, eps=1e-5, momentum=0.1, affine=True,
                 track_running_stats=True, process_group=None):
        super().__init__(num_features, eps, momentum, affine, track_running_stats)
        self.process_group = process_group

    def forward(self, x):
        if x.ndim not in self.expected_ndim:
            raise ValueError(f"SyncBatchNorm expects a 2-D or 4-D input, got shape {x.shape}")
        track = self.track_running_stats
        y = F.sync_batch_norm(x, self.running_mean if track else None,
                              self.running_var if track else None, self.weight, self.bias,
                              self.training or not track, self.momentum, self.eps,
                              comm=self.process_group)
        if self.training and track:
            self.num_batches_tracked.data += 1
        return y

    @classmethod
    def convert_sync_batchnorm(cls, module, process_group=None):
        """``module`` with every BatchNorm1d / BatchNorm2d replaced by a SyncBatchNorm holding the
        very same Parameter and buffer objects (so optimizers built before still update them);
        a batch-norm ``module`` itself comes back converted. Other modules are changed in
        place."""
        if isinstance(module, (BatchNorm1d, BatchNorm2d)):
            converted = cls(module.num_features, module.eps, module.momentum, module.affine,
                            module.track_running_stats, process_group)
            if module.affine:
                converted.weight, converted.bias = module.weight, module.bias
            for name, buffer in module._buffers.items():
                converted.register_buffer(name, buffer)
            converted.train(module.training)
            return converted
        for name, child in list(module._modules.items()):
            if child is not None:
                # in place in the table: setattr would move the entry to the end, and a
                # Sequential runs its modules in the table's order
                module._modules[name] = cls.convert_sync_batchnorm(child, process_group)
        return module

    def extra_repr(self):
        size = "none" if self.process_group is None else self.process_group.size
        return super().extra_repr() + f", ranks={size}"


class ReLU(Module):
    def forward(self, x):
        return F.relu(x)


class LeakyReLU(Module):
    def __init__(self, negative_slope=0.01):
        super().__init__()
        self.negative_slope = negative_slope

    def forward(self, x):
        return F.leaky_relu(x, self.negative_slope)

    def extra_repr(self):
        return f"negative_slope={self.negative_slope}"


class Tanh(Module):
    def forward(self, x):
        return F.tanh(x)


class Sigmoid(Module):
    def forward(self, x):
        return F.sigmoid(x)


class Softplus(Module):
    def forward(self, x):
        return F.softplus(x)


class Dropout(Module):
    def __init__(self, p=0.5):
        super().__init__()
        if not 0 <= p <= 1:
            raise ValueError(f"dropout probability must be in [0, 1], got {p}")
        self.p = p

    def forward(self, x):
        return F.dropout(x, self.p, self.training)

    def extra_repr(self):
        return f"p={self.p}"


class Flatten(Module):
    def __init__(self, start_dim=1, end_dim=-1):
        super().__init__()
        self.start_dim, self.end_dim = start_dim, end_dim

    def forward(self, x):
        return F.flatten(x, self.start_dim, self.end_dim)


class Unflatten(Module):
    """Split one axis into ``unflattened_size`` (e.g. (N, 784) -> (N, 1, 28, 28))."""

    def __init__(self, dim, unflattened_size):
        super().__init__()
        self.dim, self.unflattened_size = dim, tuple(unflattened_size)

    def forward(self, x):
        dim = self.dim % x.ndim
        return F.reshape(x, x.shape[:dim] + self.unflattened_size + x.shape[dim + 1:])


class Embedding(Module):
    """A lookup table: row i of ``weight`` (num_embeddings, embedding_dim) for index i; N(0, 1) init."""

    def __init__(self, num_embeddings, embedding_dim):
        super().__init__()
        self.num_embeddings, self.embedding_dim = num_embeddings, embedding_dim
        self.weight = _empty(num_embeddings, embedding_dim)
        init.normal_(self.weight)

    def forward(self, indices):
        idx = indices.data if hasattr(indices, "data") else indices
        xp = backend.array_module(self.weight.data)
        idx = xp.asarray(idx)
        if idx.dtype.kind not in "iu":
            raise TypeError(f"Embedding needs integer indices, got dtype {idx.dtype}")
        if idx.size and (int(idx.min()) < 0 or int(idx.max()) >= self.num_embeddings):
            bad = idx[(idx < 0) | (idx >= self.num_embeddings)]
            raise IndexError(f"Embedding: index {int(bad.ravel()[0])} is out of range [0, "
                             f"{self.num_embeddings}) ({int(bad.size)} bad of {int(idx.size)})")
        return self.weight[idx]


def _check_module(owner, i, module):
    """A plain function or a Parameter would be stored as an attribute and silently skipped."""
    if not isinstance(module, Module):
        raise TypeError(f"{owner}: entry {i} is a {type(module).__name__}, not an nn.Module "
                        "(wrap a function in a Module subclass)")


class Sequential(Module):
    """Modules called one after another; indexable and iterable like a list."""

    def __init__(self, *modules):
        super().__init__()
        for i, module in enumerate(modules):
            _check_module("Sequential", i, module)
            setattr(self, str(i), module)

    def forward(self, x):
        modules = list(self._modules.values())
        i = 0
        while i < len(modules):
            slope = _fusable_slope(modules[i], modules[i + 1]) if i + 1 < len(modules) else None
            if slope is None:
                x = modules[i](x)
                i += 1
            else:  # a convolution or batch norm and its activation, fused (same numbers)
                x = modules[i].forward_leaky_relu(x, slope)
                i += 2
        return x

    def __getitem__(self, i):
        modules = list(self._modules.values())
        return Sequential(*modules[i]) if isinstance(i, slice) else modules[i]

    def __len__(self):
        return len(self._modules)

    def __iter__(self):
        return iter(self._modules.values())

    def append(self, module):
        _check_module("Sequential.append", len(self), module)
        setattr(self, str(len(self)), module)
        return self


def _fusable_slope(module, after):
    """The activation slope when ``module`` is a batch norm, or a convolution without a bias,
    followed by ``after``, a ReLU or a LeakyReLU with slope >= 0 (neither with a forward of its
    own subclass nor a forward pre-hook, such as spectral_norm's, that the fused call would
    skip), else None."""
    if module.__dict__.get("_forward_pre_hooks") or after.__dict__.get("_forward_pre_hooks"):
        return None
    if not ((isinstance(module, _BatchNorm) and type(module).forward is _BatchNorm.forward)
            or (isinstance(module, Conv2d) and type(module).forward is Conv2d.forward
                and module.bias is None)):
        return None
    if type(after) is ReLU:
        return 0.0
    if type(after) is LeakyReLU and after.negative_slope >= 0:
        return float(after.negative_slope)
    return None


class ModuleList(Module):
    def __init__(self, modules=()):
        super().__init__()
        for module in modules:
            self.append(module)

    def append(self, module):
        _check_module("ModuleList.append", len(self._modules), module)
        setattr(self, str(len(self._modules)), module)
        return self

    def __getitem__(self, i):
        return list(self._modules.values())[i]

    def __len__(self):
        return len(self._modules)

    def __iter__(self):
        return iter(self._modules.values())
