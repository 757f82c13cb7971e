"""LilNetX separable convolutions: drop-in `SeparableConv1D` and `SeparableConv2D`.

A separable convolution has two kernels, each a `LatentKernel` in its own group: the depthwise
kernel (k…, in, multiplier), one slice per (input channel, multiplier) pair, with the
convolutions of its kernel size ('conv3x3' for 3×3, 'conv3' for a 1-D size 3); the pointwise
kernel (1…, in·multiplier, out), one value per slice, with the 1×1 convolutions ('conv1x1', or
'conv1' in 1-D). The forward pass is the Keras layer's own, on the two decoded kernels.
"""

import math
from typing import Optional

import tensorflow as tf

from lilnetx_tf.layers import base
from lilnetx_tf.layers import conv
from lilnetx_tf.layers import registry as registry_lib
from lilnetx_tf.layers.latent_kernel import LatentKernel

__all__ = ["SeparableConv1D", "SeparableConv2D"]

# The LilNetX arguments, passed on to both latent kernels.
_LILNETX_ARGUMENTS = ("rate_weight", "slice_weight", "l2_weight", "boundary",
                      "density_learning_rate", "config_version", "latent_pace")


class _LatentSeparable:
  """A Keras separable convolution (mixed in before it) with two latent kernels."""

  _REPLACED_BY_LATENT = ("depthwise_regularizer", "pointwise_regularizer",
                         "depthwise_constraint", "pointwise_constraint")
  # The Keras kernel each of `latent_kernels()` decodes to.
  KERNEL_NAMES = ("depthwise_kernel", "pointwise_kernel")

  def __init__(self, *args,
               rate_weight: float = base.DEFAULT_RATE_WEIGHT,
               slice_weight: float = base.DEFAULT_SLICE_WEIGHT,
               l2_weight: float = base.DEFAULT_L2_WEIGHT,
               boundary: float = base.DEFAULT_BOUNDARY,
               density_learning_rate: float = base.DEFAULT_DENSITY_LEARNING_RATE,
               config_version: int = base.CONFIG_VERSION,
               latent_pace: float = 1.0,
               registry_id: Optional[int] = None,
               **kwargs):
    super().__init__(*args, **kwargs)
    base.refuse_replaced_arguments(self, self._REPLACED_BY_LATENT)
    lilnetx = dict(rate_weight=rate_weight, slice_weight=slice_weight, l2_weight=l2_weight,
                   boundary=boundary, density_learning_rate=density_learning_rate,
                   config_version=config_version, latent_pace=latent_pace,
                   registry_id=registry_id)
    # Frozen with their owner (the group reads its members' flags).
    self.depthwise_latent = LatentKernel(channels_tied=True, name=f"{self.name}_depthwise",
                                         dtype=self.dtype_policy, trainable=self.trainable,
                                         **lilnetx)
    self.pointwise_latent = LatentKernel(name=f"{self.name}_pointwise",
                                         dtype=self.dtype_policy, trainable=self.trainable,
                                         **lilnetx)

  def latent_kernels(self) -> tuple:
    """(depthwise, pointwise) `LatentKernel`s. A method: Keras' saver walks properties."""
    return (self.depthwise_latent, self.pointwise_latent)

  def __call__(self, *args, **kwargs):
    # Both kernels join the registry the call's inputs lead to, before they are built.
    if any(k.registry_unsettled for k in self.latent_kernels()):
      found = registry_lib.resolve((args, kwargs))
      for kernel in self.latent_kernels():
        found = kernel.settle_registry(found)
    return super().__call__(*args, **kwargs)

  def build(self, input_shape):
    input_shape = tf.TensorShape(input_shape)
    input_dim = conv.input_channels(self, input_shape)
    channel_axis = self._get_channel_axis()
    size = tuple(self.kernel_size)
    depth = input_dim * self.depth_multiplier
    positions = conv.positions(self, self.compute_output_shape(input_shape))
    self.depthwise_latent.build_kernel(size + (input_dim, self.depth_multiplier),
                                       fan=math.prod(size), positions=positions)
    self.pointwise_latent.build_kernel((1,) * self.rank + (depth, self.filters), fan=depth,
                                       positions=positions)
    conv.build_bias(self, self.filters)
    self.input_spec = tf.keras.layers.InputSpec(ndim=self.rank + 2,
                                                axes={channel_axis: input_dim})
    tf.keras.layers.Layer.build(self, input_shape)  # Records the shape for build_config.

  def call(self, inputs, training=None):
    """Adds both kernels' penalties, then runs the Keras layer on the decoded kernels."""
    for kernel in self.latent_kernels():
      kernel._add_penalties(training)  # pylint: disable=protected-access
    return super().call(inputs)

  @property
  def depthwise_kernel(self) -> tf.Tensor:
    """The decoded depthwise kernel (k…, in, depth_multiplier)."""
    return self.depthwise_latent.kernel

  @property
  def pointwise_kernel(self) -> tf.Tensor:
    """The decoded pointwise kernel (1…, in·depth_multiplier, filters)."""
    return self.pointwise_latent.kernel

  @classmethod
  def from_config(cls, config: dict):
    # A config without a version was saved before version 2 (see `base`).
    return super().from_config({"config_version": 1, **config})

  def get_config(self) -> dict:
    for kernel in self.latent_kernels():
      kernel.upgrade_config()
    config = {**super().get_config(),
              **{key: getattr(self.pointwise_latent, key) for key in _LILNETX_ARGUMENTS}}
    return registry_lib.with_saved_id(config, registry_lib.registry_of(self.pointwise_latent))


_DOC = """`tf.keras.layers.{name}` whose depthwise and pointwise kernels are LilNetX latents,
  each in its own parameter group (see `lilnetx_tf.layers.separable`). Takes every Keras
  argument except the depthwise and pointwise regularizers and constraints (the initializers
  are ignored); adds the LilNetX arguments of `Conv2D`, shared by both kernels."""


@tf.keras.utils.register_keras_serializable(package="lilnetx_tf")
class SeparableConv1D(_LatentSeparable, tf.keras.layers.SeparableConv1D):
  __doc__ = _DOC.format(name="SeparableConv1D")


@tf.keras.utils.register_keras_serializable(package="lilnetx_tf")
class SeparableConv2D(_LatentSeparable, tf.keras.layers.SeparableConv2D):
  __doc__ = _DOC.format(name="SeparableConv2D")
