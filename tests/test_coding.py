"""The .lnx model file: bit-exact round trips, overflow latents, float16, report consistency."""

import dataclasses
import hashlib
import importlib.util
import os
import struct
import sys

import numpy as np
import pytest
import tensorflow as tf

import lilnetx_tf as lnx
from lilnetx_tf import errors
from lilnetx_tf.coding import container, entropy, latent_code, model_file
from lilnetx_tf.stats import lilnetx_layers

# A file written by lilnetx_tf's format 5 (range-coded with tensorflow-compression, float16
# with 6 mantissa bits, one escaped latent), with its decoded latents and outputs on `inputs`.
_FORMAT5 = os.path.join(os.path.dirname(__file__), "fixtures", "format5.lnx")
_FORMAT5_EXPECTED = os.path.join(os.path.dirname(__file__), "fixtures", "format5_expected.npz")
_HAS_TFC = importlib.util.find_spec("tensorflow_compression") is not None


def _data():
  rng = np.random.default_rng(0)
  x = rng.random((64, 12, 12, 3), dtype=np.float32)
  y = (x[..., 0].mean((1, 2)) > x[..., 1].mean((1, 2))).astype("int32")
  return x, y


def _functional():
  inputs = tf.keras.Input((12, 12, 3))
  h = lnx.Conv2D(6, 3, name="conv_a")(inputs)
  h = tf.keras.layers.BatchNormalization(name="bn")(h)
  h = tf.keras.layers.ReLU()(h)
  h = lnx.DepthwiseConv2D(3, name="depthwise")(h)
  h = lnx.Conv2D(8, 3, strides=2, name="conv_b")(h)
  h = tf.keras.layers.GlobalAveragePooling2D()(h)
  h = tf.keras.layers.Dense(8, activation="relu", name="plain_dense")(h)
  outputs = lnx.Dense(2, name="head")(h)
  return tf.keras.Model(inputs, outputs)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
  """A small Functional model after a short fit, compressed once and decompressed."""
  tf.keras.utils.set_random_seed(0)
  x, y = _data()
  model = _functional()
  model.compile(tf.keras.optimizers.Adam(1e-2),
                tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                run_eagerly=True)   # two eager steps cost far less than tracing a train step
  model.fit(x, y, epochs=1, batch_size=32, verbose=0)
  path = str(tmp_path_factory.mktemp("coding") / "model.lnx")
  report = lnx.compress(model, path)
  restored = lnx.decompress(path)
  return model, restored, report, path, x


def _non_latent(model):
  """All variables but the latents and the groups' training state."""
  layers = lilnetx_layers(model)
  skipped = {id(l.latent_variable) for l in layers}
  skipped |= {id(v) for l in layers for v in l.group.training_state}
  return [v.numpy() for v in model.weights if id(v) not in skipped]


def test_round_trip_is_bit_exact(trained):
  model, restored, _, _, x = trained
  np.testing.assert_array_equal(model(x, training=False).numpy(),
                                restored(x, training=False).numpy())
  for a, b in zip(lilnetx_layers(model), lilnetx_layers(restored)):
    assert a.name == b.name
    np.testing.assert_array_equal(a.integer_latent.numpy(), b.integer_latent.numpy())
    np.testing.assert_array_equal(a.kernel.numpy(), b.kernel.numpy())
  for a, b in zip(_non_latent(model), _non_latent(restored)):
    np.testing.assert_array_equal(a, b)   # decoders, latent steps, densities, BN, biases


def test_groups_and_density_restored(trained):
  model, restored, _, _, _ = trained
  groups = {l.group_key: l.group for l in lilnetx_layers(restored)}
  assert sorted(groups) == ["conv3x3", "dense"]
  original = {l.group_key: l.group for l in lilnetx_layers(model)}
  for key, group in groups.items():
    # The density optimizer's state is not stored: a decompressed model starts it afresh.
    assert int(original[key].step.numpy()) > 0
    assert int(group.step.numpy()) == 0
    assert all(not np.any(v.numpy()) for v in group.training_state)
    for a, b in zip(group.density_variables, original[key].density_variables):
      np.testing.assert_array_equal(a.numpy(), b.numpy())
  members = [l.name for l in groups["conv3x3"].members()]
  assert set(members) == {"conv_a", "depthwise", "conv_b"}


def test_report_is_consistent(trained):
  model, _, report, path, _ = trained
  assert report.total_bytes == os.path.getsize(path)
  assert report.header_bytes + sum(s.file_bytes for s in report.sections) == report.total_bytes
  assert [s.tag for s in report.sections] == ["ARCH", "WGTS", "GRPS", "CDFT", "LATS"]
  assert report.section("LATS").raw_bytes == report.coded_latent_bytes
  estimated = lnx.stats(model)["bytes"]
  assert report.estimated_latent_bytes == pytest.approx(estimated, rel=1e-5)
  for group in report.groups:
    assert group.coded_bytes <= 1.01 * group.estimated_bytes + 8
  assert report.coded_latent_bytes <= 1.01 * estimated + 8 * len(report.groups)
  assert report.parameter_bytes == (report.total_bytes - report.architecture_bytes
                                    - container.FILE_HEADER_SIZE)
  assert report.latent_parameters == lnx.stats(model)["latent_parameters"]
  text = str(report)
  for word in ("ARCH", "LATS", "conv3x3", "dense", "parameter bytes", "coded/est"):
    assert word in text
  inspected = model_file.inspect(path, estimate=False)
  assert inspected.total_bytes == report.total_bytes
  assert [(g.key, g.coded_bytes, g.table_bytes) for g in inspected.groups] == \
         [(g.key, g.coded_bytes, g.table_bytes) for g in report.groups]


def test_compress_is_deterministic_and_atomic_suffix(trained, tmp_path):
  model, _, _, path, _ = trained
  report = lnx.compress(model, str(tmp_path / "again"), estimate=False)
  assert report.path.endswith("again.lnx")
  with open(path, "rb") as a, open(report.path, "rb") as b:
    assert a.read() == b.read()
  assert os.listdir(tmp_path) == ["again.lnx"]


def test_sequential_round_trip(tmp_path):
  model = tf.keras.Sequential([
      tf.keras.Input((10,)), lnx.Dense(16, activation="relu"), tf.keras.layers.Dropout(0.1),
      lnx.Dense(4)])
  x = np.random.default_rng(1).normal(size=(8, 10)).astype(np.float32)
  path = str(tmp_path / "seq.lnx")
  lnx.compress(model, path)
  restored = lnx.decompress(path)
  assert isinstance(restored, tf.keras.Sequential)
  np.testing.assert_array_equal(model(x).numpy(), restored(x).numpy())


def _groups(model) -> int:
  return len({id(layer.group) for layer in lilnetx_layers(model)})


def test_branches_meeting_after_their_last_lilnetx_layers_round_trip(tmp_path):
  """Two towers added at the output: `convert` puts them in one registry (one dense group);
  Keras rebuilds the config with a registry per tower, whose extra group failed the file's
  parameter count (ModelFileError). A hand-built model with a group per tower keeps them."""
  left, right = tf.keras.Input((6,)), tf.keras.Input((5,))
  towers = tf.keras.layers.Add()([tf.keras.layers.Dense(3)(left), tf.keras.layers.Dense(3)(right)])
  x = [np.ones((4, 6), np.float32), np.linspace(-1, 1, 20, dtype=np.float32).reshape(4, 5)]
  converted = lnx.convert(tf.keras.Model([left, right], towers), compression=None)
  with lnx.group_scope():
    first = lnx.Dense(3)(left)
  with lnx.group_scope():
    second = lnx.Dense(3)(right)
  by_hand = tf.keras.Model([left, right], tf.keras.layers.Add()([first, second]))
  for model, groups in ((converted, 1), (by_hand, 2)):
    assert _groups(model) == groups
    path = str(tmp_path / f"towers{groups}.lnx")
    lnx.compress(model, path)
    restored = lnx.decompress(path)
    assert _groups(restored) == groups
    np.testing.assert_array_equal(model(x).numpy(), restored(x).numpy())


def _set_integers(layer, q):
  layer.latent_variable.assign(np.asarray(q, np.float32) * layer.group.latent_step.numpy())
  np.testing.assert_array_equal(layer.integer_latent.numpy(), q)


def test_latents_outside_the_table_round_trip(tmp_path):
  model = tf.keras.Sequential([tf.keras.Input((6,)), lnx.Dense(5), lnx.Dense(3)])
  first, second = lilnetx_layers(model)
  q = np.round(first.latent.numpy())
  q[0, 0, 0], q[1, 2, 0], q[5, 4, 0] = 1000.0, -123456.0, 2.0 ** 24
  _set_integers(first, q)
  run = entropy.fit(q)
  assert run.escape and run.offset > -123456 and run.offset + run.widths.size - 2 < 2 ** 24
  path = str(tmp_path / "overflow.lnx")
  lnx.compress(model, path)
  restored = lnx.decompress(path)
  np.testing.assert_array_equal(lilnetx_layers(restored)[0].integer_latent.numpy(), q)
  x = np.ones((2, 6), np.float32)
  np.testing.assert_array_equal(model(x).numpy(), restored(x).numpy())
  bad = q.copy()
  bad[0, 0, 0] = 2.0 ** 25
  _set_integers(first, bad)
  with pytest.raises(errors.InvalidArgumentError, match="2\\*\\*24"):
    lnx.compress(model, str(tmp_path / "too_large.lnx"))


def test_entropy_coder_round_trip_in_several_calls():
  rng = np.random.default_rng(2)
  rows = np.round(rng.laplace(scale=3.0, size=(500, 9)))
  # Escapes: far from the runs, at the latent limits, and beyond the run on both sides.
  rows[7, 3], rows[8, 8], rows[9, 1], rows[10, 1] = 50000.0, -3.0e6, 2.0 ** 24, -2.0 ** 24
  flags = rng.random(300) < 0.1
  distributions = [entropy.binary(int(flags.sum()), flags.size)]
  distributions += [entropy.fit(rows[:, c]) for c in range(9)]
  assert sum(d.escape for d in distributions) == 9
  index = np.concatenate([np.zeros(300, int), np.tile(np.arange(1, 10), 500)])
  encoder = entropy.Encoder(distributions)
  encoder.encode(flags, index[:300])
  encoder.encode(rows.reshape(-1), index[300:])
  string = encoder.finish()
  parsed = entropy.tables_from_bytes(entropy.tables_to_bytes(distributions))
  decoder = entropy.Decoder(string, parsed, "test symbols")
  np.testing.assert_array_equal(decoder.decode(index[:300]), flags)
  np.testing.assert_array_equal(decoder.decode(index[300:]).reshape(500, 9), rows)
  decoder.finish()
  # Deterministic.
  again = entropy.Encoder(distributions)
  again.encode(flags, index[:300])
  again.encode(rows.reshape(-1), index[300:])
  assert again.finish() == string


def test_entropy_coder_mixes_precisions_and_sizes():
  one_bit = entropy.Distribution(0, np.array([1, 1]), escape=False, precision=1)
  two_bit = entropy.Distribution(0, np.array([1, 3]), escape=False, precision=2)
  single = entropy.Distribution(5, np.array([2]), escape=False, precision=1)
  values, index = np.array([1, 0, 5, 1, 1, 0, 5]), np.array([0, 1, 2, 1, 0, 0, 2])
  string = entropy.encode(values, index, [one_bit, two_bit, single])
  decoder = entropy.Decoder(string, [one_bit, two_bit, single], "test symbols")
  np.testing.assert_array_equal(decoder.decode(index), values)
  decoder.finish()
  assert entropy.encode(np.array([], np.int64), np.array([], np.int64), [one_bit]) == b""
  with pytest.raises(errors.InvalidArgumentError):
    entropy.encode(np.array([2]), np.array([0]), [one_bit])      # not in a table without escape


def test_entropy_coder_corrupt_strings_raise_model_file_errors():
  """Flipped bytes, truncations and random strings either decode (a range coder cannot always
  tell; the file's checksums do) or raise `ModelFileError`, never another error."""
  rng = np.random.default_rng(7)
  values = np.round(rng.laplace(scale=4.0, size=3000))
  values[::500] = 1e6
  distributions = [entropy.fit(values)]
  index = np.zeros(values.size, int)
  string = entropy.encode(values, index, distributions)
  bad_strings = [string[:cut] for cut in range(0, len(string), 7)]
  for position in range(0, len(string), 5):
    flipped = bytearray(string)
    flipped[position] ^= int(rng.integers(1, 256))
    bad_strings.append(bytes(flipped))
  bad_strings += [rng.integers(0, 256, size).astype(np.uint8).tobytes() for size in range(0, 90, 3)]
  bad_strings.append(string + b"\x01\x02\x03\x04\x05")
  caught = 0
  for bad in bad_strings:
    try:
      decoder = entropy.Decoder(bad, distributions, "test symbols")
      decoder.decode(index)
      decoder.finish()
    except errors.ModelFileError:
      caught += 1
  assert caught > len(bad_strings) // 2


def test_format6_strings_never_change():
  """Format 6 strings are a fixed function of the symbols and integer tables: the same bytes
  on every stack (this digest was also obtained on Python 3.13 with numpy 2) and release, or
  files written before would not decode."""
  n = np.arange(20000)
  values = (n * 7919 % 13) - 6
  values[::97] += n[::97] * 31                      # escapes above the run
  values[50::2000] = -70000 - n[50::2000]           # and below it
  flags = (n * 104729 % 11) < 3
  distributions = [entropy.Distribution(0, np.array([90, 38]), False, 7),
                   entropy.Distribution(-6, np.array([5000] * 13 + [536]), True, 16),
                   entropy.Distribution(-6, np.array([38] * 13 + [18]), True, 9)]
  index = np.where(n < 15000, 1, 2)
  encoder = entropy.Encoder(distributions)
  encoder.encode(flags, 0)
  encoder.encode(values, index)
  string = encoder.finish()
  assert hashlib.sha256(string).hexdigest() == \
      "f75caa21733ba7dbe08429cda592fa83f5d67cc261d9a54e746d907fa5c78c9f"
  decoder = entropy.Decoder(string, distributions, "test symbols")
  np.testing.assert_array_equal(decoder.decode(0, n.size), flags)
  np.testing.assert_array_equal(decoder.decode(index), values)
  decoder.finish()


def test_tables_take_the_cheapest_precision():
  few = np.array([0] * 40 + [1] * 7 + [-1] * 3 + [2])
  small = entropy.fit(few)
  assert small.precision < entropy.DEFAULT_PRECISION
  full = dataclasses.replace(small, precision=16,
                             widths=entropy._quantize(np.array([3, 40, 7, 1, 0]), 16))

  def bits(d):
    coded = sum(d.precision - np.log2(d.widths[int(v) - d.offset]) for v in few)
    return 8 * len(entropy.tables_to_bytes([d])) + coded
  assert bits(small) < bits(full)
  many = entropy.binary(500_000, 1_000_000)
  assert many.precision >= 1 and np.all(many.widths >= 1)
  with pytest.raises(errors.ModelFileError):
    entropy.tables_from_bytes(entropy.tables_to_bytes([small])[:-1])


def _channel_sparse(rng, shape, live_in, live_out, density):
  q = np.round(rng.laplace(scale=2.0, size=shape))
  q[live_in:] = 0
  q[:, live_out:] = 0
  q[rng.random(shape[:2]) > density] = 0
  return q.astype(np.float32)


def test_latent_code_round_trips_structured_latents():
  rng = np.random.default_rng(3)
  latents = [_channel_sparse(rng, (20, 30, 9), 12, 8, 0.3), np.zeros((5, 4, 9), np.float32),
             np.round(rng.normal(size=(3, 2, 9))).astype(np.float32)]
  tables, string = latent_code.encode_group(latents, 9)
  decoded = latent_code.decode_group(tables, string, [q.shape for q in latents], "test")
  for q, d in zip(latents, decoded):
    np.testing.assert_array_equal(q, d)


def test_latent_code_picks_the_value_table_layout_that_pays():
  """Pooled for i.i.d. values, per position for position-dependent ones, per position and
  context when a slice's earlier values predict its later ones (one nonzero value per slice)."""
  rng = np.random.default_rng(6)
  iid = np.round(rng.laplace(scale=1.0, size=(30, 20, 9))).astype(np.float32)
  by_position = np.broadcast_to(np.arange(1, 10, dtype=np.float32) * 3, (30, 20, 9)).copy()
  by_position += np.round(rng.normal(scale=0.3, size=by_position.shape)).astype(np.float32)
  one_hot = np.zeros((30, 20, 9), np.float32)
  hot = rng.choice([1, 6, 8], size=(30, 20))
  one_hot[np.arange(30)[:, None], np.arange(20)[None, :], hot] = rng.choice([-1, 1], (30, 20))
  for q, tables_expected in ((iid, 1), (by_position, 9), (one_hot, 27)):
    tables, string = latent_code.encode_group([q], 9)
    assert len(entropy.tables_from_bytes(tables)) == 3 + tables_expected
    np.testing.assert_array_equal(latent_code.decode_group(tables, string, [q.shape], "t")[0], q)
  # With contexts a slice costs log2(3) bits for where its value is and 1 for the sign;
  # per-position tables pay 3·H(1/3) + 1 ≈ 3.75 bits.
  tables, string = latent_code.encode_group([one_hot], 9)
  assert 8 * len(string) < 3.0 * 600


def test_latent_code_prices_structure_not_every_zero():
  """Dead channels and zero slices cost little: below the best per-latent code of the same
  latents (the empirical entropy of each slice position)."""
  rng = np.random.default_rng(4)
  q = _channel_sparse(rng, (64, 64, 9), 20, 16, 0.5)
  tables, string = latent_code.encode_group([q], 9)
  rows = q.reshape(-1, 9)
  per_latent_bits = 0.0
  for c in range(9):
    _, counts = np.unique(rows[:, c], return_counts=True)
    per_latent_bits -= float(np.sum(counts * np.log2(counts / counts.sum())))
  assert 8 * (len(tables) + len(string)) < 0.8 * per_latent_bits


def test_latent_code_rejects_contradicting_flags():
  rng = np.random.default_rng(5)
  q = _channel_sparse(rng, (6, 5, 4), 4, 3, 0.6)
  tables, string = latent_code.encode_group([q], 4)
  bad = bytearray(string)
  caught = 0
  for position in range(len(bad)):
    bad[position] ^= 0xFF
    try:
      decoded = latent_code.decode_group(tables, bytes(bad), [q.shape], "test")
    except errors.ModelFileError:
      caught += 1
    else:
      assert decoded[0].shape == q.shape
    bad[position] ^= 0xFF
  assert caught > 0


def _within_float16(a: np.ndarray, b: np.ndarray) -> bool:
  """The module docstring's float16 tolerance."""
  return bool(np.all(np.abs(a - b) <= np.maximum(np.abs(a) * 2.0 ** -11, 2.0 ** -25)))


def test_float16_option(trained, tmp_path):
  model, _, exact_report, _, x = trained
  path = str(tmp_path / "half.lnx")
  report = lnx.compress(model, path, float16=True, estimate=False)
  assert report.float16
  assert report.section("WGTS").raw_bytes < exact_report.section("WGTS").raw_bytes
  restored = lnx.decompress(path)
  for a, b in zip(lilnetx_layers(model), lilnetx_layers(restored)):
    np.testing.assert_array_equal(a.integer_latent.numpy(), b.integer_latent.numpy())
    assert a.group.decoder.numpy().dtype == np.float32
    assert _within_float16(a.group.decoder.numpy(), b.group.decoder.numpy())
    assert a.group.latent_step.numpy() == b.group.latent_step.numpy()   # always exact
    for u, v in zip(a.group.density_variables, b.group.density_variables):
      np.testing.assert_array_equal(u.numpy(), v.numpy())
  for a, b in zip(_non_latent(model), _non_latent(restored)):
    if a.dtype == np.float32:
      assert _within_float16(a, b)
  np.testing.assert_allclose(model(x, training=False).numpy(),
                             restored(x, training=False).numpy(), rtol=1e-2, atol=1e-2)


@pytest.mark.parametrize("bits", [5, 2])
def test_mantissa_bits_option(trained, tmp_path, bits):
  model, _, _, _, x = trained
  half = lnx.compress(model, str(tmp_path / "half.lnx"), float16=True, estimate=False)
  path = str(tmp_path / "rounded.lnx")
  report = lnx.compress(model, path, float16=True, mantissa_bits=bits, estimate=False)
  assert report.mantissa_bits == bits and f"({bits} mantissa bits)" in str(report)
  assert report.section("WGTS").raw_bytes < half.section("WGTS").raw_bytes   # m bits stored
  assert report.section("WGTS").file_bytes < half.section("WGTS").file_bytes
  restored, halved = lnx.decompress(path), lnx.decompress(str(tmp_path / "half.lnx"))
  for a, b in zip(lilnetx_layers(model), lilnetx_layers(restored)):
    np.testing.assert_array_equal(a.integer_latent.numpy(), b.integer_latent.numpy())
    assert a.group.latent_step.numpy() == b.group.latent_step.numpy()   # always exact
  for a, h, b in zip(_non_latent(model), _non_latent(halved), _non_latent(restored)):
    if a.dtype != np.float32 or np.array_equal(a, b):
      continue
    normal = np.abs(h) >= 2.0 ** -14
    # Within the rounding bound of float16 itself plus that of `bits` mantissa bits ...
    assert np.all(np.abs(b - h)[normal] <= np.abs(h)[normal] * 2.0 ** -(bits + 1))
    # ... and on the coarser grid: the dropped mantissa bits are zero.
    dropped = b[normal].astype(np.float16).view(np.uint16) & ((1 << (10 - bits)) - 1)
    assert not np.any(dropped)
  if bits >= 5:   # 2 mantissa bits is a 12.5 % relative error: outputs move far
    np.testing.assert_allclose(model(x, training=False).numpy(),
                               restored(x, training=False).numpy(), rtol=0.1, atol=0.1)


@pytest.mark.parametrize("kwargs", [dict(mantissa_bits=5), dict(float16=True, mantissa_bits=0),
                                    dict(float16=True, mantissa_bits=11),
                                    dict(float_bits=8, mantissa_bits=5),
                                    dict(float16=True, mantissa_bits=5.5),
                                    dict(float16=True, mantissa_bits="5")])
def test_mantissa_bits_rejects_bad_values(trained, tmp_path, kwargs):
  with pytest.raises(errors.InvalidArgumentError, match="mantissa_bits|float_bits"):
    lnx.compress(trained[0], str(tmp_path / "bad.lnx"), **kwargs)


@pytest.mark.parametrize("bits", [8, 4])
def test_float_bits_option(trained, tmp_path, bits):
  model, _, exact_report, _, x = trained
  path = str(tmp_path / "quantized.lnx")
  report = lnx.compress(model, path, float_bits=bits, estimate=False)
  half = lnx.compress(model, str(tmp_path / "half.lnx"), float16=True, estimate=False)
  assert report.float_bits == bits == model_file.inspect(path, estimate=False).float_bits
  assert report.section("WGTS").file_bytes < half.section("WGTS").file_bytes
  restored = lnx.decompress(path)
  for a, b in zip(lilnetx_layers(model), lilnetx_layers(restored)):
    np.testing.assert_array_equal(a.integer_latent.numpy(), b.integer_latent.numpy())
    assert a.group.latent_step.numpy() == b.group.latent_step.numpy()   # always exact
    for u, v in zip(a.group.density_variables, b.group.density_variables):
      np.testing.assert_array_equal(u.numpy(), v.numpy())
  top = 2 ** (bits - 1) - 1
  for a, b in zip(_non_latent(model), _non_latent(restored)):
    if a.dtype == np.float32 and a.size > 1 and np.ptp(a) > 0:
      step = np.max(np.abs(a)) / top
      assert np.all(np.abs(a - b) <= step / 2 * (1 + 1e-6))       # rounding to the grid
      assert np.array_equal(a, b) or np.unique(b).size <= 2 * top + 1   # exact, or on a grid
  lnx.compress(restored, str(tmp_path / "again.lnx"), float_bits=bits, estimate=False)
  for u, v in zip(lnx.decompress(str(tmp_path / "again.lnx")).weights, restored.weights):
    np.testing.assert_array_equal(u.numpy(), v.numpy())   # the grid is a fixed point


@pytest.mark.parametrize("kwargs", [dict(float_bits=1), dict(float_bits=9),
                                    dict(float_bits=8, float16=True), dict(float_bits=2.9),
                                    dict(float_bits="8")])
def test_float_bits_rejects_bad_values(trained, tmp_path, kwargs):
  with pytest.raises(errors.InvalidArgumentError, match="float_bits"):
    lnx.compress(trained[0], str(tmp_path / "bad.lnx"), **kwargs)
  assert not list(tmp_path.iterdir())      # nothing written


@pytest.mark.parametrize("precision", [0, 17, 12.7, "12", True])
def test_precision_rejects_bad_values(trained, tmp_path, precision):
  with pytest.raises(errors.InvalidArgumentError, match="precision"):
    lnx.compress(trained[0], str(tmp_path / "bad.lnx"), precision=precision)


def test_inference_only_option(trained, tmp_path):
  model, _, exact_report, _, x = trained
  path = str(tmp_path / "lean.lnx")
  report = lnx.compress(model, path, inference_only=True)
  assert report.inference_only and "inference only" in str(report)
  assert report.estimated_latent_bytes is not None   # computed from the live model
  # No densities, and BatchNorm's mean and variance become fills: fewer bytes.
  assert report.section("WGTS").raw_bytes < exact_report.section("WGTS").raw_bytes
  assert report.section("CDFT").raw_bytes == exact_report.section("CDFT").raw_bytes
  assert report.section("LATS").raw_bytes == exact_report.section("LATS").raw_bytes
  restored = lnx.decompress(path)
  for a, b in zip(lilnetx_layers(model), lilnetx_layers(restored)):
    np.testing.assert_array_equal(a.kernel.numpy(), b.kernel.numpy())
  bn = restored.get_layer("bn")
  assert not np.any(bn.moving_mean.numpy())
  np.testing.assert_array_equal(bn.moving_variance.numpy() + np.float32(bn.epsilon), 1.0)
  # The folded BatchNorm computes the same function at inference.
  np.testing.assert_allclose(model(x, training=False).numpy(),
                             restored(x, training=False).numpy(), rtol=1e-5, atol=1e-5)
  inspected = model_file.inspect(path)
  assert inspected.inference_only and inspected.estimated_latent_bytes is None
  assert inspected.total_bytes == report.total_bytes


def test_inference_only_model_trains_after_fit_densities(trained, tmp_path):
  model, _, _, _, x = trained
  path = str(tmp_path / "lean.lnx")
  lnx.compress(model, path, inference_only=True)
  restored = lnx.decompress(path)
  fresh = lnx.stats(restored)["bytes"]
  lnx.fit_densities(restored, steps=100)
  fitted = lnx.stats(restored)["bytes"]
  assert fitted < 0.8 * fresh            # an untrained density prices the latents badly
  assert fitted < 1.5 * lnx.stats(model)["bytes"]


@pytest.mark.parametrize("kwargs", [dict(steps=-1), dict(steps=2.5), dict(max_slices=0),
                                    dict(learning_rate=float("nan")), dict(learning_rate=-1.0),
                                    dict(learning_rate="0.01")])
def test_fit_densities_rejects_bad_arguments(trained, kwargs):
  model = trained[0]
  before = [v.numpy() for v in model.weights]
  with pytest.raises(lnx.errors.InvalidArgumentError, match=next(iter(kwargs))):
    lnx.fit_densities(model, **kwargs)
  for value, variable in zip(before, model.weights):
    np.testing.assert_array_equal(value, variable.numpy())


def test_unbuilt_models_are_rejected_by_stats_and_fit_densities():
  model = tf.keras.Sequential([lnx.Dense(3)])
  for function in (lnx.stats, lnx.fit_densities):
    with pytest.raises(lnx.errors.InvalidArgumentError, match="not built"):
      function(model)


def test_constant_tensors_cost_no_bytes(tmp_path):
  def build(bias: float):
    model = tf.keras.Sequential([tf.keras.Input((64,)), lnx.Dense(
        256, bias_initializer=tf.keras.initializers.Constant(bias))])
    return model

  sizes = {}
  for bias in (0.0, -0.0, 0.25):
    model = build(bias)
    path = str(tmp_path / f"b{bias}.lnx")
    sizes[bias] = lnx.compress(model, path).section("WGTS").raw_bytes
    restored = lnx.decompress(path)
    np.testing.assert_array_equal(restored.layers[-1].bias.numpy().view(np.uint32),
                                  model.layers[-1].bias.numpy().view(np.uint32))
  model = build(0.0)
  model.layers[-1].bias.assign(np.linspace(-1, 1, 256, dtype=np.float32))
  varied = lnx.compress(model, str(tmp_path / "varied.lnx")).section("WGTS").raw_bytes
  assert varied > max(sizes.values()) + 4 * 256 - 16   # the fills cost a few manifest bytes


def test_subclassed_model_is_rejected(tmp_path):
  class Net(tf.keras.Model):
    def __init__(self):
      super().__init__()
      self.head = lnx.Dense(2)

    def call(self, inputs):
      return self.head(inputs)

  net = Net()
  net(tf.zeros((1, 3)))
  with pytest.raises(errors.UnsupportedLayerError, match="Functional API"):
    lnx.compress(net, str(tmp_path / "sub.lnx"))
  assert not os.listdir(tmp_path)


def test_unbuilt_model_is_rejected(tmp_path):
  with pytest.raises(errors.InvalidArgumentError, match="not built"):
    lnx.compress(tf.keras.Sequential([lnx.Dense(2)]), str(tmp_path / "x.lnx"))


def test_inference_only_zeroes_what_no_output_reads(tmp_path):
  """Unread channels lose their parameters; a constant channel that is read keeps its bias."""
  tf.keras.utils.set_random_seed(3)
  inputs = tf.keras.Input((10, 10, 3))
  h = lnx.Conv2D(6, 3, name="first")(inputs)
  h = tf.keras.layers.BatchNormalization(name="bn")(h)
  h = tf.keras.layers.ReLU()(h)
  h = lnx.Conv2D(4, 3, name="second")(h)          # VALID: a constant input is absorbable
  h = tf.keras.layers.GlobalAveragePooling2D()(h)
  outputs = lnx.Dense(2, name="head")(h)
  model = tf.keras.Model(inputs, outputs)
  first, second = model.get_layer("first"), model.get_layer("second")
  first.bias.assign(np.linspace(0.5, 1.0, 6, dtype=np.float32))
  bn = model.get_layer("bn")
  bn.beta.assign(np.full(6, 0.3, np.float32))
  step = first.group.latent_step.numpy()
  latents = np.round(first.latent.numpy())
  latents[:, 4] = 0                               # channel 4: constant relu(bias), read below
  first.latent_variable.assign(latents * step)
  second_latents = np.round(second.latent.numpy())
  second_latents[[1, 3]] = 0                      # channels 1 and 3 of `first`: never read
  second.latent_variable.assign(second_latents * step)
  x = np.random.default_rng(0).random((4, 10, 10, 3), dtype=np.float32)

  path = str(tmp_path / "lean.lnx")
  lnx.compress(model, path, inference_only=True)
  restored = lnx.decompress(path)
  np.testing.assert_allclose(restored(x).numpy(), model(x).numpy(), rtol=1e-5, atol=1e-6)
  restored_first = restored.get_layer("first")
  bias = restored_first.bias.numpy()
  assert bias[1] == bias[3] == 0 and np.all(bias[[0, 2, 4, 5]] != 0)
  kept = np.round(restored_first.latent.numpy())
  assert not np.any(kept[:, [1, 3]]) and np.any(kept[:, [0, 2]])
  restored_bn = restored.get_layer("bn")
  assert restored_bn.beta.numpy()[1] == restored_bn.gamma.numpy()[3] == 0
  assert np.all(restored_bn.beta.numpy()[[0, 2, 4, 5]] != 0)


def test_lambda_layers_need_safe_mode_off(tmp_path):
  inputs = tf.keras.Input((4,))
  x = tf.keras.layers.Lambda(lambda t: 2.0 * t)(lnx.Dense(3, name="d")(inputs))
  model = tf.keras.Model(inputs, x)
  path = str(tmp_path / "lambda.lnx")
  lnx.compress(model, path)
  with pytest.raises(errors.ModelFileError, match="safe_mode=False"):
    lnx.decompress(path)
  restored = lnx.decompress(path, safe_mode=False)
  x = np.random.default_rng(0).standard_normal((2, 4)).astype(np.float32)
  np.testing.assert_array_equal(restored(x), model(x))
  with pytest.raises(errors.ModelFileError, match="safe_mode=False"):
    lnx.coding.model_file.inspect(path)
  report = lnx.coding.model_file.inspect(path, safe_mode=False)
  assert report.groups[0].estimated_bytes is not None


def _assert_format5_model(model, expected, rtol=1e-6):
  for i, layer in enumerate(lilnetx_layers(model)):
    np.testing.assert_array_equal(layer.integer_latent.numpy(), expected[f"latent_{i}"])
  np.testing.assert_allclose(model(expected["inputs"]).numpy(), expected["outputs"], rtol=rtol)


@pytest.mark.skipif(not _HAS_TFC, reason="format 5 files are range-coded with "
                    "tensorflow-compression, which installs only on the TF 2.14 configuration")
def test_format5_files_decode_and_upgrade(tmp_path):
  expected = np.load(_FORMAT5_EXPECTED)
  _assert_format5_model(lnx.decompress(_FORMAT5), expected)
  path = str(tmp_path / "upgraded.lnx")
  report = model_file.upgrade(_FORMAT5, path)
  assert report.float16 and report.mantissa_bits == 6
  with open(path, "rb") as handle:
    assert struct.unpack_from("<H", handle.read(10), 8)[0] == container.VERSION == 6
  # The upgraded file codes the decoders relative to the latent step (layer config version 2)
  # with the file's 6 mantissa bits: one more rounding of a float16 value, nothing else.
  _assert_format5_model(lnx.decompress(path), expected, rtol=2.0 ** -6)


def test_format5_files_without_tfc_say_how_to_convert(monkeypatch):
  monkeypatch.setitem(sys.modules, "tensorflow_compression", None)     # import fails
  monkeypatch.delitem(sys.modules, "lilnetx_tf.coding.tfc_range", raising=False)
  monkeypatch.delattr(lnx.coding, "tfc_range", raising=False)
  with pytest.raises(errors.ModelFileError, match="TF 2.14 configuration.*lilnetx upgrade"):
    lnx.decompress(_FORMAT5)


def test_float_bits_store_a_zero_scalar(tmp_path):
  """An untrained dense group's decoder is the scalar log-gain 0: too small for a fill entry,
  it is quantized, and its scale must stay finite."""
  model = tf.keras.Sequential([tf.keras.Input((4,)), lnx.Dense(3)])
  assert float(model.layers[0].group.decoder.numpy()) == 0.0
  path = str(tmp_path / "zero.lnx")
  lnx.compress(model, path, float_bits=8, inference_only=True)
  restored = lnx.decompress(path)
  x = np.ones((2, 4), np.float32)
  np.testing.assert_array_equal(restored(x).numpy(), model(x).numpy())
