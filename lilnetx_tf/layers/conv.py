"""LilNetX convolutions: drop-in `Conv1D`/`Conv2D`/`Conv3D` and `DepthwiseConv1D`/`2D` with latent
kernels. A kernel of spatial shape (k₁, …, k_r) is decoded slice by slice by the group of that
shape ('conv3', 'conv3x3', 'conv3x3x3', ...)."""

import math
from typing import Optional

import tensorflow as tf

from lilnetx_tf import errors
from lilnetx_tf.layers import base

__all__ = ["Conv1D", "Conv2D", "Conv3D", "DepthwiseConv1D", "DepthwiseConv2D", "input_channels",
           "positions"]


def input_channels(layer, input_shape: tf.TensorShape) -> int:
  """The channel count of a convolution's `input_shape`, checked: rank `layer.rank` + 2 and a
  known channel dimension, else `errors.InvalidArgumentError` naming the layer class."""
  name = type(layer).__name__
  if input_shape.rank != layer.rank + 2:
    raise errors.InvalidArgumentError(
        f"Inputs to {name} must have rank {layer.rank + 2}, got shape {input_shape}.")
  channels = input_shape[layer._get_channel_axis()]  # pylint: disable=protected-access
  if channels is None:
    raise errors.InvalidArgumentError(
        f"The channel dimension of the inputs to {name} must be known: {input_shape}.")
  return int(channels)


def positions(layer, shape: tf.TensorShape) -> Optional[int]:
  """Number of positions (all axes but batch and channels) of `shape`, or None if unknown."""
  shape = tf.TensorShape(shape)
  spatial = shape[2:] if layer.data_format == "channels_first" else shape[1:-1]
  return None if None in spatial.as_list() else math.prod(spatial.as_list())


def _output_positions(layer, input_shape: tf.TensorShape) -> Optional[int]:
  """Number of output positions (for MAC counts), or None if the input size is not known."""
  return positions(layer, layer.compute_output_shape(input_shape))


def build_bias(layer, width: int) -> None:
  """The Keras bias of a conv layer (None without `use_bias`)."""
  layer.bias = layer.add_weight(
      name="bias", shape=(width,), initializer=layer.bias_initializer,
      regularizer=layer.bias_regularizer, constraint=layer.bias_constraint, trainable=True,
      dtype=layer.dtype) if layer.use_bias else None


class _LatentConv(base.LatentKernelMixin):
  """A Keras `Conv1D`/`Conv2D`/`Conv3D` (mixed in before it) with a latent kernel
  (k…, in, out): one slice of k₁·…·k_r values per (input, output) channel pair."""

  def __init__(self, *args, **kwargs):
    super().__init__(*args, **kwargs)
    if self.groups != 1:
      raise errors.UnsupportedLayerError(
          f"lilnetx_tf.{type(self).__name__} does not support grouped convolution "
          f"(`groups`={self.groups}).")

  def build(self, input_shape):
    input_shape = tf.TensorShape(input_shape)
    input_channel = self._get_input_channel(input_shape)
    size = tuple(self.kernel_size)
    self._build_latent(input_channel, self.filters, size, fan=math.prod(size) * input_channel,
                       output_positions=_output_positions(self, input_shape))
    build_bias(self, self.filters)
    self.input_spec = tf.keras.layers.InputSpec(
        min_ndim=self.rank + 2, axes={self._get_channel_axis(): input_channel})
    tf.keras.layers.Layer.build(self, input_shape)  # Records the shape for build_config.

  @property
  def kernel(self) -> tf.Tensor:
    """The decoded kernel, shape (k…, in, out), as the forward pass uses it."""
    return self._decoded_kernel()


_LILNETX_ARGUMENTS = """Takes every argument of the Keras layer except grouped convolution
  (`groups` > 1), `kernel_regularizer` and `kernel_constraint`; `kernel_initializer` is accepted
  and ignored (latents start with the LilNetX 'boundary' rule). Adds `rate_weight` (λ_I),
  `slice_weight` (λ_G), `l2_weight`, `boundary` and `density_learning_rate`."""


@tf.keras.utils.register_keras_serializable(package="lilnetx_tf")
class Conv1D(_LatentConv, tf.keras.layers.Conv1D):
  __doc__ = ("`tf.keras.layers.Conv1D` whose kernel is a LilNetX latent (see "
             "`lilnetx_tf.layers.base`).\n\n  " + _LILNETX_ARGUMENTS)


@tf.keras.utils.register_keras_serializable(package="lilnetx_tf")
class Conv2D(_LatentConv, tf.keras.layers.Conv2D):
  __doc__ = ("`tf.keras.layers.Conv2D` whose kernel is a LilNetX latent (see "
             "`lilnetx_tf.layers.base`).\n\n  " + _LILNETX_ARGUMENTS)


@tf.keras.utils.register_keras_serializable(package="lilnetx_tf")
class Conv3D(_LatentConv, tf.keras.layers.Conv3D):
  __doc__ = ("`tf.keras.layers.Conv3D` whose kernel is a LilNetX latent (see "
             "`lilnetx_tf.layers.base`).\n\n  " + _LILNETX_ARGUMENTS)


class _LatentDepthwise(base.LatentKernelMixin):
  """A Keras depthwise convolution (mixed in before it) with a latent kernel (k…, in,
  depth_multiplier): each (input channel, multiplier) pair is one slice."""

  _REPLACED_BY_LATENT = ("depthwise_regularizer", "depthwise_constraint")
  KERNEL_NAME = "depthwise_kernel"

  def build(self, input_shape):
    input_shape = tf.TensorShape(input_shape)
    input_dim = input_channels(self, input_shape)
    size = tuple(self.kernel_size)
    self._build_latent(input_dim, self.depth_multiplier, size, fan=math.prod(size),
                       output_positions=_output_positions(self, input_shape))
    build_bias(self, input_dim * self.depth_multiplier)
    self.input_spec = tf.keras.layers.InputSpec(
        min_ndim=self.rank + 2, axes={self._get_channel_axis(): input_dim})
    tf.keras.layers.Layer.build(self, input_shape)  # Records the shape for build_config.

  @property
  def depthwise_kernel(self) -> tf.Tensor:
    """The decoded kernel, shape (k…, in, depth_multiplier)."""
    return self._decoded_kernel()

  kernel = depthwise_kernel


_DEPTHWISE_ARGUMENTS = """Each (input channel, multiplier) pair is one slice. Takes every Keras
  argument except `depthwise_regularizer` and `depthwise_constraint`; adds the LilNetX arguments
  of `Conv2D`."""


@tf.keras.utils.register_keras_serializable(package="lilnetx_tf")
class DepthwiseConv1D(_LatentDepthwise, tf.keras.layers.DepthwiseConv1D):
  __doc__ = ("`tf.keras.layers.DepthwiseConv1D` with a LilNetX latent kernel.\n\n  "
             + _DEPTHWISE_ARGUMENTS)


@tf.keras.utils.register_keras_serializable(package="lilnetx_tf")
class DepthwiseConv2D(_LatentDepthwise, tf.keras.layers.DepthwiseConv2D):
  __doc__ = ("`tf.keras.layers.DepthwiseConv2D` with a LilNetX latent kernel.\n\n  "
             + _DEPTHWISE_ARGUMENTS)
