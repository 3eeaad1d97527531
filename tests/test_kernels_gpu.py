"""Tests of minigan.kernels.gpu (CuPy raw kernels), in four layers, so most of it runs without a GPU:

1. the CUDA sources are plain, header-free C that NVRTC accepts (static checks);
2. every source compiles with ``nvcc --ptx`` for float and double, int and long long indices
   (skipped when nvcc is not on PATH), and with NVRTC through CuPy when CuPy is importable;
3. host emulation: the very same sources are compiled for the CPU with g++ (CUDA's built-ins
   mapped to a sequential grid loop, and to one pthread per thread with a barrier for the
   kernels that use __syncthreads), ``gpu.py`` is run against a NumPy stand-in for CuPy that
   launches them, and the results are compared with NumPy references (skipped without g++);
4. on a real GPU (``@pytest.mark.gpu``): each kernel against ``minigan.kernels.cpu``.
"""
import ctypes
import hashlib
import os
import re
import shutil
import subprocess
import types

import numpy as np
import pytest

from minigan import backend
from minigan.kernels import gpu, gpu_sources

DTYPES = (np.float32, np.float64)

# (N, C, H, W, O, kh, kw, stride, padding) of a conv2d; the DCGAN layers appear in the conv2d view:
# ConvTranspose2d(Ci, Co, ...) mapping a -> b is the adjoint of conv2d(C=Co, O=Ci) mapping b -> a.
DCGAN_CONVS = {
    "G ConvT(100,256,7,1,0) 1->7": (2, 256, 7, 7, 100, 7, 7, (1, 1), (0, 0)),
    "G ConvT(256,128,4,2,1) 7->14": (2, 128, 14, 14, 256, 4, 4, (2, 2), (1, 1)),
    "G ConvT(128,1,4,2,1) 14->28": (2, 1, 28, 28, 128, 4, 4, (2, 2), (1, 1)),
    "D Conv(1,64,4,2,1) 28->14": (2, 1, 28, 28, 64, 4, 4, (2, 2), (1, 1)),
    "D Conv(64,128,4,2,1) 14->7": (2, 64, 14, 14, 128, 4, 4, (2, 2), (1, 1)),
    "D Conv(128,1,7,1,0) 7->1": (2, 128, 7, 7, 1, 7, 7, (1, 1), (0, 0)),
}
OTHER_CONVS = {
    "odd sizes, rows left over": (2, 3, 9, 7, 5, 3, 2, (2, 3), (1, 2)),
    "1x1 kernel": (1, 2, 5, 5, 3, 1, 1, (1, 1), (0, 0)),
    "stride beyond kernel": (2, 2, 8, 8, 3, 2, 2, (3, 3), (1, 0)),
    "padding as wide as kernel-1": (3, 2, 4, 5, 2, 3, 3, (1, 2), (2, 2)),
}
ALL_CONVS = {**DCGAN_CONVS, **OTHER_CONVS}
BN_SHAPES = [(16, 5), (3, 4, 7, 7), (5, 2, 1, 1), (1, 3, 2, 300)]


def _tol(dtype):
    return dict(rtol=2e-4, atol=2e-4) if dtype == np.float32 else dict(rtol=1e-10, atol=1e-10)


# --- NumPy references (float64, written from the definitions) --------------------------------------

def _out_hw(H, W, kh, kw, s, p):
    return (H + 2 * p[0] - kh) // s[0] + 1, (W + 2 * p[1] - kw) // s[1] + 1


def _taps(kh, kw, s, Ho, Wo):
    """(i, j, row slice, column slice) of the padded input that kernel tap (i, j) reads."""
    for i in range(kh):
        for j in range(kw):
            yield i, j, slice(i, i + s[0] * (Ho - 1) + 1, s[0]), slice(j, j + s[1] * (Wo - 1) + 1, s[1])


def ref_conv2d(x, w, s, p):
    x, w = x.astype(np.float64), w.astype(np.float64)
    N, C, H, W = x.shape
    O, _, kh, kw = w.shape
    Ho, Wo = _out_hw(H, W, kh, kw, s, p)
    xp = np.pad(x, ((0, 0), (0, 0), (p[0], p[0]), (p[1], p[1])))
    y = np.zeros((N, O, Ho, Wo))
    for i, j, rs, cs in _taps(kh, kw, s, Ho, Wo):
        y += np.einsum("nchw,oc->nohw", xp[:, :, rs, cs], w[:, :, i, j])
    return y


def ref_conv2d_grad_input(gy, w, hw, s, p):
    gy, w = gy.astype(np.float64), w.astype(np.float64)
    N, O, Ho, Wo = gy.shape
    _, C, kh, kw = w.shape
    H, W = hw
    gxp = np.zeros((N, C, H + 2 * p[0], W + 2 * p[1]))
    for i, j, rs, cs in _taps(kh, kw, s, Ho, Wo):
        gxp[:, :, rs, cs] += np.einsum("nohw,oc->nchw", gy, w[:, :, i, j])
    return gxp[:, :, p[0]:p[0] + H, p[1]:p[1] + W]


def ref_conv2d_grad_weight(x, gy, khw, s, p):
    x, gy = x.astype(np.float64), gy.astype(np.float64)
    kh, kw = khw
    N, O, Ho, Wo = gy.shape
    xp = np.pad(x, ((0, 0), (0, 0), (p[0], p[0]), (p[1], p[1])))
    gw = np.zeros((O, x.shape[1], kh, kw))
    for i, j, rs, cs in _taps(kh, kw, s, Ho, Wo):
        gw[:, :, i, j] = np.einsum("nohw,nchw->oc", gy, xp[:, :, rs, cs])
    return gw


def _channel_axes(x):
    return (0,) + tuple(range(2, x.ndim))


def _bcast(v, x):
    return v.reshape((1, -1) + (1,) * (x.ndim - 2))


def ref_bn_backward(gy, x, mean, invstd, weight):
    gy, x = gy.astype(np.float64), x.astype(np.float64)
    ax = _channel_axes(x)
    M = x.size // x.shape[1]
    xhat = (x - _bcast(mean, x)) * _bcast(invstd, x)
    gb = gy.sum(axis=ax)
    gw = (gy * xhat).sum(axis=ax)
    wt = np.ones_like(mean) if weight is None else weight
    gx = _bcast(wt * invstd / M, x) * (M * gy - _bcast(gb, x) - xhat * _bcast(gw, x))
    return gx, gw, gb


# --- 1. static checks of the sources ----------------------------------------------------------------

@pytest.mark.parametrize("name", sorted(gpu_sources.KERNELS))
def test_source_is_self_contained_and_names_its_kernel(name):
    src = gpu_sources.source(name, np.float32, "int")
    # NVRTC (what CuPy compiles with) has no host headers: none of these may appear
    for banned in ("#include", "size_t", "std::", "printf"):
        assert banned not in src, f"{name} uses {banned!r}"
    assert f'extern "C" __global__ void {name}(' in src
    assert "GRID_STRIDE" not in src  # the placeholder was expanded
    assert "typedef float real_t;" in src and "typedef int index_t;" in src
    assert "typedef double real_t;" in gpu_sources.source(name, np.float64, "long long")


def test_source_rejects_unknown_dtype_name_and_index_type():
    with pytest.raises(TypeError, match="float32 or float64"):
        gpu_sources.source("im2col", np.int32, "int")
    with pytest.raises(KeyError, match="no GPU kernel named"):
        gpu_sources.source("im2colx", np.float32, "int")
    with pytest.raises(ValueError, match="index_type"):
        gpu_sources.source("im2col", np.float32, "short")


def _all_variants():
    for name in sorted(gpu_sources.KERNELS):
        for dtype in DTYPES:
            for it in gpu_sources.INDEX_TYPES:
                yield name, dtype, it


# --- 2. compile with nvcc and NVRTC -------------------------------------------------------------------

@pytest.mark.skipif(shutil.which("nvcc") is None, reason="nvcc (CUDA toolkit) is not on PATH")
def test_every_source_compiles_with_nvcc(tmp_path):
    files, entries = [], {}
    for name, dtype, it in _all_variants():
        stem = f"{name}_{np.dtype(dtype).name}_{it.replace(' ', '')}"
        (tmp_path / f"{stem}.cu").write_text(gpu_sources.source(name, dtype, it))
        files.append(str(tmp_path / f"{stem}.cu"))
        entries[stem] = name
    # one nvcc call for all files: its start-up costs more than compiling these small kernels
    r = subprocess.run(["nvcc", "-arch=sm_80", "--ptx", "-Werror", "all-warnings",
                        "--output-directory", str(tmp_path)] + files,
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    for stem, name in entries.items():
        ptx = (tmp_path / f"{stem}.ptx").read_text()
        assert re.search(rf"\.entry\s+{name}\s*\(", ptx), f"{stem}.ptx has no kernel {name}"


def _nvrtc():
    try:
        from cupy.cuda import nvrtc
        nvrtc.getVersion()
        return nvrtc
    except Exception:
        return None


@pytest.mark.skipif(_nvrtc() is None, reason="CuPy with a loadable NVRTC library is not installed")
def test_every_source_compiles_with_nvrtc():
    nvrtc = _nvrtc()
    for name, dtype, it in _all_variants():
        prog = nvrtc.createProgram(gpu_sources.source(name, dtype, it), "kern.cu", [], [])
        try:
            # the options CuPy adds for RawKernel (no GPU is needed to compile for a named arch)
            nvrtc.compileProgram(prog, ["-arch=compute_80", "--device-as-default-execution-space"])
        except Exception as e:
            pytest.fail(f"{name} {np.dtype(dtype)} {it}: {e}\n{nvrtc.getProgramLog(prog)}")
        assert f".entry {name}(".encode() in nvrtc.getPTX(prog)
        nvrtc.destroyProgram(prog)


# --- 3. host emulation ----------------------------------------------------------------------------------

# CUDA's built-ins for a host build: blocks run one after another; threads run one after another,
# or, for kernels that call __syncthreads, as real pthreads meeting at a barrier. __shared__
# becomes a function-local static, shared by the block's threads as on the GPU.
_HOST_PRELUDE = r"""
#include <pthread.h>
struct minigan_dim3 { unsigned int x, y, z; };
static __thread minigan_dim3 threadIdx, blockIdx;
static minigan_dim3 blockDim, gridDim;
static pthread_barrier_t minigan_barrier;
static inline void __syncthreads() { pthread_barrier_wait(&minigan_barrier); }
#define __global__
#define __device__
#define __shared__ static
"""

_SIGNATURE = re.compile(r'extern "C" __global__ void (\w+)\((.*?)\)\s*\{', re.S)


def _params(src):
    """[(C type, name)] of the kernel's parameters, parsed from its signature."""
    name, plist = _SIGNATURE.search(src).groups()
    out = []
    for p in plist.split(","):
        m = re.match(r"(.*?)(\w+)\s*$", " ".join(p.split()))
        out.append((m.group(1).strip(), m.group(2)))
    return name, out


def _host_launcher(src):
    """C++ appended to a kernel's source: ``launch_<name>(grid, block, args...)`` runs the grid."""
    name, params = _params(src)
    # globals cannot be top-level const, and restrict means nothing on them
    gtypes = [t.replace("__restrict__", "") if "*" in t else t.replace("const", "") for t, _ in params]
    decl = "\n".join(f"static {t} minigan_a{k};" for k, t in enumerate(gtypes))
    args = ", ".join(f"minigan_a{k}" for k in range(len(params)))
    formals = ", ".join(f"{t} p{k}" for k, t in enumerate(gtypes))
    store = " ".join(f"minigan_a{k} = p{k};" for k in range(len(params)))
    if "__syncthreads" in src:
        run_block = """
        pthread_barrier_init(&minigan_barrier, 0, block);
        pthread_t th[1024];
        for (unsigned t = 0; t < block; ++t)
            pthread_create(&th[t], 0, minigan_thread, (void*)(unsigned long)t);
        for (unsigned t = 0; t < block; ++t) pthread_join(th[t], 0);
        pthread_barrier_destroy(&minigan_barrier);"""
    else:
        run_block = """
        blockIdx = minigan_block;
        for (unsigned t = 0; t < block; ++t) { threadIdx.x = t; minigan_call(); }"""
    return f"""
{decl}
static minigan_dim3 minigan_block;
static void minigan_call() {{ {name}({args}); }}
static void* minigan_thread(void* p) {{
    threadIdx.x = (unsigned)(unsigned long)p; threadIdx.y = threadIdx.z = 0;
    blockIdx = minigan_block;
    minigan_call();
    return 0;
}}
extern "C" void launch_{name}(unsigned grid, unsigned block, {formals}) {{
    {store}
    blockDim.x = block; blockDim.y = blockDim.z = 1;
    gridDim.x = grid; gridDim.y = gridDim.z = 1;
    threadIdx.y = threadIdx.z = 0;
    for (unsigned b = 0; b < grid; ++b) {{
        minigan_block.x = b; minigan_block.y = minigan_block.z = 0;
        {run_block}
    }}
}}
"""


class _HostRawKernel:
    """Stands in for cupy.RawKernel: builds the source for the CPU and launches it on NumPy arrays.

    Checks every argument against the kernel's C signature (pointer <-> array of real_t, real_t /
    index_t / int <-> NumPy scalar of exactly that width), since CuPy would pass mismatched bytes
    without complaint.
    """
    libs = {}  # source hash -> ctypes library, for the whole test session
    build_dir = None

    def __init__(self, source, name):
        head = re.match(r"// minigan kernel (\w+): real_t = (\w+), index_t = ([\w ]+)\n", source)
        assert head and head.group(1) == name, "RawKernel got a source that is not minigan's"
        self.real = np.float32 if head.group(2) == "float" else np.float64
        self.index = np.int32 if head.group(3) == "int" else np.int64
        self.name = name
        self.source = source
        _, self.params = _params(source)

    def _lib(self):
        key = hashlib.sha1(self.source.encode()).hexdigest()[:16]
        if key not in self.libs:
            cpp = os.path.join(self.build_dir, f"{self.name}_{key}.cpp")
            so = cpp[:-4] + ".so"
            with open(cpp, "w") as f:
                f.write(_HOST_PRELUDE + self.source + _host_launcher(self.source))
            r = subprocess.run(["g++", "-O1", "-shared", "-fPIC", "-pthread", "-o", so, cpp],
                               capture_output=True, text=True)
            assert r.returncode == 0, r.stderr
            self.libs[key] = ctypes.CDLL(so)
        return self.libs[key]

    def _convert(self, ctype, name, a):
        if "*" in ctype:
            assert isinstance(a, np.ndarray) and a.dtype == self.real and a.flags.c_contiguous, \
                f"{self.name}: argument {name} must be a C-contiguous {np.dtype(self.real)} array"
            return ctypes.c_void_p(a.ctypes.data)
        want = {"real_t": self.real, "index_t": self.index, "int": np.int32}[ctype.replace("const", "").strip()]
        assert type(a) is want, f"{self.name}: argument {name} must be {want.__name__}, got {type(a).__name__}"
        return np.ctypeslib.as_ctypes_type(want)(a)

    def __call__(self, grid, block, args):
        assert len(args) == len(self.params), f"{self.name}: {len(args)} arguments for {len(self.params)}"
        assert len(grid) == 1 and len(block) == 1 and 1 <= block[0] <= 1024 and grid[0] >= 1
        cargs = [self._convert(t, n, a) for (t, n), a in zip(self.params, args)]
        fn = getattr(self._lib(), f"launch_{self.name}")
        fn.restype = None
        fn(ctypes.c_uint(grid[0]), ctypes.c_uint(block[0]), *cargs)


_fake_cupy = types.SimpleNamespace(
    ndarray=np.ndarray, empty=np.empty, empty_like=np.empty_like, matmul=np.matmul,
    ascontiguousarray=np.ascontiguousarray, sqrt=np.sqrt, RawKernel=_HostRawKernel)


@pytest.fixture(params=gpu_sources.INDEX_TYPES)
def emulated(request, monkeypatch, tmp_path_factory):
    """gpu.py running on NumPy arrays through host-compiled kernels, with int or long long indices."""
    if shutil.which("g++") is None:
        pytest.skip("g++ is needed to build the kernels for host emulation")
    if _HostRawKernel.build_dir is None:
        _HostRawKernel.build_dir = str(tmp_path_factory.mktemp("gpu_host_kernels"))
    monkeypatch.setattr(gpu, "_cupy", _fake_cupy)
    monkeypatch.setattr(gpu, "_kernels", {})
    if request.param == "long long":
        monkeypatch.setattr(gpu, "_INT_LIMIT", 0)  # every call then takes the 64-bit index variant
    return request.param


def _rand(rng, shape, dtype):
    return rng.standard_normal(shape).astype(dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", list(ALL_CONVS), ids=list(ALL_CONVS))
def test_emulated_conv_matches_reference(emulated, case, dtype):
    N, C, H, W, O, kh, kw, s, p = ALL_CONVS[case]
    rng = np.random.default_rng(0)
    x, w = _rand(rng, (N, C, H, W), dtype), _rand(rng, (O, C, kh, kw), dtype)
    Ho, Wo = _out_hw(H, W, kh, kw, s, p)
    gy = _rand(rng, (N, O, Ho, Wo), dtype)
    y = gpu.conv2d(x, w, s, p)
    gx = gpu.conv2d_grad_input(gy, w, (H, W), s, p)
    gw = gpu.conv2d_grad_weight(x, gy, (kh, kw), s, p)
    for got, want in ((y, ref_conv2d(x, w, s, p)),
                      (gx, ref_conv2d_grad_input(gy, w, (H, W), s, p)),
                      (gw, ref_conv2d_grad_weight(x, gy, (kh, kw), s, p))):
        assert got.dtype == dtype and got.shape == want.shape
        np.testing.assert_allclose(got, want, **_tol(dtype))


def test_emulated_conv_with_activation_and_its_gradients(emulated):
    N, C, H, W, O, kh, kw, s, p = OTHER_CONVS["odd sizes, rows left over"]
    rng = np.random.default_rng(3)
    x, w = rng.standard_normal((N, C, H, W)), rng.standard_normal((O, C, kh, kw))
    y, patches = gpu.conv2d(x, w, s, p, keep_patches=True, negative_slope=0.2)
    want = ref_conv2d(x, w, s, p)
    np.testing.assert_allclose(y, np.where(want > 0, want, 0.2 * want), rtol=1e-10, atol=1e-12)
    assert patches is None
    gz = rng.standard_normal(y.shape)
    gy = np.where(y > 0, gz, 0.2 * gz)   # the activation's derivative, applied by the kernels
    np.testing.assert_allclose(gpu.conv2d_grad_input(gz, w, (H, W), s, p, activation=(y, 0.2)),
                               ref_conv2d_grad_input(gy, w, (H, W), s, p), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(gpu.conv2d_grad_weight(x, gz, (kh, kw), s, p, activation=(y, 0.2)),
                               ref_conv2d_grad_weight(x, gy, (kh, kw), s, p), rtol=1e-10,
                               atol=1e-12)


def test_emulated_conv_grads_are_adjoints(emulated):
    # <conv2d(x, w), g> = <x, grad_input(g, w)> = <w, grad_weight(x, g)> for every x, w, g
    N, C, H, W, O, kh, kw, s, p = OTHER_CONVS["odd sizes, rows left over"]
    rng = np.random.default_rng(1)
    x, w = rng.standard_normal((N, C, H, W)), rng.standard_normal((O, C, kh, kw))
    y = gpu.conv2d(x, w, s, p)
    g = rng.standard_normal(y.shape)
    lhs = np.vdot(y, g)
    assert np.isclose(lhs, np.vdot(x, gpu.conv2d_grad_input(g, w, (H, W), s, p)), rtol=1e-12)
    assert np.isclose(lhs, np.vdot(w, gpu.conv2d_grad_weight(x, g, (kh, kw), s, p)), rtol=1e-12)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", BN_SHAPES, ids=str)
def test_emulated_batchnorm_matches_reference(emulated, shape, dtype):
    rng = np.random.default_rng(2)
    C = shape[1]
    x = (3 + 2 * rng.standard_normal(shape)).astype(dtype)
    gy = _rand(rng, shape, dtype)
    weight, bias = _rand(rng, C, dtype), _rand(rng, C, dtype)
    ax = _channel_axes(x)
    mean, var = gpu.batchnorm_stats(x)
    np.testing.assert_allclose(mean, x.astype(np.float64).mean(axis=ax), **_tol(dtype))
    np.testing.assert_allclose(var, x.astype(np.float64).var(axis=ax), **_tol(dtype))
    assert mean.dtype == var.dtype == dtype and mean.shape == var.shape == (C,)

    invstd = (1 / np.sqrt(var.astype(np.float64) + 1e-5)).astype(dtype)
    for wt, b in ((weight, bias), (None, None), (weight, None), (None, bias)):
        y = gpu.batchnorm_forward(x, mean, invstd, wt, b)
        want = (x.astype(np.float64) - _bcast(mean, x)) * _bcast(invstd, x)
        want = want * (1 if wt is None else _bcast(wt, x)) + (0 if b is None else _bcast(b, x))
        np.testing.assert_allclose(y, want, **_tol(dtype))

    for wt in (weight, None):
        got = gpu.batchnorm_backward(gy, x, mean, invstd, wt)
        for g, r in zip(got, ref_bn_backward(gy, x, mean, invstd, wt)):
            assert g.dtype == dtype
            np.testing.assert_allclose(g, r, **_tol(dtype))

    # the training forward in one call: the statistics, invstd and the forward above
    want_invstd = (1.0 / np.sqrt(var + 1e-5)).astype(dtype)
    for slope in (1.0, 0.2):
        z, m, v, inv = gpu.batchnorm_train_forward(x, weight, bias, 1e-5, slope)
        y = gpu.batchnorm_forward(x, mean, want_invstd, weight, bias)
        for got, want in ((z, np.where(y > 0, y, y * dtype(slope))), (m, mean), (v, var),
                          (inv, want_invstd)):
            assert got.dtype == dtype
            np.testing.assert_array_equal(got, want)


def test_emulated_batchnorm_stats_survive_large_offset(emulated):
    # E[x^2] - E[x]^2 would lose every digit of this variance in float32; two passes keep them
    rng = np.random.default_rng(3)
    x = (1e4 + 1e-2 * rng.standard_normal((64, 3, 5, 5))).astype(np.float32)
    mean, var = gpu.batchnorm_stats(x)
    x64 = x.astype(np.float64)
    np.testing.assert_allclose(var, x64.var(axis=(0, 2, 3)), rtol=1e-4)
    np.testing.assert_allclose(mean, x64.mean(axis=(0, 2, 3)), rtol=1e-7)


@pytest.mark.parametrize("dtype", DTYPES)
def test_emulated_leaky_relu(emulated, dtype):
    rng = np.random.default_rng(4)
    x, gy = _rand(rng, (3, 4, 5, 6), dtype), _rand(rng, (3, 4, 5, 6), dtype)
    x[0, 0, 0, :3] = (0, -0.0, np.nan)
    want_y = np.where(x > 0, x, 0.2 * x)
    want_g = np.where(x > 0, gy, 0.2 * gy)
    y, g = gpu.leaky_relu(x, 0.2), gpu.leaky_relu_grad(gy, x, 0.2)
    assert y.dtype == g.dtype == dtype
    np.testing.assert_allclose(y, want_y, rtol=1e-6, atol=0)
    np.testing.assert_allclose(g, want_g, rtol=1e-6, atol=0)


def test_emulated_empty_arrays(emulated):
    x = np.zeros((0, 3, 4, 4), np.float32)
    assert gpu.conv2d(x, np.ones((2, 3, 3, 3), np.float32), (1, 1), (1, 1)).shape == (0, 2, 4, 4)
    assert gpu.leaky_relu(x, 0.1).shape == x.shape
    with pytest.raises(ValueError, match="at least one value per channel"):
        gpu.batchnorm_stats(x)


def test_emulated_bad_arguments_name_the_problem(emulated):
    x = np.zeros((2, 3, 8, 8), np.float32)
    w = np.zeros((4, 3, 3, 3), np.float32)
    with pytest.raises(ValueError, match="3 channels"):
        gpu.conv2d(x, np.zeros((4, 2, 3, 3), np.float32), (1, 1), (0, 0))
    with pytest.raises(TypeError, match="float64"):
        gpu.conv2d(x, w.astype(np.float64), (1, 1), (0, 0))
    with pytest.raises(TypeError, match="float32 or float64"):
        gpu.leaky_relu(x.astype(np.int32), 0.1)
    with pytest.raises(ValueError, match="does not fit"):
        gpu.conv2d(x, np.zeros((4, 3, 9, 9), np.float32), (1, 1), (0, 0))
    with pytest.raises(ValueError, match="does not match"):
        gpu.conv2d_grad_input(np.zeros((2, 4, 5, 5), np.float32), w, (8, 8), (1, 1), (0, 0))
    with pytest.raises(ValueError, match="does not match"):
        gpu.conv2d_grad_weight(x, np.zeros((2, 4, 5, 5), np.float32), (3, 3), (1, 1), (0, 0))
    with pytest.raises(ValueError, match=r"shape \(3,\)"):
        gpu.batchnorm_forward(x, np.zeros(2, np.float32), np.ones(3, np.float32), None, None)
    with pytest.raises(ValueError, match="differs"):
        gpu.leaky_relu_grad(np.zeros((2, 3), np.float32), np.zeros((3, 2), np.float32), 0.1)
    with pytest.raises(ValueError, match="stride must be positive"):
        gpu.conv2d(x, w, (0, 1), (0, 0))


def test_numpy_input_without_cupy_stand_in_is_refused():
    # with the real CuPy (or none at all) a NumPy array is the wrong device
    if not backend.cupy_available():
        with pytest.raises(RuntimeError, match="CuPy"):
            gpu.leaky_relu(np.zeros(3, np.float32), 0.1)
    else:
        with pytest.raises(TypeError, match="CuPy array"):
            gpu.leaky_relu(np.zeros(3, np.float32), 0.1)


# --- 4. on a CUDA device: against the CPU kernels -------------------------------------------------------

needs_gpu = pytest.mark.skipif(not backend.cupy_available(), reason="no CUDA device (CuPy missing or no GPU)")


def _to_gpu(*arrays):
    import cupy
    return [None if a is None else cupy.asarray(a) for a in arrays]


def _close(got, want, dtype):
    assert got.dtype == dtype, f"dtype {got.dtype}, expected {np.dtype(dtype)}"
    np.testing.assert_allclose(backend.as_numpy(got), want, **_tol(dtype))


@pytest.mark.gpu
@needs_gpu
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", list(ALL_CONVS), ids=list(ALL_CONVS))
def test_gpu_conv_matches_cpu(case, dtype):
    from minigan.kernels import cpu
    N, C, H, W, O, kh, kw, s, p = ALL_CONVS[case]
    N = 8  # a real batch: the GEMMs then span several images
    rng = np.random.default_rng(10)
    x, w = _rand(rng, (N, C, H, W), dtype), _rand(rng, (O, C, kh, kw), dtype)
    Ho, Wo = _out_hw(H, W, kh, kw, s, p)
    gy = _rand(rng, (N, O, Ho, Wo), dtype)
    dx, dw, dgy = _to_gpu(x, w, gy)
    _close(gpu.conv2d(dx, dw, s, p), cpu.conv2d(x, w, s, p), dtype)
    _close(gpu.conv2d_grad_input(dgy, dw, (H, W), s, p), cpu.conv2d_grad_input(gy, w, (H, W), s, p), dtype)
    _close(gpu.conv2d_grad_weight(dx, dgy, (kh, kw), s, p),
           cpu.conv2d_grad_weight(x, gy, (kh, kw), s, p), dtype)


@pytest.mark.gpu
@needs_gpu
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", BN_SHAPES + [(64, 256, 7, 7), (64, 1024), (128, 1, 28, 28)], ids=str)
def test_gpu_batchnorm_matches_cpu(shape, dtype):
    from minigan.kernels import cpu
    rng = np.random.default_rng(11)
    C = shape[1]
    x = (1 + 2 * rng.standard_normal(shape)).astype(dtype)
    gy = _rand(rng, shape, dtype)
    weight, bias = _rand(rng, C, dtype), _rand(rng, C, dtype)
    dx, dgy, dweight, dbias = _to_gpu(x, gy, weight, bias)
    mean, var = cpu.batchnorm_stats(x)
    for got, want in zip(gpu.batchnorm_stats(dx), (mean, var)):
        _close(got, want, dtype)
    invstd = (1 / np.sqrt(var + 1e-5)).astype(dtype)
    dmean, dinvstd = _to_gpu(mean, invstd)
    for wt, b, dwt, db in ((weight, bias, dweight, dbias), (None, None, None, None)):
        _close(gpu.batchnorm_forward(dx, dmean, dinvstd, dwt, db),
               cpu.batchnorm_forward(x, mean, invstd, wt, b), dtype)
        for got, want in zip(gpu.batchnorm_backward(dgy, dx, dmean, dinvstd, dwt),
                             cpu.batchnorm_backward(gy, x, mean, invstd, wt)):
            _close(got, want, dtype)


@pytest.mark.gpu
@needs_gpu
@pytest.mark.parametrize("dtype", DTYPES)
def test_gpu_leaky_relu_matches_cpu(dtype):
    from minigan.kernels import cpu
    rng = np.random.default_rng(12)
    x, gy = _rand(rng, (64, 128, 7, 7), dtype), _rand(rng, (64, 128, 7, 7), dtype)
    dx, dgy = _to_gpu(x, gy)
    _close(gpu.leaky_relu(dx, 0.2), cpu.leaky_relu(x, 0.2), dtype)
    _close(gpu.leaky_relu_grad(dgy, dx, 0.2), cpu.leaky_relu_grad(gy, x, 0.2), dtype)


@pytest.mark.gpu
@needs_gpu
def test_gpu_results_are_deterministic():
    # col2im gathers instead of using atomics, and the reductions have a fixed order
    rng = np.random.default_rng(13)
    N, C, H, W, O, kh, kw, s, p = DCGAN_CONVS["G ConvT(256,128,4,2,1) 7->14"]
    gy, w = _to_gpu(_rand(rng, (32, O, 7, 7), np.float32), _rand(rng, (O, C, kh, kw), np.float32))
    a = gpu.conv2d_grad_input(gy, w, (H, W), s, p)
    b = gpu.conv2d_grad_input(gy, w, (H, W), s, p)
    assert bool((a == b).all())
    x, = _to_gpu(_rand(rng, (64, 256, 7, 7), np.float32))
    m1, v1 = gpu.batchnorm_stats(x)
    m2, v2 = gpu.batchnorm_stats(x)
    assert bool((m1 == m2).all()) and bool((v1 == v2).all())
