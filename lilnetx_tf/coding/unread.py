"""Channels whose values never reach a model output, and the parameters only they use.

A channel is *unread* when the export's channel analysis (`export.graph`) would remove it and
every kernel layer that reads it has all-zero weights on it: then nothing computed from it,
hence none of its own parameters (its kernel slice or latents, bias, BatchNorm entries), changes
the model's outputs. An `inference_only` model file stores those parameters as zeros, which the
latent coder and zlib store almost for free; the decompressed model computes the same outputs.
Layers called more than once, in nested models or behind layers the analysis does not know
keep all their channels.
"""

import numpy as np
import tensorflow as tf

from lilnetx_tf.export import fold
from lilnetx_tf.export import graph
from lilnetx_tf.layers import is_lilnetx_layer

_KERNEL_KINDS = ("conv", "depthwise", "dense")


def unread_channels(model: tf.keras.Model) -> dict:
  """id(layer) → boolean mask over the output channels of its single call (True: unread), for
  the kernel and BatchNormalization layers of a Functional model that have unread channels."""
  if not getattr(model, "_is_graph_network", False):
    return {}
  ops = graph.graph_ops(model)
  weights = {id(op.layer): fold.kernel_weights(op.layer) for op in ops if op.kind in _KERNEL_KINDS}
  analysis = graph.analyze(model, ops, weights, folded=set())
  read = set()
  for op in analysis.sinks:
    x = analysis.channels[id(op.inputs[0])]
    unused, _ = graph.sink_absorption(op, weights[id(op.layer)], x.const)
    read.update(analysis.uf.roots(x.ids[~unused]).tolist())
  masks = {}
  for op in ops:
    if op.kind not in _KERNEL_KINDS + ("bn",):
      continue
    key = id(op.outputs[0])
    roots = analysis.uf.roots(analysis.channels[key].ids)
    mask = ~analysis.keep[key] & ~np.isin(roots, list(read))
    if mask.any():
      masks[id(op.layer)] = mask
  return masks


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

    def zero(variable, mask=mask):
      if variable is not None:
        values = stored.get(id(variable))
        stored[id(variable)] = _zeroed(variable.numpy() if values is None else values, mask, -1)

    if isinstance(layer, tf.keras.layers.BatchNormalization):
      for variable in (layer.gamma, layer.beta, layer.moving_mean):
        zero(variable)
      continue
    zero(layer.bias)
    depthwise = fold.kernel_kind(layer) == "depthwise"
    if is_lilnetx_layer(layer):
      a, b, _ = layer.latent_variable.shape
      latent_mask = mask.reshape(a, b) if depthwise else np.broadcast_to(mask, (a, b))
      latents = layer.integer_latent.numpy()
      latents[latent_mask] = 0
      stored[id(layer.latent_variable)] = latents
    elif depthwise:   # kernel (kh, kw, C, M); output channel i·M + m
      kernel = layer.depthwise_kernel.numpy()
      flat = _zeroed(kernel.reshape(kernel.shape[0], kernel.shape[1], -1), mask, axis=-1)
      stored[id(layer.depthwise_kernel)] = flat.reshape(kernel.shape)
    else:
      zero(layer.kernel)
  return stored
