"""GAN building blocks: losses on discriminator logits / critic scores, models, training steps.

    losses.py       one function per loss (formula in the docstring), gradient penalty, packing
    train.py        one GAN iteration (Algorithm 1), noise, generation, run state for resume
    models.py       the 28x28 DCGAN generator and discriminator, DCGAN init
    wgan.py         the batchnorm-free critic, WGAN / WGAN-GP critic and generator steps
    conditional.py  conditional DCGAN (labels joined to z and to D's input), label accuracy
    acgan.py        ACGAN: D with a real/fake head and a class head on one trunk, L_S and L_C
    infogan.py      InfoGAN: categorical and continuous latent codes, Q head, info loss L_I
    mlp.py          small MLP generators and discriminators
    toy2d.py        the 2-D mixture benchmark's training loop (PacGAN's protocol)
    cyclegan.py     CycleGAN: ResNet generators, PatchGAN discriminators, image pool, one step
    unrolled.py     the unrolled GAN: G's loss after K differentiable D updates
"""
from .conditional import (ConditionalDiscriminator, ConditionalGenerator, LabelAccuracy,
                          conditional_train_step, one_hot,
                          generate_conditional, label_accuracy, make_conditional_dcgan)
from .losses import (clip_weights_, d_loss_minimax, discriminator_loss, g_loss_minimax,
                     g_loss_nonsaturating, gradient_penalty, pack, wasserstein_critic_loss,
                     wasserstein_generator_loss)
from .losses import d_loss_least_squares, g_loss_least_squares
from .cyclegan import (CycleGAN, CycleGANStats, ImagePool, PatchDiscriminator, ResnetBlock,
                       ResnetGenerator, linear_decay)
from .mlp import mlp, mlp_discriminator, mlp_generator
from .models import Discriminator, Generator, dcgan_init_, make_dcgan
from .train import (NonFiniteLossError, StepStats, generate, restore_run_state, run_state,
                    sample_noise, train_step)
from .losses import d_loss_hinge, feature_matching_loss, g_loss_hinge, r1_penalty
from .unrolled import unrolled_losses, unrolled_train_step
from .wgan import Critic, WGANStats, critic_step, generator_step, make_wgan, wgan_train_step
from .acgan import (ACGANDiscriminator, ACGANStats, acgan_d_loss, acgan_g_loss, acgan_train_step,
                    make_acgan)
from .infogan import (InfoGANDiscriminator, InfoGANGenerator, InfoGANStats, Latent, QOutput,
                      gaussian_nll, generate_infogan, info_loss, infogan_train_step, make_infogan,
                      sample_latent)
