"""LilNetX Keras layers, the parameter groups they share, and `ChannelPadding`."""

from lilnetx_tf.layers.channel_padding import ChannelPadding
from lilnetx_tf.layers.conv import Conv2D, DepthwiseConv2D
from lilnetx_tf.layers.dense import Dense
from lilnetx_tf.layers.einsum_dense import EinsumDense
from lilnetx_tf.layers.embedding import Embedding
from lilnetx_tf.layers.density_fit import fit_densities
from lilnetx_tf.layers.group import ParameterGroup
from lilnetx_tf.layers.attention import MultiHeadAttention
from lilnetx_tf.layers.model_layers import is_lilnetx_layer, lilnetx_layers
from lilnetx_tf.layers.registry import GroupRegistry, group_scope
