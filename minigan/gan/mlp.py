"""Small fully connected generators and discriminators (the MLP GAN of Goodfellow et al. and the
1-D / 2-D toy experiments).

    G = mlp_generator(latent_dim=100, hidden=(256, 512), out_dim=784)     # z -> tanh image
    D = mlp_discriminator(in_dim=784, hidden=(512, 256))                  # x -> one logit
"""
from .. import nn

_ACTIVATIONS = {
    "relu": lambda slope: nn.ReLU(),
    "leaky_relu": lambda slope: nn.LeakyReLU(slope),
    "tanh": lambda slope: nn.Tanh(),
    "sigmoid": lambda slope: nn.Sigmoid(),
}


def _activation(name, slope=0.2):
    if name not in _ACTIVATIONS:
        raise ValueError(f"unknown activation {name!r}: expected one of {sorted(_ACTIVATIONS)}")
    return _ACTIVATIONS[name](slope)


def mlp(sizes, activation="relu", out_activation=None, slope=0.2):
    """Linear(sizes[0], sizes[1]), activation, ..., Linear(sizes[-2], sizes[-1]), out_activation.

    ``activation`` follows every hidden layer ('relu', 'leaky_relu' with ``slope``, 'tanh',
    'sigmoid'); ``out_activation`` (one of those, or None) follows the last one."""
    sizes = [int(s) for s in sizes]
    if len(sizes) < 2 or min(sizes) < 1:
        raise ValueError(f"mlp needs at least an input and an output size, all >= 1, got {sizes}")
    layers = []
    for i, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(nn.Linear(n_in, n_out))
        if i < len(sizes) - 2:
            layers.append(_activation(activation, slope))
    if out_activation is not None:
        layers.append(_activation(out_activation, slope))
    return nn.Sequential(*layers)


def mlp_generator(latent_dim=100, hidden=(256, 512), out_dim=784, activation="relu",
                  out_activation="tanh"):
    """z (N, latent_dim) -> samples (N, out_dim): ReLU hidden layers and, by default, a tanh
    output for data scaled to [-1, 1]; ``out_activation=None`` leaves it unbounded (1-D, 2-D
    toy data)."""
    return mlp([latent_dim, *hidden, out_dim], activation, out_activation)


def mlp_discriminator(in_dim=784, hidden=(512, 256), slope=0.2, activation="leaky_relu"):
    """x (N, in_dim) -> one logit per sample (N, 1); LeakyReLU(``slope``) hidden layers and no
    sigmoid (the losses take logits)."""
    return mlp([in_dim, *hidden, 1], activation, None, slope)
