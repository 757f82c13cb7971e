"""The code of float16 values: range-coded sign-and-exponent fields, then packed mantissas.

A model's non-latent floats (folded BatchNorm scales and shifts, biases, decoders) are few but,
stored as float16, take 16 bits each, and general-purpose compressors find little in them. Their
signs and exponents are far from uniform (a BatchNorm scale tensor spans a few binades), while
the low mantissa bits are noise. So each value is split into its 6-bit sign-and-exponent field,
range-coded with one table fitted to all the values (`entropy.fit`), and its top `mantissa_bits`
mantissa bits, stored as they are, bit-packed; the dropped low bits must be zero (values are
rounded first, `round_mantissa`).

Layout: u32 table length | table (`entropy.tables_to_bytes`) | u32 string length | range-coded
string | mantissas, `mantissa_bits` per value, big-endian bit order.
"""

import struct

import numpy as np

from lilnetx_tf import errors
from lilnetx_tf.coding import entropy

__all__ = ["round_mantissa", "encodable", "encode", "decode"]

_MANTISSA_BITS = 10
_FIELDS = 1 << 6                   # sign and 5 exponent bits
_EXPONENT = 0x1f                   # all ones: inf or NaN


def round_mantissa(values: np.ndarray, bits: int) -> np.ndarray:
  """Float16 `values` rounded (half up in magnitude) to `bits` of their 10 mantissa bits; a
  value that would round up past float16's range is truncated instead, inf and NaN kept."""
  drop = _MANTISSA_BITS - bits
  if drop <= 0:
    return values
  pattern = values.view(np.uint16).astype(np.uint32)
  keep = np.uint32(0xFFFFFFFF ^ ((1 << drop) - 1))   # a uint32 mask: NEP 50 refuses ~low (< 0)
  rounded = ((pattern + np.uint32(1 << (drop - 1))) & keep).astype(np.uint16).view(np.float16)
  truncated = (pattern & keep).astype(np.uint16).view(np.float16)
  finite = np.where(np.isfinite(rounded), rounded, truncated)
  return np.where(np.isfinite(values), finite, values)


def encodable(values: np.ndarray, mantissa_bits: int) -> bool:
  """Whether float16 `values` keep every bit through `encode` (low mantissa bits all zero)."""
  low = (1 << (_MANTISSA_BITS - mantissa_bits)) - 1
  return not np.any(values.view(np.uint16) & low)


def encode(values: np.ndarray, mantissa_bits: int,
           precision: int = entropy.DEFAULT_PRECISION) -> bytes:
  """The code of float16 `values` (any shape) whose low 10 − `mantissa_bits` bits are zero."""
  if not 1 <= mantissa_bits <= _MANTISSA_BITS or not encodable(values, mantissa_bits):
    raise errors.InvalidArgumentError(
        f"Float16 values must have zero low mantissa bits to be coded with {mantissa_bits}.")
  pattern = values.reshape(-1).view(np.uint16).astype(np.int64)
  fields = pattern >> _MANTISSA_BITS
  distribution = entropy.fit(fields, precision)
  table = entropy.tables_to_bytes([distribution])
  string = entropy.encode(fields, 0, [distribution])
  mantissas = (pattern >> (_MANTISSA_BITS - mantissa_bits)) & ((1 << mantissa_bits) - 1)
  planes = (mantissas[:, None] >> np.arange(mantissa_bits - 1, -1, -1)) & 1
  packed = np.packbits(planes.astype(np.uint8).reshape(-1)).tobytes()
  return struct.pack("<I", len(table)) + table + struct.pack("<I", len(string)) + string + packed


def _chunk(data: bytes, position: int) -> tuple[bytes, int]:
  if len(data) - position < 4:
    raise errors.ModelFileError("The coded float16 values are truncated.")
  (length,) = struct.unpack_from("<I", data, position)
  end = position + 4 + length
  if end > len(data):
    raise errors.ModelFileError("The coded float16 values are truncated.")
  return data[position + 4:end], end


def decode(data: bytes, count: int, mantissa_bits: int,
           decoder_class: type = entropy.Decoder) -> np.ndarray:
  """The `count` float16 values of an `encode` code (raises `ModelFileError`); `decoder_class`
  is the range coder's (`latent_code.decode_group`)."""
  table, position = _chunk(data, 0)
  string, position = _chunk(data, position)
  distributions = entropy.tables_from_bytes(table)
  if len(distributions) != 1:
    raise errors.ModelFileError("The coded float16 values need exactly one table.")
  if len(data) - position != (count * mantissa_bits + 7) // 8:
    raise errors.ModelFileError("The coded float16 values' mantissas have the wrong length.")
  decoder = decoder_class(string, distributions, "float16 values")
  fields = decoder.decode(0, count)
  decoder.finish()
  if np.any((fields < 0) | (fields >= _FIELDS) | (fields & _EXPONENT == _EXPONENT)):
    raise errors.ModelFileError("The coded float16 values hold an invalid exponent field "
                                "(inf or NaN, which the encoder never writes).")
  bits = np.unpackbits(np.frombuffer(data, np.uint8, offset=position), count=count * mantissa_bits)
  mantissas = bits.reshape(count, mantissa_bits).astype(np.int64) @ \
      (1 << np.arange(mantissa_bits - 1, -1, -1, dtype=np.int64))
  pattern = (fields << _MANTISSA_BITS) | (mantissas << (_MANTISSA_BITS - mantissa_bits))
  return pattern.astype(np.uint16).view(np.float16)
