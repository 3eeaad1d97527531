"""PacGAN's 2-D mode-collapse benchmark: several seeds per configuration, a table of mean and
standard error beside the published rows.

    python -m benchmarks.bench_toy2d [--seeds 5] [--data ring,grid] [--configs GAN,PacGAN3,...]
                                     [--jobs 2] [--records runs/bench_toy2d.jsonl] [--steps N]

Each configuration is a set of changes to the mixture's goal configuration
(``minigan.gan.toy2d.GOAL_CONFIGS``), so every row shares its networks, batch, step count and
learning-rate schedule unless it says otherwise. Scores follow PacGAN (Lin et al., 2018): 2,500
generated samples; a sample is high quality within 3 std of its nearest mode; a mode is captured
when it is the nearest mode of a high-quality sample; reverse KL of the mode histogram.

Every finished run is appended to ``--records`` (JSON lines) at once; a later call with the same
file skips the runs already there, so an interrupted benchmark continues where it stopped and
``--seeds 0`` only reprints the table. Wall seconds per seed depend on what else the machine
runs; the table gives the CPU seconds beside them, and the load average seen during the runs.
Set NUMBA_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 with --jobs > 1, so that the jobs do not fight
over the cores with their own threads.
"""
import argparse
import concurrent.futures
import dataclasses
import json
import math
import os
import sys
import time

import numpy as np

from minigan.gan.toy2d import GOAL_CONFIGS, train_toy2d

# PacGAN, Table 1 (Lin et al., 2018), means of 10 trials, and VEEGAN, Table 1 (Srivastava et
# al., 2017; unrolled GAN with K = 5), means of 5 runs:
# (name, ring modes, ring high-quality %, grid modes, grid high-quality %, trials)
PUBLISHED = [
    ("GAN (PacGAN T1)", 6.3, 98.2, 17.3, 94.8, 10),
    ("PacGAN4 (PacGAN T1)", 7.8, 95.9, 24.8, 93.6, 10),
    ("VEEGAN (PacGAN T1)", 8.0, 52.9, 24.6, 40.0, 10),
    ("Unrolled GAN (VEEGAN T1)", 7.6, 35.6, 23.6, 16.0, 5),
]

SHORT = {"loss": "gan", "pack": 1, "steps": 2000, "batch": 64, "d_hidden": (128, 128)}

# row name -> changes to GOAL_CONFIGS[data] (the rows that change the loss take that loss's
# own learning rates, betas and critic steps); the table marks the row equal to the goal's
CONFIGS = {
    "GAN": {"loss": "gan", "pack": 1, "steps": 30000},
    "PacGAN2": {"loss": "gan", "pack": 2},
    "PacGAN2-30k": {"loss": "gan", "pack": 2, "steps": 30000},
    "PacGAN4": {"loss": "gan", "pack": 4, "steps": 30000},
    "PacGAN3": {"loss": "gan", "pack": 3},
    # the same number of samples seen in half the updates, each on twice the batch
    "PacGAN2-b256": {"loss": "gan", "pack": 2, "batch": 256, "steps": 15000},
    "WGAN-GP": {"loss": "wgan-gp", "pack": 1, "lr_g": None, "lr_d": None, "betas": None,
                "d_steps": None},
    "WGAN": {"loss": "wgan", "pack": 1, "lr_g": None, "lr_d": None, "betas": None,
             "d_steps": None},
    # issue 12's cures, pack 1, all on one short schedule (2,000 steps of batch 64, D with two
    # hidden layers): an unrolled update costs ~1.5 (K + 1) plain steps (bench_unrolled.py)
    "GAN-short": dict(SHORT),
    "Unrolled5": dict(SHORT, unroll=5),
    "Unrolled10": dict(SHORT, unroll=10),
    # issue 12's goal row: the short row's networks, 4x the batch (costs ~1.3x per step at
    # K = 5) and 2.5x the steps, with the learning rates falling from 20% of the way on
    "Unrolled5-b256-5k": dict(SHORT, unroll=5, batch=256, steps=5000, decay_start=0.2),
    "MBD": dict(SHORT, minibatch_disc=5),
    "FM": dict(SHORT, feature_matching=True),
    "SN-hinge": dict(SHORT, loss="hinge", spectral_norm=True),
    "R1": dict(SHORT, r1_gamma=1.0),
}
DEFAULT_CONFIGS = ("GAN", "PacGAN2", "PacGAN3", "PacGAN4")
GOAL = {"ring": (8, 0.97), "grid": (25, 0.95)}   # captured modes, high-quality share
GOAL_SECONDS = 300.0
# issue 12's goal for the unrolled GAN (K = 5, pack 1): mean modes and high-quality share over
# 5 seeds, each seed within 10 minutes
UNROLLED_GOAL = {"ring": (7.5, 0.90), "grid": (22, 0.85)}
UNROLLED_SECONDS = 600.0


def config_for(name, data, steps=None):
    """The Toy2DConfig of row ``name`` (None: the goal configuration itself) on mixture
    ``data``; ``steps`` overrides the length."""
    if name is not None and name not in CONFIGS:
        raise ValueError(f"unknown configuration {name!r}: expected one of {sorted(CONFIGS)}")
    config = dataclasses.replace(GOAL_CONFIGS[data], **CONFIGS.get(name, {}))
    if steps is not None:
        config = dataclasses.replace(config, steps=int(steps))
    return dataclasses.replace(config, log_every=0, snapshots=0).resolved()


def run_one(name, config, seed):
    """Train and score one seed; a JSON-able record."""
    load = os.getloadavg()[0]
    run = train_toy2d(config, seed=seed)
    m = run.metrics
    return {"name": name, "data": config.data, "seed": int(seed),
            "config": dataclasses.asdict(config), "modes": m["modes"], "n_modes": m["n_modes"],
            "high_quality": m["high_quality"], "reverse_kl": m["reverse_kl"],
            "seconds": run.seconds, "cpu_seconds": run.cpu_seconds,
            "load": [load, os.getloadavg()[0]]}


def read_records(path):
    if not path or not os.path.exists(path):
        return []
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def _key(name, config, seed):
    return name, json.dumps(config, sort_keys=True), int(seed)


def mean_se(values):
    """(mean, standard error) of a list; SE = sample std / sqrt(n), 0 for one value."""
    a = np.asarray(values, dtype=np.float64)
    if len(a) == 0:
        return math.nan, math.nan
    if not np.isfinite(a).all():
        return math.inf, math.nan
    se = a.std(ddof=1) / math.sqrt(len(a)) if len(a) > 1 else 0.0
    return float(a.mean()), float(se)


def _cell(values, scale=1.0, digits=1):
    if not values:
        return "-"
    mean, se = mean_se([v * scale for v in values])
    if not math.isfinite(mean):
        return "inf"
    return f"{mean:.{digits}f} +- {se:.{digits}f}"


def summarize(records, names, datasets):
    """Per (name, data): {"n", "modes", "high_quality", "reverse_kl", "seconds", "cpu_seconds"}
    lists of the records' values."""
    out = {}
    for r in records:
        if r["name"] in names and r["data"] in datasets:
            cell = out.setdefault((r["name"], r["data"]), {k: [] for k in (
                "modes", "high_quality", "reverse_kl", "seconds", "cpu_seconds", "load")})
            for k in cell:
                cell[k].append(max(r[k]) if k == "load" else r[k])
    return out


def is_goal(name, datasets, steps=None):
    """Whether row ``name`` runs the goal configuration on every one of ``datasets``."""
    return all(config_for(name, d, steps) == config_for(None, d, steps) for d in datasets)


def table(records, names, datasets=("ring", "grid"), goal_names=()):
    """The results table as text: published rows, then one row per configuration (those in
    ``goal_names`` marked as the goal configuration)."""
    stats = summarize(records, names, datasets)
    header = ["configuration"]
    for d in datasets:
        header += [f"{d} modes", f"{d} HQ %", f"{d} rev KL", f"{d} s/seed wall (CPU)"]
    header.append("seeds")
    rows = []
    for name, ring_modes, ring_hq, grid_modes, grid_hq, trials in PUBLISHED:
        row = [name]
        for d in datasets:
            modes, hq = (ring_modes, ring_hq) if d == "ring" else (grid_modes, grid_hq)
            row += [f"{modes:.1f}", f"{hq:.1f}", "-", "-"]
        rows.append(row + [str(trials)])
    for name in names:
        row, seeds = [f"minigan {name}" + (" (goal config)" if name in goal_names else "")], set()
        for d in datasets:
            s = stats.get((name, d))
            if s is None:
                row += ["-"] * 4
                continue
            seeds.add(len(s["modes"]))
            wall, cpu = mean_se(s["seconds"])[0], mean_se(s["cpu_seconds"])[0]
            row += [_cell(s["modes"]), _cell(s["high_quality"], 100.0),
                    _cell(s["reverse_kl"], digits=3), f"{wall:.0f} ({cpu:.0f})"]
        rows.append(row + ["/".join(str(n) for n in sorted(seeds)) or "0"])
    widths = [max(len(r[i]) for r in [header] + rows) for i in range(len(header))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(header, widths))]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths)) for r in rows]
    loads = [x for s in stats.values() for x in s["load"]]
    if loads:
        lines.append(f"load average (1 min) seen during the runs: up to {max(loads):.1f} "
                     f"on {os.cpu_count()} cores")
    return "\n".join(lines)


def goal_verdicts(records, names, goal=None, seconds=GOAL_SECONDS):
    """Lines saying, per configuration, whether its mean over seeds meets the goal
    (default: ``GOAL``, every mode at PacGAN's quality)."""
    goal = goal or GOAL
    stats = summarize(records, names, tuple(goal))
    lines = []
    for name in names:
        parts, met = [], True
        for d, (modes, hq) in goal.items():
            s = stats.get((name, d))
            if s is None:
                parts.append(f"{d}: not run")
                met = False
                continue
            mean_modes, mean_hq = np.mean(s["modes"]), np.mean(s["high_quality"])
            wall = max(s["seconds"])
            ok = mean_modes >= modes and mean_hq >= hq
            met &= ok
            parts.append(f"{d} {mean_modes:.1f}/{modes} modes, {100 * mean_hq:.1f}% HQ "
                         f"(goal >= {100 * hq:.0f}%), slowest seed {wall:.0f} s wall / "
                         f"{max(s['cpu_seconds']):.0f} s CPU (goal <= {seconds:.0f} s)")
        lines.append(f"{name}: {'MEETS' if met else 'misses'} the goal on modes and quality: "
                     + "; ".join(parts))
    return lines


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seeds", type=int, default=5, help="seeds 0..n-1 per configuration")
    p.add_argument("--data", default="ring,grid", help="comma-separated: ring, grid")
    p.add_argument("--configs", default=",".join(DEFAULT_CONFIGS),
                   help=f"comma-separated rows among {', '.join(CONFIGS)}")
    p.add_argument("--steps", type=int, default=None, help="override every row's step count")
    p.add_argument("--jobs", type=int, default=1, help="runs in parallel processes")
    p.add_argument("--records", default="runs/bench_toy2d.jsonl",
                   help="JSON-lines file of finished runs ('' for none)")
    return p.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    names = [n for n in args.configs.split(",") if n]
    datasets = [d for d in args.data.split(",") if d]
    for d in datasets:
        if d not in GOAL_CONFIGS:
            sys.exit(f"bench_toy2d: unknown mixture {d!r} (ring, grid)")
    try:
        todo = [(n, config_for(n, d, args.steps), s)
                for n in names for d in datasets for s in range(args.seeds)]
    except ValueError as e:
        sys.exit(f"bench_toy2d: {e}")
    records = read_records(args.records)
    done = {_key(r["name"], r["config"], r["seed"]) for r in records}
    todo = [t for t in todo if _key(t[0], dataclasses.asdict(t[1]), t[2]) not in done]
    print(f"{len(todo)} runs to do ({len(records)} already in {args.records or 'no file'}), "
          f"{args.jobs} at a time; load average {os.getloadavg()[0]:.1f}", flush=True)

    def finished(record):
        records.append(record)
        if args.records:
            os.makedirs(os.path.dirname(os.path.abspath(args.records)), exist_ok=True)
            with open(args.records, "a") as f:
                f.write(json.dumps(record) + "\n")
        print(f"  {record['name']:>8} {record['data']} seed {record['seed']}: "
              f"{record['modes']}/{record['n_modes']} modes, "
              f"{100 * record['high_quality']:.1f}% HQ, rev KL {record['reverse_kl']:.3f}, "
              f"{record['seconds']:.0f} s wall, {record['cpu_seconds']:.0f} s CPU", flush=True)

    start = time.perf_counter()
    if args.jobs > 1 and len(todo) > 1:
        with concurrent.futures.ProcessPoolExecutor(args.jobs) as pool:
            for future in concurrent.futures.as_completed(
                    [pool.submit(run_one, *t) for t in todo]):
                finished(future.result())
    else:
        for t in todo:
            finished(run_one(*t))
    if todo:
        print(f"{len(todo)} runs in {time.perf_counter() - start:.0f} s")

    # the table covers the rows asked for, at the configuration they now have
    wanted = {_key(n, dataclasses.asdict(config_for(n, d, args.steps)), 0)[:2]
              for n in names for d in datasets}
    shown = [r for r in records if _key(r["name"], r["config"], 0)[:2] in wanted]
    print()
    print(table(shown, names, datasets, [n for n in names if is_goal(n, datasets, args.steps)]))
    if set(GOAL) <= set(datasets):
        print()
        print("\n".join(goal_verdicts(shown, names)))
        unrolled = [n for n in names if CONFIGS.get(n, {}).get("unroll")]
        if unrolled:
            print("issue 12's goal for the unrolled GAN:")
            print("\n".join(goal_verdicts(shown, unrolled, UNROLLED_GOAL, UNROLLED_SECONDS)))
    return shown


if __name__ == "__main__":
    main()
