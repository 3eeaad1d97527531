"""Models that write down a density, beside the GANs (which do not):

    losses.py    Gaussian KL, the reparameterised sample, Bernoulli NLL, the negative ELBO
    vae.py       a convolutional VAE (DCGAN-shaped encoder and decoder) and its held-out -ELBO
    pixelcnn.py  PixelCNN with masked convolutions: exact NLL, sampling pixel by pixel
    data.py      binarised digits, the data both models are trained and scored on
"""
from .data import binarize
from .losses import (bernoulli_nll, gaussian_kl, nats_to_bits_per_dim, negative_elbo,
                     reparameterize)
from .pixelcnn import PixelCNN, ResidualBlock, heldout_nll
from .vae import (VAE, Decoder, Encoder, VAELoss, VAEOutput, decode_mean, decoder_from_spec,
                  heldout_importance_nll, heldout_negative_elbo)
