"""Plots a training run writes, drawn by matplotlib (its Agg backend: no display needed): loss
curves (:func:`plot_curves`) and 2-D scatter plots over a discriminator map (:func:`scatter_png`).

Both return the matplotlib Figure they drew when asked (``return_figure=True``) so a user can
restyle or extend it the way they know, and write PNGs atomically through
:func:`minigan.io.atomic_write`. Image grids stay on Pillow (``minigan.io.save_image_grid``):
they are pixels, not plots. matplotlib is imported on first use, so ``import minigan`` stays
quick.
"""
import io as _bytes_io

import numpy as np

from . import backend

# matplotlib's "tab10" colours (its default cycle), as RGB 0..255: tests and users can find a
# curve's pixels by its colour
PALETTE = [(31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189),
           (140, 86, 75), (227, 119, 194), (127, 127, 127), (188, 189, 34), (23, 190, 207)]
REAL_COLOUR = (0, 136, 55)     # green, as in GAN Lab
FAKE_COLOUR = (123, 50, 148)   # purple
_HEAT_LOW, _HEAT_MID, _HEAT_HIGH = (np.array(FAKE_COLOUR, float), np.array([255.0] * 3),
                                    np.array(REAL_COLOUR, float))
DPI = 100   # sizes are given in pixels: figure inches = pixels / DPI


def _pyplot():
    import matplotlib
    matplotlib.use("Agg", force=False)   # no display: files only (a user's backend choice wins)
    import matplotlib.pyplot as plt
    return plt


def _rgb(colour):
    return tuple(c / 255 for c in colour)


def lighter(colour, amount):
    """``colour`` (RGB 0..255) moved ``amount`` (0..1) of the way to white."""
    return tuple(int(round(c + (255 - c) * amount)) for c in colour)


def _save(fig, path):
    """The figure as an RGB PNG (matplotlib writes RGBA; the plots are opaque), atomically."""
    from PIL import Image

    from .io import _save_png   # io re-exports these plots: import it at call time
    buffer = _bytes_io.BytesIO()
    fig.savefig(buffer, format="png", dpi=DPI)
    buffer.seek(0)
    with Image.open(buffer) as image:
        return _save_png(image.convert("RGB"), path)


def _padded_range(lo, hi, frac=0.05):
    if hi <= lo:
        pad = abs(lo) * 0.1 or 1.0
        return lo - pad, hi + pad
    pad = (hi - lo) * frac
    return lo - pad, hi + pad


# --- loss curves --------------------------------------------------------------------------------

def _series(value):
    """A curve given as ys, or as a tuple (xs, ys) -> float64 (xs, ys)."""
    if isinstance(value, tuple) and len(value) == 2 and all(hasattr(v, "__len__") for v in value):
        xs, ys = (np.asarray(backend.as_numpy(v), dtype=np.float64).ravel() for v in value)
        if len(xs) != len(ys):
            raise ValueError(f"a curve's xs and ys differ in length: {len(xs)} and {len(ys)}")
        return xs, ys
    ys = np.asarray(backend.as_numpy(value), dtype=np.float64).ravel()
    return np.arange(len(ys), dtype=np.float64), ys


def _column_bands(xs, ys, xlim, columns):
    """Beyond two points per pixel column: (x, min, max, mean) per occupied column, so a long
    noisy curve is drawn as a light band with the column means on top (noise stays visible and
    matplotlib draws ~800 points, not 200,000)."""
    order = np.argsort(xs, kind="stable")
    xs, ys = xs[order], ys[order]
    span = (xlim[1] - xlim[0]) or 1.0
    cols = np.clip(((xs - xlim[0]) / span * columns).astype(np.int64), 0, columns - 1)
    starts = np.flatnonzero(np.r_[True, cols[1:] != cols[:-1]])
    lo, hi = np.minimum.reduceat(ys, starts), np.maximum.reduceat(ys, starts)
    mean = np.add.reduceat(ys, starts) / np.diff(np.r_[starts, len(ys)])
    centre = xlim[0] + (cols[starts] + 0.5) / columns * span
    return centre, lo, hi, mean


def plot_curves(curves, path, title=None, xlabel="step", ylabel=None, size=(800, 480), ylim=None,
                return_figure=False):
    """Draw named curves (e.g. losses) into a PNG with axes, ticks, grid and a legend.

    curves: dict name -> ys (x = 0, 1, 2, ...) or name -> (xs, ys). Non-finite values are left
    out, breaking the line there (the legend says how many). Long curves (more than two points
    per pixel column) are drawn as a light min-max band per column with the column means on top,
    so noise stays visible. ylim: (lo, hi) to fix the y axis; default fits the data. size:
    (width, height) in pixels. The legend goes where it covers the fewest points (matplotlib's
    ``loc="best"``). Returns the path, or (path, figure) with ``return_figure``.
    """
    if not isinstance(curves, dict):
        raise TypeError(f"curves must be a dict name -> values, got {type(curves).__name__}")
    series = {str(name): _series(v) for name, v in curves.items()}
    if ylim is not None:
        ylim = (float(ylim[0]), float(ylim[1]))
        if not ylim[1] > ylim[0]:
            raise ValueError(f"ylim must be (lo, hi) with lo < hi, got {ylim}")
    width, height = (int(s) for s in size)
    if width < 120 or height < 100:
        raise ValueError(f"size {size} leaves no room for the plot")
    finite = [np.isfinite(xs) & np.isfinite(ys) for xs, ys in series.values()]
    all_x = np.concatenate([xs[ok] for (xs, _), ok in zip(series.values(), finite)] or [[]])
    all_y = np.concatenate([ys[ok] for (_, ys), ok in zip(series.values(), finite)] or [[]])
    xlim = (float(all_x.min()), float(all_x.max())) if len(all_x) else (0.0, 1.0)
    if xlim[1] <= xlim[0]:
        xlim = (xlim[0] - 0.5, xlim[0] + 0.5)

    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(width / DPI, height / DPI), dpi=DPI)
    try:
        columns = max(1, int(width * 0.8))   # about the plot area's width in pixels
        for i, ((name, (xs, ys)), ok) in enumerate(zip(series.items(), finite)):
            colour = _rgb(PALETTE[i % len(PALETTE)])
            dropped = int((~ok).sum())
            label = name + (f" ({dropped} non-finite left out)" if dropped else "")
            # a run of finite points between non-finite ones is drawn as its own line
            bounds = np.flatnonzero(np.diff(np.r_[0, ok.astype(np.int8), 0]))
            for k, (s, e) in enumerate(zip(bounds[::2], bounds[1::2])):
                x, y = xs[s:e], ys[s:e]
                if len(x) > 2 * columns:
                    x, lo, hi, y = _column_bands(x, y, xlim, columns)
                    ax.fill_between(x, lo, hi, color=_rgb(lighter(PALETTE[i % len(PALETTE)], 0.6)),
                                    linewidth=0, step="mid")
                ax.plot(x, y, color=colour, linewidth=2, marker="o" if len(x) == 1 else None,
                        markersize=4, label=label if k == 0 else None)
            if not ok.any():
                ax.plot([], [], color=colour, linewidth=2, label=label)
        ax.set_xlim(*xlim)
        if ylim is not None:
            ax.set_ylim(*ylim)
        elif len(all_y):
            ax.set_ylim(*_padded_range(float(all_y.min()), float(all_y.max())))
        else:
            ax.text(0.5, 0.5, "no finite data", transform=ax.transAxes, ha="center",
                    va="center", color="darkred")
        ax.grid(True, color="0.88", linewidth=0.8)
        ax.set_axisbelow(True)
        if series:
            ax.legend(loc="best", framealpha=1.0)
        if title:
            ax.set_title(title)
        if xlabel:
            ax.set_xlabel(xlabel)
        if ylabel:
            ax.set_ylabel(ylabel)
        fig.tight_layout()
        _save(fig, path)
    finally:
        if not return_figure:
            plt.close(fig)
    return (path, fig) if return_figure else path


# --- 2-D scatter over a discriminator map ---------------------------------------------------------

def heat_colours(values, value_range):
    """Map values to RGB uint8: low -> pale purple, middle -> white, high -> pale green."""
    lo, hi = value_range
    t = np.clip((np.asarray(values, np.float64) - lo) / (hi - lo if hi > lo else 1.0), 0.0, 1.0)[..., None]
    rgb = np.where(t < 0.5, _HEAT_LOW + (_HEAT_MID - _HEAT_LOW) * (2 * t),
                   _HEAT_MID + (_HEAT_HIGH - _HEAT_MID) * (2 * t - 1))
    rgb = rgb + (255.0 - rgb) * 0.55  # pale, so the points drawn on top stay visible
    return np.rint(rgb).astype(np.uint8)


def _points(a, name):
    if a is None:
        return None
    a = np.asarray(backend.as_numpy(a), dtype=np.float64)
    if a.ndim != 2 or a.shape[1] != 2:
        raise ValueError(f"{name} points must be (N, 2), got shape {a.shape}")
    return a[np.isfinite(a).all(axis=1)]


def scatter_png(path, real=None, fake=None, heat=None, extent=None, heat_range=None, size=480,
                title=None, labels=("real", "generated"), point_radius=2, return_figure=False):
    """A square 2-D plot of real and generated points over an optional heat map, as a PNG.

    real, fake: (N, 2) points, drawn green and purple. heat: (H, W) values on an even grid over
    ``extent`` = (xmin, xmax, ymin, ymax), with heat[i, j] the value at
    x = xmin + j (xmax - xmin) / (W - 1), y = ymin + i (ymax - ymin) / (H - 1) (row 0 at the
    bottom), e.g. D(x) on ``np.meshgrid(xs, ys)``; high values pale green, low pale purple,
    scaled by ``heat_range`` (default (0, 1) when the values lie there, else their min..max).
    Without a heat map, extent defaults to the points' bounding box plus a margin. size: the
    plot area's side in pixels. Points outside the extent are not drawn. Returns the path, or
    (path, figure) with ``return_figure``.
    """
    real, fake = _points(real, "real"), _points(fake, "fake")
    if heat is not None:
        heat = np.asarray(backend.as_numpy(heat), dtype=np.float64)
        if heat.ndim != 2 or min(heat.shape) < 2:
            raise ValueError(f"heat must be a 2-D grid of at least 2 x 2 values, got shape {heat.shape}")
        if extent is None:
            raise ValueError("a heat map needs the extent (xmin, xmax, ymin, ymax) of the grid it was computed on")
    if extent is None:
        pts = [p for p in (real, fake) if p is not None and len(p)]
        if pts:
            allp = np.concatenate(pts)
            x0, x1 = _padded_range(float(allp[:, 0].min()), float(allp[:, 0].max()), 0.1)
            y0, y1 = _padded_range(float(allp[:, 1].min()), float(allp[:, 1].max()), 0.1)
        else:
            x0, x1, y0, y1 = -1.0, 1.0, -1.0, 1.0
    else:
        x0, x1, y0, y1 = map(float, extent)
        if not (x1 > x0 and y1 > y0):
            raise ValueError(f"extent must be (xmin, xmax, ymin, ymax) with min < max, got {extent}")

    size = int(size)
    left, right, bottom, top = 60, 16, 36, 40 if title else 14   # margins in pixels
    width, height = left + size + right, bottom + size + top
    plt = _pyplot()
    fig = plt.figure(figsize=(width / DPI, height / DPI), dpi=DPI)
    try:
        ax = fig.add_axes([left / width, bottom / height, size / width, size / height])
        if heat is not None:
            finite = heat[np.isfinite(heat)]
            if heat_range is None:
                if len(finite) and finite.min() >= 0 and finite.max() <= 1:
                    heat_range = (0.0, 1.0)
                else:
                    heat_range = ((float(finite.min()), float(finite.max())) if len(finite)
                                  else (0.0, 1.0))
            rgb = heat_colours(np.nan_to_num(heat, nan=sum(heat_range) / 2), heat_range)
            ax.imshow(rgb, origin="lower", extent=(x0, x1, y0, y1), interpolation="bilinear",
                      aspect="auto")
        else:
            ax.grid(True, color="0.88", linewidth=0.8)
            ax.set_axisbelow(True)
        diameter_pt = 2 * float(point_radius) * 72 / DPI
        for pts, colour, label in ((real, REAL_COLOUR, labels[0]), (fake, FAKE_COLOUR, labels[1])):
            if pts is None:
                continue
            ax.scatter(pts[:, 0], pts[:, 1], s=(diameter_pt + 1) ** 2, color=_rgb(colour),
                       edgecolors=[_rgb(tuple(int(c * 0.6) for c in colour))], linewidths=0.5,
                       label=f"{label} ({len(pts)})", zorder=3)
        ax.set_xlim(x0, x1)
        ax.set_ylim(y0, y1)
        if real is not None or fake is not None:
            ax.legend(loc="upper left", framealpha=1.0)
        if title:
            ax.set_title(title)
        _save(fig, path)
    finally:
        if not return_figure:
            plt.close(fig)
    return (path, fig) if return_figure else path
