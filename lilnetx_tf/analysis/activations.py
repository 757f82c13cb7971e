"""Keras activations the channel analysis can push constants through."""

from typing import Optional

import numpy as np
import tensorflow as tf

__all__ = ["name", "apply"]

_ELEMENTWISE = {
    "linear", "relu", "relu6", "sigmoid", "hard_sigmoid", "tanh", "swish", "silu", "gelu",
    "elu", "selu", "softplus", "softsign", "exponential", "leaky_relu", "mish", "hard_silu",
    "hard_swish"}


def name(activation) -> Optional[str]:
  """Name of a Keras activation function, or None if it is not a known elementwise one."""
  try:
    serialized = tf.keras.activations.serialize(activation)
  except (ValueError, TypeError):
    return None
  if isinstance(serialized, dict):
    serialized = serialized.get("config", serialized.get("class_name"))
  return serialized if serialized in _ELEMENTWISE else None


def apply(activation, values: np.ndarray) -> np.ndarray:
  """activation(values) elementwise, NaN (not a constant) staying NaN."""
  known = np.isfinite(values)
  out = np.asarray(activation(tf.constant(np.where(known, values, 0.0)[None], tf.float32)))
  return np.where(known, out[0].astype(np.float64), np.nan)
