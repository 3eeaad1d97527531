"""Layers and models: ``Module``, ``Parameter``, layers with PyTorch's names, and ``init``."""
from . import init
from .layers import (BatchNorm1d, BatchNorm2d, Conv2d, ConvTranspose2d, Dropout, Embedding,
                     Flatten, Identity, LeakyReLU, Linear, ModuleList, ReLU, Sequential, Sigmoid,
                     Softplus, Tanh, Unflatten)
from .layers import SyncBatchNorm
from .module import Module, Parameter
from .instancenorm import InstanceNorm2d
from .padding import ConstantPad2d, ReflectionPad2d, ReplicationPad2d, ZeroPad2d
from .masked import MaskedConv2d, causal_mask
from .minibatch import MinibatchDiscrimination
from . import utils
