"""An exponential moving average of the generator's weights, with batch-norm statistics that match.

G's weights wander around a good point from step to step (the two players never settle); their
average over the last few hundred steps draws cleaner images than any one step (Yazici et al.
2019, "The unusual effectiveness of averaging in GAN training"):

    theta_ema <- beta * theta_ema + (1 - beta) * theta          after every generator step

A generator with batch norm needs one more thing: its running means and variances were
collected by the *trained* G, and do not match the averaged weights' activations. Used as they
are they spoil the average (what a plain EMA of a DCGAN shows). :func:`recompute_batchnorm`
runs the averaged G on noise in training mode and sets every batch-norm layer's statistics to
the plain average over those batches (PyTorch's ``momentum=None``).
"""
import numpy as np

from .. import backend, nn
from ..autograd import Tensor, no_grad


class EMA:
    """An averaged copy of ``model``: ``ema.update(model)`` after each of its optimizer steps;
    ``ema.model`` is the average (not trained, no gradients). ``beta``: the weight of the old
    average (0.999: a horizon of about 1,000 steps). The first steps average with a smaller beta,
    min(beta, (1 + t) / (10 + t)) after t updates, so the copy forgets the random initialisation
    quickly (after 2,000 updates that is 0.9955: a horizon of about 220 steps). ``updates`` is
    that t: a resumed run sets it to the step it resumes at (the averaged
    weights themselves are saved as one of the run's models)."""

    def __init__(self, model, average, beta=0.999):
        if not 0 <= beta < 1:
            raise ValueError(f"EMA: beta must be in [0, 1), got {beta}")
        if type(average) is not type(model):
            raise TypeError(f"EMA: the average must be a {type(model).__name__}, got "
                            f"{type(average).__name__}")
        average.load_state_dict(model.state_dict())
        average.requires_grad_(False)
        self.model, self.beta, self.updates = average, beta, 0

    def update(self, model):
        beta = min(self.beta, (1 + self.updates) / (10 + self.updates))
        with no_grad():
            for avg, p in zip(self.model.parameters(), model.parameters()):
                avg.data *= beta
                avg.data += (1 - beta) * p.data
        self.updates += 1



def recompute_batchnorm(model, inputs):
    """Set the running statistics of every batch-norm layer of ``model`` to the average batch
    statistics of ``model(x)`` over the batches x in ``inputs`` (arrays or Tensors), computed in
    training mode without a graph. Returns ``model`` (its mode restored)."""
    layers = [m for m in model.modules()
              if isinstance(m, nn.BatchNorm1d | nn.BatchNorm2d) and m.track_running_stats]
    if not layers:
        return model
    for m in layers:   # start afresh: the result depends on the weights and inputs only
        m.num_batches_tracked.data[...] = 0
    momenta = [m.momentum for m in layers]
    was_training = model.training
    model.train()
    try:
        with no_grad():
            for k, x in enumerate(inputs):
                for m in layers:   # momentum 1 / (k + 1): the running value is the plain mean
                    m.momentum = 1.0 / (k + 1)
                model(x if isinstance(x, Tensor) else Tensor(x))
    finally:
        for m, momentum in zip(layers, momenta):
            m.momentum = momentum
        model.train(was_training)
    return model


def noise_batches(nz, seed, batches=1, batch_size=256, device="cpu", dtype=np.float32):
    """``batches`` noise batches (batch_size, nz) from their own generator (seeded by ``seed``),
    so recomputing statistics leaves the training noise stream alone. One batch of 256 gives
    each DCGAN batch-norm channel 12,544 values or more, and costs the DCGAN example ~1.4% of
    an epoch's time when recomputed once per epoch."""
    rng = np.random.default_rng([seed, 5])
    return [backend.to_device(rng.standard_normal((batch_size, nz)).astype(dtype), device)
            for _ in range(batches)]
