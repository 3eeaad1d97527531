"""nn: Module registration and traversal, state_dict round trips and their errors, default
initialisation bounds (checked statistically), init helpers, and the small layers
(Dropout, Embedding, Flatten/Unflatten, Sequential). Ends with an MLP learning XOR.
"""
import math

import numpy as np
import pytest

import minigan
import minigan.functional as F
from minigan import nn, optim
from minigan.autograd import Tensor
from minigan.nn import init


class Block(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(3, 4)
        self.scale = nn.Parameter(np.ones(4, dtype=np.float32))
        self.register_buffer("count", np.zeros((), dtype=np.int64))
        self.note = "not registered"

    def forward(self, x):
        return self.fc(x) * self.scale


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.first = Block()
        self.act = nn.LeakyReLU(0.2)
        self.body = nn.Sequential(nn.Linear(4, 5), nn.BatchNorm1d(5), nn.Dropout(0.5))
        self.head = nn.Linear(5, 1, bias=False)

    def forward(self, x):
        return self.head(self.body(self.act(self.first(x))))


NET_PARAMETERS = ["first.scale", "first.fc.weight", "first.fc.bias", "body.0.weight",
                  "body.0.bias", "body.1.weight", "body.1.bias", "head.weight"]
NET_BUFFERS = ["first.count", "body.1.running_mean", "body.1.running_var",
               "body.1.num_batches_tracked"]


# ------------------------------------------------------------------------------------------------
# Registration and traversal
# ------------------------------------------------------------------------------------------------
def test_named_parameters_dotted_and_in_order():
    net = Net()
    names = [name for name, _ in net.named_parameters()]
    # a module's own parameters first, then its children's in the order they were assigned
    assert names == NET_PARAMETERS
    assert [p.shape for p in net.parameters()] == [(4,), (4, 3), (4,), (5, 4), (5,), (5,), (5,),
                                                   (1, 5)]
    assert all(isinstance(p, nn.Parameter) and p.requires_grad for p in net.parameters())
    assert [name for name, _ in net.named_buffers()] == NET_BUFFERS
    assert [n for n, _ in net.named_parameters(recurse=False)] == []
    assert [n for n, _ in net.first.named_parameters(recurse=False)] == ["scale"]


def test_children_and_modules():
    net = Net()
    assert [type(m).__name__ for m in net.children()] == ["Block", "LeakyReLU", "Sequential",
                                                          "Linear"]
    assert [name for name, _ in net.named_modules()] == [
        "", "first", "first.fc", "act", "body", "body.0", "body.1", "body.2", "head"]
    assert net.first.note == "not registered"
    assert "note" not in dict(net.first.named_parameters())


def test_shared_parameter_is_listed_once():
    net = nn.Module()
    net.a = nn.Linear(2, 2)
    net.b = nn.Linear(2, 2)
    net.b.weight = net.a.weight
    assert [n for n, _ in net.named_parameters()] == ["a.weight", "a.bias", "b.bias"]


def test_reassigning_an_attribute_replaces_the_registration():
    block = Block()
    block.scale = "now a plain value"
    assert "scale" not in dict(block.named_parameters())
    assert block.scale == "now a plain value"
    del block.fc
    assert list(block.children()) == []


def test_setattr_before_super_init_is_a_clear_error():
    class Broken(nn.Module):
        def __init__(self):
            self.fc = nn.Linear(1, 1)

    with pytest.raises(AttributeError, match=r"super\(\).__init__\(\)"):
        Broken()


def test_missing_attribute_error_names_it():
    with pytest.raises(AttributeError, match="'Block' object has no attribute 'nope'"):
        Block().nope  # noqa: B018


def test_train_eval_recursive():
    net = Net()
    assert all(m.training for m in net.modules())
    assert net.eval() is net
    assert not any(m.training for m in net.modules())
    net.train()
    assert all(m.training for m in net.modules())
    net.train(False)
    assert not net.body[2].training


def test_zero_grad_and_requires_grad():
    net = Net()
    x = minigan.randn(6, 3)
    net(x).sum().backward()
    assert all(p.grad is not None for p in net.parameters())
    net.zero_grad()
    assert all(p.grad is None for p in net.parameters())
    net.requires_grad_(False)
    assert not any(p.requires_grad for p in net.parameters())


def test_apply_visits_children_before_parent():
    seen = []
    Net().apply(lambda m: seen.append(type(m).__name__))
    assert seen[-1] == "Net"
    assert seen.index("Linear") < seen.index("Block")


# ------------------------------------------------------------------------------------------------
# state_dict / load_state_dict
# ------------------------------------------------------------------------------------------------
def test_state_dict_round_trip():
    net = Net()
    net(minigan.randn(6, 3))                        # moves the batch-norm buffers
    state = net.state_dict()
    assert list(state) == NET_PARAMETERS + NET_BUFFERS
    assert all(isinstance(v, np.ndarray) for v in state.values())

    other = Net()
    assert not np.array_equal(other.first.fc.weight.numpy(), state["first.fc.weight"])
    params_before = list(other.parameters())
    arrays_before = [p.data for p in params_before]
    assert other.load_state_dict(state) == ([], [])
    for name, value in other.state_dict().items():
        np.testing.assert_array_equal(value, state[name], err_msg=name)
    # in place: the same Parameter objects and arrays, so an optimizer keeps working
    assert all(a is b for a, b in zip(other.parameters(), params_before))
    assert all(p.data is a for p, a in zip(other.parameters(), arrays_before))

    x = minigan.randn(4, 3)
    net.eval(), other.eval()
    np.testing.assert_array_equal(net(x).numpy(), other(x).numpy())


def test_state_dict_is_a_copy():
    net = nn.Linear(2, 2)
    state = net.state_dict()
    state["weight"][...] = 7.0
    assert not np.any(net.weight.numpy() == 7.0)
    net.weight.data[...] = 3.0
    assert not np.any(state["weight"] == 3.0)


def test_load_accepts_tensors_and_casts_dtype():
    net = nn.Linear(2, 3)
    w = np.arange(6, dtype=np.float64).reshape(3, 2)
    net.load_state_dict({"weight": Tensor(w), "bias": np.zeros(3)})
    assert net.weight.dtype == np.float32
    np.testing.assert_array_equal(net.weight.numpy(), w)


def test_missing_and_unexpected_keys():
    net = nn.Linear(2, 3)
    state = net.state_dict()
    del state["bias"]
    state["extra"] = np.zeros(1)
    with pytest.raises(KeyError, match=r"missing keys \['bias'\], unexpected keys \['extra'\]"):
        net.load_state_dict(state)
    before = net.bias.numpy().copy()
    missing, unexpected = net.load_state_dict(state, strict=False)
    assert (missing, unexpected) == (["bias"], ["extra"])
    np.testing.assert_array_equal(net.bias.numpy(), before)


def test_shape_mismatch_names_key_and_both_shapes():
    net = Net()
    state = net.state_dict()
    state["body.0.weight"] = np.zeros((4, 5), np.float32)
    with pytest.raises(ValueError, match=r"'body.0.weight' has shape \(4, 5\) in the checkpoint "
                                         r"but \(5, 4\) in the model"):
        net.load_state_dict(state)


# ------------------------------------------------------------------------------------------------
# Default initialisation: U(-1/sqrt(fan_in), 1/sqrt(fan_in)), PyTorch's rule
# ------------------------------------------------------------------------------------------------
def _check_uniform(values, bound):
    """values look like U(-bound, bound): inside it, reaching near both ends, variance bound^2/3."""
    values = np.asarray(values, dtype=np.float64).ravel()
    n = values.size
    assert np.all(np.abs(values) <= bound * (1 + 1e-6))
    # with n samples the gap to each end is about bound * 2/n; 30/n leaves a wide margin
    assert values.max() > bound * (1 - 30 / n)
    assert values.min() < -bound * (1 - 30 / n)
    assert abs(values.mean()) < 5 * bound / math.sqrt(3 * n)
    # var of U(-b, b) is b^2/3; its sample estimate has relative std sqrt(0.8 / n)
    assert values.var() == pytest.approx(bound ** 2 / 3, rel=5 * math.sqrt(0.8 / n))


def test_linear_default_init():
    layer = nn.Linear(50, 400)
    assert layer.weight.shape == (400, 50) and layer.bias.shape == (400,)
    _check_uniform(layer.weight.numpy(), 1 / math.sqrt(50))
    _check_uniform(layer.bias.numpy(), 1 / math.sqrt(50))


def test_conv2d_default_init():
    layer = nn.Conv2d(6, 60, kernel_size=(3, 2))
    assert layer.weight.shape == (60, 6, 3, 2)
    fan_in = 6 * 3 * 2
    _check_uniform(layer.weight.numpy(), 1 / math.sqrt(fan_in))
    biases = np.concatenate([nn.Conv2d(6, 60, (3, 2)).bias.numpy() for _ in range(20)])
    _check_uniform(biases, 1 / math.sqrt(fan_in))


def test_conv_transpose2d_default_init_uses_weight_axis_1():
    """Weight (in, out, k, k): PyTorch's fan_in is weight.shape[1] * k * k = out * k * k."""
    layer = nn.ConvTranspose2d(40, 5, kernel_size=3)
    assert layer.weight.shape == (40, 5, 3, 3)
    fan_in = 5 * 3 * 3
    _check_uniform(layer.weight.numpy(), 1 / math.sqrt(fan_in))
    biases = np.concatenate([nn.ConvTranspose2d(40, 5, 3).bias.numpy() for _ in range(300)])
    _check_uniform(biases, 1 / math.sqrt(fan_in))


def test_layers_have_pytorch_shapes_and_forward():
    conv = nn.Conv2d(3, 4, 3, stride=2, padding=1)
    assert conv(minigan.randn(2, 3, 8, 8)).shape == (2, 4, 4, 4)
    up = nn.ConvTranspose2d(4, 3, 4, stride=2, padding=1)
    assert up(minigan.randn(2, 4, 4, 4)).shape == (2, 3, 8, 8)
    up_op = nn.ConvTranspose2d(4, 3, 3, stride=2, padding=1, output_padding=1)
    assert up_op(minigan.randn(1, 4, 4, 4)).shape == (1, 3, 8, 8)
    assert nn.Linear(3, 2, bias=False).bias is None
    assert [n for n, _ in nn.Conv2d(1, 1, 1, bias=False).named_parameters()] == ["weight"]


def test_init_draws_follow_the_seed():
    minigan.manual_seed(5)
    a = nn.Linear(4, 4).weight.numpy()
    minigan.manual_seed(5)
    b = nn.Linear(4, 4).weight.numpy()
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, nn.Linear(4, 4).weight.numpy())


# ------------------------------------------------------------------------------------------------
# init helpers
# ------------------------------------------------------------------------------------------------
def _big(*shape, dtype=np.float64):
    return nn.Parameter(np.zeros(shape, dtype=dtype))


def _check_normal(values, mean, std):
    values = np.asarray(values, dtype=np.float64).ravel()
    n = values.size
    assert abs(values.mean() - mean) < 5 * std / math.sqrt(n)
    # the sample std of a normal has relative std 1/sqrt(2n)
    assert values.std() == pytest.approx(std, rel=5 / math.sqrt(2 * n))
    # and it is a normal, not a uniform of the same variance: about 31.7% beyond one std
    beyond = np.mean(np.abs(values - mean) > std)
    assert beyond == pytest.approx(0.3173, abs=0.02)


def test_normal_and_uniform():
    t = init.normal_(_big(200, 100), mean=2.0, std=3.0)
    _check_normal(t.numpy(), 2.0, 3.0)
    u = init.uniform_(_big(200, 100), a=-1.0, b=3.0)
    values = u.numpy()
    assert values.min() >= -1.0 and values.max() < 3.0
    _check_uniform(values - 1.0, 2.0)


def test_zeros_ones_constant_keep_dtype_and_identity():
    p = _big(3, 4, dtype=np.float32)
    init.normal_(p)
    array = p.data
    assert init.zeros_(p) is p and p.data is array
    assert np.all(p.numpy() == 0) and p.dtype == np.float32
    init.ones_(p)
    assert np.all(p.numpy() == 1)
    init.constant_(p, 0.25)
    assert np.all(p.numpy() == 0.25)


def test_fan_in_and_fan_out():
    assert init.fan_in_and_fan_out(_big(7, 3)) == (3, 7)
    assert init.fan_in_and_fan_out(_big(8, 2, 3, 5)) == (2 * 15, 8 * 15)
    with pytest.raises(ValueError, match=r"2 or more dimensions, got shape \(4,\)"):
        init.fan_in_and_fan_out(_big(4))


def test_xavier():
    w = _big(300, 20, 2, 2)                       # fan_in 80, fan_out 1200
    init.xavier_uniform_(w, gain=2.0)
    _check_uniform(w.numpy(), 2.0 * math.sqrt(6.0 / (80 + 1200)))
    init.xavier_normal_(w)
    _check_normal(w.numpy(), 0.0, math.sqrt(2.0 / (80 + 1200)))


def test_kaiming():
    w = _big(500, 60)                             # fan_in 60, fan_out 500
    init.kaiming_normal_(w, nonlinearity="relu")
    _check_normal(w.numpy(), 0.0, math.sqrt(2.0) / math.sqrt(60))
    init.kaiming_normal_(w, a=0.2, mode="fan_out")
    _check_normal(w.numpy(), 0.0, math.sqrt(2.0 / (1 + 0.04)) / math.sqrt(500))
    init.kaiming_uniform_(w, nonlinearity="relu")
    _check_uniform(w.numpy(), math.sqrt(2.0) * math.sqrt(3.0 / 60))
    init.kaiming_uniform_(w, a=math.sqrt(5))      # PyTorch's Linear default: 1/sqrt(fan_in)
    _check_uniform(w.numpy(), 1 / math.sqrt(60))


def test_calculate_gain():
    assert init.calculate_gain("linear") == 1.0
    assert init.calculate_gain("tanh") == pytest.approx(5 / 3)
    assert init.calculate_gain("relu") == pytest.approx(math.sqrt(2))
    assert init.calculate_gain("leaky_relu", 0.2) == pytest.approx(math.sqrt(2 / 1.04))
    with pytest.raises(ValueError, match="unknown nonlinearity 'swish'"):
        init.calculate_gain("swish")


# ------------------------------------------------------------------------------------------------
# Small layers
# ------------------------------------------------------------------------------------------------
def test_dropout_train_and_eval():
    drop = nn.Dropout(0.3)
    x = Tensor(np.ones((200, 100)), requires_grad=True)
    y = drop(x)
    values = y.numpy()
    kept = values != 0
    assert kept.mean() == pytest.approx(0.7, abs=0.02)
    np.testing.assert_allclose(values[kept], 1 / 0.7)       # inverted dropout
    y.sum().backward()
    np.testing.assert_array_equal(x.grad.numpy(), values)   # the same mask scales the gradient

    drop.eval()
    z = drop(Tensor(np.arange(6.0)))
    np.testing.assert_array_equal(z.numpy(), np.arange(6.0))
    assert nn.Dropout(1.0)(Tensor(np.ones(5))).numpy().tolist() == [0.0] * 5
    with pytest.raises(ValueError, match=r"dropout probability must be in \[0, 1\], got 1.5"):
        nn.Dropout(1.5)


def test_dropout_masks_differ_between_calls_but_follow_the_seed():
    drop = nn.Dropout(0.5)
    x = Tensor(np.ones(64))
    minigan.manual_seed(1)
    a, b = drop(x).numpy(), drop(x).numpy()
    minigan.manual_seed(1)
    np.testing.assert_array_equal(drop(x).numpy(), a)
    assert not np.array_equal(a, b)


def test_embedding_lookup_and_gradient_accumulation():
    emb = nn.Embedding(5, 3).double()
    idx = np.array([[1, 3], [1, 1]])
    y = emb(idx)
    assert y.shape == (2, 2, 3)
    np.testing.assert_array_equal(y.numpy()[1, 0], emb.weight.numpy()[1])
    upstream = np.random.default_rng(0).standard_normal((2, 2, 3))
    y.backward(Tensor(upstream))
    g = emb.weight.grad.numpy()
    np.testing.assert_allclose(g[1], upstream[0, 0] + upstream[1, 0] + upstream[1, 1])
    np.testing.assert_allclose(g[3], upstream[0, 1])
    np.testing.assert_array_equal(g[[0, 2, 4]], 0.0)
    # a Tensor of indices works the same
    np.testing.assert_array_equal(emb(Tensor(np.array([4]))).numpy(), emb.weight.numpy()[[4]])


def test_embedding_default_init_is_standard_normal():
    _check_normal(nn.Embedding(1000, 20).weight.numpy(), 0.0, 1.0)


def test_embedding_errors():
    emb = nn.Embedding(4, 2)
    with pytest.raises(IndexError, match=r"out of range \[0, 4\)"):
        emb(np.array([0, 4]))
    with pytest.raises(IndexError, match="out of range"):
        emb(np.array([-1]))
    with pytest.raises(TypeError, match="integer indices, got dtype float64"):
        emb(np.array([1.0]))


def test_flatten_and_unflatten():
    x = Tensor(np.arange(2 * 3 * 4 * 5, dtype=np.float64).reshape(2, 3, 4, 5), requires_grad=True)
    flat = nn.Flatten()(x)
    assert flat.shape == (2, 60)
    np.testing.assert_array_equal(flat.numpy(), x.numpy().reshape(2, 60))
    assert nn.Flatten(0, 1)(x).shape == (6, 4, 5)
    assert nn.Flatten(1, 2)(x).shape == (2, 12, 5)
    back = nn.Unflatten(1, (3, 4, 5))(flat)
    assert back.shape == (2, 3, 4, 5)
    np.testing.assert_array_equal(back.numpy(), x.numpy())
    assert nn.Unflatten(-1, (2, 2))(Tensor(np.zeros((3, 4)))).shape == (3, 2, 2)
    g = np.random.default_rng(0).standard_normal((2, 3, 4, 5))
    back.backward(Tensor(g))
    np.testing.assert_array_equal(x.grad.numpy(), g)


def test_sequential_indexing_iteration_and_append():
    a, b, c = nn.Linear(2, 3), nn.Tanh(), nn.Linear(3, 1)
    seq = nn.Sequential(a, b, c)
    assert len(seq) == 3
    assert seq[0] is a and seq[1] is b and seq[-1] is c
    assert list(seq) == [a, b, c]
    tail = seq[1:]
    assert isinstance(tail, nn.Sequential) and len(tail) == 2 and tail[0] is b
    x = minigan.randn(4, 2)
    np.testing.assert_allclose(seq(x).numpy(), c(b(a(x))).numpy())
    seq.append(nn.Sigmoid())
    assert len(seq) == 4 and [n for n, _ in seq.named_modules()][-1] == "3"
    with pytest.raises(IndexError):
        seq[4]  # noqa: B018


def test_module_list():
    layers = nn.ModuleList([nn.Linear(2, 2) for _ in range(3)])
    assert len(layers) == 3
    assert len(list(layers.parameters())) == 6
    assert [n for n, _ in layers.named_parameters()][:2] == ["0.weight", "0.bias"]
    layers.append(nn.ReLU())
    assert isinstance(layers[-1], nn.ReLU)


def test_module_to_dtype_keeps_parameter_objects():
    net = Net()
    params = list(net.parameters())
    net.double()
    assert all(a is b for a, b in zip(net.parameters(), params))
    assert all(p.dtype == np.float64 for p in net.parameters())
    assert net.body[1].num_batches_tracked.dtype == np.int64    # integers stay integers


def test_repr_lists_children():
    text = repr(Net())
    assert "(body): Sequential(" in text
    assert "(0): Linear(in_features=4, out_features=5, bias=True)" in text


# ------------------------------------------------------------------------------------------------
# Learning
# ------------------------------------------------------------------------------------------------
def test_mlp_learns_xor_with_adam():
    minigan.manual_seed(0)
    model = nn.Sequential(nn.Linear(2, 8), nn.Tanh(), nn.Linear(8, 1))
    opt = optim.Adam(model.parameters(), lr=0.05)
    x = Tensor(np.array([[0, 0], [0, 1], [1, 0], [1, 1]], dtype=np.float32))
    t = Tensor(np.array([[0], [1], [1], [0]], dtype=np.float32))
    first = None
    for _ in range(300):
        opt.zero_grad()
        loss = F.binary_cross_entropy_with_logits(model(x), t)
        loss.backward()
        opt.step()
        first = loss.item() if first is None else first
    assert first > 0.5                           # it started near chance (log 2)
    assert loss.item() < 0.05
    predictions = (model(x).numpy() > 0).astype(np.float32)
    np.testing.assert_array_equal(predictions, t.numpy())
