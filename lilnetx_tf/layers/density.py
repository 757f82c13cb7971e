"""The deep factorized density: one learned, monotonic CDF per channel.

Ballé et al., "Variational image compression with a scale hyperprior" (2018), appendix 6.1:
each channel's CDF is sigmoid(f(x)), f a small network of monotonic layers (softplus matrices,
biases, and tanh gates whose factor keeps them monotonic). The variables are those of
tensorflow-compression's `NoisyDeepFactorized(batch_shape=(channels,), num_filters=...)`, with
the same names, shapes, initial values (the same random draws under the same seed) and order,
so that weights saved by a model that used it load into one that uses this. Evaluating the
noisy density (the CDF's differences over unit intervals) is `ParameterGroup.bits`' job.
"""

from typing import Sequence

import tensorflow as tf

from lilnetx_tf import validation

__all__ = ["DeepFactorized"]


class DeepFactorized(tf.Module):
  """The CDF logits f(x) of `channels` independent scalar densities.

  Args:
    channels: Number of independent channels (the batch shape's one dimension).
    num_filters: Hidden widths of each channel's network (its input and output width are 1).
    init_scale: Scale of the initial density: the initial f is about x / init_scale, so values
      within a few `init_scale` start at a high likelihood.
    name: Module name; the variables are named `{name}/matrix_i`, `bias_i` and `factor_i`.
  """

  def __init__(self, channels: int, num_filters: Sequence[int] = (3, 3),
               init_scale: float = 10.0, name: str = "DeepFactorized"):
    super().__init__(name=name)
    self.channels = validation.positive_int("channels", channels)
    self.num_filters = tuple(validation.positive_int("num_filters", f) for f in num_filters)
    self.init_scale = validation.positive_float("init_scale", init_scale)
    # Created in tensorflow-compression's order (matrix, bias, factor per layer), so that the
    # random biases are the same draws; `variables` lists them by attribute name (biases,
    # factors, matrices), which is tensorflow-compression's order too.
    self._matrices, self._biases, self._factors = [], [], []
    widths = (1,) + self.num_filters + (1,)
    scale = self.init_scale ** (1 / (len(self.num_filters) + 1))
    with self.name_scope:
      for i in range(len(self.num_filters) + 1):
        shape = (self.channels, widths[i + 1], 1)
        self._matrices.append(tf.Variable(
            self._matrix_initializer(1 / scale / widths[i + 1], shape[:2] + (widths[i],)),
            name=f"matrix_{i}"))
        self._biases.append(tf.Variable(
            lambda shape=shape: tf.random.uniform(shape, -0.5, 0.5, dtype=tf.float32),
            name=f"bias_{i}"))
        if i < len(self.num_filters):
          self._factors.append(tf.Variable(
              lambda shape=shape: tf.zeros(shape, tf.float32), name=f"factor_{i}"))

  @staticmethod
  def _matrix_initializer(slope: float, shape: tuple):
    """softplus⁻¹(slope) everywhere, computed in float32 as tensorflow-compression does (which
    takes log(exp(x) − 1) ≈ x from 15 on)."""
    def initial():
      x = tf.constant(slope, tf.float32)
      return tf.broadcast_to(tf.math.log(tf.math.expm1(x)) if slope < 15 else x, shape)
    return initial

  def cumulative_logits(self, values: tf.Tensor) -> tf.Tensor:
    """f(values) for values of shape (n, channels): the logits of each channel's CDF."""
    logits = tf.transpose(values)[:, None, :]                       # (channels, 1, n)
    for i, matrix in enumerate(self._matrices):
      weights = tf.nn.softplus(matrix)                               # (channels, out, in)
      # A width-1 input (the first layer) makes the product an outer product: a broadcast
      # multiply gives the same numbers without a batched matmul's fixed cost (a quarter of
      # a 1-channel table's evaluation with its gradients).
      product = weights * logits if weights.shape[-1] == 1 else tf.linalg.matmul(weights, logits)
      logits = product + self._biases[i]
      if i < len(self._factors):
        logits += tf.math.tanh(self._factors[i]) * tf.math.tanh(logits)
    return tf.transpose(logits[:, 0, :])
