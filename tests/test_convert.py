"""lnx.convert: Sequential, Functional, nested, shared layers, subsets, errors, warm start, apps."""

import warnings

import numpy as np
import pytest
import tensorflow as tf

import lilnetx_tf as lnx
from lilnetx_tf import errors
from lilnetx_tf.convert import MAX_WARM_START_INTEGER
from lilnetx_tf.stats import lilnetx_layers

L = tf.keras.layers


def _registries(model) -> set:
  from lilnetx_tf.layers import registry as registry_lib
  return {id(registry_lib.registry_of(layer)) for layer in lilnetx_layers(model)}


def _small_functional():
  inputs = tf.keras.Input((12, 12, 3))
  x = L.Conv2D(8, 3, activation="relu", name="c1")(inputs)
  x = L.BatchNormalization(name="bn")(x)
  x = L.DepthwiseConv2D(3, name="dw")(x)
  x = L.Conv2D(8, 1, name="c2")(x)
  x = L.GlobalAveragePooling2D()(x)
  outputs = L.Dense(2, name="head")(x)
  return tf.keras.Model(inputs, outputs)


def _train(model, data, epochs=3):
  x, y = data
  model.compile(tf.keras.optimizers.Adam(1e-2),
                tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True))
  model.fit(x, y, epochs=epochs, batch_size=64, verbose=0)


def test_sequential(image_data, tmp_path):
  model = tf.keras.Sequential([
      tf.keras.Input((12, 12, 3)), L.Conv2D(4, 3, activation="relu"), L.MaxPooling2D(),
      L.Flatten(), L.Dense(2)])
  converted = lnx.convert(model, rate_weight=0.02)
  assert isinstance(converted, tf.keras.Sequential)
  assert [type(l) for l in converted.layers] == [
      lnx.Conv2D, L.MaxPooling2D, L.Flatten, lnx.Dense]
  assert all(l.rate_weight == 0.02 for l in lilnetx_layers(converted))
  assert len(_registries(converted)) == 1
  _train(converted, image_data, epochs=1)
  assert lnx.stats(converted)["bytes"] > 0
  path = str(tmp_path / "model.lnx")
  lnx.compress(converted, path, estimate=False)
  restored = lnx.decompress(path)
  x = image_data[0][:8]
  np.testing.assert_allclose(restored(x).numpy(), converted(x).numpy(), atol=1e-5)


def test_sequential_with_a_repeated_layer_keeps_both_calls():
  shared = L.Dense(6, activation="relu")
  model = tf.keras.Sequential([tf.keras.Input((6,)), shared, shared, L.Dense(2)])
  converted = lnx.convert(model, warm_start_resolution=1e-3)
  dense = [l for l in converted.layers if isinstance(l, lnx.Dense)]
  assert len(dense) == 2 and len(_registries(converted)) == 1
  x = np.random.default_rng(0).random((4, 6), dtype=np.float32)
  expected = model(x).numpy()
  np.testing.assert_allclose(converted(x).numpy(), expected, atol=0.02 * np.abs(expected).max())
  once = model.layers[-1](shared(x)).numpy()
  assert np.abs(once - expected).max() > 0.1 * np.abs(expected).max()


def test_functional_copies_other_layers_and_biases(image_data):
  model = _small_functional()
  _train(model, image_data, epochs=1)
  converted = lnx.convert(model, warm_start=False)
  types = {l.name: type(l) for l in converted.layers}
  assert types["c1"] is lnx.Conv2D and types["dw"] is lnx.DepthwiseConv2D
  assert types["c2"] is lnx.Conv2D and types["head"] is lnx.Dense and types["bn"] is L.BatchNormalization
  for name in ("bn",):
    for a, b in zip(model.get_layer(name).get_weights(), converted.get_layer(name).get_weights()):
      np.testing.assert_array_equal(a, b)
  np.testing.assert_array_equal(model.get_layer("head").bias, converted.get_layer("head").bias)
  assert len(_registries(converted)) == 1
  # The original is untouched and still plain Keras.
  assert type(model.get_layer("c1")) is L.Conv2D


def test_warm_start_output_is_close(image_data):
  model = _small_functional()
  _train(model, image_data)
  x = image_data[0][:64]
  converted = lnx.convert(model, warm_start=True)
  expected, actual = model(x).numpy(), converted(x).numpy()
  relative = np.abs(actual - expected).max() / np.abs(expected).max()
  assert relative < 0.05, relative
  # Decoded kernels are the originals on the group's grid.
  for layer in lilnetx_layers(converted):
    original = model.get_layer(layer.name)
    kernel = original.depthwise_kernel if layer.name == "dw" else original.kernel
    step = float(layer.group.latent_step.numpy())
    assert np.abs(layer.kernel.numpy() - kernel.numpy()).max() <= step / 2 + 1e-6
  # Same predictions, and fresh init does not start close.
  assert (expected.argmax(-1) == actual.argmax(-1)).mean() > 0.95
  fresh = lnx.convert(model, warm_start=False)
  assert np.abs(fresh(x).numpy() - expected).max() / np.abs(expected).max() > relative


def test_warm_start_fits_the_densities():
  model = _small_functional()
  unfitted = lnx.stats(lnx.convert(model, density_fit_steps=0))["bytes"]
  fitted = lnx.stats(lnx.convert(model))["bytes"]
  assert fitted < 0.98 * unfitted, (fitted, unfitted)


def test_warm_start_keeps_latents_in_range_across_layer_scales():
  model = tf.keras.Sequential([tf.keras.Input((6,)), L.Dense(8, activation="relu"), L.Dense(3)])
  kernel, bias = model.layers[1].get_weights()
  model.layers[1].set_weights([kernel * 1e-6, bias])    # one group, scales 10^6 apart
  with pytest.warns(UserWarning, match="differ in scale"):
    converted = lnx.convert(model)
  largest = max(float(np.abs(l.integer_latent.numpy()).max()) for l in lilnetx_layers(converted))
  assert largest <= MAX_WARM_START_INTEGER
  x = np.random.default_rng(0).standard_normal((16, 6)).astype(np.float32)
  converted.compile("adam", "mse")
  history = converted.fit(x, np.zeros((16, 3), np.float32), epochs=2, verbose=0)
  assert np.all(np.isfinite(history.history["loss"]))


def test_nested_model_and_shared_layer(image_data):
  inner_in = tf.keras.Input((12, 12, 3))
  inner = tf.keras.Model(inner_in, L.Conv2D(4, 3, name="inner_conv")(inner_in), name="inner")
  shared = L.Dense(4, name="shared")
  inputs = tf.keras.Input((12, 12, 3))
  x = inner(inputs)
  x = L.GlobalAveragePooling2D()(x)
  a = shared(x)
  b = shared(L.Dense(4, name="pre")(x))
  outputs = L.Dense(2, name="head")(L.Add()([a, b]))
  model = tf.keras.Model(inputs, outputs)
  converted = lnx.convert(model)
  new_inner = converted.get_layer("inner")
  assert isinstance(new_inner, tf.keras.Model) and new_inner is not inner
  assert type(new_inner.get_layer("inner_conv")) is lnx.Conv2D
  new_shared = converted.get_layer("shared")
  assert type(new_shared) is lnx.Dense
  assert len(new_shared._inbound_nodes) == 2  # one layer object used twice
  assert sum(l is new_shared for l in converted.layers) == 1
  assert len(lilnetx_layers(converted)) == 4
  assert len(_registries(converted)) == 1  # nested layers share the outer model's groups
  x = image_data[0][:16]
  np.testing.assert_allclose(converted(x), model(x), atol=0.15 * np.abs(model(x)).max())
  _train(converted, image_data, epochs=1)


def test_dict_inputs_and_outputs_survive_the_file_and_export(tmp_path):
  """A model called on a dict and returning a dict (Keras's multi-output recipe) converts,
  trains with per-output losses, and its file decodes to the same model (the architecture
  check read only lists of inputs and outputs)."""
  image = tf.keras.Input((6,), name="image")
  extra = tf.keras.Input((2,), name="extra")
  x = L.Dense(8, activation="relu", name="trunk")(L.Concatenate()([image, extra]))
  model = tf.keras.Model({"image": image, "extra": extra},
                         {"digit": L.Dense(3, name="digit")(x), "ink": L.Dense(1, name="ink")(x)})
  converted = lnx.convert(model)
  rng = np.random.default_rng(0)
  x = {"image": rng.normal(size=(64, 6)).astype(np.float32),
       "extra": rng.normal(size=(64, 2)).astype(np.float32)}
  y = {"digit": rng.integers(0, 3, 64), "ink": rng.normal(size=(64, 1)).astype(np.float32)}
  converted.compile("adam", {"digit": tf.keras.losses.SparseCategoricalCrossentropy(
      from_logits=True), "ink": "mse"}, loss_weights={"digit": 1.0, "ink": 0.5})
  converted.fit(x, y, epochs=1, batch_size=16, verbose=0)
  path = str(tmp_path / "model.lnx")
  lnx.compress(converted, path)
  restored = lnx.decompress(path)
  got, want = restored(x), converted(x)
  assert sorted(got) == ["digit", "ink"]
  for key in want:
    np.testing.assert_allclose(got[key], want[key], rtol=1e-5, atol=1e-6)
  lnx.export(restored, str(tmp_path / "export"), formats=("tflite",), compare_dense=False)


def _kernels(layer) -> list:
  return [np.array(lnx.layers.layer_attribute(layer, path))
          for _, path in lnx.layers.kernel_latents(layer)]


@pytest.mark.parametrize("freeze", ["before_convert", "after_convert"])
def test_frozen_layers_keep_their_kernels(freeze):
  """Transfer learning: a frozen base whose kernels share parameter groups (decoders) with a
  trainable head. The head trained the shared decoders, which moved the frozen kernels."""
  base_input = tf.keras.Input((6, 6, 2))
  x = L.SeparableConv2D(4, 3, name="separable")(base_input)
  x = L.Reshape((16, 4))(L.Conv2D(4, 3, padding="same", name="conv")(x))
  x = L.MultiHeadAttention(2, 4, name="attention")(x, x)
  base = tf.keras.Model(base_input, L.GlobalAveragePooling1D()(x), name="base")
  inputs = tf.keras.Input((6, 6, 2))
  head = L.Conv2D(3, 3, name="head_conv")(inputs)          # conv3x3, as the base's conv
  head = L.SeparableConv2D(4, 3, name="head_separable")(head)   # both separable groups
  features = L.Concatenate()([base(inputs), L.GlobalAveragePooling2D()(head)])
  model = tf.keras.Model(inputs, L.Dense(3, name="head_dense")(features))
  if freeze == "before_convert":
    base.trainable = False
  converted = lnx.convert(model)
  if freeze == "after_convert":
    converted.get_layer("base").trainable = False
  frozen = [converted.get_layer("base").get_layer(n) for n in ("separable", "conv", "attention")]
  trained = [converted.get_layer(n) for n in ("head_conv", "head_separable", "head_dense")]
  before = [_kernels(layer) for layer in frozen + trained]
  converted.compile("adam", tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True))
  rng = np.random.default_rng(0)
  converted.fit(rng.normal(size=(32, 6, 6, 2)), rng.integers(0, 3, 32), batch_size=8,
                verbose=0)
  after = [_kernels(layer) for layer in frozen + trained]
  for kernels_before, kernels_after in zip(before[:3], after[:3]):
    for k0, k1 in zip(kernels_before, kernels_after):
      np.testing.assert_array_equal(k0, k1)
  for kernels_before, kernels_after in zip(before[3:], after[3:]):
    assert any(np.abs(k0 - k1).max() > 0 for k0, k1 in zip(kernels_before, kernels_after))


def test_subset_by_name_and_predicate():
  model = _small_functional()
  by_name = lnx.convert(model, layers=["c1", "head"])
  kinds = {l.name: type(l) for l in by_name.layers}
  assert kinds["c1"] is lnx.Conv2D and kinds["head"] is lnx.Dense
  assert kinds["c2"] is L.Conv2D and kinds["dw"] is L.DepthwiseConv2D
  np.testing.assert_array_equal(model.get_layer("c2").kernel, by_name.get_layer("c2").kernel)
  by_predicate = lnx.convert(model, layers=lambda layer: isinstance(layer, L.Conv2D))
  assert [l.name for l in lilnetx_layers(by_predicate)] == ["c1", "c2"]
  with pytest.raises(errors.InvalidArgumentError, match="nope"):
    lnx.convert(model, layers=["nope"])


def test_unsupported_layers_warn_once_and_strict_raises():
  inputs = tf.keras.Input((8, 8, 4))
  x = L.Conv2D(4, 3, groups=2, name="grouped")(inputs)
  x = L.Conv2DTranspose(4, 3, name="transposed")(x)
  x = L.SeparableConv2D(4, 3, name="separable")(x)
  x = L.Conv2D(4, 3, name="ok", kernel_regularizer="l2", kernel_constraint="max_norm")(x)
  model = tf.keras.Model(inputs, L.Dense(2, name="head")(L.Flatten()(x)))
  with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    converted = lnx.convert(model)
  messages = [str(w.message) for w in caught if issubclass(w.category, UserWarning)]
  unsupported = [m for m in messages if "kept as plain Keras" in m]
  assert len(unsupported) == 1
  assert "grouped" in unsupported[0] and "groups=2" in unsupported[0]
  for name in ("transposed", "separable", "ok", "head"):   # converted: not listed as plain
    assert f"'{name}'" not in unsupported[0]
  assert any("kernel_regularizer" in m and "'ok'" in m for m in messages)
  assert type(converted.get_layer("grouped")) is L.Conv2D
  np.testing.assert_array_equal(model.get_layer("grouped").get_weights()[0],
                                converted.get_layer("grouped").get_weights()[0])
  assert type(converted.get_layer("ok")) is lnx.Conv2D
  assert type(converted.get_layer("transposed")) is lnx.Conv2DTranspose
  assert type(converted.get_layer("separable")) is lnx.SeparableConv2D
  assert converted.get_layer("ok").kernel_regularizer is None
  with pytest.raises(errors.UnsupportedLayerError, match="grouped"):
    lnx.convert(model, strict=True)
  # The failed strict conversion left nothing behind on the model: a new conversion warns
  # again and follows its own layer selection.
  with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    unconverted = lnx.convert(model, layers=[])
  assert any("kept as plain Keras" in str(w.message) for w in caught)
  assert not lilnetx_layers(unconverted)


class _CustomKernel(L.Layer):
  """A custom layer with its own weight matrix (not a Keras layer convert knows)."""

  def build(self, input_shape):
    self.kernel = self.add_weight("kernel", (input_shape[-1], 4))

  def call(self, x):
    return tf.matmul(x, self.kernel)


def test_recurrent_and_custom_kernel_layers_are_named_with_their_parameter_share():
  inputs = tf.keras.Input((5, 3))
  h = L.LSTM(8, name="rnn", return_sequences=True)(inputs)
  h = L.Bidirectional(L.GRU(4), name="bi")(h)
  h = _CustomKernel(name="mine")(h)
  h = L.PReLU(name="prelu")(L.Reshape((2, 2))(h))         # a rank-2 weight, not a kernel
  model = tf.keras.Model(inputs, L.Dense(2, name="head")(L.Flatten()(h)))
  kept = sum(model.get_layer(n).count_params() for n in ("rnn", "bi", "mine"))
  share = f"{kept:,} of the model's {model.count_params():,} parameters"
  with pytest.raises(errors.UnsupportedLayerError) as caught:
    lnx.convert(model, strict=True)
  for text in ("'rnn' (LSTM)", "'bi' (Bidirectional)", "'mine'", "kernel", share):
    assert text in str(caught.value)
  assert "prelu" not in str(caught.value)
  with warnings.catch_warnings(record=True) as warned:
    warnings.simplefilter("always")
    converted = lnx.convert(model)
  messages = [str(w.message) for w in warned if "kept as plain Keras" in str(w.message)]
  assert len(messages) == 1 and share in messages[0] and "'rnn' (LSTM)" in messages[0]
  assert type(converted.get_layer("rnn")) is L.LSTM
  assert type(converted.get_layer("head")) is lnx.Dense


@pytest.mark.parametrize("steps", [-1, 1.5, "x", True])
def test_density_fit_steps_must_be_a_whole_number(steps):
  with pytest.raises(errors.InvalidArgumentError, match="density_fit_steps"):
    lnx.convert(_small_functional(), density_fit_steps=steps)


def test_subclassed_model_is_rejected():
  class Net(tf.keras.Model):

    def __init__(self):
      super().__init__()
      self.conv = L.Conv2D(4, 3)

    def call(self, x):
      return self.conv(x)

  net = Net()
  net(tf.zeros((1, 8, 8, 3)))
  with pytest.raises(errors.UnsupportedLayerError, match="group_scope"):
    lnx.convert(net)


APPLICATIONS = {
    "ResNet50": tf.keras.applications.ResNet50,
    "MobileNetV2": tf.keras.applications.MobileNetV2,
    "EfficientNetB0": tf.keras.applications.EfficientNetB0,
    "DenseNet121": tf.keras.applications.DenseNet121,
}


@pytest.mark.parametrize("name", sorted(APPLICATIONS))
def test_keras_application(name, tmp_path):
  model = APPLICATIONS[name](weights=None, input_shape=(32, 32, 3), classes=10)
  converted = lnx.convert(model, density_fit_steps=0)  # the density fit is tested above
  plain = [l for l in converted._flatten_layers(include_self=False)
           if type(l) in (L.Conv2D, L.DepthwiseConv2D, L.Dense)]
  assert not plain
  assert len(lilnetx_layers(converted)) == len(
      [l for l in model._flatten_layers(include_self=False)
       if type(l) in (L.Conv2D, L.DepthwiseConv2D, L.Dense)])
  assert len(_registries(converted)) == 1
  x = np.random.default_rng(0).random((8, 32, 32, 3), dtype=np.float32)
  y = np.arange(8) % 10
  # Warm start from the (random) weights: inference outputs match closely.
  np.testing.assert_allclose(converted(x).numpy(), model(x).numpy(), atol=0.05)
  stats = lnx.stats(converted)
  assert stats["bytes"] > 0 and stats["latent_parameters"] > 0
  # Training and the .lnx round trip are exercised on the small models above: tracing a
  # training step of a 50-layer LilNetX model takes many minutes on a busy 2-core CPU.
