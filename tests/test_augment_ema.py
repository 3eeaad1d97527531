"""DiffAugment (translation, cutout) against loop references and finite differences, and the EMA
generator with batch-norm statistics recomputed for the averaged weights."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import minigan as mg
from minigan import nn, optim
from minigan.gan.augment import DiffAugment, RandomAffine, affine, cutout, translate
from minigan.gan.ema import EMA, noise_batches, recompute_batchnorm
from minigan.gan.models import Generator, make_dcgan
from minigan.gan.train import sample_noise, train_step
from minigan.testing import gradcheck, gradgradcheck


def translate_reference(x, dy, dx, fill):
    out = np.full_like(x, fill)
    n, _, h, w = x.shape
    for k in range(n):
        for i in range(h):
            for j in range(w):
                si, sj = i - dy[k], j - dx[k]
                if 0 <= si < h and 0 <= sj < w:
                    out[k, :, i, j] = x[k, :, si, sj]
    return out


@settings(max_examples=25, deadline=None)
@given(n=st.integers(1, 3), c=st.integers(1, 2), h=st.integers(1, 6), w=st.integers(1, 6),
       data=st.data())
def test_translate_moves_every_pixel_and_fills_the_background(n, c, h, w, data):
    x = np.random.default_rng(n * 100 + h * 10 + w).standard_normal((n, c, h, w))
    dy = np.array(data.draw(st.lists(st.integers(-h - 1, h + 1), min_size=n, max_size=n)))
    dx = np.array(data.draw(st.lists(st.integers(-w - 1, w + 1), min_size=n, max_size=n)))
    got = translate(mg.Tensor(x), dy, dx, background=-1.0).data
    np.testing.assert_allclose(got, translate_reference(x, dy, dx, -1.0), atol=1e-12)


def test_cutout_blanks_exactly_the_square_clipped_to_the_image():
    x = np.random.default_rng(0).standard_normal((3, 2, 7, 6))
    top, left, size = np.array([-2, 3, 5]), np.array([1, -1, 4]), 4
    got = cutout(mg.Tensor(x), top, left, size, background=-1.0).data
    want = x.copy()
    for k in range(3):
        want[k, :, max(top[k], 0):top[k] + size, max(left[k], 0):left[k] + size] = -1.0
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-12)


def fixed_draws(aug, seed=5):
    """T with the same random transformation at every call (so finite differences see one T)."""
    def fn(x):
        mg.manual_seed(seed)
        return aug(x)
    return fn


def test_diffaugment_gradients_first_and_second_order():
    x = mg.Tensor(np.random.default_rng(1).uniform(-1, 1, (2, 1, 8, 8)), requires_grad=True)
    fn = fixed_draws(DiffAugment())
    assert gradcheck(fn, [x])
    assert gradgradcheck(lambda t: fn(t) * fn(t), [x])


def test_diffaugment_draws_the_papers_ranges_from_the_seeded_generator():
    """28x28: shifts of at most int(28/8 + 0.5) = 4 pixels (the paper's rounding), each of -4..4
    drawn; a 14x14 square."""
    x = mg.Tensor(np.ones((400, 1, 28, 28), np.float32))
    mg.manual_seed(0)
    shifted = DiffAugment(("translation",))(x).data[:, 0]
    dy = 28 - (shifted != -1).any(axis=2).sum(axis=1)   # rows uncovered: |dy|
    assert set(np.unique(dy)) == {0, 1, 2, 3, 4}
    cut = DiffAugment(("cutout",))(x).data[:, 0]
    blank = (cut == -1).sum(axis=(1, 2))
    assert blank.max() == 14 * 14 and blank.min() > 0   # whole squares, and edge-clipped ones
    mg.manual_seed(0)
    again = DiffAugment(("translation",))(x).data[:, 0]
    np.testing.assert_array_equal(shifted, again)       # a resumed run draws the same T


def test_diffaugment_rejects_bad_settings_and_inputs():
    with pytest.raises(ValueError, match="unknown policy \\['color'\\]"):
        DiffAugment(("translation", "color"))
    with pytest.raises(ValueError, match="cutout_ratio must be in \\[0, 1\\], got 1.5"):
        DiffAugment(cutout_ratio=1.5)
    with pytest.raises(ValueError, match="expects images \\(N, C, H, W\\), got shape \\(4, 28\\)"):
        DiffAugment()(mg.Tensor(np.zeros((4, 28), np.float32)))


def bilinear_reference(image, y, x, fill):
    """image (H, W) read at the fractional point (y, x) by bilinear interpolation, fill outside."""
    h, w = image.shape
    total = 0.0
    for i in (int(np.floor(y)), int(np.floor(y)) + 1):
        for j in (int(np.floor(x)), int(np.floor(x)) + 1):
            weight = max(0.0, 1 - abs(y - i)) * max(0.0, 1 - abs(x - j))
            value = image[i, j] if 0 <= i < h and 0 <= j < w else fill
            total += weight * value
    return total


@settings(max_examples=20, deadline=None)
@given(h=st.integers(2, 7), w=st.integers(2, 7), data=st.data())
def test_affine_reads_each_pixel_where_the_inverse_warp_sends_it(h, w, data):
    """Output row i reads input row yi = (i - cy - dy) / s + cy, then column (j - cx - dx -
    k (i - cy)) / s + cx of that resampled row: a loop over pixels with explicit bilinear reads."""
    rng = np.random.default_rng(h * 10 + w)
    x = rng.standard_normal((2, 2, h, w))
    floats = st.floats(-2, 2, allow_nan=False)
    s = np.array(data.draw(st.lists(st.floats(0.5, 2), min_size=2, max_size=2)))
    k, dy, dx = (np.array(data.draw(st.lists(floats, min_size=2, max_size=2))) for _ in range(3))
    got = affine(mg.Tensor(x), s, k, dy, dx, background=-1.0).data
    cy, cx = (h - 1) / 2, (w - 1) / 2
    want = np.empty_like(x)
    for n in range(2):
        for c in range(2):
            b = x[n, c] + 1.0
            for i in range(h):
                yi = (i - cy - dy[n]) / s[n] + cy
                row = [bilinear_reference(b, yi, j, 0.0) for j in range(w)]
                for j in range(w):
                    xj = (j - cx - dx[n] - k[n] * (i - cy)) / s[n] + cx
                    want[n, c, i, j] = bilinear_reference(np.array([row]), 0, xj, 0.0) - 1.0
    np.testing.assert_allclose(got, want, atol=1e-10)


def test_affine_with_integer_shifts_is_translate_and_its_gradients_check():
    x = np.random.default_rng(3).standard_normal((3, 1, 6, 5))
    ones, zeros = np.ones(3), np.zeros(3)
    dy, dx = np.array([1, -2, 0]), np.array([0, 1, -1])
    np.testing.assert_allclose(affine(mg.Tensor(x), ones, zeros, zeros, zeros).data, x,
                               atol=1e-12)
    np.testing.assert_allclose(affine(mg.Tensor(x), ones, zeros, dy, dx, -1.0).data,
                               translate(mg.Tensor(x), dy, dx, -1.0).data, atol=1e-12)
    t = mg.Tensor(x, requires_grad=True)
    fn = fixed_draws(RandomAffine(translate=0.2, scale=(0.8, 1.2), shear=20))
    assert gradcheck(fn, [t])
    assert gradgradcheck(lambda v: fn(v) * fn(v), [t])


def test_random_affine_draws_from_the_seeded_generator_and_rejects_bad_settings():
    x = mg.Tensor(np.random.default_rng(0).uniform(-1, 1, (8, 1, 28, 28)).astype(np.float32))
    aug = RandomAffine()
    mg.manual_seed(4)
    first = aug(x).data
    mg.manual_seed(4)
    np.testing.assert_array_equal(first, aug(x).data)
    assert first.dtype == np.float32 and not np.allclose(first, x.data)
    with pytest.raises(ValueError, match=r"scale must be \(lo, hi\) with 0 < lo <= hi"):
        RandomAffine(scale=(1.1, 0.9))
    with pytest.raises(ValueError, match=r"shear must be in \[0, 90\) degrees, got 90"):
        RandomAffine(shear=90)
    with pytest.raises(ValueError, match=r"translate must be in \[0, 1\], got -0.1"):
        RandomAffine(translate=-0.1)
    with pytest.raises(ValueError, match=r"expects images \(N, C, H, W\), got shape \(4, 28\)"):
        aug(mg.Tensor(np.zeros((4, 28), np.float32)))


def test_train_step_shows_d_only_augmented_images_and_g_learns_through_t():
    mg.manual_seed(0)
    G, D = make_dcgan(nz=4, ngf=2, ndf=2)
    opt_g, opt_d = optim.Adam(G.parameters()), optim.Adam(D.parameters())
    seen = []

    def augment(x):
        seen.append(x.requires_grad)
        return DiffAugment()(x)

    real = mg.Tensor(np.random.default_rng(0).uniform(-1, 1, (4, 1, 28, 28)).astype(np.float32))
    before = [p.data.copy() for p in G.parameters()]
    train_step(G, D, opt_g, opt_d, real, sample_noise(4, 4), augment=augment)
    # real, G(z) detached for D's step, G(z) with its graph for G's step
    assert seen == [False, False, True]
    assert all(not np.array_equal(b, p.data) for b, p in zip(before, G.parameters()))


def test_ema_is_the_exponential_average_with_the_warm_up():
    mg.manual_seed(0)
    model, average = nn.Linear(3, 2), nn.Linear(3, 2)
    ema = EMA(model, average, beta=0.9)
    want = model.weight.data.astype(np.float64).copy()
    rng = np.random.default_rng(0)
    for t in range(30):
        model.weight.data[...] = rng.standard_normal(model.weight.shape)
        ema.update(model)
        beta = min(0.9, (1 + t) / (10 + t))
        want = beta * want + (1 - beta) * model.weight.data
    np.testing.assert_allclose(ema.model.weight.data, want, rtol=1e-5)
    assert not ema.model.weight.requires_grad
    with pytest.raises(ValueError, match="beta must be in \\[0, 1\\), got 1"):
        EMA(model, nn.Linear(3, 2), beta=1)
    with pytest.raises(TypeError, match="the average must be a Linear, got Conv2d"):
        EMA(model, nn.Conv2d(1, 1, 1))


def test_recompute_batchnorm_sets_the_plain_average_of_the_batch_statistics():
    mg.manual_seed(0)
    conv = nn.Conv2d(1, 3, 3)
    model = nn.Sequential(conv, nn.BatchNorm2d(3))
    model.eval()
    rng = np.random.default_rng(1)
    batches = [rng.standard_normal((5, 1, 6, 6)).astype(np.float32) for _ in range(3)]
    recompute_batchnorm(model, batches)
    assert not model.training
    with mg.no_grad():
        acts = [conv(mg.Tensor(b)).data.astype(np.float64) for b in batches]
    means = np.mean([a.mean(axis=(0, 2, 3)) for a in acts], axis=0)
    variances = np.mean([a.var(axis=(0, 2, 3), ddof=1) for a in acts], axis=0)
    bn = next(m for m in model.modules() if isinstance(m, nn.BatchNorm2d))
    np.testing.assert_allclose(bn.running_mean.data, means, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(bn.running_var.data, variances, rtol=1e-4)
    assert int(bn.num_batches_tracked.data) == 3 and bn.momentum == 0.1


def test_averaged_generator_with_recomputed_statistics_matches_its_own_activations():
    """The averaged G's running statistics, after the recompute, describe that G: its outputs in
    evaluation mode equal its outputs in training mode on a large batch (to batch noise)."""
    mg.manual_seed(0)
    G = Generator(nz=8, ngf=4)
    average = Generator(nz=8, ngf=4)
    ema = EMA(G, average, beta=0.5)
    for p in G.parameters():   # move G far away, so the old statistics no longer fit
        p.data += 0.5
    ema.update(G)
    z = noise_batches(8, seed=0, batches=1, batch_size=512)[0]
    recompute_batchnorm(ema.model, noise_batches(8, seed=1, batches=4, batch_size=256))
    with mg.no_grad():
        ema.model.eval()
        evaluated = ema.model(mg.Tensor(z)).data
        ema.model.train()
        trained = ema.model(mg.Tensor(z)).data
    assert np.abs(evaluated - trained).mean() < 0.02


def test_dcgan_example_recipes_and_their_flags():
    from examples import dcgan_mnist
    small = dcgan_mnist.parse_args(["--recipe", "small-data"])
    assert (small.policy, small.ema) == (("translation", "cutout"), 0.999)
    default = dcgan_mnist.parse_args([])
    assert (default.recipe, default.clusters, default.policy, default.ema, default.lr,
            default.lr_d, default.ngf, default.ndf, default.default_iters) == (
        "clusters", 100, (), 0.0, 2e-4, 2e-4, 32, 32, 2500)
    two = dcgan_mnist.parse_args(["--recipe", "two-timescale"])
    assert (two.clusters, two.lr, two.lr_d, two.ngf, two.default_iters) == (0, 1.6e-3, 2e-4,
                                                                          64, 2000)
    paper = dcgan_mnist.parse_args(["--recipe", "paper"])
    assert (paper.recipe, paper.clusters, paper.policy, paper.ema, paper.lr, paper.lr_d,
            paper.ngf, paper.ndf) == ("paper", 0, (), 0.0, 2e-4, 2e-4, 64, 64)
    # a recipe's setting given explicitly wins over the recipe; --lr alone sets both players'
    assert dcgan_mnist.parse_args(["--recipe", "two-timescale", "--lr-d", "1e-4"]).lr == 1.6e-3
    assert dcgan_mnist.parse_args(["--lr-d", "1e-4"]).lr_d == 1e-4
    wide = dcgan_mnist.parse_args(["--ngf", "16", "--clusters", "10", "--iters", "7"])
    assert (wide.ngf, wide.ndf, wide.clusters, wide.iters) == (16, 32, 10, 7)
    with pytest.raises(SystemExit, match="--clusters must be >= 0"):
        dcgan_mnist.parse_args(["--clusters", "-1"])
    with pytest.raises(SystemExit, match="--clusters needs --nz >= 2"):
        dcgan_mnist.parse_args(["--nz", "1"])
    with pytest.raises(SystemExit, match="--spectral-norm and --loss hinge: only for the "
                                         "unconditional DCGAN; add --clusters 0"):
        dcgan_mnist.parse_args(["--spectral-norm", "--loss", "hinge"])
    assert dcgan_mnist.parse_args(["--clusters", "0", "--loss", "hinge"]).loss == "hinge"
    mixed = dcgan_mnist.parse_args(["--recipe", "paper", "--augment", "translation",
                                    "--lr-d", "4e-4"])
    assert (mixed.policy, mixed.ema, mixed.lr_d) == (("translation",), 0.0, 4e-4)
    with pytest.raises(SystemExit, match="--augment: unknown \\['color'\\]"):
        dcgan_mnist.parse_args(["--augment", "translation,color"])
    with pytest.raises(SystemExit, match="--ema must be in \\[0, 1\\), got 1.0"):
        dcgan_mnist.parse_args(["--ema", "1"])
    with pytest.raises(SystemExit, match="--lr-d must be > 0"):
        dcgan_mnist.parse_args(["--lr-d", "0"])


def test_dcgan_lr_sets_both_players_unless_lr_d_parts_them():
    from examples import dcgan_mnist
    both = dcgan_mnist.parse_args(["--lr", "1e-3"])
    assert (both.lr, both.lr_d) == (1e-3, 1e-3)
    parted = dcgan_mnist.parse_args(["--lr", "1e-4", "--lr-d", "4e-4"])
    assert (parted.lr, parted.lr_d) == (1e-4, 4e-4)


def test_small_data_recipe_resumes_exactly(tmp_path):
    """Augmentation draws, the EMA generator and its recomputed statistics continue exactly."""
    from examples import dcgan_mnist
    from test_checkpoint_resume import assert_same_tree, example_argv
    from test_dcgan import write_digits
    from minigan import io
    data = write_digits(str(tmp_path / "data"))
    recipe = ("--recipe", "small-data")
    assert dcgan_mnist.main(example_argv(tmp_path / "a", data, "--iters", "5", *recipe)) == 0
    assert dcgan_mnist.main(example_argv(tmp_path / "b", data, "--iters", "2", *recipe)) == 0
    mg.manual_seed(99)
    assert dcgan_mnist.main(example_argv(tmp_path / "b", data, "--iters", "5", "--resume",
                                         *recipe)) == 0
    a = io.load_checkpoint(tmp_path / "a" / "checkpoint.npz")
    b = io.load_checkpoint(tmp_path / "b" / "checkpoint.npz")
    assert set(a["models"]) == {"G", "D", "G_ema"}
    assert_same_tree(a["models"], b["models"])
    assert_same_tree(a["optimizers"], b["optimizers"])
