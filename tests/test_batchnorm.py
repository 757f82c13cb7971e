"""`lnx.batchnorm.refresh_batchnorm`: BatchNormalization statistics at the final weights, and
the converted model's `fit` that calls it at its end (the size target moves the weights to the
last step)."""

import logging
import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

import lilnetx_tf as lnx
from lilnetx_tf import batchnorm
from lilnetx_tf import errors
from lilnetx_tf import rate_control

L = tf.keras.layers
LOSS = tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True)


def _data(n=512, features=16):
  rng = np.random.default_rng(0)
  x = (3.0 + 2.0 * rng.normal(size=(n, features))).astype(np.float32)   # far from 0 / 1
  return x, (x[:, 0] > x[:, 1]).astype(np.int64)


def _model(features=16, frozen=False):
  tf.keras.utils.set_random_seed(0)
  inputs = tf.keras.Input((features,))
  hidden = L.Dense(64, use_bias=False)(inputs)
  norm = L.BatchNormalization(trainable=not frozen)
  x = L.ReLU()(norm(hidden))
  return tf.keras.Model(inputs, L.Dense(2)(x))


def _bn_inputs(model, x):
  """The BatchNormalization layer's inputs (the first Dense's outputs) on `x`."""
  return model.layers[1](x).numpy()


def test_refresh_sets_the_exact_statistics_of_the_batches():
  x, _ = _data()
  model = _model()
  norm = model.layers[2]
  before = norm.moving_mean.numpy().copy()          # zeros: nothing trained yet
  used = batchnorm.refresh_batchnorm(model, x, batch_size=512, batches=1)
  assert used == 1
  hidden = _bn_inputs(model, x)
  np.testing.assert_allclose(norm.moving_mean.numpy(), hidden.mean(0), rtol=1e-4, atol=1e-4)
  np.testing.assert_allclose(norm.moving_variance.numpy(), hidden.var(0), rtol=2e-2)
  assert np.abs(norm.moving_mean.numpy() - before).max() > 0.5
  assert norm.momentum == 0.99                       # restored


def test_refresh_averages_many_batches_and_touches_nothing_else():
  x, _ = _data()
  model = lnx.convert(_model(), compression=None)
  norm = [l for l in model.layers if isinstance(l, L.BatchNormalization)][0]
  others = {v.name: v.numpy().copy() for v in model.variables
            if v is not norm.moving_mean and v is not norm.moving_variance}
  used = batchnorm.refresh_batchnorm(model, x, batch_size=64, batches=8)   # all 512, once
  assert used == 8
  hidden = model.layers[1](x).numpy()
  np.testing.assert_allclose(norm.moving_mean.numpy(), hidden.mean(0), rtol=1e-3, atol=1e-3)
  for v in model.variables:                # LilNetX densities stepped in training mode: undone
    if v.name in others:
      np.testing.assert_array_equal(v.numpy(), others[v.name], err_msg=v.name)


def test_frozen_layers_and_models_without_batchnorm_are_left_alone():
  x, _ = _data()
  frozen = _model(frozen=True)
  norm = frozen.layers[2]
  assert batchnorm.refresh_batchnorm(frozen, x) == 0
  np.testing.assert_array_equal(norm.moving_mean.numpy(), np.zeros(64, np.float32))
  plain = tf.keras.Sequential([tf.keras.Input((16,)), L.Dense(2)])
  assert batchnorm.refresh_batchnorm(plain, x) == 0


def test_refresh_takes_a_dataset_and_rejects_other_inputs():
  x, y = _data()
  model = _model()
  dataset = tf.data.Dataset.from_tensor_slices((x, y)).batch(128)
  assert batchnorm.refresh_batchnorm(model, dataset, batches=3) == 3
  hidden = _bn_inputs(model, x[:384])
  np.testing.assert_allclose(model.layers[2].moving_mean.numpy(), hidden.mean(0), rtol=1e-3,
                             atol=1e-3)
  with pytest.raises(errors.InvalidArgumentError, match="arrays or tensors"):
    batchnorm.refresh_batchnorm(model, iter([x]))
  with pytest.raises(errors.InvalidArgumentError, match="batches"):
    batchnorm.refresh_batchnorm(model, x, batches=0)


def test_fit_inputs_drop_the_validation_split_and_refuse_generators():
  x, _ = _data(100)
  inputs, batch_size = batchnorm.fit_inputs((x,), {"validation_split": 0.2, "batch_size": 10})
  assert inputs.shape[0] == 80 and batch_size == 10
  assert batchnorm.fit_inputs((iter([x]),), {})[0] is None


@pytest.mark.parametrize("refresh_batches", [0, 8])
def test_converted_models_fit_ends_with_the_final_weights_statistics(refresh_batches):
  x, y = _data()
  model = lnx.convert(_model(), compression=None)     # the controller passed to fit instead
  model.compile(tf.keras.optimizers.Adam(1e-2), LOSS)
  controller = rate_control.RateController(12, refresh_batches=refresh_batches)
  model.fit(x, y, batch_size=64, epochs=2, verbose=0, callbacks=[controller])
  norm = [l for l in model.layers if isinstance(l, L.BatchNormalization)][0]
  exact = model.layers[1](x).numpy().mean(0)
  gap = np.abs(norm.moving_mean.numpy() - exact).max() / np.abs(exact).max()
  if refresh_batches:      # 8 batches of 64: every example once
    assert gap < 0.01, gap
  else:        # 16 steps of momentum 0.99: the moving mean is still near its start, 0
    assert gap > 0.5, gap


_MIRRORED_REFRESH = r'''
import sys
import numpy as np
import tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(
    cpu, [tf.config.LogicalDeviceConfiguration(), tf.config.LogicalDeviceConfiguration()])
import lilnetx_tf as lnx
from lilnetx_tf import batchnorm
sys.path.insert(0, sys.argv[1])
import test_batchnorm as t

x, _ = t._data()
def refreshed():   # the same model (seed 0) refreshed on the same batches
  model = lnx.convert(t._model(), compression=None, warm_start=False)
  assert batchnorm.refresh_batchnorm(model, x, batch_size=64, batches=8) == 8
  norm = [l for l in model.layers if isinstance(l, tf.keras.layers.BatchNormalization)][0]
  return norm.moving_mean.numpy()
single = refreshed()
with tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"]).scope():
  mirrored = refreshed()
print("GAP", np.abs(mirrored - single).max() / np.abs(single).max())
'''


def test_refresh_runs_in_a_distribution_strategy_scope(tmp_path):
  """In a MirroredStrategy's scope (two logical CPUs, in a subprocess: they must be set before
  TF starts) the LilNetX layers run in replica context, as in `fit`, and the statistics are
  the same exact average as on one device."""
  script = tmp_path / "refresh.py"
  script.write_text(_MIRRORED_REFRESH)
  env = dict(os.environ, PYTHONPATH=os.pathsep.join(
      [str(pathlib.Path(__file__).resolve().parents[1]), os.environ.get("PYTHONPATH", "")]))
  result = subprocess.run([sys.executable, str(script), str(pathlib.Path(__file__).parent)],
                          capture_output=True, text=True, env=env, timeout=600, check=False)
  assert result.returncode == 0, result.stderr[-3000:]
  gap = float(result.stdout.split("GAP")[-1])
  assert gap < 1e-5, gap


class _Records:
  """Collects the messages TensorFlow's logger emits."""

  def __init__(self):
    self.messages = []

  def handle(self, record):
    self.messages.append(record.getMessage())


def test_converting_and_refreshing_many_models_does_not_warn_of_retracing():
  # `convert` fits the densities and `refresh_batchnorm` runs the model in a function traced
  # once per call; TensorFlow counts traces by code, so without care a process converting a
  # few models (a tuner's search) was told "triggered tf.function retracing" each time.
  x, _ = _data(n=64)
  records = _Records()
  handler = logging.Handler()
  handler.emit = records.handle
  tf.get_logger().addHandler(handler)
  try:
    for _ in range(7):
      model = lnx.convert(_model(), compression=None)
      batchnorm.refresh_batchnorm(model, x, batch_size=32, batches=2)
  finally:
    tf.get_logger().removeHandler(handler)
  assert not [m for m in records.messages if "retracing" in m], records.messages
