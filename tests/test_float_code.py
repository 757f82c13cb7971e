"""Coded float16 values (`coding.float_code`): exact round trips, typed errors on bad input."""

import json
import struct

import os

import numpy as np
import pytest
import tensorflow as tf

import lilnetx_tf as lnx
from lilnetx_tf import errors
from lilnetx_tf.coding import container, entropy, float_code


def _values(count=500, seed=0) -> np.ndarray:
  rng = np.random.default_rng(seed)
  x = rng.standard_normal(count) * np.exp(rng.uniform(-12, 8, count))
  x[:4] = [0.0, -0.0, 6e-8, -65504.0]          # zeros, a subnormal, the largest magnitude
  return x.astype(np.float16)


@pytest.mark.parametrize("bits", [1, 5, 10])
def test_round_trip_is_bit_exact(bits):
  values = float_code.round_mantissa(_values(), bits)
  data = float_code.encode(values, bits)
  decoded = float_code.decode(data, values.size, bits)
  np.testing.assert_array_equal(decoded.view(np.uint16), values.view(np.uint16))


def test_code_is_smaller_than_float16_for_few_exponents():
  values = float_code.round_mantissa(
      np.random.default_rng(1).uniform(0.5, 2.0, 2000).astype(np.float16), 5)
  assert len(float_code.encode(values, 5)) < 0.5 * values.nbytes


def test_round_mantissa_keeps_specials_and_range():
  values = np.array([np.inf, -np.inf, np.nan, 65504.0, 1.0 + 2.0 ** -10], np.float16)
  rounded = float_code.round_mantissa(values, 5)
  assert np.isposinf(rounded[0]) and np.isneginf(rounded[1]) and np.isnan(rounded[2])
  assert np.isfinite(rounded[3]) and rounded[4] == 1.0


def test_encode_rejects_values_with_low_mantissa_bits():
  with pytest.raises(errors.InvalidArgumentError, match="mantissa"):
    float_code.encode(np.array([1.0 + 2.0 ** -10], np.float16), 5)


def test_truncated_or_padded_codes_raise_model_file_error():
  values = float_code.round_mantissa(_values(), 5)
  data = float_code.encode(values, 5)
  for cut in range(len(data)):
    with pytest.raises(errors.ModelFileError):
      float_code.decode(data[:cut], values.size, 5)
  with pytest.raises(errors.ModelFileError):
    float_code.decode(data + b"\0", values.size, 5)
  with pytest.raises(errors.ModelFileError):
    float_code.decode(data, values.size + 8, 5)


def test_exponent_field_out_of_range_is_rejected():
  fields = np.array([3, 64, 5], np.int64)                   # 64 is not a sign-exponent field
  distribution = entropy.fit(fields)
  table = entropy.tables_to_bytes([distribution])
  string = entropy.encode(fields, np.zeros(3, np.int32), [distribution])
  data = (struct.pack("<I", len(table)) + table + struct.pack("<I", len(string)) + string
          + bytes(2))
  with pytest.raises(errors.ModelFileError, match="exponent"):
    float_code.decode(data, 3, 5)


def _model_with_bias(bias: np.ndarray) -> tf.keras.Model:
  inputs = tf.keras.Input((4,))
  hidden = lnx.layers.Dense(3, name="lnx")(inputs)
  outputs = tf.keras.layers.Dense(3, name="plain")(hidden)
  model = tf.keras.Model(inputs, outputs)
  model.get_layer("plain").bias.assign(bias)
  return model


def _wgts_kinds(path: str) -> list:
  data = {s.tag: s.data for s in container.read(path).sections}["WGTS"]
  (length,) = struct.unpack_from("<I", data)
  return [entry[2] for entry in json.loads(data[4:4 + length])]


def test_model_file_codes_float16_tensors_and_refuses_infinite_ones(tmp_path):
  finite = _model_with_bias(np.array([0.5, -3.0, 7.25], np.float32))
  path = str(tmp_path / "finite.lnx")
  lnx.compress(finite, path, float16=True, mantissa_bits=6, estimate=False)
  assert "f16c" in _wgts_kinds(path)
  report = lnx.coding.model_file.inspect(path)
  assert report.float16 and report.mantissa_bits == 6
  x = np.random.default_rng(2).standard_normal((5, 4)).astype(np.float32)
  restored = lnx.decompress(path)
  np.testing.assert_allclose(restored(x).numpy(), finite(x).numpy(), rtol=0.05, atol=0.05)
  np.testing.assert_array_equal(restored.get_layer("plain").bias.numpy(), [0.5, -3.0, 7.25])

  infinite = _model_with_bias(np.array([np.inf, 1.0, 2.0], np.float32))
  path = str(tmp_path / "infinite.lnx")
  with pytest.raises(errors.InvalidArgumentError, match="plain/bias.*NaN or infinite"):
    lnx.compress(infinite, path, float16=True, mantissa_bits=6, estimate=False)
  assert not os.path.exists(path)     # refused before anything is written; reading such a
  # file (a re-sealed forgery) is refused too: tests/test_untrusted_files.py
