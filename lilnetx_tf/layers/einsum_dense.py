"""LilNetX `EinsumDense`: a drop-in `tf.keras.layers.EinsumDense` with a latent kernel of any rank.

Slice structure from the equation: a kernel axis whose letter is not in the output is summed
over, an *input* axis; every other kernel axis (in the output, whether or not also in the
input) is an *output* axis. The kernel is kept as (inputs, outputs, 1) scalar slices, inputs
and outputs the flattened products of those axes in equation order, decoded by the scalar
decoder of the `dense` group: a Dense layer seen through its equation. For attention this puts
each head's query/key/value weights in whole output columns ("abc,cde->abde": inputs c,
outputs (d, e) = (head, head dim)) and its output-projection weights in whole input rows
("abcd,cde->abe": inputs (c, d), outputs e), so a dead head is a block of dead channels.
"""

import importlib
import math
import re

import numpy as np
import tensorflow as tf

from lilnetx_tf import errors
from lilnetx_tf.layers import base

__all__ = ["EinsumDense", "split_equation"]

_EQUATION = re.compile(
    r"^(\.\.\.)?([a-zA-Z]+)(\.\.\.)?,([a-zA-Z]+)->(\.\.\.)?([a-zA-Z]+)(\.\.\.)?$")
# Keras's own analysis of an equation (kernel, bias and output shapes), shared by Keras 2.14 and
# tf_keras: the layer then builds exactly the shapes the stock layer would.
_KERAS_EINSUM = importlib.import_module(tf.keras.layers.EinsumDense.__module__)


def split_equation(equation) -> tuple:
  """(input letters, kernel letters, output letters) of an EinsumDense equation, ellipses left
  out; raises `InvalidArgumentError` for anything else."""
  match = _EQUATION.match(equation) if isinstance(equation, str) else None
  if match is None:
    raise errors.InvalidArgumentError(
        f"`equation` must be an EinsumDense equation such as 'ab,bc->ac' or '...b,bc->...c', "
        f"got {equation!r}.")
  inputs, kernel, outputs = match.group(2), match.group(4), match.group(6)
  if len(set(kernel)) != len(kernel):
    raise errors.UnsupportedLayerError(
        f"lilnetx_tf.EinsumDense does not support a repeated kernel axis ({equation!r}).")
  return inputs, kernel, outputs


@tf.keras.utils.register_keras_serializable(package="lilnetx_tf")
class EinsumDense(base.LatentKernelMixin, tf.keras.layers.EinsumDense):
  """`tf.keras.layers.EinsumDense` whose kernel is a LilNetX latent (see the module docstring).

  Takes every Keras argument except `kernel_regularizer` and `kernel_constraint`;
  `kernel_initializer` is accepted and ignored. Adds the LilNetX arguments of `lnx.Dense`.
  """

  _is_dense = True

  def __init__(self, equation, output_shape, *args, **kwargs):
    _, kernel, outputs = split_equation(equation)
    # Kernel axes summed over (inputs of a slice) first, then the others (outputs), each in
    # equation order: the latent is this permutation of the kernel, flattened to 2-D.
    self._input_axes = [i for i, letter in enumerate(kernel) if letter not in outputs]
    self._output_axes = [i for i, letter in enumerate(kernel) if letter in outputs]
    super().__init__(equation, output_shape, *args, **kwargs)

  def build(self, input_shape):
    input_shape = tf.TensorShape(input_shape)
    try:
      analyze = _KERAS_EINSUM._analyze_einsum_string   # pylint: disable=protected-access
      kernel_shape, bias_shape, full_output_shape = analyze(
          self.equation, self.bias_axes, input_shape, self.partial_output_shape)
    except ValueError as e:
      raise errors.InvalidArgumentError(f"EinsumDense {self.name!r}: {e}") from None
    if None in kernel_shape:
      raise errors.InvalidArgumentError(
          f"EinsumDense {self.name!r}: every kernel dimension must be known, got "
          f"{kernel_shape} for inputs {input_shape}.")
    self.full_output_shape = full_output_shape
    self._kernel_shape = tuple(int(d) for d in kernel_shape)
    fan_in = math.prod(self._kernel_shape[i] for i in self._input_axes)
    fan_out = math.prod(self._kernel_shape[i] for i in self._output_axes)
    self._build_latent(fan_in, fan_out, (), fan=fan_in, output_positions=None)
    self.bias = self.add_weight(
        "bias", shape=bias_shape, initializer=self.bias_initializer,
        regularizer=self.bias_regularizer, constraint=self.bias_constraint, dtype=self.dtype,
        trainable=True) if bias_shape is not None else None
    tf.keras.layers.Layer.build(self, input_shape)  # Records the shape for build_config.

  @property
  def _grouped_shape(self) -> list:
    return [self._kernel_shape[i] for i in self._input_axes + self._output_axes]

  def _kernel_layout(self, decoded: tf.Tensor) -> tf.Tensor:
    """Decoded latents (inputs, outputs, 1) as the Keras kernel, in the equation's axis order."""
    grouped = tf.reshape(decoded, self._grouped_shape)
    return tf.transpose(grouped, np.argsort(self._input_axes + self._output_axes))

  def kernel_to_latent(self, kernel: np.ndarray) -> np.ndarray:
    """A Keras kernel of this layer's shape in the latent layout (inputs, outputs, 1)."""
    grouped = np.transpose(kernel, self._input_axes + self._output_axes)
    return grouped.reshape(self.latent_variable.shape)

  @property
  def kernel(self) -> tf.Tensor:
    """The decoded kernel, in the shape the equation gives it."""
    return self._decoded_kernel()

  def stock_weights(self) -> list:
    """The decoded kernel, and the bias if any: the weights of the stock Keras layer in its order
    (what `lnx.slim` decodes it to)."""
    return [self.kernel.numpy()] + ([] if self.bias is None else [self.bias.numpy()])
