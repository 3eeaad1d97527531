"""Stack the GAN-Lab strips of several ``examples.gan_toy2d`` runs into one picture, one row per
run, so that their panels over time line up (e.g. the plain GAN hopping from mode to mode above
the unrolled GAN covering them).

    python -m examples.gan_toy2d --data ring --pack 1 --out runs/plain ...
    python -m examples.gan_toy2d --data ring --pack 1 --unroll 5 --out runs/unrolled ...
    python -m examples.toy2d_compare runs/plain runs/unrolled --out runs/plain_vs_unrolled.png

Each row is labelled with its run's configuration and final score (from metrics.json).
"""
import argparse
import json
import os
import sys

from PIL import Image, ImageDraw

from minigan import io


def label(folder):
    """'ring, gan, unroll 5: 8/8 modes, 93.1% HQ' from a run folder's metrics.json."""
    with open(os.path.join(folder, "metrics.json")) as f:
        record = json.load(f)
    c, m = record["config"], record["metrics"]
    cures = [f"{k} {c[k]}" for k in ("unroll", "minibatch_disc", "r1_gamma") if c.get(k)]
    cures += [k for k in ("feature_matching", "spectral_norm") if c.get(k)]
    return (f"{c['data']}, {c['loss']}, pack {c['pack']}" + "".join(f", {x}" for x in cures)
            + f": {m['modes']}/{m['n_modes']} modes, {100 * m['high_quality']:.1f}% high quality")


def compose(folders, out):
    rows = []
    for folder in folders:
        path = os.path.join(folder, "gan_lab.png")
        if not os.path.exists(path):
            raise FileNotFoundError(f"toy2d_compare: {path} not found (run examples.gan_toy2d "
                                    f"with --snapshots > 0 and --out {folder})")
        rows.append((label(folder), Image.open(path).convert("RGB")))
    caption = 22
    width = max(img.width for _, img in rows)
    sheet = Image.new("RGB", (width, sum(img.height + caption for _, img in rows)), "white")
    draw, y = ImageDraw.Draw(sheet), 0
    for text, img in rows:
        draw.text((6, y + 5), text, fill=(0, 0, 0))
        sheet.paste(img, (0, y + caption))
        y += img.height + caption
    io.atomic_write(out, lambda f: sheet.save(f, format="PNG"))
    return out


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("runs", nargs="+", help="run folders of examples.gan_toy2d")
    p.add_argument("--out", required=True, help="the PNG to write")
    args = p.parse_args(argv)
    try:
        print(f"wrote {compose(args.runs, args.out)}")
    except FileNotFoundError as e:
        sys.exit(str(e))


if __name__ == "__main__":
    main()
