"""Layers and models: ``Module``, ``Parameter``, layers with PyTorch's names, and ``init``."""
from . import init
from .layers import (BatchNorm1d, BatchNorm2d, Conv2d, ConvTranspose2d, Dropout, Embedding,
                     Flatten, Identity, LeakyReLU, Linear, ModuleList, ReLU, Sequential, Sigmoid,
                     Softplus, Tanh, Unflatten)
from .module import Module, Parameter
from .minibatch import MinibatchDiscrimination
from . import utils
