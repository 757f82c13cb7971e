"""The size target of `lnx.convert` (`compression`), its `RateController`, and the automatic
warm-start grid for layers that are still their initializer's draw."""

import warnings

import numpy as np
import pytest
import tensorflow as tf

import lilnetx_tf as lnx
from lilnetx_tf import errors
from lilnetx_tf import rate_control
from lilnetx_tf import untrained
from lilnetx_tf.convert import latent_pace

L = tf.keras.layers
LOSS = tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True)


def _data(n=1024, features=32):
  rng = np.random.default_rng(0)
  x = rng.normal(size=(n, features)).astype(np.float32)
  return x, (x[:, 0] + x[:, 1] - x[:, 2] > 0).astype(np.int64)


def _plain(features=32):
  tf.keras.utils.set_random_seed(0)
  return tf.keras.Sequential([tf.keras.Input((features,)), L.Dense(64, activation="relu"),
                              L.Dense(2)])


def _fit(model, x, y, epochs, **kwargs):
  model.compile(tf.keras.optimizers.Adam(1e-3), LOSS, metrics=["accuracy"])
  with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    history = model.fit(x, y, batch_size=32, epochs=epochs, verbose=0, **kwargs)
  return history, [str(w.message) for w in caught if issubclass(w.category, UserWarning)]


def test_controller_brings_the_latents_to_the_target_in_a_few_hundred_steps():
  x, y = _data()
  # A fine warm start (~5 bits per latent) far above the target of compression 20; the
  # penalty cap loosened so that the task's small loss does not slow the approach.
  model = lnx.convert(_plain(), compression=None, warm_start_resolution=0.1)
  controller = rate_control.RateController(compression=20, max_penalty_ratio=100)
  start = rate_control.latent_bits(model)
  _fit(model, x, y, epochs=8, callbacks=[controller])   # 256 steps
  target = controller.budget.target_bits
  final = rate_control.latent_bits(model)
  assert start > 3 * target, (start, target)
  assert final < 1.3 * target, (final, target)
  # The same model without a target keeps far more bits.
  free = lnx.convert(_plain(), compression=None, warm_start_resolution=0.1)
  _fit(free, x, y, epochs=8)
  assert rate_control.latent_bits(free) > 2 * final


@pytest.mark.parametrize("run_eagerly", [False, True])
def test_controller_measures_the_exact_bits_of_the_model_it_trains(run_eagerly):
  """The controller's measurement (traced once per fit, eager for an eager model) is
  `latent_bits`, and follows the weights as they change."""
  x, y = _data(256)
  model = lnx.convert(_plain())
  model.compile(tf.keras.optimizers.Adam(1e-2), LOSS, run_eagerly=run_eagerly)
  model.fit(x, y, batch_size=16, epochs=1, verbose=0)    # 16 steps: measured at step 10
  controller = model._lilnetx_rate_controller
  assert controller.last_bits is not None
  first = controller._latent_bits()
  assert first == pytest.approx(rate_control.latent_bits(model), rel=1e-5)
  measure = controller._latent_bits
  model.fit(x, y, batch_size=16, epochs=1, verbose=0)
  assert controller._latent_bits is measure    # one trace for the fits of one model
  assert controller._latent_bits() != first
  assert controller._latent_bits() == pytest.approx(rate_control.latent_bits(model), rel=1e-5)


def test_convert_defaults_learn_a_small_task_and_hold_the_target():
  x, y = _data()
  plain, _ = _fit(_plain(), x, y, epochs=6, validation_split=0.25)
  model = lnx.convert(_plain())
  history, _ = _fit(model, x, y, epochs=6, validation_split=0.25)
  accuracy = history.history["val_accuracy"][-1]
  assert accuracy > 0.75 and accuracy > plain.history["val_accuracy"][-1] - 0.06
  for name in ("lnx_rate_scale", "lnx_target_ratio"):
    assert name in history.history
  controller = model._lilnetx_rate_controller
  assert rate_control.latent_bits(model) < 1.5 * controller.budget.target_bits


def test_size_budget_counts_the_floats_and_warns_when_they_dominate():
  inputs = tf.keras.Input((16,), dtype="int32")
  x = L.GlobalAveragePooling1D()(L.Embedding(5000, 32)(inputs))   # 160,000 floats, kept
  model = tf.keras.Model(inputs, L.Dense(2)(L.Dense(64, activation="relu")(x)))
  converted = lnx.convert(model, layers=lambda layer: not isinstance(layer, L.Embedding))
  budget = rate_control.size_budget(converted, 12)
  assert budget.latents == 32 * 64 + 64 * 2
  assert budget.parameters == model.count_params()     # a converted kernel at its plain size
  assert budget.float_bytes >= 2 * 5000 * 32 and budget.floats_dominate
  assert budget.target_bits == pytest.approx(8 * budget.latents / 12)   # the latents' floor
  tokens = np.random.default_rng(0).integers(0, 5000, (64, 16))
  _, caught = _fit(converted, tokens, np.zeros(64, np.int64), epochs=1)
  assert any("take more than half of the target" in m for m in caught), caught


def test_a_penalty_schedule_passed_to_fit_replaces_the_controller_with_a_warning():
  x, y = _data(256)
  model = lnx.convert(_plain())
  _, caught = _fit(model, x, y, epochs=1, callbacks=[lnx.callbacks.PenaltyWarmup(4)])
  assert any("size target" in m and "not held" in m for m in caught), caught
  assert model._lilnetx_rate_controller.last_bits is None     # it never ran


@pytest.mark.parametrize("value", [0, -1, 0.5, "10", float("nan"), True])
def test_compression_must_be_a_number_at_least_one(value):
  with pytest.raises(errors.InvalidArgumentError, match="compression"):
    lnx.convert(_plain(), compression=value)


@pytest.mark.parametrize("value", ["coarse", 0, -0.1, None])
def test_warm_start_resolution_is_a_positive_number_or_auto(value):
  with pytest.raises(errors.InvalidArgumentError, match="warm_start_resolution"):
    lnx.convert(_plain(), warm_start_resolution=value)


@pytest.mark.parametrize("kwargs", [dict(interval=0), dict(gain=0), dict(ramp=1.5),
                                    dict(initial_scale=-1), dict(min_scale=2.0),
                                    dict(max_scale=0.5), dict(proportional="1")])
def test_controller_rejects_bad_arguments(kwargs):
  with pytest.raises(errors.InvalidArgumentError):
    rate_control.RateController(**kwargs)


def test_controller_config_round_trips():
  controller = rate_control.RateController(compression=25, interval=5, gain=0.2, ramp=0.5,
                                           initial_scale=3.0)
  config = controller.get_config()
  again = rate_control.RateController.from_config(config)
  assert again.get_config() == config and config["compression"] == 25.0


def test_controller_update_moves_the_factor_toward_the_target():
  controller = rate_control.RateController(compression=10, initial_scale=1.0, ramp=0.0)
  controller.budget = rate_control.SizeBudget(10_000, 10_000, 0, 0, 10)   # 8,000 bits
  controller._start = (0, 8_000)
  up = controller.update(16_000, step=10)
  assert up > 1.0
  down = controller.update(4_000, step=20)
  assert down < up
  for _ in range(200):      # far below the target for long: the factor relaxes to its floor
    low = controller.update(100, step=30)
  assert low == pytest.approx(controller.min_scale)


def test_untrained_kernels_are_recognized():
  layer = L.Dense(64)
  layer.build((None, 784))
  kernel = layer.kernel.numpy()
  assert untrained.is_untrained(layer, kernel) is True
  assert untrained.is_untrained(layer, 1.3 * kernel) is False       # rescaled: not the draw
  assert untrained.is_untrained(layer, np.sign(kernel) * np.abs(kernel) ** 0.8) is False
  small = L.Dense(4)
  small.build((None, 8))
  assert untrained.is_untrained(small, small.kernel.numpy()) is None   # too few values


@pytest.mark.parametrize("make, shape", [
    (lambda: L.Dense(32), (None, 32)),                         # 1,024 values
    (lambda: L.Conv2D(8, 3, kernel_initializer="he_normal"), (None, 8, 8, 16)),   # 1,152
])
def test_fresh_kernels_of_a_thousand_values_are_untrained(make, shape):
  """Against one draw of their own size at a flat KS distance of 0.05, 13-19 % of such fresh
  kernels were taken as trained (a fine, ~5-bit start that the size target then crushed)."""
  verdicts = []
  for seed in range(40):
    tf.keras.utils.set_random_seed(seed)
    layer = make()
    layer.build(shape)
    verdicts.append(untrained.is_untrained(layer, layer.kernel.numpy()))
  assert verdicts == [True] * 40


def test_auto_warm_start_is_coarse_for_untrained_and_fine_for_trained_models():
  x, y = _data()
  fresh = _plain()
  coarse = lnx.convert(fresh)
  step = float(coarse.layers[0].group.decoder_matrix().numpy())   # the grid, weight units
  rms = float(np.sqrt(np.mean(np.square(fresh.layers[0].kernel.numpy()))))
  assert step > 1.0 * rms       # the untrained grid
  trained = _plain()
  trained.compile(tf.keras.optimizers.Adam(1e-2), LOSS)
  trained.fit(x, y, epochs=3, batch_size=32, verbose=0)
  fine = lnx.convert(trained)
  rms = min(float(np.sqrt(np.mean(np.square(l.kernel.numpy())))) for l in trained.layers)
  assert float(fine.layers[0].group.latent_step.numpy()) == pytest.approx(
      untrained.TRAINED_RESOLUTION * rms, rel=1e-4)
  expected, actual = trained(x[:64]).numpy(), fine(x[:64]).numpy()
  assert np.abs(actual - expected).max() < 0.05 * np.abs(expected).max()


def test_auto_warm_start_keeps_a_one_weight_layer():
  """A one-weight layer (here a Dense(1) on one feature, as on a cosine similarity) sets the
  smallest RMS, and the untrained grid at 3× it rounded it to zero: the model's output no longer
  depended on its input. Every layer keeps its largest weight."""
  tf.keras.utils.set_random_seed(0)
  model = tf.keras.Sequential([
      tf.keras.Input((32,)), L.Dense(64, activation="relu"), L.Dense(1, name="squeeze"),
      L.Dense(1, kernel_initializer=tf.keras.initializers.Constant(0.01), name="head")])
  converted = lnx.convert(model)
  for layer in lnx.layers.lilnetx_layers(converted):
    assert np.any(layer.integer_latent.numpy() != 0), layer.name
  x, _ = _data(64)
  assert np.std(converted.predict(x, verbose=0)) > 0


def test_coarse_warm_start_grid_moves_its_latents_at_the_pace_of_plain_weights():
  fresh = _plain()
  kernel = fresh.layers[0].kernel.numpy()
  model = lnx.convert(fresh)
  layer = model.layers[0]
  rms = float(np.sqrt(np.mean(np.square(kernel))))
  grid = float(layer.group.decoder_matrix().numpy())      # Ψ: the rounding step in weight units
  assert grid > 2.0 * rms                                   # the untrained grid
  assert latent_pace(grid / rms) == pytest.approx(grid / rms) and latent_pace(0.1) == 1.0
  # The start is the kernel on the grid, whatever the units of the latent variable.
  np.testing.assert_allclose(layer.decode_kernel(layer.integer_latent).numpy(),
                             grid * np.round(kernel / grid), atol=1e-6)
  # One Adam step (~lr in each variable) moves a latent by lr / RMS grid steps, as it moves a
  # plain weight by lr / RMS of its RMS (with the latent in weight units: lr / grid, 3× less).
  before = layer.latent.numpy()
  x, y = _data(64)
  model.compile(tf.keras.optimizers.Adam(1e-3), LOSS)
  model.fit(x, y, batch_size=64, epochs=1, verbose=0)
  moved = np.abs(layer.latent.numpy() - before)
  assert np.median(moved[moved > 0]) == pytest.approx(1e-3 / rms, rel=0.02)
  fine = lnx.convert(fresh, warm_start_resolution=0.1)   # a fine grid keeps the optimizer's
  assert float(fine.layers[0].group.decoder.numpy()) == 0.0   # step: Ψ = s·exp(0)


def test_sgd_moves_coarse_grid_latents_at_pace_one():
  """SGD's step grows with the variable's unit, so paced latents would move pace² times faster:
  its first fit re-expresses them at pace 1, leaving the decoded weights as they are."""
  model = lnx.convert(_plain())
  layer = model.layers[0]
  group = layer.group
  grid = float(group.decoder_matrix().numpy())
  decoded = layer.decode_kernel(layer.integer_latent).numpy()
  assert group.pace > 2.0 and float(group.latent_step.numpy()) < grid / 2
  group.set_pace(1.0)
  assert float(group.latent_step.numpy()) == pytest.approx(grid, rel=1e-6)
  assert float(group.decoder.numpy()) == pytest.approx(0.0, abs=1e-6)
  np.testing.assert_allclose(layer.decode_kernel(layer.integer_latent).numpy(), decoded,
                             atol=1e-6)
  paced = lnx.convert(_plain())
  x, y = _data(64)
  paced.compile(tf.keras.optimizers.SGD(1e-3, momentum=0.9), LOSS)
  paced.fit(x, y, batch_size=64, epochs=1, verbose=0)
  assert paced.layers[0].group.pace == 1.0
  assert float(paced.layers[0].group.latent_step.numpy()) == pytest.approx(grid, rel=1e-6)
  adam = lnx.convert(_plain())          # Adam keeps the pace (the test above measures it)
  adam.compile(tf.keras.optimizers.Adam(1e-3), LOSS)
  adam.fit(x, y, batch_size=64, epochs=1, verbose=0)
  kept = adam.layers[0].group
  assert kept.pace > 2.0
  assert kept.pace * float(kept.latent_step.numpy()) == pytest.approx(grid, rel=1e-6)


def test_a_paced_matrix_decoder_keeps_its_variable_at_identity():
  """Ψ = s·pace·D: the pace is not in D, so Adam changes D as fast relative to its size as at
  pace 1 (D = pace·I would learn pace times slower)."""
  tf.keras.utils.set_random_seed(0)
  fresh = tf.keras.Sequential([L.Input((12, 12, 8)), L.Conv2D(16, 3), L.Flatten(), L.Dense(2)])
  layer = lnx.convert(fresh).layers[0]
  group = layer.group
  assert group.pace > 2.0
  np.testing.assert_array_equal(group.decoder.numpy(), np.eye(9))
  grid = group.pace * float(group.latent_step.numpy())
  np.testing.assert_allclose(group.decoder_matrix().numpy(), grid * np.eye(9), rtol=1e-6)
  kernel = fresh.layers[0].kernel.numpy()
  np.testing.assert_allclose(layer.decode_kernel(layer.integer_latent).numpy(),
                             grid * np.round(kernel / grid), atol=1e-6)
  decoded = layer.decode_kernel(layer.integer_latent).numpy()
  group.set_pace(1.0)
  np.testing.assert_array_equal(group.decoder.numpy(), np.eye(9))
  np.testing.assert_allclose(layer.decode_kernel(layer.integer_latent).numpy(), decoded,
                             atol=1e-6)


def test_latent_pace_survives_saving_so_a_loaded_model_moves_at_pace_one_under_sgd(tmp_path):
  model = lnx.convert(_plain())
  pace = model.layers[0].group.pace
  assert pace > 2.0 and model.layers[0].get_config()["latent_pace"] == pace
  path = str(tmp_path / "paced.keras")
  model.save(path)
  loaded = tf.keras.models.load_model(path)
  group = loaded.layers[0].group
  assert group.pace == pytest.approx(pace)
  grid = float(group.decoder_matrix().numpy())
  x, y = _data(64)
  lnx.monitor(loaded).compile(tf.keras.optimizers.SGD(1e-3, momentum=0.9), LOSS)
  loaded.fit(x, y, batch_size=64, epochs=1, verbose=0)
  assert group.pace == 1.0
  assert float(group.latent_step.numpy()) == pytest.approx(grid, rel=1e-6)
  for bad in (0.0, 0.5, 1e300):     # a file's config could say anything
    with pytest.raises(errors.InvalidArgumentError, match="latent_pace"):
      lnx.Dense(4, latent_pace=bad)


def test_guard_still_warns_when_even_the_lowest_factor_dominates_a_tiny_loss():
  x, y = _data(512)
  model = lnx.convert(_plain())
  model.compile(tf.keras.optimizers.Adam(1e-3),
                lambda y_true, y_pred: 1e-7 * LOSS(y_true, y_pred))   # e.g. 1/count weights
  with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    model.fit(x, y, batch_size=32, epochs=3, verbose=0)
  messages = [str(w.message) for w in caught if issubclass(w.category, UserWarning)]
  controller = model._lilnetx_rate_controller
  assert controller.scale < 0.1       # the controller backed off ...
  assert any("penalties" in m and "compression" in m for m in messages), messages   # ... not enough


def test_penalty_cap_follows_the_task_loss_down_to_a_tenth_of_its_first_value():
  controller = rate_control.RateController(max_penalty_ratio=3)
  assert controller.excess(None, 1.0) is None and controller.excess(0.1, 0.0) is None
  assert controller.excess(6.0, 1.0) == pytest.approx(2.0)      # first: the loss's scale
  assert controller.excess(0.3, 0.5) == pytest.approx(0.2)      # follows the task loss ...
  # ... but a solved task (loss ~0) does not forbid the penalties the size target needs.
  assert controller.excess(0.15, 1e-6) == pytest.approx(0.5)
  assert controller.excess(0.6, 1e-6) > 1


def test_controller_reaches_the_target_on_a_task_it_solves():
  x, _ = _data()
  x[:, 0] += 2 * np.sign(x[:, 0])     # a wide margin: the task loss falls to ~1e-4
  y = (x[:, 0] > 0).astype(np.int64)
  model = lnx.convert(_plain(), compression=30)
  model.compile(tf.keras.optimizers.Adam(1e-2), LOSS)
  history = model.fit(x, y, batch_size=32, epochs=8, verbose=0)
  assert history.history["task_loss"][-1] < 1e-3
  # Measured: with the cap at 3 x the task loss alone, the factor fell to 0.04 and the latents
  # stayed at 1.5x the target.
  target = model._lilnetx_rate_controller.budget.target_bits
  assert rate_control.latent_bits(model) < target


def test_penalty_cap_acts_from_the_first_step_on_a_tiny_task_loss():
  x, y = _data(256)
  model = lnx.convert(_plain())
  model.compile(tf.keras.optimizers.Adam(1e-3),
                lambda y_true, y_pred: 1e-4 * LOSS(y_true, y_pred))   # e.g. 1/count weights
  with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    model.fit(x[:160], y[:160], batch_size=32, epochs=1, verbose=0)   # 5 steps < interval
  controller = model._lilnetx_rate_controller
  assert controller.interval > 5
  # The penalties at factor 1 dwarf this loss: the cap cuts the factor at once, before the
  # first measurement of the bits (which comes only after `interval` steps).
  assert controller.scale < 0.01, controller.scale
  assert controller.last_bits is None
