"""Straight-through rounding: `round` in the forward pass, identity in the backward pass."""

import tensorflow as tf


def round_st(x: tf.Tensor) -> tf.Tensor:
  """Rounds `x` to the nearest integer with a straight-through (identity) gradient.

  Written with `stop_gradient` rather than `tf.custom_gradient` so that it compiles under XLA
  and distributes without special handling.
  """
  return x + tf.stop_gradient(tf.round(x) - x)
