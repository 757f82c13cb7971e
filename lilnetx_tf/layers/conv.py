"""LilNetX convolutions: drop-in `Conv2D` and `DepthwiseConv2D` with latent kernels."""

import math

import tensorflow as tf

from lilnetx_tf import errors
from lilnetx_tf.layers import base


def _output_positions(layer, input_shape: tf.TensorShape):
  """Number of output pixels (for MAC counts), or None if the input size is not known."""
  output_shape = tf.TensorShape(layer.compute_output_shape(input_shape))
  if layer.data_format == "channels_first":
    spatial = output_shape[2:]
  else:
    spatial = output_shape[1:-1]
  return None if None in spatial.as_list() else math.prod(spatial.as_list())


@tf.keras.utils.register_keras_serializable(package="lilnetx_tf")
class Conv2D(base.LatentKernelMixin, tf.keras.layers.Conv2D):
  """`tf.keras.layers.Conv2D` whose kernel is a LilNetX latent (see `lilnetx_tf.layers.base`).

  Takes every argument of `tf.keras.layers.Conv2D` except grouped convolution
  (`groups` > 1), `kernel_regularizer` and `kernel_constraint`; `kernel_initializer` is accepted
  and ignored (latents start with the LilNetX 'boundary' rule). Adds `rate_weight` (λ_I),
  `slice_weight` (λ_G), `l2_weight`, `boundary` and `density_learning_rate`.
  """

  def __init__(self, *args, **kwargs):
    super().__init__(*args, **kwargs)
    if self.groups != 1:
      raise errors.UnsupportedLayerError(
          f"lilnetx_tf.Conv2D does not support grouped convolution (`groups`={self.groups}).")

  def build(self, input_shape):
    input_shape = tf.TensorShape(input_shape)
    input_channel = self._get_input_channel(input_shape)
    kh, kw = self.kernel_size
    self._build_latent(input_channel, self.filters, (kh, kw), fan=kh * kw * input_channel,
                       output_positions=_output_positions(self, input_shape))
    self.bias = self.add_weight(
        name="bias", shape=(self.filters,), initializer=self.bias_initializer,
        regularizer=self.bias_regularizer, constraint=self.bias_constraint, trainable=True,
        dtype=self.dtype) if self.use_bias else None
    self.input_spec = tf.keras.layers.InputSpec(
        min_ndim=self.rank + 2, axes={self._get_channel_axis(): input_channel})
    tf.keras.layers.Layer.build(self, input_shape)  # Records the shape for build_config.

  @property
  def kernel(self) -> tf.Tensor:
    """The decoded kernel, shape (kh, kw, in, out), as the forward pass uses it."""
    return self._decoded_kernel()


@tf.keras.utils.register_keras_serializable(package="lilnetx_tf")
class DepthwiseConv2D(base.LatentKernelMixin, tf.keras.layers.DepthwiseConv2D):
  """`tf.keras.layers.DepthwiseConv2D` with a LilNetX latent kernel.

  Each (input channel, multiplier) pair is one k×k slice. Takes every Keras argument except
  `depthwise_regularizer` and `depthwise_constraint`; adds the LilNetX arguments of `Conv2D`.
  """

  _REPLACED_BY_LATENT = ("depthwise_regularizer", "depthwise_constraint")

  def build(self, input_shape):
    input_shape = tf.TensorShape(input_shape)
    if input_shape.rank != self.rank + 2:
      raise errors.InvalidArgumentError(
          f"Inputs to DepthwiseConv2D must have rank {self.rank + 2}, got shape {input_shape}.")
    input_dim = input_shape[self._get_channel_axis()]
    if input_dim is None:
      raise errors.InvalidArgumentError(
          f"The channel dimension of the inputs to DepthwiseConv2D must be known: {input_shape}.")
    kh, kw = self.kernel_size
    self._build_latent(input_dim, self.depth_multiplier, (kh, kw), fan=kh * kw,
                       output_positions=_output_positions(self, input_shape))
    self.bias = self.add_weight(
        name="bias", shape=(input_dim * self.depth_multiplier,),
        initializer=self.bias_initializer, regularizer=self.bias_regularizer,
        constraint=self.bias_constraint) if self.use_bias else None
    self.input_spec = tf.keras.layers.InputSpec(
        min_ndim=self.rank + 2, axes={self._get_channel_axis(): input_dim})
    tf.keras.layers.Layer.build(self, input_shape)  # Records the shape for build_config.

  @property
  def depthwise_kernel(self) -> tf.Tensor:
    """The decoded kernel, shape (kh, kw, in, depth_multiplier)."""
    return self._decoded_kernel()

  kernel = depthwise_kernel
