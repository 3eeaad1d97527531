"""minigan.distributed in one process: ranks as threads (threadcomm.py), no MPI needed. The same
cases run over real MPI ranks in test_dist_mpi.py under mpiexec."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import minigan as mg
import minigan.functional as F
from minigan import nn
from minigan.autograd import Tensor, grad
from minigan.testing import gradcheck, gradgradcheck

import cases
from threadcomm import run_ranks

# float32 steps of the global batch and of its slices agree to rounding: ~1e-7 seen, 1e-5 allowed
TOL = 1e-5


@pytest.mark.parametrize("size", [2, 3])
def test_gradient_used_is_the_mean_over_ranks(size):
    k = 0.25
    for used in run_ranks(size, lambda comm: cases.averaged_gradient(comm, k)):
        np.testing.assert_array_equal(used, np.full(3, (size - 1) / 2 + k))


def test_parameters_bit_identical_after_steps():
    assert run_ranks(2, cases.train_identical) == [True, True]


def test_two_ranks_with_sync_bn_take_the_single_process_step():
    G1, D1, stats1 = cases.single_process_step()
    for G, D, stats in run_ranks(2, cases.distributed_step):
        assert cases.max_difference((G, D), (G1, D1)) < TOL
        for name in ("loss_d", "loss_g", "d_real", "d_fake"):
            assert stats[name] == pytest.approx(getattr(stats1, name), rel=1e-5)


def test_two_ranks_without_sync_bn_take_the_ghost_batch_norm_step():
    """The documented difference: plain batch norm on 2 ranks x 32 is one process's step with
    each half of the batch of 64 normalised on its own, which differs from the batch-of-64 step
    by far more than rounding."""
    G1, D1, _ = cases.single_process_step()
    G2, D2, _ = cases.single_process_step(ghost_chunks=2)
    results = run_ranks(2, lambda comm: cases.distributed_step(comm, sync_bn=False))
    for G, D, _ in results:
        assert cases.max_difference((G, D), (G2, D2)) < TOL
        assert cases.max_difference((G, D), (G1, D1)) > 100 * TOL


def _split(x, size, rank):
    n = x.shape[0] // size
    return x[rank * n:(rank + 1) * n]


@pytest.mark.parametrize("shape", [(12, 3), (6, 4, 3, 5)])
def test_sync_batch_norm_is_batch_norm_of_the_global_batch(shape):
    """float64: outputs, input and weight gradients, running statistics and the second-order
    gradient (create_graph: the differentiable backward with all_reduce_sum) of 3 ranks match
    batch norm of the concatenated batch, the reference that test_norm checks by finite
    differences."""
    rng = np.random.default_rng(3)
    x = rng.standard_normal(shape) * 2 + 1.5
    gy = rng.standard_normal(shape)
    size = 3

    def loss_and_grads(bn, xs, gys):
        xt = Tensor(xs, requires_grad=True)
        y = bn(xt)
        loss = (y * Tensor(gys)).sum()
        gx, = grad(loss, xt, create_graph=True)
        (gx * gx).sum().backward()       # second order: into x and bn.weight (not the bias)
        return y.data, gx.data, xt.grad.data, bn.weight.grad.data, bn.running_mean.data, \
            bn.running_var.data

    def make(cls, **kw):
        bn = cls(shape[1], **kw).double()
        bn.weight.data[...] = np.linspace(0.5, 1.5, shape[1])
        bn.bias.data[...] = np.linspace(-0.2, 0.3, shape[1])
        return bn

    ref = loss_and_grads(make(nn.BatchNorm1d if len(shape) == 2 else nn.BatchNorm2d), x, gy)

    def rank(comm):
        bn = make(nn.SyncBatchNorm, process_group=comm)
        return loss_and_grads(bn, _split(x, size, comm.rank), _split(gy, size, comm.rank)), \
            comm.allreduce(bn.weight.grad.data)

    for r, (out, gw_sum) in enumerate(run_ranks(size, rank)):
        for got, want in zip(out[:3], ref[:3]):
            np.testing.assert_allclose(got, _split(want, size, r), rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(gw_sum, ref[3], rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(out[4], ref[4], rtol=1e-10)
        np.testing.assert_allclose(out[5], ref[5], rtol=1e-10)


@pytest.mark.parametrize("size", [2, 4])
def test_sync_batch_norm_float32_forward_is_batch_norm_of_the_global_batch_bit_for_bit(size):
    """The ranks' statistics are added in float64 and rounded to float32 once, as batch_norm
    rounds its own: every output and running statistic is the same float32 number, so a ReLU
    network after it takes the same branch on every value (tests/distributed/cases.py's step)."""
    rng = np.random.default_rng(5)
    x = (rng.standard_normal((16, 6, 5, 5)) * 3 + rng.uniform(-4, 4, (1, 6, 1, 1))
         ).astype(np.float32)
    ref = nn.BatchNorm2d(6)
    y_ref = ref(Tensor(x)).data

    def rank(comm):
        bn = nn.SyncBatchNorm(6, process_group=comm)
        return bn(Tensor(_split(x, size, comm.rank))).data, bn.running_mean.data, \
            bn.running_var.data

    for r, (y, mean, var) in enumerate(run_ranks(size, rank)):
        np.testing.assert_array_equal(y, _split(y_ref, size, r))
        np.testing.assert_array_equal(mean, ref.running_mean.data)
        np.testing.assert_array_equal(var, ref.running_var.data)


def test_sync_batch_norm_first_order_backward_uses_the_kernel_path():
    """Without create_graph the backward is the raw-array one: it matches the reference too."""
    rng = np.random.default_rng(4)
    x, gy = rng.standard_normal((8, 3, 4, 4)), rng.standard_normal((8, 3, 4, 4))
    ref_bn = nn.BatchNorm2d(3).double()
    xt = Tensor(x, requires_grad=True)
    (ref_bn(xt) * Tensor(gy)).sum().backward()

    def rank(comm):
        bn = nn.SyncBatchNorm(3, process_group=comm).double()
        xr = Tensor(_split(x, 2, comm.rank), requires_grad=True)
        (bn(xr) * Tensor(_split(gy, 2, comm.rank))).sum().backward()
        calls = comm.calls
        return xr.grad.data, comm.allreduce(bn.weight.grad.data), \
            comm.allreduce(bn.bias.grad.data), calls

    for r, (gx, gw, gb, calls) in enumerate(run_ranks(2, rank)):
        np.testing.assert_allclose(gx, _split(xt.grad.data, 2, r), rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(gw, ref_bn.weight.grad.data, rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(gb, ref_bn.bias.grad.data, rtol=1e-10, atol=1e-12)
        assert calls == 2   # one message in the forward (sums), one in the backward


def test_sync_batch_norm_evaluation_and_no_group_do_not_communicate():
    x = mg.randn(6, 4, 3, 3)
    plain, synced = nn.BatchNorm2d(4), nn.SyncBatchNorm(4)     # no process group: one process
    np.testing.assert_array_equal(synced(x).data, plain(x).data)

    def rank(comm):
        bn = nn.SyncBatchNorm(4, process_group=comm).eval()
        bn(x)
        return comm.calls
    assert run_ranks(2, rank) == [0, 0]


def test_convert_sync_batchnorm_keeps_parameter_objects():
    G, D = cases.fresh_models()
    weights = [id(p) for p in G.parameters()]
    G = nn.SyncBatchNorm.convert_sync_batchnorm(G, None)
    assert [id(p) for p in G.parameters()] == weights
    assert sum(isinstance(m, nn.SyncBatchNorm) for m in G.modules()) == 2
    assert not any(type(m) is nn.BatchNorm2d for m in G.modules())
    with pytest.raises(ValueError, match="2-D or 4-D"):
        nn.SyncBatchNorm(3)(mg.randn(2, 3, 4))


def test_allreduce_grad_refuses_gradients_on_some_ranks_only():
    def rank(comm):
        p = nn.Parameter(np.zeros(2, np.float32))
        p.grad = mg.Tensor(np.ones(2, np.float32)) if comm.rank == 0 else None
        try:
            comm.allreduce_grad([p])
        except RuntimeError as e:
            return str(e)
    for message in run_ranks(2, rank):
        assert "has a gradient on 1 of 2 ranks" in message


def test_bcast_data_optimizer_state_and_objects():
    from minigan import optim
    from minigan.distributed import DistributedOptimizer

    def rank(comm):
        G, _ = cases.fresh_models(seed=comm.rank)
        opt = DistributedOptimizer(optim.Adam(G.parameters(), lr=1e-3), comm)
        if comm.rank == 0:   # only rank 0 has stepped (as after loading a checkpoint)
            for p in G.parameters():
                p.grad = mg.Tensor(np.ones_like(p.data))
            opt.actual_optimizer.step()
        comm.bcast_data(G)
        comm.bcast_optimizer_state(opt)
        flat = np.concatenate([p.data.reshape(-1) for p in G.parameters()])
        moments = np.concatenate([v["exp_avg"].reshape(-1)
                                  for v in opt.state_dict()["state"].values()])
        return flat, moments, comm.allreduce_obj({"a": comm.rank, "b": 2.0}), \
            comm.gather_obj(comm.rank), comm.allreduce_obj(float(comm.rank), "max")

    (f0, m0, o0, g0, x0), (f1, m1, o1, g1, x1) = run_ranks(2, rank)
    np.testing.assert_array_equal(f0, f1)
    np.testing.assert_array_equal(m0, m1)
    assert o0 == o1 == {"a": 0.5, "b": 2.0}
    assert g0 == [0, 1] and g1 is None
    assert x0 == x1 == 1.0


def test_abort_on_error_turns_an_exception_into_an_abort(capsys):
    def rank(comm):
        with comm.abort_on_error():
            if comm.rank == 1:
                raise ValueError("rank one fails")
        return "fine"
    with pytest.raises(RuntimeError, match="rank 1 aborted"):
        run_ranks(2, rank)


class Mirror:
    """Two ranks holding the same data, in one process: allreduce-sum doubles. A loss on one
    rank then depends on x through both copies, and sync_batch_norm's gradients (first and
    second order, through all_reduce_sum) are exactly those finite differences see."""
    size = 2

    def allreduce(self, array, op="sum"):
        return array + array


mirrored_shapes = st.one_of(
    st.tuples(st.integers(1, 4), st.integers(1, 3)),
    st.tuples(st.integers(1, 3), st.integers(1, 3), st.integers(1, 3), st.integers(1, 2)))


@settings(max_examples=10)
@given(shape=mirrored_shapes, seed=st.integers(0, 2 ** 16))
def test_sync_batch_norm_gradcheck_over_mirrored_ranks(shape, seed):
    rng = np.random.default_rng(seed)
    C = shape[1]
    x, w, b = (Tensor(a, requires_grad=True) for a in (rng.standard_normal(shape) * 2,
                                                       rng.standard_normal(C),
                                                       rng.standard_normal(C)))
    fn = lambda x, w, b: F.sync_batch_norm(x, None, None, w, b, True, comm=Mirror())  # noqa: E731
    assert gradcheck(fn, [x, w, b])


@settings(max_examples=5)
@given(shape=st.sampled_from([(2, 2), (3, 1), (1, 2, 2, 1)]), seed=st.integers(0, 2 ** 16))
def test_sync_batch_norm_gradgradcheck_over_mirrored_ranks(shape, seed):
    rng = np.random.default_rng(seed)
    C = shape[1]
    x, w, b = (Tensor(a, requires_grad=True) for a in (rng.standard_normal(shape) * 2,
                                                       rng.standard_normal(C),
                                                       rng.standard_normal(C)))
    fn = lambda x, w, b: F.sync_batch_norm(x, None, None, w, b, True, comm=Mirror())  # noqa: E731
    assert gradgradcheck(fn, [x, w, b])


@settings(max_examples=10)
@given(shape=st.tuples(st.integers(1, 3), st.integers(1, 3)), seed=st.integers(0, 2 ** 16))
def test_all_reduce_sum_gradgradcheck_over_mirrored_ranks(shape, seed):
    x = Tensor(np.random.default_rng(seed).standard_normal(shape), requires_grad=True)
    assert gradcheck(lambda x: F.all_reduce_sum(x * x, Mirror()), [x])
    assert gradgradcheck(lambda x: F.all_reduce_sum(x * x, Mirror()), [x])
