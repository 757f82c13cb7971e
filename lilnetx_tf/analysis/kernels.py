"""Kernel layers as the analysis sees them: typed decoded weights and one rule per kernel kind.

`kernel_weights(layer)` reads the decoded kernel and bias of a stock or LilNetX kernel layer
(LilNetX layers decode their integer latents in `.kernel` / `.depthwise_kernel` /
`.pointwise_kernel`). A `KernelRule` says, for its `OpKind`, how the kernel's axes map to input
and output channels: which channels it never reads or never writes, how a per-output scale
folds in, how a constant input folds into the bias, and how the kernel narrows to kept
channels. A separable convolution's kernel is the pair (depthwise, pointwise).
"""

import dataclasses
from typing import Optional

import numpy as np
import tensorflow as tf

from lilnetx_tf.analysis.kinds import OpKind, kernel_family

__all__ = ["KernelWeights", "KernelRule", "RULES", "kernel_weights"]


@dataclasses.dataclass
class KernelWeights:
  """Decoded (and possibly BatchNorm-folded) weights of one kernel layer, float32 numpy."""
  kernel: np.ndarray        # a tuple (depthwise, pointwise) for a separable convolution
  bias: np.ndarray          # zeros when the layer has no bias
  had_bias: bool


def kernel_weights(layer) -> KernelWeights:
  """The `KernelWeights` of a stock or LilNetX kernel layer (`kinds.kernel_family`; any data
  format)."""
  rule = RULES[kernel_family(layer)]
  arrays = tuple(np.array(tf.convert_to_tensor(getattr(layer, name)), dtype=np.float32)
                 for name in rule.kernel_names)
  kernel = arrays if len(arrays) > 1 else arrays[0]
  bias = (np.zeros(rule.outputs(kernel), np.float32) if layer.bias is None
          else np.array(tf.convert_to_tensor(layer.bias), dtype=np.float32))
  return KernelWeights(kernel, bias, layer.bias is not None)


def _reads_padding(layer) -> bool:
  """Whether some output sees the zero padding of its input (SAME padding, kernel > 1)."""
  size = getattr(layer, "kernel_size", (1,))
  return getattr(layer, "padding", "valid") != "valid" and any(k != 1 for k in size)


class KernelRule:
  """How one kind of kernel (… spatial axes …, inputs, outputs) maps its channels."""

  kernel_names = ("kernel",)    # the layer attributes holding the kernel, in set_weights order

  def __init__(self, width_argument: Optional[str]):
    self.width_argument = width_argument   # the config key of the output width, if any

  def outputs(self, kernel) -> int:
    """The number of output channels."""
    return kernel.shape[-1]

  def arrays(self, kernel) -> list:
    """The kernel as the list of arrays Keras' `set_weights` takes before the bias."""
    return [kernel]

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
    """The kernel with output channel o multiplied by scale[o] (in float64), float32."""
    return (kernel.astype(np.float64) * scale).astype(np.float32)

  def zero_inputs(self, kernel: np.ndarray, inputs: np.ndarray) -> np.ndarray:
    kernel = np.array(kernel, copy=True)
    kernel[..., inputs, :] = 0
    return kernel

  def narrow(self, kernel: np.ndarray, in_keep: np.ndarray, out_keep: np.ndarray) -> np.ndarray:
    return kernel[..., in_keep, :][..., out_keep]


class DepthwiseRule(KernelRule):
  """A depthwise kernel (k…, C, M): output channel i·M + m reads input channel i only."""

  kernel_names = ("depthwise_kernel",)

  def outputs(self, kernel) -> int:
    return kernel.shape[-2] * kernel.shape[-1]

  def dead_outputs(self, kernel: np.ndarray) -> np.ndarray:
    return (~np.any(kernel.reshape(-1, self.outputs(kernel)) != 0, axis=0))

  def unused_inputs(self, kernel: np.ndarray) -> np.ndarray:
    return ~np.any(np.moveaxis(kernel, -2, 0).reshape(kernel.shape[-2], -1) != 0, axis=1)

  def input_sums(self, kernel: np.ndarray) -> np.ndarray:
    """Per output channel (C·M): the kernel summed over its spatial axes."""
    return kernel.astype(np.float64).reshape(-1, self.outputs(kernel)).sum(0)

  def scale_outputs(self, kernel: np.ndarray, scale: np.ndarray) -> np.ndarray:
    return (kernel.astype(np.float64) * scale.reshape(kernel.shape[-2:])).astype(np.float32)

  def narrow(self, kernel: np.ndarray, in_keep: np.ndarray, out_keep: np.ndarray) -> np.ndarray:
    return kernel[..., in_keep, :]     # the outputs follow their inputs


class TransposedRule(KernelRule):
  """A transposed convolution's kernel (k…, out, in). A constant input does not give a
  constant output (output positions receive different numbers of taps), so only a 1×1,
  stride-1 transposed conv can fold one into its bias."""

  def outputs(self, kernel) -> int:
    return kernel.shape[-2]

  def dead_outputs(self, kernel: np.ndarray) -> np.ndarray:
    return super().unused_inputs(kernel)      # the axes are swapped

  def unused_inputs(self, kernel: np.ndarray) -> np.ndarray:
    return super().dead_outputs(kernel)

  def input_sums(self, kernel: np.ndarray) -> np.ndarray:
    return super().input_sums(kernel).T

  def reads_padding(self, layer) -> bool:
    return any(k != 1 for k in layer.kernel_size) or any(s != 1 for s in layer.strides)

  def scale_outputs(self, kernel: np.ndarray, scale: np.ndarray) -> np.ndarray:
    return (kernel.astype(np.float64) * scale[:, None]).astype(np.float32)

  def zero_inputs(self, kernel: np.ndarray, inputs: np.ndarray) -> np.ndarray:
    kernel = np.array(kernel, copy=True)
    kernel[..., inputs] = 0
    return kernel

  def narrow(self, kernel: np.ndarray, in_keep: np.ndarray, out_keep: np.ndarray) -> np.ndarray:
    return kernel[..., out_keep, :][..., in_keep]


class SeparableRule(KernelRule):
  """A separable convolution's kernels (depthwise (k…, C, M), pointwise (1…, C·M, O)): input
  channel i reaches output o through the depthwise channels i·M + m; the layer's one bias is
  after the pointwise kernel."""

  kernel_names = ("depthwise_kernel", "pointwise_kernel")

  @staticmethod
  def _paths(kernel) -> tuple:
    """(depthwise channels with a nonzero kernel (C·M,), pointwise matrix (C·M, O))."""
    depthwise, pointwise = kernel
    live = np.any(depthwise.reshape(-1, pointwise.shape[-2]) != 0, axis=0)
    return live, pointwise.reshape(pointwise.shape[-2], pointwise.shape[-1])

  def outputs(self, kernel) -> int:
    return kernel[1].shape[-1]

  def arrays(self, kernel) -> list:
    return list(kernel)

  def dead_outputs(self, kernel) -> np.ndarray:
    live, pointwise = self._paths(kernel)
    return ~np.any((pointwise != 0) & live[:, None], axis=0)

  def unused_inputs(self, kernel) -> np.ndarray:
    live, pointwise = self._paths(kernel)
    reached = (live & np.any(pointwise != 0, axis=1)).reshape(kernel[0].shape[-2], -1)
    return ~np.any(reached, axis=1)

  def input_sums(self, kernel) -> np.ndarray:
    depthwise, pointwise = kernel
    channels, multiplier = depthwise.shape[-2:]
    sums = depthwise.astype(np.float64).reshape(-1, channels, multiplier).sum(0)
    return np.einsum("cm,cmo->co", sums,
                     pointwise.astype(np.float64).reshape(channels, multiplier, -1))

  def scale_outputs(self, kernel, scale: np.ndarray) -> tuple:
    return kernel[0], super().scale_outputs(kernel[1], scale)

  def zero_inputs(self, kernel, inputs: np.ndarray) -> tuple:
    return super().zero_inputs(kernel[0], inputs), kernel[1]

  def narrow(self, kernel, in_keep: np.ndarray, out_keep: np.ndarray) -> tuple:
    depthwise, pointwise = kernel
    through = np.repeat(in_keep, depthwise.shape[-1])
    return depthwise[..., in_keep, :], pointwise[..., through, :][..., out_keep]


RULES = {OpKind.CONV: KernelRule("filters"), OpKind.DENSE: KernelRule("units"),
         OpKind.DEPTHWISE: DepthwiseRule(None), OpKind.TRANSPOSED: TransposedRule("filters"),
         OpKind.SEPARABLE: SeparableRule("filters")}
