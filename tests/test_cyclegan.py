"""CycleGAN pieces (minigan.gan.cyclegan): the image pool, the losses on known values, the cycle
loss of identity generators, the networks' shapes and the PatchGAN's receptive field, the
learning-rate schedule, and one training step."""
import numpy as np
import pytest

import minigan as mg
from minigan import nn
from minigan.autograd import Tensor, grad
from minigan.gan.cyclegan import (CycleGAN, ImagePool, PatchDiscriminator, ResnetBlock,
                                  ResnetGenerator, linear_decay, spec)
from minigan.gan.losses import d_loss_least_squares, g_loss_least_squares
from minigan.testing import gradcheck


def _batch(seed, n=4, shape=(3, 4, 4)):
    return np.random.default_rng(seed).standard_normal((n,) + shape).astype(np.float32)


# --- the image pool -----------------------------------------------------------------------------
def test_pool_fills_then_returns_old_fakes_half_of_the_time():
    pool = ImagePool(50, seed=0)
    first = np.arange(50, dtype=np.float64).reshape(50, 1)
    np.testing.assert_array_equal(pool.query(first), first)   # filling: the new fakes come back
    assert len(pool.images) == 50
    old = 0
    for k in range(200):
        new = np.full((10, 1), 1000.0 + k)
        out = pool.query(new)
        old += int((out != new).sum())
        assert len(pool.images) == 50
    # 2,000 draws of a fair coin: 1,000 +- 4.5 standard deviations (22)
    assert abs(old - 1000) < 100, old


def test_pool_returns_a_stored_image_and_stores_the_new_one():
    pool = ImagePool(2, seed=1)
    pool.query(np.array([[1.0], [2.0]]))
    for k in range(20):
        before = [float(i[0]) for i in pool.images]
        out = float(pool.query(np.array([[10.0 + k]]))[0, 0])
        after = [float(i[0]) for i in pool.images]
        if out == 10.0 + k:
            assert after == before
        else:
            assert out in before and 10.0 + k in after and sorted(set(before) - set(after)) == [out]


def test_pool_deterministic_under_a_seed_and_resumable():
    a, b = ImagePool(5, seed=3), ImagePool(5, seed=3)
    batches = [_batch(k, n=3, shape=(2,)) for k in range(8)]
    outs_a = [a.query(x) for x in batches[:4]]
    outs_b = [b.query(x) for x in batches[:4]]
    for x, y in zip(outs_a, outs_b):
        np.testing.assert_array_equal(x, y)
    state = a.get_state()
    c = ImagePool(5, seed=99)
    c.set_state(state)
    for x in batches[4:]:
        np.testing.assert_array_equal(a.query(x), c.query(x))
    assert ImagePool(0).query(batches[0]) is batches[0]
    with pytest.raises(ValueError, match="pool_size=5"):
        ImagePool(4).set_state(state)


# --- losses -------------------------------------------------------------------------------------
def test_least_squares_losses_on_known_values():
    real, fake = Tensor(np.array([1.0, 3.0])), Tensor(np.array([0.0, -2.0, 2.0]))
    # D: 0.5 * (mean((1-1)^2, (3-1)^2) + mean(0, 4, 4)) = 0.5 * (2 + 8/3)
    assert d_loss_least_squares(real, fake).item() == pytest.approx(0.5 * (2 + 8 / 3))
    # G: mean((0-1)^2, (-2-1)^2, (2-1)^2) = 11/3
    assert g_loss_least_squares(fake).item() == pytest.approx(11 / 3)
    # the optimum: D scores reals 1 and fakes 0, G's fakes scored 1
    assert d_loss_least_squares(Tensor(np.ones(4)), Tensor(np.zeros(4))).item() == 0
    assert g_loss_least_squares(Tensor(np.ones((2, 1, 3, 3)))).item() == 0


def test_cycle_and_identity_losses_are_exactly_zero_for_identity_generators():
    D_X, D_Y = PatchDiscriminator(ndf=4), PatchDiscriminator(ndf=4)
    G, F = ResnetGenerator(ngf=4, n_blocks=1), ResnetGenerator(ngf=4, n_blocks=1)
    model = CycleGAN(G, F, D_X, D_Y)
    model.G = model.F = nn.Identity()
    images = Tensor(_batch(0, shape=(3, 16, 16)))
    total, parts, fake_x, fake_y = model.generator_losses(images, images)
    assert parts["cycle"].item() == 0.0 and parts["identity"].item() == 0.0
    assert total.item() == pytest.approx(parts["gan"].item())
    # and not zero once F is not G's inverse
    model.F = lambda t: t * 0.5
    _, parts, _, _ = model.generator_losses(images, images)
    assert parts["cycle"].item() > 0.1


def test_consistency_loss_compares_f_of_both_versions_and_joins_the_objective():
    mg.manual_seed(1)
    G, F = ResnetGenerator(ngf=4, n_blocks=1), ResnetGenerator(ngf=4, n_blocks=1)
    D_X, D_Y = PatchDiscriminator(ndf=4), PatchDiscriminator(ndf=4)
    x, y = Tensor(_batch(5, shape=(3, 16, 16))), Tensor(_batch(6, shape=(3, 16, 16)))
    plain = CycleGAN(G, F, D_X, D_Y)
    total0, parts0, _, _ = plain.generator_losses(x, y)
    assert parts0["consistency"] is None
    same = CycleGAN(G, F, D_X, D_Y, lambda_consistency=0.5, consistency_transform=lambda t: t)
    total1, parts1, _, _ = same.generator_losses(x, y)
    assert parts1["consistency"].item() == 0.0 and total1.item() == pytest.approx(total0.item())
    neg = CycleGAN(G, F, D_X, D_Y, lambda_consistency=0.5, consistency_transform=lambda t: -t)
    total2, parts2, _, _ = neg.generator_losses(x, y)
    want = np.abs(F(-y).data - F(y).data).mean()
    assert parts2["consistency"].item() == pytest.approx(want, rel=1e-5) and want > 0
    assert total2.item() == pytest.approx(total0.item() + 0.5 * 10 * want, rel=1e-5)
    stats = neg.train_step(x, y, step=1)
    assert stats.loss_consistency > 0
    assert stats.loss_g == pytest.approx(stats.loss_gan + 10 * stats.loss_cycle
                                         + 5 * stats.loss_identity
                                         + 5 * stats.loss_consistency, rel=1e-5)
    with pytest.raises(ValueError, match="lambda_consistency > 0 needs a consistency_transform"):
        CycleGAN(G, F, D_X, D_Y, lambda_consistency=1.0)


# --- networks -----------------------------------------------------------------------------------
@pytest.mark.parametrize("size", [28, 32])
def test_generator_keeps_the_image_size(size):
    G = ResnetGenerator(in_channels=3, out_channels=1, ngf=4, n_blocks=2)
    y = G(Tensor(_batch(1, n=2, shape=(3, size, size))))
    assert y.shape == (2, 1, size, size)
    assert float(np.abs(y.numpy()).max()) <= 1.0
    with pytest.raises(ValueError, match="multiples of 4"):
        G(Tensor(_batch(1, n=1, shape=(3, 30, 30))))
    assert spec(G) == {"class": "minigan.gan.cyclegan.ResnetGenerator",
                       "kwargs": {"in_channels": 3, "out_channels": 1, "ngf": 4, "n_blocks": 2,
                                  "n_downsampling": 2}}


def test_residual_block_gradcheck():
    mg.set_default_dtype(np.float64)
    block = ResnetBlock(2)
    x = Tensor(np.random.default_rng(0).standard_normal((2, 2, 4, 4)), requires_grad=True)
    assert gradcheck(lambda t: block(t), [x])


@pytest.mark.parametrize("n_layers", [1, 2])
def test_patch_scores_see_exactly_their_receptive_field(n_layers):
    """The gradient of the centre score with respect to the input is non-zero exactly on a
    square of receptive_field pixels (the image is large enough for no border to cut it). The
    convolutions' field: instance norm's statistics are image-wide, so it is taken out here."""
    D = PatchDiscriminator(in_channels=1, ndf=4, n_layers=n_layers)
    for i, layer in enumerate(list(D.net)):
        if isinstance(layer, nn.InstanceNorm2d):
            setattr(D.net, str(i), nn.Identity())
    side = D.receptive_field + 16
    x = Tensor(np.random.default_rng(2).standard_normal((1, 1, side, side)).astype(np.float32),
               requires_grad=True)
    scores = D(x)
    h, w = scores.shape[2:]
    pick = np.zeros(scores.shape, np.float32)
    pick[0, 0, h // 2, w // 2] = 1
    g, = grad((scores * Tensor(pick)).sum(), x)
    rows, cols = np.nonzero(g.numpy()[0, 0])
    assert rows.max() - rows.min() + 1 == D.receptive_field
    assert cols.max() - cols.min() + 1 == D.receptive_field
    assert {1: 16, 2: 34, 3: 70}[n_layers] == D.receptive_field


# --- schedule and one step ----------------------------------------------------------------------
def test_linear_decay_over_the_second_half():
    lrs = [linear_decay(s, 100, 2e-4) for s in range(1, 101)]
    assert all(lr == 2e-4 for lr in lrs[:50])
    assert all(a > b for a, b in zip(lrs[50:], lrs[51:]))
    assert 0 < lrs[-1] < 2e-4 / 50
    np.testing.assert_allclose(np.diff(lrs[50:]), -2e-4 / 51, rtol=1e-9)


def test_train_step_updates_everything_and_keeps_d_out_of_the_generator_step():
    mg.manual_seed(0)
    G, F = ResnetGenerator(ngf=4, n_blocks=1), ResnetGenerator(ngf=4, n_blocks=1)
    D_X, D_Y = PatchDiscriminator(ndf=4), PatchDiscriminator(ndf=4)
    model = CycleGAN(G, F, D_X, D_Y)
    before = {name: [p.numpy().copy() for p in m.parameters()]
              for name, m in model.models.items()}
    x, y = Tensor(_batch(3, shape=(3, 16, 16))), Tensor(_batch(4, shape=(3, 16, 16)))
    stats = model.train_step(x, y, step=1)
    assert all(np.isfinite(v) for v in stats)
    assert stats.loss_g == pytest.approx(stats.loss_gan + 10 * stats.loss_cycle
                                         + 5 * stats.loss_identity, rel=1e-5)
    for name, m in model.models.items():
        changed = [not np.array_equal(a, p.numpy()) for a, p in zip(before[name], m.parameters())]
        assert all(changed), name
    assert len(model.pool_X.images) == 4 and len(model.pool_Y.images) == 4
    assert all(p.requires_grad for p in D_X.parameters())


def test_train_step_on_device_matches_cpu(device):
    """One step on ``device`` (float32) gives the CPU's losses; the pools keep their images on
    the device and put them back there from a saved state."""
    results = {}
    for where in ("cpu", device):
        mg.manual_seed(0)
        nets = [ResnetGenerator(ngf=4, n_blocks=1), ResnetGenerator(ngf=4, n_blocks=1),
                PatchDiscriminator(ndf=4), PatchDiscriminator(ndf=4)]
        model = CycleGAN(*[net.to(where) for net in nets], pool_size=2)
        x = Tensor(_batch(3, shape=(3, 16, 16))).to(where)
        y = Tensor(_batch(4, shape=(3, 16, 16))).to(where)
        results[where] = [model.train_step(x, y), model.train_step(x, y)]
        assert model.pool_X.images[0].__class__ is x.data.__class__
        state = model.pool_Y.get_state()
        assert isinstance(state["images"], np.ndarray)
        model.pool_Y.set_state(state)
        assert model.pool_Y.images[0].__class__ is x.data.__class__
    for ours, ref in zip(results[device], results["cpu"]):
        np.testing.assert_allclose(ours, ref, rtol=1e-3, atol=1e-4)
