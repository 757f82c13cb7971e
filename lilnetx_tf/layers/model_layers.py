"""The LilNetX layers of a model, and the latent kernels each layer holds."""

import tensorflow as tf

from lilnetx_tf.layers.base import LatentKernelMixin

__all__ = ["is_lilnetx_layer", "lilnetx_layers", "kernel_latents"]

_DEPTHWISE = (tf.keras.layers.DepthwiseConv1D, tf.keras.layers.DepthwiseConv2D)


def is_lilnetx_layer(layer) -> bool:
  """True for a LilNetX layer with a latent kernel."""
  return isinstance(layer, LatentKernelMixin)


def lilnetx_layers(model: tf.keras.layers.Layer) -> list:
  """The LilNetX layers of `model` (nested models included), each once, in graph order; a layer
  with several latent kernels (a separable convolution) is represented by its `LatentKernel`s."""
  return [l for l in model._flatten_layers(include_self=False) if is_lilnetx_layer(l)]


def kernel_latents(layer) -> list:
  """[(latent kernel, name of the Keras kernel attribute it decodes to)] of `layer`: itself for
  a LilNetX layer, its `LatentKernel`s for a layer with several (separable convolutions, whose
  `latent_kernels()` pair with `KERNEL_NAMES`), nothing for any other layer."""
  owned = getattr(layer, "latent_kernels", None)
  if callable(owned) and not is_lilnetx_layer(layer):
    return list(zip(owned(), layer.KERNEL_NAMES))
  if is_lilnetx_layer(layer):
    return [(layer, "depthwise_kernel" if isinstance(layer, _DEPTHWISE) else "kernel")]
  return []
