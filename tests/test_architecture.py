"""The ARCH section leaves out layer arguments only when the rebuilt model is the same."""

import json

import numpy as np
import pytest
import tensorflow as tf

import lilnetx_tf as lnx
from lilnetx_tf import errors
from lilnetx_tf.coding import architecture
from lilnetx_tf.models import lenet5, resnet20


class Scale(tf.keras.layers.Layer):
  """A custom layer Keras cannot deserialize without custom_objects."""

  def __init__(self, factor=2.0, **kwargs):
    super().__init__(**kwargs)
    self.factor = factor

  def call(self, x):
    return x * self.factor

  def get_config(self):
    return {**super().get_config(), "factor": self.factor}


def _nested_with_custom_layer():
  inner = tf.keras.Sequential([tf.keras.Input((8,)), lnx.Dense(6, activation="relu"),
                               tf.keras.layers.Dropout(0.25)], name="inner")
  inputs = tf.keras.Input((8,))
  x = Scale(3.0, name="scale")(inner(inputs))
  return tf.keras.Model(inputs, lnx.Dense(2, rate_weight=0.5, name="head")(x))


@pytest.mark.parametrize("build", [lenet5, resnet20, _nested_with_custom_layer,
                                   lambda: tf.keras.applications.MobileNetV2(
                                       weights=None, input_shape=(32, 32, 3), classes=5)])
def test_lean_config_rebuilds_the_same_model(build):
  model = build()
  objects = {"Scale": Scale}
  full = json.dumps({"format": "keras-json", "model": json.loads(model.to_json())}).encode()
  lean = architecture.encode(model)
  assert len(lean) < 0.75 * len(full)
  count = architecture.parameter_count(model)
  assert architecture.rebuild(full, objects, True, count).to_json() == model.to_json()
  assert architecture.rebuild(lean, objects, True, count).to_json() == model.to_json()


def test_config_names_are_left_out_and_restored():
  model = _nested_with_custom_layer()
  lean = json.loads(architecture.encode(model))
  entries = lean["model"]["config"]["layers"]
  inner = [e for e in entries if e["name"] == "inner"][0]
  assert all("name" not in e["config"] for e in entries)
  assert all("name" not in e["config"] for e in inner["config"]["layers"] if "name" in e)
  count = architecture.parameter_count(model)
  rebuilt = architecture.rebuild(json.dumps(lean).encode(), {"Scale": Scale}, True, count)
  assert [layer.name for layer in rebuilt.layers] == [layer.name for layer in model.layers]
  # A "keras-json" section (older files) keeps every name and reads as before.
  full = json.dumps({"format": "keras-json", "model": json.loads(model.to_json())}).encode()
  assert architecture.rebuild(full, {"Scale": Scale}, True, count).to_json() == \
      rebuilt.to_json()


def test_build_configs_are_left_out_only_when_the_model_rebuilds_the_same():
  entries = json.loads(architecture.encode(lenet5()))["model"]["config"]["layers"]
  assert not any("build_config" in e for e in entries)
  # The custom layer cannot be rebuilt without custom_objects, so nothing is left to chance.
  entries = json.loads(architecture.encode(_nested_with_custom_layer()))["model"]["config"]
  assert any("build_config" in e for e in entries["layers"])


def test_a_dtype_policy_is_kept_whatever_the_global_policy_where_it_is_read():
  """A layer's left-out `dtype` is filled in from the global policy where the file is read: a
  mixed-precision model's policy stays in the file, and only float32 layers lose theirs."""
  tf.keras.mixed_precision.set_global_policy("mixed_float16")
  try:
    inputs = tf.keras.Input((8,))
    x = lnx.Dense(6, name="hidden")(inputs)
    model = tf.keras.Model(inputs, tf.keras.layers.Activation("linear", dtype="float32",
                                                              name="out")(x))
    lean = architecture.encode(model)
  finally:
    tf.keras.mixed_precision.set_global_policy("float32")
  entries = {e["name"]: e["config"] for e in json.loads(lean)["model"]["config"]["layers"]}
  assert "dtype" in entries["hidden"]
  rebuilt = architecture.rebuild(lean, None, True, architecture.parameter_count(model))
  assert rebuilt.get_layer("hidden").compute_dtype == "float16"
  assert rebuilt.get_layer("out").compute_dtype == "float32"
  float32_entries = json.loads(architecture.encode(lenet5()))["model"]["config"]["layers"]
  assert not any("dtype" in e["config"] for e in float32_entries)


def test_custom_layers_are_kept_whole_and_need_custom_objects(tmp_path):
  model = _nested_with_custom_layer()
  lean = json.loads(architecture.encode(model))
  custom = [e for e in lean["model"]["config"]["layers"] if e["class_name"] == "Scale"]
  assert custom[0]["config"]["factor"] == 3.0 and "trainable" in custom[0]["config"]
  head = [e for e in lean["model"]["config"]["layers"] if e["name"] == "head"]
  assert head[0]["config"]["rate_weight"] == 0.5 and "slice_weight" not in head[0]["config"]
  path = str(tmp_path / "custom.lnx")
  lnx.compress(model, path)
  with pytest.raises(errors.ModelFileError, match="custom_objects"):
    lnx.decompress(path)
  x = np.ones((2, 8), np.float32)
  restored = lnx.decompress(path, custom_objects={"Scale": Scale})
  np.testing.assert_array_equal(model(x).numpy(), restored(x).numpy())


def test_corrupt_architecture_is_a_model_file_error():
  with pytest.raises(errors.ModelFileError, match="JSON"):
    architecture.rebuild(b"\xff{", None, True, 0)
  with pytest.raises(errors.ModelFileError, match="Keras model config"):
    architecture.rebuild(b'{"format": "other"}', None, True, 0)
  with pytest.raises(errors.ModelFileError, match="not a Functional or Sequential"):
    architecture.rebuild(b'{"format": "keras-json/2", "model": {"config": {"layers": 7}}}',
                         None, True, 0)
  # Found by `benchmarks/fuzz_model_file.py --rechecksum`: a mutated class name that Keras
  # deserializes to a string, not a model.
  with pytest.raises(errors.ModelFileError, match="not a Functional or Sequential"):
    architecture.rebuild(
        b'{"format": "keras-json/2", "model": {"class_name": "Constant", "config": {}}}', None,
        True, 0)
  doc = json.loads(architecture.encode(lenet5()))
  doc["model"]["config"]["layers"][1]["config"]["no_such_argument"] = 1
  with pytest.raises(errors.ModelFileError, match="Cannot rebuild"):
    architecture.rebuild(json.dumps(doc).encode(), None, True, 10 ** 6)
