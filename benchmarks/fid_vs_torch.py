"""Quality check of the main job: the FID minigan's DCGAN reaches against the FID the same
architecture reaches in PyTorch, with the same hyperparameters and iteration count, both scored
by minigan's metric (issue 4).

Run:  python benchmarks/fid_vs_torch.py [--iters 2000] [--seeds 0 1 2]
                                        [--frameworks minigan torch] [--records FILE]

For each seed both frameworks train what ``python -m examples.dcgan_mnist --seed S --iters N``
trains, and start equal:
- the same initial weights (minigan's DCGAN init under ``minigan.manual_seed(S)``, copied into
  PyTorch);
- the same minibatches in the same order (``minigan.data.Batches`` over the bundled training
  digits with seed S, as the example draws them);
- the same noise z at every step (minigan's seeded CPU generator, drawn after the models are
  built, as the example draws it);
- Adam(lr 2e-4, betas (0.5, 0.999)), batch 64, the non-saturating loss with
  binary_cross_entropy_with_logits, D frozen during the generator's step.
After training, each generator in evaluation mode (batch norm with its running statistics) maps
the example's 2,000 final-metrics noise vectors to images, and ``minigan.metrics`` scores them:
FID against the held-out real digits through the shipped LeNet's features, classifier score and
class shares. The two runs see identical inputs, so what differs is only the arithmetic (float
rounding, which grows over training as GAN dynamics amplify it) and speed.

Every finished run is appended to ``--records`` (JSON lines) at once, and runs already there are
skipped, so frameworks and seeds can run in separate processes (for example one per core, with
``taskset -c K`` and OPENBLAS_NUM_THREADS=1) and ``--seeds`` with nothing new only reprints the
table. The last line printed is JSON.
"""
import argparse
import json
import math
import os
import sys
import time

import numpy as np

from _common import import_torch, json_line, print_blas_info

import minigan as mg  # _common made a checkout's minigan importable
from minigan import metrics, optim
from minigan.data import Batches, load_bundled, to_unit_range
from minigan.gan.models import make_dcgan
from minigan.gan.train import generate, sample_noise, train_step

from bench_dcgan import NZ, torch_dcgan, torch_train_step

BATCH, LR, BETAS, N_SAMPLES = 64, 2e-4, (0.5, 0.999), 2000


def start(seed):
    """What both frameworks start from: minigan's initial (G, D) and the minibatch iterator."""
    mg.manual_seed(seed)
    images, _ = load_bundled("train")
    loader = Batches(to_unit_range(images), batch_size=BATCH, seed=seed)
    G, D = make_dcgan()
    return G, D, loader.forever()


def final_noise(seed):
    """The noise the example's final metrics use (examples/dcgan_mnist.final_metrics)."""
    return np.random.default_rng([seed, 3]).standard_normal((N_SAMPLES, NZ)).astype(np.float32)


def train_minigan(seed, iters):
    G, D, batches = start(seed)
    opt_g = optim.Adam(G.parameters(), lr=LR, betas=BETAS)
    opt_d = optim.Adam(D.parameters(), lr=LR, betas=BETAS)
    for step in range(1, iters + 1):
        real = mg.Tensor(next(batches))
        train_step(G, D, opt_g, opt_d, real, sample_noise(BATCH, NZ), step=step)
    return generate(G, mg.Tensor(final_noise(seed)))


def train_torch(torch, seed, iters):
    G_mg, D_mg, batches = start(seed)
    G, D = torch_dcgan(torch, G_mg, D_mg)
    opt_g = torch.optim.Adam(G.parameters(), lr=LR, betas=BETAS)
    opt_d = torch.optim.Adam(D.parameters(), lr=LR, betas=BETAS)
    ones, zeros = torch.ones(BATCH), torch.zeros(BATCH)
    for _ in range(iters):
        real = torch.from_numpy(next(batches))
        z = torch.from_numpy(sample_noise(BATCH, NZ).numpy()).reshape(BATCH, NZ, 1, 1)
        loss_d, loss_g = torch_train_step(torch, G, D, opt_g, opt_d, real, z, ones, zeros)
        if not (math.isfinite(loss_d) and math.isfinite(loss_g)):
            raise FloatingPointError(f"torch run diverged (loss_d {loss_d}, loss_g {loss_g})")
    G.eval()
    with torch.no_grad():
        z = torch.from_numpy(final_noise(seed)).reshape(N_SAMPLES, NZ, 1, 1)
        return np.concatenate([G(part).numpy() for part in z.split(256)])


def read_records(path):
    if not path or not os.path.exists(path):
        return []
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def mean_se(values):
    values = np.asarray(values, np.float64)
    se = values.std(ddof=1) / math.sqrt(len(values)) if len(values) > 1 else None
    return float(values.mean()), None if se is None else float(se)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--iters", type=int, default=2000)
    parser.add_argument("--seeds", type=int, nargs="*", default=[0])
    parser.add_argument("--frameworks", nargs="+", choices=["minigan", "torch"],
                        default=["minigan", "torch"])
    parser.add_argument("--threads", type=int, default=2, help="PyTorch CPU threads")
    parser.add_argument("--records", default=None, help="JSON-lines file of finished runs")
    args = parser.parse_args(argv)
    if args.iters < 1:
        parser.error(f"--iters must be >= 1, got {args.iters}")

    print_blas_info()
    torch = import_torch(args.threads) if "torch" in args.frameworks else None
    if "torch" in args.frameworks and torch is None:
        print("PyTorch is not installed: only minigan's side runs")
    records = read_records(args.records)
    done = {(r["framework"], r["seed"], r["iters"]) for r in records}
    for seed in args.seeds:
        for framework in args.frameworks:
            if (framework, seed, args.iters) in done or (framework == "torch" and torch is None):
                continue
            t0, c0 = time.perf_counter(), time.process_time()
            images = (train_minigan(seed, args.iters) if framework == "minigan"
                      else train_torch(torch, seed, args.iters))
            wall, cpu = time.perf_counter() - t0, time.process_time() - c0
            result = metrics.evaluate_images(images)
            record = {"framework": framework, "seed": seed, "iters": args.iters,
                      "fid": result["fid"], "classifier_score": result["classifier_score"],
                      "class_shares": [round(float(s), 4) for s in result["class_shares"]],
                      "fid_reference": result["fid_reference"], "wall_s": round(wall, 1),
                      "cpu_s": round(cpu, 1), "load_avg": os.getloadavg()[0]}
            print(f"{framework:8s} seed {seed}: FID {record['fid']:.1f}, score "
                  f"{record['classifier_score']:.2f}, {wall:.0f} s wall, {cpu:.0f} s CPU",
                  flush=True)
            records.append(record)
            if args.records:
                os.makedirs(os.path.dirname(os.path.abspath(args.records)), exist_ok=True)
                with open(args.records, "a") as f:
                    f.write(json.dumps(record) + "\n")

    rows = [r for r in records if r["iters"] == args.iters]
    print(f"\nDCGAN, {args.iters} iterations, batch {BATCH}, FID from minigan's LeNet features "
          f"({rows[0]['fid_reference'] if rows else 'no runs'})")
    print(f"{'framework':10s} {'seeds':>6s} {'FID mean':>9s} {'s.e.':>6s} {'score':>6s}  per seed")
    summary = {}
    for framework in ("minigan", "torch"):
        mine = sorted((r for r in rows if r["framework"] == framework), key=lambda r: r["seed"])
        if not mine:
            continue
        fid_mean, fid_se = mean_se([r["fid"] for r in mine])
        score_mean, _ = mean_se([r["classifier_score"] for r in mine])
        per_seed = ", ".join(f"{r['seed']}: {r['fid']:.1f}" for r in mine)
        se_text = "-" if fid_se is None else f"{fid_se:.1f}"
        print(f"{framework:10s} {len(mine):6d} {fid_mean:9.1f} {se_text:>6s} {score_mean:6.2f}  "
              f"{per_seed}")
        summary[framework] = {"seeds": [r["seed"] for r in mine], "fid_mean": fid_mean,
                              "fid_se": fid_se, "score_mean": score_mean}
    ratio = None
    if "minigan" in summary and "torch" in summary:
        ratio = summary["minigan"]["fid_mean"] / summary["torch"]["fid_mean"]
        print(f"FID ratio minigan / torch (means): {ratio:.2f} (target <= 1.25)")
    json_line({"benchmark": "fid_vs_torch", "iters": args.iters, "summary": summary,
               "fid_ratio": ratio})
    return 0


if __name__ == "__main__":
    sys.exit(main())
