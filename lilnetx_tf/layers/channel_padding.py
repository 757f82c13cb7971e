"""`ChannelPadding`: zeros appended before and after the channels (last axis) of a tensor.

The parameter-free ("option A") shortcut of the CIFAR ResNets (He et al. 2016) widens its input
this way instead of with a 1×1 convolution:

    shortcut = tf.keras.layers.MaxPooling2D(1, strides=2)(x)    # subsample
    shortcut = lnx.layers.ChannelPadding((8, 8))(shortcut)      # 16 -> 32 channels

Keras has no stock layer for it (`ZeroPadding2D` pads the spatial axes only). The exporter knows
the padded channels are constant zeros, so channels stay removable through it.
"""

from typing import Union

import tensorflow as tf

from lilnetx_tf import errors

__all__ = ["ChannelPadding"]


@tf.keras.utils.register_keras_serializable(package="lilnetx_tf")
class ChannelPadding(tf.keras.layers.Layer):
  """Pads the last axis with `padding[0]` zero channels in front and `padding[1]` behind.

  Args:
    padding: an int (the same number on both sides) or a pair of non-negative ints.
  """

  def __init__(self, padding: Union[int, tuple[int, int]] = 1, **kwargs):
    super().__init__(**kwargs)
    pair = (padding, padding) if isinstance(padding, int) else tuple(padding)
    if len(pair) != 2 or any(not isinstance(p, int) or p < 0 for p in pair):
      raise errors.InvalidArgumentError(
          f"`padding` must be a non-negative int or a pair of them, got {padding!r}.")
    self.padding = pair

  def call(self, inputs: tf.Tensor) -> tf.Tensor:
    rank = inputs.shape.rank
    return tf.pad(inputs, [[0, 0]] * (rank - 1) + [list(self.padding)])

  def compute_output_shape(self, input_shape):
    shape = tf.TensorShape(input_shape).as_list()
    if shape[-1] is not None:
      shape[-1] += sum(self.padding)
    return tf.TensorShape(shape)

  def get_config(self) -> dict:
    return {**super().get_config(), "padding": self.padding}
