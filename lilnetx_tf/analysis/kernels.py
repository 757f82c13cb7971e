"""Kernel layers as the analysis sees them: typed decoded weights and one rule per kernel kind.

`kernel_weights(layer)` reads the decoded kernel and bias of a stock or LilNetX kernel layer
(LilNetX layers decode their integer latents in `.kernel` / `.depthwise_kernel`). A
`KernelRule` says, for its `OpKind`, how the kernel's axes map to input and output channels:
which channels it never reads or never writes, how a per-output scale folds in, how a
constant input folds into the bias, and how the kernel narrows to kept channels.
"""

import dataclasses
from typing import Optional

import numpy as np
import tensorflow as tf

from lilnetx_tf.analysis.kinds import OpKind

__all__ = ["KernelWeights", "KernelRule", "RULES", "kernel_weights"]


@dataclasses.dataclass
class KernelWeights:
  """Decoded (and possibly BatchNorm-folded) weights of one kernel layer, float32 numpy."""
  kernel: np.ndarray
  bias: np.ndarray          # zeros when the layer has no bias
  had_bias: bool


def kernel_weights(layer) -> KernelWeights:
  """The `KernelWeights` of a stock or LilNetX Conv2D / DepthwiseConv2D / Dense (any layout)."""
  depthwise = isinstance(layer, tf.keras.layers.DepthwiseConv2D)
  kernel = np.array(tf.convert_to_tensor(layer.depthwise_kernel if depthwise else layer.kernel),
                    dtype=np.float32)
  channels = kernel.shape[-2] * kernel.shape[-1] if depthwise else kernel.shape[-1]
  bias = (np.zeros(channels, np.float32) if layer.bias is None
          else np.array(tf.convert_to_tensor(layer.bias), dtype=np.float32))
  return KernelWeights(kernel, bias, layer.bias is not None)


def _reads_padding(layer) -> bool:
  """Whether some output sees the zero padding of its input (SAME padding, kernel > 1)."""
  size = getattr(layer, "kernel_size", (1,))
  return getattr(layer, "padding", "valid") != "valid" and any(k != 1 for k in size)


class KernelRule:
  """How one kind of kernel (… spatial axes …, inputs, outputs) maps its channels."""

  def __init__(self, width_argument: Optional[str]):
    self.width_argument = width_argument   # the config key of the output width, if any

  def dead_outputs(self, kernel: np.ndarray) -> np.ndarray:
    """Output channels whose weights are all zero."""
    return ~np.any(kernel.reshape(-1, kernel.shape[-1]) != 0, axis=0)

  def unused_inputs(self, kernel: np.ndarray) -> np.ndarray:
    """Input channels on which every weight is zero."""
    axes = tuple(i for i in range(kernel.ndim) if i != kernel.ndim - 2)
    return ~np.any(kernel != 0, axis=axes)

  def input_sums(self, kernel: np.ndarray) -> np.ndarray:
    """(inputs, outputs): the kernel summed over its spatial axes, what a constant input
    contributes to each output per unit of value."""
    return kernel.astype(np.float64).sum(axis=tuple(range(kernel.ndim - 2)))

  def reads_padding(self, layer) -> bool:
    return _reads_padding(layer)

  def scale_outputs(self, kernel: np.ndarray, scale: np.ndarray) -> np.ndarray:
    return kernel * scale

  def zero_inputs(self, kernel: np.ndarray, inputs: np.ndarray) -> np.ndarray:
    kernel = np.array(kernel, copy=True)
    kernel[..., inputs, :] = 0
    return kernel

  def narrow(self, kernel: np.ndarray, in_keep: np.ndarray, out_keep: np.ndarray) -> np.ndarray:
    return kernel[..., in_keep, :][..., out_keep]


class DepthwiseRule(KernelRule):
  """A depthwise kernel (kh, kw, C, M): output channel i·M + m reads input channel i only."""

  def dead_outputs(self, kernel: np.ndarray) -> np.ndarray:
    return (~np.any(kernel != 0, axis=(0, 1))).reshape(-1)

  def unused_inputs(self, kernel: np.ndarray) -> np.ndarray:
    return ~np.any(kernel != 0, axis=(0, 1, 3))

  def input_sums(self, kernel: np.ndarray) -> np.ndarray:
    """Per output channel (C·M): the kernel summed over its spatial axes."""
    return kernel.astype(np.float64).sum((0, 1)).reshape(-1)

  def scale_outputs(self, kernel: np.ndarray, scale: np.ndarray) -> np.ndarray:
    return kernel * scale.reshape(kernel.shape[2], kernel.shape[3])

  def narrow(self, kernel: np.ndarray, in_keep: np.ndarray, out_keep: np.ndarray) -> np.ndarray:
    return kernel[:, :, in_keep, :]     # the outputs follow their inputs


RULES = {OpKind.CONV: KernelRule("filters"), OpKind.DENSE: KernelRule("units"),
         OpKind.DEPTHWISE: DepthwiseRule(None)}
