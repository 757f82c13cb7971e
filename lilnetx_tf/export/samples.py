"""Sample inputs for a model and the comparison of two models' outputs on them."""

from typing import Sequence

import numpy as np
import tensorflow as tf

__all__ = ["DEFAULT_SIZE", "random_input", "sample_inputs", "compare"]

# The size of every dynamic dimension but the batch (a sequence length, an image side) in the
# sample inputs that `slim`, `export` and the TFLite timer use when none are given.
DEFAULT_SIZE = 32


def random_input(rng: np.random.Generator, shape: Sequence[int], dtype) -> np.ndarray:
  """Random normal values for a float input; 0s and 1s for any other (ids, masks), which every
  embedding table and mask accepts, as the words b"0" and b"1" for a string input (text that
  a `TextVectorization` or `StringLookup` reads)."""
  dtype = tf.as_dtype(dtype)
  if dtype == tf.string:
    return rng.integers(0, 2, shape).astype(np.bytes_).astype(object)
  dtype = np.dtype(dtype.as_numpy_dtype)
  if np.issubdtype(dtype, np.floating):
    return rng.standard_normal(shape).astype(dtype)
  return rng.integers(0, 2, shape).astype(dtype)


def sample_inputs(model: tf.keras.Model, batch: int = 2, spatial: int = DEFAULT_SIZE,
                  seed: int = 0) -> list:
  """Random inputs for `model` (`random_input`; unknown sizes: batch `batch`, other dims
  `spatial`)."""
  rng = np.random.default_rng(seed)
  return [random_input(rng, [batch] + [spatial if d is None else int(d) for d in t.shape[1:]],
                       t.dtype)
          for t in model.inputs]


def _as_list(x) -> list:
  return [np.asarray(v) for v in tf.nest.flatten(x)]


def compare(reference: tf.keras.Model, candidate: tf.keras.Model, inputs: list,
            rtol: float, atol: float) -> tuple[float, float]:
  """(largest |difference| over outputs, its allowed value atol + rtol·max|reference|)."""
  feed = inputs[0] if len(inputs) == 1 else inputs
  ref = _as_list(reference(feed, training=False))
  got = _as_list(candidate(feed, training=False))
  diff = max(float(np.max(np.abs(r.astype(np.float64) - g))) if r.size else 0.0
             for r, g in zip(ref, got))
  scale = max(float(np.max(np.abs(r))) if r.size else 0.0 for r in ref)
  return diff, atol + rtol * scale
