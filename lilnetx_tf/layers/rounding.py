"""Straight-through rounding and decoding: what a layer's forward pass does to its latent."""

import tensorflow as tf

__all__ = ["round_and_decode_st"]


@tf.custom_gradient
def round_and_decode_st(x: tf.Tensor, step: tf.Tensor, decoder: tf.Tensor) -> tf.Tensor:
  """decode(round(x / step)), with the gradient of decode(x / step) in `x` (straight through
  the rounding) and the decoder's own; `step` is a fixed scale and gets none.

  `x` is a latent variable (..., k), `decoder` the group's Ψ: a scalar, or a (k, k) matrix
  applied to the last axis. Written out, the backward pass is one multiply (or matmul) for `x`
  and one dot product for the decoder: automatic differentiation took a multiply and a
  division for `x` and, for a scalar decoder, a multiply and a sum over every latent.
  Compiles under XLA and runs under `tf.distribute` (tested).
  """
  rounded = tf.round(x / step)
  if decoder.shape.rank == 0:
    def scalar_grad(upstream):
      flat = lambda t: tf.reshape(t, (1, -1))
      decoder_grad = tf.linalg.matmul(flat(upstream), flat(rounded), transpose_b=True)
      return upstream * (decoder / step), None, tf.reshape(decoder_grad, ())

    return rounded * decoder, scalar_grad

  k = int(decoder.shape[-1])

  def matrix_grad(upstream):
    rows = tf.reshape(upstream, (-1, k))
    x_grad = tf.linalg.matmul(rows, decoder / step, transpose_b=True)
    decoder_grad = tf.linalg.matmul(tf.reshape(rounded, (-1, k)), rows, transpose_a=True)
    return tf.reshape(x_grad, tf.shape(x)), None, decoder_grad

  return tf.linalg.matmul(rounded, decoder), matrix_grad
