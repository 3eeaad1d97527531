"""Which array module holds an array (NumPy or CuPy), devices, dtypes and random seeds.

Everything above this file asks here instead of calling ``numpy.`` directly, so the same op code
runs on a CuPy array without a second copy of its logic. CuPy is imported lazily: without it,
everything CPU-side works and asking for ``"cuda"`` raises a clear error.
"""
import numpy as np

_cupy = None          # the cupy module once imported, False if the import failed
_default_dtype = np.float32


def _try_cupy():
    global _cupy
    if _cupy is None:
        try:
            import cupy
            _cupy = cupy
        except Exception:  # ImportError, or a CUDA library that fails to load
            _cupy = False
    return _cupy or None


def cupy_available():
    """True when CuPy imports and sees at least one CUDA device."""
    cp = _try_cupy()
    if cp is None:
        return False
    try:
        return cp.cuda.runtime.getDeviceCount() > 0
    except Exception:
        return False


def require_cupy():
    cp = _try_cupy()
    if cp is None or not cupy_available():
        raise RuntimeError(
            "device 'cuda' needs CuPy and a CUDA GPU: install with pip install 'minigan[gpu]' "
            "on a machine with an NVIDIA driver")
    return cp


def is_cupy_array(a):
    return _cupy not in (None, False) and isinstance(a, _cupy.ndarray)


def array_module(*arrays):
    """The module (numpy or cupy) that owns these arrays: ``xp = array_module(x)``."""
    for a in arrays:
        if is_cupy_array(a):
            return _cupy
    return np


def device_of(a):
    """'cpu' for a NumPy array (or scalar), 'cuda' for a CuPy array."""
    return "cuda" if is_cupy_array(a) else "cpu"


def normalize_device(device):
    """Accept 'cpu', 'cuda', 'cuda:0' (one GPU is all minigan uses) and return 'cpu' or 'cuda'."""
    if device is None:
        return "cpu"
    d = str(device).lower()
    if d == "cpu":
        return "cpu"
    if d == "cuda" or d.startswith("cuda:") or d == "gpu":
        return "cuda"
    raise ValueError(f"unknown device {device!r}: expected 'cpu' or 'cuda'")


def to_device(a, device):
    """Copy an array to 'cpu' (NumPy) or 'cuda' (CuPy); no copy when it is already there."""
    device = normalize_device(device)
    if device == "cpu":
        return a.get() if is_cupy_array(a) else np.asarray(a)
    cp = require_cupy()
    return cp.asarray(a)


def as_numpy(a):
    return a.get() if is_cupy_array(a) else np.asarray(a)


def get_default_dtype():
    return _default_dtype


def set_default_dtype(dtype):
    """Set the dtype of tensors made from Python numbers and lists (float32 by default)."""
    global _default_dtype
    dtype = np.dtype(dtype).type
    if dtype not in (np.float32, np.float64):
        raise TypeError(f"default dtype must be float32 or float64, got {np.dtype(dtype).name}")
    _default_dtype = dtype


# --- random numbers -----------------------------------------------------------------------------
# One seed drives both devices: numpy's Generator for 'cpu', cupy's for 'cuda'. The two streams
# differ (different bit generators), so the same seed gives the same numbers on the same device
# only; code that must match across devices draws on the CPU and moves the result.
_rng = np.random.default_rng(0)
_cuda_rng = None
_seed = 0


def manual_seed(seed):
    """Seed minigan's generators on every device (like ``torch.manual_seed``)."""
    global _rng, _cuda_rng, _seed
    seed = int(seed)
    # PyTorch's range; a negative seed stands for 2**64 + seed, as there (NumPy refuses it)
    if not -2 ** 63 <= seed < 2 ** 64:
        raise ValueError(f"manual_seed: seed must be in [-2**63, 2**64), got {seed}")
    _seed = seed % 2 ** 64
    _rng = np.random.default_rng(_seed)
    _cuda_rng = None  # re-made from the seed on first use


def rng(device="cpu"):
    """The generator for a device: ``numpy.random.Generator`` or ``cupy.random.Generator``."""
    global _cuda_rng
    if normalize_device(device) == "cpu":
        return _rng
    if _cuda_rng is None:
        cp = require_cupy()
        _cuda_rng = cp.random.default_rng(_seed)
    return _cuda_rng


def get_rng_state():
    """The CPU generator's state as a JSON-able dict (checkpoints store it)."""
    return _rng.bit_generator.state


def set_rng_state(state):
    _rng.bit_generator.state = state
