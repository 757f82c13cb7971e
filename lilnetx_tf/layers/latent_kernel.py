"""`LatentKernel`: one latent kernel of a layer that has several (a separable convolution's
depthwise and pointwise kernels).

A LilNetX layer such as `Conv2D` *is* its latent kernel (`base.LatentKernelMixin` mixed into the
Keras class). A layer with two kernels in two groups holds two `LatentKernel` sublayers instead;
they are LilNetX layers to everything that walks a model's latents (`lilnetx_layers`: the
model file, `stats`, the density fit, the optimizers), and the owner, which runs the Keras
forward pass on their decoded kernels, settles their registry and adds their penalties.
"""

from typing import Optional

import tensorflow as tf

from lilnetx_tf import errors
from lilnetx_tf.layers import base

__all__ = ["LatentKernel"]


@tf.keras.utils.register_keras_serializable(package="lilnetx_tf")
class LatentKernel(base.LatentKernelMixin, tf.keras.layers.Layer):
  """A latent kernel held by another layer, never called on data.

  Args:
    channels_tied: True for a depthwise kernel (k…, in, multiplier), whose output channel
      i·M + m reads input channel i only (`stats` counts its channels that way).
    Plus the LilNetX arguments of `lnx.Conv2D` and the Keras `Layer` ones.
  """

  _REPLACED_BY_LATENT = ()

  def __init__(self, channels_tied: bool = False, **kwargs):
    super().__init__(**kwargs)
    self.channels_tied = bool(channels_tied)

  def build_kernel(self, kernel_shape: tuple, fan: int, positions: Optional[int]) -> None:
    """Creates the latent for a Keras kernel of shape (k…, in, out) applied at `positions`."""
    *spatial, slices_in, slices_out = (int(d) for d in kernel_shape)
    # Built inside the owner's build: a scope of its own keeps the two kernels' variables (and
    # their groups', if made here) apart by name, which Keras's HDF5 writer needs.
    with tf.name_scope(self.name):
      self._build_latent(slices_in, slices_out, tuple(spatial), fan=fan,
                         output_positions=positions)
    tf.keras.layers.Layer.build(self, None)

  def call(self, inputs, training=None):
    raise errors.UnsupportedLayerError(
        "A LatentKernel is not called on data; the layer that holds it decodes it.")

  @property
  def kernel(self) -> tf.Tensor:
    """The decoded kernel (k…, in, out) in the owner's compute dtype."""
    return self._decoded_kernel()

  def get_config(self) -> dict:
    return {**super().get_config(), "channels_tied": self.channels_tied}
