"""Range coding of integer latents with a group's learned density (tensorflow-compression).

Tables: `build_table` runs `tfc.ContinuousBatchedEntropyModel(prior, coding_rank=2,
compression=True, offset_heuristic=False)` on the trained density and keeps its quantized CDFs as
integer bin widths (`CdfTable`). The file stores these integers, so decoding never recomputes a
float: `decode` builds a stateless entropy model from the stored table. Every bin, the overflow
bin included, is given a width of at least 1, so any integer (inside the table or, through the
coder's overflow escape, outside it) can be coded.

One string per group: all members' latents, as one (N, slice_size) array, go through a single
`compress` call; `decode` is a single `decompress` call.
"""

import dataclasses
import struct
import numpy as np
import tensorflow as tf
import tensorflow_compression as tfc

from lilnetx_tf import errors

DEFAULT_PRECISION = 16
DEFAULT_TAIL_MASS = 2.0 ** -8
MAX_ABS_LATENT = 2 ** 24          # integers float32 holds exactly
_MAX_BINS = 1 << 16
_MAX_OFFSET = 1 << 30

_TEMPLATES: dict = {}


@dataclasses.dataclass(frozen=True)
class CdfTable:
  """Quantized CDFs of one group: per channel, the first symbol and the integer bin widths.

  `widths[c]` holds the widths of channel c's bins for symbols offsets[c], offsets[c] + 1, ...,
  followed by the overflow bin; each row sums to 2**precision.
  """
  precision: int
  offsets: np.ndarray              # (channels,) int32
  widths: tuple                    # channels × (bins,) int64 arrays

  @property
  def channels(self) -> int:
    return int(self.offsets.shape[0])

  def lookup(self) -> np.ndarray:
    """The 1-D CDF lookup the tfc range coder takes (negative precision: overflow on)."""
    parts = []
    for w in self.widths:
      parts += [np.array([-self.precision, 0], np.int32), np.cumsum(w).astype(np.int32)]
    return np.concatenate(parts)

  def restrict(self, minima: np.ndarray, maxima: np.ndarray) -> "CdfTable":
    """The table with only the symbols in [minima[c], maxima[c]] kept per channel.

    The widths of the dropped symbols move into the overflow bin, so the kept symbols cost
    exactly what they cost before, dropped ones (unused by the data) go through the escape, and
    the stored table shrinks to the range the latents actually use. Integer-exact.
    """
    offsets, widths = [], []
    for c, w in enumerate(self.widths):
      symbols = len(w) - 1
      lo = min(max(int(minima[c]) - int(self.offsets[c]), 0), symbols - 1)
      hi = max(min(int(maxima[c]) - int(self.offsets[c]), symbols - 1), lo)
      kept = w[lo:hi + 1]
      widths.append(np.concatenate([kept, [int(w.sum()) - int(kept.sum())]]).astype(np.int64))
      offsets.append(int(self.offsets[c]) + lo)
    return CdfTable(self.precision, np.array(offsets, np.int32), tuple(widths))

  def to_bytes(self) -> bytes:
    """u8 precision | u32 channels | channels × i32 offset | channels × u32 bins | u16 widths."""
    bins = np.array([len(w) for w in self.widths], "<u4")
    head = struct.pack("<BI", self.precision, self.channels)
    widths = np.concatenate(self.widths).astype("<u2") if self.widths else np.zeros(0, "<u2")
    return head + self.offsets.astype("<i4").tobytes() + bins.tobytes() + widths.tobytes()

  @classmethod
  def from_bytes(cls, data: bytes, channels: int) -> "CdfTable":
    """Parses and validates a table written by `to_bytes` (raises `ModelFileError`)."""
    if len(data) < 5:
      raise errors.ModelFileError("Entropy table is truncated.")
    precision, count = struct.unpack_from("<BI", data, 0)
    if count != channels:
      raise errors.ModelFileError(
          f"Entropy table has {count} channels, the group has slice size {channels}.")
    if not 1 <= precision <= 16:
      raise errors.ModelFileError(f"Entropy table precision {precision} is not in [1, 16].")
    if len(data) < 5 + 8 * count:
      raise errors.ModelFileError("Entropy table is truncated.")
    offsets = np.frombuffer(data, "<i4", count, 5).astype(np.int32)
    bins = np.frombuffer(data, "<u4", count, 5 + 4 * count).astype(np.int64)
    if np.any(bins < 2) or np.any(bins > _MAX_BINS) or np.any(np.abs(offsets) > _MAX_OFFSET):
      raise errors.ModelFileError("Entropy table has an invalid bin count or offset.")
    start = 5 + 8 * count
    if len(data) != start + 2 * int(bins.sum()):
      raise errors.ModelFileError("Entropy table length does not match its bin counts.")
    flat = np.frombuffer(data, "<u2", int(bins.sum()), start).astype(np.int64)
    widths = tuple(np.split(flat, np.cumsum(bins)[:-1]))
    for w in widths:
      if np.any(w < 1) or int(w.sum()) != 1 << precision:
        raise errors.ModelFileError("Entropy table is not a valid quantized CDF.")
    return cls(precision, offsets, widths)


def _from_lookup(cdf: np.ndarray, cdf_offset: np.ndarray, precision: int) -> CdfTable:
  """Splits tfc's concatenated CDF into per-channel widths, making every width >= 1."""
  total = 1 << precision
  widths, position = [], 0
  for _ in range(len(cdf_offset)):
    assert cdf[position] == -precision
    end = position + 1
    while cdf[end] != total:
      end += 1
    widths.append(_ensure_positive(np.diff(cdf[position + 1:end + 1]).astype(np.int64)))
    position = end + 1
  return CdfTable(precision, np.asarray(cdf_offset, np.int32), tuple(widths))


def _ensure_positive(widths: np.ndarray) -> np.ndarray:
  """Gives zero-width bins width 1, taking it from the widest bins (integer-exact)."""
  widths = widths.copy()
  for i in np.flatnonzero(widths == 0):
    widths[int(np.argmax(widths))] -= 1
    widths[i] = 1
  return widths


def _template(density, precision: int, tail_mass: float):
  """A cached (prior, traced table builder) with the structure of `density`, or None.

  Building tables takes seconds, nearly all of it in tracing; groups whose densities have the
  same structure reuse one traced function, loading the density's values into its variables.
  """
  if not isinstance(density, tfc.NoisyDeepFactorized):
    return None
  base = density.base
  key = (tuple(density.batch_shape.as_list()), tuple(base.num_filters), precision, tail_mass,
         density.dtype)
  if key not in _TEMPLATES:
    with tf.init_scope():
      prior = tfc.NoisyDeepFactorized(batch_shape=key[0], num_filters=key[1], dtype=key[4])

    @tf.function(autograph=False)
    def build():
      model = tfc.ContinuousBatchedEntropyModel(
          prior, coding_rank=2, compression=True, stateless=True, offset_heuristic=False,
          range_coder_precision=precision, tail_mass=tail_mass)
      return model.cdf, model.cdf_offset
    _TEMPLATES[key] = (prior, build)
  prior, build = _TEMPLATES[key]
  source, target = density.variables, prior.variables
  if len(source) != len(target) or any(s.shape != t.shape for s, t in zip(source, target)):
    return None
  for s, t in zip(source, target):
    t.assign(s)
  return build


def build_table(density, precision: int = DEFAULT_PRECISION,
                tail_mass: float = DEFAULT_TAIL_MASS) -> CdfTable:
  """Quantized CDF table of a trained (noisy) density with batch shape (slice_size,)."""
  build = _template(density, precision, tail_mass)
  if build is None:
    @tf.function(autograph=False)
    def build():
      model = tfc.ContinuousBatchedEntropyModel(
          density, coding_rank=2, compression=True, stateless=True, offset_heuristic=False,
          range_coder_precision=precision, tail_mass=tail_mass)
      return model.cdf, model.cdf_offset
  with tf.device("/cpu:0"):
    cdf, cdf_offset = build()
  return _from_lookup(cdf.numpy(), cdf_offset.numpy(), precision)


def _coder(table: CdfTable) -> tfc.ContinuousBatchedEntropyModel:
  return tfc.ContinuousBatchedEntropyModel(
      compression=True, stateless=True, coding_rank=2, prior_shape=(table.channels,),
      cdf=tf.constant(table.lookup()), cdf_offset=tf.constant(table.offsets),
      offset_heuristic=False, decode_sanity_check=True)


def check_integers(values: np.ndarray, what: str) -> None:
  """Raises `InvalidArgumentError` unless `values` are integers float32 represents exactly."""
  if not np.all(np.isfinite(values)) or np.any(np.abs(values) > MAX_ABS_LATENT):
    raise errors.InvalidArgumentError(
        f"{what}: latents must be finite with |round(latent)| <= 2**24; re-train with a "
        "larger latent step or check the model for NaNs.")


def encode(latents: np.ndarray, table: CdfTable) -> bytes:
  """Range-codes integer latents of shape (N, channels) into one string."""
  with tf.device("/cpu:0"):
    return _coder(table).compress(tf.constant(latents, tf.float32)).numpy()


def decode(string: bytes, count: int, table: CdfTable, what: str = "latents") -> np.ndarray:
  """Decodes `count` rows of integer latents (float32, shape (count, channels))."""
  try:
    with tf.device("/cpu:0"):
      values = _coder(table).decompress(tf.constant(string, tf.string), (count,)).numpy()
  except (tf.errors.InvalidArgumentError, tf.errors.OutOfRangeError) as e:
    raise errors.ModelFileError(f"Range decoding of {what} failed: {e.message}") from None
  if np.any(np.abs(values) > MAX_ABS_LATENT):
    raise errors.ModelFileError(f"Range decoding of {what} produced out-of-range values.")
  return values


def estimated_bits(group, latents: list) -> float:
  """Self-information (bits) of integer latents under the group's density, as `lnx.stats`."""
  return float(sum(float(tf.reduce_sum(group.bits(q))) for q in latents))

