"""One GAN training iteration, written to be read beside Algorithm 1 of Goodfellow et al. (2014),
and the state a run needs to stop and resume exactly.

Algorithm 1, for each training iteration (k = 1 discriminator step, as DCGAN does):

    1. sample m noise vectors z ~ p(z) and m examples x from the data
    2. update D by ascending  (1/m) sum [log D(x) + log(1 - D(G(z)))]
    3. update G by descending (1/m) sum log(1 - D(G(z)))
       -- in practice, ascending log D(G(z)) instead: the "non-saturating" loss, whose gradient
          does not vanish while D still rejects every sample (section 3 of the paper)

:func:`train_step` is those three lines; the losses are in :mod:`minigan.gan.losses`, written on
the discriminator's logits. As in PyTorch's DCGAN example the same z serves both updates, so G
runs forward once per iteration.
"""
import math
from typing import NamedTuple

from .. import backend
from ..autograd import Tensor, no_grad
from . import losses


class NonFiniteLossError(FloatingPointError):
    """A loss came out NaN or infinite: training has diverged. Raised before any parameter is
    updated with it, so the models and optimizers still hold the last good step."""


class StepStats(NamedTuple):
    """What one iteration reports: the two losses, and the mean probability D gives to the real
    batch, D(x), and to the generated batch, D(G(z)), both before D's update."""
    loss_d: float
    loss_g: float
    d_real: float
    d_fake: float


def sample_noise(n, nz, device="cpu", dtype=None):
    """z ~ N(0, I), shape (n, nz), drawn from minigan's seeded CPU generator and then moved to
    ``device``: the same seed gives the same noise on every device, and the CPU generator's state
    (which checkpoints store) is all a resumed run needs to draw the same noise again."""
    z = backend.rng("cpu").standard_normal((n, nz), dtype=dtype or backend.get_default_dtype())
    return Tensor(backend.to_device(z, device))


def _mean_probability(logits):
    """mean(sigmoid(logits)) as a Python float, outside the graph."""
    xp = backend.array_module(logits.data)
    return float(xp.mean(1.0 / (1.0 + xp.exp(-logits.data.astype("float64")))))


def _non_finite(t):
    """How many NaN or infinite values tensor (or array) ``t`` holds."""
    data = t.data if isinstance(t, Tensor) else t
    if data is None or data.dtype.kind != "f":
        return 0
    return int((~backend.array_module(data).isfinite(data)).sum())


def _cause(inputs, models):
    """Why a loss came out non-finite: the data, the noise, or the models' weights, checked in
    that order (only once the loss is bad, so a healthy step pays nothing)."""
    for what, t in inputs.items():
        bad = _non_finite(t)
        if bad:
            size = (t.data if isinstance(t, Tensor) else t).size
            return f"the {what} holds {bad} NaN or infinite value(s) out of {size}"
    for model_name, model in models.items():
        for name, p in model.named_parameters():
            bad = _non_finite(p)
            if bad:
                return (f"{model_name}'s parameter {name} holds {bad} NaN or infinite value(s): "
                        "training diverged (try a lower learning rate)")
    return "training diverged (try a lower learning rate)"


def _check_batches(inputs, name, step=None):
    """NonFiniteLossError, worded as :func:`_check_finite`'s for the loss ``name``, when one of
    ``inputs`` (name -> batch) holds NaN or infinite values. Called before any forward: a batch
    norm records its batch's statistics in the forward, so a check of the loss alone would come
    after the models had changed."""
    for what, t in inputs.items():
        bad = _non_finite(t)
        if bad:
            data = t.data if isinstance(t, Tensor) else t
            value = "nan" if bool(backend.array_module(data).isnan(data).any()) else "not finite"
            at = "" if step is None else f" at step {step}"
            raise NonFiniteLossError(f"{name} is {value}{at}: the {what} holds {bad} NaN or "
                                     f"infinite value(s) out of {data.size} (check the data and "
                                     "its preprocessing); no update was made with it")


def _check_finite(loss, name, step=None, inputs=None, models=None):
    """The loss as a float, or NonFiniteLossError saying what made it NaN or infinite:
    ``inputs`` (name -> batch, e.g. {"real batch": real}) and ``models`` (name -> Module) are
    examined so that bad data is not blamed on the learning rate."""
    value = loss.item()
    if not math.isfinite(value):
        at = "" if step is None else f" at step {step}"
        cause = _cause(inputs or {}, models or {})
        if cause.startswith("the "):
            cause += " (check the data and its preprocessing)"
        raise NonFiniteLossError(f"{name} is {value}{at}: {cause}; no update was made with it")
    return value


# loss name -> the names of its D and G functions in losses (looked up at each step)
LOSSES = {"gan": ("d_loss_minimax", "g_loss_nonsaturating"),
          "hinge": ("d_loss_hinge", "g_loss_hinge")}


def train_step(G, D, opt_g, opt_d, real, z, step=None, loss="gan", augment=None):
    """One iteration of Algorithm 1 on a real batch (N, C, H, W) and noise z (N, nz).

    D step: minimise  L_D = -mean log D(x) - mean log(1 - D(G(z)))   (G(z) detached: only D learns)
    G step: minimise  L_G = -mean log D(G(z))                         (D frozen: only G learns)

    ``loss="hinge"`` trains with the hinge losses instead (SN-GAN): L_D = mean max(0, 1 - D(x))
    + mean max(0, 1 + D(G(z))), L_G = -mean D(G(z)); d_real / d_fake are then sigmoid(D) of
    raw scores.

    ``augment``, when given, is a differentiable T applied to every batch D sees, real and fake,
    in both steps (D(T(x)), D(T(G(z))): :class:`minigan.gan.augment.DiffAugment`).

    Returns :class:`StepStats`. Raises :class:`NonFiniteLossError` (naming ``step`` when given)
    before an update would use a NaN or infinite loss.
    """
    _check_batches({"real batch": real, "noise z": z}, "discriminator loss", step)
    # 1. a batch of samples from the generator (the real batch was drawn by the caller)
    fake = G(z)

    # 2. discriminator step: real batch labelled 1, fake batch labelled 0. detach() cuts the graph
    #    at the samples, so this backward reaches D's parameters only.
    T = augment if augment is not None else (lambda x: x)
    real_logits = D(T(real))
    fake_logits = D(T(fake.detach()))
    if loss not in LOSSES:
        raise ValueError(f"train_step: loss must be one of {sorted(LOSSES)}, got {loss!r}")
    d_loss_fn, g_loss_fn = (getattr(losses, name) for name in LOSSES[loss])
    loss_d = d_loss_fn(real_logits, fake_logits)
    loss_d_value = _check_finite(loss_d, "discriminator loss", step,
                                 {"real batch": real, "noise z": z}, {"G": G, "D": D})
    opt_d.zero_grad()
    loss_d.backward()
    opt_d.step()

    # 3. generator step through the updated D. D's parameters are frozen for this backward: the
    #    step does not train D, so computing its weight gradients would be wasted work.
    D.requires_grad_(False)
    try:
        loss_g = g_loss_fn(D(T(fake)))
        loss_g_value = _check_finite(loss_g, "generator loss", step, {"noise z": z},
                                     {"G": G, "D": D})
        opt_g.zero_grad()
        loss_g.backward()
        opt_g.step()
    finally:
        D.requires_grad_(True)

    return StepStats(loss_d_value, loss_g_value,
                     _mean_probability(real_logits), _mean_probability(fake_logits))


def generate(G, z, batch_size=256):
    """G(z) in evaluation mode (batch norm uses its running statistics) without a graph, as an
    array; G's training mode is restored afterwards."""
    was_training = G.training
    G.eval()
    try:
        with no_grad():
            xp = backend.array_module(z.data)
            parts = [G(Tensor._wrap(z.data[i:i + batch_size])).data
                     for i in range(0, z.shape[0], batch_size)]
            return xp.concatenate(parts)
    finally:
        G.train(was_training)


# --- the state of a run -------------------------------------------------------------------------

def run_state(models, optimizers, step, loader=None, extra=None):
    """Everything needed to continue a run exactly, as a tree of NumPy arrays and plain values
    that :func:`minigan.io.save_checkpoint` stores without pickle:

    models / optimizers: dicts name -> Module / Optimizer (their state_dicts), step: iterations
    done, loader: a :class:`minigan.data.Batches` (its shuffle state and position), the state of
    minigan's CPU generator (which draws the noise), and ``extra`` (any JSON-able tree or arrays:
    loss history, settings)."""
    return {
        "models": {name: dict(m.state_dict()) for name, m in models.items()},
        "optimizers": {name: o.state_dict() for name, o in optimizers.items()},
        "step": int(step),
        "rng": backend.get_rng_state(),
        "loader": None if loader is None else loader.get_state(),
        "extra": extra,
    }


def restore_run_state(state, models, optimizers, loader=None):
    """Load a :func:`run_state` tree into existing models, optimizers and loader, and minigan's
    CPU generator. Returns (step, extra). Raises KeyError naming a model or optimizer that the
    checkpoint lacks."""
    for kind, objects in (("models", models), ("optimizers", optimizers)):
        saved = state[kind]
        missing = [name for name in objects if name not in saved]
        if missing:
            raise KeyError(f"the checkpoint has no {kind} named {missing} "
                           f"(it holds {sorted(saved)})")
        for name, obj in objects.items():
            obj.load_state_dict(saved[name])
    backend.set_rng_state(state["rng"])
    if loader is not None:
        if state["loader"] is None:
            raise KeyError("the checkpoint holds no data loader state")
        loader.set_state(state["loader"])
    return int(state["step"]), state["extra"]
