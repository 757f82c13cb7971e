"""What a layer call is to the channel analysis: its `OpKind`, found from the layer.

  * kernel layers (`CONV`, `DEPTHWISE`, `TRANSPOSED`, `SEPARABLE`, `DENSE`): stock or LilNetX
    Conv1D/2D/3D (ungrouped), DepthwiseConv1D/2D, Conv1D/2D/3DTranspose, SeparableConv1D/2D
    and Dense in channels_last layout, called once on one input;
  * `BN`: a BatchNormalization of the last axis, called once;
  * `ELEMENTWISE`: dropout and noise layers, activations, scalar Rescaling;
  * `POOL`: pooling, cropping and upsampling, 1-D to 3-D (channels_last);
  * `ZEROPAD`: ZeroPadding1D/2D/3D (channels_last); `CHANNELPAD`: `lnx.layers.ChannelPadding`;
  * `MERGE`: Add / Subtract / Multiply / Average / Maximum / Minimum of equal widths;
  * `CONCAT`: Concatenate on the last axis; `FLATTEN`: Flatten of a known (…, C) shape;
  * `RESHAPE`: a Reshape that keeps the last axis;
  * `EMBEDDING`: a stock or LilNetX Embedding called once (its output dims are fresh channels,
    all-zero columns constant 0);
  * `ATTENTION`: a stock or LilNetX MultiHeadAttention called once with one output (its
    channels are kept; its dead heads go, `analysis.heads`);
  * `INPUT`, `MODEL` (a nested model), and `BARRIER`: anything else (its channels are kept).
"""

import enum
from typing import Optional

import numpy as np
import tensorflow as tf

from lilnetx_tf.analysis import activations
from lilnetx_tf.layers import attention
from lilnetx_tf.layers import channel_padding
from lilnetx_tf.layers import embedding
from lilnetx_tf.layers import kernel_latents

__all__ = ["OpKind", "KERNEL_KINDS", "classify", "kernel_family", "kernel_kind", "channels"]

L = tf.keras.layers


class OpKind(enum.Enum):
  """The kinds of layer calls the channel analysis tells apart."""
  INPUT = "input"
  MODEL = "model"
  BARRIER = "barrier"
  CONV = "conv"
  DEPTHWISE = "depthwise"
  DENSE = "dense"
  TRANSPOSED = "transposed"
  SEPARABLE = "separable"
  BN = "bn"
  ELEMENTWISE = "elementwise"
  POOL = "pool"
  ZEROPAD = "zeropad"
  CHANNELPAD = "channelpad"
  MERGE = "merge"
  CONCAT = "concat"
  FLATTEN = "flatten"
  RESHAPE = "reshape"
  ATTENTION = "attention"
  EMBEDDING = "embedding"

  @property
  def is_kernel(self) -> bool:
    return self in KERNEL_KINDS


KERNEL_KINDS = frozenset({OpKind.CONV, OpKind.DEPTHWISE, OpKind.DENSE, OpKind.TRANSPOSED,
                          OpKind.SEPARABLE})

_IDENTITY_LAYERS = (L.Dropout, L.GaussianNoise, L.GaussianDropout, L.AlphaDropout,
                    L.ActivityRegularization, L.SpatialDropout1D, L.SpatialDropout2D,
                    L.ReLU, L.ELU, L.LeakyReLU, L.ThresholdedReLU)
_POOL_LAYERS = (L.MaxPooling2D, L.AveragePooling2D, L.GlobalAveragePooling2D,
                L.GlobalMaxPooling2D, L.MaxPooling1D, L.AveragePooling1D,
                L.GlobalAveragePooling1D, L.GlobalMaxPooling1D, L.Cropping2D, L.UpSampling2D,
                L.MaxPooling3D, L.AveragePooling3D, L.GlobalAveragePooling3D,
                L.GlobalMaxPooling3D, L.Cropping1D, L.Cropping3D, L.UpSampling1D,
                L.UpSampling3D)
_ZEROPAD_LAYERS = (L.ZeroPadding1D, L.ZeroPadding2D, L.ZeroPadding3D)
_MERGE_LAYERS = (L.Add, L.Subtract, L.Multiply, L.Average, L.Maximum, L.Minimum)
# The kernel families, most specific class first (Keras' Conv2DTranspose is a Conv2D).
_FAMILIES = (
    ((L.Conv1DTranspose, L.Conv2DTranspose, L.Conv3DTranspose), OpKind.TRANSPOSED),
    ((L.SeparableConv1D, L.SeparableConv2D), OpKind.SEPARABLE),
    ((L.DepthwiseConv1D, L.DepthwiseConv2D), OpKind.DEPTHWISE),
    ((L.Conv1D, L.Conv2D, L.Conv3D), OpKind.CONV),
    ((L.Dense,), OpKind.DENSE))
_STOCK_KERNEL_LAYERS = tuple(cls for classes, _ in _FAMILIES for cls in classes)
# Exact types, stock or LilNetX: a subclass may compute another function of the same weights.
_ATTENTION_LAYERS = (L.MultiHeadAttention, attention.MultiHeadAttention)
_EMBEDDING_LAYERS = (L.Embedding, embedding.Embedding)


def channels(tensor) -> int:
  """Width of the last axis of a KerasTensor (0 when unknown or scalar)."""
  return int(tensor.shape[-1]) if tensor.shape.rank and tensor.shape[-1] is not None else 0


def _channels_last(layer) -> bool:
  return getattr(layer, "data_format", "channels_last") in ("channels_last", None)


def kernel_family(layer) -> Optional[OpKind]:
  """The kernel kind of a stock or LilNetX kernel layer by its class alone (its kernel layout,
  whatever its data format or groups), else None."""
  if not (type(layer) in _STOCK_KERNEL_LAYERS or kernel_latents(layer)):
    return None
  return next((kind for classes, kind in _FAMILIES if isinstance(layer, classes)), None)


def kernel_kind(layer) -> Optional[OpKind]:
  """The kernel kind of a kernel layer the analysis understands (channels_last, ungrouped),
  else None."""
  kind = kernel_family(layer)
  if kind is None or kind is OpKind.DENSE:
    return kind
  return kind if _channels_last(layer) and getattr(layer, "groups", 1) == 1 else None


def bn_is_last_axis(layer: L.BatchNormalization, rank: int) -> bool:
  axis = layer.axis if isinstance(layer.axis, (list, tuple)) else [layer.axis]
  return len(axis) == 1 and axis[0] in (-1, rank - 1)


def _single_output_kind(layer, inputs: list, output, calls: int) -> OpKind:
  """The kind of a call with one output and known channel counts everywhere."""
  rank = output.shape.rank
  kind = kernel_kind(layer)
  if kind is not None:
    return kind if calls == 1 and len(inputs) == 1 else OpKind.BARRIER
  if type(layer) is L.BatchNormalization:
    return OpKind.BN if calls == 1 and bn_is_last_axis(layer, rank) else OpKind.BARRIER
  if isinstance(layer, _IDENTITY_LAYERS):
    return OpKind.ELEMENTWISE
  if type(layer) is L.Activation:
    return OpKind.ELEMENTWISE if activations.name(layer.activation) else OpKind.BARRIER
  if type(layer) is L.Rescaling:
    scalar = np.ndim(layer.scale) == 0 and np.ndim(layer.offset) == 0
    return OpKind.ELEMENTWISE if scalar else OpKind.BARRIER
  if isinstance(layer, _POOL_LAYERS):
    return OpKind.POOL if _channels_last(layer) else OpKind.BARRIER
  if type(layer) in _ZEROPAD_LAYERS:
    return OpKind.ZEROPAD if _channels_last(layer) else OpKind.BARRIER
  if type(layer) is channel_padding.ChannelPadding:
    return OpKind.CHANNELPAD
  if isinstance(layer, _MERGE_LAYERS):
    same = all(channels(t) == channels(output) for t in inputs)
    return OpKind.MERGE if same and len(inputs) > 1 else OpKind.BARRIER
  if type(layer) is L.Concatenate:
    last = layer.axis in (-1, rank - 1)
    return OpKind.CONCAT if last and len(inputs) > 1 else OpKind.BARRIER
  if type(layer) is L.Flatten:
    inner = inputs[0].shape[1:-1].as_list()
    return OpKind.FLATTEN if _channels_last(layer) and None not in inner else OpKind.BARRIER
  if type(layer) is L.Reshape:
    return OpKind.RESHAPE if channels(inputs[0]) == channels(output) else OpKind.BARRIER
  return OpKind.BARRIER


def classify(layer, inputs: list, outputs: list, calls: int) -> OpKind:
  """The kind of one call of `layer` (called `calls` times in its model)."""
  if isinstance(layer, L.InputLayer):
    return OpKind.INPUT
  if isinstance(layer, tf.keras.Model):
    return OpKind.MODEL
  if type(layer) in _ATTENTION_LAYERS:   # its mask input may have unknown widths
    single = calls == 1 and len(outputs) == 1 and channels(outputs[0])
    return OpKind.ATTENTION if single else OpKind.BARRIER
  if type(layer) in _EMBEDDING_LAYERS:   # its inputs are ids, not channels
    single = calls == 1 and len(outputs) == 1 and channels(outputs[0])
    return OpKind.EMBEDDING if single else OpKind.BARRIER
  if len(outputs) != 1 or any(channels(t) == 0 for t in inputs + outputs):
    return OpKind.BARRIER
  return _single_output_kind(layer, inputs, outputs[0], calls)
