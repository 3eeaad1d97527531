"""ConvTranspose2d's backward gathers the output gradient's patches once for both of its
gradients (input: conv2d(gy, w); weight: gy's patches times x), with the same results as the
two separate ops that run under create_graph."""
import numpy as np
import pytest

import minigan.functional as F
from minigan.autograd import Tensor, grad
from minigan.kernels import cpu_conv


@pytest.mark.parametrize("stride, padding, bias",
                         [(2, 1, False), (1, 0, True), ((2, 1), (0, 1), True)])
def test_transposed_conv_backward_gathers_once_with_the_same_gradients(monkeypatch, stride,
                                                                       padding, bias):
    rng = np.random.default_rng(13)
    x = Tensor(rng.standard_normal((3, 4, 5, 5)), requires_grad=True)
    w = Tensor(rng.standard_normal((4, 6, 4, 3)) * 0.3, requires_grad=True)
    b = Tensor(rng.standard_normal(6), requires_grad=True) if bias else None
    inputs = [x, w] + ([b] if bias else [])
    y = F.conv_transpose2d(x, w, b, stride=stride, padding=padding)
    gy = Tensor(rng.standard_normal(y.shape))
    gathers = []
    gather = cpu_conv._gather
    monkeypatch.setattr(cpu_conv, "_gather", lambda *a: gathers.append(a[2]) or gather(*a))
    shared = grad(y, inputs, gy, retain_graph=True)
    assert len(gathers) == 1, gathers          # 3 images: one chunk, gathered once
    separate = grad(y, inputs, gy, create_graph=True)
    assert len(gathers) == 3                   # the ops gather once each
    for a, c in zip(shared, separate):
        np.testing.assert_allclose(a.numpy(), c.numpy(), rtol=1e-12, atol=1e-12)
    assert shared[0].creator is None and separate[0].creator is not None
