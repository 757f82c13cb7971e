"""LilNetX Keras layers, the parameter groups they share, and `ChannelPadding`."""

from lilnetx_tf.layers.channel_padding import ChannelPadding
from lilnetx_tf.layers.conv import Conv2D, DepthwiseConv2D
from lilnetx_tf.layers.dense import Dense
from lilnetx_tf.layers.density_fit import fit_densities
from lilnetx_tf.layers.group import ParameterGroup
from lilnetx_tf.layers.registry import GroupRegistry, group_scope

LILNETX_LAYERS = (Conv2D, DepthwiseConv2D, Dense)


def is_lilnetx_layer(layer) -> bool:
  """True for a LilNetX layer with a latent kernel."""
  return isinstance(layer, LILNETX_LAYERS)
