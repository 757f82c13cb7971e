"""Stores the parameters of unread channels (`analysis.unread`) as zeros.

An `inference_only` model file writes zeros for the parameters that only unread channels use
(their kernel slices or latents, biases and BatchNorm entries), which the latent coder and zlib
store almost for free; the decompressed model computes the same outputs.
"""

import numpy as np
import tensorflow as tf

from lilnetx_tf.analysis.kernels import RULES
from lilnetx_tf.analysis.kinds import OpKind, kernel_kind
from lilnetx_tf.analysis.unread import unread_channels
from lilnetx_tf.layers import kernel_latents

__all__ = ["zero_unread"]


def _zeroed(values: np.ndarray, mask: np.ndarray, axis: int) -> np.ndarray:
  values = np.array(values, copy=True)
  index = [slice(None)] * values.ndim
  index[axis] = mask
  values[tuple(index)] = 0
  return values


def zero_unread(model: tf.keras.Model, stored: dict) -> dict:
  """Zeroes the parameters of unread channels, for storage.

  `stored` maps id(variable) to the values to write instead of the variable's own (e.g. folded
  BatchNorm); the result adds the zeroed biases, BatchNorm entries and plain kernels, and maps
  id(latent variable) of each LilNetX layer with unread channels to its zeroed integer latents.
  """
  stored = dict(stored)
  layers = {id(l): l for l in model._flatten_layers(include_self=False)}
  for layer_id, mask in unread_channels(model).items():
    layer = layers[layer_id]

    def zero(variable, mask=mask, axis=-1):
      if variable is not None:
        values = stored.get(id(variable))
        stored[id(variable)] = _zeroed(variable.numpy() if values is None else values, mask,
                                       axis)

    if isinstance(layer, tf.keras.layers.BatchNormalization):
      for variable in (layer.gamma, layer.beta, layer.moving_mean):
        zero(variable)
      continue
    zero(layer.bias)
    kind = kernel_kind(layer)
    latents = kernel_latents(layer)
    if latents:   # the last latent's outputs are the layer's; every latent is (in, out, k)
      latent = latents[-1][0]
      a, b, _ = latent.latent_variable.shape
      latent_mask = (mask.reshape(a, b) if kind is OpKind.DEPTHWISE
                     else np.broadcast_to(mask, (a, b)))
      values = latent.integer_latent.numpy()
      values[latent_mask] = 0
      stored[id(latent.latent_variable)] = values
    else:   # the last kernel's output axis: depthwise (k…, C, M) is output channel i·M + m
      kernel = getattr(layer, RULES[kind].kernel_names[-1])
      if kind is OpKind.DEPTHWISE:
        values = kernel.numpy()
        flat = _zeroed(values.reshape(values.shape[:-2] + (-1,)), mask, axis=-1)
        stored[id(kernel)] = flat.reshape(values.shape)
      else:
        zero(kernel, axis=-2 if kind is OpKind.TRANSPOSED else -1)
  return stored
