"""How the WGTS section stores one tensor's values: the element codes of its manifest entries.

  dtype name        the values' little-endian bytes (`DTYPES`), exact
  "fill"            no bytes: every element equals the entry's one value
  "int"             `bits`-bit codes c, |c| <= 2**(bits−1) − 1, packed big-endian: c · scale
  "float16"         float16 bytes (a float32 tensor stored lossily)
  "f16c"            float16 rounded to m mantissa bits, coded with the other such tensors
                    (`float_code`, in the section's tail)
  "bytes"           strings: u32 little-endian length of each, then their bytes, concatenated
"""

import numpy as np

from lilnetx_tf import errors

__all__ = ["DTYPES", "FILL", "QUANTIZED", "CODED_FLOAT16", "STRING", "STRING_BYTES",
           "fill_value", "float16_ok", "quantize", "dequantize", "pack", "unpack",
           "pack_strings", "unpack_strings", "number_fits"]

DTYPES = {"float32": "<f4", "float16": "<f2", "float64": "<f8", "int64": "<i8",
          "int32": "<i4", "int16": "<i2", "int8": "<i1", "uint64": "<u8", "uint32": "<u4",
          "uint16": "<u2", "uint8": "u1", "bool": "?"}
FILL = "fill"
QUANTIZED = "int"
CODED_FLOAT16 = "f16c"
STRING = "string"          # the dtype of string tensors (vocabularies)...
STRING_BYTES = "bytes"     # ...and how they are stored
_FLOAT16_MAX = 65504.0
_LENGTH = np.dtype("<u4")


def fill_value(values: np.ndarray):
  """The common value of a constant numeric tensor (bit-exact; values are finite), else
  None."""
  if values.size < 2 or values.dtype.kind not in "fiub":
    return None
  first = values.reshape(-1)[:1]
  if values.tobytes() != np.broadcast_to(first, values.shape).tobytes():
    return None
  return first[0].item()


def float16_ok(values: np.ndarray) -> bool:
  """Whether `values` are float32 within float16's range (a lossy code may store them)."""
  return values.dtype == np.float32 and bool(np.all(np.abs(values) <= _FLOAT16_MAX))


def quantize(values: np.ndarray, bits: int) -> tuple[np.float32, np.ndarray]:
  """(scale, codes): values ≈ codes · scale with integer |codes| <= 2**(bits−1) − 1."""
  top = (1 << (bits - 1)) - 1
  peak = np.max(np.abs(values))   # 0 for a zero scalar, e.g. an untrained dense decoder's ρ
  scale = np.float32(peak / np.float32(top)) if peak > 0 else np.float32(1)
  return scale, np.clip(np.round(values / scale), -top, top).astype(np.int64)


def dequantize(codes: np.ndarray, scale: float) -> np.ndarray:
  return codes.astype(np.float32) * np.float32(scale)


def pack(codes: np.ndarray, bits: int) -> bytes:
  """Codes in [−top, top] as `bits`-bit unsigned integers, big-endian bit order."""
  unsigned = codes.reshape(-1) + ((1 << (bits - 1)) - 1)
  planes = (unsigned[:, None] >> np.arange(bits - 1, -1, -1)) & 1
  return np.packbits(planes.astype(np.uint8).reshape(-1)).tobytes()


def unpack(data: bytes, count: int, bits: int) -> np.ndarray:
  """The inverse of `pack`; raises `ModelFileError` for a code out of range."""
  planes = np.unpackbits(np.frombuffer(data, np.uint8), count=count * bits).reshape(count, bits)
  unsigned = planes.astype(np.int64) @ (1 << np.arange(bits - 1, -1, -1))
  top = (1 << (bits - 1)) - 1
  if np.any(unsigned > 2 * top):
    raise errors.ModelFileError("The WGTS section holds an invalid quantized value.")
  return unsigned - top


def pack_strings(values: np.ndarray) -> bytes:
  """An array of bytes objects as their u32 lengths, then their bytes."""
  items = [bytes(v) for v in values.reshape(-1)]
  if any(len(v) >= 1 << 32 for v in items):
    raise errors.UnsupportedLayerError("A string of the model is longer than 4 GiB.")
  return np.array([len(v) for v in items], _LENGTH).tobytes() + b"".join(items)


def unpack_strings(data: bytes, position: int, count: int) -> tuple[np.ndarray, int]:
  """(`count` strings as an object array, the position after them) from `data` at
  `position`; nothing is read beyond `data`."""
  if count * _LENGTH.itemsize > len(data) - position:
    raise errors.ModelFileError("The WGTS section is shorter than its manifest says.")
  lengths = np.frombuffer(data, _LENGTH, count, position).astype(np.int64)
  position += count * _LENGTH.itemsize
  ends = position + np.cumsum(lengths)
  if count and ends[-1] > len(data):
    raise errors.ModelFileError("The WGTS section is shorter than its manifest says.")
  starts = ends - lengths
  values = np.empty(count, dtype=object)
  values[:] = [data[a:b] for a, b in zip(starts.tolist(), ends.tolist())]
  return values, int(ends[-1]) if count else position


def number_fits(value, dtype: str) -> bool:
  """Whether a JSON number is a finite value of `dtype` (no big int or inf gets through)."""
  numpy_type = np.dtype(DTYPES[dtype])
  if numpy_type.kind == "b":
    return isinstance(value, bool)
  if isinstance(value, bool) or not isinstance(value, (int, float)):
    return False
  if numpy_type.kind in "iu":
    info = np.iinfo(numpy_type)
    return isinstance(value, int) and info.min <= value <= info.max
  return abs(value) <= float(np.finfo(numpy_type).max)   # False for NaN; exact for big ints

