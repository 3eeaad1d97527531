"""``InstanceNorm2d``: each image's channels normalised over (H, W), with PyTorch's defaults
(affine=False, track_running_stats=False: the same computation in training and evaluation)."""
import numpy as np

from .. import backend
from .. import functional as F
from .module import Module, Parameter


class InstanceNorm2d(Module):
    def __init__(self, num_features, eps=1e-5, momentum=0.1, affine=False,
                 track_running_stats=False):
        super().__init__()
        self.num_features, self.eps, self.momentum = num_features, eps, momentum
        self.affine, self.track_running_stats = affine, track_running_stats
        dtype = backend.get_default_dtype()
        self.weight = Parameter(np.ones(num_features, dtype=dtype)) if affine else None
        self.bias = Parameter(np.zeros(num_features, dtype=dtype)) if affine else None
        if track_running_stats:
            self.register_buffer("running_mean", np.zeros(num_features, dtype=dtype))
            self.register_buffer("running_var", np.ones(num_features, dtype=dtype))
        else:
            self.running_mean = self.running_var = None

    def forward(self, x):
        if x.ndim != 4:
            raise ValueError(f"InstanceNorm2d expects a 4-D (N, C, H, W) input, got shape {x.shape}")
        if x.shape[1] != self.num_features:
            raise ValueError(f"InstanceNorm2d({self.num_features}) got an input with {x.shape[1]} "
                             f"channels (shape {x.shape})")
        return F.instance_norm(x, self.running_mean, self.running_var, self.weight, self.bias,
                               self.training or not self.track_running_stats, self.momentum,
                               self.eps)

    def extra_repr(self):
        return f"{self.num_features}, eps={self.eps}, momentum={self.momentum}, " \
               f"affine={self.affine}, track_running_stats={self.track_running_stats}"
