"""A model converted under Keras's `mixed_float16` policy: the layers compute in float16, the
latents, decoders, densities and penalties stay float32, loss scaling leaves the LilNetX
objective as it is in float32, and the file round trip is exact."""

import warnings

import numpy as np
import pytest
import tensorflow as tf

import lilnetx_tf as lnx

L = tf.keras.layers
LOSS = tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True)
FLOAT16_MAX = 65504.0


@pytest.fixture
def mixed():
  tf.keras.mixed_precision.set_global_policy("mixed_float16")
  yield
  tf.keras.mixed_precision.set_global_policy("float32")


def _data(n=512):
  """Four classes from the means of two image quarters."""
  rng = np.random.default_rng(0)
  x = rng.random((n, 12, 12, 1), dtype=np.float32)
  y = ((x[:, :6, :6, 0].mean((1, 2)) > 0.5).astype(np.int64)
       + 2 * (x[:, 6:, 6:, 0].mean((1, 2)) > 0.5))
  return x, y


def _converted(policy: str) -> tf.keras.Model:
  """A small CNN built and converted under `policy` (float32 output, as Keras's guide says),
  with enough dense latents that its bits exceed float16's largest value."""
  previous = tf.keras.mixed_precision.global_policy()
  tf.keras.mixed_precision.set_global_policy(policy)
  try:
    tf.keras.utils.set_random_seed(0)
    inputs = tf.keras.Input((12, 12, 1))
    x = L.Conv2D(8, 3, strides=2, padding="same", activation="relu", name="conv")(inputs)
    x = L.BatchNormalization()(x)   # float16 compute on float32 statistics, refreshed by `fit`
    x = L.Dense(400, activation="relu", name="hidden")(L.Flatten()(x))
    outputs = L.Activation("linear", dtype="float32")(L.Dense(4, name="logits")(x))
    model = lnx.convert(tf.keras.Model(inputs, outputs))
    model.compile(tf.keras.optimizers.Adam(1e-3), LOSS)
    return model
  finally:
    tf.keras.mixed_precision.set_global_policy(previous)


def _fit(model, x, y, epochs=3):
  with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    return model.fit(x, y, batch_size=32, epochs=epochs, verbose=0).history


def test_layers_compute_in_float16_and_the_objective_stays_float32(mixed):
  model = _converted("mixed_float16")
  layers = lnx.layers.lilnetx_layers(model)
  assert [layer.compute_dtype for layer in layers] == ["float16"] * 3
  for layer in layers:
    assert layer.latent_variable.dtype == tf.float32
    assert all(v.dtype == tf.float32 for v in layer.group.weights if v.dtype.is_floating)
    assert layer._decoded_kernel().dtype == tf.float16   # only what the matmul / conv reads
  model(_data(8)[0], training=False)
  assert model.losses and all(term.dtype == tf.float32 for term in model.losses)


def test_penalties_and_bits_match_the_float32_twin_beyond_float16_range(mixed):
  """Same weights, either policy: the same penalties and bits (which a float16 computation
  would turn into inf above 65,504)."""
  x, y = _data()
  models = {p: _converted(p) for p in ("float32", "mixed_float16")}
  models["float32"].set_weights(models["mixed_float16"].get_weights())
  results = {p: m.evaluate(x, y, verbose=0, return_dict=True) for p, m in models.items()}
  bits = results["mixed_float16"]["lnx_bits_dense"]
  assert np.isfinite(bits) and bits > FLOAT16_MAX
  for name in ("lnx_bits_dense", "lnx_bits_conv3x3", "lnx_penalty"):
    assert results["mixed_float16"][name] == pytest.approx(results["float32"][name], rel=1e-6)
  assert results["mixed_float16"]["task_loss"] == pytest.approx(
      results["float32"]["task_loss"], rel=1e-2)


def test_training_with_loss_scaling_follows_the_float32_twin(mixed):
  """`compile` wraps the optimizer in a LossScaleOptimizer; the scaled, then unscaled,
  gradients of the float32 penalties train the latents as in float32: the task loss falls,
  and penalties, bits and the size controller's factor track the float32 run."""
  x, y = _data()
  logs = {p: _fit(_converted(p), x, y) for p in ("float32", "mixed_float16")}
  model = _converted("mixed_float16")
  assert isinstance(model.optimizer, tf.keras.mixed_precision.LossScaleOptimizer)
  mixed_logs = logs["mixed_float16"]
  assert mixed_logs["task_loss"][-1] < 0.5 * mixed_logs["task_loss"][0]
  np.testing.assert_allclose(mixed_logs["loss"],
                             np.add(mixed_logs["task_loss"], mixed_logs["lnx_penalty"]), rtol=1e-4)
  for name in ("lnx_penalty", "lnx_bits_dense", "lnx_rate_scale"):
    assert all(v > 0 for v in mixed_logs[name])
    np.testing.assert_allclose(mixed_logs[name], logs["float32"][name], rtol=0.02, err_msg=name)
  np.testing.assert_allclose(mixed_logs["task_loss"], logs["float32"]["task_loss"], rtol=0.05)


def test_loss_scale_stays_and_latent_steps_keep_their_multiplier(mixed):
  """`lnx.optimizers` inside the LossScaleOptimizer: no step skipped for overflow (the scale
  stays at its start), and the latents move `latent_lr_multiplier` times as far."""
  x, y = _data(64)
  moves, scales = {}, []
  for multiplier in (1.0, 3.0):
    model = _converted("mixed_float16")
    model.compile(lnx.optimizers.Adam(1e-3, latent_lr_multiplier=multiplier), LOSS)
    hidden = model.get_layer("hidden")
    before = hidden.latent_variable.numpy()
    model.fit(x, y, batch_size=64, epochs=1, verbose=0)
    moves[multiplier] = hidden.latent_variable.numpy() - before
    scales.append(float(model.optimizer.loss_scale))
  assert scales == [2.0 ** 15] * 2
  moved = moves[1.0] != 0
  assert moved.mean() > 0.9
  np.testing.assert_allclose(moves[3.0][moved], 3 * moves[1.0][moved], rtol=1e-3)


def test_file_round_trip_is_exact_and_keeps_float16_compute(mixed, tmp_path):
  """Decompressed where the global policy is float32 (another process): the layers still
  compute in float16 and the outputs are bit-identical; export gives a float32 slim model."""
  x, y = _data()
  model = _converted("mixed_float16")
  _fit(model, x, y, epochs=1)
  path = str(tmp_path / "m.lnx")
  lnx.compress(model, path)   # lossless floats: the round trip must be exact
  tf.keras.mixed_precision.set_global_policy("float32")
  restored = lnx.decompress(path)
  assert restored.get_layer("hidden").compute_dtype == "float16"
  np.testing.assert_array_equal(restored.predict(x, verbose=0), model.predict(x, verbose=0))
  report = lnx.export(model, str(tmp_path / "e"), formats=("tflite",), inputs=[x[:4]],
                      compare_dense=False)
  assert report.tflite_max_difference <= 1e-4 * max(1.0, report.output_scale)
