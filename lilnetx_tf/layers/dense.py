"""LilNetX `Dense`: a drop-in `tf.keras.layers.Dense` with a latent kernel."""

import math

import tensorflow as tf

from lilnetx_tf import errors
from lilnetx_tf.layers import base

__all__ = ["Dense"]


@tf.keras.utils.register_keras_serializable(package="lilnetx_tf")
class Dense(base.LatentKernelMixin, tf.keras.layers.Dense):
  """`tf.keras.layers.Dense` whose kernel is a LilNetX latent (see `lilnetx_tf.layers.base`).

  Every weight is a slice of its own, decoded by the group's scalar decoder. Takes every Keras
  argument except `kernel_regularizer` and `kernel_constraint`; adds the LilNetX arguments
  `rate_weight`, `slice_weight`, `l2_weight`, `boundary` and `density_learning_rate`.
  """

  _is_dense = True

  def build(self, input_shape):
    input_shape = tf.TensorShape(input_shape)
    last_dim = input_shape[-1]
    if last_dim is None:
      raise errors.InvalidArgumentError(
          f"The last dimension of the inputs to Dense must be known: {input_shape}.")
    inner = input_shape[1:-1].as_list()
    self._build_latent(last_dim, self.units, (), fan=last_dim,
                       output_positions=None if None in inner else math.prod(inner))
    self.bias = self.add_weight(
        "bias", shape=(self.units,), initializer=self.bias_initializer,
        regularizer=self.bias_regularizer, constraint=self.bias_constraint, dtype=self.dtype,
        trainable=True) if self.use_bias else None
    self.input_spec = tf.keras.layers.InputSpec(min_ndim=2, axes={-1: last_dim})
    tf.keras.layers.Layer.build(self, input_shape)  # Records the shape for build_config.

  @property
  def kernel(self) -> tf.Tensor:
    """The decoded kernel, shape (in, units)."""
    return self._decoded_kernel()
