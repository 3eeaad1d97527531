"""Tests of minigan.data: IDX files, the MNIST source chain (with a local HTTP server, never the
internet), the bundled subset, minibatches and the toy mixtures."""
import gzip
import hashlib
import http.server
import json
import os
import socket
import threading
import time

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from minigan.data import idx, loader, mnist, toy
from minigan.data.idx import IdxError, read_idx, write_idx

# --- IDX ----------------------------------------------------------------------------------------

IDX_DTYPES = [np.uint8, np.int8, np.int16, np.int32, np.float32, np.float64]


@settings(max_examples=25, deadline=None)
@given(dtype=st.sampled_from(IDX_DTYPES),
       shape=st.lists(st.integers(0, 5), min_size=1, max_size=4),
       gz=st.booleans(), seed=st.integers(0, 2**31 - 1))
def test_idx_round_trip(tmp_path_factory, dtype, shape, gz, seed):
    rng = np.random.default_rng(seed)
    a = (rng.standard_normal(shape) * 100).astype(dtype)
    path = tmp_path_factory.mktemp("idx") / ("a.idx.gz" if gz else "a.idx")
    write_idx(path, a)
    b = read_idx(path)
    assert b.dtype == np.dtype(dtype) and b.dtype.isnative
    assert b.shape == a.shape
    np.testing.assert_array_equal(a, b)
    assert b.flags.writeable
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no temporary left


def test_idx_magic_numbers_of_mnist_files(tmp_path):
    write_idx(tmp_path / "i", np.zeros((3, 28, 28), np.uint8))
    write_idx(tmp_path / "l", np.zeros(3, np.uint8))
    assert (tmp_path / "i").read_bytes()[:16] == bytes.fromhex("00000803" "00000003" "0000001c" "0000001c")
    assert (tmp_path / "l").read_bytes()[:8] == bytes.fromhex("00000801" "00000003")
    assert idx.idx_magic(np.uint8, 3) == 2051 and idx.idx_magic(np.uint8, 1) == 2049


def test_idx_gzip_detected_by_signature_and_reproducible(tmp_path):
    a = np.arange(24, dtype=np.int16).reshape(2, 3, 4)
    write_idx(tmp_path / "a.gz", a)
    os.rename(tmp_path / "a.gz", tmp_path / "renamed")  # gzip content without the .gz name
    np.testing.assert_array_equal(read_idx(tmp_path / "renamed"), a)
    write_idx(tmp_path / "b.gz", a)
    write_idx(tmp_path / "c.gz", a)
    assert (tmp_path / "b.gz").read_bytes() == (tmp_path / "c.gz").read_bytes()


def _raw_idx(a):
    return idx.encode_idx(a)


@pytest.mark.parametrize("case, content, message", [
    ("wrong-magic", b"\x00\x00\x07\x01" + b"\x00\x00\x00\x02" + b"ab", "wrong magic number"),
    ("not-idx", b"PK\x03\x04 this is a zip file", "wrong magic number"),
    ("zero-ndim", b"\x00\x00\x08\x00", "wrong magic number"),
    ("short", b"\x00\x00", "too short"),
    ("truncated-header", b"\x00\x00\x08\x03" + b"\x00\x00\x00\x02", "truncated header"),
    ("truncated", _raw_idx(np.zeros((4, 28, 28), np.uint8))[:-100], "truncated"),
    ("trailing", _raw_idx(np.zeros(5, np.uint8)) + b"xx", "trailing"),
])
def test_idx_bad_files_raise_naming_the_file(tmp_path, case, content, message):
    path = tmp_path / f"{case}-idx3-ubyte"
    path.write_bytes(content)
    with pytest.raises(IdxError, match=message) as info:
        read_idx(path)
    assert str(path) in str(info.value)
    assert isinstance(info.value, ValueError)


def test_idx_bad_gzip_raises_naming_the_file(tmp_path):
    good = gzip.compress(_raw_idx(np.arange(5000, dtype=np.int32)), mtime=0)
    cases = {
        "plain.gz": _raw_idx(np.zeros(5, np.uint8)),        # .gz name, not gzip
        "cut.gz": good[: len(good) // 2],                     # truncated compressed stream
        "flipped.gz": good[:40] + bytes(b ^ 0xFF for b in good[40:60]) + good[60:],  # corrupt deflate data
        "crc.gz": good[:-8] + bytes(b ^ 1 for b in good[-8:-4]) + good[-4:],         # wrong CRC-32
    }
    for name, content in cases.items():
        path = tmp_path / name
        path.write_bytes(content)
        with pytest.raises(IdxError, match="gzip") as info:
            read_idx(path)
        assert str(path) in str(info.value), name


def test_write_idx_rejects_unstorable_arrays(tmp_path):
    with pytest.raises(TypeError, match="int64"):
        write_idx(tmp_path / "x", np.zeros(3, np.int64))
    with pytest.raises(ValueError, match="dimensions"):
        write_idx(tmp_path / "y", np.float32(1.0))
    assert list(tmp_path.iterdir()) == []


# --- a fake MNIST and a local mirror --------------------------------------------------------------

N_FAKE = 10


def _fake_split(seed):
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, size=(N_FAKE, 28, 28), dtype=np.uint8)
    labels = rng.integers(0, 10, size=N_FAKE, dtype=np.uint8)
    return images, labels


@pytest.fixture
def fake(monkeypatch, tmp_path):
    """Fake train/test files: their .gz bytes and the sha256 table patched to describe them."""
    files, arrays, table = {}, {}, {}
    for split, seed in (("train", 1), ("test", 2)):
        images, labels = _fake_split(seed)
        arrays[split] = (images, labels)
        for name, a in zip(mnist.split_file_names(split), (images, labels)):
            raw = idx.encode_idx(a)
            files[name + ".gz"] = gzip.compress(raw, mtime=0)
            table[name + ".gz"] = hashlib.sha256(files[name + ".gz"]).hexdigest()
            table[name] = hashlib.sha256(raw).hexdigest()
    monkeypatch.setitem(mnist.SHA256, "mnist", table)
    monkeypatch.setitem(mnist.SHA256, "fashion-mnist", table)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    for var in ("MINIGAN_DATA", "MINIGAN_MNIST_MIRRORS", "MINIGAN_FASHION_MNIST_MIRRORS"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setitem(mnist.SYSTEM_DIRS, "fashion-mnist", [])

    class Fake:
        pass
    f = Fake()
    f.files, f.arrays = files, arrays
    f.cache = tmp_path / "cache" / "minigan" / "mnist"
    return f


class _Mirror(http.server.BaseHTTPRequestHandler):
    """Serves /<mode>/<name>: good (with Range support), corrupt, missing (404), norange, cutoff, hangup."""

    def do_GET(self):
        srv = self.server
        mode, _, name = self.path.strip("/").partition("/")
        srv.log.append((mode, name, self.headers.get("Range")))
        body = srv.files.get(name)
        if mode == "missing" or body is None:
            self.send_error(404)
            return
        if mode == "corrupt":
            body = body[:-10] + b"0123456789"
        start = 0
        rng = self.headers.get("Range")
        if rng and mode in ("good", "cutoff"):
            start = int(rng.split("=")[1].rstrip("-"))
            if start >= len(body):
                self.send_error(416)
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
        else:
            self.send_response(200)
        self.send_header("Content-Length", str(len(body) - start))
        self.end_headers()
        if mode == "hangup":  # promise everything, send nothing
            return
        if mode == "cutoff":  # promise everything, send half, hang up
            self.wfile.write(body[start:start + (len(body) - start) // 2])
            return
        self.wfile.write(body[start:])

    def log_message(self, *args):
        pass


@pytest.fixture
def server(fake):
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Mirror)
    srv.files, srv.log = fake.files, []
    thread = threading.Thread(target=srv.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    srv.url = f"http://127.0.0.1:{srv.server_address[1]}/"
    yield srv
    srv.shutdown()
    srv.server_close()


def _cache_files(fake):
    return sorted(p.name for p in fake.cache.iterdir()) if fake.cache.exists() else []


def _free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


# --- local sources --------------------------------------------------------------------------------

@pytest.mark.parametrize("layout", ["gz", "plain", "dotted", "subfolder", "torchvision"])
def test_data_dir_layouts(fake, tmp_path, layout):
    folder = {"subfolder": tmp_path / "d" / "mnist", "torchvision": tmp_path / "d" / "MNIST" / "raw"}.get(
        layout, tmp_path / "d")
    folder.mkdir(parents=True)
    for name in mnist.split_file_names("test"):
        data = fake.files[name + ".gz"]
        if layout == "gz":
            (folder / (name + ".gz")).write_bytes(data)
        elif layout == "dotted":
            (folder / name.replace("-idx", ".idx")).write_bytes(gzip.decompress(data))
        else:
            (folder / name).write_bytes(gzip.decompress(data))
    images, labels = out = mnist.load_mnist("test", data_dir=tmp_path / "d", download=False, verbose=False)
    np.testing.assert_array_equal(images, fake.arrays["test"][0])
    np.testing.assert_array_equal(labels, fake.arrays["test"][1])
    assert out.source["source"] == "data_dir" and out.source["verified"] is True
    assert images.dtype == np.uint8 and images.shape == (N_FAKE, 28, 28) and labels.shape == (N_FAKE,)


def test_env_var_data_dir_and_unverified_files(fake, tmp_path, monkeypatch):
    images, labels = fake.arrays["train"]
    names = mnist.split_file_names("train")
    write_idx(tmp_path / (names[0] + ".gz"), images[::-1].copy())  # valid IDX, not the published bytes
    write_idx(tmp_path / (names[1] + ".gz"), labels[::-1].copy())
    monkeypatch.setenv("MINIGAN_DATA", str(tmp_path))
    out = mnist.load_mnist("train", download=False, verbose=False)
    assert out.source["source"] == "MINIGAN_DATA" and out.source["verified"] is False
    np.testing.assert_array_equal(out.images, images[::-1])


def test_data_dir_with_broken_files_raises(fake, tmp_path):
    names = mnist.split_file_names("train")
    write_idx(tmp_path / (names[0] + ".gz"), fake.arrays["train"][0])
    (tmp_path / (names[1] + ".gz")).write_bytes(fake.files[names[1] + ".gz"][:-5])
    with pytest.raises(IdxError, match=names[1]):
        mnist.load_mnist("train", data_dir=tmp_path, download=False, verbose=False)
    # images where labels belong: a wrong magic number
    write_idx(tmp_path / (names[1] + ".gz"), fake.arrays["train"][0])
    with pytest.raises(IdxError, match="2049"):
        mnist.load_mnist("train", data_dir=tmp_path, download=False, verbose=False)
    # count mismatch
    write_idx(tmp_path / (names[1] + ".gz"), fake.arrays["train"][1][:3])
    with pytest.raises(IdxError, match="3 labels for 10 images"):
        mnist.load_mnist("train", data_dir=tmp_path, download=False, verbose=False)


def test_cache_dir_respects_xdg(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert mnist.cache_dir("fashion-mnist") == str(tmp_path / "minigan" / "fashion-mnist")
    monkeypatch.setenv("XDG_CACHE_HOME", "relative/path")  # ignored, as the XDG spec says
    assert mnist.cache_dir() == os.path.join(os.path.expanduser("~"), ".cache", "minigan", "mnist")


def test_system_dir_for_fashion_mnist(fake, tmp_path, monkeypatch):
    for name in mnist.split_file_names("train"):
        (tmp_path / (name + ".gz")).write_bytes(fake.files[name + ".gz"])
    monkeypatch.setitem(mnist.SYSTEM_DIRS, "fashion-mnist", [str(tmp_path)])
    out = mnist.load_mnist("train", dataset="fashion-mnist", download=False, verbose=False)
    assert out.source["source"] == "system"
    np.testing.assert_array_equal(out.labels, fake.arrays["train"][1])


@pytest.mark.skipif(not os.path.isdir("/usr/share/datasets/fashion-mnist"),
                    reason="Debian's dataset-fashion-mnist is not installed")
def test_debian_fashion_mnist_matches_published_digests():
    out = mnist.load_mnist("test", dataset="fashion-mnist", data_dir=None, download=False, verbose=False)
    assert out.source["verified"] and out.images.shape == (10000, 28, 28)


def test_fashion_mnist_has_no_bundled_fallback(fake):
    with pytest.raises(FileNotFoundError, match="fashion-mnist 'test' files not found"):
        mnist.load_mnist("test", dataset="fashion-mnist", download=False, verbose=False)


def test_bad_arguments():
    with pytest.raises(ValueError, match="split"):
        mnist.load_mnist("validation", download=False)
    with pytest.raises(ValueError, match="dataset"):
        mnist.load_mnist("train", dataset="cifar10", download=False)


# --- downloads from the local mirror -------------------------------------------------------------

def test_download_falls_through_missing_and_corrupt_mirrors(fake, server, capsys):
    mirrors = [server.url + "missing/", server.url + "corrupt/", server.url + "good/"]
    out = mnist.load_mnist("train", mirrors=mirrors, verbose=True)
    assert out.source["source"] == "download" and out.source["verified"] is True
    np.testing.assert_array_equal(out.images, fake.arrays["train"][0])
    assert [m for m, _, _ in server.log] == ["missing", "corrupt", "good"] * 2
    assert _cache_files(fake) == sorted(n + ".gz" for n in mnist.split_file_names("train"))
    err = capsys.readouterr().err
    assert "HTTP 404" in err and "sha256 mismatch" in err
    # next time the cache answers, without the server
    server.log.clear()
    again = mnist.load_mnist("train", mirrors=mirrors, verbose=False)
    assert again.source["source"] == "cache" and server.log == []


def test_failed_downloads_leave_nothing_and_fall_back_to_bundled(fake, server, capsys):
    mirrors = [server.url + "missing/", server.url + "corrupt/"]
    out = mnist.load_mnist("test", mirrors=mirrors, verbose=True)
    assert out.source["source"] == "bundled" and len(out.labels) == 500
    assert _cache_files(fake) == []
    notice = [line for line in capsys.readouterr().err.splitlines() if "bundled" in line]
    assert len(notice) == 1


def test_env_var_mirrors(fake, server, monkeypatch):
    monkeypatch.setenv("MINIGAN_MNIST_MIRRORS", f"{server.url}missing, {server.url}good")
    out = mnist.load_mnist("test", verbose=False)
    assert out.source["source"] == "download"
    assert out.source["urls"] == [server.url + "good/" + n + ".gz" for n in mnist.split_file_names("test")]


def test_resume_partial_download_with_range(fake, server):
    name = mnist.split_file_names("train")[0] + ".gz"
    body = fake.files[name]
    fake.cache.mkdir(parents=True)
    (fake.cache / (name + ".part")).write_bytes(body[:1000])
    out = mnist.load_mnist("train", mirrors=[server.url + "good/"], verbose=False)
    assert out.source["source"] == "download"
    assert server.log[0] == ("good", name, "bytes=1000-")
    assert (fake.cache / name).read_bytes() == body
    assert _cache_files(fake) == sorted(n + ".gz" for n in mnist.split_file_names("train"))


def test_resume_when_server_ignores_range(fake, server):
    name = mnist.split_file_names("test")[0] + ".gz"
    fake.cache.mkdir(parents=True)
    (fake.cache / (name + ".part")).write_bytes(fake.files[name][:777])
    out = mnist.load_mnist("test", mirrors=[server.url + "norange/"], verbose=False)
    assert out.source["source"] == "download" and out.source["verified"]
    assert server.log[0] == ("norange", name, "bytes=777-")


def test_resume_of_a_wrong_partial_starts_over(fake, server):
    name = mnist.split_file_names("test")[0] + ".gz"
    fake.cache.mkdir(parents=True)
    (fake.cache / (name + ".part")).write_bytes(b"\x00" * 500)  # not a prefix of the real file
    out = mnist.load_mnist("test", mirrors=[server.url + "good/"], verbose=False)
    assert out.source["source"] == "download"
    assert [r for _, n, r in server.log if n == name] == ["bytes=500-", None]


def test_part_longer_than_file_starts_over(fake, server):
    name = mnist.split_file_names("test")[1] + ".gz"
    fake.cache.mkdir(parents=True)
    (fake.cache / (name + ".part")).write_bytes(fake.files[name] + b"extra")
    out = mnist.load_mnist("test", mirrors=[server.url + "good/"], verbose=False)
    assert out.source["source"] == "download"
    assert [r for _, n, r in server.log if n == name][-1] is None


def test_cut_off_transfer_resumes_on_next_mirror(fake, server):
    mirrors = [server.url + "cutoff/", server.url + "good/"]
    out = mnist.load_mnist("train", mirrors=mirrors, verbose=False)
    assert out.source["source"] == "download"
    name = mnist.split_file_names("train")[0] + ".gz"
    half = len(fake.files[name]) // 2
    assert ("good", name, f"bytes={half}-") in server.log
    assert _cache_files(fake) == sorted(n + ".gz" for n in mnist.split_file_names("train"))


def test_cut_off_transfer_keeps_part_for_later(fake, server):
    out = mnist.load_mnist("test", mirrors=[server.url + "cutoff/"], verbose=False)
    assert out.source["source"] == "bundled"
    name = mnist.split_file_names("test")[0] + ".gz"
    assert _cache_files(fake) == [name + ".part"]
    assert (fake.cache / (name + ".part")).read_bytes() == fake.files[name][:len(fake.files[name]) // 2]


def test_hang_up_before_any_byte_leaves_no_part(fake, server):
    out = mnist.load_mnist("test", mirrors=[server.url + "hangup/"], verbose=False)
    assert out.source["source"] == "bundled"
    assert _cache_files(fake) == []


def test_corrupt_cache_is_replaced_by_a_download(fake, server):
    names = [n + ".gz" for n in mnist.split_file_names("test")]
    fake.cache.mkdir(parents=True)
    write_idx(fake.cache / names[0], np.zeros((N_FAKE, 28, 28), np.uint8))  # readable, wrong bytes
    (fake.cache / names[1]).write_bytes(fake.files[names[1]])
    out = mnist.load_mnist("test", mirrors=[server.url + "good/"], verbose=False)
    assert out.source["source"] == "download"
    assert [n for _, n, _ in server.log] == [names[0]]  # the good labels file was kept
    np.testing.assert_array_equal(out.images, fake.arrays["test"][0])


def test_dead_mirror_gives_up_fast(fake):
    start = time.monotonic()
    out = mnist.load_mnist("train", mirrors=[f"http://127.0.0.1:{_free_port()}/"] * 3, verbose=False)
    assert out.source["source"] == "bundled"
    assert time.monotonic() - start < 3.0
    assert _cache_files(fake) == []


def test_silent_mirror_hits_the_deadline(fake, monkeypatch):
    """A server that accepts connections and never answers: socket timeouts plus the overall deadline."""
    monkeypatch.setattr(mnist, "SOCKET_TIMEOUT", 0.3)
    monkeypatch.setattr(mnist, "DOWNLOAD_DEADLINE", 1.0)
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(16)
    try:
        url = f"http://127.0.0.1:{silent.getsockname()[1]}/"
        start = time.monotonic()
        out = mnist.load_mnist("train", mirrors=[url] * 20, verbose=False)
        elapsed = time.monotonic() - start
    finally:
        silent.close()
    assert out.source["source"] == "bundled"
    assert 0.9 < elapsed < 2.5
    assert _cache_files(fake) == []


def test_hanging_name_lookup_is_bounded(fake, monkeypatch):
    monkeypatch.setattr(mnist, "DOWNLOAD_DEADLINE", 0.8)
    real = socket.getaddrinfo

    def slow(host, *args, **kwargs):
        if host.endswith(".invalid"):
            time.sleep(3)
        return real(host, *args, **kwargs)
    monkeypatch.setattr(socket, "getaddrinfo", slow)
    start = time.monotonic()
    out = mnist.load_mnist("test", mirrors=["http://slow.invalid/", "http://slower.invalid/"], verbose=False)
    assert out.source["source"] == "bundled"
    assert time.monotonic() - start < 2.0


# --- the bundled subset ---------------------------------------------------------------------------

def test_bundled_subset_splits(fake, capsys):
    train = mnist.load_mnist("train", download=False, verbose=True)
    test = mnist.load_mnist("test", download=False, verbose=False)
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and "bundled" in lines[0] and "5,000" in lines[0]
    assert train.source["source"] == test.source["source"] == "bundled"
    assert train.images.shape == (4500, 28, 28) and test.images.shape == (500, 28, 28)
    assert train.images.dtype == np.uint8 and train.labels.dtype == np.uint8
    assert np.bincount(train.labels).tolist() == [450] * 10
    assert np.bincount(test.labels).tolist() == [50] * 10
    assert len(set(train.labels[:40].tolist())) > 5  # shuffled, not sorted by class
    train_rows = {r.tobytes() for r in train.images}
    test_rows = {r.tobytes() for r in test.images}
    file_rows = {r.tobytes() for r in read_idx(os.path.join(mnist.BUNDLED_DIR, "images-idx3-ubyte.gz"))}
    assert not train_rows & test_rows and train_rows | test_rows == file_rows
    assert 0 < train.images.mean() < 128  # 0 is background


# --- minibatches ----------------------------------------------------------------------------------

def _epoch(b):
    return [batch for batch in b]


def test_batches_shuffle_is_seeded_and_covers_the_data():
    x = np.arange(10)
    y = np.arange(10) * 10
    b = loader.Batches(x, y, batch_size=3, seed=5, drop_last=False)
    assert len(b) == 4
    e1, e2 = _epoch(b), _epoch(b)
    for epoch in (e1, e2):
        xs = np.concatenate([xb for xb, _ in epoch])
        assert sorted(xs.tolist()) == list(range(10))
        assert all(np.array_equal(yb, xb * 10) for xb, yb in epoch)
        assert [len(xb) for xb, _ in epoch] == [3, 3, 3, 1]
    assert not all(np.array_equal(a[0], c[0]) for a, c in zip(e1, e2))  # a new order each epoch
    same = _epoch(loader.Batches(x, y, batch_size=3, seed=5, drop_last=False))
    assert all(np.array_equal(a[0], c[0]) for a, c in zip(e1, same))
    other = _epoch(loader.Batches(x, y, batch_size=3, seed=6, drop_last=False))
    assert not all(np.array_equal(a[0], c[0]) for a, c in zip(e1, other))
    assert b.epoch == 2


def test_batches_drop_last_and_no_shuffle():
    x = np.arange(10.0)
    b = loader.Batches(x, batch_size=4, shuffle=False)
    assert len(b) == 2
    batches = _epoch(b)
    np.testing.assert_array_equal(np.concatenate(batches), np.arange(8.0))
    assert isinstance(batches[0], np.ndarray)  # one array in, arrays out (not 1-tuples)
    batches[0][:] = -1
    assert x[0] == 0  # batches are copies


def test_batches_state_restores_mid_epoch():
    x = np.arange(50)
    ref = loader.Batches(x, batch_size=4, seed=3)
    stream = ref.forever()
    for _ in range(17):  # into the 2nd epoch (12 batches an epoch)
        next(stream)
    state = json.loads(json.dumps(ref.get_state()))  # must survive JSON (checkpoint metadata)
    expected = [next(stream) for _ in range(30)]
    resumed = loader.Batches(x, batch_size=4, seed=999)
    resumed.set_state(state)
    got = [b for _, b in zip(range(30), resumed.forever())]
    assert all(np.array_equal(a, c) for a, c in zip(expected, got))
    assert resumed.epoch == ref.epoch


def test_batches_state_before_first_epoch_and_at_epoch_end():
    x = np.arange(12)
    a = loader.Batches(x, batch_size=4, seed=1)
    fresh = a.get_state()
    first = _epoch(a)
    end = a.get_state()
    second = _epoch(a)
    b = loader.Batches(x, batch_size=4, seed=7)
    b.set_state(fresh)
    assert all(np.array_equal(p, q) for p, q in zip(first, _epoch(b)))
    b.set_state(end)
    assert all(np.array_equal(p, q) for p, q in zip(second, _epoch(b)))


def test_batches_errors():
    with pytest.raises(ValueError, match="first axis"):
        loader.Batches(np.zeros(5), np.zeros(6), batch_size=2)
    with pytest.raises(ValueError, match="empty"):
        loader.Batches(np.zeros(5), batch_size=8)
    with pytest.raises(ValueError, match="batch_size"):
        loader.Batches(np.zeros(5), batch_size=0)
    state = loader.Batches(np.zeros(20), batch_size=4).get_state()
    with pytest.raises(ValueError, match="n=20"):
        loader.Batches(np.zeros(24), batch_size=4).set_state(state)


def test_to_unit_range():
    img = np.array([[[0, 255], [127, 128]]], dtype=np.uint8)
    out = loader.to_unit_range(img)
    assert out.dtype == np.float32 and out.shape == (1, 1, 2, 2)
    np.testing.assert_allclose(out[0, 0], [[-1, 1], [127 / 127.5 - 1, 128 / 127.5 - 1]], atol=1e-7)
    assert loader.to_unit_range(np.zeros((2, 3, 4, 4), np.uint8)).shape == (2, 3, 4, 4)
    with pytest.raises(TypeError, match="uint8"):
        loader.to_unit_range(img.astype(np.float32))
    with pytest.raises(ValueError, match="shape"):
        loader.to_unit_range(np.zeros((4, 4), np.uint8))


# --- toy mixtures ---------------------------------------------------------------------------------

def test_ring_and_grid_modes():
    ring = toy.ring_modes()
    assert ring.shape == (8, 2)
    np.testing.assert_allclose(np.hypot(ring[:, 0], ring[:, 1]), 1.0)
    np.testing.assert_allclose(np.arctan2(ring[:, 1], ring[:, 0]) % (2 * np.pi), 2 * np.pi * np.arange(8) / 8,
                               atol=1e-12)
    grid = toy.grid_modes()
    assert grid.shape == (25, 2)
    assert {tuple(p) for p in grid.tolist()} == {(x, y) for x in (-4, -2, 0, 2, 4) for y in (-4, -2, 0, 2, 4)}


@pytest.mark.parametrize("sampler, modes, std", [(toy.sample_ring, toy.ring_modes(), 0.01),
                                                 (toy.sample_grid, toy.grid_modes(), 0.05)])
def test_mixture_sample_statistics(sampler, modes, std):
    n = 40000
    points, which = sampler(n, rng=0, return_modes=True)
    assert points.shape == (n, 2) and points.dtype == np.float32
    k = len(modes)
    counts = np.bincount(which, minlength=k)
    assert np.all(np.abs(counts - n / k) < 5 * np.sqrt(n / k))  # uniform mode weights
    resid = points - modes[which]
    np.testing.assert_allclose(resid.std(axis=0), std, rtol=0.03)
    assert np.all(np.abs(resid.mean(axis=0)) < 5 * std / np.sqrt(n))
    idx_, dist = toy.nearest_mode(points, modes)
    np.testing.assert_array_equal(idx_, which)  # modes are far apart relative to std
    assert dist.max() < 6 * std
    again = sampler(n, rng=np.random.default_rng(0))
    np.testing.assert_array_equal(again, points)


def test_sample_mixture_checks_input():
    with pytest.raises(ValueError, match="modes"):
        toy.sample_mixture(np.zeros(3), 0.1, 5)
    with pytest.raises(ValueError, match="std"):
        toy.sample_mixture(np.zeros((2, 2)), -1, 5)
    with pytest.raises(TypeError, match="rng"):
        toy.sample_mixture(np.zeros((2, 2)), 0.1, 5, rng="seed")


def test_gaussian_and_mixture_densities():
    x = np.linspace(-10, 12, 20001)
    p = toy.gaussian_pdf(x, mean=1.0, std=1.5)
    assert abs(p.sum() * (x[1] - x[0]) - 1) < 1e-6
    assert abs(toy.gaussian_pdf(1.0, 1.0, 2.0) - 1 / (2 * np.sqrt(2 * np.pi))) < 1e-15
    g = np.linspace(-4, 4, 401)
    xx, yy = np.meshgrid(g, g)
    pts = np.stack([xx.ravel(), yy.ravel()], axis=1)
    dens = toy.mixture_pdf(pts, toy.ring_modes(), std=0.3)
    assert abs(dens.sum() * (g[1] - g[0]) ** 2 - 1) < 1e-3
    peak = toy.mixture_pdf(toy.ring_modes()[:1], toy.ring_modes(), std=0.3)[0]
    assert peak > toy.mixture_pdf(np.zeros((1, 2)), toy.ring_modes(), std=0.3)[0]
