"""Decoded weights of conv/dense layers and BatchNorm folding.

`kernel_kind(layer)` tells which layers are kernel layers we understand: exact stock
`Conv2D` (ungrouped, channels_last), `DepthwiseConv2D` (channels_last), `Dense`, and their
LilNetX namesakes, whose `.kernel` / `.depthwise_kernel` properties decode the integer latents.

A BatchNormalization is folded into the kernel layer before it when
  * the BN normalizes the last axis and is called once,
  * its input is the output of a kernel layer called once, with a linear activation,
  * that output feeds nothing but the BN (and is not a model output).
Folding: s = γ / √(σ² + ε); W'[..., o] = W[..., o]·s[o]; b' = (b − μ)·s + β (exact in real
arithmetic; float32 rounding only).
"""

from typing import Optional

import numpy as np
import tensorflow as tf

from lilnetx_tf.layers import is_lilnetx_layer

_ELEMENTWISE_ACTIVATIONS = {
    "linear", "relu", "relu6", "sigmoid", "hard_sigmoid", "tanh", "swish", "silu", "gelu",
    "elu", "selu", "softplus", "softsign", "exponential", "leaky_relu", "mish", "hard_silu",
    "hard_swish"}


def kernel_kind(layer) -> Optional[str]:
  """'conv', 'depthwise', 'dense' or None (not a kernel layer we can slim)."""
  stock = type(layer) in (tf.keras.layers.Conv2D, tf.keras.layers.DepthwiseConv2D,
                          tf.keras.layers.Dense)
  if not (stock or is_lilnetx_layer(layer)):
    return None
  if isinstance(layer, tf.keras.layers.DepthwiseConv2D):
    return "depthwise" if layer.data_format == "channels_last" else None
  if isinstance(layer, tf.keras.layers.Conv2D):
    ok = layer.data_format == "channels_last" and layer.groups == 1
    return "conv" if ok else None
  if isinstance(layer, tf.keras.layers.Dense):
    return "dense"
  return None


def activation_name(activation) -> Optional[str]:
  """Name of a Keras activation function, or None if it is not a known elementwise one."""
  try:
    name = tf.keras.activations.serialize(activation)
  except (ValueError, TypeError):
    return None
  if isinstance(name, dict):
    name = name.get("config", name.get("class_name"))
  return name if name in _ELEMENTWISE_ACTIVATIONS else None


def kernel_weights(layer) -> dict:
  """{'kernel', 'bias'} of a kernel layer as float32 numpy (bias zeros if the layer has none)."""
  depthwise = isinstance(layer, tf.keras.layers.DepthwiseConv2D)   # in any data format
  kernel = layer.depthwise_kernel if depthwise else layer.kernel
  kernel = np.array(tf.convert_to_tensor(kernel), dtype=np.float32)
  channels = kernel.shape[-2] * kernel.shape[-1] if depthwise else kernel.shape[-1]
  bias = layer.bias
  bias = (np.zeros(channels, np.float32) if bias is None
          else np.array(tf.convert_to_tensor(bias), dtype=np.float32))
  return dict(kernel=kernel, bias=bias, had_bias=layer.bias is not None)


def bn_parameters(layer: tf.keras.layers.BatchNormalization) -> dict:
  """γ, β, μ, σ² and ε of a BatchNormalization as float32 numpy."""
  mean = np.array(layer.moving_mean.numpy(), np.float32)
  ones = np.ones_like(mean)
  return dict(
      gamma=np.array(layer.gamma.numpy(), np.float32) if layer.gamma is not None else ones,
      beta=(np.array(layer.beta.numpy(), np.float32) if layer.beta is not None
            else np.zeros_like(mean)),
      mean=mean, var=np.array(layer.moving_variance.numpy(), np.float32),
      epsilon=float(layer.epsilon))


def bn_scale_shift(layer) -> tuple[np.ndarray, np.ndarray]:
  """BN at inference as y = x·scale + shift (float64 for accuracy)."""
  p = bn_parameters(layer)
  scale = p["gamma"].astype(np.float64) / np.sqrt(p["var"].astype(np.float64) + p["epsilon"])
  shift = p["beta"] - p["mean"].astype(np.float64) * scale
  return scale, shift


def bn_is_last_axis(layer, rank: int) -> bool:
  axis = layer.axis
  axis = list(axis) if isinstance(axis, (list, tuple)) else [axis]
  return len(axis) == 1 and axis[0] in (-1, rank - 1)


def fold_bn(weights: dict, kind: str, bn_layer) -> dict:
  """The kernel-layer weights with `bn_layer` (applied to its output) folded in."""
  scale, shift = bn_scale_shift(bn_layer)
  kernel = weights["kernel"].astype(np.float64)
  if kind == "depthwise":
    kh, kw, c, m = kernel.shape
    kernel = kernel * scale.reshape(c, m)
  else:
    kernel = kernel * scale
  bias = weights["bias"].astype(np.float64) * scale + shift
  return dict(kernel=kernel.astype(np.float32), bias=bias.astype(np.float32), had_bias=True)
