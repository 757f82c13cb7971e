"""LilNetX `Embedding`: a drop-in `tf.keras.layers.Embedding` whose table is a latent.

Layout: the table (vocabulary, dim) is kept as vocabulary·dim scalar slices, shape
(vocabulary, dim, 1), decoded by the scalar decoder of the model's `dense` group (one shared
gain, as for Dense and EinsumDense kernels). The group lasso is taken over whole rows: a token
the data never uses has no task gradient, so its row goes to zero as one unit, and the model file
codes a dead row as one dead input channel (about a bit). Rows as slices with a dim×dim decoder
would price the same rows but add a dim² decoder per model (262,144 floats at dim 512) and a
density with dim channels, more than the table of a small model.
"""

import tensorflow as tf

from lilnetx_tf import errors
from lilnetx_tf.layers import base
from lilnetx_tf import validation

__all__ = ["Embedding"]


@tf.keras.utils.register_keras_serializable(package="lilnetx_tf")
class Embedding(base.LatentKernelMixin, tf.keras.layers.Embedding):
  """`tf.keras.layers.Embedding` whose table is a LilNetX latent (see `lilnetx_tf.layers.base`).

  Each token row is one unit of the group lasso (`slice_weight`): unused tokens go to zero.
  Takes every Keras argument except `embeddings_regularizer`, `embeddings_constraint` and
  `sparse` inputs; `embeddings_initializer` is accepted and ignored (latents start with the
  LilNetX 'boundary' rule). Adds the LilNetX arguments of `lnx.Dense`.
  """

  _REPLACED_BY_LATENT = ("embeddings_regularizer", "embeddings_constraint")
  _is_dense = True
  KERNEL_NAME = "embeddings"

  def __init__(self, input_dim, output_dim, *args, **kwargs):
    validation.positive_int("input_dim", input_dim)
    validation.positive_int("output_dim", output_dim)
    super().__init__(input_dim, output_dim, *args, **kwargs)
    if self.sparse:
      raise errors.UnsupportedLayerError(
          "lilnetx_tf.Embedding does not support `sparse=True` (SparseTensor inputs).")

  def build(self, input_shape=None):
    # Kaiming fan: one row is read per token, so the fan is the row width (variance 2 / dim).
    self._build_latent(self.input_dim, self.output_dim, (), fan=self.output_dim,
                       output_positions=None)
    tf.keras.layers.Layer.build(self, input_shape)  # Records the shape for build_config.

  def _lasso_units(self, latent: tf.Tensor) -> tf.Tensor:
    """One unit per token row: the row, not each of its values, is the structured unit."""
    return tf.reshape(latent, (latent.shape[0], 1, -1))

  @property
  def embeddings(self) -> tf.Tensor:
    """The decoded table, shape (input_dim, output_dim)."""
    return self._decoded_kernel()

  def stock_weights(self) -> list:
    """The decoded table: the weights of the stock Keras layer (what `lnx.slim` decodes it to)."""
    return [self.embeddings.numpy()]
