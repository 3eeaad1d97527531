"""GAN theory on 1-D Gaussians, and a 1-D GAN that learns one.

Goodfellow et al. (2014) show that for a fixed generator distribution p_g the best discriminator is

    D*(x) = p_data(x) / (p_data(x) + p_g(x)),

and that the value V(G, D) = E_data[log D(x)] + E_g[log(1 - D(x))] at D* is
-log 4 + 2 JSD(p_data || p_g), minimal (-log 4) exactly when p_g = p_data. For two Gaussians
log p_data - log p_g is a quadratic in x, so D* = sigmoid(a + b x + c x^2) exactly: a logistic
model on (x, x^2) can represent it, and training one on samples should recover it. This file has
the pieces the tests check (``optimal_logit``, ``value_by_quadrature``, ``fit_discriminator``,
``train_gan``) and a command line that trains a small MLP GAN on N(4, 1.25^2):

    python -m examples.gan_1d [--steps 1200] [--seed 0] [--loss nonsaturating|minimax]
                              [--out gan_1d.png] [--device cpu|cuda]

With ``--device cuda`` the two networks train on a GPU; every random number is still drawn on
the CPU and moved there, and the samples come back as NumPy for the statistics and the plot.
"""
import argparse
import math
import time

import numpy as np

import minigan as mg
import minigan.functional as F
from minigan import gan, nn, optim
from minigan.data import gaussian_pdf

from ._common import add_device_arg, check_device, seed_arg

DATA_MEAN, DATA_STD = 4.0, 1.25


# ------------------------------------------------------------------------------------------------
# The optimal discriminator and the value function, in closed form and by quadrature
# ------------------------------------------------------------------------------------------------
def log_gaussian(x, mean, std):
    """log N(x; mean, std^2), exact in the tails (no exp before the log)."""
    z = (np.asarray(x, dtype=np.float64) - mean) / std
    return -0.5 * z * z - math.log(std * math.sqrt(2 * math.pi))


def optimal_logit(x, data=(DATA_MEAN, DATA_STD), model=(0.0, 1.0)):
    """logit of D*(x) = log p_data(x) - log p_g(x) for two Gaussians given as (mean, std);
    D*(x) = sigmoid(optimal_logit(x))."""
    return log_gaussian(x, *data) - log_gaussian(x, *model)


def value_by_quadrature(logit_fn, data, model, n=20001, width=12.0):
    """V(G, D) = int p_data log D + p_g log(1 - D) dx on a uniform grid (trapezoid rule), for
    D = sigmoid(logit_fn(x)); evaluated with minigan's ops in float64:
    log D = -softplus(-l), log(1 - D) = -softplus(l).

    The grid covers both Gaussians out to ``width`` standard deviations."""
    lo = min(data[0] - width * data[1], model[0] - width * model[1])
    hi = max(data[0] + width * data[1], model[0] + width * model[1])
    x = np.linspace(lo, hi, n)
    w = np.full(n, (hi - lo) / (n - 1))
    w[[0, -1]] *= 0.5
    logits = mg.tensor(np.asarray(logit_fn(x), dtype=np.float64))
    p_data = mg.tensor(w * gaussian_pdf(x, *data))
    p_g = mg.tensor(w * gaussian_pdf(x, *model))
    return -(p_data * F.softplus(-logits) + p_g * F.softplus(logits)).sum().item()


# ------------------------------------------------------------------------------------------------
# A discriminator trained on samples
# ------------------------------------------------------------------------------------------------
class QuadraticDiscriminator(nn.Module):
    """logit(x) = a + b u + c u^2 with u = (x - center) / scale: logistic regression on quadratic
    features, which holds D* for any pair of Gaussians. ``center`` and ``scale`` standardise the
    input so that one learning rate suits every pair. x (N, 1) -> logits (N, 1)."""

    def __init__(self, center=0.0, scale=1.0):
        super().__init__()
        self.center, self.scale = float(center), float(scale)
        self.coef = nn.Parameter(np.zeros(3, dtype=mg.get_default_dtype()))

    def forward(self, x):
        u = (x - self.center) * (1.0 / self.scale)
        return self.coef[0] + self.coef[1] * u + self.coef[2] * (u * u)


def fit_discriminator(x_data, x_g, model=None, steps=300, lr=0.1):
    """Train a discriminator on samples of p_data (label 1) and p_g (label 0) with the minimax
    discriminator loss, full batch, Adam. x_data, x_g: 1-D NumPy arrays. ``model`` defaults to a
    QuadraticDiscriminator standardised on the pooled samples. Returns the trained model."""
    pooled = np.concatenate([x_data, x_g])
    if model is None:
        model = QuadraticDiscriminator(pooled.mean(), pooled.std())
    real = mg.tensor(np.asarray(x_data, dtype=np.float32).reshape(-1, 1))
    fake = mg.tensor(np.asarray(x_g, dtype=np.float32).reshape(-1, 1))
    opt = optim.Adam(model.parameters(), lr=lr)
    for _ in range(steps):
        opt.zero_grad()
        gan.d_loss_minimax(model(real), model(fake)).backward()
        opt.step()
    return model


def discriminator_probability(model, x, device="cpu"):
    """D(x) = sigmoid(model(x)) for a 1-D NumPy array x, as a float64 NumPy array; ``device``:
    where the model's weights are (x is moved there, the result comes back)."""
    with mg.no_grad():
        logits = model(mg.tensor(np.asarray(x, dtype=np.float32).reshape(-1, 1), device=device))
        return F.sigmoid(logits).numpy().astype(np.float64).reshape(-1)


# ------------------------------------------------------------------------------------------------
# A full 1-D GAN
# ------------------------------------------------------------------------------------------------
def train_gan(steps=1200, seed=0, loss="nonsaturating", batch=256, lr_g=1e-3, lr_d=2e-3,
              data=(DATA_MEAN, DATA_STD), hidden=16, g_activation="tanh", d_activation="tanh",
              latent_dim=1, log_every=0, log=print, device="cpu"):
    """Train an MLP generator latent_dim -> hidden -> hidden -> 1 (z ~ N(0, I)) and an MLP
    discriminator 1 -> 2*hidden -> 2*hidden -> 1 logit on samples of N(mean, std^2), one D step
    and one G step per iteration, Adam(betas=(0.5, 0.999)), fresh batches every step.

    Hidden activations default to tanh on both sides: a ReLU generator fed 1-D noise is a
    piecewise-linear map whose kinks show up as spikes in its output density, and a smooth
    discriminator suits a smooth target.

    ``loss``: 'nonsaturating' (G minimises -E log D(G(z))) or 'minimax' (G minimises
    E log(1 - D(G(z)))). Returns (G, D, history) where history holds (step, d_loss, g_loss,
    mean, std) rows of the generator's samples.

    ``device``: 'cpu' or 'cuda'. The weights are drawn on the CPU from the seed and the models
    moved there; data and noise are drawn on the CPU from ``rng`` and moved each step, so a seed
    gives the same starting weights and batches on either device. G and D stay on ``device``."""
    if loss not in ("nonsaturating", "minimax"):
        raise ValueError(f"loss must be 'nonsaturating' or 'minimax', got {loss!r}")
    g_loss_fn = gan.g_loss_nonsaturating if loss == "nonsaturating" else gan.g_loss_minimax
    mg.manual_seed(seed)
    rng = np.random.default_rng(seed)
    G = gan.mlp_generator(latent_dim, (hidden, hidden), 1, g_activation, out_activation=None)
    D = gan.mlp_discriminator(1, (2 * hidden, 2 * hidden), activation=d_activation)
    G.to(device)   # in place, before the optimizers are made (a no-op on the CPU)
    D.to(device)
    opt_g = optim.Adam(G.parameters(), lr=lr_g, betas=(0.5, 0.999))
    opt_d = optim.Adam(D.parameters(), lr=lr_d, betas=(0.5, 0.999))
    history = []
    for step in range(1, steps + 1):
        real = mg.tensor(rng.normal(data[0], data[1], (batch, 1)).astype(np.float32),
                         device=device)
        z = mg.tensor(rng.standard_normal((batch, latent_dim)).astype(np.float32), device=device)
        fake = G(z)
        opt_d.zero_grad()
        d_loss = gan.d_loss_minimax(D(real), D(fake.detach()))
        d_loss.backward()
        opt_d.step()
        opt_g.zero_grad()
        g_loss = g_loss_fn(D(fake))
        g_loss.backward()
        opt_g.step()
        if log_every and (step % log_every == 0 or step == steps):
            mean, std = sample_stats(G, rng, device=device)
            history.append((step, d_loss.item(), g_loss.item(), mean, std))
            log(f"step {step:5d}  d_loss {d_loss.item():.4f}  g_loss {g_loss.item():.4f}  "
                f"G mean {mean:.3f} std {std:.3f}")
    return G, D, history


def sample(G, n, rng, device="cpu"):
    """n samples of the generator (its weights on ``device``) as a float64 NumPy array; the
    noise is drawn from ``rng`` on the CPU and moved there."""
    with mg.no_grad():
        z = mg.tensor(rng.standard_normal((n, G[0].in_features)).astype(np.float32),
                      device=device)
        return G(z).numpy().astype(np.float64).reshape(-1)


def sample_stats(G, rng, n=20000, device="cpu"):
    """Mean and standard deviation of n generator samples."""
    x = sample(G, n, rng, device)
    return float(x.mean()), float(x.std())


# ------------------------------------------------------------------------------------------------
# A picture: histogram of G's samples over the data density, and D(x)
# ------------------------------------------------------------------------------------------------
def save_plot(path, samples, D, data=(DATA_MEAN, DATA_STD), size=(480, 240), device="cpu"):
    """A PNG: grey bars = histogram of the generator's samples (as a density), blue line = the data
    density, red line = D(x) (on its own [0, 1] scale). ``device``: where D's weights are."""
    from PIL import Image, ImageDraw

    w, h = size
    lo, hi = data[0] - 4 * data[1], data[0] + 4 * data[1]
    counts, edges = np.histogram(samples, bins=60, range=(lo, hi), density=True)
    xs = np.linspace(lo, hi, w)
    density = gaussian_pdf(xs, *data)
    top = 1.15 * max(density.max(), counts.max())
    image = Image.new("RGB", size, "white")
    draw = ImageDraw.Draw(image)

    def px(x):
        return (x - lo) / (hi - lo) * (w - 1)

    for c, a, b in zip(counts, edges[:-1], edges[1:]):
        draw.rectangle([px(a), h - 1 - c / top * (h - 1), px(b), h - 1], fill=(190, 190, 190))
    draw.line([(i, h - 1 - d / top * (h - 1)) for i, d in enumerate(density)], fill=(30, 60, 200),
              width=2)
    d_x = discriminator_probability(D, xs, device)
    draw.line([(i, h - 1 - p * (h - 1)) for i, p in enumerate(d_x)], fill=(200, 40, 40), width=1)
    image.save(path)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=1200)
    parser.add_argument("--seed", type=seed_arg, default=0)
    parser.add_argument("--loss", choices=("nonsaturating", "minimax"), default="nonsaturating")
    parser.add_argument("--out", default="gan_1d.png", help="PNG to write ('' for none)")
    add_device_arg(parser)
    args = parser.parse_args(argv)
    check_device(args.device)   # before any step is taken or file written
    start = time.perf_counter()
    G, D, _ = train_gan(args.steps, args.seed, args.loss, log_every=max(args.steps // 10, 1),
                        device=args.device)
    mean, std = sample_stats(G, np.random.default_rng(args.seed + 1), device=args.device)
    print(f"data      mean {DATA_MEAN:.3f}  std {DATA_STD:.3f}")
    print(f"generator mean {mean:.3f}  std {std:.3f}  (errors {abs(mean / DATA_MEAN - 1):.1%}, "
          f"{abs(std / DATA_STD - 1):.1%}; {time.perf_counter() - start:.1f} s)")
    if args.out:
        samples = sample(G, 20000, np.random.default_rng(args.seed + 2), args.device)
        save_plot(args.out, samples, D, device=args.device)
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
