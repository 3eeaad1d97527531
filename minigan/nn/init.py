"""Weight initialisation, in place, with PyTorch's names and formulas (``nn.init.*_``)."""
import math

from .. import backend


def _fill(tensor, sample):
    """Write samples drawn on the CPU generator into the tensor (same numbers on every device)."""
    array = sample(backend.rng("cpu"), tensor.shape).astype(tensor.dtype)
    tensor.data[...] = backend.to_device(array, tensor.device)
    return tensor._bump_version()


def calculate_gain(nonlinearity, param=None):
    """The gain that keeps activations' variance steady through a nonlinearity."""
    if nonlinearity in ("linear", "conv1d", "conv2d", "conv_transpose2d", "sigmoid"):
        return 1.0
    if nonlinearity == "tanh":
        return 5.0 / 3
    if nonlinearity == "relu":
        return math.sqrt(2.0)
    if nonlinearity == "leaky_relu":
        slope = 0.01 if param is None else param
        return math.sqrt(2.0 / (1 + slope ** 2))
    raise ValueError(f"unknown nonlinearity {nonlinearity!r}")


def fan_in_and_fan_out(tensor):
    """For a weight (out, in, *kernel): fan_in = in * prod(kernel), fan_out = out * prod(kernel)."""
    if tensor.ndim < 2:
        raise ValueError(f"fan in and fan out need a tensor of 2 or more dimensions, "
                         f"got shape {tensor.shape}")
    receptive = 1
    for s in tensor.shape[2:]:
        receptive *= s
    return tensor.shape[1] * receptive, tensor.shape[0] * receptive


def uniform_(tensor, a=0.0, b=1.0):
    return _fill(tensor, lambda rng, shape: rng.uniform(a, b, shape))


def normal_(tensor, mean=0.0, std=1.0):
    return _fill(tensor, lambda rng, shape: rng.normal(mean, std, shape))


def constant_(tensor, value):
    tensor.data[...] = value
    return tensor._bump_version()


def zeros_(tensor):
    return constant_(tensor, 0.0)


def ones_(tensor):
    return constant_(tensor, 1.0)


def xavier_uniform_(tensor, gain=1.0):
    """U(-a, a) with a = gain * sqrt(6 / (fan_in + fan_out)) (Glorot & Bengio 2010)."""
    fan_in, fan_out = fan_in_and_fan_out(tensor)
    a = gain * math.sqrt(6.0 / (fan_in + fan_out))
    return uniform_(tensor, -a, a)


def xavier_normal_(tensor, gain=1.0):
    fan_in, fan_out = fan_in_and_fan_out(tensor)
    return normal_(tensor, 0.0, gain * math.sqrt(2.0 / (fan_in + fan_out)))


def _kaiming_std(tensor, a, mode, nonlinearity):
    fan_in, fan_out = fan_in_and_fan_out(tensor)
    fan = fan_in if mode == "fan_in" else fan_out
    return calculate_gain(nonlinearity, a) / math.sqrt(fan)


def kaiming_uniform_(tensor, a=0.0, mode="fan_in", nonlinearity="leaky_relu"):
    """U(-b, b) with b = gain * sqrt(3 / fan) (He et al. 2015). With a = sqrt(5) this is
    PyTorch's default for Linear and Conv weights: b = 1 / sqrt(fan_in)."""
    if tensor.numel() == 0:   # nn.Linear(0, n): nothing to fill, and fan_in 0 would divide by 0
        return tensor
    bound = math.sqrt(3.0) * _kaiming_std(tensor, a, mode, nonlinearity)
    return uniform_(tensor, -bound, bound)


def kaiming_normal_(tensor, a=0.0, mode="fan_in", nonlinearity="leaky_relu"):
    return normal_(tensor, 0.0, _kaiming_std(tensor, a, mode, nonlinearity))
