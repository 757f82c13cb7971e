"""Pricing many latents from one density evaluation on a grid.

A parameter group's density is factorized: one 1-D function per channel. A group with many
latents (a dense group holds every weight of every Dense layer) would evaluate the deep density
network once per latent and step. Instead the group evaluates it on `POINTS` grid points per
channel and prices each latent by the grid point nearest to it: a histogram of the latents
(a bincount) weights the tabulated bits, and each latent's slope is gathered from the table of
the bits' exact derivative. Two grids:

- Integer latents (evaluation): the integers from just below the smallest latent. Exact; a
  group whose latents span more than the table is evaluated latent by latent.
- Noisy latents (training, latent + U(−½, ½)): the float32 numbers |z| + 4 with their mantissa
  cut to 7 bits, mirrored at 0: spacing 1/32 near zero, doubling with every octave of |z| + 4
  (1/16 from |z| = 4, 1/2 from 60, 4 from 508), so one static table covers |z| < 262,140 and its
  spacing stays a small fraction of the bits' scale of variation; values beyond take its last
  point (at 2^22 and beyond, z ± ½ is not even representable in float32). A latent's grid
  point comes from its float's bits (an add, a shift, a compare), 6× cheaper than the
  asinh-uniform grid used before with about the same spacing. Moving each evaluation point by
  at most half a spacing is far less than the noise itself; the totals stay within a fraction of
  a percent of the exact bits (tests/test_objective.py measures it).
"""

import struct
from typing import Sequence

import tensorflow as tf

from lilnetx_tf.layers import noise as noise_lib

__all__ = ["LOOPS", "MIN_ROWS", "POINTS", "by_block", "integer_grid", "integer_indices",
           "integer_origin_and_fit", "noisy_grid", "noisy_histograms", "noisy_indices", "runs",
           "totals", "totals_and_slopes", "weighted_sum", "worth_it"]

# Grid points per channel: a static size, so the table also compiles under XLA.
POINTS = 4096
# Below this many rows, evaluating each latent costs less than the table's 2 · POINTS points.
MIN_ROWS = 2 * POINTS
# The most XLA loops of a training step's noisy lookup: more blocks are grouped into this many
# runs, so its compilation does not grow with the number of layers in a group.
LOOPS = 4
# The noisy grid (see the module docstring): |z| + OFFSET to MANTISSA_BITS bits of mantissa, so
# spacing OFFSET / 2^MANTISSA_BITS at 0; POINTS / 2 points per side cover 16 octaves.
OFFSET = 4.0
MANTISSA_BITS = 7
_SHIFT = 23 - MANTISSA_BITS           # float32 has 23 mantissa bits
_OFFSET_CODE = struct.unpack("<i", struct.pack("<f", OFFSET))[0] >> _SHIFT  # cut the same way
_HALF = POINTS // 2


def worth_it(num_rows: int) -> bool:
  """Whether a group of `num_rows` latent rows is priced faster by a table."""
  return num_rows >= MIN_ROWS


def integer_origin_and_fit(values: tf.Tensor) -> tuple:
  """The integer grid's first point (below every value) and whether the grid covers `values`.
  The test is False for non-finite values too, so those take the exact path."""
  origin = tf.floor(tf.reduce_min(values)) - 1.0
  return origin, tf.reduce_max(values) - origin <= POINTS - 2


def integer_grid(origin: tf.Tensor, num_channels: int) -> tf.Tensor:
  """(POINTS, num_channels): the integers origin, origin + 1, ... for every channel."""
  points = origin + tf.range(POINTS, dtype=tf.float32)
  return tf.tile(points[:, None], (1, num_channels))


def integer_indices(values: tf.Tensor, origin: tf.Tensor) -> tf.Tensor:
  """Flat indices into an `integer_grid` table of the integer values (n, channels)."""
  return _flat(tf.cast(tf.round(values - origin), tf.int32), values.shape[-1])


def noisy_grid(num_channels: int) -> tf.Tensor:
  """(POINTS, num_channels): the noisy grid, the same points for every channel."""
  position = tf.range(POINTS) - _HALF
  code = tf.bitwise.left_shift(_OFFSET_CODE + tf.abs(position), _SHIFT)
  magnitude = tf.bitcast(code, tf.float32) - OFFSET
  points = tf.where(position < 0, -magnitude, magnitude)
  return tf.tile(points[:, None], (1, num_channels))


def noisy_indices(values: tf.Tensor) -> tf.Tensor:
  """Flat indices into a `noisy_grid` table of the grid point nearest each of `values`
  (n, channels); values beyond the grid (or not finite) take its last point on their side."""
  code = tf.bitcast(tf.abs(values) + OFFSET, tf.int32) + (1 << (_SHIFT - 1))  # nearest, not floor
  steps = tf.bitwise.right_shift(code, _SHIFT) - _OFFSET_CODE
  position = tf.where(values < 0, -tf.minimum(steps, _HALF), tf.minimum(steps, _HALF - 1))
  return _flat(position + _HALF, values.shape[-1])


def _flat(position: tf.Tensor, num_channels: int) -> tf.Tensor:
  if num_channels > 1:
    position = position * num_channels + tf.range(num_channels)
  return tf.reshape(position, (-1,))


def _histograms(flat_indices: tf.Tensor, sizes: Sequence[int], size: int) -> list:
  """Counts of each of `size` indices in consecutive blocks of `sizes` values."""
  parts = tf.split(flat_indices, list(sizes)) if len(sizes) > 1 else [flat_indices]
  # The raw op with a constant size: `tf.math.bincount` derives its output size from the data,
  # which XLA cannot compile. Empty weights count each value once.
  return [tf.raw_ops.DenseBincount(input=part, size=tf.constant(size),
                                   weights=tf.zeros((0,), tf.float32), binary_output=False)
          for part in parts]


def weighted_sum(table: tf.Tensor, counts: tf.Tensor) -> tf.Tensor:
  """Σ table · counts; grid points no value is near may cost infinitely many bits: they add
  0, not NaN."""
  return tf.reduce_sum(
      tf.math.multiply_no_nan(tf.reshape(table, (-1,)), tf.reshape(counts, (-1,))))


def totals(table: tf.Tensor, flat_indices: tf.Tensor, sizes: Sequence[int]) -> list:
  """Σ table[index] over consecutive blocks of `sizes` values of `flat_indices`, one histogram
  per block: differentiable in `table`, with no per-value work in the backward pass."""
  counts = _histograms(flat_indices, sizes, table.shape.num_elements())
  return [weighted_sum(table, count) for count in counts]


def runs(sizes: Sequence[int], count: int = LOOPS) -> list:
  """The indices of `sizes` as at most `count` runs of consecutive blocks of about equal sums
  (a block joins the run its middle falls in): each block alone when there are no more than
  `count`."""
  if len(sizes) <= count:
    return [[i] for i in range(len(sizes))]
  total, cut, result = max(sum(sizes), 1), 0, {}
  for i, size in enumerate(sizes):
    result.setdefault(min(int((2 * cut + size) * count // (2 * total)), count - 1), []).append(i)
    cut += size
  return list(result.values())


@tf.function(jit_compile=True, autograph=False)  # plain Python loops: nothing to convert
def noisy_histograms(rows: Sequence[tf.Tensor], latent_step: tf.Tensor,
                     noise_key: tf.Tensor) -> tuple:
  """Finds the grid points of the noisy values rows / `latent_step` + one draw of
  `noise.uniform` (for `noise_key`, over the rows in order): each block's histogram over the
  grid, their sum (POINTS, channels), and each value's flat index into a (POINTS, channels)
  table.

  The per-latent work of a training step's rate, compiled by XLA: one loop per `runs` of
  blocks (`rows` are e.g. the members' latent variables, each (n_i, channels)), so the program
  does not grow with the number of blocks (one loop each took ~0.1 s to compile, 3 s for a
  MobileNetV2's 34 1×1 layers). A run of several blocks counts them in one histogram of
  (blocks, POINTS · channels) bins: each block's indices are offset by its own bins.
  Returns ([(blocks, POINTS · channels) counts per run], total counts, [flat indices per run]).
  """
  channels = int(rows[0].shape[-1])
  bins = POINTS * channels
  counts, indices, offset = [], [], 0
  for run in runs([r.shape.num_elements() for r in rows]):
    blocks = [rows[i] for i in run]
    block = tf.concat(blocks, 0) if len(blocks) > 1 else blocks[0]
    noise = noise_lib.uniform(tf.shape(block), noise_key, offset=offset)
    flat = noisy_indices(block / latent_step + noise)
    if len(blocks) > 1:   # a constant per block: a fused concatenation of broadcasts
      flat_bins = flat + tf.concat([tf.fill([b.shape.num_elements()], i * bins)
                                    for i, b in enumerate(blocks)], 0)
    else:
      flat_bins = flat
    size = len(blocks) * bins
    counts.append(tf.reshape(_histograms(flat_bins, [size], size)[0], (len(blocks), bins)))
    indices.append(flat)
    offset += block.shape.num_elements()
  total = tf.add_n([tf.reduce_sum(c, 0) for c in counts])
  return counts, tf.reshape(total, (POINTS, channels)), indices


@tf.function(jit_compile=True, autograph=False)
def totals_and_slopes(table: tf.Tensor, slope_table: tf.Tensor, counts: Sequence[tf.Tensor],
                      indices: Sequence[tf.Tensor]) -> tuple:
  """Each block's total bits (one vector) from `noisy_histograms`' `counts` and `table`, and
  the slope of each value, `slope_table`'s entry at its index (one vector per run, as
  `indices`; `by_block` splits them): XLA's gather takes a third of the time of TensorFlow's on
  a few hundred thousand indices. One gather per run: one per block, sliced, took twice as
  long to compile."""
  flat_table = tf.reshape(table, (1, -1))
  totals = [tf.reduce_sum(tf.math.multiply_no_nan(flat_table, c), 1) for c in counts]
  flat_slopes = tf.reshape(slope_table, (-1,))
  return tf.concat(totals, 0), [tf.gather(flat_slopes, i) for i in indices]


def by_block(run_values: Sequence[tf.Tensor], sizes: Sequence[int]) -> list:
  """Values of each block, from the values of each of `runs(sizes)` (blocks of `sizes`)."""
  result = []
  for run, values in zip(runs(sizes), run_values):
    result.extend(tf.split(values, [sizes[i] for i in run]) if len(run) > 1 else [values])
  return result
