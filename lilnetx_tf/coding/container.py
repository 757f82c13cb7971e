"""The `.lnx` container: a header and a list of checksummed, optionally compressed sections.

Byte layout (all integers little-endian):

  File header, 36 bytes
    0   8  magic  b"\\x89LNX\\r\\n\\x1a\\n"  (PNG-style: catches text-mode and 7-bit mangling)
    8   2  u16    format version (`VERSION`)
    10  2  u16    flags (reserved, 0)
    12  4  u32    number of sections
    16  16        file id: first 16 bytes of SHA-256 over every section's
                  (tag, codec, raw length, stored payload), in order
    32  4  u32    CRC-32 of bytes 0..31

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
bytes actually present before anything is allocated or decompressed.
"""

import dataclasses
import hashlib
import lzma
import os
import struct
import tempfile
import zlib
from typing import Iterable, Optional

from lilnetx_tf import errors

MAGIC = b"\x89LNX\r\n\x1a\n"
VERSION = 6
# Format 5 differs in the range coder of its LATS and coded float16 strings (`model_file`).
READABLE_VERSIONS = (5, VERSION)
CODEC_RAW, CODEC_ZLIB, CODEC_LZMA, CODEC_LZMA2 = 0, 1, 2, 3
CODECS = {"raw": CODEC_RAW, "zlib": CODEC_ZLIB, "lzma": CODEC_LZMA, "lzma2": CODEC_LZMA2}
# Raw LZMA2 saves the xz container's ~60 bytes, which matter in a file of a few KB; the
# dictionary is fixed so that a reader knows how much memory the stream may need.
_LZMA2_FILTERS = ({"id": lzma.FILTER_LZMA2, "preset": 9 | lzma.PRESET_EXTREME,
                   "dict_size": 1 << 23},)
_CODEC_NAMES = {v: k for k, v in CODECS.items()}
SMALLEST = "smallest"        # for `encode`: the codec that stores the section in fewest bytes

_FILE_HEADER = struct.Struct("<8sHHI16sI")       # 36 bytes
_SECTION_HEADER = struct.Struct("<4sB3sQQI")    # 28 bytes
FILE_HEADER_SIZE = _FILE_HEADER.size
SECTION_HEADER_SIZE = _SECTION_HEADER.size
MAX_SECTIONS = 64
MAX_RAW_LENGTH = 1 << 36                         # 64 GiB: refuse absurd decompressed sizes


@dataclasses.dataclass(frozen=True)
class Section:
  """One section: a 4-character tag, its raw (decompressed) payload and how it is stored."""
  tag: str
  data: bytes
  codec: str = "raw"


@dataclasses.dataclass(frozen=True)
class StoredSection:
  """A section as read from a file, with its on-disk size."""
  tag: str
  data: bytes
  codec: str
  stored_bytes: int          # payload bytes on disk
  total_bytes: int           # payload plus section header
  format_version: int = VERSION    # of the file it was read from, which says how it is coded


def _compress(data: bytes, codec: int) -> bytes:
  if codec == CODEC_RAW:
    return data
  if codec == CODEC_ZLIB:
    return zlib.compress(data, 6)
  if codec == CODEC_LZMA2:
    return lzma.compress(data, format=lzma.FORMAT_RAW, filters=_LZMA2_FILTERS)
  return lzma.compress(data, format=lzma.FORMAT_XZ, preset=6)


def _decompress(payload: bytes, codec: int, raw_length: int, tag: str) -> bytes:
  """Decompresses `payload`, refusing to produce more than `raw_length` bytes."""
  if codec == CODEC_RAW:
    data = payload
  else:
    try:
      if codec == CODEC_ZLIB:
        d = zlib.decompressobj()
        data = d.decompress(payload, raw_length + 1)
        complete = d.eof and not d.unused_data
      else:
        d = (lzma.LZMADecompressor(format=lzma.FORMAT_RAW, filters=_LZMA2_FILTERS)
             if codec == CODEC_LZMA2 else lzma.LZMADecompressor(format=lzma.FORMAT_XZ))
        data = d.decompress(payload, raw_length + 1)
        complete = d.eof and not d.unused_data
    except (zlib.error, lzma.LZMAError, MemoryError) as e:
      raise errors.ModelFileError(f"Section {tag!r}: compressed data is corrupt ({e}).") from None
    if not complete:
      raise errors.ModelFileError(f"Section {tag!r}: compressed data does not end where expected.")
  if len(data) != raw_length:
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


def encode(sections: list[Section]) -> bytes:
  """Serializes `sections` to the bytes of a container file. A section with codec `SMALLEST`
  is stored with whichever codec gives the fewest bytes."""
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
  file_id = _file_id(records)
  head = struct.pack("<8sHHI16s", MAGIC, VERSION, 0, len(records), file_id)
  parts = [head, struct.pack("<I", zlib.crc32(head))]
  for index, (tag, codec, raw_length, payload) in enumerate(records):
    fields = struct.pack("<4sB3sQQ", tag, codec, b"\0\0\0", len(payload), raw_length)
    crc = _section_crc(file_id, index, fields, payload)
    parts += [fields, struct.pack("<I", crc), payload]
  return b"".join(parts)


def decode(blob: bytes, source: str = "file") -> list[StoredSection]:
  """Parses and verifies container bytes; raises `ModelFileError` on any inconsistency."""
  view = memoryview(blob)
  if len(blob) < FILE_HEADER_SIZE:
    if not MAGIC.startswith(bytes(view[:len(MAGIC)])) or not blob:
      raise errors.ModelFileError(f"{source} is not a LilNetX model file (bad magic).")
    raise errors.ModelFileError(
        f"{source} is truncated: {len(blob)} bytes, shorter than the {FILE_HEADER_SIZE}-byte "
        "header.")
  magic, version, flags, count, file_id, header_crc = _FILE_HEADER.unpack_from(view, 0)
  if magic != MAGIC:
    raise errors.ModelFileError(f"{source} is not a LilNetX model file (bad magic {magic!r}).")
  if zlib.crc32(view[:FILE_HEADER_SIZE - 4]) != header_crc:
    raise errors.ModelFileError(f"{source}: the file header is corrupt (checksum mismatch).")
  if version not in READABLE_VERSIONS:
    raise errors.ModelFileError(
        f"{source} has format version {version}; this lilnetx_tf reads versions "
        f"{', '.join(map(str, READABLE_VERSIONS))}. Use the lilnetx_tf release that wrote it.")
  if flags != 0:
    raise errors.ModelFileError(f"{source} uses unknown format flags {flags:#06x}.")
  if count > MAX_SECTIONS:
    raise errors.ModelFileError(f"{source} declares {count} sections (at most {MAX_SECTIONS}).")
  position, raw_sections = FILE_HEADER_SIZE, []
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
    if raw_length > MAX_RAW_LENGTH or (codec == CODEC_RAW and raw_length != stored):
      raise errors.ModelFileError(f"{source}: section {index + 1} has an invalid length.")
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
  result = []
  for tag, codec, raw_length, payload, tag_str in raw_sections:
    data = _decompress(payload, codec, raw_length, tag_str)
    result.append(StoredSection(tag_str, data, _CODEC_NAMES[codec], len(payload),
                                len(payload) + SECTION_HEADER_SIZE, version))
  return result


def _write_bytes(handle, blob: bytes) -> None:
  """Writes `blob` in chunks (a seam for tests that simulate a failure mid-write)."""
  chunk = 1 << 22
  for start in range(0, len(blob), chunk):
    handle.write(blob[start:start + chunk])


def write_atomic(path: str, blob: bytes) -> None:
  """Writes `blob` to `path` through a temporary file in the same directory and `os.replace`.

  If anything fails before the rename, `path` is left as it was and the temporary is removed.
  """
  directory = os.path.dirname(os.path.abspath(path))
  fd, temp = tempfile.mkstemp(dir=directory, prefix="." + os.path.basename(path) + ".",
                              suffix=".tmp")
  try:
    with os.fdopen(fd, "wb") as handle:
      _write_bytes(handle, blob)
      handle.flush()
      os.fsync(handle.fileno())
    if os.path.exists(path):
      os.chmod(temp, os.stat(path).st_mode & 0o7777)
    else:
      umask = os.umask(0)
      os.umask(umask)
      os.chmod(temp, 0o666 & ~umask)
    os.replace(temp, path)
  except BaseException:
    try:
      os.unlink(temp)
    except FileNotFoundError:
      pass
    raise


def read(path: str, max_bytes: Optional[int] = None) -> list[StoredSection]:
  """Reads and verifies a container file."""
  if not isinstance(path, (str, bytes, os.PathLike)):
    raise errors.InvalidArgumentError(f"Expected a file path, got {path!r}.")
  path = os.fspath(path)
  try:
    with open(path, "rb") as handle:
      blob = handle.read() if max_bytes is None else handle.read(max_bytes + 1)
  except IsADirectoryError:
    raise errors.ModelFileError(f"{path} is a directory, not a LilNetX model file.") from None
  except FileNotFoundError:
    raise errors.ModelFileNotFoundError(f"No LilNetX model file at {path}.") from None
  if max_bytes is not None and len(blob) > max_bytes:
    raise errors.ModelFileError(f"{path} is larger than {max_bytes} bytes.")
  return decode(blob, source=path)


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
