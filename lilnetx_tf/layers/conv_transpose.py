"""LilNetX transposed convolutions: drop-in `Conv1DTranspose`/`Conv2DTranspose`/`Conv3DTranspose`.

Keras stores a transposed kernel as (k…, out, in); the latent is (in, out, k₁·…·k_r) as for
every LilNetX layer (`_CHANNELS_SWAPPED`), so slice (i, o) is still the weights from input
channel i to output channel o, and a transposed conv shares its group ('conv3x3', ...) with the
ordinary convolutions of that kernel size.
"""

import math

import tensorflow as tf

from lilnetx_tf.layers import base
from lilnetx_tf.layers import conv

__all__ = ["Conv1DTranspose", "Conv2DTranspose", "Conv3DTranspose"]


def transposed_fan(kernel_size: tuple, strides: tuple, in_channels: int) -> int:
  """Inputs each output value reads: a transposed conv with stride s lands ⌈k / s⌉ taps of each
  input channel on an output position, per spatial axis (the Kaiming fan_in)."""
  return in_channels * math.prod(-(-k // s) for k, s in zip(kernel_size, strides))


class _LatentConvTranspose(base.LatentKernelMixin):
  """A Keras transposed convolution (mixed in before it) with a latent kernel."""

  _CHANNELS_SWAPPED = True

  def build(self, input_shape):
    input_shape = tf.TensorShape(input_shape)
    input_dim = conv.input_channels(self, input_shape)
    channel_axis = self._get_channel_axis()
    size = tuple(self.kernel_size)
    # MACs: every input position scatters the whole kernel, so the positions are the input's.
    self._build_latent(input_dim, self.filters, size,
                       fan=transposed_fan(size, tuple(self.strides), input_dim),
                       output_positions=conv.positions(self, input_shape))
    conv.build_bias(self, self.filters)
    self.input_spec = tf.keras.layers.InputSpec(ndim=self.rank + 2,
                                                axes={channel_axis: input_dim})
    tf.keras.layers.Layer.build(self, input_shape)  # Records the shape for build_config.

  @property
  def kernel(self) -> tf.Tensor:
    """The decoded kernel in Keras' layout (k…, out, in), as the forward pass uses it."""
    return self._decoded_kernel()


_ARGUMENTS = """Takes every Keras argument except `kernel_regularizer` and `kernel_constraint`
  (`kernel_initializer` is ignored); adds the LilNetX arguments of `Conv2D`."""


@tf.keras.utils.register_keras_serializable(package="lilnetx_tf")
class Conv1DTranspose(_LatentConvTranspose, tf.keras.layers.Conv1DTranspose):
  __doc__ = "`tf.keras.layers.Conv1DTranspose` with a LilNetX latent kernel.\n\n  " + _ARGUMENTS


@tf.keras.utils.register_keras_serializable(package="lilnetx_tf")
class Conv2DTranspose(_LatentConvTranspose, tf.keras.layers.Conv2DTranspose):
  __doc__ = "`tf.keras.layers.Conv2DTranspose` with a LilNetX latent kernel.\n\n  " + _ARGUMENTS


@tf.keras.utils.register_keras_serializable(package="lilnetx_tf")
class Conv3DTranspose(_LatentConvTranspose, tf.keras.layers.Conv3DTranspose):
  __doc__ = "`tf.keras.layers.Conv3DTranspose` with a LilNetX latent kernel.\n\n  " + _ARGUMENTS
