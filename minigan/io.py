"""Files a training run writes: image grids, loss curves, 2-D scatter plots, checkpoints, metric logs.

Everything takes NumPy arrays (CuPy arrays are copied to the host), draws image grids with
Pillow and plots with matplotlib (:mod:`minigan.plots`), and writes atomically: bytes go to a temporary file in the target's folder, are fsync'ed, then
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
from PIL import Image

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
    if not isinstance(nrow, (int, np.integer)) or nrow < 1:
        raise ValueError(f"make_image_grid: nrow must be an integer >= 1, got {nrow!r}")
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


# --- plots (matplotlib, in minigan/plots.py; re-exported here where the examples look) ----------

from .plots import FAKE_COLOUR, PALETTE, REAL_COLOUR, heat_colours, plot_curves, scatter_png  # noqa: E402,F401


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
    if os.path.isdir(path):
        raise IsADirectoryError(f"checkpoint {path} is a folder, not a checkpoint file (a run "
                                "folder keeps its checkpoint as checkpoint.npz inside)")
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
