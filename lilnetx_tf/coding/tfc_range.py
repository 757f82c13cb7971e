"""tensorflow-compression's range coder, which coded the latents of format 5 files.

Importable only where tensorflow-compression installs (the TF 2.14 configuration, Python 3.11).
It decodes older files and is the reference that `entropy`'s coder is measured against; new
files use `entropy`. Same interface as `entropy`'s `Encoder` and `Decoder`, with the tables
(`entropy.Distribution`) in tfc's lookup layout; tfc codes symbol by symbol, so any split into
calls reads back.
"""

from typing import Optional, Sequence

import numpy as np
import tensorflow as tf
import tensorflow_compression as tfc

from lilnetx_tf import errors
from lilnetx_tf.coding import entropy

__all__ = ["Encoder", "Decoder"]


def _cdf(d: entropy.Distribution) -> np.ndarray:
  """`d` in the range coder's lookup layout: precision (negative: escape), 0, the cumulative
  widths."""
  head = [-d.precision if d.escape else d.precision, 0]
  return np.concatenate([np.array(head, np.int64), np.cumsum(d.widths)]).astype(np.int32)


def _lookup(distributions: Sequence[entropy.Distribution]) -> tf.Tensor:
  """The range coder's lookup: one row per distribution, padded with its final value. (A 1-D
  concatenation would be ambiguous: the coder skips values equal to a CDF's final value after
  it, so a next precision of 2 would vanish after a 1-bit CDF.)"""
  cdfs = [_cdf(d) for d in distributions]
  width = max(c.size for c in cdfs)
  return tf.constant(np.stack([np.pad(c, (0, width - c.size), mode="edge") for c in cdfs]))


def _offsets(distributions: Sequence[entropy.Distribution]) -> np.ndarray:
  """Each distribution's first symbol (all within ±2**30: int32)."""
  return np.array([d.offset for d in distributions], np.int32)


class Encoder:
  """Codes integer symbols, each with the distribution its index selects."""

  def __init__(self, distributions: Sequence[entropy.Distribution]):
    self._lookup = _lookup(distributions)
    self._offsets = _offsets(distributions)
    self._values: list = []
    self._index: list = []

  def encode(self, values: np.ndarray, index) -> None:
    values = np.asarray(values).reshape(-1)
    index = np.broadcast_to(np.asarray(index, np.int32), values.shape).reshape(-1)
    self._index.append(index)
    self._values.append(values.astype(np.int32) - self._offsets[index])

  def finish(self) -> bytes:
    with tf.device("/cpu:0"):
      handle = tfc.create_range_encoder([], self._lookup)
      handle = tfc.entropy_encode_index(handle, tf.constant(np.concatenate(self._index)),
                                        tf.constant(np.concatenate(self._values)))
      return tfc.entropy_encode_finalize(handle).numpy()


class Decoder:
  """Reads back the symbols of an `Encoder`'s string, in order, over several calls."""

  def __init__(self, string: bytes, distributions: Sequence[entropy.Distribution], what: str):
    self._offsets = _offsets(distributions).astype(np.int64)
    self._what = what
    with tf.device("/cpu:0"):
      self._handle = tfc.create_range_decoder(tf.constant(string, tf.string),
                                              _lookup(distributions))

  def decode(self, index, count: Optional[int] = None) -> np.ndarray:
    """The next `len(index)` symbols, each with the distribution `index` selects (int64); an
    int `index` selects one distribution for `count` symbols."""
    index = np.asarray(index, np.int32).reshape(-1) if np.ndim(index) else \
        np.full(count, index, np.int32)
    if index.size and not (index.min() >= 0 and index.max() < self._offsets.size):
      raise errors.ModelFileError(f"The entropy tables of {self._what} are too few.")
    try:
      with tf.device("/cpu:0"):
        self._handle, symbols = tfc.entropy_decode_index(
            self._handle, tf.constant(index), tf.constant([index.size], tf.int32), tf.int32)
    except (tf.errors.InvalidArgumentError, tf.errors.OutOfRangeError) as e:
      raise errors.ModelFileError(f"Range decoding of {self._what} failed: {e.message}") from None
    values = symbols.numpy().astype(np.int64) + self._offsets[index]
    if np.any(np.abs(values) > entropy.MAX_ABS_LATENT):
      raise errors.ModelFileError(f"Range decoding of {self._what} produced out-of-range values.")
    return values

  def finish(self) -> None:
    """Checks that the string ended where the symbols did (a weak check, like tfc's)."""
    with tf.device("/cpu:0"):
      ok = bool(tfc.entropy_decode_finalize(self._handle).numpy())
    if not ok:
      raise errors.ModelFileError(f"The range-coded {self._what} are corrupt.")
