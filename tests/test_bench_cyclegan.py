"""benchmarks/bench_cyclegan.py runs end to end at a tiny size (minigan's side only) and prints
its table and a last JSON line; the numbers are measured at full size (benchmarks/RESULTS.md)."""
from test_benchmarks import run_script


def test_bench_cyclegan_prints_the_iteration_table_and_json():
    text, last = run_script("bench_cyclegan.py", "--batch", "2", "--repeat", "1", "--warmup",
                            "0", "--ngf", "4", "--ndf", "4", "--n-blocks", "1", "--no-torch")
    assert "One CycleGAN iteration (ngf 4, ndf 4, 1 blocks" in text and "load average" in text
    assert last["benchmark"] == "cyclegan_iteration"
    assert last["results"][0]["batch"] == 2 and last["results"][0]["minigan_ms"] > 0
