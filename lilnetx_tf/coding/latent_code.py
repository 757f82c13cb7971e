"""The code of one parameter group's integer latents: which channels and slices are nonzero,
then the values of the nonzero slices.

LilNetX drives whole slices, and so whole input and output channels, to zero. A code that
prices every latent independently pays for each zero of a zero slice; this one states the
structure first and codes values only where they are. For each member latent q of shape
(inputs, outputs, slice_size), in order:

  1. one flag per input channel: does row i hold a nonzero slice;
  2. one flag per output channel: does column o hold a nonzero slice;
  3. one flag per (i, o) of a live row and a live column: is slice (i, o) nonzero;
  4. the slice_size values of each nonzero slice, position by position: first every nonzero
     slice's value at position 0, then at position 1, and so on.

Flags use a binary distribution per member and per kind (3 per member). The values of the group
use escape distributions in one of three layouts, whichever describes them in fewest bits
(tables included): one for all positions; one per slice position; or one per slice position and
*context*, the number of nonzero values at the slice's earlier positions (0, 1, or 2 and more).
The context pays where a learned decoder concentrates the slices on a few positions: most
nonzero slices of a trained ResNet-20 hold one or two nonzero values, so once a slice has shown
them its later values are almost surely zero, and a slice whose earlier values are all zero is
likelier to be nonzero at the next. All tables are fitted to the latents coded, so the stored
tables are the empirical frequencies (`entropy.fit`), each at its own precision. Everything is
one range-coded string, coded in the calls that decoding makes. The decoder re-derives every
count and context from the symbols it has read and rejects flags that contradict each other (a
live row without a nonzero slice, a nonzero slice of zeros).
"""

from typing import Sequence

import numpy as np

from lilnetx_tf import errors
from lilnetx_tf.coding import entropy

__all__ = ["encode_group", "decode_group"]

_FLAGS = 3
_CONTEXTS = 3          # nonzero values at a slice's earlier positions: 0, 1, 2 or more


def _structure(q: np.ndarray) -> tuple:
  # (A reduction over a last axis of 1 costs more than the comparison itself.)
  nonzero = q[..., 0] != 0 if q.shape[-1] == 1 else np.any(q != 0, axis=-1)
  rows, columns = nonzero.any(axis=1), nonzero.any(axis=0)
  return rows, columns, nonzero[np.ix_(rows, columns)].reshape(-1), q[nonzero]


def _contexts(slices: np.ndarray) -> np.ndarray:
  """Each value's context (n, slice_size): its slice's nonzero values at earlier positions,
  capped at `_CONTEXTS` − 1."""
  if slices.shape[1] == 1:
    return np.zeros(slices.shape, np.int64)
  nonzero = (slices != 0).astype(np.int64)
  return np.minimum(np.cumsum(nonzero, axis=1) - nonzero, _CONTEXTS - 1)


def _table_index(tables: int, slice_size: int, positions: np.ndarray | int,
                 contexts: np.ndarray) -> np.ndarray:
  """The value table (0 .. `tables` − 1) of values at slice `positions` with `contexts` (arrays
  that broadcast together), in the layout that `tables` tables mean (`_layouts`)."""
  positions = np.broadcast_to(positions, np.shape(contexts))
  if tables == 1:
    return np.zeros(positions.shape, np.int64)
  if tables == slice_size:
    return positions
  return positions * _CONTEXTS + contexts


def _layouts(slice_size: int) -> tuple:
  """The numbers of value tables a group of this slice size may use (see the module doc)."""
  return (1,) if slice_size == 1 else (1, slice_size, slice_size * _CONTEXTS)


def encode_group(latents: Sequence[np.ndarray], slice_size: int,
                 precision: int = entropy.DEFAULT_PRECISION,
                 encoder_class: type = entropy.Encoder) -> tuple[bytes, bytes]:
  """(table bytes, string) of a group's integer latents (one or more arrays, each of shape
  (inputs, outputs, slice_size)), range-coded by `encoder_class` (`entropy.Encoder`; or
  `tfc_range.Encoder`, the reference)."""
  flags_base = _FLAGS * len(latents)
  structures = [_structure(q) for q in latents]
  nonzero_slices = np.concatenate([slices for *_, slices in structures])
  value_distributions = _value_distributions(nonzero_slices, precision)
  distributions = [entropy.binary(int(flags.sum()), flags.size, precision)
                   for rows, columns, live, _ in structures for flags in (rows, columns, live)]
  distributions += value_distributions
  # The encoder's calls are `decode_group`'s: each member's three kinds of flags, then its
  # values position by position.
  encoder = encoder_class(distributions)
  for m, (rows, columns, live, slices) in enumerate(structures):
    for kind, flags in enumerate((rows, columns, live)):
      encoder.encode(flags, _FLAGS * m + kind)
    tables = _table_index(len(value_distributions), slice_size, np.arange(slice_size),
                          _contexts(slices)) + flags_base
    for c in range(slice_size):
      encoder.encode(slices[:, c], tables[:, c])
  return entropy.tables_to_bytes(distributions), encoder.finish()


def _value_distributions(slices: np.ndarray, precision: int) -> list:
  """The value tables of the layout (`_layouts`) that describes `slices` in fewest bits."""
  slice_size = slices.shape[1]
  contexts = _contexts(slices)
  best, best_bits = None, np.inf
  for tables in _layouts(slice_size):
    which = _table_index(tables, slice_size, np.arange(slice_size), contexts)
    coded = [slices[which == t] for t in range(tables)]
    candidate = [entropy.fit(values, precision) for values in coded]
    bits = sum(entropy.description_bits(d, values) for d, values in zip(candidate, coded))
    if bits < best_bits:
      best, best_bits = candidate, bits
  return best


def decode_group(tables: bytes, string: bytes, shapes: Sequence[tuple], what: str,
                 decoder_class: type = entropy.Decoder) -> list:
  """The integer latents (float32 arrays of `shapes`) coded by `encode_group` (with the range
  coder of `decoder_class`: `entropy.Decoder`, or `tfc_range.Decoder` for format 5 files)."""
  slice_size = int(shapes[0][-1])
  flags_base = _FLAGS * len(shapes)
  distributions = entropy.tables_from_bytes(tables)
  tables = len(distributions) - flags_base
  if tables not in _layouts(slice_size) or \
     any(d.escape or d.widths.size != 2 for d in distributions[:flags_base]):
    raise errors.ModelFileError(f"The entropy tables of {what} do not fit its layers.")
  decoder = decoder_class(string, distributions, what)
  latents = []
  for m, (inputs, outputs, _) in enumerate(shapes):
    rows = decoder.decode(_FLAGS * m, inputs).astype(bool)
    columns = decoder.decode(_FLAGS * m + 1, outputs).astype(bool)
    live = decoder.decode(_FLAGS * m + 2, int(rows.sum()) * int(columns.sum()))
    live = live.astype(bool).reshape(int(rows.sum()), int(columns.sum()))
    if not (np.all(live.any(axis=1)) and np.all(live.any(axis=0))):
      raise errors.ModelFileError(f"The channel flags of {what} contradict its slice flags.")
    count = int(live.sum())
    slices = np.zeros((count, slice_size), np.int64)
    earlier = np.zeros(count, np.int64)     # nonzero values so far in each slice
    for c in range(slice_size):
      which = _table_index(tables, slice_size, c, np.minimum(earlier, _CONTEXTS - 1))
      slices[:, c] = decoder.decode(which + flags_base)
      earlier += slices[:, c] != 0
    if not np.all(np.any(slices != 0, axis=1)):
      raise errors.ModelFileError(f"The slice flags of {what} mark a zero slice as nonzero.")
    nonzero = np.zeros((inputs, outputs), bool)
    nonzero[np.ix_(rows, columns)] = live
    q = np.zeros((inputs, outputs, slice_size), np.float32)
    q[nonzero] = slices
    latents.append(q)
  decoder.finish()
  return latents
