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

__all__ = ["MIN_ROWS", "POINTS", "gather", "integer_grid", "integer_indices",
           "integer_origin_and_fit", "noisy_grid", "noisy_histograms", "noisy_indices", "totals",
           "weighted_sum", "worth_it"]

# Grid points per channel: a static size, so the table also compiles under XLA.
POINTS = 4096
# Below this many rows, evaluating each latent costs less than the table's 2 · POINTS points.
MIN_ROWS = 2 * POINTS
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


@tf.function(jit_compile=True, autograph=False)  # plain Python loops: nothing to convert
def noisy_histograms(rows: Sequence[tf.Tensor], latent_step: tf.Tensor,
                     noise_key: tf.Tensor) -> tuple:
  """Finds the grid points of the noisy values rows / `latent_step` + one draw of
  `noise.uniform` (for `noise_key`, over the rows in order): each block's histogram over the
  grid (POINTS, channels) and each value's flat index into a (POINTS, channels) table.

  The per-latent work of a training step's rate, compiled by XLA: one loop per block (`rows`
  are e.g. the members' latent variables, each (n_i, channels)), with no stacked copy.
  """
  channels = int(rows[0].shape[-1])
  counts, indices, offset = [], [], 0
  for block in rows:
    size = block.shape.num_elements()
    noise = noise_lib.uniform(tf.shape(block), noise_key, offset=offset)
    flat = noisy_indices(block / latent_step + noise)
    counts.append(tf.reshape(_histograms(flat, [size], POINTS * channels)[0], (POINTS, channels)))
    indices.append(flat)
    offset += size
  return counts, indices


@tf.function(jit_compile=True, autograph=False)
def gather(table: tf.Tensor, indices: Sequence[tf.Tensor]) -> list:
  """`table`'s entries at each of the flat `indices` (a list of index vectors): XLA's gather
  takes a third of the time of TensorFlow's on a few hundred thousand indices."""
  flat_table = tf.reshape(table, (-1,))
  return [tf.gather(flat_table, i) for i in indices]
