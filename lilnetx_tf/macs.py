"""Multiply-accumulates of Keras kernel layers, read off the shapes of their calls, and the
parameter count of a model as a plain Keras model stores it.

One count for every kind of Keras layer with a kernel: Conv1D/2D/3D (grouped too), their
transposed, depthwise and separable variants, LocallyConnected1D/2D and Dense (also on inputs
with more than two axes), in either data format, EinsumDense (any equation) and
MultiHeadAttention (projections and attention products); LilNetX layers count as their Keras
namesakes with every decoded weight (`stats` also gives their counts without zero slices). A
layer called several times counts every call whose shapes are known (a layer of a Functional or
Sequential model, or of one nested in it); calls with unknown sizes, and other layers, count 0.
"""

import math
from typing import Optional

import tensorflow as tf

from lilnetx_tf.layers import ParameterGroup, kernel_latents
from lilnetx_tf.layers.attention import PROJECTIONS
from lilnetx_tf.layers.einsum_dense import split_equation

__all__ = ["KERNEL_LAYERS", "kernel_values", "layer_macs", "model_macs", "model_parameters"]

_TRANSPOSED = (tf.keras.layers.Conv1DTranspose, tf.keras.layers.Conv2DTranspose,
               tf.keras.layers.Conv3DTranspose)
_SEPARABLE = (tf.keras.layers.SeparableConv1D, tf.keras.layers.SeparableConv2D)
_DEPTHWISE = (tf.keras.layers.DepthwiseConv1D, tf.keras.layers.DepthwiseConv2D)
_LOCAL = (tf.keras.layers.LocallyConnected1D, tf.keras.layers.LocallyConnected2D)
_CONV = (tf.keras.layers.Conv1D, tf.keras.layers.Conv2D, tf.keras.layers.Conv3D)
KERNEL_LAYERS = _TRANSPOSED + _SEPARABLE + _DEPTHWISE + _LOCAL + _CONV + (
    tf.keras.layers.Dense, tf.keras.layers.EinsumDense, tf.keras.layers.MultiHeadAttention)


def _shape(tensors) -> tf.TensorShape:
  return tf.TensorShape(tf.nest.flatten(tensors)[0].shape)


def _channels_first(layer) -> bool:
  return getattr(layer, "data_format", "channels_last") == "channels_first"


def _positions(layer, shape: tf.TensorShape) -> Optional[int]:
  """The number of positions (all axes but batch and channels) of `shape`, or None."""
  if shape.rank is None:
    return None
  dims = shape.as_list()[1:]
  inner = dims[1:] if _channels_first(layer) else dims[:-1]
  return None if None in inner else math.prod(inner)


def _channels(layer, shape: tf.TensorShape) -> Optional[int]:
  return shape[1] if _channels_first(layer) else shape[-1]


def kernel_values(layer, name: str = "kernel") -> int:
  """The number of values of the layer's kernel `name` (of a LilNetX layer: of its latent,
  which has as many, without decoding it)."""
  for latent, path in kernel_latents(layer):
    if path == name:
      return math.prod(latent.latent_variable.shape)
  return math.prod(getattr(layer, name).shape)


def _einsum_macs(layer, outputs: tf.TensorShape) -> Optional[int]:
  """Output values per example times the kernel values summed into each (its summed axes)."""
  _, kernel, output = split_equation(layer.equation)
  shape = getattr(layer, "_kernel_shape", None) or layer.kernel.shape   # LilNetX: not decoded
  summed = math.prod(int(d) for d, letter in zip(shape, kernel) if letter not in output)
  values = outputs.as_list()[1:] if outputs.rank is not None else [None]
  return None if None in values else math.prod(values) * summed


def _attention_macs(layer, node) -> Optional[int]:
  """The four projections and the two attention products (scores, weighted values) of one
  MultiHeadAttention call with query length T and key/value length S."""
  args = list(node.call_args) + [None] * 3
  query = node.call_kwargs.get("query", args[0])
  value = node.call_kwargs.get("value", args[1])
  positions = [_positions(layer, _shape(t)) for t in (query, value)]
  if None in positions:
    return None
  t, s = positions
  q, k, v, o = (kernel_values(getattr(layer, name)) for name in PROJECTIONS)
  products = t * s * layer._num_heads * (layer._key_dim + layer._value_dim)
  return t * (q + o) + s * (k + v) + products


def _call_macs(layer, inputs: tf.TensorShape, outputs: tf.TensorShape) -> Optional[int]:
  """MACs per example of one call of a kernel layer, or None if a size is unknown."""
  if isinstance(layer, tf.keras.layers.EinsumDense):
    return _einsum_macs(layer, outputs)
  if isinstance(layer, _TRANSPOSED):   # every input position scatters the whole kernel
    positions = _positions(layer, inputs)
    per_position = kernel_values(layer)
  elif isinstance(layer, _SEPARABLE):
    positions = _positions(layer, outputs)
    per_position = (kernel_values(layer, "depthwise_kernel")
                    + kernel_values(layer, "pointwise_kernel"))
  elif isinstance(layer, _DEPTHWISE):
    positions = _positions(layer, outputs)
    per_position = kernel_values(layer, "depthwise_kernel")
  elif isinstance(layer, _LOCAL):      # its own kernel per position, however it is stored
    positions = _positions(layer, outputs)
    channels = _channels(layer, inputs)
    per_position = (None if channels is None
                    else math.prod(layer.kernel_size) * channels * layer.filters)
  else:                                # Conv (grouped too: the kernel holds in / groups) or Dense
    positions = _positions(layer, outputs)
    per_position = kernel_values(layer)
  return None if positions is None or per_position is None else positions * per_position


def layer_macs(layer) -> int:
  """MACs per example of `layer` over its calls with known sizes (0 for non-kernel layers)."""
  if not isinstance(layer, KERNEL_LAYERS) or not layer.built:
    return 0
  total = 0
  for node in layer._inbound_nodes:
    if not node.keras_inputs:
      continue
    if isinstance(layer, tf.keras.layers.MultiHeadAttention):
      macs = _attention_macs(layer, node)
    else:
      macs = _call_macs(layer, _shape(node.keras_inputs), _shape(node.outputs))
    total += macs or 0
  return int(total)


def model_macs(model: tf.keras.Model) -> int:
  """MACs per example of every kernel layer of `model`, nested models included."""
  return sum(layer_macs(layer) for layer in model._flatten_layers(include_self=False))


def model_parameters(model: tf.keras.Model) -> int:
  """Parameters of the layers as a plain model stores them (LilNetX layers count their decoded
  kernel and bias, not latents, decoders or densities)."""
  total = 0
  for layer in model._flatten_layers(include_self=False):
    if isinstance(layer, (tf.keras.Model, ParameterGroup)):
      continue
    # Its own weights: its sublayers' (a separable's `LatentKernel`s, an attention's
    # projections) are counted where the walk visits them, and a latent has as many values
    # as the kernel it decodes to. Variables at their value's size (a TF-IDF layer's idf
    # weights have a dynamic shape); a lookup layer's vocabulary (a weight handler, not a
    # variable) is no parameter.
    own = layer._trainable_weights + layer._non_trainable_weights  # pylint: disable=W0212
    total += sum(int(tf.size(w)) for w in own if isinstance(w, tf.Variable))
  return int(total)
