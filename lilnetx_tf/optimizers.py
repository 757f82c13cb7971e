"""Keras optimizers that give the LilNetX latents their own step size.

A latent lives in units of its rounding step: with the default boundary its rounded values are a
few integers around zero, so an Adam step of 3e-3 changes it by a far smaller fraction than it
changes a He-initialized dense kernel (|w| ~ 0.1). The LilNetX reference trains latents and
decoders at 1e-2. These optimizers multiply each step they take on a latent weight by
`latent_lr_multiplier` and leave every other variable (decoders, biases, BatchNorm, plain
layers) on the schedule as given, so a dense baseline and a LilNetX model can share one:

    optimizer = lnx.optimizers.Adam(schedule, latent_lr_multiplier=3.0)

For Adam and SGD without momentum this is the same as a learning rate `latent_lr_multiplier`
times larger for the latents (a decoupled `weight_decay`, as in AdamW, is not multiplied).
The groups' densities have their own optimizer (see `lnx.Conv2D`'s `density_learning_rate`)
and are not affected.
"""

import tensorflow as tf

from lilnetx_tf.layers.base import LATENT_WEIGHT_NAME
from lilnetx_tf import validation

__all__ = ["is_latent_variable", "Adam", "AdamW", "SGD"]


def is_latent_variable(variable: tf.Variable) -> bool:
  """True for the latent weight of a LilNetX layer."""
  return variable.name.rsplit("/", 1)[-1].split(":")[0] == LATENT_WEIGHT_NAME


class _LatentSteps:
  """Mixin over a Keras optimizer: steps on latent weights are scaled by a multiplier."""

  def __init__(self, *args, latent_lr_multiplier: float = 1.0, **kwargs):
    multiplier = validation.positive_float("latent_lr_multiplier", latent_lr_multiplier)
    super().__init__(*args, **kwargs)
    self.latent_lr_multiplier = multiplier
    self._latent_keys = frozenset()

  def build(self, var_list):
    super().build(var_list)
    self._latent_keys = frozenset(self._var_key(v) for v in var_list if is_latent_variable(v))

  def update_step(self, gradient, variable):
    if self.latent_lr_multiplier == 1.0 or self._var_key(variable) not in self._latent_keys:
      return super().update_step(gradient, variable)
    before = tf.identity(variable)
    super().update_step(gradient, variable)
    variable.assign_add((self.latent_lr_multiplier - 1.0) * (variable - before))

  def get_config(self) -> dict:
    return dict(super().get_config(), latent_lr_multiplier=self.latent_lr_multiplier)


@tf.keras.utils.register_keras_serializable(package="lilnetx_tf")
class Adam(_LatentSteps, tf.keras.optimizers.Adam):
  """`tf.keras.optimizers.Adam` with `latent_lr_multiplier` times its steps on the latents."""


@tf.keras.utils.register_keras_serializable(package="lilnetx_tf")
class AdamW(_LatentSteps, tf.keras.optimizers.AdamW):
  """`tf.keras.optimizers.AdamW` with `latent_lr_multiplier` times its steps on the latents."""


@tf.keras.utils.register_keras_serializable(package="lilnetx_tf")
class SGD(_LatentSteps, tf.keras.optimizers.SGD):
  """`tf.keras.optimizers.SGD` with `latent_lr_multiplier` times its steps on the latents."""
