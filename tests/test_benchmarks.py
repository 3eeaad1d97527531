"""The benchmark scripts run end to end at tiny sizes and print their table and a last JSON line
(the numbers themselves are measured by running them at full size: see benchmarks/RESULTS.md).
PyTorch is left out (--no-torch, or only minigan's side) so the tests need only the package."""
import json
import os
import subprocess
import sys

import pytest

from minigan import backend

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def launch(name, *args):
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return subprocess.run([sys.executable, os.path.join(ROOT, "benchmarks", name), *args],
                          capture_output=True, text=True, cwd=ROOT, env=env, timeout=300)


def run_script(name, *args):
    done = launch(name, *args)
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.strip().splitlines()
    return done.stdout, json.loads(lines[-1])


def test_bench_dcgan_prints_the_iteration_table_and_json(device):
    text, last = run_script("bench_dcgan.py", "--batch", "4", "--repeat", "1", "--warmup", "0",
                            "--no-torch", "--device", device)
    assert f"One DCGAN iteration on {device}" in text
    assert last["benchmark"] == "dcgan_iteration" and last["results"][0]["batch"] == 4


def test_bench_kernels_times_every_layer_and_pass(device):
    text, last = run_script("bench_kernels.py", "--batch", "2", "--repeat", "1", "--no-torch",
                            "--device", device)
    rows = last["results"]
    assert last["device"] == device and last["sgemm_gflops"] > 0 and last["first_call_s"] > 0
    # 6 convolutions, the DCGAN's fused convolution + activation, 7 batchnorm / activation
    # layers and the DCGAN's 3 fused batchnorm + activation pairs, each forward and forward +
    # backward
    assert len(rows) == 34 and {r["pass"] for r in rows} == {"fwd", "fwd+bwd"}
    assert sum(r["layer"].startswith("G2 BN+ReLU") for r in rows) == 2
    d2 = [r for r in rows if r["layer"].startswith("D2 Conv")]
    assert len(d2) == 2 and all(r["ms"] > 0 and r["gflops"] > 0 for r in d2)
    assert "D2 Conv 64->128 14->7" in text


@pytest.mark.skipif(backend.cupy_available(), reason="CuPy and a GPU are here")
@pytest.mark.parametrize("script", ["bench_kernels.py", "bench_dcgan.py"])
def test_gpu_benchmarks_without_a_gpu_say_what_is_missing(script):
    done = launch(script, "--device", "cuda", "--batch", "2", "--no-torch")
    assert done.returncode != 0
    assert "--device cuda needs CuPy and a CUDA GPU" in done.stderr


def test_fid_vs_torch_records_runs_and_skips_them_on_a_second_call(tmp_path):
    records = tmp_path / "fid.jsonl"
    args = ["--iters", "2", "--seeds", "0", "1", "--frameworks", "minigan",
            "--records", str(records)]
    text, last = run_script("fid_vs_torch.py", *args)
    rows = [json.loads(line) for line in records.read_text().splitlines()]
    assert [(r["framework"], r["seed"], r["iters"]) for r in rows] == [("minigan", 0, 2),
                                                                        ("minigan", 1, 2)]
    # two iterations leave the generator far from the digits: a large FID, and two seeds differ
    assert all(r["fid"] > 100 for r in rows) and rows[0]["fid"] != rows[1]["fid"]
    assert last["summary"]["minigan"]["seeds"] == [0, 1]
    assert last["summary"]["minigan"]["fid_mean"] == pytest.approx(
        (rows[0]["fid"] + rows[1]["fid"]) / 2)
    assert last["fid_ratio"] is None   # no PyTorch side in this call
    text, _ = run_script("fid_vs_torch.py", *args)
    assert "seed 0: FID" not in text   # nothing retrained: the records had both runs
    assert len(records.read_text().splitlines()) == 2


# D2's forward product per call for 2 images: im2col's 49 pixels x 1024 taps x 128 channels;
# Winograd's 81 point-tiles (2x2 tiles, 3 of them short: 25 + 20 + 20 + 16) x 256 (4 phases x 64
# channels) x 128
D2_MACS = {"--no-winograd": 2 * 49 * 1024 * 128, "default": 2 * 81 * 256 * 128}


@pytest.mark.parametrize("conv", sorted(D2_MACS))
def test_timeline_splits_every_dcgan_layer_by_pass_thread_and_phase(tmp_path, conv):
    trace = tmp_path / "trace.json"
    text, last = run_script("timeline.py", "--batch", "2", "--iters", "2", "--warmup", "1",
                            "--trace", str(trace), *([conv] if conv != "default" else []))
    assert last["winograd"] == (conv == "default")
    ops = {r["op"]: r for r in last["ops"]}
    for layer in ("G1", "G2", "G3", "D1", "D2", "D3"):
        assert {f"{layer} fwd", f"{layer} bwd-weight"} <= set(ops), sorted(ops)
    # D2's forward runs three times an iteration (real, fake, fake for G); its products must
    # add up to D2_MACS each time
    d2 = ops["D2 fwd"]
    assert d2["calls"] == 3
    macs = sum(m * k * n * stack * count for m, k, n, _, stack, count in d2["products"])
    assert macs == 2 * 3 * D2_MACS[conv]   # iterations x calls x the product
    assert d2["phases_cpu_ms"]["t0:gemm"] > 0 and d2["phases_cpu_ms"]["t0:gather"] > 0
    assert d2["ceiling_alone_gflops"] > 0 and d2["ceiling_pair_gflops"] > 0
    events = json.loads(trace.read_text())["traceEvents"]
    assert any(e["name"] == "D2 fwd: gemm" for e in events)
    assert ops["adam"]["calls"] == 12   # one per parameter a step: G 7, D 5
    assert "CPU ms per iteration by phase" in text


def test_fid_share_floor_draws_real_digits_at_the_shares_of_a_run_or_given(tmp_path):
    run = tmp_path / "run"
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    trained = subprocess.run([sys.executable, "-m", "examples.dcgan_mnist", "--iters", "2",
                              "--ngf", "8", "--ndf", "8", "--bundled", "--no-metrics",
                              "--no-progress", "--out", str(run)],
                             capture_output=True, text=True, cwd=ROOT, env=env, timeout=300)
    assert trained.returncode == 0, trained.stdout + trained.stderr
    text, rows = run_script("fid_share_floor.py", str(run), "--n", "300",
                            "--shares", "1", "0", "0", "0", "0", "0", "0", "0", "0", "0")
    equal, only_zeros, generated, at_its_shares = rows
    assert max(equal["class_shares"]) < 0.13 and equal["classifier_score"] > 8.5
    # 300 zeros: the classifier sees (nearly) only zeros, and FID pays for the missing classes
    assert only_zeros["class_shares"][0] > 0.95 and only_zeros["fid"] > 3 * equal["fid"]
    assert generated["what"].endswith("(G)") and "real digits at its shares" in text
    # the real digits follow the generated shares up to the classifier's mistakes
    diff = [abs(a - b) for a, b in zip(generated["class_shares"], at_its_shares["class_shares"])]
    assert max(diff) < 0.05
