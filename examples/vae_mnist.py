"""Train a convolutional VAE on binarised MNIST digits with minigan (CPU, or GPU: --device cuda).

    python -m examples.vae_mnist                       # the default run
    python -m examples.vae_mnist --resume              # continue the run in --out
    python -m examples.vae_mnist --iters 3 --ngf 4 --ndf 4 --out /tmp/smoke

The model is :class:`minigan.density.VAE` (Kingma & Welling 2014): the DCGAN discriminator's trunk
as encoder to a diagonal Gaussian q(z|x), the reparameterisation trick, the DCGAN generator's
layers as decoder to Bernoulli logits, trained on the negative ELBO (one posterior sample, the
analytic KL) with Adam (lr 1e-3). Pixels are binarised at 128 (:func:`minigan.density.binarize`).
The run folder (--out) receives, as training goes:

    samples_epoch001.png ...   decoder means sigmoid(logits) for one fixed batch of prior z
    checkpoint.npz             models, Adam, step, RNG, loader; extra["decoder"] says how to
                               rebuild the decoder (class, constructor arguments, latent size)
    metrics.jsonl              a record per checkpoint: mean -ELBO, reconstruction, KL, and the
                               held-out -ELBO in nats per image
    samples_final.png, reconstructions.png (held-out digits above, reconstructions below),
    interpolation.png (rows walk between two held-out digits' posterior means), losses.png,
    and the final record: held-out -ELBO, FID and classifier score of prior samples

--resume continues a stopped run exactly, as in the GAN examples.
"""
import argparse
import sys

import numpy as np

import minigan as mg
from minigan import backend, io, optim
from minigan.data import Batches
from minigan.density import VAE, binarize, decode_mean, heldout_negative_elbo
from minigan.gan.train import NonFiniteLossError

from ._common import (INTERPOLATION_STEPS, TrainingRun, add_common_args, check_args, fixed_noise,
                      load_split, score_samples)

# Iterations of the default run (28 epochs of the bundled 4,500 digits). An iteration at batch 64
# costs about 0.17-0.2 s of CPU time (the DCGAN's: 0.26 s), so 2,000 are about 400 CPU seconds.
# The held-out -ELBO passes 105 nats after 350 iterations and is 98.2 at 840 (benchmarks/
# RESULTS.md, issue 15); the rest of the run is margin (and some overfitting of 4,500 digits).
DEFAULT_ITERS = 2000
STAT_NAMES = ("loss", "reconstruction", "kl")


class VAEStats:
    """One iteration's batch means (nats per image)."""

    def __init__(self, terms):
        self.loss, self.reconstruction, self.kl = (float(t.item()) for t in terms)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_common_args(parser, iters=DEFAULT_ITERS, lr=1e-3, out="runs/vae_mnist",
                    lr_help="Adam's learning rate")
    parser.set_defaults(nz=32)
    parser.add_argument("--samples", type=int, default=64, help="images in each sample grid")
    parser.add_argument("--metric-samples", type=int, default=2000,
                        help="prior samples scored for FID and classifier score")
    args = parser.parse_args(argv)
    check_args(args)
    for name in ("samples", "metric_samples"):
        if getattr(args, name) < 1:
            sys.exit(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
    return args


def one_step(vae, opt, x, step):
    """Minimise the batch's mean -ELBO once; the batch's terms as :class:`VAEStats`."""
    terms = vae.loss(x)
    stats = VAEStats(terms)
    if not np.isfinite(stats.loss):
        raise NonFiniteLossError(f"the negative ELBO is {stats.loss} at step {step}: training "
                                 "diverged (try a lower --lr); no update was made with it")
    opt.zero_grad()
    terms.loss.backward()
    opt.step()
    return stats


def prior_samples(vae, n, args, device, seed_offset=3):
    """n decoder means for z ~ N(0, I) drawn from their own seeded generator, as [0, 1] images."""
    z = np.random.default_rng([args.seed, seed_offset]).standard_normal((n, args.nz))
    z = mg.Tensor(backend.to_device(z.astype(np.float32), device))
    return backend.as_numpy(decode_mean(vae.decoder, z))


def save_reconstructions(vae, heldout, path, device, n=32):
    """Held-out digits (top rows) above their reconstructions from the posterior means."""
    x = mg.Tensor(backend.to_device(heldout[:n], device))
    vae.eval()
    with mg.no_grad():
        mu, _ = vae.encoder(x)
    vae.train()
    recon = backend.as_numpy(decode_mean(vae.decoder, mu))
    grid = np.concatenate([heldout[:n], recon])
    io.save_image_grid(grid, path, nrow=8, scale=2, value_range=(0, 1))


def save_interpolation(vae, heldout, path, device, rows=8):
    """Each row walks in a straight line between the posterior means of two held-out digits."""
    x = mg.Tensor(backend.to_device(heldout[:2 * rows], device))
    vae.eval()
    with mg.no_grad():
        mu = backend.as_numpy(vae.encoder(x)[0].data)
    vae.train()
    ts = np.linspace(0.0, 1.0, INTERPOLATION_STEPS)[:, None]
    z = np.concatenate([(1 - ts) * mu[2 * r] + ts * mu[2 * r + 1] for r in range(rows)])
    images = decode_mean(vae.decoder, mg.Tensor(backend.to_device(z.astype(np.float32), device)))
    io.save_image_grid(backend.as_numpy(images), path, nrow=INTERPOLATION_STEPS, scale=2,
                       value_range=(0, 1))


def main(argv=None):
    args = parse_args(argv)
    mg.manual_seed(args.seed)
    device = args.device

    train_u8, described = load_split(args, "train")
    test_u8, test_described = load_split(args, "test")
    images, heldout = binarize(train_u8), binarize(test_u8)
    loader = Batches(backend.to_device(images, device), batch_size=args.batch_size, seed=args.seed)
    heldout_device = backend.to_device(heldout, device)
    vae = VAE(args.nz, args.ngf, args.ndf).to(device)
    opt = optim.Adam(vae.parameters(), lr=args.lr)
    config = {"dataset": args.dataset, "images": len(images), "batch_size": args.batch_size,
              "lr": args.lr, "seed": args.seed, "nz": args.nz, "ngf": args.ngf, "ndf": args.ndf}
    # what examples/sample.py (or anyone) needs to draw from the trained decoder
    sampler = {"decoder": {**vae.decoder.spec(), "nz": args.nz, "state": "models/VAE/decoder.*",
                           "prior": "N(0, I)", "output": "Bernoulli logits: pixel = sigmoid"}}
    run = TrainingRun(args, {"VAE": vae}, {"VAE": opt}, loader, config, STAT_NAMES,
                      per_epoch=len(loader), images_per_iteration=args.batch_size, static=sampler)
    print(f"{described} (binarised at 128); held out: {test_described}; {len(loader)} batches "
          f"of {args.batch_size} per epoch; training to iteration {run.total} on {device}; "
          f"writing to {run.files.folder}")

    z_grid = mg.Tensor(backend.to_device(fixed_noise(args.samples, args.nz, args.seed), device))
    batches = loader.forever()

    def save_grid(path):
        io.save_image_grid(backend.as_numpy(decode_mean(vae.decoder, z_grid)), path, nrow=8,
                           scale=2, value_range=(0, 1))

    def on_checkpoint(record, progress):
        record.update({f"heldout_{k}": v
                       for k, v in heldout_negative_elbo(vae, heldout_device).items()})
        progress.write(f"iteration {record['step']}: held-out -ELBO "
                       f"{record['heldout_neg_elbo']:.2f} nats")

    ok = run.train(lambda step: one_step(vae, opt, mg.Tensor(next(batches)), step),
                   lambda s: {"-ELBO": s.loss, "rec": s.reconstruction, "KL": s.kl},
                   save_grid, on_checkpoint)
    if not ok:
        return 1
    save_grid(run.files.samples("final"))
    save_reconstructions(vae, heldout, run.files.path("reconstructions.png"), device)
    save_interpolation(vae, heldout, run.files.interpolation, device)
    if run.history["loss"]:
        io.plot_curves({"-ELBO": run.history["loss"], "KL": run.history["kl"],
                        "reconstruction": run.history["reconstruction"]}, run.files.losses, title="VAE on binarised MNIST",
                       xlabel="iteration", ylabel="nats per image")
    final = heldout_negative_elbo(vae, heldout_device)
    print(f"held-out negative ELBO {final['neg_elbo']:.2f} nats per image (reconstruction "
          f"{final['reconstruction']:.2f} + KL {final['kl']:.2f}) on {test_described}")
    record = {f"heldout_{k}": v for k, v in final.items()}
    if not args.no_metrics:
        record.update(score_samples(prior_samples(vae, args.metric_samples, args, device),
                                    args.dataset, value_range=(0.0, 1.0)))
    run.finish(record)
    return 0


if __name__ == "__main__":
    sys.exit(main())
