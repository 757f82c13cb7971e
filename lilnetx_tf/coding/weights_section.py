"""The WGTS section: the model's state tensors but the latents, as a manifest and their bytes.

  u32 manifest length | manifest JSON [[shape, dtype, stored, *extra], ...] | the tensors'
  bytes in manifest order | the coded float16 tensors, coded together (`float_code`)

`stored` and `extra` are one of `tensor_codes`' element codes. `encode` picks each tensor's
code; `manifest` and `decode` read a section from anyone: every entry is validated, the
elements it declares are at most the file's declared parameters, and no bytes are read beyond
those present.
"""

import json
import math
import struct
from typing import Optional

import numpy as np

from lilnetx_tf import errors
from lilnetx_tf.coding import container
from lilnetx_tf.coding import float_code
from lilnetx_tf.coding import tensor_codes as codes
from lilnetx_tf.coding import model_state
from lilnetx_tf.coding.model_state import StateTensor
from lilnetx_tf.layers import group as group_lib

__all__ = ["stored_tensors", "encode", "manifest", "manifest_bytes", "decode", "lossy_options"]

_FLOAT32_MAX = float(np.finfo(np.float32).max)


def stored_tensors(model, layers: list, densities: bool) -> list:
  """The `StateTensor`s WGTS holds, in `model.weights` order: all but the latents of the
  LilNetX `layers`, their groups' training state and, unless `densities`, their densities."""
  skipped = {id(l.latent_variable) for l in layers}
  names = model_state.owners(model)
  for group, members in group_lib.members_by_group(layers):
    skipped |= {id(v) for v in group.training_state}
    if not densities:
      skipped |= {id(v) for v in group.density_variables}
    for variable in group.weights:
      names[id(variable)] = (f"the parameter group of layer(s) "
                             f"{', '.join(repr(l.name) for l in members)}")
  weights = [w for w in model.weights if id(w) not in skipped]
  return model_state.state_tensors(model, weights, names)


def _entry(values: np.ndarray, dtype: str, lossy: bool, float16: bool,
           float_bits: Optional[int], mantissa_bits: int) -> tuple[list, Optional[bytes], object]:
  """(manifest entry, bytes or None, values to code as float16 or None) of one tensor."""
  shape = list(values.shape)
  if dtype == codes.STRING:
    return [shape, dtype, codes.STRING_BYTES], codes.pack_strings(values), None
  fill = codes.fill_value(values)
  if fill is not None:
    return [shape, dtype, codes.FILL, fill], None, None
  if float_bits and lossy:
    scale, quantized = codes.quantize(values, float_bits)
    return ([shape, dtype, codes.QUANTIZED, float_bits, scale.item()],
            codes.pack(quantized, float_bits), None)
  if float16 and lossy:
    half = float_code.round_mantissa(values.astype(np.float16), mantissa_bits)
    if np.all(np.isfinite(half)):
      return [shape, dtype, codes.CODED_FLOAT16, mantissa_bits], None, half.reshape(-1)
    return [shape, dtype, "float16"], half.astype(codes.DTYPES["float16"]).tobytes(), None
  return ([shape, dtype, dtype],
          np.ascontiguousarray(values.astype(codes.DTYPES[dtype])).tobytes(), None)


def encode(tensors: list, values_of: dict, exact_ids: set, float16: bool,
           float_bits: Optional[int], mantissa_bits: int) -> tuple[bytes, int]:
  """(section bytes, elements stored) of `tensors` (`StateTensor`s); `values_of` maps
  id(variable) to values to store instead of its own (folded, zeroed), and a variable in
  `exact_ids` is stored exactly whatever the options."""
  manifest_entries, blobs, coded, count = [], [], [], 0
  for tensor in tensors:
    key = id(tensor.source)
    values = values_of[key] if tensor.is_variable and key in values_of else tensor.value()
    dtype = tensor.dtype
    if dtype not in codes.DTYPES and dtype != codes.STRING:
      raise errors.UnsupportedLayerError(
          f"Variable {tensor.name} of {tensor.owner} has dtype {dtype}, which the model file "
          "cannot store.")
    count += values.size
    lossy = key not in exact_ids and codes.float16_ok(values)
    entry, blob, half = _entry(values, dtype, lossy, float16, float_bits, mantissa_bits)
    manifest_entries.append(entry)
    if blob is not None:
      blobs.append(blob)
    if half is not None:
      coded.append(half)
  if coded:
    blobs.append(float_code.encode(np.concatenate(coded), mantissa_bits))
  head = json.dumps(manifest_entries, separators=(",", ":")).encode()
  return struct.pack("<I", len(head)) + head + b"".join(blobs), count


# -------------------------------------------------------------------------------------------
# Reading.

def _is_count(value) -> bool:
  return isinstance(value, int) and not isinstance(value, bool)


def _entry_ok(shape, dtype, stored, extra) -> bool:
  if not (isinstance(shape, list) and all(_is_count(d) and d >= 0 for d in shape)
          and isinstance(dtype, str) and (dtype in codes.DTYPES or dtype == codes.STRING)):
    return False
  if dtype == codes.STRING or stored == codes.STRING_BYTES:
    return dtype == codes.STRING and stored == codes.STRING_BYTES and not extra
  if stored in codes.DTYPES:
    return not extra
  if stored == codes.FILL:
    return len(extra) == 1 and codes.number_fits(extra[0], dtype)
  if dtype != "float32" or not extra or not _is_count(extra[0]):
    return False
  if stored == codes.QUANTIZED:
    return (len(extra) == 2 and 2 <= extra[0] <= 8 and codes.number_fits(extra[1], dtype)
            and 0 < extra[1] * ((1 << (extra[0] - 1)) - 1) <= _FLOAT32_MAX)
  return stored == codes.CODED_FLOAT16 and len(extra) == 1 and 1 <= extra[0] <= 10


def manifest_bytes(section: container.StoredSection) -> bytes:
  """The start of a WGTS section up to the end of its manifest, decompressing no more."""
  head = section.prefix(4)
  length = struct.unpack("<I", head)[0] if len(head) == 4 else 0
  return section.prefix(4 + min(length, container.MAX_JSON_BYTES + 1))


def manifest(data: bytes, parameters: int) -> tuple[list, int]:
  """The WGTS entries as (shape, dtype, stored, extra) and where the tensor bytes start
  (`data` may end there); at most `parameters` elements in all."""
  if len(data) < 4:
    raise errors.ModelFileError("The WGTS section is truncated.")
  (head_length,) = struct.unpack_from("<I", data, 0)
  if head_length > min(len(data) - 4, container.MAX_JSON_BYTES):
    raise errors.ModelFileError("The WGTS section's manifest length is invalid.")
  document = container.parse_json(data[4:4 + head_length], "WGTS")
  entries, elements = [], 0
  for entry in document if isinstance(document, list) else [None]:
    if not (isinstance(entry, list) and len(entry) in (3, 4, 5)
            and isinstance(entry[2], str) and _entry_ok(*entry[:3], entry[3:])):
      raise errors.ModelFileError("The WGTS section's manifest is malformed.")
    shape, dtype, stored, *extra = entry
    elements += math.prod(shape)
    if elements > parameters:
      raise errors.ModelFileError(
          f"The WGTS section holds more than the {parameters:,} parameters the file declares.")
    entries.append((tuple(shape), dtype, stored, extra))
  return entries, 4 + head_length


def lossy_options(entries: list) -> tuple[bool, Optional[int], Optional[int]]:
  """(float16, mantissa bits, float bits): the `compress` options a manifest was written
  with."""
  float16 = any((stored == "float16" and dtype != "float16") or stored == codes.CODED_FLOAT16
                for _, dtype, stored, _ in entries)
  mantissa_bits = next((extra[0] for _, _, stored, extra in entries
                        if stored == codes.CODED_FLOAT16 and extra[0] < 10), None)
  float_bits = max((extra[0] for _, _, stored, extra in entries if stored == codes.QUANTIZED),
                   default=None)
  return float16, mantissa_bits, float_bits


def _coded_float16(entries: list, data: bytes, end: int, decoder_class: type) -> list:
  """The values of the entries stored as coded float16 (`float_code`), in order: one code
  from `end`, the end of the other tensors' bytes, to the end of the section."""
  coded = [(shape, extra[0]) for shape, _, stored, extra in entries
           if stored == codes.CODED_FLOAT16]
  if not coded:
    if end != len(data):
      raise errors.ModelFileError("The WGTS section is longer than its manifest says.")
    return []
  if len({bits for _, bits in coded}) != 1:
    raise errors.ModelFileError("The WGTS section's coded float16 tensors disagree on bits.")
  sizes = [int(np.prod(shape, dtype=np.int64)) for shape, _ in coded]
  values = float_code.decode(data[end:], sum(sizes), coded[0][1],
                             decoder_class).astype(np.float32)
  return [v.reshape(shape) for v, (shape, _) in
          zip(np.split(values, np.cumsum(sizes)[:-1]), coded)]


def _values(entry: tuple, data: bytes, position: int) -> tuple[Optional[np.ndarray], int]:
  """(the values of one entry, or None if coded as float16, the position after its bytes)."""
  shape, dtype, stored, extra = entry
  if stored == codes.FILL:
    return np.full(shape, extra[0], dtype=codes.DTYPES[dtype]), position
  if stored == codes.CODED_FLOAT16:
    return None, position
  count = math.prod(shape)
  if stored == codes.STRING_BYTES:
    values, position = codes.unpack_strings(data, position, count)
    return values.reshape(shape), position
  if stored == codes.QUANTIZED:
    size = (count * extra[0] + 7) // 8
  else:
    size = count * np.dtype(codes.DTYPES[stored]).itemsize
  if size > len(data) - position:
    raise errors.ModelFileError("The WGTS section is shorter than its manifest says.")
  if stored == codes.QUANTIZED:
    quantized = codes.unpack(data[position:position + size], count, extra[0])
    return codes.dequantize(quantized, extra[1]).reshape(shape), position + size
  values = np.frombuffer(data, codes.DTYPES[stored], count, position).reshape(shape)
  return values.astype(codes.DTYPES[dtype]), position + size


def _check_values(tensor: StateTensor, values: np.ndarray, variances: set) -> np.ndarray:
  """Refuses values no writer stores: non-finite floats (a model that predicts NaN) and
  negative BatchNorm variances."""
  if values.dtype.kind == "f" and not np.all(np.isfinite(values)):
    raise errors.ModelFileError(f"The WGTS section holds non-finite values for {tensor.name}.")
  if id(tensor.source) in variances and np.any(values < 0):
    raise errors.ModelFileError(
        f"The WGTS section holds a negative BatchNorm variance for {tensor.name}.")
  return values


def decode(data: bytes, tensors: list, parameters: int, decoder_class: type,
           variances: set) -> list:
  """The values of `tensors` (`StateTensor`s) from a WGTS section of at most `parameters`
  elements, checked against the tensors' dtypes and shapes; a variable in `variances` (ids)
  may not be negative."""
  entries, position = manifest(data, parameters)
  if len(entries) != len(tensors):
    raise errors.ModelFileError(
        f"The WGTS section holds {len(entries)} tensors, the architecture has {len(tensors)}.")
  values = []
  for entry, tensor in zip(entries, tensors):
    shape, dtype = entry[:2]
    if dtype != tensor.dtype or not tensor.accepts(shape):
      expected = list(tensor.source.shape) if tensor.is_variable else "a vocabulary"
      raise errors.ModelFileError(
          f"WGTS tensor for {tensor.name} is {dtype}{list(shape)}, the architecture has "
          f"{tensor.dtype}{expected} (a section from another model?).")
    value, position = _values(entry, data, position)
    values.append(value)
  coded = iter(_coded_float16(entries, data, position, decoder_class))
  return [_check_values(tensor, next(coded) if value is None else value, variances)
          for tensor, value in zip(tensors, values)]
