"""The `.lnx` container: a header and a list of checksummed, optionally compressed sections.

Byte layout (all integers little-endian):

  File header, 44 bytes
    0   8  magic  b"\\x89LNX\\r\\n\\x1a\\n"  (PNG-style: catches text-mode and 7-bit mangling)
    8   2  u16    format version (`VERSION`)
    10  2  u16    flags (reserved, 0)
    12  4  u32    number of sections
    16  8  u64    parameters: the elements of every variable of the model the file holds, the
                  reader's budget (sections' raw lengths and what decoding may allocate)
    24  16        file id: first 16 bytes of SHA-256 over every section's
                  (tag, codec, raw length, stored payload), in order
    40  4  u32    CRC-32 of bytes 0..39

  Then, per section, a 28-byte section header followed by its payload:
    0   4         tag, 4 ASCII bytes (e.g. b"ARCH")
    4   1  u8     codec: 0 raw, 1 zlib, 2 lzma (xz container), 3 lzma2 (raw LZMA2 stream,
                  no container: `_LZMA2_FILTERS`)
    5   3         reserved, 0
    8   8  u64    stored payload length (bytes that follow this header)
    16  8  u64    raw length (after decompression)
    24  4  u32    CRC-32 of: file id, section index (u32), bytes 0..23 of this header, payload

  Nothing may follow the last section.

A flipped byte fails a CRC (header or section); a section copied from another file fails its CRC
because the CRC covers the file id; a truncated file fails a length check; the file id, recomputed
on reading, is a second (cryptographic) check over all payloads. Lengths are validated against the
bytes actually present before anything is allocated or decompressed, and the raw lengths
against the declared parameters (at most `RAW_ALLOWANCE` + `RAW_BYTES_PER_PARAMETER` per
parameter in all); a section is decompressed only when its `data` is first read, with its
output bounded by its declared raw length, so a reader can check the declared parameters
against the architecture before decompressing the bulk.
"""

import dataclasses
import functools
import hashlib
import json
import lzma
import os
import stat
import struct
import zlib
from typing import Iterable, Optional

from lilnetx_tf import errors

__all__ = ["MAGIC", "VERSION", "READABLE_VERSIONS", "CODECS", "SMALLEST", "FILE_HEADER_SIZE",
           "SECTION_HEADER_SIZE", "MAX_SECTIONS", "RAW_ALLOWANCE", "RAW_BYTES_PER_PARAMETER",
           "MAX_JSON_BYTES", "Section", "StoredSection", "Contents", "encode", "raw_limit",
           "decode", "read", "parse_json", "section_spans"]

MAGIC = b"\x89LNX\r\n\x1a\n"
VERSION = 6
# Format 5 (36-byte header without the parameter count) differs in the range coder of its LATS
# and coded float16 strings (`weights_section`); it is read where that coder is installed.
READABLE_VERSIONS = (5, VERSION)
CODEC_RAW, CODEC_ZLIB, CODEC_LZMA, CODEC_LZMA2 = 0, 1, 2, 3
CODECS = {"raw": CODEC_RAW, "zlib": CODEC_ZLIB, "lzma": CODEC_LZMA, "lzma2": CODEC_LZMA2}
# Raw LZMA2 saves the xz container's ~60 bytes, which matter in a file of a few KB; the
# dictionary is fixed so that a reader knows how much memory the stream may need.
_LZMA2_FILTERS = ({"id": lzma.FILTER_LZMA2, "preset": 9 | lzma.PRESET_EXTREME,
                   "dict_size": 1 << 23},)
_CODEC_NAMES = {v: k for k, v in CODECS.items()}
SMALLEST = "smallest"        # for `encode`: the codec that stores the section in fewest bytes

_FILE_HEADER = struct.Struct("<8sHHIQ16sI")      # 44 bytes
_FILE_HEADER_5 = struct.Struct("<8sHHI16sI")     # 36 bytes: format 5, no parameter count
_FORMAT5_PARAMETERS = 1 << 28    # the bound of a format-5 file read without `max_parameters`
_SECTION_HEADER = struct.Struct("<4sB3sQQI")    # 28 bytes
FILE_HEADER_SIZE = _FILE_HEADER.size
SECTION_HEADER_SIZE = _SECTION_HEADER.size
MAX_SECTIONS = 64
RAW_ALLOWANCE = 1 << 24      # 16 MiB of raw section bytes for any file (JSON, tables)...
RAW_BYTES_PER_PARAMETER = 16  # ...plus 16 per declared parameter (float64 weights take 8)
MAX_JSON_BYTES = 1 << 24      # a JSON section or manifest (GRPS, WGTS's; a few KB in practice)
_XZ_MEMLIMIT = 1 << 26        # an xz stream may ask for a 1.5 GiB dictionary; ours use 8 MiB


@dataclasses.dataclass(frozen=True)
class Section:
  """One section: a 4-character tag, its raw (decompressed) payload and how it is stored."""
  tag: str
  data: bytes
  codec: str = "raw"


@dataclasses.dataclass(frozen=True)
class StoredSection:
  """A verified section as read from a file, with its on-disk size; `data` decompresses it
  (once, on first use, raising `ModelFileError` if it does not decompress to `raw_bytes`)."""
  tag: str
  codec: str
  raw_bytes: int             # decompressed length, as declared
  stored_bytes: int          # payload bytes on disk
  total_bytes: int           # payload plus section header
  payload: bytes = dataclasses.field(repr=False)

  @functools.cached_property
  def data(self) -> bytes:
    return _decompress(self.payload, CODECS[self.codec], self.raw_bytes, self.tag)

  def prefix(self, length: int) -> bytes:
    """The first `length` bytes of `data` (fewer if it is shorter), decompressing no more:
    a section's own header, read before deciding to decompress the rest."""
    if "data" in self.__dict__:
      return self.data[:length]
    return _decompress(self.payload, CODECS[self.codec], length, self.tag, whole=False)


@dataclasses.dataclass(frozen=True)
class Contents:
  """A verified file: the parameters it declares (format 5: the reader's bound) and its
  sections."""
  parameters: int
  sections: list
  format_version: int = VERSION

  @property
  def declares_parameters(self) -> bool:
    return self.format_version >= 6

  @property
  def header_bytes(self) -> int:
    return FILE_HEADER_SIZE if self.declares_parameters else _FILE_HEADER_5.size


def _compress(data: bytes, codec: int) -> bytes:
  if codec == CODEC_RAW:
    return data
  if codec == CODEC_ZLIB:
    return zlib.compress(data, 6)
  if codec == CODEC_LZMA2:
    return lzma.compress(data, format=lzma.FORMAT_RAW, filters=_LZMA2_FILTERS)
  return lzma.compress(data, format=lzma.FORMAT_XZ, preset=6)


def _decompressor(codec: int):
  if codec == CODEC_ZLIB:
    return zlib.decompressobj()
  if codec == CODEC_LZMA2:
    return lzma.LZMADecompressor(format=lzma.FORMAT_RAW, filters=_LZMA2_FILTERS)
  return lzma.LZMADecompressor(format=lzma.FORMAT_XZ, memlimit=_XZ_MEMLIMIT)


def _decompress(payload: bytes, codec: int, raw_length: int, tag: str,
                whole: bool = True) -> bytes:
  """Decompresses `payload`, refusing to produce more than `raw_length` bytes; with
  `whole=False`, the first `raw_length` bytes (or fewer), unchecked past them."""
  if codec == CODEC_RAW:
    data = payload if whole else payload[:raw_length]
  else:
    try:
      d = _decompressor(codec)
      data = d.decompress(payload, raw_length + 1 if whole else raw_length)
      complete = d.eof and not d.unused_data
    except (zlib.error, lzma.LZMAError, MemoryError) as e:
      raise errors.ModelFileError(f"Section {tag!r}: compressed data is corrupt ({e}).") from None
    if whole and not complete:
      raise errors.ModelFileError(f"Section {tag!r}: compressed data does not end where expected.")
  if whole and len(data) != raw_length:
    raise errors.ModelFileError(
        f"Section {tag!r}: decompressed to {len(data)} bytes, the header says {raw_length}.")
  return data


def _section_crc(file_id: bytes, index: int, fields: bytes, payload) -> int:
  """CRC-32 of a section bound to its file and position: file id, index, fields, payload."""
  return zlib.crc32(payload, zlib.crc32(fields, zlib.crc32(struct.pack("<I", index),
                                                           zlib.crc32(file_id))))


def _file_id(records: Iterable[tuple[bytes, int, int, bytes]]) -> bytes:
  h = hashlib.sha256()
  for tag, codec, raw_length, payload in records:
    h.update(struct.pack("<4sBQQ", tag, codec, raw_length, len(payload)))
    h.update(payload)
  return h.digest()[:16]


def _tag_bytes(tag: str) -> bytes:
  raw = tag.encode("ascii")
  if len(raw) != 4:
    raise errors.InvalidArgumentError(f"Section tags have 4 ASCII characters, got {tag!r}.")
  return raw


def _smallest(data: bytes) -> tuple[int, bytes]:
  """(codec, payload) storing `data` in the fewest bytes; above 1 MiB (where LZMA2 at its
  strongest preset is slow) zlib if it saves at least 2% on a sample, else raw."""
  if len(data) > 1 << 20:
    sample = data[:1 << 20]
    codec = CODEC_ZLIB if len(zlib.compress(sample, 1)) < 0.98 * len(sample) else CODEC_RAW
    return codec, _compress(data, codec)
  payloads = [(codec, _compress(data, codec)) for codec in (CODEC_RAW, CODEC_ZLIB, CODEC_LZMA2)]
  return min(payloads, key=lambda item: len(item[1]))


def encode(sections: list[Section], parameters: int = 0) -> bytes:
  """Serializes `sections` to the bytes of a container file declaring `parameters`. A section
  with codec `SMALLEST` is stored with whichever codec gives the fewest bytes."""
  if len(sections) > MAX_SECTIONS:
    raise errors.InvalidArgumentError(f"At most {MAX_SECTIONS} sections, got {len(sections)}.")
  records = []
  for s in sections:
    if s.codec == SMALLEST:
      codec, payload = _smallest(s.data)
    elif s.codec in CODECS:
      codec = CODECS[s.codec]
      payload = _compress(s.data, codec)
    else:
      raise errors.InvalidArgumentError(
          f"Unknown codec {s.codec!r}; use one of {list(CODECS) + [SMALLEST]}.")
    records.append((_tag_bytes(s.tag), codec, len(s.data), payload))
  if sum(r[2] for r in records) > raw_limit(parameters):
    raise errors.InvalidArgumentError(
        f"The sections hold more than the {raw_limit(parameters):,} bytes a reader accepts "
        f"for {parameters:,} parameters.")
  file_id = _file_id(records)
  head = struct.pack("<8sHHIQ16s", MAGIC, VERSION, 0, len(records), parameters, file_id)
  parts = [head, struct.pack("<I", zlib.crc32(head))]
  for index, (tag, codec, raw_length, payload) in enumerate(records):
    fields = struct.pack("<4sB3sQQ", tag, codec, b"\0\0\0", len(payload), raw_length)
    crc = _section_crc(file_id, index, fields, payload)
    parts += [fields, struct.pack("<I", crc), payload]
  return b"".join(parts)


def raw_limit(parameters: int) -> int:
  """The most raw section bytes a file declaring `parameters` may hold."""
  return RAW_ALLOWANCE + RAW_BYTES_PER_PARAMETER * parameters


def _header(head: bytes, size: int, source: str, max_parameters: Optional[int]) -> tuple:
  """(format version, section count, declared parameters, file id) of a file of `size` bytes
  from its first bytes `head`, checked: magic (on as many bytes as there are), version,
  checksum, flags, and the parameters against `max_parameters` (a format-5 file declares none:
  its bound is `max_parameters`)."""
  magic = head[:len(MAGIC)]
  if not magic or not (magic == MAGIC or MAGIC.startswith(magic)):
    raise errors.ModelFileError(f"{source} is not a LilNetX model file (bad magic {magic!r}).")
  if size < 10 or len(head) < 10:
    raise errors.ModelFileError(
        f"{source} is truncated: {size} bytes, shorter than the {FILE_HEADER_SIZE}-byte header.")
  version = struct.unpack_from("<H", head, 8)[0]
  if version not in READABLE_VERSIONS:      # first: the header's layout depends on the version
    raise errors.ModelFileError(
        f"{source} has format version {version}; this lilnetx_tf reads versions "
        f"{', '.join(map(str, READABLE_VERSIONS))}. Use the lilnetx_tf release that wrote it.")
  layout = _FILE_HEADER if version == VERSION else _FILE_HEADER_5
  if size < layout.size or len(head) < layout.size:
    raise errors.ModelFileError(
        f"{source} is truncated: {size} bytes, shorter than the {layout.size}-byte header.")
  if version == VERSION:
    _, _, flags, count, parameters, file_id, header_crc = layout.unpack_from(head, 0)
  else:     # no declared count: `max_parameters` bounds the file instead
    _, _, flags, count, file_id, header_crc = layout.unpack_from(head, 0)
    parameters = max_parameters if max_parameters is not None else _FORMAT5_PARAMETERS
  if zlib.crc32(head[:layout.size - 4]) != header_crc:
    raise errors.ModelFileError(f"{source}: the file header is corrupt (checksum mismatch).")
  if flags != 0:
    raise errors.ModelFileError(f"{source} uses unknown format flags {flags:#06x}.")
  if count > MAX_SECTIONS:
    raise errors.ModelFileError(f"{source} declares {count} sections (at most {MAX_SECTIONS}).")
  if max_parameters is not None and parameters > max_parameters:
    raise errors.ModelFileError(
        f"{source} declares a model of {parameters:,} parameters, more than "
        f"max_parameters={max_parameters:,}; raise it to open a file you trust.")
  return version, count, parameters, file_id


def _max_file_size(count: int, parameters: int) -> int:
  """The largest file of `count` sections a model of `parameters` can make: compressed
  payloads grow at most 1/64 (plus a container's few bytes) over their raw length."""
  return (FILE_HEADER_SIZE + count * (SECTION_HEADER_SIZE + 4096)
          + raw_limit(parameters) * 65 // 64)


def decode(blob: bytes, source: str = "file", max_parameters: Optional[int] = None) -> Contents:
  """Parses and verifies container bytes; raises `ModelFileError` on any inconsistency,
  including a file that declares more than `max_parameters` parameters."""
  view = memoryview(blob)
  version, count, parameters, file_id = _header(bytes(view[:FILE_HEADER_SIZE]), len(blob),
                                                source, max_parameters)
  position = FILE_HEADER_SIZE if version == VERSION else _FILE_HEADER_5.size
  raw_sections, raw_total = [], 0
  for index in range(count):
    if len(blob) - position < SECTION_HEADER_SIZE:
      raise errors.ModelFileError(
          f"{source} is truncated: section {index + 1} of {count} header is missing.")
    tag, codec, reserved, stored, raw_length, crc = _SECTION_HEADER.unpack_from(view, position)
    fields = view[position:position + SECTION_HEADER_SIZE - 4]
    start = position + SECTION_HEADER_SIZE
    if stored > len(blob) - start:
      raise errors.ModelFileError(
          f"{source} is truncated (or corrupt): section {index + 1} declares {stored} bytes, "
          f"{len(blob) - start} remain.")
    payload = view[start:start + stored]
    expected = _section_crc(file_id, index, fields, payload)
    if expected != crc:
      name = tag.decode("ascii", "replace")
      raise errors.ModelFileError(
          f"{source}: checksum mismatch in section {index + 1} ({name!r}): the file is corrupt, "
          "or the section comes from another model file.")
    if codec not in _CODEC_NAMES or reserved != b"\0\0\0":
      raise errors.ModelFileError(f"{source}: section {index + 1} has an unknown codec {codec}.")
    raw_total += raw_length
    if raw_total > raw_limit(parameters) or (codec == CODEC_RAW and raw_length != stored):
      raise errors.ModelFileError(
          f"{source}: section {index + 1} has an invalid length (the sections declare more "
          f"than the {raw_limit(parameters):,} raw bytes a model of {parameters:,} parameters "
          "may take, or a raw section's lengths differ).")
    try:
      tag_str = tag.decode("ascii")
    except UnicodeDecodeError:
      raise errors.ModelFileError(f"{source}: section {index + 1} has a non-ASCII tag.") from None
    raw_sections.append((tag, codec, raw_length, bytes(payload), tag_str))
    position = start + stored
  if position != len(blob):
    raise errors.ModelFileError(
        f"{source} has {len(blob) - position} unexpected bytes after its last section.")
  if _file_id(r[:4] for r in raw_sections) != file_id:
    raise errors.ModelFileError(f"{source}: the file id does not match its sections (corrupt).")
  return Contents(parameters, [
      StoredSection(tag_str, _CODEC_NAMES[codec], raw_length, len(payload),
                    len(payload) + SECTION_HEADER_SIZE, payload)
      for _, codec, raw_length, payload, tag_str in raw_sections], version)


def _read_regular_file(path: str, max_parameters: Optional[int]) -> bytes:
  """The bytes of the regular file at `path`: the header (magic first) is checked before the
  rest is read, and at most as many bytes as the declared parameters need; special files
  (FIFOs, devices, directories) are refused unopened or, if swapped in after the check,
  unread (opened non-blocking)."""
  def refuse(mode: int):
    kind = "a directory" if stat.S_ISDIR(mode) else "not a regular file"
    raise errors.ModelFileError(f"{path} is {kind}, not a LilNetX model file.")

  try:
    mode = os.stat(path).st_mode
    if not stat.S_ISREG(mode):
      refuse(mode)
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0))
  except FileNotFoundError:
    raise errors.ModelFileNotFoundError(f"No LilNetX model file at {path}.") from None
  except NotADirectoryError:
    raise errors.ModelFileNotFoundError(
        f"No LilNetX model file at {path}: a part of the path is a file, not a directory."
    ) from None
  except IsADirectoryError:
    raise errors.ModelFileError(f"{path} is a directory, not a LilNetX model file.") from None
  except OSError as e:
    raise errors.os_error(errors.ModelFileReadError,
                          f"Cannot open {path}: {e.strerror or e}.", e) from None
  try:
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode):
      refuse(info.st_mode)
    with os.fdopen(fd, "rb", closefd=False) as handle:
      head = handle.read(FILE_HEADER_SIZE)
      _, count, parameters, _ = _header(head, info.st_size, path, max_parameters)
      if info.st_size > _max_file_size(count, parameters):
        raise errors.ModelFileError(
            f"{path} has {info.st_size:,} bytes, more than a model of {parameters:,} "
            "parameters takes.")
      blob = head + handle.read(info.st_size - len(head))
  except OSError as e:
    raise errors.os_error(errors.ModelFileReadError,
                          f"Cannot read {path}: {e.strerror or e}.", e) from None
  finally:
    os.close(fd)
  return blob


def read(path: str, max_parameters: Optional[int] = None) -> Contents:
  """Reads and verifies a container file (see `decode`)."""
  if not isinstance(path, (str, bytes, os.PathLike)):
    raise errors.InvalidArgumentError(f"Expected a file path, got {path!r}.")
  path = os.fspath(path)
  return decode(_read_regular_file(path, max_parameters), source=path,
                max_parameters=max_parameters)


def parse_json(data: bytes, tag: str):
  """The JSON document of section `tag`'s `data` (raises `ModelFileError` if it is none)."""
  try:
    return json.loads(data.decode("utf-8"))
  except (UnicodeDecodeError, ValueError, RecursionError):
    raise errors.ModelFileError(f"The {tag} section is not valid JSON.") from None


def section_spans(data: bytes) -> list:
  """(start, end) byte offsets of each section record (header and payload) of a well-formed
  file, for tools that cut files apart (fuzzing, tests); `read` is what validates."""
  (count,) = struct.unpack_from("<I", data, 12)
  position, spans = FILE_HEADER_SIZE, []
  for _ in range(count):
    (stored,) = struct.unpack_from("<Q", data, position + 8)
    end = position + SECTION_HEADER_SIZE + stored
    spans.append((position, end))
    position = end
  return spans
