"""Benchmark of minigan's CPU kernels on every layer of the 28x28 DCGAN, against PyTorch CPU.

Run:  python benchmarks/bench_kernels.py [--batch 64 256] [--repeat 9] [--dtype float32]
      OPENBLAS_CORETYPE=Haswell python benchmarks/bench_kernels.py     (compare BLAS kernel sets)
      python benchmarks/bench_kernels.py --device cuda --batch 64 256 1024
                (minigan's CuPy kernels against PyTorch on the same GPU, cuDNN as PyTorch has it
                 by default; every timed call ends with a device synchronisation; the ceiling
                 printed is CuPy's SGEMM, and the first-call time includes NVRTC compilation)

For each layer it times, in ms (median of repeats, ours and PyTorch's interleaved in one process so
that other load on the machine hits both alike):
  fwd      conv: the forward product;  bn: stats + normalise;  act: the activation;
           bn+act: batch norm and its activation in one pass, as the DCGAN runs them
  fwd+bwd  conv: forward + grad input + grad weight (3 products; a Conv2d's weight gradient reuses
           the forward's im2col matrix, as the Conv2d op does);  bn/act: forward + backward
and prints GFLOP/s for convolutions (2 * multiply-adds per product) and ratio = ours / torch
(torch.set_num_threads(2), torch.nn.functional, same shapes; x and w both require grad), from
the medians and again from the minima (the minimum shows the code undisturbed by other load).
ConvTranspose2d layers run as conv2d_grad_input forward, conv2d (its input grad) and
conv2d_grad_weight(x=gy, gy=x) (its weight grad). It also prints the BLAS in use and NumPy's SGEMM
GFLOP/s (the ceiling for GEMM-based convolutions), the first-call time of the numba kernels, and
ends with one JSON line holding everything.

Predictions written before tuning (SGEMM measured ~200 GFLOP/s on the 2-core machine with either
OpenBLAS kernel set; conv products at ~180 GFLOP/s plus gather/scatter passes at a few GB/s):
  layer (batch 64)          MFLOP/product   fwd ms   fwd+bwd ms   torch fwd+bwd (first look)
  G1 ConvT 100->256 1->7          161        0.9        2.7        13
  G2 ConvT 256->128 7->14        3290       18         55          51
  G3 ConvT 128->1 14->28           51        1.5        3.5        12.7
  D1 Conv 1->64 28->14             26        0.7        2.0         3.1
  D2 Conv 64->128 14->7           822        5         16          11.6
  D3 Conv 128->1 7->1             0.8        0.05       0.15        0.55
  BN (64,256,7,7) / (64,128,14,14) / (64,128,7,7):  fwd+bwd 0.4 / 0.8 / 0.25 ms (torch 1.3/2.8/0.7)
  LeakyReLU/ReLU: fwd+bwd ~0.1-0.3 ms, page faults on fresh outputs permitting.
Expected weak spots: D2 (GEMM-bound, im2col copy on top of an equal GEMM) and D1 forward
(K = 16 GEMM plus an output transpose, where torch's direct kernel takes 0.2 ms).

Measured afterwards (final code; 2 shared, busy cores: load average 7-13 from other jobs, NumPy
SGEMM 125-195 GFLOP/s instead of ~210 idle; two runs per BLAS setting; ratio = ours / torch from
the medians / from the minima; the minima are the fairer comparison, since torch's medians suffer
more from the load than ours):
  fwd+bwd at batch 64        ours ms (min)   ratio, OpenBLAS SkylakeX   ratio, OPENBLAS_CORETYPE=Haswell
  G1 ConvT 100->256 1->7        3.2-5.3       0.3 / 0.3-0.6              0.1-0.2 / 0.2-0.5
  G2 ConvT 256->128 7->14        65-83        1.3-1.5 / 1.5-1.6          1.3 / 1.1-1.5
  G3 ConvT 128->1 14->28        6.8-8.5       0.6-1.0 / 0.5-0.9          0.6-1.4 / 0.6-0.8
  D1 Conv 1->64 28->14          3.1-6.3       0.9-1.3 / 1.4-1.9          0.8-0.9 / 0.9-2.1
  D2 Conv 64->128 14->7          22-29        0.9 / 1.1-1.8              0.7-1.1 / 1.1-1.2
  D3 Conv 128->1 7->1          0.54-0.84      0.5 / 0.6                  0.5-1.0 / 0.5-1.0
  BN (3 shapes)                 0.6-3.8       0.9-1.1 / 0.9-1.3          0.6-1.2 / 0.5-1.5
  ReLU / LeakyReLU (4 shapes)  0.12-1.0       0.7-1.6 / 1.0-1.9          0.7-1.5 / 0.9-1.7
At batch 256 the GEMM-bound layers fall further behind (min ratios: G2 1.4-1.6, D2 1.9-2.5): torch
runs D2 at 256 in 4x its batch-64 time, we in 4.5-5x. What bounds them: OpenBLAS reaches
130-200 GFLOP/s on their GEMMs where oneDNN's direct kernels reach ~200-230, so the three GEMMs
alone take 1.0-1.3x torch's whole time, and the im2col/col2im/transposition passes (memory-bound,
20-30% of our time) add the rest. The activations are one memory pass each: torch splits them
over both cores with spinning OpenMP threads, while handing half to our sleeping pool thread
costs ~40 us, as much as it saves below ~1M elements. D1 (1 input channel, K = 16 GEMMs) is
dominated by copies and thread hand-offs, so its time swings most with the load.

Session 3, after the convolutions started running each core's images through gather, product
(OpenBLAS held to the calling thread) and scatter in 4 MB chunks (load 1.4-2.0, two runs): every
layer's fwd+bwd ratio at batch 64 is at most 1.46 by medians and 1.48 by minima (D2 1.33-1.46 /
1.38-1.39, G2 1.09-1.28 / 1.19-1.25; Haswell: D2 1.45 / 1.41, G2 1.20 / 0.97). Predicted before:
D2 fwd+bwd -10% (22.5-23.5 -> 20-21 ms); measured 18.9-20.4 ms. A fourth run had D2 at 1.42 / 1.54;
after the conv fwd+bwd began reusing the forward's im2col matrix (as the Conv2d op does), three
runs gave D2 1.38 / 1.41, 1.38 / 1.36 and (Haswell) 1.32 / 1.31. Tables in benchmarks/RESULTS.md.
"""
import argparse
import os
import subprocess
import sys
import tempfile
import time

import numpy as np

from _common import (REPO, add_winograd_flag, import_torch, json_line, print_blas_info,
                     sgemm_gflops, time_interleaved_ms, time_ms, use_winograd)

import minigan.kernels as K  # _common made a checkout's minigan importable
from minigan import backend

# (name, transposed, in_channels, out_channels, kernel, stride, padding, input size)
CONV_LAYERS = [
    ("G1 ConvT 100->256 1->7", True, 100, 256, 7, 1, 0, 1),
    ("G2 ConvT 256->128 7->14", True, 256, 128, 4, 2, 1, 7),
    ("G3 ConvT 128->1 14->28", True, 128, 1, 4, 2, 1, 14),
    ("D1 Conv 1->64 28->14", False, 1, 64, 4, 2, 1, 28),
    ("D2 Conv 64->128 14->7", False, 64, 128, 4, 2, 1, 14),
    ("D3 Conv 128->1 7->1", False, 128, 1, 7, 1, 0, 7),
    # as the DCGAN runs D1: nn.Sequential fuses the bias-free convolution and its LeakyReLU
    # (the activation applied while each chunk of the output is in cache); torch: conv2d, then
    # leaky_relu
    ("D1 Conv+LReLU 1->64 28->14", False, 1, 64, 4, 2, 1, 28, 0.2),
]
# (name, kind, channels, spatial size, slope): batchnorm and activations after the convs
POINT_LAYERS = [
    ("G1 BN (256,7,7)", "bn", 256, 7, None),
    ("G1 ReLU (256,7,7)", "act", 256, 7, 0.0),
    ("G2 BN (128,14,14)", "bn", 128, 14, None),
    ("G2 ReLU (128,14,14)", "act", 128, 14, 0.0),
    ("D1 LeakyReLU (64,14,14)", "act", 64, 14, 0.2),
    ("D2 BN (128,7,7)", "bn", 128, 7, None),
    ("D2 LeakyReLU (128,7,7)", "act", 128, 7, 0.2),
    # as the DCGAN runs them: nn.Sequential fuses a BatchNorm2d and its activation into one op
    # (one pass each way); torch runs batch_norm, then the activation
    ("G1 BN+ReLU (256,7,7)", "bnact", 256, 7, 0.0),
    ("G2 BN+ReLU (128,14,14)", "bnact", 128, 14, 0.0),
    ("D2 BN+LeakyReLU (128,7,7)", "bnact", 128, 7, 0.2),
]


def conv_case(spec, batch, dtype, rng, device="cpu"):
    """(ours_fwd, ours_fwdbwd, flops per product, make_torch) for one conv layer; minigan gets
    the arrays on ``device``, make_torch(torch, device) the same numbers as tensors there."""
    name, transposed, cin, cout, k, s, p, size, *activation = spec
    slope = activation[0] if activation else None   # a fused LeakyReLU after the convolution
    stride, padding = (s, s), (p, p)
    hx = rng.standard_normal((batch, cin, size, size)).astype(dtype)
    if transposed:
        # ConvTranspose2d weight (in, out, k, k) is conv2d's (O, C, k, k) with O = in, C = out.
        hw = rng.standard_normal((cin, cout, k, k)).astype(dtype) * 0.05
        out = (size - 1) * s - 2 * p + k
        hgy = rng.standard_normal((batch, cout, out, out)).astype(dtype)
        macs = batch * cin * size * size * cout * k * k
    else:
        hw = rng.standard_normal((cout, cin, k, k)).astype(dtype) * 0.05
        out = (size + 2 * p - k) // s + 1
        hgy = rng.standard_normal((batch, cout, out, out)).astype(dtype)
        macs = batch * cout * out * out * cin * k * k
    x, w, gy = (backend.to_device(a, device) for a in (hx, hw, hgy))
    if transposed:
        def fwd():
            return K.conv2d_grad_input(x, w, (out, out), stride, padding)

        def fwdbwd():
            fwd()
            K.conv2d(gy, w, stride, padding)
            K.conv2d_grad_weight(gy, x, (k, k), stride, padding)
    else:
        def fwd():
            return K.conv2d(x, w, stride, padding, negative_slope=slope)

        def fwdbwd():
            # as minigan's Conv2d op does when the weight wants a gradient: the forward keeps
            # its im2col matrix and the weight gradient reuses it
            z, patches = K.conv2d(x, w, stride, padding, keep_patches=True,
                                  negative_slope=slope)
            g = gy if slope is None else K.leaky_relu_grad(gy, z, slope)
            K.conv2d_grad_input(g, w, (size, size), stride, padding)
            K.conv2d_grad_weight(x, g, (k, k), stride, padding, patches=patches)

    def make_torch(torch, device="cpu"):
        F = torch.nn.functional
        tx = torch.from_numpy(hx).to(device).requires_grad_()
        tw = torch.from_numpy(hw).to(device).requires_grad_()
        tgy = torch.from_numpy(hgy).to(device)
        conv = F.conv_transpose2d if transposed else F.conv2d

        def op(tx, tw, stride, padding):
            y = conv(tx, tw, stride=stride, padding=padding)
            return y if slope is None else F.leaky_relu(y, slope)

        def tfwd():
            with torch.no_grad():
                op(tx, tw, stride=s, padding=p)

        def tfwdbwd():
            torch.autograd.grad(op(tx, tw, stride=s, padding=p), (tx, tw), tgy)
        return tfwd, tfwdbwd
    return fwd, fwdbwd, 2 * macs, make_torch


def point_case(spec, batch, dtype, rng, device="cpu"):
    """(ours_fwd, ours_fwdbwd, 0, make_torch) for a batchnorm or activation layer."""
    name, kind, c, size, slope = spec
    host = {"x": rng.standard_normal((batch, c, size, size)).astype(dtype)}
    host["gy"] = rng.standard_normal(host["x"].shape).astype(dtype)
    host["weight"] = rng.standard_normal(c).astype(dtype)
    host["bias"] = rng.standard_normal(c).astype(dtype)
    x, gy, weight, bias = (backend.to_device(host[k], device) for k in ("x", "gy", "weight", "bias"))
    eps = 1e-5
    if kind in ("bn", "bnact"):   # as F.batch_norm(_leaky_relu) runs them in training mode
        bn_slope = 1.0 if kind == "bn" else slope

        def fwd():
            return K.batchnorm_train_forward(x, weight, bias, eps, bn_slope)

        def fwdbwd():
            z, mean, _, invstd = fwd()
            K.batchnorm_leaky_relu_backward(gy, z, x, mean, invstd, weight, bn_slope)
    else:
        def fwd():
            return K.leaky_relu(x, slope)

        def fwdbwd():
            fwd()
            K.leaky_relu_grad(gy, x, slope)

    def make_torch(torch, device="cpu"):
        F = torch.nn.functional
        tx = torch.from_numpy(host["x"]).to(device).requires_grad_()
        tgy = torch.from_numpy(host["gy"]).to(device)
        if kind in ("bn", "bnact"):
            tw = torch.from_numpy(host["weight"]).to(device).requires_grad_()
            tb = torch.from_numpy(host["bias"]).to(device).requires_grad_()

            def op():
                y = F.batch_norm(tx, None, None, tw, tb, training=True, eps=eps)
                if kind == "bn":
                    return y
                return F.relu(y) if slope == 0 else F.leaky_relu(y, slope)
            inputs = (tx, tw, tb)
        else:
            def op():
                return F.leaky_relu(tx, slope)
            inputs = (tx,)

        def tfwd():
            with torch.no_grad():
                op()

        def tfwdbwd():
            torch.autograd.grad(op(), inputs, tgy)
        return tfwd, tfwdbwd
    return fwd, fwdbwd, 0, make_torch


def first_call_seconds(dtype, device="cpu"):
    """Seconds for the first call of every kernel at tiny shapes: numba compilation, or loading
    from numba's on-disk cache when an earlier run already compiled them (on the GPU: NVRTC
    compilation, or CuPy's kernel cache)."""
    rng = np.random.default_rng(1)
    x = backend.to_device(rng.standard_normal((2, 3, 6, 6)).astype(dtype), device)
    w = backend.to_device(rng.standard_normal((4, 3, 3, 3)).astype(dtype), device)
    xp = backend.array_module(x)
    t0 = time.perf_counter()
    y = K.conv2d(x, w, (2, 2), (1, 1))
    K.conv2d_grad_input(y, w, (6, 6), (2, 2), (1, 1))
    K.conv2d_grad_weight(x, y, (3, 3), (2, 2), (1, 1))
    mean, var = K.batchnorm_stats(x)
    invstd = 1.0 / xp.sqrt(var + dtype(1e-5))
    K.batchnorm_forward(x, mean, invstd, None, None)
    K.batchnorm_backward(x, x, mean, invstd, None)
    K.batchnorm_train_forward(x, None, None, 1e-5, 0.2)
    K.leaky_relu_grad(x, K.leaky_relu(x, 0.2), 0.2)
    _synchronise(device)
    return time.perf_counter() - t0


def _synchronise(device, torch=None):
    """Wait for the GPU (CuPy's stream, or PyTorch's) so that a timing covers the work."""
    if device == "cuda":
        if torch is None:
            backend.require_cupy().cuda.Device().synchronize()
        else:
            torch.cuda.synchronize()


def _synchronised(fn, device, torch=None):
    if device == "cpu":
        return fn

    def run():
        fn()
        _synchronise(device, torch)
    return run


def gpu_sgemm_gflops(n=4096, dtype=np.float32, repeat=7):
    """GFLOP/s of an n x n x n cupy.matmul (cuBLAS): the ceiling for the GPU's GEMM-based convs."""
    cp = backend.require_cupy()
    a = cp.asarray(np.random.default_rng(0).standard_normal((n, n)).astype(dtype))
    c = cp.empty((n, n), dtype)
    ms = time_ms(_synchronised(lambda: cp.matmul(a, a, out=c), "cuda"), warmup=2, repeat=repeat)
    return 2.0 * n ** 3 / (ms * 1e-3) / 1e9


def gpu_info(torch):
    """The GPU's name and the CUDA, CuPy and cuDNN (PyTorch's) versions, as a dict."""
    cp = backend.require_cupy()
    props = cp.cuda.runtime.getDeviceProperties(cp.cuda.Device().id)
    name = props["name"].decode() if isinstance(props["name"], bytes) else props["name"]
    info = {"gpu": name, "cupy": cp.__version__, "cuda_runtime": cp.cuda.runtime.runtimeGetVersion()}
    if torch is not None:
        info.update(torch=torch.__version__, torch_cuda=torch.version.cuda,
                    cudnn=torch.backends.cudnn.version(),
                    cudnn_enabled=bool(torch.backends.cudnn.enabled))
    return info


def cold_compile_seconds(dtype_name):
    """first_call_seconds in a fresh interpreter whose numba cache is an empty temporary folder:
    the real compile time a user pays once (the variable is set for the child process only)."""
    with tempfile.TemporaryDirectory() as cache:
        env = dict(os.environ, NUMBA_CACHE_DIR=cache)
        code = ("import sys, numpy as np; sys.path[:0] = [%r, %r]; import bench_kernels as b; "
                "print(b.first_call_seconds(np.dtype(%r).type))"
                % (os.path.dirname(os.path.abspath(__file__)), REPO, dtype_name))
        out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                             check=True)
        return float(out.stdout.strip().splitlines()[-1])


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--batch", type=int, nargs="+", default=[64, 256])
    ap.add_argument("--repeat", type=int, default=9)
    ap.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    ap.add_argument("--device", choices=("cpu", "cuda"), default="cpu",
                    help="where minigan's kernels and PyTorch's ops run")
    ap.add_argument("--only", default="", help="run only layers whose name contains this text")
    ap.add_argument("--no-torch", action="store_true")
    ap.add_argument("--cold-compile", action="store_true",
                    help="also time compiling every CPU kernel from scratch, in a child process")
    add_winograd_flag(ap)
    args = ap.parse_args(argv)
    use_winograd(args)
    dtype = np.dtype(args.dtype).type
    device = args.device
    if device == "cuda" and not backend.cupy_available():
        sys.exit("--device cuda needs CuPy and a CUDA GPU; none was found (pip install "
                 "'minigan[gpu]' on a machine with an NVIDIA driver)")

    info = print_blas_info()
    torch = None if args.no_torch else import_torch(2)
    torch_note = "not used (--no-torch)" if args.no_torch else "not installed"
    if torch is not None and device == "cuda" and not torch.cuda.is_available():
        torch, torch_note = None, "installed without CUDA, so no comparison on the GPU"
    if device == "cuda":
        gpu = gpu_info(torch)
        info.update(gpu)
        print("GPU: " + ", ".join(f"{k}={v}" for k, v in gpu.items()))
    else:
        from minigan.kernels.cpu_threads import num_threads
        info["kernel_threads"] = num_threads()
        print(f"minigan CPU kernels share work over {num_threads()} threads")
    print("load average (1, 5, 15 min): %.1f %.1f %.1f  (other processes skew timings)"
          % os.getloadavg())
    compile_s = first_call_seconds(dtype, device)
    print(f"first call of all kernels ({args.dtype}, {device}): {compile_s:.2f} s "
          "(compilation, or loading the on-disk kernel cache)")
    cold_s = None
    if args.cold_compile and device == "cpu":
        cold_s = cold_compile_seconds(args.dtype)
        print(f"compiling all kernels from scratch ({args.dtype}): {cold_s:.2f} s")
    if device == "cuda":
        gemm = gpu_sgemm_gflops(4096, dtype)
        print(f"CuPy (cuBLAS) {args.dtype} GEMM 4096^3: {gemm:.0f} GFLOP/s")
    else:
        gemm = sgemm_gflops(1024, dtype)
        print(f"NumPy {args.dtype} GEMM 1024^3: {gemm:.0f} GFLOP/s")
    if torch is None:
        print(f"torch: {torch_note}")
    else:
        print(f"torch: {torch.__version__}, " + ("2 threads" if device == "cpu" else
                                                 f"CUDA, cuDNN {torch.backends.cudnn.version()}"))

    rng = np.random.default_rng(0)
    rows = []
    hdr = (f"{'layer':26s} {'N':>4s} {'pass':8s} {'ms':>8s} {'GFLOP/s':>8s} {'torch ms':>9s} "
           f"{'ratio':>6s} {'min ms':>8s} {'torch min':>9s} {'ratio':>6s}")
    print(hdr)
    print("-" * len(hdr))
    cases = [(s, conv_case) for s in CONV_LAYERS] + [(s, point_case) for s in POINT_LAYERS]
    for batch in args.batch:
        for spec, make in cases:
            if args.only not in spec[0]:
                continue
            fwd, fwdbwd, flops, make_torch = make(spec, batch, dtype, rng, device)
            tf = make_torch(torch, device) if torch is not None else None
            for label, ours, nprod, ti in (("fwd", fwd, 1, 0), ("fwd+bwd", fwdbwd, 3, 1)):
                fns = [_synchronised(ours, device)]
                if tf is not None:
                    fns.append(_synchronised(tf[ti], device, torch))
                timed = time_interleaved_ms(fns, repeat=args.repeat)
                (ms, mn), (tms, tmn) = timed[0], (timed[1] if tf is not None else (None, None))
                gf = flops * nprod / (ms * 1e-3) / 1e9 if flops else None
                ratio = ms / tms if tms else None
                ratio_min = mn / tmn if tmn else None
                rows.append({"layer": spec[0], "batch": batch, "pass": label, "ms": round(ms, 4),
                             "min_ms": round(mn, 4), "gflops": gf and round(gf, 1),
                             "torch_ms": tms and round(tms, 4), "torch_min_ms": tmn and round(tmn, 4),
                             "ratio": ratio and round(ratio, 3),
                             "ratio_min": ratio_min and round(ratio_min, 3)})

                def num(v, fmt, width):
                    return f"{'' if v is None else format(v, fmt):>{width}s}"
                print(f"{spec[0]:26s} {batch:4d} {label:8s} {ms:8.3f} {num(gf, '.0f', 8)} "
                      f"{num(tms, '.3f', 9)} {num(ratio, '.2f', 6)} {mn:8.3f} {num(tmn, '.3f', 9)} "
                      f"{num(ratio_min, '.2f', 6)}", flush=True)
    json_line({"bench": "kernels", "device": device, "dtype": args.dtype, "blas": info,
               "sgemm_gflops": round(gemm, 1), "first_call_s": round(compile_s, 3),
               "cold_compile_s": cold_s and round(cold_s, 3), "load_avg": os.getloadavg(),
               "winograd": args.winograd, "results": rows})


if __name__ == "__main__":
    main()
