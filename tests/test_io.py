"""Tests of minigan.io: PNG grids and plots (read back with Pillow), checkpoints, JSONL logs."""
import math
import os
import subprocess
import sys
import textwrap
import time
import zipfile

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from minigan import io, plots
from minigan.data.loader import Batches

# --- image grids ----------------------------------------------------------------------------------


@pytest.mark.parametrize("shape, mode", [((5, 7, 6), "L"), ((5, 1, 7, 6), "L"), ((5, 3, 7, 6), "RGB")])
def test_image_grid_png(tmp_path, shape, mode):
    rng = np.random.default_rng(0)
    images = rng.uniform(-1, 1, size=shape).astype(np.float32)
    path = io.save_image_grid(images, tmp_path / "g.png", nrow=2, padding=3)
    with Image.open(path) as im:
        assert im.format == "PNG" and im.mode == mode
        assert im.size == (2 * (6 + 3) + 3, 3 * (7 + 3) + 3)  # 5 images, 2 per row -> 3 rows
        grid = np.asarray(im)
    if mode == "L":
        grid = grid[:, :, None]
    chw = images if images.ndim == 4 else images[:, None]
    expected = np.rint((chw + 1) / 2 * 255).astype(np.uint8).transpose(0, 2, 3, 1)
    for i in range(5):
        r, q = divmod(i, 2)
        y, x = 3 + r * 10, 3 + q * 9
        np.testing.assert_array_equal(grid[y:y + 7, x:x + 6], expected[i])
    assert (grid[:3] == 0).all() and (grid[-3 - 10:, 3 + 9:] == 0).all()  # padding, empty last cell
    assert [p.name for p in tmp_path.iterdir()] == ["g.png"]


def test_image_grid_value_ranges_and_scale(tmp_path):
    images = np.array([[[-1.0, 0.0], [1.0, 5.0]]])
    g = io.make_image_grid(images, padding=0)
    np.testing.assert_array_equal(g, [[0, 128], [255, 255]])  # clipped above 1
    g = io.make_image_grid(images, padding=0, value_range=None)
    np.testing.assert_array_equal(g, [[0, 42], [85, 255]])  # 255/6 = 42.5 rounds to even
    g = io.make_image_grid(np.array([[[0, 200]]], np.uint8), padding=1, pad_value=9)
    np.testing.assert_array_equal(g, [[9, 9, 9, 9], [9, 0, 200, 9], [9, 9, 9, 9]])
    path = io.save_image_grid(images, tmp_path / "s.png", padding=0, scale=4)
    with Image.open(path) as im:
        assert im.size == (8, 8)


def test_image_grid_rejects_bad_input(tmp_path):
    with pytest.raises(ValueError, match="non-finite"):
        io.save_image_grid(np.full((2, 1, 4, 4), np.nan), tmp_path / "n.png")
    with pytest.raises(ValueError, match="shape"):
        io.save_image_grid(np.zeros((2, 2, 4, 4)), tmp_path / "c.png")
    with pytest.raises(ValueError, match="shape"):
        io.save_image_grid(np.zeros((4, 4)), tmp_path / "d.png")
    assert list(tmp_path.iterdir()) == []


# --- loss curves ----------------------------------------------------------------------------------

def _count_colour(image, colour):
    a = np.asarray(image.convert("RGB")).reshape(-1, 3)
    return int((a == np.array(colour)).all(axis=1).sum())


def test_plot_curves_png(tmp_path):
    steps = np.arange(300)
    curves = {"loss_D": np.exp(-steps / 100), "loss_G": list(1 - np.exp(-steps / 50)),
              "eval": ([0, 100, 200, 299], [0.5, float("nan"), 0.4, 0.3])}
    path = io.plot_curves(curves, tmp_path / "c.png", title="losses", ylabel="loss", size=(640, 400))
    with Image.open(path) as im:
        assert im.format == "PNG" and im.size == (640, 400)
        for i in range(3):  # each curve is drawn in its palette colour
            assert _count_colour(im, io.PALETTE[i]) > 30, i
        a = np.asarray(im.convert("L"))
    assert (a < 128).mean() > 0.005  # text, axes and lines
    assert (a > 250).mean() > 0.5     # mostly background


def test_plot_curves_long_noisy_series_is_fast(tmp_path):
    rng = np.random.default_rng(1)
    ys = rng.standard_normal(200_000).cumsum()
    io.plot_curves({"walk": ys[:2000]}, tmp_path / "short.png")   # matplotlib's first-use costs
    start = time.process_time()   # CPU time: wall time on a shared machine is mostly waiting
    io.plot_curves({"walk": ys[:2000]}, tmp_path / "short.png")
    short = time.process_time() - start
    start = time.process_time()
    path = io.plot_curves({"walk": ys}, tmp_path / "w.png")
    # drawn as one band per pixel column: 100x the points, not 100x the time (measured: equal)
    assert time.process_time() - start < 2 * short + 0.2
    with Image.open(path) as im:
        assert im.size == (800, 480)
        assert _count_colour(im, io.PALETTE[0]) > 300
        assert _count_colour(im, plots.lighter(io.PALETTE[0], 0.6)) > 300  # the min-max band


def test_plot_curves_degenerate_and_bad_input(tmp_path):
    for name, curves in {"empty": {}, "nan": {"x": [float("nan")] * 3}, "flat": {"x": [2.0] * 5},
                         "one": {"x": [1.0]}}.items():
        with Image.open(io.plot_curves(curves, tmp_path / f"{name}.png")) as im:
            assert im.size == (800, 480)
    with pytest.raises(TypeError, match="dict"):
        io.plot_curves([1, 2], tmp_path / "x.png")
    with pytest.raises(ValueError, match="length"):
        io.plot_curves({"a": ([1, 2], [1, 2, 3])}, tmp_path / "x.png")
    with pytest.raises(ValueError, match="ylim"):
        io.plot_curves({"a": [1, 2]}, tmp_path / "x.png", ylim=(1, 1))
    assert not (tmp_path / "x.png").exists()


# --- scatter plots --------------------------------------------------------------------------------

def test_scatter_png_points_and_heat_orientation(tmp_path):
    rng = np.random.default_rng(0)
    real = rng.normal(0.5, 0.1, size=(200, 2))
    fake = rng.normal(-0.5, 0.1, size=(200, 2))
    g = np.linspace(-1, 1, 21)
    xx, yy = np.meshgrid(g, g)
    heat = (yy + 1) / 2  # D(x) grows with y: green at the top, purple at the bottom
    path = io.scatter_png(tmp_path / "s.png", real, fake, heat=heat, extent=(-1, 1, -1, 1), size=300,
                          title="ring")
    with Image.open(path) as im:
        assert im.format == "PNG" and im.mode == "RGB"
        assert im.width > 300 and im.height > 300
        assert _count_colour(im, io.REAL_COLOUR) > 100 and _count_colour(im, io.FAKE_COLOUR) > 100
        a = np.asarray(im).astype(int)
    col = a[:, a.shape[1] * 3 // 4]  # right of the points, below the legend
    top, bottom = col[a.shape[0] * 30 // 100], col[a.shape[0] * 88 // 100]
    assert top[1] > top[0] and top[1] > top[2]            # greenish
    assert bottom[0] > bottom[1] and bottom[2] > bottom[1]  # purplish


def test_scatter_png_without_heat_and_errors(tmp_path):
    path = io.scatter_png(tmp_path / "p.png", real=np.zeros((3, 2)), size=200)
    with Image.open(path) as im:
        assert _count_colour(im, io.REAL_COLOUR) > 10
    with pytest.raises(ValueError, match="extent"):
        io.scatter_png(tmp_path / "x.png", heat=np.zeros((4, 4)))
    with pytest.raises(ValueError, match=r"\(N, 2\)"):
        io.scatter_png(tmp_path / "x.png", real=np.zeros((3, 3)))
    with pytest.raises(ValueError, match="extent"):
        io.scatter_png(tmp_path / "x.png", real=np.zeros((3, 2)), extent=(1, 0, 0, 1))
    assert not (tmp_path / "x.png").exists()


def test_heat_colours():
    low, mid, high = io.heat_colours(np.array([0.0, 0.5, 1.0]), (0, 1))
    assert tuple(mid) == (255, 255, 255)
    assert high[1] > high[0] and high[1] > high[2]
    assert low[0] > low[1] and low[2] > low[1]


# --- checkpoints ----------------------------------------------------------------------------------

def assert_tree_equal(a, b, where="root"):
    assert type(a) is type(b), f"{where}: {type(a).__name__} != {type(b).__name__}"
    if isinstance(a, np.ndarray):
        assert a.dtype == b.dtype and a.shape == b.shape, where
        assert a.tobytes() == np.ascontiguousarray(b).tobytes() or np.array_equal(a, b, equal_nan=True), where
    elif isinstance(a, np.generic):
        assert a.dtype == b.dtype and a.tobytes() == b.tobytes(), where
    elif isinstance(a, dict):
        assert list(a.keys()) == list(b.keys()), where
        for k in a:
            assert type(k) is type(list(b.keys())[list(a.keys()).index(k)]), f"{where}: key {k!r}"
            assert_tree_equal(a[k], b[k], f"{where}/{k}")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            assert_tree_equal(x, y, f"{where}[{i}]")
    elif isinstance(a, float):
        assert (math.isnan(a) and math.isnan(b)) or (a == b and math.copysign(1, a) == math.copysign(1, b)), where
    else:
        assert a == b, where


def _example_tree():
    rng = np.random.default_rng(0)
    return {
        "generator": {"fc.weight": rng.standard_normal((4, 3)).astype(np.float32),
                      "bn.running_var": rng.random(3),  # float64
                      "bn.num_batches": np.array(7, dtype=np.int64)},
        "optim_g": {"lr": 2e-4, "betas": (0.5, 0.999),
                    "state": {0: {"m": np.zeros((4, 3), np.float32), "step": 12}, 1: {}}},
        "step": 12, "big": 2**100, "neg_zero": -0.0, "nan": float("nan"), "inf": -float("inf"),
        "flag": True, "nothing": None, "name": "dcgan ✓", "empty": {}, "empty_list": [],
        "nested": {"a": {"b": {"c": {}}}},
        "mixed_list": [1, 2.5, "x", None, [np.arange(3, dtype=np.uint8)], {"k": np.float32(1.5)}],
        "scalars": [np.float64(0.1), np.int32(-3), np.bool_(True)],
        "odd/key%name": np.array([1 + 2j]), "1": "string key one", 1: "int key one",
        "bools": np.array([True, False]), "big_endian": np.arange(4, dtype=">f8"),
        "strided": np.arange(20.0).reshape(4, 5)[:, ::2],
        "rng": np.random.default_rng(5).bit_generator.state,
    }


def test_checkpoint_round_trip(tmp_path):
    tree = _example_tree()
    path = io.save_checkpoint(tmp_path / "ck.npz", tree)
    back = io.load_checkpoint(path)
    assert_tree_equal(tree, back)
    # a plain numpy reader sees the arrays by key path, and no pickle anywhere
    with np.load(path, allow_pickle=False) as z:
        assert "generator/fc.weight" in z.files and "odd%2Fkey%25name" in z.files
        np.testing.assert_array_equal(z["generator/bn.running_var"], tree["generator"]["bn.running_var"])
    rng = np.random.default_rng(0)
    rng.bit_generator.state = back["rng"]
    assert rng.random() == np.random.default_rng(5).random()
    compressed = io.save_checkpoint(tmp_path / "ckz.npz", tree, compress=True)
    assert_tree_equal(tree, io.load_checkpoint(compressed))


leaves = st.one_of(
    st.integers(-2**70, 2**70), st.floats(allow_nan=True), st.booleans(), st.none(), st.text(max_size=5),
    st.builds(lambda s, d: np.random.default_rng(s).standard_normal(d).astype(np.float64),
              st.integers(0, 9), st.lists(st.integers(0, 3), max_size=3)),
    st.builds(lambda v: np.int16(v), st.integers(-100, 100)),
)
trees = st.recursive(leaves, lambda kids: st.one_of(
    st.lists(kids, max_size=3), st.tuples(kids, kids),
    st.dictionaries(st.one_of(st.text(max_size=4), st.integers(-3, 3)), kids, max_size=3)), max_leaves=12)


@settings(max_examples=25, deadline=None)
@given(tree=trees)
def test_checkpoint_round_trip_random_trees(tmp_path_factory, tree):
    path = tmp_path_factory.mktemp("ck") / "t.npz"
    io.save_checkpoint(path, {"tree": tree})
    assert_tree_equal({"tree": tree}, io.load_checkpoint(path))


def test_checkpoint_rejects_what_needs_pickle(tmp_path):
    with pytest.raises(TypeError, match="a/b.*object"):
        io.save_checkpoint(tmp_path / "x.npz", {"a": {"b": np.array([{}, 1], dtype=object)}})
    with pytest.raises(TypeError, match="set"):
        io.save_checkpoint(tmp_path / "x.npz", {"a": {1, 2}})
    with pytest.raises(TypeError, match="keys"):
        io.save_checkpoint(tmp_path / "x.npz", {(1, 2): 3})
    assert list(tmp_path.iterdir()) == []


def test_checkpoint_errors_name_the_file(tmp_path):
    missing = tmp_path / "nope.npz"
    with pytest.raises(FileNotFoundError, match="nope.npz"):
        io.load_checkpoint(missing)
    good = io.save_checkpoint(tmp_path / "good.npz", _example_tree())
    data = open(good, "rb").read()
    bad = {
        "truncated.npz": data[: len(data) // 2],
        "garbage.npz": b"this is not a checkpoint at all",
        "flipped.npz": data[:200] + bytes(b ^ 0x5A for b in data[200:260]) + data[260:],
        "empty.npz": b"",
    }
    for name, content in bad.items():
        (tmp_path / name).write_bytes(content)
    np.save(tmp_path / "plain.npy", np.zeros(3))
    np.savez(tmp_path / "foreign.npz", a=np.zeros(3))
    for name in list(bad) + ["plain.npy", "foreign.npz"]:
        with pytest.raises(io.CheckpointError) as info:
            io.load_checkpoint(tmp_path / name)
        assert name in str(info.value)


def _files(folder):
    return sorted(p.name for p in folder.iterdir())


def test_checkpoint_failure_mid_write_keeps_the_old_one(tmp_path, monkeypatch):
    path = tmp_path / "ck.npz"
    old = {"step": 1, "w": np.arange(5.0)}
    io.save_checkpoint(path, old)
    real_write = np.lib.format.write_array
    calls = []

    def failing(fp, array, *args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            fp.write(b"half an array")
            raise OSError("disk full (simulated)")
        return real_write(fp, array, *args, **kwargs)
    monkeypatch.setattr(np.lib.format, "write_array", failing)
    with pytest.raises(OSError, match="simulated"):
        io.save_checkpoint(path, {"step": 2, "w": np.arange(6.0), "v": np.zeros(2)})
    monkeypatch.undo()
    assert _files(tmp_path) == ["ck.npz"]  # no temporary left behind
    assert_tree_equal(io.load_checkpoint(path), old)

    def failing_replace(src, dst):
        raise OSError("rename failed (simulated)")
    monkeypatch.setattr(io.os, "replace", failing_replace)
    with pytest.raises(OSError, match="rename"):
        io.save_checkpoint(path, {"step": 3})
    monkeypatch.undo()
    assert _files(tmp_path) == ["ck.npz"]
    assert_tree_equal(io.load_checkpoint(path), old)


def test_checkpoint_survives_a_hard_crash_mid_write(tmp_path):
    """A process killed while writing (no exception handlers run) leaves the old checkpoint readable."""
    path = tmp_path / "ck.npz"
    io.save_checkpoint(path, {"step": 1, "w": np.arange(5.0)})
    child = textwrap.dedent(f"""
        import os, numpy as np
        from minigan import io
        real = np.lib.format.write_array
        def crash(fp, array, *a, **k):
            real(fp, array, *a, **k)
            fp.write(b"partial")
            os._exit(3)
        np.lib.format.write_array = crash
        io.save_checkpoint({str(path)!r}, {{"step": 2, "w": np.zeros(10**6)}})
    """)
    root = os.path.dirname(os.path.dirname(os.path.abspath(io.__file__)))
    env = dict(os.environ, PYTHONPATH=root + os.pathsep + os.environ.get("PYTHONPATH", ""))
    result = subprocess.run([sys.executable, "-c", child], env=env, capture_output=True, timeout=60)
    assert result.returncode == 3, result.stderr.decode()
    back = io.load_checkpoint(path)
    assert back["step"] == 1 and np.array_equal(back["w"], np.arange(5.0))
    leftovers = [n for n in _files(tmp_path) if n != "ck.npz"]
    assert all(n.startswith(".ck.npz.") and n.endswith(".tmp") for n in leftovers)


def test_loader_state_through_a_checkpoint(tmp_path):
    x = np.arange(30)
    a = Batches(x, batch_size=4, seed=2)
    stream = a.forever()
    for _ in range(9):
        next(stream)
    io.save_checkpoint(tmp_path / "ck.npz", {"loader": a.get_state()})
    expected = [next(stream) for _ in range(10)]
    b = Batches(x, batch_size=4)
    b.set_state(io.load_checkpoint(tmp_path / "ck.npz")["loader"])
    got = [batch for _, batch in zip(range(10), b.forever())]
    assert all(np.array_equal(p, q) for p, q in zip(expected, got))


# --- JSONL logs -----------------------------------------------------------------------------------

def test_jsonl_round_trip_and_crash_repair(tmp_path):
    path = tmp_path / "logs" / "metrics.jsonl"
    io.append_jsonl(path, {"step": np.int64(1), "loss": np.float32(0.5), "v": np.arange(2), "nan": float("nan")})
    io.append_jsonl(path, {"step": 2, "loss": 0.25})
    with open(path, "ab") as f:
        f.write(b'{"step": 3, "lo')  # a crash in the middle of a line
    io.append_jsonl(path, {"step": 4})
    with pytest.warns(UserWarning, match="metrics.jsonl:3"):
        records = io.read_jsonl(path)
    assert [r["step"] for r in records] == [1, 2, 4]
    assert records[0]["loss"] == 0.5 and records[0]["v"] == [0, 1] and math.isnan(records[0]["nan"])
    with pytest.raises(ValueError, match="metrics.jsonl:3"):
        io.read_jsonl(path, strict=True)
    with pytest.raises(TypeError, match="dict"):
        io.append_jsonl(path, [1, 2])
    with pytest.raises(TypeError, match="object"):
        io.append_jsonl(path, {"bad": object()})
    assert open(path).read().count("\n") == 4  # the failed appends wrote nothing


def test_zip_members_are_plain_npy(tmp_path):
    path = io.save_checkpoint(tmp_path / "ck.npz", {"a": np.ones(2)})
    with zipfile.ZipFile(path) as z:
        assert sorted(z.namelist()) == ["__minigan__.npy", "a.npy"]
        assert z.read("a.npy").startswith(b"\x93NUMPY")
