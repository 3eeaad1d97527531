"""Module utilities with PyTorch's names: spectral normalization.

    D = nn.Sequential(spectral_norm(nn.Linear(2, 128)), nn.LeakyReLU(0.2), ...)

Spectral normalization (Miyato et al., 2018) divides a weight by its largest singular value
sigma(W), estimated by power iteration, so the layer is 1-Lipschitz (for the Euclidean norm).
"""
from .. import backend
from .. import functional as F
from ..autograd import Tensor, no_grad
from .layers import ConvTranspose2d
from .module import Module, Parameter


def _normalize(x, eps):
    """x / max(||x||_2, eps) (``torch.nn.functional.normalize``)."""
    xp = backend.array_module(x)
    return x / max(float(xp.linalg.norm(x)), eps)


class _SpectralNorm:
    """The forward pre-hook: recomputes ``module.<name>`` = W / sigma before each forward."""

    def __init__(self, name, n_power_iterations, dim, eps):
        self.name, self.n_power_iterations, self.dim, self.eps = name, n_power_iterations, dim, eps

    def _matrix(self, w):
        """W as a (W.shape[dim], -1) matrix: rows are the output units."""
        if self.dim != 0:
            w = w.swapaxes(0, self.dim) if not isinstance(w, Tensor) else F.transpose(w, 0, self.dim)
        return w.reshape(w.shape[0], -1) if not isinstance(w, Tensor) else F.reshape(w, (w.shape[0], -1))

    def compute_weight(self, module, do_power_iteration):
        """sigma = u^T W_mat v with u, v constants (after ``n_power_iterations`` steps
        v <- normalize(W_mat^T u), u <- normalize(W_mat v) when ``do_power_iteration``, which
        update the buffers in place); returns W / sigma, differentiable in W."""
        w = getattr(module, self.name + "_orig")
        u, v = getattr(module, self.name + "_u"), getattr(module, self.name + "_v")
        if do_power_iteration:
            w_mat = self._matrix(w.data)
            with no_grad():
                for _ in range(self.n_power_iterations):
                    v.data[...] = _normalize(w_mat.T @ u.data, self.eps)
                    u.data[...] = _normalize(w_mat @ v.data, self.eps)
        # a fresh array: the buffers' later in-place updates must not change this graph
        outer = Tensor._wrap(u.data[:, None] * v.data[None, :])
        sigma = F.sum(self._matrix(w) * outer)
        return w / sigma

    def __call__(self, module, args):
        object.__setattr__(module, self.name,
                           self.compute_weight(module, do_power_iteration=module.training))


def spectral_norm(module, name="weight", n_power_iterations=1, eps=1e-12, dim=None):
    """Spectrally normalise ``module.<name>`` (``torch.nn.utils.spectral_norm``): returns the
    same module, in which

        weight = weight_orig / sigma,   sigma = u^T W_mat v ~ the largest singular value of W_mat,

    W_mat = weight_orig reshaped to (weight.shape[dim], -1) (dim = 1 for ConvTranspose2d, whose
    weight is (in, out, kh, kw), else 0). ``weight_orig`` is the trained Parameter (the original
    Parameter object, so optimizers built earlier still hold it); ``weight_u`` (h,) and
    ``weight_v`` (w,) are buffers (in the state_dict), started from normalised N(0, 1) draws.
    Before every forward in training mode, ``n_power_iterations`` power-iteration steps update
    u and v in place; in eval mode they stay as they are. sigma is differentiated with u and v
    held constant, as in the paper and PyTorch."""
    if not isinstance(module, Module):
        raise TypeError(f"spectral_norm needs an nn.Module, got {type(module).__name__}")
    if any(isinstance(h, _SpectralNorm) and h.name == name
           for h in module._forward_pre_hooks.values()):
        raise RuntimeError(f"spectral_norm: '{name}' of {type(module).__name__} is already "
                           "spectrally normalised")
    weight = module._parameters.get(name)
    if weight is None:
        raise ValueError(f"spectral_norm: {type(module).__name__} has no parameter '{name}'")
    if weight.ndim < 2:
        raise ValueError(f"spectral_norm: '{name}' must have at least 2 dimensions, got shape "
                         f"{weight.shape}")
    if int(n_power_iterations) < 1 or not eps > 0:   # with 0 steps, u and v stay random
        raise ValueError(f"spectral_norm: n_power_iterations must be >= 1 and eps > 0, got "
                         f"{n_power_iterations} and {eps}")
    if dim is None:
        dim = 1 if isinstance(module, ConvTranspose2d) else 0
    fn = _SpectralNorm(name, int(n_power_iterations), int(dim), float(eps))
    w_mat = fn._matrix(weight.data)
    h, w = w_mat.shape
    rng = backend.rng(weight.device)
    xp = backend.array_module(weight.data)
    u = _normalize(xp.asarray(rng.standard_normal(h)).astype(weight.dtype), eps)
    v = _normalize(xp.asarray(rng.standard_normal(w)).astype(weight.dtype), eps)
    del module._parameters[name]
    module.register_parameter(name + "_orig", weight)
    module.register_buffer(name + "_u", Tensor._wrap(u))
    module.register_buffer(name + "_v", Tensor._wrap(v))
    with no_grad():
        object.__setattr__(module, name, fn.compute_weight(module, do_power_iteration=False))
    module.register_forward_pre_hook(fn)
    return module


def remove_spectral_norm(module, name="weight"):
    """Undo :func:`spectral_norm`: ``name`` becomes a Parameter again, holding W / sigma with the
    current u and v (``torch.nn.utils.remove_spectral_norm``)."""
    for key, hook in list(module._forward_pre_hooks.items()):
        if isinstance(hook, _SpectralNorm) and hook.name == name:
            with no_grad():
                weight = hook.compute_weight(module, do_power_iteration=False)
            del module._forward_pre_hooks[key]
            for suffix in ("_orig", "_u", "_v"):
                delattr(module, name + suffix)
            module.__dict__.pop(name, None)
            setattr(module, name, Parameter(weight.data))
            return module
    raise ValueError(f"remove_spectral_norm: spectral_norm of '{name}' not found in "
                     f"{type(module).__name__}")
