"""The mode-collapse cures' building blocks: spectral normalization (against np.linalg.svd),
minibatch discrimination, feature matching, the hinge losses and R1, each against its paper's
formula, gradchecked in float64, with their errors."""
import numpy as np
import pytest

import minigan as mg
from minigan import nn
from minigan.autograd import Tensor, grad
from minigan.gan.losses import (d_loss_hinge, feature_matching_loss, g_loss_hinge, r1_penalty)
from minigan.nn import MinibatchDiscrimination
from minigan.nn.utils import remove_spectral_norm, spectral_norm
from minigan.testing import gradcheck, gradgradcheck


# ------------------------------------------------------------------------------------------------
# spectral normalization
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("make", [lambda: nn.Linear(7, 5), lambda: nn.Conv2d(3, 4, 3),
                                  lambda: nn.ConvTranspose2d(4, 3, 4)])
def test_spectral_norm_after_20_power_iterations_sigma_is_one(make):
    mg.manual_seed(0)
    layer = spectral_norm(make().double(), n_power_iterations=20)
    shape = (2, 7) if isinstance(layer, nn.Linear) else (1, layer.in_channels, 6, 6)
    x = Tensor(np.random.default_rng(0).standard_normal(shape))
    layer(x)
    dim = 1 if isinstance(layer, nn.ConvTranspose2d) else 0
    w = np.moveaxis(layer.weight.data, dim, 0)
    top = np.linalg.svd(w.reshape(w.shape[0], -1), compute_uv=False)[0]
    assert abs(top - 1) < 1e-3, top
    w0 = np.moveaxis(layer.weight_orig.data, dim, 0)
    sigma = np.linalg.svd(w0.reshape(w0.shape[0], -1), compute_uv=False)[0]
    np.testing.assert_allclose(layer.weight.data, layer.weight_orig.data / sigma, rtol=2e-3)


def test_spectral_norm_gradcheck_through_the_normalisation():
    mg.manual_seed(1)
    layer = spectral_norm(nn.Linear(4, 3).double(), n_power_iterations=5)
    layer(Tensor(np.zeros((1, 4))))   # a few power iterations, then freeze u, v
    layer.eval()
    x = Tensor(np.random.default_rng(1).standard_normal((5, 4)))

    def f(w, x):
        from minigan.func import functional_call
        return functional_call(layer, {"weight_orig": w}, (x,))

    gradcheck(f, [Tensor(layer.weight_orig.data.copy(), requires_grad=True),
                  Tensor(x.data, requires_grad=True)])


def test_spectral_norm_state_dict_round_trip_and_eval_keeps_u():
    mg.manual_seed(2)
    a = spectral_norm(nn.Linear(6, 4))
    x = Tensor(np.random.default_rng(2).standard_normal((3, 6)).astype(np.float32))
    for _ in range(3):
        a(x)
    state = a.state_dict()
    assert set(state) == {"weight_orig", "bias", "weight_u", "weight_v"}
    mg.manual_seed(9)
    b = spectral_norm(nn.Linear(6, 4))
    b.load_state_dict(state)
    a.eval(), b.eval()
    np.testing.assert_array_equal(a(x).numpy(), b(x).numpy())
    u = a.weight_u.data.copy()
    a(x)
    np.testing.assert_array_equal(a.weight_u.data, u)      # eval mode: u does not move
    assert sorted(n for n, _ in a.named_parameters()) == ["bias", "weight_orig"]


def test_spectral_norm_power_iteration_moves_u_in_training_only():
    mg.manual_seed(3)
    layer = spectral_norm(nn.Linear(5, 5))
    x = Tensor(np.ones((1, 5), np.float32))
    u0 = layer.weight_u.data.copy()
    layer.eval()
    layer(x)
    np.testing.assert_array_equal(layer.weight_u.data, u0)
    layer.train()
    layer(x)
    assert np.abs(layer.weight_u.data - u0).max() > 1e-4


def test_spectral_norm_errors_and_removal():
    with pytest.raises(ValueError, match="has no parameter 'kernel'"):
        spectral_norm(nn.Linear(2, 2), name="kernel")
    with pytest.raises(ValueError, match=r"at least 2 dimensions, got shape \(2,\)"):
        spectral_norm(nn.Linear(2, 2), name="bias")
    layer = spectral_norm(nn.Linear(3, 2))
    with pytest.raises(RuntimeError, match="already spectrally normalised"):
        spectral_norm(layer)
    layer.eval()
    x = Tensor(np.ones((1, 3), np.float32))
    before = layer(x).numpy()
    remove_spectral_norm(layer)
    assert isinstance(layer.weight, nn.Parameter) and "weight_u" not in layer.state_dict()
    np.testing.assert_allclose(layer(x).numpy(), before, rtol=1e-6)


# ------------------------------------------------------------------------------------------------
# minibatch discrimination
# ------------------------------------------------------------------------------------------------
def test_minibatch_discrimination_formula_and_shapes():
    mg.manual_seed(4)
    layer = MinibatchDiscrimination(3, 4, kernel_dims=2).double()
    x = np.random.default_rng(4).standard_normal((5, 3))
    out = layer(Tensor(x)).numpy()
    assert out.shape == (5, 3 + 4)
    m = np.einsum("na,abc->nbc", x, layer.T.data)
    expected = np.exp(-np.abs(m[:, None] - m[None]).sum(-1)).sum(1)
    np.testing.assert_allclose(out[:, :3], x)
    np.testing.assert_allclose(out[:, 3:], expected, rtol=1e-12)


def test_minibatch_discrimination_identical_batch_gives_n():
    """Identical samples: every distance is 0, so each o_b = sum_j exp(0) = N (the paper's
    sum runs over the whole batch), whatever T is."""
    layer = MinibatchDiscrimination(4, 6, kernel_dims=3).double()
    out = layer(Tensor(np.tile(np.array([[0.3, -1.2, 2.0, 0.7]]), (7, 1)))).numpy()
    np.testing.assert_array_equal(out[:, 4:], 7.0)
    # spread-out samples: each sample is close only to itself, o -> 1
    far = layer(Tensor(np.arange(4)[:, None] * 100.0 * np.ones((4, 4)))).numpy()
    np.testing.assert_allclose(far[:, 4:], 1.0, atol=1e-6)


def test_minibatch_discrimination_gradcheck_and_errors():
    mg.manual_seed(5)
    layer = MinibatchDiscrimination(3, 2, kernel_dims=2).double()
    x = Tensor(np.random.default_rng(5).standard_normal((4, 3)), requires_grad=True)
    from minigan.func import functional_call
    gradcheck(lambda x, t: functional_call(layer, {"T": t}, (x,)),
              [x, Tensor(layer.T.data.copy(), requires_grad=True)])
    with pytest.raises(ValueError, match=r"expected input \(N, 3\), got shape \(4, 2\)"):
        layer(Tensor(np.zeros((4, 2))))
    with pytest.raises(ValueError, match="out_features must be >= 1"):
        MinibatchDiscrimination(3, 0)


# ------------------------------------------------------------------------------------------------
# feature matching, hinge, R1
# ------------------------------------------------------------------------------------------------
def test_feature_matching_formula_gradient_and_zero_at_equal_means():
    rng = np.random.default_rng(6)
    real, fake = rng.standard_normal((5, 3)), rng.standard_normal((4, 3))
    loss = feature_matching_loss(Tensor(real), Tensor(fake))
    assert loss.shape == ()
    np.testing.assert_allclose(loss.item(), ((real.mean(0) - fake.mean(0)) ** 2).sum())
    gradcheck(lambda f: feature_matching_loss(Tensor(real), f),
              [Tensor(fake, requires_grad=True)])
    # the real side is a constant: no gradient reaches it
    r = Tensor(real, requires_grad=True)
    g, = grad(feature_matching_loss(r, Tensor(fake, requires_grad=True)), r, allow_unused=True)
    assert g is None
    # a fake batch with the real batch's mean (not the same samples) costs nothing
    shifted = real[:4] - real[:4].mean(0) + real.mean(0)
    assert feature_matching_loss(Tensor(real), Tensor(shifted)).item() < 1e-25
    with pytest.raises(ValueError, match="differ beyond the batch axis"):
        feature_matching_loss(Tensor(real), Tensor(np.zeros((4, 2))))


def test_hinge_losses_formula_and_gradient():
    real, fake = np.array([[2.0], [0.5], [-0.3]]), np.array([[-2.0], [0.2], [-0.6]])
    expected = np.maximum(0, 1 - real).mean() + np.maximum(0, 1 + fake).mean()
    np.testing.assert_allclose(d_loss_hinge(Tensor(real), Tensor(fake)).item(), expected)
    np.testing.assert_allclose(g_loss_hinge(Tensor(fake)).item(), -fake.mean())
    gradcheck(d_loss_hinge, [Tensor(real, requires_grad=True), Tensor(fake, requires_grad=True)])
    with pytest.raises(TypeError, match="floating point"):
        d_loss_hinge(Tensor(np.array([1, 2])), Tensor(np.array([0.5, 1.0])))


def test_r1_penalty_on_a_linear_discriminator_and_its_second_order_gradient():
    """D(x) = w.x + b: grad_x D = w for every x, so R1 = gamma / 2 * ||w||^2 exactly."""
    D = nn.Linear(3, 1).double()
    real = Tensor(np.random.default_rng(7).standard_normal((6, 3)))
    penalty = r1_penalty(D, real, gamma=4.0)
    np.testing.assert_allclose(penalty.item(), 2.0 * (D.weight.data ** 2).sum())
    gw, = grad(penalty, D.weight)
    np.testing.assert_allclose(gw.data, 4.0 * D.weight.data)
    # a non-linear D: the penalty's gradient with respect to D's weights is second order
    mg.manual_seed(8)
    net = nn.Sequential(nn.Linear(2, 4), nn.Tanh(), nn.Linear(4, 1)).double()
    x = np.random.default_rng(8).standard_normal((5, 2))
    from minigan.func import functional_call
    names = [n for n, _ in net.named_parameters()]
    gradcheck(lambda *ps: r1_penalty(lambda inp: functional_call(net, dict(zip(names, ps)),
                                                                 (inp,)), Tensor(x), 10.0),
              [Tensor(p.data.copy(), requires_grad=True) for p in net.parameters()])
    with pytest.raises(ValueError, match="gamma must be >= 0"):
        r1_penalty(D, real, gamma=-1.0)
    with pytest.raises(ValueError, match="non-empty batch"):
        r1_penalty(D, Tensor(np.zeros(3)))


def test_gradgradcheck_of_the_minibatch_feature():
    """The discriminator's R1 / gradient penalty differentiates MBD twice."""
    mg.manual_seed(10)
    layer = MinibatchDiscrimination(2, 2, kernel_dims=2).double()
    gradgradcheck(lambda x: layer(x), [Tensor(np.random.default_rng(10).standard_normal((3, 2)),
                                              requires_grad=True)])


# ------------------------------------------------------------------------------------------------
# SN-GAN on MNIST: the DCGAN with a spectrally normalised, batch-norm-free D and the hinge loss
# ------------------------------------------------------------------------------------------------
def test_sn_dcgan_discriminator_is_normalised_and_the_hinge_step_trains():
    from minigan import optim
    from minigan.gan.models import make_dcgan
    from minigan.gan.train import train_step
    mg.manual_seed(11)
    G, D = make_dcgan(nz=8, ngf=4, ndf=4, spectral_norm=True)
    convs = [m for m in D.modules() if isinstance(m, nn.Conv2d)]
    assert len(convs) == 3 and all(hasattr(m, "weight_u") for m in convs)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in D.modules())
    opt_g, opt_d = optim.Adam(G.parameters(), lr=2e-4), optim.Adam(D.parameters(), lr=2e-4)
    real = Tensor(np.random.default_rng(11).uniform(-1, 1, (8, 1, 28, 28)).astype(np.float32))
    z = Tensor(np.random.default_rng(12).standard_normal((8, 8)).astype(np.float32))
    before = [p.data.copy() for p in D.parameters()]
    stats = train_step(G, D, opt_g, opt_d, real, z, loss="hinge")
    assert np.isfinite(stats.loss_d) and np.isfinite(stats.loss_g)
    assert all(np.abs(p.data - b).max() > 0 for p, b in zip(D.parameters(), before))
    for m in convs:   # after a few power iterations W / sigma has spectral norm ~1
        w = m.weight.data.reshape(m.weight.shape[0], -1)
        assert np.linalg.svd(w, compute_uv=False)[0] < 1.5
    with pytest.raises(ValueError, match="loss must be one of"):
        train_step(G, D, opt_g, opt_d, real, z, loss="wgan")


def test_sn_hinge_dcgan_example_runs_and_resumes_exactly(tmp_path):
    from examples import dcgan_mnist
    from minigan import io
    argv = ["--nz", "8", "--ngf", "4", "--ndf", "4", "--batch-size", "16", "--no-progress",
            "--no-metrics", "--samples", "16", "--bundled", "--spectral-norm", "--loss", "hinge",
            "--recipe", "two-timescale"]
    assert dcgan_mnist.main(argv + ["--iters", "4", "--out", str(tmp_path / "a")]) == 0
    assert dcgan_mnist.main(argv + ["--iters", "2", "--out", str(tmp_path / "b")]) == 0
    assert dcgan_mnist.main(argv + ["--iters", "4", "--out", str(tmp_path / "b"), "--resume"]) == 0
    a = io.load_checkpoint(tmp_path / "a" / "checkpoint.npz")["models"]["D"]
    b = io.load_checkpoint(tmp_path / "b" / "checkpoint.npz")["models"]["D"]
    assert "net.0.weight_u" in a and "net.0.weight_orig" in a
    for k in a:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)
