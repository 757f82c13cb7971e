"""`lnx.monitor` (attached by `lnx.convert`): task loss, penalties and rate as Keras metrics, and
the `PenaltyGuard` callback that warns when the penalties take over."""

import warnings

import numpy as np
import pytest
import tensorflow as tf

import lilnetx_tf as lnx
from lilnetx_tf import errors

LOSS = tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True)


def _data(n=256):
  rng = np.random.default_rng(0)
  x = rng.normal(size=(n, 12)).astype(np.float32)
  return x, (x[:, 0] + x[:, 1] > 0).astype(np.int64)


def _converted(**kwargs):
  kwargs.setdefault("compression", None)   # fixed penalty weights (test_rate_control: a target)
  tf.keras.utils.set_random_seed(0)
  model = tf.keras.Sequential([tf.keras.Input((12,)), tf.keras.layers.Dense(16, activation="relu"),
                               tf.keras.layers.Dense(2)])
  converted = lnx.convert(model, **kwargs)
  converted.compile(tf.keras.optimizers.Adam(1e-2), LOSS, metrics=["accuracy"])
  return converted


def _fit(model, x, y, **kwargs):
  with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    history = model.fit(x, y, batch_size=32, verbose=0, **kwargs)
  return history, [str(w.message) for w in caught if issubclass(w.category, UserWarning)]


def test_fit_and_evaluate_log_task_loss_penalty_and_rate():
  x, y = _data()
  model = _converted()
  history, _ = _fit(model, x, y, epochs=2, validation_split=0.25,
                    callbacks=[tf.keras.callbacks.EarlyStopping(monitor="val_task_loss")])
  logs = history.history
  for name in ("task_loss", "lnx_penalty", "lnx_bits_dense", "lnx_pred_majority",
               "lnx_label_majority"):
    assert name in logs and "val_" + name in logs
  # loss = task loss + penalties, epoch by epoch.
  np.testing.assert_allclose(logs["loss"], np.add(logs["task_loss"], logs["lnx_penalty"]),
                             rtol=1e-4)
  np.testing.assert_allclose(logs["val_loss"],
                             np.add(logs["val_task_loss"], logs["val_lnx_penalty"]), rtol=1e-4)
  assert all(p > 0 for p in logs["lnx_penalty"]) and all(b > 0 for b in logs["lnx_bits_dense"])
  results = model.evaluate(x, y, verbose=0, return_dict=True)
  assert results["loss"] == pytest.approx(results["task_loss"] + results["lnx_penalty"], rel=1e-4)
  # The task loss is the compiled loss alone.
  assert results["task_loss"] == pytest.approx(float(LOSS(y, model.predict(x, verbose=0))),
                                               rel=1e-4)


@pytest.mark.parametrize("labels", ["int64", "float32"])
def test_one_sigmoid_unit_with_integer_or_float_labels(labels):
  x, y = _data()
  tf.keras.utils.set_random_seed(0)
  model = lnx.convert(tf.keras.Sequential([
      tf.keras.Input((12,)), tf.keras.layers.Dense(1, activation="sigmoid")]))
  model.compile("adam", "binary_crossentropy")
  history, _ = _fit(model, x, y.astype(labels), epochs=1)
  assert history.history["lnx_label_majority"][0] == pytest.approx(
      max(np.mean(y), 1 - np.mean(y)), abs=0.1)


def test_monitored_model_trains_under_xla_with_the_same_metrics():
  """The class-share metrics compile under `jit_compile=True` (a data-sized `bincount` did not:
  XLA needs a static output length) and give what the model computes without XLA."""
  x, y = _data()
  logs = {}
  for jit in (False, True):
    model = _converted()
    model.compile(tf.keras.optimizers.Adam(1e-2), LOSS, jit_compile=jit)
    logs[jit] = model.evaluate(x, y, batch_size=64, verbose=0, return_dict=True)
    history, _ = _fit(model, x, y, epochs=1)
    assert np.isfinite(history.history["loss"][0])
  for name in ("lnx_pred_majority", "lnx_label_majority"):
    assert logs[True][name] == pytest.approx(logs[False][name], abs=1e-6)
  assert logs[True]["lnx_label_majority"] == pytest.approx(
      np.mean([max(np.mean(y[i:i + 64]), 1 - np.mean(y[i:i + 64])) for i in range(0, 256, 64)]))


def test_guard_warns_when_penalties_dominate_and_names_the_knob():
  x, y = _data()
  model = _converted(rate_weight=50.0)
  _, messages = _fit(model, x, y, epochs=1)
  assert any("penalties" in m and "rate_weight" in m for m in messages), messages


def test_guard_warns_when_predictions_collapse():
  x, y = _data()
  y = np.where(np.arange(len(y)) % 4 == 0, 1, 0)      # 25 % positives
  model = _converted()
  # A loss that rewards predicting class 0 for everything, whatever the labels say.
  model.compile(tf.keras.optimizers.Adam(0.05),
                lambda y_true, logits: LOSS(tf.zeros_like(y_true), logits))
  _, messages = _fit(model, x, y, epochs=3)
  assert any("collapsed" in m for m in messages), messages


@pytest.mark.parametrize("loss", ["poisson", tf.keras.losses.MeanSquaredError()])
def test_guard_is_quiet_on_a_count_regression(loss):
  """A softplus unit predicting counts is positive everywhere: taken as a one-unit classifier,
  every prediction was "class 1" against ~60 % of the labels, and the guard warned of a
  collapse. Keras's regression losses have no classes."""
  x, _ = _data()
  counts = np.random.default_rng(1).poisson(1.0, len(x)).astype(np.float32)
  tf.keras.utils.set_random_seed(0)
  model = lnx.convert(tf.keras.Sequential([
      tf.keras.Input((12,)), tf.keras.layers.Dense(8, activation="relu"),
      tf.keras.layers.Dense(1, activation="softplus")]), compression=None)
  model.compile("adam", loss)
  _, messages = _fit(model, x, counts, epochs=1)
  assert not [m for m in messages if "collapsed" in m], messages


def test_guard_is_quiet_on_healthy_training():
  x, y = _data()
  model = _converted()
  history, messages = _fit(model, x, y, epochs=3)
  assert not [m for m in messages if "LilNetX penalties" in m or "collapsed" in m], messages
  assert history.history["accuracy"][-1] > 0.8


def test_monitor_hand_built_model_and_rejects_non_models():
  x, y = _data(64)
  model = tf.keras.Sequential([tf.keras.Input((12,)), lnx.Dense(2)])
  assert lnx.monitor(lnx.monitor(model)) is model
  model.compile("adam", LOSS)
  history = model.fit(x, y, epochs=1, verbose=0)
  assert {"task_loss", "lnx_penalty"} <= set(history.history)
  with pytest.raises(errors.InvalidArgumentError):
    lnx.monitor(lnx.Dense(2))


@pytest.mark.parametrize("argument", ["factor", "collapse_share", "label_share"])
def test_guard_rejects_bad_arguments(argument):
  with pytest.raises(errors.InvalidArgumentError, match=argument):
    lnx.callbacks.PenaltyGuard(**{argument: -1.0})


def _guard_messages(epochs):
  guard = lnx.callbacks.PenaltyGuard()
  with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    guard.on_train_begin()
    for epoch, logs in enumerate(epochs):
      guard.on_epoch_end(epoch, logs)
  return [str(w.message) for w in caught]


def test_guard_measures_penalties_against_the_task_loss_scale():
  """A task loss that falls to ~0 because the task is learned is no reason to warn; one that is
  tiny from the start (a loss scaled by class weights of 1/count) is."""
  learned = [dict(task_loss=0.7, lnx_penalty=0.2), dict(task_loss=0.005, lnx_penalty=0.2)]
  assert _guard_messages(learned) == []
  scaled = [dict(task_loss=1e-3, lnx_penalty=0.25), dict(task_loss=1e-3, lnx_penalty=0.2)]
  messages = _guard_messages(scaled)
  assert len(messages) == 1 and "250×" in messages[0] and "rate_weight" in messages[0]
