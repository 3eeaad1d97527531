"""The VAE and PixelCNN examples: short runs (tiny widths) that write every file, a checkpoint a
sampler can rebuild the decoder from, an exact --resume; the default-length runs (slow) reach the
goals on the held-out bundled digits."""
import numpy as np
import pytest

import minigan as mg
from minigan import io
from minigan.density import decode_mean, decoder_from_spec

from examples import pixelcnn_mnist, vae_mnist

TINY_VAE = ["--bundled", "--no-progress", "--nz", "3", "--ngf", "2", "--ndf", "2",
            "--batch-size", "16", "--metric-samples", "20", "--samples", "4"]
TINY_PIXELCNN = ["--bundled", "--no-progress", "--hidden", "2", "--layers", "1",
                 "--batch-size", "16", "--metric-samples", "4", "--samples", "4"]


def final_record(out):
    records = io.read_jsonl(out / "metrics.jsonl")
    assert records[-1]["final"]
    return records


def test_vae_example_short_run_writes_everything_and_a_rebuildable_decoder(tmp_path):
    out = tmp_path / "vae"
    assert vae_mnist.main(TINY_VAE + ["--iters", "3", "--checkpoint-every", "2",
                                      "--out", str(out)]) == 0
    for name in ("samples_final.png", "reconstructions.png", "interpolation.png", "losses.png",
                 "checkpoint.npz"):
        assert (out / name).is_file(), name
    records = final_record(out)
    assert [r["step"] for r in records[:-1]] == [2, 3]
    assert all(400 < r["heldout_neg_elbo"] < 800 for r in records)   # untrained: ~ 784 log 2
    assert records[-1]["n"] == 20 and 1 <= records[-1]["classifier_score"] <= 10
    # what examples/sample.py needs: the decoder's class, arguments and latent size
    state = io.load_checkpoint(out / "checkpoint.npz")
    spec = state["extra"]["decoder"]
    assert spec["nz"] == 3 and spec["kwargs"] == {"nz": 3, "ngf": 2, "nc": 1}
    decoder = decoder_from_spec(spec)
    weights = state["models"]["VAE"]
    decoder.load_state_dict({k[len("decoder."):]: v for k, v in weights.items()
                             if k.startswith("decoder.")})
    images = decode_mean(decoder, mg.randn(5, 3))
    assert images.shape == (5, 1, 28, 28) and 0 <= images.min() and images.max() <= 1


def test_vae_example_resume_is_exact(tmp_path):
    straight, stopped = tmp_path / "straight", tmp_path / "stopped"
    flags = TINY_VAE + ["--no-metrics"]
    assert vae_mnist.main(flags + ["--iters", "4", "--out", str(straight)]) == 0
    assert vae_mnist.main(flags + ["--iters", "2", "--out", str(stopped)]) == 0
    assert vae_mnist.main(flags + ["--iters", "4", "--out", str(stopped), "--resume"]) == 0
    a = io.load_checkpoint(straight / "checkpoint.npz")["models"]["VAE"]
    b = io.load_checkpoint(stopped / "checkpoint.npz")["models"]["VAE"]
    for key in a:
        np.testing.assert_array_equal(a[key], b[key], err_msg=key)


def test_pixelcnn_example_short_run(tmp_path):
    out = tmp_path / "pixelcnn"
    assert pixelcnn_mnist.main(TINY_PIXELCNN + ["--iters", "2", "--out", str(out)]) == 0
    for name in ("samples_final.png", "completions.png", "losses.png", "checkpoint.npz"):
        assert (out / name).is_file(), name
    records = final_record(out)
    final = records[-1]
    assert 400 < final["heldout_nll"] < 1000
    assert final["heldout_bits_per_dim"] == pytest.approx(final["heldout_nll"] / (784 * np.log(2)))
    assert final["sample_s_per_image"] > 0 and final["n"] == 4
    spec = io.load_checkpoint(out / "checkpoint.npz")["extra"]["model"]
    assert spec["kwargs"] == {"h": 2, "layers": 1, "first_kernel": 7}


def test_examples_reject_bad_flags():
    with pytest.raises(SystemExit, match="--hidden must be >= 1"):
        pixelcnn_mnist.parse_args(["--hidden", "0"])
    with pytest.raises(SystemExit, match="--metric-samples must be >= 1"):
        vae_mnist.parse_args(["--metric-samples", "0"])


# --- the default runs (python -m pytest -m slow) --------------------------------------------------

@pytest.mark.slow
def test_vae_default_run_reaches_105_nats(tmp_path):
    """The default run on the bundled digits: held-out negative ELBO <= 105 nats per image."""
    out = tmp_path / "vae"
    assert vae_mnist.main(["--bundled", "--no-progress", "--out", str(out)]) == 0
    assert final_record(out)[-1]["heldout_neg_elbo"] <= 105.0


@pytest.mark.slow
def test_pixelcnn_default_run_reaches_90_nats(tmp_path):
    """The default run on the bundled digits: held-out NLL <= 90 nats per image."""
    out = tmp_path / "pixelcnn"
    assert pixelcnn_mnist.main(["--bundled", "--no-progress", "--out", str(out)]) == 0
    assert final_record(out)[-1]["heldout_nll"] <= 90.0


# --- devices --------------------------------------------------------------------------------------

@pytest.mark.skipif(mg.backend.cupy_available(), reason="CuPy and a GPU are present")
@pytest.mark.parametrize("example", [vae_mnist, pixelcnn_mnist])
def test_device_cuda_without_a_gpu_stops_before_loading_data(example, monkeypatch, tmp_path):
    from examples import _common

    def no_data(*args, **kwargs):
        raise AssertionError("data were loaded")
    monkeypatch.setattr(example, "load_split", no_data)
    with pytest.raises(SystemExit, match="--device cuda needs CuPy") as stopped:
        example.main(["--device", "cuda", "--out", str(tmp_path / "run")])
    assert str(stopped.value) == _common.DEVICE_MISSING
    assert not (tmp_path / "run").exists()


@pytest.mark.gpu
@pytest.mark.skipif(not mg.backend.cupy_available(),
                    reason="no CUDA device (CuPy missing or no GPU)")
def test_tiny_runs_on_the_gpu(tmp_path):
    assert vae_mnist.main(TINY_VAE + ["--iters", "2", "--device", "cuda",
                                      "--out", str(tmp_path / "vae")]) == 0
    assert pixelcnn_mnist.main(TINY_PIXELCNN + ["--iters", "2", "--device", "cuda",
                                                "--out", str(tmp_path / "pixelcnn")]) == 0
    for out in ("vae", "pixelcnn"):
        assert final_record(tmp_path / out)[-1]["step"] == 2


# --- the comparison benchmark ---------------------------------------------------------------------

def test_bench_generative_compares_three_tiny_runs(tmp_path):
    import json
    import os
    import subprocess
    import sys
    from examples import dcgan_mnist
    runs = {name: tmp_path / name for name in ("dcgan", "vae", "pixelcnn")}
    assert dcgan_mnist.main(["--bundled", "--no-progress", "--iters", "2", "--ngf", "2", "--ndf",
                             "2", "--no-metrics", "--out", str(runs["dcgan"])]) == 0
    assert vae_mnist.main(TINY_VAE + ["--iters", "2", "--no-metrics",
                                      "--out", str(runs["vae"])]) == 0
    assert pixelcnn_mnist.main(TINY_PIXELCNN + ["--iters", "2", "--no-metrics",
                                                "--out", str(runs["pixelcnn"])]) == 0
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    done = subprocess.run(
        [sys.executable, os.path.join(root, "benchmarks", "bench_generative.py"), "--n", "8",
         "--repeat", "1", "--no-torch", "--picture", str(tmp_path / "side_by_side.png")]
        + [arg for name, out in runs.items() for arg in (f"--{name}", str(out))],
        capture_output=True, text=True, cwd=root, timeout=600,
        env=dict(os.environ, PYTHONPATH=root + os.pathsep + os.environ.get("PYTHONPATH", "")))
    assert done.returncode == 0, done.stdout + done.stderr
    last = json.loads(done.stdout.strip().splitlines()[-1])
    rows = last["results"]
    assert last["benchmark"] == "generative" and last["n"] == 8
    assert [rows[m]["iterations"] for m in ("DCGAN", "VAE", "PixelCNN")] == [2, 2, 2]
    assert 400 < rows["PixelCNN"]["nats"] < 1000 and 400 < rows["VAE"]["nats"] < 1000
    assert rows["VAE"]["iw_nats"] < rows["VAE"]["nats"]   # the tighter bound
    assert all(rows[m]["fid"] > 0 and rows[m]["draw_per_image_s"] > 0 for m in rows
               if not m.startswith("real"))
    assert rows["real digits (grey)"]["fid"] < rows["PixelCNN"]["fid"]   # real beats untrained
    assert (tmp_path / "side_by_side.png").is_file()
    assert "DCGAN | VAE | PixelCNN" in done.stdout
