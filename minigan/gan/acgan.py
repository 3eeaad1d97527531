"""The auxiliary-classifier GAN (Odena, Olah & Shlens, 2017) on the 28x28 DCGAN.

    G(z, c)  [z ; onehot(c)]  (N, nz + K)  -> DCGAN generator (the cGAN's)   -> (N, nc, 28, 28)
    D(x)     DCGAN discriminator trunk    -> features h (N, 2d, 7, 7)
             source head  psi(h)  7x7 convolution -> (N,)    logit of "x is real"
             class head   chi(h)  7x7 convolution -> (N, K)  logits of "x shows class k"

Unlike the conditional GAN of :mod:`minigan.gan.conditional`, D is never told the class: it
guesses it, from real and generated images alike. The paper's two log-likelihoods (section 3):

    L_S = E[log P(S = real | x_real)] + E[log P(S = fake | x_fake)]
    L_C = E[log P(C = c | x_real)]    + E[log P(C = c | x_fake)]

D is trained to maximise L_S + L_C and G to maximise L_C - L_S. As everywhere in minigan, G's
part of L_S is replaced by the non-saturating -E[log P(S = real | x_fake)] (Goodfellow et al.'s
section 3), so

    D minimises  BCE(psi(h_real), 1) + BCE(psi(h_fake), 0) + CE(chi(h_real), y) + CE(chi(h_fake), c)
    G minimises  BCE(psi(h_fake), 1) + CE(chi(h_fake), c)

with BCE / CE the mean binary / categorical cross-entropies on logits (:func:`acgan_d_loss`,
:func:`acgan_g_loss`). G is rewarded for images whose class D can read, which is also ACGAN's
known weakness: it favours the most easily classified images of each class, and so draws less
varied digits within a class than the data hold (:mod:`minigan.metrics.diversity` measures it).
"""
from typing import NamedTuple

from .. import functional as F
from .. import nn
from . import losses
from .conditional import NUM_CLASSES, ConditionalGenerator, _labels
from .models import Discriminator, dcgan_init_
from .train import _check_finite, _mean_probability


class ACGANDiscriminator(nn.Module):
    """D(x): images (N, nc, 28, 28) -> (source logits (N,), class logits (N, K)), one trunk, two
    heads (see the module docstring). The trunk and source head are the DCGAN discriminator's."""

    def __init__(self, ndf=64, nc=1, num_classes=NUM_CLASSES):
        super().__init__()
        self.ndf, self.nc, self.num_classes = ndf, nc, num_classes
        stack = Discriminator(ndf, nc).net
        self.features = stack[:-1]    # -> (N, 2d, 7, 7)
        self.head = stack[-1]         # 7x7 convolution -> (N, 1, 1, 1)
        self.classifier = nn.Conv2d(2 * ndf, num_classes, 7, 1, 0)

    def forward(self, x):
        if x.ndim != 4 or x.shape[1:] != (self.nc, 28, 28):
            raise ValueError(f"ACGANDiscriminator expects images of shape "
                             f"(N, {self.nc}, 28, 28), got {x.shape}")
        n = x.shape[0]
        h = self.features(x)
        return (F.reshape(self.head(h), (n,)),
                F.reshape(self.classifier(h), (n, self.num_classes)))


def make_acgan(nz=100, ngf=64, ndf=64, nc=1, num_classes=NUM_CLASSES):
    """(G, D): the conditional generator and the two-headed discriminator, DCGAN-initialised from
    minigan's seeded CPU generator."""
    return (ConditionalGenerator(nz, ngf, nc, num_classes).apply(dcgan_init_),
            ACGANDiscriminator(ndf, nc, num_classes).apply(dcgan_init_))


def class_loss(class_logits, labels):
    """-L_C's half for one batch: -E[log P(C = y | x)] = CE(class logits (N, K), labels (N,))."""
    if class_logits.ndim != 2:
        raise ValueError(f"class_loss expects class logits of shape (N, K), got {class_logits.shape}")
    return F.cross_entropy(class_logits, _labels(labels, class_logits.shape[1], class_logits))


def acgan_d_loss(real_source, fake_source, real_class, fake_class, real_labels, fake_labels,
                 fake_class_weight=1.0):
    """-(L_S + L_C), the loss D minimises, with L_C's fake half weighted by w = fake_class_weight:

        BCE(real_source, 1) + BCE(fake_source, 0) + CE(real_class, real_labels)
                                                  + w CE(fake_class, fake_labels)

    sources (N,) logits, classes (N, K) logits, labels (N,) ints: the real digits' labels and the
    labels the fakes were drawn for. w = 1 is the paper's loss; w = 0 trains the class head on
    real digits only, so it cannot learn to read the marks G leaves on its fakes (``fake_class``
    may then be None). A scalar Tensor."""
    if fake_class_weight < 0:
        raise ValueError(f"fake_class_weight must be >= 0, got {fake_class_weight}")
    loss = losses.d_loss_minimax(real_source, fake_source) + class_loss(real_class, real_labels)
    if fake_class_weight > 0:
        loss = loss + fake_class_weight * class_loss(fake_class, fake_labels)
    return loss


def acgan_g_loss(fake_source, fake_class, fake_labels):
    """The loss G minimises: -(L_C's fake half) + the non-saturating form of L_S's,

        BCE(fake_source, 1) + CE(fake_class, fake_labels)"""
    return losses.g_loss_nonsaturating(fake_source) + class_loss(fake_class, fake_labels)


class ACGANStats(NamedTuple):
    """One ACGAN iteration: the two losses, D(x) and D(G(z)) (mean source probabilities before
    D's update), and the auxiliary classifier's accuracy on the real and on the fake batch."""
    loss_d: float
    loss_g: float
    d_real: float
    d_fake: float
    class_acc_real: float
    class_acc_fake: float


def _accuracy(class_logits, labels):
    predicted = class_logits.data.argmax(axis=1)
    return float((predicted == _labels(labels, class_logits.shape[1], class_logits)).mean())


def acgan_train_step(G, D, opt_g, opt_d, real, labels, z, fake_labels=None, step=None,
                     fake_class_weight=1.0):
    """One ACGAN iteration on a real batch (N, C, H, W) with its labels (N,) and noise z (N, nz):

    D step: minimise :func:`acgan_d_loss`   (G(z, c) detached: only D's trunk and heads learn)
    G step: minimise :func:`acgan_g_loss`   (D frozen: only G learns)

    The fakes are drawn for ``fake_labels`` (default: the real batch's labels, as in
    :func:`~minigan.gan.conditional.conditional_train_step`); ``fake_class_weight`` weighs D's
    class loss on the fakes (:func:`acgan_d_loss`; 1 the paper's, 0 real digits only). Returns :class:`ACGANStats`;
    raises NonFiniteLossError before an update would use a NaN or infinite loss."""
    fake_labels = labels if fake_labels is None else fake_labels
    fake = G(z, fake_labels)

    real_source, real_class = D(real)
    fake_source, fake_class = D(fake.detach())
    loss_d = acgan_d_loss(real_source, fake_source, real_class, fake_class, labels, fake_labels,
                          fake_class_weight)
    loss_d_value = _check_finite(loss_d, "discriminator loss", step)
    opt_d.zero_grad()
    loss_d.backward()
    opt_d.step()

    D.requires_grad_(False)   # gradients through D into G, none for D's weights
    try:
        loss_g = acgan_g_loss(*D(fake), fake_labels)
        loss_g_value = _check_finite(loss_g, "generator loss", step)
        opt_g.zero_grad()
        loss_g.backward()
        opt_g.step()
    finally:
        D.requires_grad_(True)

    return ACGANStats(loss_d_value, loss_g_value, _mean_probability(real_source),
                      _mean_probability(fake_source), _accuracy(real_class, labels),
                      _accuracy(fake_class, fake_labels))
