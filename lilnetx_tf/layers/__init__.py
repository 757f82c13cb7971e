"""LilNetX Keras layers, the parameter groups they share, and `ChannelPadding`."""

from lilnetx_tf.layers.channel_padding import ChannelPadding
from lilnetx_tf.layers.conv import Conv1D, Conv2D, Conv3D, DepthwiseConv1D, DepthwiseConv2D
from lilnetx_tf.layers.conv_transpose import Conv1DTranspose, Conv2DTranspose, Conv3DTranspose
from lilnetx_tf.layers.dense import Dense
from lilnetx_tf.layers.einsum_dense import EinsumDense
from lilnetx_tf.layers.embedding import Embedding
from lilnetx_tf.layers.density_fit import fit_densities
from lilnetx_tf.layers.group import ParameterGroup
from lilnetx_tf.layers.latent_kernel import LatentKernel
from lilnetx_tf.layers.attention import MultiHeadAttention
from lilnetx_tf.layers.model_layers import is_lilnetx_layer, kernel_latents, layer_attribute
from lilnetx_tf.layers.model_layers import lilnetx_layers
from lilnetx_tf.layers.registry import GroupRegistry, group_scope
from lilnetx_tf.layers.separable import SeparableConv1D, SeparableConv2D

__all__ = ["ChannelPadding", "Conv1D", "Conv1DTranspose", "Conv2D", "Conv2DTranspose", "Conv3D",
           "Conv3DTranspose", "Dense", "DepthwiseConv1D", "DepthwiseConv2D", "EinsumDense",
           "Embedding", "GroupRegistry", "LatentKernel", "MultiHeadAttention", "ParameterGroup",
           "SeparableConv1D", "SeparableConv2D", "fit_densities", "group_scope",
           "is_lilnetx_layer", "kernel_latents", "layer_attribute", "lilnetx_layers"]
