"""lnx.slim / lnx.export: channels really removed, outputs unchanged, files written."""

import importlib
import json
import logging
import os

import numpy as np
import pytest
import tensorflow as tf

import lilnetx_tf as lnx
from lilnetx_tf import _compat
from lilnetx_tf import errors
from lilnetx_tf.errors import ExportCheckError
from lilnetx_tf import macs
from lilnetx_tf.export import tflite

L = tf.keras.layers

# The generic DenseNet builder (small block counts) is not in the public API.
_keras_densenet = importlib.import_module(f"{_compat.KERAS_PACKAGE}.src.applications.densenet")


def _zero_out(layer, channels):
  """Zeroes output channels of a plain or LilNetX conv / dense / depthwise layer."""
  channels = list(channels)
  if lnx.is_lilnetx_layer(layer):
    v = layer.latent_variable.numpy()
    v[:, channels] = 0 if not isinstance(layer, L.DepthwiseConv2D) else v[:, channels]
    if isinstance(layer, L.DepthwiseConv2D):
      v[channels] = 0
    layer.latent_variable.assign(v)
  elif isinstance(layer, L.DepthwiseConv2D):
    k = layer.depthwise_kernel.numpy()
    k[:, :, channels] = 0
    layer.depthwise_kernel.assign(k)
  else:
    k = layer.kernel.numpy()
    k[..., channels] = 0
    layer.kernel.assign(k)


def _set_bias(layer, value):
  layer.bias.assign(np.full(layer.bias.shape, value, np.float32))


def _widths(model):
  return {l.name: (l.filters if isinstance(l, L.Conv2D) else l.units)
          for l in model.layers if type(l) in (L.Conv2D, L.Dense)}


def _assert_plain(model):
  assert not any(lnx.is_lilnetx_layer(l) for l in model._flatten_layers())


def test_conv_chain_lnx_layers():
  i = tf.keras.Input((8, 8, 3))
  x = lnx.Conv2D(8, 3, padding="same", activation="relu", name="c1")(i)
  x = lnx.Conv2D(6, 3, padding="same", activation="relu", name="c2")(x)
  x = L.GlobalAveragePooling2D()(x)
  y = lnx.Dense(4, name="d")(x)
  model = tf.keras.Model(i, y)
  for name in ("c1", "c2"):
    _zero_out(model.get_layer(name), [0, 2, 5])
    model.get_layer(name).bias.assign(-np.ones(model.get_layer(name).bias.shape))
  small = lnx.slim(model)
  _assert_plain(small)
  assert _widths(small) == {"c1": 5, "c2": 3, "d": 4}
  assert small.slim_info.max_difference <= small.slim_info.tolerance
  x = np.random.default_rng(1).standard_normal((3, 8, 8, 3)).astype(np.float32)
  np.testing.assert_allclose(small(x), model(x), atol=1e-5)


def test_batchnorm_folding_and_plain_layers():
  i = tf.keras.Input((8, 8, 3))
  x = L.Conv2D(8, 3, padding="same", use_bias=False, name="c1")(i)
  x = L.BatchNormalization()(x)
  x = L.ReLU()(x)
  x = L.Conv2D(5, 1, name="c2")(x)
  model = tf.keras.Model(i, x)
  bn = model.layers[2]
  rng = np.random.default_rng(0)
  bn.set_weights([rng.uniform(0.5, 2, 8), rng.normal(size=8), rng.normal(size=8),
                  rng.uniform(0.5, 2, 8)])
  _zero_out(model.get_layer("c1"), [1, 3])
  small = lnx.slim(model)
  assert small.slim_info.folded_batchnorms == 1
  assert not any(isinstance(l, L.BatchNormalization) for l in small.layers)
  # A dead channel is the constant relu(β − γμ/σ) read by a 1×1 conv: folded into its bias.
  assert _widths(small)["c1"] == 6


def _residual(dead_a, dead_b):
  i = tf.keras.Input((8, 8, 4))
  a = L.Conv2D(6, 3, padding="same", name="a")(i)
  b = L.Conv2D(6, 1, name="b")(i)
  x = L.ReLU()(L.Add()([a, b]))
  y = L.Conv2D(3, 3, padding="same", name="out")(x)
  model = tf.keras.Model(i, y)
  _zero_out(model.get_layer("a"), dead_a)
  _zero_out(model.get_layer("b"), dead_b)
  return model


def test_residual_add():
  small = lnx.slim(_residual([0, 1], []))            # dead in one branch only: kept
  assert _widths(small)["a"] == 6 and _widths(small)["b"] == 6
  small = lnx.slim(_residual([0, 1, 4], [1, 4]))     # 1 and 4 dead in both: removed
  assert _widths(small)["a"] == 4 and _widths(small)["b"] == 4



def _zero_pad_shortcut():
  """An option-A residual block: subsampled, zero-padded input + a strided conv branch."""
  i = tf.keras.Input((8, 8, 3))
  x = L.Conv2D(4, 3, padding="same", activation="relu", name="c0")(i)
  skip = lnx.layers.ChannelPadding((2, 2))(L.MaxPooling2D(1, strides=2)(x))
  a = L.Conv2D(8, 3, strides=2, padding="same", name="a")(x)
  y = L.ReLU()(L.Add()([skip, a]))
  model = tf.keras.Model(i, L.Conv2D(3, 3, padding="same", name="out")(y))
  _zero_out(model.get_layer("c0"), [1])
  _set_bias(model.get_layer("c0"), -1.0)                 # relu(−1) = 0 on the dead channel
  _zero_out(model.get_layer("a"), [0, 3, 4])
  _set_bias(model.get_layer("a"), 0.0)
  return model


def test_channel_padding_shortcut(tmp_path):
  model = _zero_pad_shortcut()
  small = lnx.slim(model)
  # Sum channel 0 is padding + a dead output of a: removed. Sum channel 3 is c0's dead channel 1
  # + a dead output of a: removed in both branches. Sum channel 4 is c0's live channel 2: kept.
  assert _widths(small) == {"c0": 3, "a": 6, "out": 3}
  pad = [l for l in small.layers if isinstance(l, lnx.layers.ChannelPadding)]
  assert [p.padding for p in pad] == [(1, 2)]
  x = np.random.default_rng(2).standard_normal((2, 8, 8, 3)).astype(np.float32)
  np.testing.assert_allclose(small(x), model(x), atol=1e-5)
  report = lnx.export(model, str(tmp_path / "exp"), formats=("tflite",), compare_dense=False)
  assert report.tflite_max_difference <= 1e-4 * max(1, report.output_scale)

def test_concatenate_offsets():
  i = tf.keras.Input((6, 6, 3))
  a = L.Conv2D(4, 3, padding="same", activation="relu", name="a")(i)
  b = L.Conv2D(5, 3, padding="same", activation="relu", name="b")(i)
  x = L.Concatenate()([a, b])
  y = L.Conv2D(2, 3, padding="same", name="out")(x)
  model = tf.keras.Model(i, y)
  _zero_out(model.get_layer("a"), [3])
  _zero_out(model.get_layer("b"), [0, 2])
  for name in ("a", "b"):
    _set_bias(model.get_layer(name), -0.5)              # relu(−0.5) = 0: removable
  small = lnx.slim(model)
  assert _widths(small) == {"a": 3, "b": 3, "out": 2}
  assert small.get_layer("out").kernel.shape[2] == 6


def test_depthwise_ties_channels():
  i = tf.keras.Input((8, 8, 3))
  x = L.Conv2D(6, 1, name="c1")(i)
  x = L.DepthwiseConv2D(3, padding="same", name="dw")(x)
  x = L.ReLU()(x)
  y = L.Conv2D(4, 1, name="c2")(x)
  model = tf.keras.Model(i, y)
  _zero_out(model.get_layer("c1"), [1, 2])
  _zero_out(model.get_layer("dw"), [4])
  model.get_layer("c1").bias.assign(np.zeros(6))
  small = lnx.slim(model)
  assert _widths(small)["c1"] == 3
  assert small.get_layer("dw").depthwise_kernel.shape[2] == 3


def test_flatten_dense_channel_major():
  i = tf.keras.Input((4, 4, 2))
  x = L.Conv2D(5, 3, padding="same", activation="relu", name="c")(i)
  x = L.Flatten()(x)
  y = L.Dense(3, name="d")(x)
  model = tf.keras.Model(i, y)
  _zero_out(model.get_layer("c"), [0, 3])
  _set_bias(model.get_layer("c"), 0.7)                 # constant 0.7, folded into the Dense
  small = lnx.slim(model)
  assert _widths(small)["c"] == 3
  assert small.get_layer("d").kernel.shape[0] == 4 * 4 * 3


@pytest.mark.parametrize("kernel_size,padding,kept", [(3, "same", 6), (1, "same", 4),
                                                      (3, "valid", 4)])
def test_constant_channels_exact(kernel_size, padding, kept):
  i = tf.keras.Input((7, 7, 3))
  x = L.Conv2D(6, 3, padding="same", activation="relu", name="c1")(i)
  y = L.Conv2D(4, kernel_size, padding=padding, name="c2")(x)
  model = tf.keras.Model(i, y)
  _zero_out(model.get_layer("c1"), [1, 4])
  _set_bias(model.get_layer("c1"), 0.9)                # constant 0.9 ≠ 0 after ReLU
  small = lnx.slim(model, rtol=1e-5, atol=1e-6)
  assert _widths(small)["c1"] == kept                  # SAME k×k: border-exactness keeps them
  x = np.random.default_rng(2).standard_normal((2, 7, 7, 3)).astype(np.float32)
  np.testing.assert_allclose(small(x), model(x), atol=1e-5)


def _zero_fraction(model, fraction, seed=0):
  rng = np.random.default_rng(seed)
  for layer in model._flatten_layers(include_self=False):
    if type(layer) in (L.Conv2D, L.DepthwiseConv2D):
      n = layer.depthwise_kernel.shape[2] if type(layer) is L.DepthwiseConv2D else layer.filters
      _zero_out(layer, np.flatnonzero(rng.random(n) < fraction))


APPLICATIONS = {
    "MobileNetV2": lambda: tf.keras.applications.MobileNetV2(
        weights=None, input_shape=(32, 32, 3), alpha=0.35, classes=10,
        classifier_activation=None),
    "DenseNet-small": lambda: _keras_densenet.DenseNet(
        [1, 1, 1, 1], weights=None, input_shape=(32, 32, 3), classes=10,
        classifier_activation=None),
}
if os.environ.get("LNX_SLOW_TESTS"):
  APPLICATIONS.update({
      "ResNet50": lambda: tf.keras.applications.ResNet50(
          weights=None, input_shape=(32, 32, 3), classes=10, classifier_activation=None),
      "EfficientNetB0": lambda: tf.keras.applications.EfficientNetB0(
          weights=None, input_shape=(32, 32, 3), classes=10, classifier_activation=None),
      "DenseNet121": lambda: tf.keras.applications.DenseNet121(
          weights=None, input_shape=(32, 32, 3), classes=10, classifier_activation=None)})


@pytest.mark.parametrize("name", sorted(APPLICATIONS))
def test_applications_with_zeroed_channels(name):
  model = APPLICATIONS[name]()
  _zero_fraction(model, 0.3)
  small = lnx.slim(model)                  # raises SlimCheckError if outputs differ
  assert macs.model_macs(small) < 0.8 * macs.model_macs(model)
  assert small.slim_info.removed_channels


def _tiny():
  i = tf.keras.Input((8, 8, 3))
  x = lnx.Conv2D(8, 3, padding="same", activation="relu", name="c1")(i)
  x = L.GlobalAveragePooling2D()(x)
  y = lnx.Dense(3, name="d")(x)
  model = tf.keras.Model(i, y)
  _zero_out(model.get_layer("c1"), [0, 1, 2, 3])
  return model


def test_export_files_and_tflite_match(tmp_path):
  model = _tiny()
  out = str(tmp_path / "exp")
  report = lnx.export(model, out, formats=("saved_model", "tflite"), compare_dense=False)
  decoded = 3 * 3 * 3 * 8 + 8 + 8 * 3 + 3       # kernels and biases, not latents or groups
  assert report.parameters_before == decoded
  assert report.parameters_after == decoded - 4 * (27 + 1 + 3)
  assert sorted(os.listdir(out)) == ["lilnetx_export.json", "model.tflite", "report.json",
                                     "saved_model"]
  assert report.tflite_max_difference <= 1e-4 * max(1, report.output_scale)
  assert report.macs_after < report.macs_before
  assert "MACs" in str(report)
  loaded = tf.keras.models.load_model(os.path.join(out, "saved_model"))
  x = np.ones((1, 8, 8, 3), np.float32)
  np.testing.assert_allclose(loaded(x), model(x), atol=1e-5)
  with pytest.raises(errors.InvalidArgumentError):
    lnx.export(model, out)                                   # exists, no overwrite
  assert not [f for f in os.listdir(tmp_path) if f.startswith(".")]


def _two_inputs_two_outputs():
  # Short input names: "a" is in "serving_default_b", which fed `b`'s tensor to `a`.
  tf.keras.utils.set_random_seed(0)
  b = tf.keras.Input((6, 6, 2), name="b")
  a = tf.keras.Input((5,), name="a")
  features = L.Concatenate()([L.Dense(4)(a), L.GlobalAveragePooling2D()(L.Conv2D(4, 3)(b))])
  zeta = L.Dense(2, name="zeta")(features)
  alpha = L.Rescaling(10.0, offset=3.0, name="alpha")(L.Dense(2)(features))
  return tf.keras.Model([b, a], [zeta, alpha])


def test_tflite_run_pairs_inputs_by_name():
  model = _two_inputs_two_outputs()
  content = tflite.convert(model)
  rng = np.random.default_rng(1)
  samples = [rng.normal(size=(4,) + tuple(t.shape[1:])).astype(np.float32) for t in model.inputs]
  for got, want in zip(tflite.run(content, model, samples), model(samples, training=False)):
    np.testing.assert_allclose(got, want.numpy(), atol=1e-4)


@pytest.mark.parametrize("quantization", [None, "int8"])
def test_export_of_a_converted_model_with_several_inputs_and_outputs(tmp_path, quantization):
  model = lnx.convert(_two_inputs_two_outputs(), compression=None)
  rng = np.random.default_rng(2)
  data = [{t.name.split(":")[0]: rng.normal(size=tuple(t.shape[1:])).astype(np.float32)
           for t in model.inputs} for _ in range(8)]
  report = lnx.export(model, str(tmp_path / "exp"), formats=("tflite",), compare_dense=False,
                      quantization=quantization, representative_data=data)
  if quantization is None:
    assert report.tflite_max_difference <= 1e-4 * max(1, report.output_scale)
  assert os.path.getsize(tmp_path / "exp" / "model.tflite") > 0


def _listing(directory) -> dict:
  return {os.path.relpath(os.path.join(root, f), directory): os.path.getsize(os.path.join(root, f))
          for root, _, files in os.walk(directory) for f in files}


def test_export_overwrite_replaces_only_an_earlier_export(tmp_path):
  model = _tiny()
  out = tmp_path / "exp"
  lnx.export(model, str(out), formats=("tflite",), compare_dense=False)
  first = (out / "report.json").read_text()
  assert json.loads((out / "lilnetx_export.json").read_text())["entries"] == [
      "lilnetx_export.json", "model.tflite", "report.json"]
  lnx.export(model, str(out), formats=("tflite", "keras"), compare_dense=False,
             overwrite=True)
  assert sorted(os.listdir(out)) == ["lilnetx_export.json", "model.keras", "model.tflite",
                                     "report.json"]
  assert (out / "report.json").read_text() != first
  # A file the user added: refused (the whole export would be replaced), nothing touched.
  (out / "notes.txt").write_text("mine")
  before = _listing(out)
  with pytest.raises(errors.OutputPathError, match="notes.txt") as caught:
    lnx.export(model, str(out), overwrite=True)
  assert isinstance(caught.value, OSError)
  assert _listing(out) == before
  # A directory lilnetx_tf did not write, and a regular file: refused, with or without overwrite.
  foreign = tmp_path / "photos"
  foreign.mkdir()
  (foreign / "cat.jpg").write_bytes(b"\xff\xd8")
  regular = tmp_path / "file"
  regular.write_text("data")
  for target in (foreign, regular):
    for overwrite in (False, True):
      with pytest.raises(errors.OutputPathError):
        lnx.export(model, str(target), overwrite=overwrite)
  assert _listing(foreign) == {"cat.jpg": 2} and regular.read_text() == "data"
  # A marker that is not ours (or is damaged) does not make a directory replaceable.
  (foreign / "lilnetx_export.json").write_text('{"entries": ["cat.jpg"]}')
  with pytest.raises(errors.OutputPathError, match="not a lilnetx_tf export"):
    lnx.export(model, str(foreign), overwrite=True)
  assert sorted(os.listdir(tmp_path)) == ["exp", "file", "photos"]      # no debris


def test_export_into_an_empty_directory_and_through_a_symlink(tmp_path):
  model = _tiny()
  empty = tmp_path / "empty"
  empty.mkdir()
  lnx.export(model, str(empty), formats=("tflite",), compare_dense=False)
  assert "model.tflite" in os.listdir(empty)
  link = tmp_path / "latest"
  link.symlink_to(empty)
  lnx.export(model, str(link), formats=("tflite", "keras"), compare_dense=False,
             overwrite=True)
  assert link.is_symlink() and "model.keras" in os.listdir(empty)
  assert sorted(os.listdir(tmp_path)) == ["empty", "latest"]


def test_export_path_errors(tmp_path):
  model = _tiny()
  (tmp_path / "afile").write_text("a file")
  for path in (tmp_path / "afile" / "out", tmp_path / "afile" / "sub" / "out"):
    with pytest.raises(errors.OutputPathError, match="not a directory"):
      lnx.export(model, str(path))
  with pytest.raises(errors.InvalidArgumentError, match="overwrite"):
    lnx.export(model, str(tmp_path / "out"), overwrite="yes")
  assert os.listdir(tmp_path) == ["afile"]


@pytest.mark.parametrize("quantization", ["float16", "int8"])
def test_quantized_exports_run(tmp_path, quantization):
  model = _tiny()
  data = np.random.default_rng(0).standard_normal((8, 8, 8, 3)).astype(np.float32)
  for i, examples in enumerate((data, data[:, None])):   # without and with a batch axis of 1
    report = lnx.export(model, str(tmp_path / f"{quantization}{i}"), formats=("tflite",),
                        quantization=quantization, representative_data=examples,
                        compare_dense=False)
    assert report.tflite_bytes_after > 0 and report.tflite_max_difference < 0.5


def test_rejects_subclassed_and_unbuilt_models(tmp_path):
  class Net(tf.keras.Model):
    def call(self, x):
      return x
  for model in (Net(), tf.keras.Sequential([lnx.Dense(3)])):
    with pytest.raises(errors.UnsupportedLayerError):
      lnx.slim(model)
    with pytest.raises(errors.UnsupportedLayerError):
      lnx.export(model, str(tmp_path / "e"))
  with pytest.raises(errors.InvalidArgumentError, match="rtol"):
    lnx.slim(_tiny(), rtol=-1)


def test_channels_first_layers_slim_and_export(tmp_path):
  inputs = tf.keras.Input((3, 8, 8))
  x = lnx.Conv2D(6, 3, padding="same", activation="relu", data_format="channels_first",
                 name="c")(inputs)
  x = lnx.DepthwiseConv2D(3, data_format="channels_first", name="dw")(x)
  x = L.GlobalAveragePooling2D(data_format="channels_first")(x)
  model = tf.keras.Model(inputs, lnx.Dense(3, name="d")(x))
  _zero_out(model.get_layer("c"), [0, 1])
  small = lnx.slim(model)   # checks its outputs against the model's
  _assert_plain(small)
  assert small.get_layer("c").data_format == "channels_first"
  report = lnx.export(model, str(tmp_path / "e"), formats=("tflite",), compare_dense=False)
  assert report.tflite_max_difference <= 1e-4 * max(1.0, report.output_scale)


@pytest.mark.parametrize("quantization", [None, "int8"])
def test_integer_inputs(tmp_path, quantization):
  ids = tf.keras.Input((7,), dtype="int32")
  x = L.GlobalAveragePooling1D()(L.Embedding(50, 8)(ids))
  x = lnx.Dense(6, activation="relu", name="hidden")(x)
  model = tf.keras.Model(ids, lnx.Dense(3, name="out")(x))
  _zero_out(model.get_layer("hidden"), [0, 1])
  report = lnx.export(model, str(tmp_path / "e"), formats=("tflite",),
                      quantization=quantization, compare_dense=False)
  assert report.removed_channels == {"hidden": [6, 4]}
  if quantization is None:
    assert report.tflite_max_difference <= 1e-4 * max(1.0, report.output_scale)


@pytest.mark.parametrize("embedding", [L.Embedding, lnx.Embedding])
def test_variable_length_tokens_check_at_the_sample_length(tmp_path, embedding):
  # A length-7 convolution cannot run at the placeholder length 1 of a dynamic dimension:
  # the TFLite check must allocate for the sample inputs' length.
  ids = tf.keras.Input((None,), dtype="int64")
  x = L.Conv1D(6, 7, activation="relu")(embedding(30, 8)(ids))
  model = tf.keras.Model(ids, lnx.Dense(2)(L.GlobalMaxPooling1D()(x)))
  report = lnx.export(model, str(tmp_path / "default"), formats=("tflite",),
                      compare_dense=False)
  assert report.tflite_max_difference <= 1e-4 * max(1.0, report.output_scale)
  sample = [np.random.default_rng(0).integers(0, 30, (2, 57))]
  content = (tmp_path / "default" / "model.tflite").read_bytes()
  got = tflite.run(content, model, sample)[0]
  np.testing.assert_allclose(got, model(sample[0]), rtol=1e-5, atol=1e-5)
  timer = tflite.Timer(content, num_threads=1, dynamic_size=40, warmup=1)
  assert list(timer.interp.get_input_details()[0]["shape"]) == [1, 40]


def test_layer_shared_by_two_calls_stays_shared(tmp_path):
  a, b = tf.keras.Input((6,)), tf.keras.Input((6,))
  shared = lnx.Dense(5, activation="relu", name="shared")
  x = lnx.Dense(4, activation="relu", name="mix")(L.Concatenate()([shared(a), shared(b)]))
  model = tf.keras.Model([a, b], lnx.Dense(2, name="out")(x))
  _zero_out(model.get_layer("mix"), [1])
  small = lnx.slim(model)
  _assert_plain(small)
  dense = [l for l in small.layers if type(l) is L.Dense]
  assert len(dense) == 3 and small.get_layer("shared").units == 5   # one layer, full width
  assert small.slim_info.removed_channels == {"mix": (4, 3)}
  report = lnx.export(model, str(tmp_path / "e"), formats=("tflite",), compare_dense=False)
  assert report.tflite_max_difference <= 1e-4 * max(1.0, report.output_scale)


def test_mixed_precision_trains_compresses_and_exports(tmp_path):
  tf.keras.mixed_precision.set_global_policy("mixed_float16")
  try:
    inputs = tf.keras.Input((8, 8, 3))
    x = lnx.Conv2D(6, 3, rate_weight=0.1, name="c")(inputs)
    x = L.ReLU()(L.BatchNormalization()(x))
    x = L.GlobalAveragePooling2D()(x)
    model = tf.keras.Model(inputs, lnx.Dense(3, dtype="float32", name="out")(x))
    assert model.get_layer("c").compute_dtype == "float16"
    model.compile("adam", tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    rng = np.random.default_rng(0)
    x = rng.standard_normal((8, 8, 8, 3)).astype(np.float32)
    history = model.fit(x, np.arange(8) % 3, batch_size=4, epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][0])
    lnx.compress(model, str(tmp_path / "m.lnx"))
    restored = lnx.decompress(str(tmp_path / "m.lnx"))
    np.testing.assert_array_equal(restored(x, training=False), model(x, training=False))
    report = lnx.export(model, str(tmp_path / "e"), inputs=[x], compare_dense=False)
    assert report.tflite_max_difference <= 1e-4 * max(1.0, report.output_scale)
  finally:
    tf.keras.mixed_precision.set_global_policy("float32")


def test_a_model_tflite_cannot_run_is_an_export_check_error(tmp_path):
  # TF 2.14's TFLite converts GroupNormalization to a BROADCAST_TO it then cannot prepare.
  inputs = tf.keras.Input((8, 8, 3))
  x = L.GroupNormalization(groups=2)(lnx.Conv2D(6, 3, padding="same", name="c")(inputs))
  model = tf.keras.Model(inputs, lnx.Dense(2, name="d")(L.GlobalAveragePooling2D()(x)))
  with pytest.raises(ExportCheckError, match="TFLite"):
    lnx.export(model, str(tmp_path / "e"), formats=("tflite",), compare_dense=False)
  assert not os.path.exists(tmp_path / "e")


def test_export_logs_no_uncompiled_model_warnings(tmp_path):
  """Keras 2 warns about compiled metrics for every uncompiled model it saves; the exporter's
  slim model is uncompiled on purpose, so an export must not pass that on to the user."""
  model = tf.keras.Sequential([tf.keras.Input((4,)), lnx.Dense(3)])
  model.compile("adam", "mse")
  records = []
  handler = logging.Handler()
  handler.emit = records.append
  tf.get_logger().addHandler(handler)
  try:
    lnx.export(model, str(tmp_path / "out"))
  finally:
    tf.get_logger().removeHandler(handler)
  messages = [r.getMessage() for r in records]
  assert not [m for m in messages if "compiled metrics" in m], messages
