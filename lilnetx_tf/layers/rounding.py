"""Straight-through rounding: `round` in the forward pass, identity in the backward pass."""

import tensorflow as tf

__all__ = ["divide_and_round_st"]


@tf.custom_gradient
def divide_and_round_st(x: tf.Tensor, step: tf.Tensor) -> tf.Tensor:
  """round(x / step) with the gradient of x / step in `x` (straight through the rounding).

  What a layer's forward pass does to its latent variable, as two ops forward and one backward
  (`x / step + stop_gradient(round(x / step) - x / step)` takes four and two). `step` gets no
  gradient: it is a fixed scale. Compiles under XLA and runs under `tf.distribute` (tested).
  """
  inverse = 1.0 / step

  def grad(upstream):
    return upstream * inverse, None

  return tf.round(x / step), grad
