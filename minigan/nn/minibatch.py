"""Minibatch discrimination (Salimans et al., 2016, section 3.2): a layer that lets the
discriminator see how close each sample is to the others in its batch, so a generator that puts
every sample in one place is told apart from data at once."""
import math

import numpy as np

from .. import backend
from .. import functional as F
from . import init
from .module import Module, Parameter


class MinibatchDiscrimination(Module):
    """x (N, A) -> concat(x, o(x)) (N, A + B), with T of shape (A, B, C):

        M_i = x_i T  (B, C),   c_b(x_i, x_j) = exp(-||M_{i,b} - M_{j,b}||_1),
        o(x_i)_b = sum_{j=1..N} c_b(x_i, x_j)

    (the sum includes j = i, as in the paper, so o >= 1, and a batch of N identical rows has
    o = N in every one of the B features). ``in_features`` = A, ``out_features`` = B,
    ``kernel_dims`` = C. T ~ N(0, 1 / A), so that at initialisation M's entries are of the
    order of x's and the distances neither all vanish nor all saturate exp(-d). The layer costs
    N^2 B C per forward: meant for the discriminator's last hidden layer."""

    def __init__(self, in_features, out_features, kernel_dims=5):
        super().__init__()
        for label, value in (("in_features", in_features), ("out_features", out_features),
                             ("kernel_dims", kernel_dims)):
            if int(value) < 1:
                raise ValueError(f"MinibatchDiscrimination: {label} must be >= 1, got {value}")
        self.in_features, self.out_features = int(in_features), int(out_features)
        self.kernel_dims = int(kernel_dims)
        self.T = Parameter(np.zeros((self.in_features, self.out_features, self.kernel_dims),
                                    dtype=backend.get_default_dtype()))
        init.normal_(self.T, 0.0, 1.0 / math.sqrt(self.in_features))

    def forward(self, x):
        if x.ndim != 2 or x.shape[1] != self.in_features:
            raise ValueError(f"MinibatchDiscrimination: expected input (N, {self.in_features}), "
                             f"got shape {x.shape}")
        n, b, c = x.shape[0], self.out_features, self.kernel_dims
        m = F.reshape(F.matmul(x, F.reshape(self.T, (self.in_features, b * c))), (n, 1, b, c))
        distance = F.sum(F.abs(m - F.reshape(m, (1, n, b, c))), axis=3)   # (N, N, B)
        o = F.sum(F.exp(-distance), axis=1)                                 # (N, B)
        return F.concat([x, o], dim=1)

    def extra_repr(self):
        return (f"in_features={self.in_features}, out_features={self.out_features}, "
                f"kernel_dims={self.kernel_dims}")
