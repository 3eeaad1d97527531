"""The CPU (NumPy + numba) kernels, one module per family; ``minigan.kernels`` dispatches here."""
from .cpu_act import leaky_relu, leaky_relu_grad
from .cpu_conv import conv2d, conv2d_grad_input, conv2d_grad_weight
from .cpu_memory import clear as clear_work_buffers
from .cpu_norm import batchnorm_backward, batchnorm_forward, batchnorm_stats
from .cpu_norm import batchnorm_leaky_relu_backward, batchnorm_leaky_relu_forward
from .cpu_norm import batchnorm_train_forward
from .cpu_optim import adam_step

__all__ = ["conv2d", "conv2d_grad_input", "conv2d_grad_weight", "batchnorm_stats",
           "batchnorm_forward", "batchnorm_backward", "leaky_relu", "leaky_relu_grad",
           "clear_work_buffers", "batchnorm_leaky_relu_forward", "batchnorm_leaky_relu_backward",
           "batchnorm_train_forward", "adam_step"]
