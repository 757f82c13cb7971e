"""lnx.optimizers: steps on the latents scaled by `latent_lr_multiplier`, all else untouched."""

import os

import numpy as np
import pytest
import tensorflow as tf

import lilnetx_tf as lnx


def _model(optimizer):
  inputs = tf.keras.Input((6, 6, 2))
  x = lnx.Conv2D(3, 3, activation="relu")(inputs)
  x = tf.keras.layers.BatchNormalization()(x)
  x = tf.keras.layers.Flatten()(x)
  x = lnx.Dense(4, activation="relu")(x)
  model = tf.keras.Model(inputs, tf.keras.layers.Dense(2)(x))
  model.compile(optimizer, tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True))
  return model


def _steps(optimizer) -> dict:
  """Variable name → change after one training step from a fixed start."""
  tf.keras.backend.clear_session()  # same layer names, so the same rate noise
  tf.keras.utils.set_random_seed(3)
  model = _model(optimizer)
  rng = np.random.default_rng(0)
  x, y = rng.random((16, 6, 6, 2), dtype=np.float32), rng.integers(0, 2, 16)
  before = [v.numpy() for v in model.trainable_variables]
  model.fit(x, y, batch_size=16, epochs=1, shuffle=False, verbose=0)
  return {v.name.split("/", 1)[-1] + str(i): v.numpy() - b
          for i, (v, b) in enumerate(zip(model.trainable_variables, before))}


@pytest.mark.parametrize("ours, keras", [
    (lambda m: lnx.optimizers.Adam(1e-2, latent_lr_multiplier=m),
     lambda: tf.keras.optimizers.Adam(1e-2)),
    (lambda m: lnx.optimizers.SGD(1e-1, latent_lr_multiplier=m),
     lambda: tf.keras.optimizers.SGD(1e-1)),
])
def test_latent_steps_are_scaled_and_the_rest_unchanged(ours, keras):
  reference, scaled = _steps(keras()), _steps(ours(2.5))
  latents = [name for name in reference if name.startswith("kernel_latent")]
  assert len(latents) == 2
  for name, step in reference.items():
    factor = 2.5 if name in latents else 1.0
    assert np.abs(step).max() > 0, name
    np.testing.assert_allclose(scaled[name], factor * step, rtol=1e-5, atol=1e-6, err_msg=name)


def test_multiplier_one_is_the_keras_optimizer():
  reference, same = _steps(tf.keras.optimizers.Adam(1e-2)), _steps(lnx.optimizers.Adam(1e-2))
  for name in reference:
    np.testing.assert_array_equal(same[name], reference[name])


def test_one_step_is_exactly_scaled():
  variable = tf.Variable(np.zeros((2, 3, 9), np.float32), name="kernel_latent")
  other = tf.Variable(np.zeros(3, np.float32), name="bias")
  gradients = [tf.constant(np.full((2, 3, 9), 0.5, np.float32)), tf.constant([1.0, -2.0, 3.0])]
  optimizer = lnx.optimizers.Adam(1e-2, latent_lr_multiplier=4.0)
  optimizer.apply_gradients(zip(gradients, [variable, other]))
  np.testing.assert_allclose(variable.numpy(), -4e-2, rtol=1e-4)
  np.testing.assert_allclose(other.numpy(), [-1e-2, 1e-2, -1e-2], rtol=1e-4)


def test_is_latent_variable():
  model = _model("adam")
  names = {v.name: lnx.optimizers.is_latent_variable(v) for v in model.trainable_variables}
  assert sum(names.values()) == 2
  assert all(name.endswith("kernel_latent:0") for name, latent in names.items() if latent)


def test_saved_with_the_model_and_restored(tmp_path):
  model = _model(lnx.optimizers.Adam(1e-2, latent_lr_multiplier=3.0))
  path = os.path.join(tmp_path, "model.keras")
  model.save(path)
  restored = tf.keras.models.load_model(path)
  assert isinstance(restored.optimizer, lnx.optimizers.Adam)
  assert restored.optimizer.latent_lr_multiplier == 3.0
  config = lnx.optimizers.SGD(0.1, momentum=0.9, latent_lr_multiplier=2.0).get_config()
  assert lnx.optimizers.SGD.from_config(config).latent_lr_multiplier == 2.0


@pytest.mark.parametrize("multiplier", [0.0, -1.0, float("inf"), float("nan"), "fast", "2", True])
def test_bad_multiplier(multiplier):
  with pytest.raises(lnx.errors.InvalidArgumentError, match="latent_lr_multiplier"):
    lnx.optimizers.Adam(1e-3, latent_lr_multiplier=multiplier)
