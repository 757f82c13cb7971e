"""Bad .lnx files raise `ModelFileError` (never crash or load a wrong model); writes are atomic."""

import os
import struct
import zlib

import numpy as np
import pytest
import tensorflow as tf
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import lilnetx_tf as lnx
from lilnetx_tf import atomic
from lilnetx_tf import errors
from lilnetx_tf.coding import container


def _model(seed: int) -> tf.keras.Model:
  tf.keras.utils.set_random_seed(seed)
  inputs = tf.keras.Input((4, 4, 2))
  h = lnx.Conv2D(3, 3, name="conv")(inputs)
  h = tf.keras.layers.Flatten()(h)
  outputs = lnx.Dense(2, name="head")(h)
  return tf.keras.Model(inputs, outputs)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
  """Two files of the same architecture with different weights, and the first's weights."""
  directory = tmp_path_factory.mktemp("errors")
  blobs, weights = [], None
  for seed in (0, 1):
    model = _model(seed)
    path = str(directory / f"model{seed}.lnx")
    lnx.compress(model, path, estimate=False)
    with open(path, "rb") as handle:
      blobs.append(handle.read())
    if weights is None:
      weights = [w.numpy() for w in lnx.decompress(path).weights]
  return blobs[0], blobs[1], weights


def _load(blob: bytes, path) -> tf.keras.Model:
  with open(path, "wb") as handle:
    handle.write(blob)
  return lnx.decompress(str(path))


def test_valid_file_loads(files, tmp_path):
  blob, _, weights = files
  model = _load(blob, tmp_path / "ok.lnx")
  for a, b in zip(model.weights, weights):
    np.testing.assert_array_equal(a.numpy(), b)


@pytest.mark.parametrize("keep", [0, 3, 8, 20, 35, 43, 44, 48, 71, 72, 100, -200, -20, -1])
def test_truncated(files, tmp_path, keep):
  blob = files[0]
  with pytest.raises(errors.ModelFileError):
    _load(blob[:keep if keep >= 0 else len(blob) + keep], tmp_path / "t.lnx")


def test_every_flipped_byte_is_caught(files):
  blob = files[0]
  for position in range(len(blob)):
    for mask in (0x01, 0x80):
      mutated = bytearray(blob)
      mutated[position] ^= mask
      with pytest.raises(errors.ModelFileError):
        container.decode(bytes(mutated))


def test_flipped_bytes_through_decompress(files, tmp_path):
  blob = files[0]
  for position in (0, 9, 17, 33, 40, len(blob) // 2, len(blob) - 1):
    mutated = bytearray(blob)
    mutated[position] ^= 0x10
    with pytest.raises(errors.ModelFileError):
      _load(bytes(mutated), tmp_path / "f.lnx")


def test_wrong_magic(files, tmp_path):
  with pytest.raises(errors.ModelFileError, match="not a LilNetX model file"):
    _load(b"PK\x03\x04" + files[0][4:], tmp_path / "m.lnx")
  with pytest.raises(errors.ModelFileError, match="not a LilNetX model file"):
    _load(b"", tmp_path / "empty.lnx")
  with pytest.raises(errors.ModelFileError, match="not a LilNetX model file"):
    _load(b"hello world, this is a text file, not a model\n", tmp_path / "text.lnx")


def _with_header(blob: bytes, version: int) -> bytes:
  end = container.FILE_HEADER_SIZE - 4
  head = blob[:8] + struct.pack("<H", version) + blob[10:end]
  return head + struct.pack("<I", zlib.crc32(head)) + blob[end + 4:]


def test_unknown_version(files, tmp_path):
  with pytest.raises(errors.ModelFileError, match="version 9"):
    _load(_with_header(files[0], 9), tmp_path / "v.lnx")


def test_section_from_another_model(files, tmp_path):
  a, b, _ = files
  spans_a, spans_b = container.section_spans(a), container.section_spans(b)
  for index in range(len(spans_a)):
    (sa, ea), (sb, eb) = spans_a[index], spans_b[index]
    if a[sa:ea] == b[sb:eb]:
      continue    # identical sections (e.g. the architecture)
    with pytest.raises(errors.ModelFileError, match="another model|checksum"):
      _load(a[:sa] + b[sb:eb] + a[ea:], tmp_path / "splice.lnx")


def test_swapped_sections_and_trailing_bytes(files, tmp_path):
  blob = files[0]
  spans = container.section_spans(blob)
  (s1, e1), (s2, e2) = spans[1], spans[2]
  swapped = blob[:s1] + blob[s2:e2] + blob[s1:e1] + blob[e2:]
  with pytest.raises(errors.ModelFileError):
    _load(swapped, tmp_path / "swap.lnx")
  with pytest.raises(errors.ModelFileError, match="unexpected bytes"):
    _load(blob + b"\0", tmp_path / "trail.lnx")


def test_directory_is_rejected(tmp_path):
  with pytest.raises(errors.ModelFileError, match="directory"):
    lnx.decompress(str(tmp_path))


def test_bad_output_paths_are_refused_before_writing(tmp_path):
  model = tf.keras.Sequential([tf.keras.Input((3,)), lnx.Dense(2)])
  (tmp_path / "taken.lnx").mkdir()
  for path, message in ((None, "file path"), (str(tmp_path) + os.sep, "names a directory"),
                        (str(tmp_path / "taken"), "is a directory"),
                        (str(tmp_path / "missing" / "m.lnx"), "not a directory")):
    with pytest.raises(errors.InvalidArgumentError, match=message):
      lnx.compress(model, path)
  assert sorted(os.listdir(tmp_path)) == ["taken.lnx"]
  with pytest.raises(errors.InvalidArgumentError, match="float16"):
    lnx.compress(model, str(tmp_path / "m.lnx"), float16="no")
  with pytest.raises(errors.InvalidArgumentError, match="file path"):
    lnx.decompress(None)


def test_missing_file_is_a_model_file_error_and_a_file_not_found_error(tmp_path):
  for read in (lnx.decompress, lambda path: lnx.coding.model_file.inspect(path)):
    with pytest.raises(errors.ModelFileNotFoundError, match="No LilNetX model file") as caught:
      read(str(tmp_path / "missing.lnx"))
    assert isinstance(caught.value, errors.ModelFileError)
    assert isinstance(caught.value, FileNotFoundError)


def test_interrupted_write_keeps_the_old_file(files, tmp_path, monkeypatch):
  blob = files[0]
  path = tmp_path / "model.lnx"
  path.write_bytes(b"old contents")

  def failing_write(handle, data):
    handle.write(data[:len(data) // 2])
    raise KeyboardInterrupt("simulated interruption")

  monkeypatch.setattr(atomic, "_write_chunks", failing_write)
  with pytest.raises(KeyboardInterrupt):
    atomic.write_file(str(path), blob)
  with pytest.raises(KeyboardInterrupt):
    lnx.compress(_model(3), str(path), estimate=False)
  assert path.read_bytes() == b"old contents"
  assert os.listdir(tmp_path) == ["model.lnx"]      # no temporary left behind
  monkeypatch.undo()
  atomic.write_file(str(path), blob)
  assert path.read_bytes() == blob


def _mutate(blob: bytes, kind: int, position: int, length: int, data: bytes) -> bytes:
  position %= len(blob) + 1
  if kind == 0:                                       # flip bits
    mutated = bytearray(blob)
    for i, byte in enumerate(data[:8] or b"\x01"):
      mutated[(position + i) % len(blob)] ^= byte or 1
    return bytes(mutated)
  if kind == 1:                                       # truncate
    return blob[:position]
  if kind == 2:                                       # insert
    return blob[:position] + data + blob[position:]
  if kind == 3:                                       # delete
    return blob[:position] + blob[position + length:]
  return blob[:position] + data + blob[position + len(data):]   # overwrite


@settings(max_examples=100, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(kind=st.integers(0, 4), position=st.integers(0, 1 << 20), length=st.integers(1, 64),
       data=st.binary(min_size=1, max_size=32))
def test_fuzzed_files_fail_cleanly(files, tmp_path, kind, position, length, data):
  blob, _, weights = files
  mutated = _mutate(blob, kind, position, length, data)
  if mutated == blob:
    model = _load(mutated, tmp_path / "fuzz.lnx")
    for a, b in zip(model.weights, weights):
      np.testing.assert_array_equal(a.numpy(), b)
    return
  with pytest.raises(errors.ModelFileError):
    _load(mutated, tmp_path / "fuzz.lnx")


@pytest.mark.parametrize("codec", sorted(container.CODECS))
def test_every_codec_round_trips(codec):
  data = b"".join(struct.pack("<I", i % 97) for i in range(5000)) + os.urandom(300)
  sections = [container.Section("DATA", data, codec), container.Section("NONE", b"", codec)]
  decoded = container.decode(container.encode(sections)).sections
  assert [(s.tag, s.data, s.codec) for s in decoded] == [("DATA", data, codec),
                                                         ("NONE", b"", codec)]


@pytest.mark.parametrize("codec", ["zlib", "lzma", "lzma2"])
def test_corrupt_compressed_payload_with_valid_checksums(codec, monkeypatch):
  """A payload that passes every CRC but does not decompress (a writer bug, not a flipped bit)."""
  real = container._compress
  monkeypatch.setattr(container, "_compress",
                      lambda data, c: real(data, c)[:-3] + b"\xff\x00\xff")
  blob = container.encode([container.Section("DATA", bytes(range(256)) * 40, codec)])
  monkeypatch.setattr(container, "_compress", real)
  with pytest.raises(errors.ModelFileError, match="DATA"):
    container.decode(blob).sections[0].data   # decompressed on first use
