"""Pricing many latents from one density evaluation on a grid.

A parameter group's density is factorized: one 1-D function per channel. A group with many
latents (a dense group holds every weight of every Dense layer) would evaluate the deep density
network once per latent and step. Instead the group evaluates it once per step on `POINTS` grid
points per channel, spaced `spacing` apart from just below the smallest latent, and prices each
latent by the grid point nearest to it: a histogram of the latents (`tf.math.bincount`) weights
the tabulated bits, and each latent's slope is gathered from the table of the bits' exact
derivative. With integer latents and spacing 1 this is exact. With noisy latents
(latent + U(−½, ½)) and spacing 1/16 it moves each evaluation point by at most 1/32, far less
than the noise itself; the totals stay within a fraction of a percent of the exact bits
(tests/test_objective.py measures it). When the latents span more than the table, the caller
evaluates exactly.
"""

from typing import Sequence

import tensorflow as tf

# Grid points per channel: a static size, so the table also compiles under XLA.
POINTS = 4096
# Spacing of the table for noisy latents (latent units); it covers a range of POINTS / 16 = 256.
NOISY_SPACING = 1.0 / 16.0
# Below this many rows, evaluating each latent costs less than the table's 2 · POINTS points.
MIN_ROWS = 2 * POINTS


def worth_it(num_rows: int) -> bool:
  """Whether a group of `num_rows` latent rows is priced faster by the table."""
  return num_rows >= MIN_ROWS


def origin_and_fit(values: tf.Tensor, spacing: float) -> tuple:
  """The grid's first point (an integer below every value) and whether the grid covers `values`.

  The test is False for non-finite values too, so those take the exact path and keep its result.
  """
  origin = tf.floor(tf.reduce_min(values)) - 1.0
  top = (tf.reduce_max(values) - origin) / spacing
  return origin, top <= POINTS - 2


def grid(origin: tf.Tensor, spacing: float, num_channels: int) -> tf.Tensor:
  """The (POINTS, num_channels) grid: the same points for every channel."""
  points = origin + spacing * tf.range(POINTS, dtype=tf.float32)
  return tf.tile(points[:, None], (1, num_channels))


def indices(values: tf.Tensor, origin: tf.Tensor, spacing: float) -> tf.Tensor:
  """Flat indices into a (POINTS, channels) table of the grid point nearest each of `values`
  (n, channels), in the order of `values`."""
  position = tf.cast(tf.round((values - origin) * (1.0 / spacing)), tf.int32)
  num_channels = values.shape[-1]
  if num_channels > 1:
    position = position * num_channels + tf.range(num_channels)
  return tf.reshape(position, (-1,))


def totals(table: tf.Tensor, flat_indices: tf.Tensor, sizes: Sequence[int]) -> list:
  """Σ table[index] over consecutive blocks of `sizes` values of `flat_indices`, one histogram
  per block: differentiable in `table`, with no per-value work in the backward pass."""
  flat_table = tf.reshape(table, (-1,))
  size = int(flat_table.shape[0])
  parts = tf.split(flat_indices, list(sizes)) if len(sizes) > 1 else [flat_indices]
  return [tf.reduce_sum(tf.math.bincount(part, minlength=size, maxlength=size,
                                         dtype=tf.float32) * flat_table) for part in parts]
