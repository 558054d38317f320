"""The GAN estimate of the JSD regulariser between the policy's (s, a) and the data's.

Fake pairs are (s, raw pi(s)) and (s', raw pi(s')) with s' drawn from the model; true pairs are
dataset (s, atanh(a / max_a)). Both are compared in pre-tanh action space, where the
discriminator does not saturate at the action bounds.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax


def action_to_raw(actions: jax.Array, max_action: float, eps: float = 1e-7) -> jax.Array:
    """atanh of the action scaled to [-1, 1], clipped so the bounds stay finite."""
    return jnp.arctanh(jnp.clip(actions / max_action, -1.0 + eps, 1.0 - eps))


def _weighted_mean(x: jax.Array, weights: jax.Array, count: jax.Array | None = None) -> jax.Array:
    """Sum of w * x over rows with w > 0, divided by `count` (default: the weights' sum).

    A row with w = 0 never counts, even if its x is NaN. The WPR ablation divides by the number
    of live rows instead of the weights' sum, as the authors' `(loss * weights).mean()` does.
    """
    count = jnp.sum(weights) if count is None else count
    return jnp.sum(jnp.where(weights > 0, x * weights, 0.0)) / jnp.maximum(count, 1.0)


def discriminator_loss(
    true_logits: jax.Array,
    fake_logits: jax.Array,
    true_labels: jax.Array,
    fake_weights: jax.Array,
    true_weights: jax.Array | None = None,
    count: jax.Array | None = None,
) -> tuple[jax.Array, dict]:
    """[BCE(D(true), soft labels) + BCE(D(fake), 0)] / 2.

    Soft true labels in [0.8, 1) keep D from becoming over-confident. `fake_weights` masks out
    model states that terminated (or, for the WPR ablation, carries w * (1 - done)); `true_weights`
    (default all 1) keeps as many true pairs as there are live fake ones, as the authors draw them.
    """
    if true_weights is None:
        true_weights = jnp.ones_like(true_logits)
    true_bce = _weighted_mean(optax.losses.sigmoid_binary_cross_entropy(true_logits, true_labels), true_weights, count)
    fake_bce = _weighted_mean(
        optax.losses.sigmoid_binary_cross_entropy(fake_logits, jnp.zeros_like(fake_logits)),
        fake_weights,
        count,
    )
    loss = 0.5 * (true_bce + fake_bce)
    return loss, {
        "disc_loss": loss,
        "disc_true_prob": _weighted_mean(jax.nn.sigmoid(true_logits), true_weights),
        "disc_fake_prob": _weighted_mean(jax.nn.sigmoid(fake_logits), fake_weights),
    }


def kl_dual_discriminator_loss(
    true_values: jax.Array,
    fake_values: jax.Array,
    true_weights: jax.Array,
    fake_weights: jax.Array,
    count: jax.Array | None = None,
) -> tuple[jax.Array, dict]:
    """The authors' KL-dual regulariser (weighted_actor_critic_trainer.py
    `_get_generator_and_discriminator_loss_kl_dual`, `--use_kl_dual`): D is the network's raw output
    (their DiscriminatorWithoutSigmoid), real = mean(D(true) w), fake = mean(-D(fake) w), and the
    discriminator minimises -(real + fake). Means over the live rows as theirs (`count`)."""
    real = _weighted_mean(true_values, true_weights, count)
    fake = -_weighted_mean(fake_values, fake_weights, count)
    loss = -(real + fake)
    return loss, {
        "disc_loss": loss,
        "disc_true_prob": _weighted_mean(jax.nn.sigmoid(true_values), true_weights),
        "disc_fake_prob": _weighted_mean(jax.nn.sigmoid(fake_values), fake_weights),
    }


def kl_dual_generator_loss(fake_values: jax.Array, fake_weights: jax.Array, count: jax.Array | None = None) -> jax.Array:
    """The KL-dual generator loss mean(-D(fake) w): the policy raises D on its pairs."""
    return -_weighted_mean(fake_values, fake_weights, count)


def generator_loss(fake_logits: jax.Array, fake_weights: jax.Array, count: jax.Array | None = None) -> jax.Array:
    """BCE(D(fake), 1): the policy is rewarded for pairs the discriminator takes for data."""
    return _weighted_mean(
        optax.losses.sigmoid_binary_cross_entropy(fake_logits, jnp.ones_like(fake_logits)),
        fake_weights,
        count,
    )
