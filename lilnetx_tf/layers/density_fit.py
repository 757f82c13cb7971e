"""Fitting the groups' densities to the latents they price, without touching the latents.

Needed whenever latents change outside training: a warm-started conversion (`lnx.convert`), or a
model decompressed from an `inference_only` file (which leaves the densities out), before it is
trained further.
"""

import numpy as np
import tensorflow as tf

from lilnetx_tf import _compat
from lilnetx_tf import errors
from lilnetx_tf.layers import group as group_lib
from lilnetx_tf.layers import model_layers
from lilnetx_tf import validation

__all__ = ["fit_densities", "fit_group_densities"]

# Tracing the densities costs more than the steps; 50 Adam steps at 1e-2 on 2048 slices per group
# get within 0.5 % of 200 steps on 8192 (ResNet50 warm start, WORKSPACE_NOTES).
DEFAULT_STEPS = 50
DEFAULT_MAX_SLICES = 2048


def fit_densities(model: tf.keras.layers.Layer, steps: int = DEFAULT_STEPS,
                  max_slices: int = DEFAULT_MAX_SLICES, learning_rate: float = 1e-2,
                  seed: int = 0) -> None:
  """Fits the density of every parameter group of `model` to its members' current latents
  (`steps` Adam steps at `learning_rate` on up to `max_slices` slices per group)."""
  if not isinstance(model, tf.keras.layers.Layer):
    raise errors.InvalidArgumentError(f"Expected a Keras model, got {type(model).__name__}.")
  layers = model_layers.lilnetx_layers(model)
  if any(not layer.built for layer in layers):
    raise errors.InvalidArgumentError(
        "The model is not built: call it on data or build it with an input shape first.")
  fit_group_densities(group_lib.members_by_group(layers), steps, max_slices, learning_rate, seed)


def fit_group_densities(groups_and_members: list, steps: int = DEFAULT_STEPS,
                        max_slices: int = DEFAULT_MAX_SLICES, learning_rate: float = 1e-2,
                        seed: int = 0) -> None:
  """Fits each group's density to (a sample of) its members' current latents with Adam.

  A warm-started latent can span many more integers than a fresh density covers; without this
  the rate term starts with a large, meaningless gradient and `lnx.stats` overestimates the
  size. All groups are fitted in one traced loop (tracing the density is the slow part).
  """
  steps = validation.non_negative_int("steps", steps)
  max_slices = validation.positive_int("max_slices", max_slices)
  learning_rate = validation.positive_float("learning_rate", learning_rate)
  seed = validation.non_negative_int("seed", seed)
  rng = np.random.default_rng(seed)
  problems = []
  for group, members in groups_and_members:
    latents = np.concatenate(
        [np.reshape(m.latent.numpy(), (-1, group.slice_size)) for m in members])
    if len(latents) > max_slices:
      latents = latents[rng.choice(len(latents), max_slices, replace=False)]
    variables = list(group.density_variables)
    moments = [(tf.Variable(tf.zeros_like(v)), tf.Variable(tf.zeros_like(v)))
               for v in variables]
    problems.append((group, tf.constant(latents, tf.float32), variables, moments))

  def fit():
    for t in tf.range(steps, dtype=tf.int64):
      for index, (group, sample, variables, moments) in enumerate(problems):
        noise = tf.random.stateless_uniform(
            tf.shape(sample), tf.stack([tf.constant(seed + index, tf.int64), t]), -0.5, 0.5)
        with tf.GradientTape(watch_accessed_variables=False) as tape:
          tape.watch(variables)
          loss = tf.reduce_mean(group.bits(sample + noise))
        group_lib.adam_step(variables, tape.gradient(loss, variables), moments, t + 1,
                            learning_rate)

  if not (problems and steps):
    return
  fit = _compat.traced_per_call(fit)
  if tf.distribute.has_strategy() and tf.distribute.in_cross_replica_context():
    # In a strategy's scope (a model converted there): every replica fits its own copy from the
    # same sample and noise, as the density step does in `fit`.
    tf.distribute.get_strategy().run(fit)
  else:
    fit()
