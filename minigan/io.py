"""Files a training run writes: image grids, loss curves, 2-D scatter plots, checkpoints, metric logs.

Everything takes NumPy arrays (CuPy arrays are copied to the host), draws with Pillow only, and
writes atomically: bytes go to a temporary file in the target's folder, are fsync'ed, then
``os.replace`` puts them under the final name, so a crash leaves either the old file or the new
one, never half of one.

Checkpoints are a single ``.npz`` (a zip of ``.npy`` arrays) readable with
``np.load(path, allow_pickle=False)``: every array leaf of the nested tree is one member named by
its key path ("generator/fc.weight"), and the tree's shape plus every non-array leaf (Python
numbers, strings, None, lists, tuples, dict keys that are ints) is JSON in one more member.
No pickle is written or read.
"""
import json
import math
import os
import secrets
import time
import warnings
import zipfile
import zlib

try:
    import fcntl
except ImportError:  # Windows
    fcntl = None

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from . import backend

# --- atomic files -------------------------------------------------------------------------------


def fsync_folder(folder):
    """Make a rename inside ``folder`` durable (POSIX); a no-op where folders cannot be opened."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # e.g. Windows cannot open folders; the rename is still atomic there
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _lock(f, blocking):
    """Hold an exclusive lock on an open file until it is closed (or its process dies); False
    when another process holds it. Without fcntl (Windows) locks always succeed."""
    if fcntl is None:
        return True
    try:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
        return True
    except OSError:
        return False


def _remove_orphans(folder, name, own):
    """Remove temporary files of earlier writes to ``name`` whose writer died (kill -9, power
    loss). A live writer holds a lock on its temporary file, so only the dead ones are removed."""
    prefix = f".{name}."
    try:
        entries = os.listdir(folder)
    except OSError:
        return
    for entry in entries:
        if (not entry.startswith(prefix) or not entry.endswith(".tmp") or entry == own
                or len(entry) != len(prefix) + 16):   # 12 hex digits + ".tmp"
            continue
        stale = os.path.join(folder, entry)
        try:
            with open(stale, "rb") as f:
                if fcntl is None and time.time() - os.fstat(f.fileno()).st_mtime < 3600:
                    continue   # no locks to ask: only an hour-old file is surely orphaned
                if _lock(f, blocking=False):
                    os.unlink(stale)
        except OSError:
            pass


def atomic_write(path, write):
    """Call ``write(binary_file)`` on a temporary file beside ``path``, then rename it to ``path``.

    The parent folder is created when missing. On any exception the temporary file is removed
    and an existing ``path`` is left untouched; a temporary file left by an earlier write of the
    same path that was killed midway is removed.
    """
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    # "xb" rather than tempfile.mkstemp: the file gets the permissions of a plain open(), not 0600
    while True:
        tmp = os.path.join(folder, f".{os.path.basename(path)}.{secrets.token_hex(6)}.tmp")
        try:
            f = open(tmp, "xb")
            break
        except FileExistsError:
            continue
    _lock(f, blocking=True)   # held until f closes or this process dies: marks the file as live
    _remove_orphans(folder, os.path.basename(path), os.path.basename(tmp))
    try:
        with f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
            if fcntl is not None:   # renamed while still locked: never taken for an orphan
                os.replace(tmp, path)
        if fcntl is None:           # Windows cannot rename an open file
            os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    fsync_folder(folder)
    return path


def _save_png(image, path):
    return atomic_write(path, lambda f: image.save(f, format="PNG"))


# --- image grids --------------------------------------------------------------------------------

def _to_uint8(images, value_range):
    """Pixels -> uint8: (x - lo) / (hi - lo) * 255, clipped and rounded; uint8 input passes through."""
    if images.dtype == np.uint8:
        return images
    x = images.astype(np.float64)
    bad = int(np.count_nonzero(~np.isfinite(x)))
    if bad:
        raise ValueError(f"images contain {bad} non-finite values (NaN/inf): the generator has diverged?")
    lo, hi = (float(x.min()), float(x.max())) if value_range is None else map(float, value_range)
    if hi <= lo:
        hi = lo + 1.0  # a constant image: map it to black rather than divide by zero
    return np.rint(np.clip((x - lo) / (hi - lo), 0.0, 1.0) * 255.0).astype(np.uint8)


def make_image_grid(images, nrow=8, padding=2, value_range=(-1, 1), pad_value=0):
    """Tile images into one uint8 array: (rows*(H+p)+p, cols*(W+p)+p) or (..., 3) for colour.

    images: (N, H, W), (N, 1, H, W) or (N, 3, H, W); float values in ``value_range`` map to
    0..255 (``value_range=None``: the batch's own min..max); uint8 is taken as is. ``nrow``
    images per row, as in torchvision.
    """
    a = backend.as_numpy(images)
    if a.ndim == 3:
        a = a[:, None]
    if a.ndim != 4 or a.shape[1] not in (1, 3) or a.shape[0] == 0:
        raise ValueError(f"images must be (N, H, W), (N, 1, H, W) or (N, 3, H, W) with N >= 1, got shape {a.shape}")
    n, c, h, w = a.shape
    pixels = _to_uint8(a, value_range).transpose(0, 2, 3, 1)  # (N, H, W, C)
    cols = max(1, min(int(nrow), n))
    rows = -(-n // cols)
    p = int(padding)
    grid = np.full((rows * (h + p) + p, cols * (w + p) + p, c), pad_value, dtype=np.uint8)
    for i in range(n):
        r, q = divmod(i, cols)
        y, x = p + r * (h + p), p + q * (w + p)
        grid[y:y + h, x:x + w] = pixels[i]
    return grid[:, :, 0] if c == 1 else grid


def save_image_grid(images, path, nrow=8, padding=2, value_range=(-1, 1), pad_value=0, scale=1):
    """Write :func:`make_image_grid` of ``images`` as a PNG (grayscale or RGB); returns the path.

    ``scale`` enlarges each pixel to scale x scale (nearest neighbour) for easier viewing.
    """
    grid = make_image_grid(images, nrow, padding, value_range, pad_value)
    image = Image.fromarray(grid, mode="L" if grid.ndim == 2 else "RGB")
    if scale != 1:
        image = image.resize((image.width * int(scale), image.height * int(scale)), Image.NEAREST)
    return _save_png(image, path)


# --- drawing helpers ----------------------------------------------------------------------------

PALETTE = [(31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189),
           (140, 86, 75), (227, 119, 194), (127, 127, 127), (188, 189, 34), (23, 190, 207)]
_AXIS = (60, 60, 60)
_GRID = (225, 225, 225)


def _font(size):
    try:
        return ImageFont.load_default(size=size)  # a scalable font, Pillow >= 10.1
    except TypeError:
        return ImageFont.load_default()


def _text_size(draw, text, font):
    left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
    return right - left, bottom - top


def _nice_ticks(lo, hi, target=6):
    """Round tick values (1, 2 or 5 times a power of ten apart) covering [lo, hi]."""
    span = hi - lo
    raw = span / max(1, target - 1)
    mag = 10.0 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 5, 10) if m * mag >= raw)
    first = math.ceil(lo / step - 1e-9) * step
    ticks = []
    v = first
    while v <= hi + step * 1e-9:
        ticks.append(0.0 if abs(v) < step * 1e-9 else v)
        v = first + len(ticks) * step
    return ticks, step


def _tick_label(v, step):
    if v != 0 and (abs(v) >= 1e5 or abs(v) < 1e-3):
        return f"{v:.2g}"
    decimals = max(0, -math.floor(math.log10(step) + 1e-9))
    return f"{v:.{decimals}f}"


def _padded_range(lo, hi, frac=0.05):
    if hi <= lo:
        pad = abs(lo) * 0.1 or 1.0
        return lo - pad, hi + pad
    pad = (hi - lo) * frac
    return lo - pad, hi + pad


class _Axes:
    """A plot area inside a PIL image with data-to-pixel mapping, grid, ticks and labels."""

    def __init__(self, image, box, xlim, ylim, font):
        self.image, self.draw, self.font = image, ImageDraw.Draw(image), font
        self.left, self.top, self.right, self.bottom = box
        self.x0, self.x1 = xlim
        self.y0, self.y1 = ylim

    def px(self, x):
        return self.left + (np.asarray(x, np.float64) - self.x0) / (self.x1 - self.x0) * (self.right - self.left)

    def py(self, y):
        return self.bottom - (np.asarray(y, np.float64) - self.y0) / (self.y1 - self.y0) * (self.bottom - self.top)

    def grid_and_ticks(self, grid=True):
        d = self.draw
        xt, xs = _nice_ticks(self.x0, self.x1)
        yt, ys = _nice_ticks(self.y0, self.y1)
        for v in xt:
            x = float(self.px(v))
            if grid:
                d.line([(x, self.top), (x, self.bottom)], fill=_GRID)
            d.line([(x, self.bottom), (x, self.bottom + 4)], fill=_AXIS)
            label = _tick_label(v, xs)
            w, _ = _text_size(d, label, self.font)
            d.text((x - w / 2, self.bottom + 6), label, fill=_AXIS, font=self.font)
        for v in yt:
            y = float(self.py(v))
            if grid:
                d.line([(self.left, y), (self.right, y)], fill=_GRID)
            d.line([(self.left - 4, y), (self.left, y)], fill=_AXIS)
            label = _tick_label(v, ys)
            w, h = _text_size(d, label, self.font)
            d.text((self.left - 7 - w, y - h / 2 - 2), label, fill=_AXIS, font=self.font)

    def frame(self):
        self.draw.rectangle([self.left, self.top, self.right, self.bottom], outline=_AXIS)

    def legend_box(self, entries, corner):
        """(x0, y0, x1, y1, row height, text sizes) of the legend in a corner such as 'top-right'."""
        sizes = [_text_size(self.draw, label, self.font) for label, _ in entries]
        row = max(h for _, h in sizes) + 6
        width = max(w for w, _ in sizes) + 36
        height = row * len(entries) + 6
        vertical, horizontal = corner.split("-")
        x = self.right - width - 8 if horizontal == "right" else self.left + 8
        y = self.top + 8 if vertical == "top" else self.bottom - height - 8
        return x, y, x + width, y + height, row, sizes

    def quietest_corner(self, entries, xs, ys):
        """The corner whose legend box would cover the fewest of the points (xs, ys)."""
        px, py = self.px(xs), self.py(ys)
        best = None
        for corner in ("top-right", "top-left", "bottom-right", "bottom-left"):
            x0, y0, x1, y1, _, _ = self.legend_box(entries, corner)
            covered = int(np.count_nonzero((px >= x0) & (px <= x1) & (py >= y0) & (py <= y1)))
            if best is None or covered < best[0]:
                best = (covered, corner)
        return best[1]

    def legend(self, entries, corner="top-right", marker="line"):
        """entries: (label, colour); a white box with a swatch per entry inside the plot area."""
        if not entries:
            return
        d = self.draw
        x, y, x1, y1, row, sizes = self.legend_box(entries, corner)
        d.rectangle([x, y, x1, y1], fill=(255, 255, 255), outline=(170, 170, 170))
        for i, (label, colour) in enumerate(entries):
            cy = y + 3 + i * row + row / 2
            if marker == "line":
                d.line([(x + 6, cy), (x + 24, cy)], fill=colour, width=3)
            else:
                d.ellipse([x + 11, cy - 4, x + 19, cy + 4], fill=colour, outline=(40, 40, 40))
            d.text((x + 30, cy - sizes[i][1] / 2 - 2), label, fill=(20, 20, 20), font=self.font)


def _labels(image, axes, title, xlabel, ylabel, title_font):
    d = ImageDraw.Draw(image)
    if title:
        w, h = _text_size(d, title, title_font)
        d.text(((axes.left + axes.right - w) / 2, 8), title, fill=(0, 0, 0), font=title_font)
    if xlabel:
        w, h = _text_size(d, xlabel, axes.font)
        d.text(((axes.left + axes.right - w) / 2, image.height - h - 10), xlabel, fill=(0, 0, 0), font=axes.font)
    if ylabel:
        w, h = _text_size(d, ylabel, axes.font)
        strip = Image.new("RGB", (w + 4, h + 8), (255, 255, 255))
        ImageDraw.Draw(strip).text((2, 0), ylabel, fill=(0, 0, 0), font=axes.font)
        strip = strip.rotate(90, expand=True)
        image.paste(strip, (6, int((axes.top + axes.bottom - strip.height) / 2)))


def _lighter(colour, amount):
    return tuple(int(round(c + (255 - c) * amount)) for c in colour)


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


def _draw_curve(axes, xs, ys, colour):
    """A polyline; beyond two points per pixel column, a min-max band with the column means on top."""
    d = axes.draw
    width_px = max(1, int(axes.right - axes.left))
    if len(xs) == 1:
        x, y = float(axes.px(xs[0])), float(axes.py(ys[0]))
        d.ellipse([x - 2, y - 2, x + 2, y + 2], fill=colour)
        return
    if len(xs) > 2 * width_px:
        order = np.argsort(xs, kind="stable")
        xs, ys = xs[order], ys[order]
        cols = np.clip(((xs - axes.x0) / (axes.x1 - axes.x0) * width_px).astype(np.int64), 0, width_px - 1)
        starts = np.flatnonzero(np.r_[True, cols[1:] != cols[:-1]])
        lo, hi = np.minimum.reduceat(ys, starts), np.maximum.reduceat(ys, starts)
        mean = np.add.reduceat(ys, starts) / np.diff(np.r_[starts, len(ys)])
        x_px = axes.left + cols[starts] + 0.5
        band = _lighter(colour, 0.6)
        for x, a, b in zip(x_px, axes.py(lo), axes.py(hi)):
            d.line([(x, a), (x, b)], fill=band)
        xs_px, ys_px = x_px, axes.py(mean)
    else:
        xs_px, ys_px = axes.px(xs), axes.py(ys)
    d.line(list(zip(xs_px.tolist(), ys_px.tolist())), fill=colour, width=2, joint="curve")


def plot_curves(curves, path, title=None, xlabel="step", ylabel=None, size=(800, 480), ylim=None):
    """Draw named curves (e.g. losses) into a PNG with axes, ticks, grid and a legend.

    curves: dict name -> ys (x = 0, 1, 2, ...) or name -> (xs, ys). Non-finite values are left
    out, breaking the line there. Long curves (more than two points per pixel column) are drawn
    as a light min-max band per column with the column means on top, so noise stays visible.
    ylim: (lo, hi) to fix the y axis; default fits the data. Returns the path.
    """
    if not isinstance(curves, dict):
        raise TypeError(f"curves must be a dict name -> values, got {type(curves).__name__}")
    series = {str(name): _series(v) for name, v in curves.items()}
    finite_x = [xs[np.isfinite(ys) & np.isfinite(xs)] for xs, ys in series.values()]
    finite_y = [ys[np.isfinite(ys) & np.isfinite(xs)] for xs, ys in series.values()]
    all_x = np.concatenate(finite_x) if finite_x else np.empty(0)
    all_y = np.concatenate(finite_y) if finite_y else np.empty(0)
    xlim = (float(all_x.min()), float(all_x.max())) if len(all_x) else (0.0, 1.0)
    if xlim[1] <= xlim[0]:
        xlim = (xlim[0] - 0.5, xlim[0] + 0.5)
    if ylim is None:
        ylim = _padded_range(float(all_y.min()), float(all_y.max())) if len(all_y) else (0.0, 1.0)
    else:
        ylim = (float(ylim[0]), float(ylim[1]))
        if not ylim[1] > ylim[0]:
            raise ValueError(f"ylim must be (lo, hi) with lo < hi, got {ylim}")

    width, height = size
    image = Image.new("RGB", (int(width), int(height)), (255, 255, 255))
    font, title_font = _font(13), _font(16)
    d = ImageDraw.Draw(image)
    yt, ys_step = _nice_ticks(*ylim)
    tick_w = max(_text_size(d, _tick_label(v, ys_step), font)[0] for v in yt)
    text_h = _text_size(d, "0123456789", font)[1]
    left = 14 + tick_w + (text_h + 10 if ylabel else 0)
    top = 12 + (_text_size(d, title, title_font)[1] + 12 if title else 0)
    bottom = height - (text_h + 18) - (text_h + 12 if xlabel else 0)
    right = width - 16
    if right - left < 40 or bottom - top < 40:
        raise ValueError(f"size {size} leaves no room for the plot")
    axes = _Axes(image, (left, top, right, bottom), xlim, ylim, font)
    axes.grid_and_ticks()

    entries = []
    for i, (name, (xs, ys)) in enumerate(series.items()):
        colour = PALETTE[i % len(PALETTE)]
        ok = np.isfinite(xs) & np.isfinite(ys)
        dropped = int((~ok).sum())
        entries.append((name + (f" ({dropped} non-finite left out)" if dropped else ""), colour))
        # a run of finite points between non-finite ones is drawn as its own line
        bounds = np.flatnonzero(np.diff(np.r_[0, ok.astype(np.int8), 0]))
        for s, e in zip(bounds[::2], bounds[1::2]):
            _draw_curve(axes, xs[s:e], np.clip(ys[s:e], *_padded_range(*ylim, frac=1.0)), colour)
    axes.frame()
    if entries:
        # the legend avoids the lines, not just the data points: sample each curve densely
        cover_x, cover_y = [all_x], [all_y]
        for xs, ys in zip(finite_x, finite_y):
            if len(xs) > 1:
                order = np.argsort(xs, kind="stable")
                dense = np.linspace(xs.min(), xs.max(), 400)
                cover_x.append(dense)
                cover_y.append(np.interp(dense, xs[order], ys[order]))
        axes.legend(entries, axes.quietest_corner(entries, np.concatenate(cover_x), np.concatenate(cover_y)))
    if not len(all_y):
        msg = "no finite data"
        w, h = _text_size(d, msg, font)
        d.text(((left + right - w) / 2, (top + bottom - h) / 2), msg, fill=(150, 0, 0), font=font)
    _labels(image, axes, title, xlabel, ylabel, title_font)
    return _save_png(image, path)


# --- 2-D scatter over a discriminator map ---------------------------------------------------------

REAL_COLOUR = (0, 136, 55)     # green, as in GAN Lab
FAKE_COLOUR = (123, 50, 148)   # purple
_HEAT_LOW, _HEAT_MID, _HEAT_HIGH = np.array(FAKE_COLOUR, float), np.array([255.0] * 3), np.array(REAL_COLOUR, float)


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
                title=None, labels=("real", "generated"), point_radius=2):
    """A square 2-D plot of real and generated points over an optional heat map, as a PNG.

    real, fake: (N, 2) points, drawn green and purple. heat: (H, W) values on an even grid over
    ``extent`` = (xmin, xmax, ymin, ymax), with heat[i, j] the value at
    x = xmin + j (xmax - xmin) / (W - 1), y = ymin + i (ymax - ymin) / (H - 1) (row 0 at the
    bottom), e.g. D(x) on ``np.meshgrid(xs, ys)``; high values pale green, low pale purple,
    scaled by ``heat_range`` (default (0, 1) when the values lie there, else their min..max).
    Without a heat map, extent defaults to the points' bounding box plus a margin.
    Points outside the extent are not drawn. Returns the path.
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

    font, title_font = _font(13), _font(16)
    probe = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    text_h = _text_size(probe, "0123456789", font)[1]
    tick_w = max(_text_size(probe, _tick_label(v, s), font)[0]
                 for v, s in ((v, _nice_ticks(y0, y1)[1]) for v in _nice_ticks(y0, y1)[0]))
    left, top = 14 + tick_w, 12 + (_text_size(probe, title, title_font)[1] + 12 if title else 0)
    size = int(size)
    image = Image.new("RGB", (left + size + 16, top + size + text_h + 22), (255, 255, 255))
    axes = _Axes(image, (left, top, left + size, top + size), (x0, x1), (y0, y1), font)

    if heat is not None:
        finite = heat[np.isfinite(heat)]
        if heat_range is None:
            if len(finite) and finite.min() >= 0 and finite.max() <= 1:
                heat_range = (0.0, 1.0)
            else:
                heat_range = (float(finite.min()), float(finite.max())) if len(finite) else (0.0, 1.0)
        rgb = heat_colours(np.nan_to_num(heat, nan=sum(heat_range) / 2), heat_range)[::-1]  # row 0 = top
        image.paste(Image.fromarray(rgb, "RGB").resize((size + 1, size + 1), Image.BILINEAR), (left, top))
    axes.grid_and_ticks(grid=heat is None)

    r = float(point_radius)
    d = axes.draw
    entries = []
    for pts, colour, label in ((real, REAL_COLOUR, labels[0]), (fake, FAKE_COLOUR, labels[1])):
        if pts is None:
            continue
        entries.append((f"{label} ({len(pts)})", colour))
        inside = (pts[:, 0] >= x0) & (pts[:, 0] <= x1) & (pts[:, 1] >= y0) & (pts[:, 1] <= y1)
        outline = tuple(int(c * 0.6) for c in colour)
        for x, y in zip(axes.px(pts[inside, 0]).tolist(), axes.py(pts[inside, 1]).tolist()):
            d.ellipse([x - r, y - r, x + r, y + r], fill=colour, outline=outline)
    axes.frame()
    axes.legend(entries, corner="top-left", marker="dot")
    _labels(image, axes, title, None, None, title_font)
    return _save_png(image, path)


# --- checkpoints --------------------------------------------------------------------------------

CHECKPOINT_FORMAT = "minigan-checkpoint"
CHECKPOINT_VERSION = 1
_META = "__minigan__"  # the npz member holding the JSON tree


class CheckpointError(ValueError):
    """A checkpoint file that cannot be read back (corrupt, truncated, or not a minigan checkpoint)."""

    def __init__(self, path, problem):
        self.path = str(path)
        super().__init__(f"{self.path}: {problem}")


def _escape(key):
    return str(key).replace("%", "%25").replace("/", "%2F")


def _encode(node, parts, arrays, used):
    """The JSON form of ``node``; arrays and numpy scalars go into ``arrays`` under a unique name."""
    # numpy first: np.float64 is a subclass of float but must come back as np.float64
    if isinstance(node, (np.ndarray, np.generic)) or backend.is_cupy_array(node):
        a = backend.as_numpy(node)
        if a.dtype.hasobject:
            raise TypeError(f"checkpoint entry {'/'.join(parts) or '<root>'} has dtype object, "
                            f"which cannot be stored without pickle")
        base = "/".join(_escape(p) for p in parts) or "_"
        name, k = base, 1
        while name in used:
            k += 1
            name = f"{base}~{k}"
        used.add(name)
        arrays[name] = np.asarray(a)
        return {"__scalar__" if isinstance(node, np.generic) else "__array__": name}
    if node is None or isinstance(node, (bool, int, str)):
        return node
    if isinstance(node, float):
        return node  # json writes repr(float), which reads back bit for bit (NaN/inf included)
    if isinstance(node, dict):
        items = []
        for k, v in node.items():
            if not isinstance(k, (str, int)) or isinstance(k, bool):
                raise TypeError(f"checkpoint dict keys must be str or int, got {type(k).__name__} "
                                f"{k!r} under {'/'.join(map(str, parts)) or '<root>'}")
            items.append([k, _encode(v, parts + [k], arrays, used)])
        return {"__dict__": items}
    if isinstance(node, list):
        return [_encode(v, parts + [i], arrays, used) for i, v in enumerate(node)]
    if isinstance(node, tuple):
        return {"__tuple__": [_encode(v, parts + [i], arrays, used) for i, v in enumerate(node)]}
    raise TypeError(f"checkpoint entry {'/'.join(map(str, parts)) or '<root>'} has type {type(node).__name__}: "
                    f"only arrays, numbers, strings, None, lists, tuples and dicts can be stored")


def _decode(node, arrays):
    if isinstance(node, list):
        return [_decode(v, arrays) for v in node]
    if isinstance(node, dict):
        if "__dict__" in node:
            return {k: _decode(v, arrays) for k, v in node["__dict__"]}
        if "__tuple__" in node:
            return tuple(_decode(v, arrays) for v in node["__tuple__"])
        if "__array__" in node:
            return arrays[node["__array__"]]
        if "__scalar__" in node:
            return arrays[node["__scalar__"]][()]
        raise ValueError(f"unknown node {sorted(node)}")
    return node


def _read_member(z, info):
    """One ``.npy`` member of the archive as an array, its header checked against the member's
    size before anything is allocated (a header may claim 10^12 values over a few bytes)."""
    with z.open(info) as f:
        version = np.lib.format.read_magic(f)
        if version == (1, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_1_0(f)
        else:
            shape, fortran, dtype = np.lib.format.read_array_header_2_0(f)
        if dtype.hasobject:
            raise ValueError(f"member {info.filename} holds dtype {dtype}, which needs pickle")
        needed = math.prod(shape) * dtype.itemsize
        available = info.file_size - f.tell()
        if needed != available:
            raise ValueError(f"member {info.filename}: its header claims shape {shape} of "
                             f"{dtype} ({needed} bytes) but it holds {available} bytes")
        data = f.read(needed)
    if len(data) != needed:
        raise ValueError(f"member {info.filename} ends after {len(data)} of {needed} bytes")
    array = np.frombuffer(data, dtype=dtype).reshape(shape, order="F" if fortran else "C")
    return array.copy(order="K")   # writable, and free of the bytes object


def _read_archive(path):
    if not zipfile.is_zipfile(path):
        with open(path, "rb") as f:
            start = f.read(6)
        if start == b"\x93NUMPY":
            raise CheckpointError(path, "a plain .npy array, not an .npz checkpoint (save "
                                        "checkpoints with minigan.io.save_checkpoint)")
        if start[:4] == b"PK\x03\x04":
            raise CheckpointError(path, "corrupt or truncated checkpoint: a zip archive without "
                                        "its closing directory (a copy or download cut short?)")
        raise CheckpointError(path, "not an .npz archive (no zip structure found)")
    arrays = {}
    with zipfile.ZipFile(path) as z:
        for info in z.infolist():
            if not info.filename.endswith(".npy"):
                raise CheckpointError(path, f"member {info.filename!r} is not an .npy array")
            arrays[info.filename[:-4]] = _read_member(z, info)
    return arrays


def _read_meta(path, arrays):
    if _META not in arrays:
        raise CheckpointError(path, f"no {_META} entry: not a minigan checkpoint")
    meta = json.loads(arrays.pop(_META).tobytes().decode("utf-8"))
    if not isinstance(meta, dict) or "tree" not in meta:
        raise CheckpointError(path, f"its {_META} entry holds a JSON {type(meta).__name__}, not "
                                    "the object {format, version, tree} minigan writes")
    if meta.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(path, f"format {meta.get('format')!r} is not {CHECKPOINT_FORMAT!r}")
    if meta.get("version") != CHECKPOINT_VERSION:
        raise CheckpointError(path, f"checkpoint version {meta.get('version')} is not "
                                    f"{CHECKPOINT_VERSION}, the one this minigan reads")
    return meta


def save_checkpoint(path, tree, compress=False):
    """Store a nested tree of arrays and plain values in one ``.npz``, atomically; returns the path.

    tree: dicts (str or int keys), lists, tuples, NumPy (or CuPy) arrays and scalars, Python
    int / float / bool / str / None. Loading gives back equal values of equal types and
    dtypes (arrays exactly, including float64). ``compress`` deflates the arrays.
    """
    arrays, used = {}, {_META}
    skeleton = _encode(tree, [], arrays, used)
    meta = json.dumps({"format": CHECKPOINT_FORMAT, "version": CHECKPOINT_VERSION, "tree": skeleton})
    mode = zipfile.ZIP_DEFLATED if compress else zipfile.ZIP_STORED

    def write(f):
        with zipfile.ZipFile(f, "w", compression=mode, allowZip64=True) as z:
            for name, a in [(_META, np.frombuffer(meta.encode("utf-8"), dtype=np.uint8))] + list(arrays.items()):
                with z.open(name + ".npy", "w", force_zip64=True) as member:
                    np.lib.format.write_array(member, a, allow_pickle=False)

    return atomic_write(path, write)


def load_checkpoint(path):
    """Read back a :func:`save_checkpoint` tree. Missing file: FileNotFoundError; anything else
    wrong with it (not an npz, a plain .npy, damaged, sizes that disagree, a foreign metadata
    entry): CheckpointError naming the file."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"checkpoint not found: {path}")
    try:
        arrays = _read_archive(path)
        meta = _read_meta(path, arrays)
        return _decode(meta["tree"], arrays)
    except CheckpointError:
        raise
    except (zipfile.BadZipFile, ValueError, OSError, EOFError, KeyError, TypeError, IndexError,
            AttributeError, RecursionError, zlib.error) as e:
        raise CheckpointError(path, f"corrupt or truncated checkpoint ({type(e).__name__}: {e})") from None


# --- metric logs --------------------------------------------------------------------------------

def _json_default(v):
    if isinstance(v, np.generic):
        return v.item()
    if isinstance(v, np.ndarray) or backend.is_cupy_array(v):
        return backend.as_numpy(v).tolist()
    raise TypeError(f"cannot write {type(v).__name__} to a JSON log")


def append_jsonl(path, record):
    """Append ``record`` (a dict) as one JSON line; numpy scalars and arrays become numbers and lists.

    NaN and infinities are written as the tokens NaN / Infinity (Python's json reads them back).
    A partial last line left by a crash is closed first, so the new record stays on a line of its own.
    """
    if not isinstance(record, dict):
        raise TypeError(f"a JSONL record must be a dict, got {type(record).__name__}")
    line = json.dumps(record, default=_json_default)
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    with open(path, "a+b") as f:
        f.seek(0, os.SEEK_END)
        if f.tell() > 0:
            f.seek(-1, os.SEEK_END)
            if f.read(1) != b"\n":
                line = "\n" + line
        f.write((line + "\n").encode("utf-8"))


def read_jsonl(path, strict=False):
    """The records of a JSONL file.

    A line that is not JSON (a record cut off by a crash, see :func:`append_jsonl`) is skipped
    with a warning naming file and line; ``strict=True`` raises ValueError instead.
    """
    path = os.fspath(path)
    with open(path, "rb") as f:
        lines = f.read().decode("utf-8").split("\n")
    records = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError as e:
            message = f"{path}:{number}: not a JSON record ({e})"
            if strict:
                raise ValueError(message) from None
            warnings.warn(message + "; skipped (cut off by a crash?)", stacklevel=2)
    return records
