"""Range coding of integer symbols with quantized frequency tables (tensorflow-compression).

A `Distribution` is a run of integer bin widths over the symbols offset, offset + 1, ..., that
sum to 2**precision, every width at least 1. An *escape* distribution ends with one extra bin,
the range coder's overflow code: symbols outside the run are coded through it with an Elias
gamma code, so any integer can be coded. Distributions are fitted to the symbols they will code
(`fit`, `binary`), each at the precision (up to a maximum) that makes its stored widths plus
the symbols it codes shortest: a table fitted to 300 symbols gains nothing from 16-bit widths.
The file stores the widths, and decoding never recomputes a float.

`encode` codes all symbols of a stream, each with the distribution its index selects, in one
string; a `Decoder` reads them back in the same order, in as many calls as the caller needs
(later counts may depend on earlier symbols).
"""

import dataclasses
from typing import Sequence

import numpy as np
import tensorflow as tf
import tensorflow_compression as tfc

from lilnetx_tf import errors

DEFAULT_PRECISION = 16
MAX_ABS_LATENT = 2 ** 24          # integers float32 holds exactly
# The widest run a fitted distribution keeps; rarer outlying symbols go through the escape.
MAX_RUN = 1 << 12
_MAX_OFFSET = 1 << 30


@dataclasses.dataclass(frozen=True)
class Distribution:
  """Bin widths of symbols offset, offset + 1, ... (and the escape bin last, if `escape`)."""
  offset: int
  widths: np.ndarray               # int64, each >= 1, summing to 2**precision
  escape: bool
  precision: int

  def cdf(self) -> np.ndarray:
    """This distribution in the range coder's lookup layout (negative precision: escape)."""
    head = [-self.precision if self.escape else self.precision, 0]
    return np.concatenate([np.array(head, np.int64), np.cumsum(self.widths)]).astype(np.int32)


def _quantize(counts: np.ndarray, precision: int) -> np.ndarray:
  """Integer widths >= 1 proportional to `counts`, summing to 2**precision exactly."""
  spare = (1 << precision) - counts.size
  if spare < 0:
    raise errors.InvalidArgumentError(
        f"{counts.size} symbols do not fit a range-coder precision of {precision} bits.")
  total = int(counts.sum())
  if total == 0:
    shares = np.full(counts.size, spare / counts.size)
  else:
    shares = counts.astype(np.float64) * spare / total
  widths = np.floor(shares).astype(np.int64)
  leftover = spare - int(widths.sum())
  widths[np.argsort(widths - shares, kind="stable")[:leftover]] += 1
  return widths + 1


def _table_numbers(d: Distribution) -> np.ndarray:
  """What `tables_to_bytes` stores of `d`: escape | (precision − 1) << 1 | bins << 5, the
  zigzagged offset, and the widths but the last (2**precision minus the others)."""
  head = [int(d.escape) | (d.precision - 1) << 1 | d.widths.size << 5, _zigzag(d.offset)]
  return np.concatenate([np.array(head, np.int64), d.widths[:-1]])


def _cheapest(counts: np.ndarray, offset: int, escape: bool, max_precision: int) -> Distribution:
  """The distribution of `counts` whose widths plus coded symbols take the fewest bits."""
  best, best_bits = None, np.inf
  for precision in range(max(1, int(np.ceil(np.log2(counts.size)))), max_precision + 1):
    candidate = Distribution(offset, _quantize(counts, precision), escape, precision)
    bits = _price(candidate, counts)
    if bits < best_bits:
      best, best_bits = candidate, bits
  if best is None:
    raise errors.InvalidArgumentError(
        f"{counts.size} symbols do not fit a range-coder precision of {max_precision} bits.")
  return best


def binary(ones: int, total: int, precision: int = DEFAULT_PRECISION) -> Distribution:
  """The distribution of a flag that is 1 in `ones` of `total` cases (symbols 0 and 1)."""
  return _cheapest(np.array([total - ones, ones]), 0, False, precision)


def _histogram(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """(distinct integer values ascending, their counts); a bincount when the range is small."""
  if values.size == 0:
    return np.zeros(1, np.int64), np.zeros(1, np.int64)
  low, high = int(values.min()), int(values.max())
  if high - low >= 1 << 20:
    return np.unique(values.astype(np.int64), return_counts=True)
  counts = np.bincount((values.astype(np.int64) - low))
  present = np.flatnonzero(counts)
  return present + low, counts[present]


def fit(values: np.ndarray, precision: int = DEFAULT_PRECISION) -> Distribution:
  """An escape distribution fitted to integer `values` (float or int array, any shape).

  The run covers the values' whole range when that is at most `MAX_RUN` symbols, else the
  `MAX_RUN`-symbol window holding the most values; the escape bin is priced by the values
  outside the run.
  """
  symbols, counts = _histogram(np.asarray(values).reshape(-1))
  run = min(MAX_RUN, (1 << precision) - 1)
  cumulative = np.concatenate([[0], np.cumsum(counts)])
  ends = np.searchsorted(symbols, symbols + run)
  first = int(np.argmax(cumulative[ends] - cumulative[:-1]))
  low = int(symbols[first])
  high = int(symbols[ends[first] - 1])
  histogram = np.zeros(high - low + 2, np.int64)
  inside = (symbols >= low) & (symbols <= high)
  histogram[(symbols[inside] - low).astype(np.int64)] = counts[inside]
  histogram[-1] = counts[~inside].sum()
  return _cheapest(histogram, low, True, precision)


def _price(d: Distribution, bin_counts: np.ndarray) -> float:
  """Bits of `d`'s stored table plus those of coding symbols with these counts per bin."""
  coded = float(np.sum(bin_counts * (d.precision - np.log2(d.widths))))
  return 8 * _varint_bytes(_table_numbers(d)) + coded


def description_bits(distribution: Distribution, values: np.ndarray) -> float:
  """Bits of `distribution`'s stored table plus those of coding `values` with it (escaped
  values priced at their escape bin alone)."""
  symbols, counts = _histogram(np.asarray(values).reshape(-1))
  position = symbols - distribution.offset
  run = distribution.widths.size - int(distribution.escape)
  position = np.where((position >= 0) & (position < run), position, distribution.widths.size - 1)
  return _price(distribution, np.bincount(position, counts, distribution.widths.size))


def _lookup(distributions: Sequence[Distribution]) -> tf.Tensor:
  """The range coder's lookup: one row per distribution, padded with its final value. (A 1-D
  concatenation would be ambiguous: the coder skips values equal to a CDF's final value after
  it, so a next precision of 2 would vanish after a 1-bit CDF.)"""
  cdfs = [d.cdf() for d in distributions]
  width = max(c.size for c in cdfs)
  return tf.constant(np.stack([np.pad(c, (0, width - c.size), mode="edge") for c in cdfs]))


def check_integers(values: np.ndarray, what: str) -> None:
  """Raises `InvalidArgumentError` unless `values` are integers float32 represents exactly."""
  if not np.all(np.isfinite(values)) or np.any(np.abs(values) > MAX_ABS_LATENT):
    raise errors.InvalidArgumentError(
        f"{what}: latents must be finite with |round(latent)| <= 2**24; re-train with a "
        "larger latent step or check the model for NaNs.")


def _offsets(distributions: Sequence[Distribution]) -> np.ndarray:
  """Each distribution's first symbol (all within ±2**24: int32)."""
  return np.array([d.offset for d in distributions], np.int32)


def encode(values: np.ndarray, index: np.ndarray,
           distributions: Sequence[Distribution]) -> bytes:
  """Range-codes integer `values`, each with `distributions[index[k]]`, into one string."""
  index = np.asarray(index).astype(np.int32, copy=False).reshape(-1)
  with tf.device("/cpu:0"):
    handle = tfc.create_range_encoder([], _lookup(distributions))
    handle = tfc.entropy_encode_index(
        handle, tf.constant(index),
        tf.constant(np.asarray(values).astype(np.int32) - _offsets(distributions)[index]))
    return tfc.entropy_encode_finalize(handle).numpy()


class Decoder:
  """Reads back the symbols of one `encode` string, in order, over several `decode` calls."""

  def __init__(self, string: bytes, distributions: Sequence[Distribution], what: str):
    self._offsets = _offsets(distributions).astype(np.int64)
    self._what = what
    with tf.device("/cpu:0"):
      self._handle = tfc.create_range_decoder(tf.constant(string, tf.string),
                                              _lookup(distributions))

  def decode(self, index: np.ndarray) -> np.ndarray:
    """The next `len(index)` symbols, each with the distribution `index` selects (int64)."""
    index = np.asarray(index, np.int32).reshape(-1)
    try:
      with tf.device("/cpu:0"):
        self._handle, symbols = tfc.entropy_decode_index(
            self._handle, tf.constant(index), tf.constant([index.size], tf.int32), tf.int32)
    except (tf.errors.InvalidArgumentError, tf.errors.OutOfRangeError) as e:
      raise errors.ModelFileError(f"Range decoding of {self._what} failed: {e.message}") from None
    values = symbols.numpy().astype(np.int64) + self._offsets[index]
    if np.any(np.abs(values) > MAX_ABS_LATENT):
      raise errors.ModelFileError(f"Range decoding of {self._what} produced out-of-range values.")
    return values

  def finish(self) -> None:
    """Checks that the string ended where the symbols did (a weak check, like tfc's)."""
    with tf.device("/cpu:0"):
      ok = bool(tfc.entropy_decode_finalize(self._handle).numpy())
    if not ok:
      raise errors.ModelFileError(f"The range-coded {self._what} are corrupt.")


def _varints(numbers) -> bytes:
  out = bytearray()
  for n in numbers:
    n = int(n)
    while n >= 0x80:
      out.append((n & 0x7F) | 0x80)
      n >>= 7
    out.append(n)
  return bytes(out)


def _varint_bytes(numbers: np.ndarray) -> int:
  """len(_varints(numbers)) for non-negative integers below 2**53, without building them."""
  return int(np.sum((np.frexp(np.maximum(numbers, 1).astype(np.float64))[1] + 6) // 7))


class _Reader:
  """Varint reader over table bytes; every problem is a `ModelFileError`."""

  def __init__(self, data: bytes):
    self.data, self.position = data, 0

  def varint(self) -> int:
    n = shift = 0
    while True:
      if self.position >= len(self.data) or shift > 63:
        raise errors.ModelFileError("Entropy tables are truncated or malformed.")
      byte = self.data[self.position]
      self.position += 1
      n |= (byte & 0x7F) << shift
      shift += 7
      if byte < 0x80:
        return n


def _zigzag(n: int) -> int:
  return 2 * n if n >= 0 else -2 * n - 1


def _unzigzag(n: int) -> int:
  return n // 2 if n % 2 == 0 else -(n + 1) // 2


def tables_to_bytes(distributions: Sequence[Distribution]) -> bytes:
  """count | per distribution its `_table_numbers`; all varints."""
  return _varints([len(distributions)]
                  + [n for d in distributions for n in _table_numbers(d).tolist()])


def tables_from_bytes(data: bytes) -> list:
  """The distributions of `tables_to_bytes`, validated (raises `ModelFileError`)."""
  reader = _Reader(data)
  count = reader.varint()
  if count > len(data):
    raise errors.ModelFileError("Entropy tables are truncated or malformed.")
  distributions = []
  for _ in range(count):
    head, offset = reader.varint(), _unzigzag(reader.varint())
    escape, precision, bins = bool(head & 1), (head >> 1 & 15) + 1, head >> 5
    if not 1 <= bins <= 1 << precision or abs(offset) > _MAX_OFFSET:
      raise errors.ModelFileError("An entropy table has an invalid bin count or offset.")
    widths = [reader.varint() for _ in range(bins - 1)]
    widths.append((1 << precision) - sum(widths))
    widths = np.array(widths, np.int64)
    if np.any(widths < 1):
      raise errors.ModelFileError("An entropy table is not a valid quantized distribution.")
    distributions.append(Distribution(offset, widths, escape, precision))
  if reader.position != len(data):
    raise errors.ModelFileError("Entropy tables are longer than their contents.")
  return distributions


def estimated_bits(group, latents: list) -> float:
  """Self-information (bits) of integer latents under the group's density, as `lnx.stats`."""
  return float(sum(float(tf.reduce_sum(group.bits(q))) for q in latents))
