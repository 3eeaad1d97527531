"""CUDA C source of minigan's GPU kernels, as plain strings (no CuPy needed to read or compile them).

Every kernel is written once over two type names and compiled per use:

* ``real_t``  -- the array element type, ``float`` (float32) or ``double`` (float64);
* ``index_t`` -- the integer type of flat indices, ``int`` when every index of a call fits in 31
  bits (cheaper division on the GPU) and ``long long`` otherwise.

``source(name, dtype, index_type)`` prepends the two ``typedef`` lines to the kernel body; the result
is exactly what :mod:`minigan.kernels.gpu` hands to ``cupy.RawKernel`` and what the tests hand to
``nvcc``. The sources include no headers and use no ``std::`` or ``size_t``, because CuPy compiles
them with NVRTC, which has no host headers. Kernels are ``extern "C"`` so CuPy finds them by name.

Layout conventions (all arrays C-contiguous):

* images are NCHW;
* the im2col matrix ("cols") is (C*kh*kw, N, Ho*Wo): row ``k = (c*kh + i)*kw + j`` is kernel tap
  (i, j) of input channel c; along a row, image n's output pixels (ho, wo) lie one after another.
  With this layout one GEMM over the whole batch does each convolution product.
* batchnorm views its input as (N, C, S), S = H*W (S = 1 for an (N, C) input).
"""
import numpy as np

# Threads per block for every kernel; the batchnorm reductions are written for exactly this many.
BLOCK = 256

# Kernels that walk the data with a grid-stride loop get at most this many blocks, so that a flat
# index plus one stride (BLOCK * MAX_GRID < 2**25) stays far inside ``int`` range when index_t is int.
MAX_GRID = 65535

_REAL = {np.dtype(np.float32): "float", np.dtype(np.float64): "double"}
INDEX_TYPES = ("int", "long long")

# Opening of a grid-stride loop over idx in [0, total): each thread takes every
# (blockDim * gridDim)-th index, so any grid size covers any total.
_GRID_STRIDE = (
    "for (index_t idx = (index_t)blockIdx.x * (index_t)blockDim.x + (index_t)threadIdx.x;"
    " idx < total; idx += (index_t)blockDim.x * (index_t)gridDim.x)"
)

IM2COL = r"""
// cols[(c*kh + i)*kw + j, n, ho*Wo + wo] = x[n, c, ho*sh - ph + i, wo*sw - pw + j], 0 in the padding.
// One thread per element of cols, in cols' own order, so the writes are coalesced.
extern "C" __global__ void im2col(
    const real_t* __restrict__ x, real_t* __restrict__ cols,
    const index_t N, const index_t C, const index_t H, const index_t W,
    const index_t kh, const index_t kw, const index_t sh, const index_t sw,
    const index_t ph, const index_t pw, const index_t Ho, const index_t Wo)
{
    const index_t total = C * kh * kw * N * Ho * Wo;
    GRID_STRIDE {
        index_t t = idx;
        const index_t wo = t % Wo; t /= Wo;
        const index_t ho = t % Ho; t /= Ho;
        const index_t n = t % N;   t /= N;
        const index_t j = t % kw;  t /= kw;
        const index_t i = t % kh;
        const index_t c = t / kh;
        const index_t h = ho * sh - ph + i;
        const index_t w = wo * sw - pw + j;
        real_t v = 0;
        if (h >= 0 && h < H && w >= 0 && w < W) {
            v = x[((n * C + c) * H + h) * W + w];
        }
        cols[idx] = v;
    }
}
"""

COL2IM = r"""
// The adjoint of im2col: x[n, c, h, w] = sum of cols[(c*kh + i)*kw + j, n, ho*Wo + wo] over every
// tap (i, j) and output pixel (ho, wo) that im2col read x[n, c, h, w] into, i.e. with
// ho*sh - ph + i == h and wo*sw - pw + j == w.
// One thread per element of x gathers its own sum (no atomics): the result is deterministic and
// each sum is taken in the same order (i, then j, ascending) on every run.
extern "C" __global__ void col2im(
    const real_t* __restrict__ cols, real_t* __restrict__ x,
    const index_t N, const index_t C, const index_t H, const index_t W,
    const index_t kh, const index_t kw, const index_t sh, const index_t sw,
    const index_t ph, const index_t pw, const index_t Ho, const index_t Wo)
{
    const index_t total = N * C * H * W;
    const index_t L = Ho * Wo;
    GRID_STRIDE {
        index_t t = idx;
        const index_t w = t % W; t /= W;
        const index_t h = t % H; t /= H;
        const index_t c = t % C;
        const index_t n = t / C;
        real_t acc = 0;
        // ho*sh == h + ph - i has a solution only for the taps i congruent to h + ph mod sh;
        // start at the smallest and step by sh. h + ph >= 0, so % is the true remainder.
        for (index_t i = (h + ph) % sh; i < kh; i += sh) {
            const index_t hs = h + ph - i;       // = ho * sh
            if (hs < 0) break;                   // a larger tap lands further above the image
            const index_t ho = hs / sh;
            if (ho >= Ho) continue;              // below the last output row: try a larger tap
            for (index_t j = (w + pw) % sw; j < kw; j += sw) {
                const index_t ws = w + pw - j;   // = wo * sw
                if (ws < 0) break;
                const index_t wo = ws / sw;
                if (wo >= Wo) continue;
                acc += cols[(((c * kh + i) * kw + j) * N + n) * L + ho * Wo + wo];
            }
        }
        x[idx] = acc;
    }
}
"""

# Block-wide sum used by the batchnorm reductions: a tree over BLOCK doubles in shared memory.
# Every thread of the block must call it (it synchronises) and every thread gets the total.
_BLOCK_SUM = r"""
#define BLOCK %(block)d

__device__ double block_sum(double v, double* buf)
{
    buf[threadIdx.x] = v;
    __syncthreads();
    for (int half = BLOCK / 2; half > 0; half >>= 1) {
        if ((int)threadIdx.x < half) buf[threadIdx.x] += buf[threadIdx.x + half];
        __syncthreads();
    }
    const double total = buf[0];
    __syncthreads();  // nobody may overwrite buf[0] (next call) before all threads have read it
    return total;
}
""" % {"block": BLOCK}

BN_STATS = _BLOCK_SUM + r"""
// Per-channel mean and biased variance of x viewed as (N, C, S): one block per channel c, BLOCK
// threads. Sums are taken in double whatever real_t is. Two passes over the channel: the mean,
// then the squared deviations from it (no E[x^2] - E[x]^2 cancellation); subtracting
// (sum d)^2 / M corrects for the rounding of the mean (the "corrected two-pass" formula).
extern "C" __global__ void bn_stats(
    const real_t* __restrict__ x, real_t* __restrict__ mean_out, real_t* __restrict__ var_out,
    const index_t N, const index_t C, const index_t S)
{
    __shared__ double buf[BLOCK];
    const index_t c = blockIdx.x;
    const index_t M = N * S;

    double s = 0;
    for (index_t m = threadIdx.x; m < M; m += BLOCK) {
        const index_t n = m / S;
        s += (double)x[(n * C + c) * S + (m - n * S)];
    }
    const double mean = block_sum(s, buf) / (double)M;

    double d1 = 0, d2 = 0;
    for (index_t m = threadIdx.x; m < M; m += BLOCK) {
        const index_t n = m / S;
        const double d = (double)x[(n * C + c) * S + (m - n * S)] - mean;
        d1 += d;
        d2 += d * d;
    }
    const double sum_d = block_sum(d1, buf);
    const double sum_d2 = block_sum(d2, buf);

    if (threadIdx.x == 0) {
        mean_out[c] = (real_t)mean;
        var_out[c] = (real_t)((sum_d2 - sum_d * sum_d / (double)M) / (double)M);
    }
}
"""

BN_FORWARD = r"""
// y = (x - mean[c]) * invstd[c] * weight[c] + bias[c] for x viewed as (N, C, S); weight and bias
// are left out when has_weight / has_bias is 0 (their pointers are then never read).
extern "C" __global__ void bn_forward(
    const real_t* __restrict__ x, const real_t* __restrict__ mean, const real_t* __restrict__ invstd,
    const real_t* __restrict__ weight, const real_t* __restrict__ bias,
    const int has_weight, const int has_bias, real_t* __restrict__ y,
    const index_t total, const index_t C, const index_t S)
{
    GRID_STRIDE {
        const index_t c = (idx / S) % C;
        real_t v = (x[idx] - mean[c]) * invstd[c];
        if (has_weight) v *= weight[c];
        if (has_bias) v += bias[c];
        y[idx] = v;
    }
}
"""

BN_BACKWARD = _BLOCK_SUM + r"""
// Training-mode batchnorm backward for x viewed as (N, C, S), one block per channel c:
//   xhat = (x - mean) * invstd,  M = N*S,
//   gbias[c] = sum gy,  gweight[c] = sum gy * xhat     (sums in double),
//   gx = weight * invstd / M * (M*gy - gbias - xhat*gweight)
//      = weight * invstd * (gy - gbias/M - xhat * gweight/M).
// weight is taken as 1 when has_weight is 0. The block first reduces both sums, then walks the
// channel again to write gx (the second read mostly hits L2).
extern "C" __global__ void bn_backward(
    const real_t* __restrict__ gy, const real_t* __restrict__ x,
    const real_t* __restrict__ mean, const real_t* __restrict__ invstd,
    const real_t* __restrict__ weight, const int has_weight,
    real_t* __restrict__ gx, real_t* __restrict__ gweight, real_t* __restrict__ gbias,
    const index_t N, const index_t C, const index_t S)
{
    __shared__ double buf[BLOCK];
    const index_t c = blockIdx.x;
    const index_t M = N * S;
    const double mu = (double)mean[c];
    const double is = (double)invstd[c];

    double sg = 0, sgx = 0;
    for (index_t m = threadIdx.x; m < M; m += BLOCK) {
        const index_t n = m / S;
        const index_t off = (n * C + c) * S + (m - n * S);
        const double g = (double)gy[off];
        sg += g;
        sgx += g * (((double)x[off] - mu) * is);
    }
    const double gb = block_sum(sg, buf);
    const double gw = block_sum(sgx, buf);
    if (threadIdx.x == 0) {
        gbias[c] = (real_t)gb;
        gweight[c] = (real_t)gw;
    }

    const real_t scale = (real_t)((has_weight ? (double)weight[c] : 1.0) * is);
    const real_t gy_mean = (real_t)(gb / (double)M);
    const real_t k = (real_t)(gw / (double)M);
    const real_t mu_r = mean[c];
    const real_t is_r = invstd[c];
    for (index_t m = threadIdx.x; m < M; m += BLOCK) {
        const index_t n = m / S;
        const index_t off = (n * C + c) * S + (m - n * S);
        const real_t xhat = (x[off] - mu_r) * is_r;
        gx[off] = scale * (gy[off] - gy_mean - xhat * k);
    }
}
"""

LEAKY_RELU = r"""
// y = x for x > 0, negative_slope * x otherwise (NaN stays NaN).
extern "C" __global__ void leaky_relu(
    const real_t* __restrict__ x, real_t* __restrict__ y, const real_t negative_slope,
    const index_t total)
{
    GRID_STRIDE {
        const real_t v = x[idx];
        // slope 0 (relu) gives 0 at -inf, where v * 0 would be NaN
        y[idx] = v > 0 ? v : ((negative_slope != 0 || v != v) ? v * negative_slope : negative_slope);
    }
}
"""

LEAKY_RELU_GRAD = r"""
// gx = gy where x > 0, negative_slope * gy elsewhere (x == 0 takes the slope, like PyTorch).
extern "C" __global__ void leaky_relu_grad(
    const real_t* __restrict__ gy, const real_t* __restrict__ x, real_t* __restrict__ gx,
    const real_t negative_slope, const index_t total)
{
    GRID_STRIDE {
        const real_t g = gy[idx];
        gx[idx] = x[idx] > 0 ? g : g * negative_slope;
    }
}
"""

# Kernel name -> body. The name is also the extern "C" symbol inside the body.
KERNELS = {
    "im2col": IM2COL,
    "col2im": COL2IM,
    "bn_stats": BN_STATS,
    "bn_forward": BN_FORWARD,
    "bn_backward": BN_BACKWARD,
    "leaky_relu": LEAKY_RELU,
    "leaky_relu_grad": LEAKY_RELU_GRAD,
}


def real_type(dtype):
    """The CUDA C type for a NumPy dtype: 'float' for float32, 'double' for float64."""
    try:
        return _REAL[np.dtype(dtype)]
    except (KeyError, TypeError):
        raise TypeError(f"GPU kernels take float32 or float64 arrays, got dtype {dtype!r}") from None


def source(name, dtype, index_type):
    """Complete CUDA C source of kernel ``name`` for element ``dtype`` and flat-index ``index_type``."""
    if name not in KERNELS:
        raise KeyError(f"no GPU kernel named {name!r}; known: {sorted(KERNELS)}")
    if index_type not in INDEX_TYPES:
        raise ValueError(f"index_type must be one of {INDEX_TYPES}, got {index_type!r}")
    head = (f"// minigan kernel {name}: real_t = {real_type(dtype)}, index_t = {index_type}\n"
            f"typedef {real_type(dtype)} real_t;\n"
            f"typedef {index_type} index_t;\n")
    return head + KERNELS[name].replace("GRID_STRIDE", _GRID_STRIDE)
