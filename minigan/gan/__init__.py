"""GAN building blocks: losses on discriminator logits / critic scores, and small MLP models."""
from .losses import (clip_weights_, d_loss_minimax, discriminator_loss, g_loss_minimax,
                     g_loss_nonsaturating, gradient_penalty, pack, wasserstein_critic_loss,
                     wasserstein_generator_loss)
from .mlp import mlp, mlp_discriminator, mlp_generator
