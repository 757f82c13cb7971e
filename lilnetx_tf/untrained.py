"""Is a layer's kernel still what its initializer drew? (`convert`'s automatic warm-start grid.)

A warm start copies the original weights onto a grid. For a trained model the grid must be fine
(the weights carry the model's function); for a model not trained yet (`convert(model)` then
`fit`, the usual recipe) the values are one random draw whose only information is their scale,
and a fine grid spends ~5 bits per weight on noise that the rate term must then remove. A
kernel is taken as untrained when its values are distributed as a fresh draw of the layer's own
(serializable) initializer: two-sample Kolmogorov–Smirnov distance to a reference of at least
`REFERENCE_SIZE` values (seeded draws of that initializer at the kernel's shape) below
`MAX_DISTANCE`, or below the distance a fresh kernel exceeds with probability `FALSE_TRAINED`
where that is larger (kernels of a few thousand values: against one draw of their own size at
a flat 0.05, 13–19 % of fresh 1,000-value kernels were taken as trained, and started on the
fine grid at ~5 bits per weight). Kernels of fewer than `MIN_SIZE` values are too little
evidence either way.
"""

import math
from typing import Optional

import numpy as np
import tensorflow as tf

from lilnetx_tf.layers import layer_attribute

__all__ = ["FALSE_TRAINED", "MAX_DISTANCE", "MIN_SIZE", "REFERENCE_SIZE", "is_untrained",
           "layer_keeping_resolution"]

MIN_SIZE = 1000
MAX_DISTANCE = 0.05
FALSE_TRAINED = 1e-3
REFERENCE_SIZE = 20_000
_SAMPLE = 100_000   # values compared at most (a subsample of larger kernels)


def _initializer(layer, path: str) -> Optional[tf.keras.initializers.Initializer]:
  """The initializer of the kernel at `path` (a `kernel_latents` path): 'kernel' →
  `kernel_initializer`, 'depthwise_kernel' → `depthwise_initializer`, 'embeddings' →
  `embeddings_initializer`, '_query_dense.kernel' → that sublayer's `kernel_initializer`."""
  owner_path, _, name = path.rpartition(".")
  name = (name.removesuffix("_kernel") if name.endswith("_kernel") else name) + "_initializer"
  try:
    owner = layer_attribute(layer, owner_path)
    config = owner.get_config().get(name)
    return None if config is None else tf.keras.initializers.get(config)
  except (AttributeError, ValueError, TypeError, KeyError):
    return None      # a custom initializer Keras cannot rebuild: no evidence


def ks_distance(a: np.ndarray, b: np.ndarray) -> float:
  """Two-sample Kolmogorov–Smirnov statistic: the largest gap between the empirical CDFs."""
  a, b = np.sort(a), np.sort(b)
  points = np.concatenate([a, b])
  gap = np.searchsorted(a, points, side="right") / a.size - np.searchsorted(
      b, points, side="right") / b.size
  return float(np.max(np.abs(gap)))


def _reference(initializer, shape: tuple) -> np.ndarray:
  """At least `REFERENCE_SIZE` values of `initializer` at `shape` (its variance depends on the
  shape): draws with seeds 0, 1, ... (one draw of an initializer that takes no seed)."""
  config = initializer.get_config()
  size = math.prod(shape)
  if "seed" not in config:
    draws = [initializer]
  else:
    draws = [type(initializer).from_config({**config, "seed": seed})
             for seed in range(-(-REFERENCE_SIZE // size))]
  return np.concatenate([np.asarray(draw(shape, dtype=tf.float32), np.float64).ravel()
                         for draw in draws])


def _max_distance(n: int, m: int) -> float:
  """`MAX_DISTANCE`, or the two-sample KS distance that samples of `n` and `m` values of one
  distribution exceed with probability `FALSE_TRAINED` (asymptotic), if larger."""
  critical = math.sqrt(-math.log(FALSE_TRAINED / 2) / 2)
  return max(MAX_DISTANCE, critical * math.sqrt((n + m) / (n * m)))


def is_untrained(layer, kernel: np.ndarray, path: str = "kernel") -> Optional[bool]:
  """Whether `kernel` (the layer's kernel at `path`, Keras layout) looks like a fresh draw of
  its initializer;
  None when there is no evidence (a small kernel, or an initializer that cannot be rebuilt)."""
  if kernel.size < MIN_SIZE:
    return None
  initializer = _initializer(layer, path)
  if initializer is None:
    return None
  try:
    fresh = _reference(initializer, tuple(kernel.shape))
  except (ValueError, TypeError):
    return None
  rng = np.random.default_rng(0)
  values = np.asarray(kernel, np.float64).ravel()
  if values.size > _SAMPLE:
    values = rng.choice(values, _SAMPLE, replace=False)
  if fresh.size > _SAMPLE:
    fresh = rng.choice(fresh, _SAMPLE, replace=False)
  if not np.all(np.isfinite(values)):
    return False
  return ks_distance(values, fresh) < _max_distance(values.size, fresh.size)


# The grid of an untrained group is chosen from the size target, within these bounds: at 3×
# the smallest layer RMS a uniform or normal initializer keeps ~13 % of its weights (at ±3 RMS,
# about the original variance); beyond ~3.5× a uniform one rounds to all zeros, a dead model.
TRAINED_RESOLUTION = 0.1
UNTRAINED_RESOLUTION = 2.0
MAX_UNTRAINED_RESOLUTION = 3.0
_CANDIDATES = np.geomspace(TRAINED_RESOLUTION, MAX_UNTRAINED_RESOLUTION, 25)


# An untrained grid keeps every layer's largest weight at ±1 or beyond (at least this many
# grid steps): a layer rounded to all zeros outputs a constant and passes no gradient back, so
# a one-weight head (e.g. a Dense(1) on a cosine similarity, whose RMS is its weight and sets
# the grid at 3× it) left its model dead. Above 1/√3 of a step so that a uniform initializer's
# layers (largest weight ≈ √3 RMS) never bind below `MAX_UNTRAINED_RESOLUTION`.
_KEEP_LARGEST = 0.55


def layer_keeping_resolution(kernels: list, smallest_rms: float) -> float:
  """The coarsest grid (a multiple of `smallest_rms`) at which each of `kernels` (but all-zero
  ones) keeps its largest weight (`_KEEP_LARGEST`)."""
  largest = [float(np.max(np.abs(k))) for k in kernels if np.any(k)]
  if not largest or smallest_rms <= 0:
    return MAX_UNTRAINED_RESOLUTION
  return min(largest) / (_KEEP_LARGEST * smallest_rms)


def entropy_bits(values: np.ndarray) -> float:
  """Empirical entropy in bits per value of integer `values`."""
  _, counts = np.unique(values, return_counts=True)
  p = counts / counts.sum()
  return float(-(p * np.log2(p)).sum())


def untrained_resolution(kernels: list, smallest_rms: float, bits_per_value: Optional[float]
                         ) -> float:
  """The finest grid (as a multiple of `smallest_rms`) at which the untrained `kernels` take
  at most `bits_per_value` bits each (empirical entropy); `UNTRAINED_RESOLUTION` without a
  target, `MAX_UNTRAINED_RESOLUTION` at most. Starting at the size target, the rate term need
  not spend the first steps removing the initializer's noise."""
  if bits_per_value is None or smallest_rms <= 0:
    return UNTRAINED_RESOLUTION
  rng = np.random.default_rng(0)
  values = np.concatenate([np.ravel(k) for k in kernels])
  if values.size > _SAMPLE:
    values = rng.choice(values, _SAMPLE, replace=False)
  for resolution in _CANDIDATES:
    if entropy_bits(np.round(values / (resolution * smallest_rms))) <= bits_per_value:
      return float(resolution)
  return MAX_UNTRAINED_RESOLUTION
