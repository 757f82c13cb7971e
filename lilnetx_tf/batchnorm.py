"""BatchNormalization statistics that match the final weights: `refresh_batchnorm`.

A BatchNormalization layer predicts with moving averages of its batch statistics (Keras's
momentum 0.99: a memory of ~100 steps). When the weights still move fast at the end of
training, those averages describe the weights of ~100 steps earlier, and the model predicts
worse than in training mode. LilNetX training moves them to the last step by design (the
`RateController` holds a size target), and measured on a BatchNorm CIFAR-10 CNN after 470
Adam steps, the moving statistics cost the converted model 29 points of test accuracy
(22.2 % vs 50.9 % with the statistics re-estimated at its final weights; the plain model 31.3
vs 54.1 %). `refresh_batchnorm` re-estimates them, as the exact average over a few batches of
data the user gave (PyTorch's `swa_utils.update_bn` does the same for averaged weights); the
converted model's `fit` calls it at its end on the data it was given (`RateController`'s
`refresh_batches`).
"""

from typing import Optional

import numpy as np
import tensorflow as tf

from lilnetx_tf import _compat
from lilnetx_tf import errors
from lilnetx_tf import validation
from lilnetx_tf.layers import base as layers_base

__all__ = ["refresh_batchnorm", "batchnorm_layers", "fit_inputs"]

_BATCHNORM = (tf.keras.layers.BatchNormalization,)


def batchnorm_layers(model: tf.keras.Model) -> list:
  """The BatchNormalization layers of `model` (nested ones included) that training updates:
  a frozen layer (`trainable=False`) predicts with its statistics in training too, and is
  left as the user froze it."""
  # pylint: disable=protected-access
  return [layer for layer in model._flatten_layers(include_self=False)
          if isinstance(layer, _BATCHNORM) and layer.trainable and layer.built]


def _arrays(x) -> list:
  """The arrays of `x` (an array or tensor, or a list or dict of them); [] for anything else."""
  flat = tf.nest.flatten(x) if x is not None else []
  return flat if flat and all(isinstance(a, (np.ndarray, tf.Tensor)) for a in flat) else []


def _batches(x, batch_size: int, count: int) -> list:
  """Up to `count` input batches of `x`: arrays or tensors (or a list/dict of them), or a
  tf.data.Dataset of inputs or of (inputs, targets[, weights]) tuples."""
  if isinstance(x, tf.data.Dataset):
    return [element[0] if isinstance(element, tuple) else element
            for element in x.take(count)]
  flat = _arrays(x)
  if not flat:
    raise errors.InvalidArgumentError(
        "refresh_batchnorm takes arrays or tensors (or a list or dict of them) or a "
        f"tf.data.Dataset, got {type(x).__name__}.")
  size = int(flat[0].shape[0])
  order = np.random.default_rng(0).permutation(size)[:batch_size * count]
  def take(a, rows):   # NumPy indexing: converting a large array whole per batch would copy it
    return a[rows] if isinstance(a, np.ndarray) else tf.gather(a, rows)
  return [tf.nest.map_structure(lambda a, rows=np.sort(order[s:s + batch_size]): take(a, rows), x)
          for s in range(0, len(order), batch_size)]


def _forward(model: tf.keras.Model):
  """`model(inputs, training=True)`, traced once as `fit`'s step is (one eager call of a deep
  model costs more than a traced forward pass: 32 eager batches of a converted MobileNetV2 took
  longer than its 50 first training steps), or eager if the model was compiled to run eagerly.
  In a distribution strategy's scope the model runs in replica context, as in `fit` (the
  LilNetX density step reads its variables there)."""
  def forward(inputs):
    if tf.distribute.in_cross_replica_context() and tf.distribute.has_strategy():
      # Under a strategy's scope: every replica runs the whole batch (the same statistics).
      return tf.distribute.get_strategy().run(model, (inputs,), {"training": True})
    return model(inputs, training=True)

  return forward if model.run_eagerly else _compat.traced_per_call(forward, reduce_retracing=True)


def refresh_batchnorm(model: tf.keras.Model, x, batch_size: int = 128,
                      batches: int = 32) -> int:
  """Sets the moving mean and variance of `model`'s trainable BatchNormalization layers to
  their average over `batches` batches of `x` at the current weights (in place).

  The batches run in training mode, as in `fit` (dropout and augmentation layers included);
  every other variable (LilNetX densities, optimizer state) is restored afterwards, so only the
  statistics change. Returns the number of batches used (0: no such layer, or no data).

  Args:
    model: A Keras model.
    x: The inputs: arrays or tensors (or a list or dict of them, as `fit` takes), sampled
      without replacement (a fixed seed), or a tf.data.Dataset (its first `batches` elements).
    batch_size: Examples per batch for arrays (a dataset keeps its own batches).
    batches: The most batches to average.
  """
  batch_size = validation.positive_int("batch_size", batch_size)
  batches = validation.positive_int("batches", batches)
  layers = batchnorm_layers(model)
  if not layers:
    return 0
  data = _batches(x, batch_size, batches)
  moving = [v for layer in layers for v in (layer.moving_mean, layer.moving_variance)]
  moving_ids = {id(v) for v in moving}
  others = [v for v in model.variables if id(v) not in moving_ids]
  saved = [v.numpy() for v in others]
  momenta = [layer.momentum for layer in layers]
  sums = [np.zeros(v.shape, np.float64) for v in moving]
  forward = _forward(model)
  try:
    for layer in layers:   # momentum 0: each batch leaves its own statistics, summed here
      layer.momentum = 0.0
    for inputs in data:
      with layers_base.without_penalties():   # the statistics need no rate or density step
        forward(inputs)
      for total, variable in zip(sums, moving):
        total += variable.numpy()
    if data:
      for total, variable in zip(sums, moving):
        variable.assign((total / len(data)).astype(variable.dtype.as_numpy_dtype))
  finally:
    for layer, momentum in zip(layers, momenta):
      layer.momentum = momentum
    for variable, value in zip(others, saved):
      variable.assign(value)
  return len(data)


def fit_inputs(args: tuple, kwargs: dict) -> tuple:
  """(training inputs, batch size) of a `fit(x, y, batch_size, ..., validation_split, ...)`
  call, the inputs without the validation split; inputs None for data `refresh_batchnorm`
  cannot take again (a Python generator or `keras.utils.Sequence` is consumed or may have
  side effects)."""
  def argument(name: str, position: int):
    return args[position] if len(args) > position else kwargs.get(name)
  x, batch_size = argument("x", 0), argument("batch_size", 2) or 32
  if isinstance(x, tf.data.Dataset):
    return x, batch_size
  flat = _arrays(x)
  if not flat:
    return None, batch_size
  size = int(flat[0].shape[0])
  keep = int(size * (1.0 - (argument("validation_split", 6) or 0.0)))   # split: the end
  return (tf.nest.map_structure(lambda a: a[:keep], x) if keep < size else x), batch_size
