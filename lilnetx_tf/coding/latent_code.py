"""The code of one parameter group's integer latents: which channels and slices are nonzero,
then the values of the nonzero slices.

LilNetX drives whole slices, and so whole input and output channels, to zero. A code that
prices every latent independently pays for each zero of a zero slice; this one states the
structure first and codes values only where they are. For each member latent q of shape
(inputs, outputs, slice_size), in order:

  1. one flag per input channel: does row i hold a nonzero slice;
  2. one flag per output channel: does column o hold a nonzero slice;
  3. one flag per (i, o) of a live row and a live column: is slice (i, o) nonzero;
  4. the slice_size values of each nonzero slice, row-major.

Flags use a binary distribution per member and per kind (3 per member); the values of the
group use one escape distribution per slice position, or one for all positions when that
describes them in fewer bits (its table is k² times smaller). All are fitted to the latents
coded, so the stored tables are the empirical frequencies (`entropy.fit`), each at its own
precision. Everything is one range-coded
string. The decoder re-derives every count from the flags it has read and rejects flags that
contradict each other (a live row without a nonzero slice, a nonzero slice of zeros).
"""

from typing import Sequence

import numpy as np

from lilnetx_tf import errors
from lilnetx_tf.coding import entropy

_FLAGS = 3


def _structure(q: np.ndarray) -> tuple:
  nonzero = np.any(q != 0, axis=-1)
  rows, columns = nonzero.any(axis=1), nonzero.any(axis=0)
  return rows, columns, nonzero[np.ix_(rows, columns)].reshape(-1), q[nonzero]


def encode_group(latents: Sequence[np.ndarray], slice_size: int,
                 precision: int = entropy.DEFAULT_PRECISION) -> tuple[bytes, bytes]:
  """(table bytes, string) of a group's integer latents (one or more arrays, each of shape
  (inputs, outputs, slice_size))."""
  flags_base = _FLAGS * len(latents)
  structures = [_structure(q) for q in latents]
  nonzero_slices = np.concatenate([slices for *_, slices in structures])
  value_distributions = _value_distributions(nonzero_slices, precision)
  positions = np.arange(slice_size) % len(value_distributions) + flags_base
  distributions, values, index = [], [], []
  for m, (rows, columns, live, slices) in enumerate(structures):
    for kind, flags in enumerate((rows, columns, live)):
      distributions.append(entropy.binary(int(flags.sum()), flags.size, precision))
      values.append(flags.astype(np.int32))
      index.append(np.full(flags.size, _FLAGS * m + kind, np.int32))
    values.append(slices.reshape(-1).astype(np.int32))
    index.append(np.tile(positions.astype(np.int32), len(slices)))
  distributions += value_distributions
  string = entropy.encode(np.concatenate(values), np.concatenate(index), distributions)
  return entropy.tables_to_bytes(distributions), string


def _value_distributions(slices: np.ndarray, precision: int) -> list:
  """One distribution per slice position, or a single one if that takes fewer bits."""
  per_position = [entropy.fit(slices[:, c], precision) for c in range(slices.shape[1])]
  if slices.shape[1] == 1:
    return per_position
  pooled = entropy.fit(slices, precision)
  separate = sum(entropy.description_bits(d, slices[:, c]) for c, d in enumerate(per_position))
  return [pooled] if entropy.description_bits(pooled, slices) < separate else per_position


def decode_group(tables: bytes, string: bytes, shapes: Sequence[tuple], what: str) -> list:
  """The integer latents (float32 arrays of `shapes`) coded by `encode_group`."""
  slice_size = int(shapes[0][-1])
  flags_base = _FLAGS * len(shapes)
  distributions = entropy.tables_from_bytes(tables)
  if len(distributions) - flags_base not in (1, slice_size) or \
     any(d.escape or d.widths.size != 2 for d in distributions[:flags_base]):
    raise errors.ModelFileError(f"The entropy tables of {what} do not fit its layers.")
  positions = np.arange(slice_size) % (len(distributions) - flags_base) + flags_base
  decoder = entropy.Decoder(string, distributions, what)
  latents = []
  for m, (inputs, outputs, _) in enumerate(shapes):
    rows = decoder.decode(np.full(inputs, _FLAGS * m)).astype(bool)
    columns = decoder.decode(np.full(outputs, _FLAGS * m + 1)).astype(bool)
    live = decoder.decode(np.full(int(rows.sum()) * int(columns.sum()), _FLAGS * m + 2))
    live = live.astype(bool).reshape(int(rows.sum()), int(columns.sum()))
    if not (np.all(live.any(axis=1)) and np.all(live.any(axis=0))):
      raise errors.ModelFileError(f"The channel flags of {what} contradict its slice flags.")
    count = int(live.sum())
    slices = decoder.decode(np.tile(positions, count))
    slices = slices.reshape(count, slice_size)
    if not np.all(np.any(slices != 0, axis=1)):
      raise errors.ModelFileError(f"The slice flags of {what} mark a zero slice as nonzero.")
    nonzero = np.zeros((inputs, outputs), bool)
    nonzero[np.ix_(rows, columns)] = live
    q = np.zeros((inputs, outputs, slice_size), np.float32)
    q[nonzero] = slices
    latents.append(q)
  decoder.finish()
  return latents
