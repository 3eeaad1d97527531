"""minigan.gan.clusters: k-means of the training images, the mixture generator G(z) that draws
its cluster from z's first coordinate, and the dcgan_mnist recipe built on them."""
from statistics import NormalDist

import numpy as np
import pytest

import minigan as mg
from minigan import io, optim
from minigan.gan.clusters import (ClusterMixtureGenerator, cluster_images, make_cluster_dcgan)
from minigan.gan.conditional import conditional_train_step
from minigan.gan.rebuild import generator_record, load_generator
from minigan.gan.train import run_state


def three_shapes(per_shape=(30, 20, 10), seed=0):
    """Images (N, 1, 8, 8) of three shapes (a bar, a block, a dot) with small noise, and which
    shape each one is."""
    rng = np.random.default_rng(seed)
    shapes = np.full((3, 8, 8), -1.0)
    shapes[0, :, 3:5] = 1
    shapes[1, 2:6, 2:6] = 1
    shapes[2, 0:2, 6:8] = 1
    which = np.repeat(np.arange(3), per_shape)
    images = shapes[which] + 0.1 * rng.standard_normal((len(which), 8, 8))
    order = rng.permutation(len(which))
    return images[order, None].astype(np.float32), which[order]


def test_cluster_images_finds_the_shapes_and_their_shares():
    images, which = three_shapes()
    found = cluster_images(images, 3, seed=0)
    assert found.labels.dtype == np.int64 and found.labels.shape == (60,)
    # one cluster per shape: the clusters and the shapes determine each other
    pairs = set(zip(found.labels.tolist(), which.tolist()))
    assert len(pairs) == 3
    np.testing.assert_allclose(np.sort(found.prior), [10 / 60, 20 / 60, 30 / 60])
    assert found.prior[found.labels[which == 0][0]] == pytest.approx(0.5)
    again = cluster_images(images, 3, seed=0)
    np.testing.assert_array_equal(again.labels, found.labels)


def test_a_large_set_is_fitted_on_a_sample_and_every_image_gets_its_nearest_centre():
    from scipy.cluster.vq import vq
    images, which = three_shapes(per_shape=(300, 200, 100))
    found = cluster_images(images, 3, seed=1, fit_images=30)
    assert len(set(zip(found.labels.tolist(), which.tolist()))) == 3
    np.testing.assert_allclose(np.sort(found.prior), [1 / 6, 2 / 6, 3 / 6])
    flat = images.reshape(len(images), -1).astype(np.float64)
    centres = np.stack([flat[found.labels == k].mean(axis=0) for k in range(3)])
    np.testing.assert_array_equal(vq(flat, centres)[0], found.labels)
    with pytest.raises(ValueError, match="more than the 2 images fitted"):
        cluster_images(images, 3, fit_images=2)


@pytest.mark.parametrize("k,message", [(0, "k must be"), (61, "k must be"), (2.5, "k must be"),
                                       (True, "k must be")])
def test_cluster_images_refuses_a_bad_k(k, message):
    images, _ = three_shapes()
    with pytest.raises(ValueError, match=message):
        cluster_images(images, k)


def test_cluster_images_refuses_nan_and_empty_clusters():
    images, _ = three_shapes()
    bad = images.copy()
    bad[4, 0, 0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        cluster_images(bad, 3)
    same = np.zeros((6, 1, 4, 4), np.float32)   # one distinct image cannot fill 3 clusters
    with pytest.raises(ValueError, match="empty"):
        cluster_images(same, 3)


def test_mixture_draws_each_cluster_with_its_prior_share():
    prior = [0.5, 0.1, 0.3, 0.1]
    G = ClusterMixtureGenerator(nz=5, ngf=2, prior=prior)
    z = np.random.default_rng(0).standard_normal((40000, 5)).astype(np.float32)
    shares = np.bincount(G.clusters_of(z), minlength=4) / len(z)
    # binomial standard error at 40,000 draws is at most 0.0025
    np.testing.assert_allclose(shares, prior, atol=0.01)
    # the boundaries are the normal quantiles of the cumulative prior
    assert G.thresholds == pytest.approx([NormalDist().inv_cdf(c) for c in (0.5, 0.6, 0.9)])


def test_mixture_is_the_conditional_generator_at_the_chosen_cluster():
    mg.manual_seed(0)
    G = ClusterMixtureGenerator(nz=6, ngf=2, prior=[0.25, 0.75]).eval()
    z = mg.Tensor(np.random.default_rng(1).standard_normal((8, 6)).astype(np.float32))
    k = (z.data[:, 0] >= 0.0 - 0.6745).astype(np.int64)   # Phi^-1(0.25) = -0.6745
    with mg.no_grad():
        out = G(z).data
        want = G.net(mg.Tensor(z.data[:, 1:]), k).data
    np.testing.assert_array_equal(G.clusters_of(z), k)
    np.testing.assert_allclose(out, want, rtol=1e-6, atol=1e-7)
    G.train()
    loss = (G(z) ** 2).mean()
    loss.backward()
    assert all(p.grad is not None and np.abs(p.grad.data).sum() > 0 for p in G.parameters())


@pytest.mark.parametrize("kwargs,message", [({"nz": 1}, "nz >= 2"),
                                            ({"prior": []}, "non-empty"),
                                            ({"prior": [0.5, 0.0, 0.5]}, "positive"),
                                            ({"prior": [0.5, 0.6]}, "sum to 1"),
                                            ({"prior": [float("nan"), 1.0]}, "positive")])
def test_mixture_refuses_bad_settings(kwargs, message):
    with pytest.raises(ValueError, match=message):
        ClusterMixtureGenerator(**{"nz": 4, "ngf": 2, **kwargs})
    G = ClusterMixtureGenerator(nz=4, ngf=2, prior=[1.0])
    with pytest.raises(ValueError, match=r"\(N, 4\)"):
        G(mg.Tensor(np.zeros((3, 5), np.float32)))


def test_a_cluster_gan_learns_its_clusters_and_rebuilds_from_its_record(tmp_path):
    """Trained on two shapes as clusters, G draws each cluster's shape, and the generator record
    rebuilds it from a checkpoint (the prior travels in the record's kwargs)."""
    images, _ = three_shapes(per_shape=(32, 32, 0), seed=1)
    x = np.full((64, 1, 28, 28), -1.0, np.float32)
    x[:, :, 10:18, 10:18] = images
    found = cluster_images(x, 2, seed=0)
    mg.manual_seed(0)
    prior = [float(p) for p in found.prior]
    G, D = make_cluster_dcgan(nz=8, ngf=8, ndf=8, prior=prior)
    opt_g = optim.Adam(G.parameters(), lr=2e-3, betas=(0.5, 0.999))
    opt_d = optim.Adam(D.parameters(), lr=2e-4, betas=(0.5, 0.999))
    for step in range(1, 151):
        idx = np.random.default_rng(step).choice(64, 32, replace=False)
        z = mg.Tensor(np.random.default_rng([step, 1]).standard_normal((32, 7)).astype(np.float32))
        conditional_train_step(G.net, D, opt_g, opt_d, mg.Tensor(x[idx]), found.labels[idx], z,
                               step=step)
    G.eval()
    z = np.random.default_rng(5).standard_normal((200, 8)).astype(np.float32)
    with mg.no_grad():
        fakes = G(mg.Tensor(z)).data[:, 0, 10:18, 10:18]
    drawn = G.clusters_of(z)
    means = [x[found.labels == k, 0, 10:18, 10:18].mean(axis=0) for k in range(2)]
    # each fake is nearer its own cluster's mean image than the other's
    near = [np.abs(f - means[k]).mean() < np.abs(f - means[1 - k]).mean()
            for f, k in zip(fakes, drawn)]
    assert np.mean(near) > 0.9
    record = generator_record(G, {"nz": 8, "ngf": 8, "prior": prior})
    io.save_checkpoint(tmp_path / "c.npz", run_state({"G": G}, {}, 150,
                                                      extra={"generator": record}))
    loaded = load_generator(str(tmp_path / "c.npz"))[0].eval()
    with mg.no_grad():
        np.testing.assert_array_equal(loaded(mg.Tensor(z)).data, G(mg.Tensor(z)).data)


def test_interpolation_holds_the_cluster_coordinate_so_a_row_stays_in_one_cluster():
    from examples._common import interpolation_noise
    free = interpolation_noise(6, seed=3, rows=4, cols=5)
    held = interpolation_noise(6, seed=3, rows=4, cols=5, hold=1)
    assert free.shape == held.shape == (20, 6)
    np.testing.assert_array_equal(held[:, 1:], free[:, 1:])
    rows = held[:, 0].reshape(4, 5)
    np.testing.assert_array_equal(rows, np.repeat(free[::5, :1], 5, axis=1))
    G = ClusterMixtureGenerator(nz=6, ngf=2, prior=[0.1] * 10)
    assert all(len(set(G.clusters_of(held[r * 5:(r + 1) * 5]).tolist())) == 1 for r in range(4))
    # without holding it, the slerp drifts z_0 (by up to sqrt(2) at mid-row)
    assert not np.allclose(free[:, 0].reshape(4, 5), np.repeat(free[::5, :1], 5, axis=1))
