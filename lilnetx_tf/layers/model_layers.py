"""The LilNetX layers of a model, and the latent kernels each layer holds."""

import functools

import tensorflow as tf

from lilnetx_tf.layers.base import LatentKernelMixin

__all__ = ["is_lilnetx_layer", "lilnetx_layers", "kernel_latents", "layer_attribute"]


def is_lilnetx_layer(layer) -> bool:
  """True for a LilNetX layer with a latent kernel."""
  return isinstance(layer, LatentKernelMixin)


def lilnetx_layers(model: tf.keras.layers.Layer) -> list:
  """The LilNetX layers of `model` (nested models included), each once, in graph order; a layer
  with several latent kernels (a separable convolution, a MultiHeadAttention) is represented by
  the latent kernels it holds."""
  return [l for l in model._flatten_layers(include_self=False) if is_lilnetx_layer(l)]


def kernel_latents(layer) -> list:
  """[(latent kernel, path of the Keras kernel it decodes to)] of `layer`.

  A LilNetX layer is its own latent kernel: [(layer, `KERNEL_NAME`)], e.g. 'kernel',
  'depthwise_kernel', 'embeddings'. A layer holding several gives `latent_kernels()` paired with
  its `KERNEL_NAMES`, paths relative to it: a separable convolution's two `LatentKernel`s
  ('depthwise_kernel', 'pointwise_kernel'), a built MultiHeadAttention's four projections
  ('_query_dense.kernel', ...). Any other layer: []. The same path read on the layer's stock
  Keras counterpart (`layer_attribute`) gives the kernel that latent stands for.
  """
  if is_lilnetx_layer(layer):
    return [(layer, layer.KERNEL_NAME)]
  owned = getattr(layer, "latent_kernels", None)
  return list(zip(owned(), layer.KERNEL_NAMES)) if callable(owned) else []


def layer_attribute(layer, path: str):
  """The attribute of `layer` at a dotted `path` of `kernel_latents` ('' is `layer` itself)."""
  return functools.reduce(getattr, filter(None, path.split(".")), layer)
