"""Range coding of integer symbols with quantized frequency tables.

A `Distribution` is a run of integer bin widths over the symbols offset, offset + 1, ..., that
sum to 2**precision, every width at least 1. An *escape* distribution ends with one extra bin:
symbols outside the run are coded as that bin followed by their distance from the run
(`_escape_parts`), so any integer can be coded. Distributions are fitted to the symbols they
will code (`fit`, `binary`), each at the precision (up to a maximum) that makes its stored
widths plus the symbols it codes shortest: a table fitted to 300 symbols gains nothing from
16-bit widths. The file stores the widths, and coding never recomputes a float.

The coder is constriction's range coder (32-bit words, 64-bit state, 24-bit probabilities).
Each distribution becomes a categorical model computed from its integer widths alone:
constriction gives bin k the slots from ⌊C_k·(2**24 − n)/2**precision⌋ + k on (C_k the widths
before k, n the bins), arithmetic that is exact in float64, so a string is bit-identical
wherever it is written and read. The string is the coder's words, little-endian, without
trailing zero bytes (the decoder reads zeros past the end).

An `Encoder` codes a stream in *calls*, and a `Decoder` reads it back in the same calls: within
a call, the symbols of each distribution are coded together (distributions in index order,
symbols in stream order), so that the coder runs over arrays rather than single symbols, and
the decoder can take a call's indices from the symbols of earlier calls. `encode` codes a
stream in one call. A corrupt string raises `ModelFileError`.
"""

import dataclasses
from typing import Optional, Sequence

import constriction
import numpy as np
import tensorflow as tf

from lilnetx_tf import errors

__all__ = ["DEFAULT_PRECISION", "MAX_ABS_LATENT", "MAX_RUN", "Distribution", "binary", "fit",
           "description_bits", "check_integers", "Encoder", "encode", "Decoder",
           "tables_to_bytes", "tables_from_bytes", "estimated_bits"]

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


def check_integers(values: np.ndarray, what: str) -> None:
  """Raises `InvalidArgumentError` unless `values` are integers float32 represents exactly."""
  if not np.all(np.isfinite(values)) or np.any(np.abs(values) > MAX_ABS_LATENT):
    raise errors.InvalidArgumentError(
        f"{what}: latents must be finite with |round(latent)| <= 2**24; re-train with a "
        "larger latent step or check the model for NaNs.")


_ESCAPE_LENGTHS = 33              # an escape's distance d < 2**32: d + 1 has 1 .. 33 bits
_LOW_BITS = 16                    # constriction's uniform models take sizes below 2**24


def _model(distribution: Distribution):
  """constriction's categorical model of `distribution`'s widths (None for a single bin,
  which codes nothing)."""
  if distribution.widths.size < 2:
    return None
  return constriction.stream.model.Categorical(distribution.widths.astype(np.float64),
                                               perfect=False)


def _tables(index, count: int) -> list:
  """The distributions a call with `index` (an array, or one int for the whole call) uses,
  ascending; raises `InvalidArgumentError` for an index without a distribution."""
  if np.ndim(index) == 0:
    low = high = int(index)
  elif index.size == 0:
    return []
  else:
    low, high = int(index.min()), int(index.max())
  if low < 0 or high >= count:
    raise errors.InvalidArgumentError(f"A symbol's table index is not one of {count} tables.")
  if low == high:
    return [low]
  return np.flatnonzero(np.bincount(index, minlength=count)).tolist()


def _escape_parts(distances: np.ndarray) -> tuple:
  """How distances d >= 0 of escaped symbols are coded: d + 1 = 2**L + r with r < 2**L, as L
  (uniform over 0 .. 32), then r's low min(L, 16) bits and its other bits, each uniform
  (a part of no bits is not coded). Returns (L, low parts, their sizes, high parts, their
  sizes)."""
  value = distances + 1
  lengths = np.frexp(value.astype(np.float64))[1].astype(np.int64) - 1
  rest = value - (np.int64(1) << lengths)
  low_sizes, high_sizes = _part_sizes(lengths)
  return (lengths, (rest & ((1 << _LOW_BITS) - 1))[low_sizes > 1], low_sizes[low_sizes > 1],
          (rest >> _LOW_BITS)[high_sizes > 1], high_sizes[high_sizes > 1])


def _part_sizes(lengths: np.ndarray) -> tuple:
  low_bits = np.minimum(lengths, _LOW_BITS)
  return np.int64(1) << low_bits, np.int64(1) << (lengths - low_bits)


def _run(d: Distribution) -> int:
  return d.widths.size - int(d.escape)


class Encoder:
  """Codes integer symbols, each with the distribution its index selects, in calls."""

  def __init__(self, distributions: Sequence[Distribution]):
    self._distributions = list(distributions)
    self._models = [_model(d) for d in self._distributions]
    self._coder = constriction.stream.queue.RangeEncoder()

  def encode(self, values: np.ndarray, index) -> None:
    """Codes integer `values` (each within ±2**24), each with `distributions[index[k]]`, as
    one call; an int `index` selects one distribution for all."""
    values = np.asarray(values).reshape(-1).astype(np.int32)
    if np.ndim(index):
      index = np.asarray(index).reshape(-1)
      if index.size != values.size:
        raise errors.InvalidArgumentError("Each value needs one table index.")
    tables = _tables(index, len(self._distributions))
    for which in tables:
      self._encode(values if len(tables) == 1 else values[index == which], which)

  def _encode(self, values: np.ndarray, which: int) -> None:
    d = self._distributions[which]
    run = _run(d)
    symbols = values - np.int32(d.offset)
    if symbols.size and (symbols.min() < 0 or symbols.max() >= run):
      if not d.escape:
        raise errors.InvalidArgumentError(f"A value lies outside the symbols of table {which}.")
      outside = (symbols < 0) | (symbols >= run)
      escaped = symbols[outside].astype(np.int64)
      symbols = np.where(outside, np.int32(run), symbols)
    else:
      escaped = symbols[:0].astype(np.int64)
    if self._models[which] is not None:
      self._coder.encode(symbols, self._models[which])
    if escaped.size:
      distances = np.where(escaped < 0, -2 * escaped - 1, 2 * (escaped - run))
      lengths, low, low_sizes, high, high_sizes = _escape_parts(distances)
      self._coder.encode(lengths.astype(np.int32),
                         constriction.stream.model.Uniform(_ESCAPE_LENGTHS))
      for part, sizes in ((low, low_sizes), (high, high_sizes)):
        if part.size:
          self._coder.encode(part.astype(np.int32), constriction.stream.model.Uniform(),
                             sizes.astype(np.int32))

  def finish(self) -> bytes:
    """The string of everything coded so far."""
    return self._coder.get_compressed().astype("<u4").tobytes().rstrip(b"\0")


def encode(values: np.ndarray, index, distributions: Sequence[Distribution]) -> bytes:
  """Range-codes integer `values`, each with `distributions[index[k]]`, in one call."""
  encoder = Encoder(distributions)
  encoder.encode(values, index)
  return encoder.finish()


class Decoder:
  """Reads back the symbols of an `Encoder`'s string, in the encoder's calls."""

  def __init__(self, string: bytes, distributions: Sequence[Distribution], what: str):
    self._distributions = list(distributions)
    self._models: dict = {}
    self._what = what
    words = np.frombuffer(bytes(string) + b"\0" * (-len(string) % 4), "<u4")
    self._coder = constriction.stream.queue.RangeDecoder(words.astype(np.uint32))

  def decode(self, index, count: Optional[int] = None) -> np.ndarray:
    """The symbols of the next call, each with the distribution `index` selects (int64); an
    int `index` selects one distribution for `count` symbols."""
    if np.ndim(index):
      index = np.asarray(index).reshape(-1)
      count = index.size
    try:
      tables = _tables(index, len(self._distributions))
    except errors.InvalidArgumentError:
      raise errors.ModelFileError(f"The entropy tables of {self._what} are too few.") from None
    try:
      if len(tables) == 1:
        values = self._decode(tables[0], count)
      else:
        values = np.empty(count, np.int64)
        for which in tables:
          chosen = index == which
          values[chosen] = self._decode(which, int(np.count_nonzero(chosen)))
    except (AssertionError, ValueError, OverflowError):
      raise errors.ModelFileError(
          f"Range decoding of {self._what} failed: the coded string is corrupt.") from None
    if values.size and (values.min() < -MAX_ABS_LATENT or values.max() > MAX_ABS_LATENT):
      raise errors.ModelFileError(f"Range decoding of {self._what} produced out-of-range values.")
    return values

  def _decode(self, which: int, count: int) -> np.ndarray:
    d = self._distributions[which]
    if which not in self._models:
      self._models[which] = _model(d)
    if self._models[which] is None:
      symbols = np.zeros(count, np.int64)
    else:
      symbols = self._coder.decode(self._models[which], count).astype(np.int64)
    run = _run(d)
    if d.escape and symbols.size and symbols.max() == run:
      outside = symbols == run
      escapes = int(np.count_nonzero(outside))
      lengths = self._coder.decode(constriction.stream.model.Uniform(_ESCAPE_LENGTHS), escapes)
      lengths = lengths.astype(np.int64)
      parts = []
      for sizes in _part_sizes(lengths):
        part = np.zeros(escapes, np.int64)
        coded = sizes > 1
        if np.any(coded):
          part[coded] = self._coder.decode(constriction.stream.model.Uniform(),
                                           sizes[coded].astype(np.int32))
        parts.append(part)
      distances = (np.int64(1) << lengths) + (parts[1] << _LOW_BITS | parts[0]) - 1
      symbols[outside] = np.where(distances % 2 == 1, -(distances + 1) // 2, distances // 2 + run)
    symbols += d.offset
    return symbols

  def finish(self) -> None:
    """Checks that the string ended where the symbols did (a weak check: a range coder cannot
    always tell)."""
    if not self._coder.maybe_exhausted():
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
