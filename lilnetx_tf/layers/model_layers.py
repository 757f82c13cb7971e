"""The LilNetX layers of a model."""

import tensorflow as tf

from lilnetx_tf.layers.base import LatentKernelMixin

__all__ = ["is_lilnetx_layer", "lilnetx_layers"]


def is_lilnetx_layer(layer) -> bool:
  """True for a LilNetX layer with a latent kernel."""
  return isinstance(layer, LatentKernelMixin)


def lilnetx_layers(model: tf.keras.layers.Layer) -> list:
  """The LilNetX layers of `model` (nested models included), each once, in graph order."""
  return [l for l in model._flatten_layers(include_self=False) if is_lilnetx_layer(l)]
