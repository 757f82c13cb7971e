"""The LilNetX objective: the terms in model.losses, the rate and slice terms, the density's own
Adam step, optimizers, and rejection of bad λ values."""

import math

import numpy as np
import pytest
import tensorflow as tf

import lilnetx_tf as lnx
from lilnetx_tf import errors
from lilnetx_tf.layers import bits_table
from lilnetx_tf.layers import group as group_lib
from lilnetx_tf.layers import noise as noise_lib

LOSS = tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True)


def _model(**lnx_kwargs):
  return tf.keras.Sequential([
      tf.keras.Input((8, 8, 3)),
      lnx.Conv2D(4, 3, activation="relu", **lnx_kwargs),
      lnx.Conv2D(4, 3, **lnx_kwargs),
      tf.keras.layers.GlobalAveragePooling2D(),
      lnx.Dense(2, **lnx_kwargs),
  ])


def _lnx_layers(model):
  return [l for l in model.layers if lnx.is_lilnetx_layer(l)]


def _data(n=32):
  rng = np.random.default_rng(0)
  x = rng.random((n, 8, 8, 3), dtype=np.float32)
  y = (x[..., 0].mean((1, 2)) > x[..., 1].mean((1, 2))).astype("int32")
  return x, y


def test_losses_hold_one_rate_term_per_group_and_penalties_per_layer():
  x, _ = _data(2)
  model = _model()
  model(x, training=False)
  assert len(model.losses) == 2 + 3 + 3        # rate per group (conv3x3, dense); slices, L2
  model = _model(slice_weight=0.0, l2_weight=0.0)
  model(x, training=False)
  assert len(model.losses) == 2
  # The rate of both conv3x3 layers is a term of the group's leader, the first one called.
  first, second, dense = _lnx_layers(model)
  assert first.group is second.group and first.group.leader() is first
  assert len(first.losses) == 1 and second.losses == [] and len(dense.losses) == 1
  model = _model(rate_weight=0.0, slice_weight=0.0, l2_weight=0.0)
  model(x, training=False)
  assert model.losses == []


def _expected_rate(model, rate_weight, latents):
  layers = _lnx_layers(model)
  total_slices = sum(l.num_slices for l in layers)
  assert total_slices == 3 * 4 + 4 * 4 + 4 * 2
  bits = sum(float(tf.reduce_sum(l.group.bits(z))) for l, z in zip(layers, latents))
  return rate_weight * bits / total_slices


def test_without_penalties_adds_no_terms_and_takes_no_density_step():
  """A forward pass for another purpose (BatchNorm statistics): eager and traced, no losses
  and no density step; outside the context, both again."""
  from lilnetx_tf.layers import base
  x, _ = _data(2)
  model = _model()
  model(x, training=True)
  group = _lnx_layers(model)[0].group
  steps = int(group.step.numpy())
  with base.without_penalties():
    model(x, training=True)
    assert not model.losses
    traced = tf.function(lambda inputs: (model(inputs, training=True), model.losses)[1])
    assert not traced(x)
  assert int(group.step.numpy()) == steps
  model(x, training=True)
  assert len(model.losses) == 2 + 3 + 3 and int(group.step.numpy()) == steps + 1


def test_rate_term_in_evaluation_uses_rounded_latents():
  x, _ = _data(2)
  model = _model(rate_weight=0.3, slice_weight=0.0, l2_weight=0.0)
  model(x, training=False)
  rate = float(tf.add_n(model.losses))
  expected = _expected_rate(model, 0.3, [tf.round(l.latent) for l in _lnx_layers(model)])
  assert rate == pytest.approx(expected, rel=1e-5)
  assert rate > 0
  # Deterministic: the same again, and evaluation does not move the density.
  steps = [int(l.group.step.numpy()) for l in _lnx_layers(model)]
  model(x, training=False)
  assert float(tf.add_n(model.losses)) == rate
  assert [int(l.group.step.numpy()) for l in _lnx_layers(model)] == steps == [0, 0, 0]


def _noisy_latents(model):
  """Each layer's W̃ + U(−½, ½) as the next training call draws it: one draw per group over its
  members' stacked latents, seeded by the group's name and step."""
  noisy = {}
  for group, members in group_lib.members_by_group(_lnx_layers(model)):
    rows = [l.num_slices for l in members]
    noise = group.noise((sum(rows), group.slice_size))
    assert not np.allclose(noise.numpy(), 0)
    for layer, part in zip(members, tf.split(noise, rows)):
      noisy[id(layer)] = layer.latent + tf.reshape(part, layer.latent.shape)
  return [noisy[id(l)] for l in _lnx_layers(model)]


def test_rate_term_in_training_uses_noisy_latents():
  x, _ = _data(2)
  model = _model(rate_weight=0.3, slice_weight=0.0, l2_weight=0.0)
  model(x, training=False)
  eval_rate = float(tf.add_n(model.losses))
  # Priced under the density as it was before the step's own density update.
  expected = _expected_rate(model, 0.3, _noisy_latents(model))
  model(x, training=True)
  train_rate = float(tf.add_n(model.losses))
  # Each group's leader took one density step, which also advanced the noise seed.
  assert [int(l.group.step.numpy()) for l in _lnx_layers(model)] == [1, 1, 1]
  assert train_rate == pytest.approx(expected, rel=1e-5)
  # The untrained density is wide, so the noise moves the total little (2.5e-5 here).
  assert train_rate != pytest.approx(eval_rate, rel=1e-6)
  # A second training call draws new noise (the step moved on).
  model(x, training=True)
  assert float(tf.add_n(model.losses)) != train_rate


def test_training_rate_gradient_is_the_density_slope():
  """The group's one evaluation gives each latent the gradient of its own rate term, with
  per-layer rate weights."""
  x, _ = _data(2)
  model = tf.keras.Sequential([
      tf.keras.Input((8, 8, 3)),
      lnx.Conv2D(4, 3, activation="relu", rate_weight=0.3, slice_weight=0.0, l2_weight=0.0),
      lnx.Conv2D(4, 3, rate_weight=0.05, slice_weight=0.0, l2_weight=0.0),
      lnx.Conv2D(4, 3, rate_weight=0.0, slice_weight=0.0, l2_weight=0.0),
      tf.keras.layers.GlobalAveragePooling2D(),
  ])
  model(x, training=False)
  layers = _lnx_layers(model)
  variables = [l.latent_variable for l in layers]
  total_slices = sum(l.num_slices for l in layers)
  with tf.GradientTape() as tape:
    # The direct formula on the same noise, under the same (not yet stepped) density.
    expected = tf.add_n([l.rate_weight * tf.reduce_sum(l.group.bits(z)) for l, z in
                         zip(layers, _noisy_latents(model))]) / total_slices
  expected_grads = tape.gradient(expected, variables, unconnected_gradients="zero")
  with tf.GradientTape() as tape:
    model(x, training=True)
    rate = tf.add_n(model.losses)
  grads = tape.gradient(rate, variables, unconnected_gradients="zero")
  assert float(rate) == pytest.approx(float(expected), rel=1e-5)
  for got, want in zip(grads, expected_grads):
    # atol: float32 round-off of a stacked vs a per-layer evaluation, ~1e-4 of the largest
    # gradients, shows in the relative error of near-zero ones.
    np.testing.assert_allclose(got.numpy(), want.numpy(), rtol=1e-4, atol=1e-7)
  assert np.abs(grads[0].numpy()).max() > 0 and np.abs(grads[2].numpy()).max() == 0


def _fitted_group(slice_size, latents):
  """A group whose density was trained on `latents` (peaked where they are): the hardest case
  for a table, whose error grows with the curvature of the bits."""
  group = lnx.ParameterGroup(slice_size)
  group.build(None)
  sample = tf.constant(latents[:2000])
  fit = tf.function(lambda: group.step_density([sample]))
  for _ in range(150):
    fit()
  return group


def _realistic_latents(kind, rows, slice_size):
  rng = np.random.default_rng(1)
  shape = (rows, slice_size)
  if kind == "peaked_heavy_tails":  # most latents near 0, 10 % Student-t(1.5) out to ±120
    tails = np.clip(rng.standard_t(1.5, shape), -120, 120)
    latents = np.where(rng.random(shape) < 0.9, rng.normal(0, 0.3, shape), tails)
  elif kind == "laplace":
    latents = rng.laplace(scale=2, size=shape)
  else:  # "wide": nearly the table's whole range
    latents = rng.uniform(-120, 120, shape)
  return latents.astype(np.float32)


@pytest.mark.parametrize("slice_size", [1, 9])
@pytest.mark.parametrize("kind", ["peaked_heavy_tails", "laplace", "wide"])
def test_large_group_priced_from_the_table_matches_the_exact_density(slice_size, kind):
  """A group with at least `bits_table.MIN_ROWS` rows prices its latents from a table of the
  density; measured against the exact evaluation on the same noisy latents (these kinds, and
  uniform on ±1000, with 1, 9 and 25 channels), the totals were within 0.05 % (1 % allowed),
  the slopes within 2.6 % (relative L2; 10 % allowed) and the density's gradient within 20 %
  (the gradient of a fitted density is a small sum of large terms); integer latents in
  evaluation are priced exactly."""
  rows = bits_table.MIN_ROWS + 1000
  latents = _realistic_latents(kind, rows, slice_size)
  group = _fitted_group(slice_size, latents)
  members = [tf.constant(latents[:1000]), tf.constant(latents[1000:])]
  integers = [tf.round(m) for m in members]
  np.testing.assert_allclose(
      [float(b) for b in group.member_bits(integers)],
      [float(tf.reduce_sum(group.bits(q))) for q in integers], rtol=1e-5)
  traced = tf.function(group.member_bits)(integers)  # as in a model's test step
  np.testing.assert_allclose([float(b) for b in traced],
                             [float(b) for b in group.member_bits(integers)], rtol=1e-6)
  # Exact bits and slopes on this step's noise, under the density before its step.
  noisy = tf.concat(members, 0) + group.noise((rows, slice_size))
  with tf.GradientTape() as tape:
    tape.watch(noisy)
    exact_bits = tf.reduce_sum(group.bits(noisy), axis=-1)
  exact_slopes = tape.gradient(exact_bits, noisy)
  exact = [float(tf.reduce_sum(part)) for part in tf.split(exact_bits, [1000, rows - 1000])]
  with tf.GradientTape() as tape:
    tape.watch(members)
    priced = group.step_density(members)
  slopes = tf.concat(tape.gradient(priced, members), 0)
  np.testing.assert_allclose([float(b) for b in priced], exact, rtol=1e-2)
  assert float(tf.norm(slopes - exact_slopes) / tf.norm(exact_slopes)) < 0.1


def test_latents_beyond_the_integer_table_are_priced_exactly():
  """Evaluation: integers wider than the table take the exact path. Training: the noisy grid
  widens with |z|, so a far latent is still priced from the table, within the same 1 %."""
  rows = bits_table.MIN_ROWS
  latents = _realistic_latents("laplace", rows, 1)
  latents[0] = 1e4
  group = _fitted_group(1, latents)
  assert float(group.member_bits([tf.round(latents)])[0]) == pytest.approx(
      float(tf.reduce_sum(group.bits(tf.round(latents)))), rel=1e-6)
  exact = float(tf.reduce_sum(group.bits(tf.constant(latents) + group.noise((rows, 1)))))
  assert float(group.step_density([tf.constant(latents)])[0]) == pytest.approx(exact, rel=1e-2)


def test_rate_term_is_linear_in_rate_weight():
  x, _ = _data(2)
  rates = []
  for rate_weight in (0.1, 0.4):
    tf.keras.utils.set_random_seed(3)
    model = _model(rate_weight=rate_weight, slice_weight=0.0, l2_weight=0.0)
    model(x, training=False)
    rates.append(float(tf.add_n(model.losses)))
  assert rates[1] == pytest.approx(4 * rates[0], rel=1e-5)


def _num_slices(model):
  return sum(l.num_slices for l in _lnx_layers(model))


def test_slice_and_l2_terms():
  x, _ = _data(2)
  terms = []
  for slice_weight in (1e-3, 5e-3):
    tf.keras.utils.set_random_seed(3)
    model = _model(rate_weight=0.0, slice_weight=slice_weight, l2_weight=0.0)
    model(x, training=False)
    term = float(tf.add_n(model.losses))
    expected = slice_weight * sum(
        float(np.linalg.norm(l.latent.numpy(), axis=-1).sum()) for l in _lnx_layers(model))
    assert term == pytest.approx(expected / _num_slices(model), rel=1e-5)
    terms.append(term)
  assert terms[1] > terms[0]
  assert terms[1] == pytest.approx(5 * terms[0], rel=1e-5)

  model = _model(rate_weight=0.0, slice_weight=0.0, l2_weight=0.01)
  model(x, training=False)
  expected = 0.01 * sum(float(np.sum(l.latent.numpy() ** 2)) for l in _lnx_layers(model))
  assert float(tf.add_n(model.losses)) == pytest.approx(expected / _num_slices(model), rel=1e-5)


def _mlp(width, **lnx_kwargs):
  return tf.keras.Sequential([tf.keras.Input((16,)), lnx.Dense(width, **lnx_kwargs),
                              lnx.Dense(width, **lnx_kwargs), lnx.Dense(4, **lnx_kwargs)])


@pytest.mark.parametrize("weights", [dict(slice_weight=0.1, l2_weight=0.0),
                                     dict(slice_weight=0.0, l2_weight=0.1),
                                     dict(rate_weight=0.1, slice_weight=0.0, l2_weight=0.0)])
def test_each_penalty_is_per_slice_whatever_the_model_size(weights):
  """The same latents per slice give the same penalty on a model with ~10× more slices."""
  kwargs = {"rate_weight": 0.0, **weights}
  tf.keras.utils.set_random_seed(0)        # the densities' initial biases are random
  small = _mlp(16, **kwargs)                 # 576 slices
  tf.keras.utils.set_random_seed(0)
  large = _mlp(68, **kwargs)                 # 5,984 slices
  assert _num_slices(large) > 10 * _num_slices(small)
  penalties = []
  for model in (small, large):
    for layer in _lnx_layers(model):   # every latent 2: the same value per slice everywhere
      layer.latent_variable.assign(tf.fill(layer.latent_variable.shape, 2.0)
                                   * layer.group.latent_step)
    model(np.zeros((1, 16), np.float32), training=False)
    penalties.append(float(tf.add_n(model.losses)))
  assert penalties[0] > 0
  assert penalties[1] == pytest.approx(penalties[0], rel=1e-4)


def test_layer_config_without_version_keeps_the_summed_penalties():
  """A config saved before version 2 (no `config_version`) means plain sums; saved again, it
  is written per slice with the same penalty."""
  x = np.ones((1, 16), np.float32)
  config = lnx.Dense(8, rate_weight=0.0, slice_weight=1e-3, l2_weight=1e-4).get_config()
  assert config.pop("config_version") == 2
  inputs = tf.keras.Input((16,))
  legacy = lnx.Dense.from_config(config)
  last = lnx.Dense(4, rate_weight=0.0, slice_weight=0.0, l2_weight=0.0)
  model = tf.keras.Model(inputs, last(legacy(inputs)))
  assert legacy.config_version == 1
  latent = legacy.latent.numpy()
  model(x, training=False)
  before = float(tf.add_n(model.losses))
  assert before == pytest.approx(
      1e-3 * np.linalg.norm(latent, axis=-1).sum() + 1e-4 * np.sum(latent ** 2), rel=1e-5)
  upgraded = legacy.get_config()
  slices = _num_slices(model)
  assert upgraded["config_version"] == 2 and legacy.config_version == 2
  assert upgraded["slice_weight"] == pytest.approx(1e-3 * slices)
  assert upgraded["l2_weight"] == pytest.approx(1e-4 * slices)
  model(x, training=False)
  assert float(tf.add_n(model.losses)) == pytest.approx(before, rel=1e-5)


def test_slice_norm_has_finite_gradient_at_zero():
  layer = lnx.Dense(3, rate_weight=0.0, slice_weight=1.0, l2_weight=0.0)
  layer(tf.zeros((1, 4)))
  layer.latent_variable.assign(tf.zeros_like(layer.latent_variable))
  with tf.GradientTape() as tape:
    layer(tf.zeros((1, 4)), training=True)
    penalty = tf.add_n(layer.losses)
  grad = tape.gradient(penalty, layer.latent_variable)
  assert np.all(np.isfinite(grad.numpy()))


def test_density_is_not_user_trainable_but_learns_during_fit():
  x, y = _data(32)
  model = _model(rate_weight=1.0)
  model.compile(tf.keras.optimizers.SGD(0.01), LOSS)
  model(x[:1])
  groups = {id(l.group): l.group for l in _lnx_layers(model)}.values()
  assert len(groups) == 2                        # conv3x3 and dense
  trainable = {id(w) for w in model.trainable_weights}
  for group in groups:
    assert group.density_variables
    assert all(id(v) not in trainable for v in group.density_variables)
    assert all(not v.trainable for v in group.density_variables)
    assert id(group.decoder) in trainable
  before = [[v.numpy().copy() for v in g.density_variables] for g in groups]
  model.fit(x, y, batch_size=8, epochs=1, verbose=0, shuffle=False)
  for group, old in zip(groups, before):
    assert int(group.step.numpy()) == 4          # one density step per train step
    assert any(not np.allclose(o, v.numpy()) for o, v in zip(old, group.density_variables))
  # Evaluation and prediction leave the density alone.
  after = [[v.numpy().copy() for v in g.density_variables] for g in groups]
  model.evaluate(x, y, verbose=0)
  model.predict(x, verbose=0)
  for group, old in zip(groups, after):
    assert int(group.step.numpy()) == 4
    assert all(np.array_equal(o, v.numpy()) for o, v in zip(old, group.density_variables))


def test_density_update_lowers_bits():
  """The group's own Adam step fits the density to the latents: bits go down."""
  layer = lnx.Dense(64, rate_weight=1.0, slice_weight=0.0, l2_weight=0.0,
                    density_learning_rate=0.05)
  x = tf.zeros((1, 32))
  layer(x)
  bits = lambda: float(tf.reduce_sum(layer.group.bits(tf.round(layer.latent))))
  before = bits()
  train = tf.function(lambda: layer(x, training=True))
  for _ in range(30):
    train()
  assert int(layer.group.step.numpy()) == 30
  assert bits() < before


@pytest.mark.parametrize("optimizer", [
    lambda: tf.keras.optimizers.SGD(0.05, momentum=0.9),
    lambda: tf.keras.optimizers.Adam(0.01),
    lambda: tf.keras.optimizers.RMSprop(0.005),
])
def test_any_optimizer(optimizer):
  x, y = _data(32)
  model = _model()
  model.compile(optimizer(), LOSS)
  model(x[:1])
  latents = [l.latent_variable.numpy().copy() for l in _lnx_layers(model)]
  decoder = _lnx_layers(model)[0].group.decoder.numpy().copy()
  density = [v.numpy().copy() for v in _lnx_layers(model)[0].group.density_variables]
  history = model.fit(x, y, batch_size=16, epochs=2, verbose=0, shuffle=False)
  assert np.all(np.isfinite(history.history["loss"]))
  assert all(not np.array_equal(a, l.latent_variable.numpy())
             for a, l in zip(latents, _lnx_layers(model)))
  assert not np.array_equal(decoder, _lnx_layers(model)[0].group.decoder.numpy())
  assert any(not np.array_equal(d, v.numpy())
             for d, v in zip(density, _lnx_layers(model)[0].group.density_variables))


# -------------------------------------------------------------------------------------------------
# Bad λ values.


@pytest.mark.parametrize("argument", ["rate_weight", "slice_weight", "l2_weight"])
@pytest.mark.parametrize("value", [-1.0, -1e-9, math.nan, math.inf, -math.inf, "big", "1e-3", True, None, [1]])
@pytest.mark.parametrize("layer_class", [lnx.Conv2D, lnx.Dense])
def test_bad_lambda_rejected(layer_class, argument, value):
  args = (4, 3) if layer_class is lnx.Conv2D else (4,)
  with pytest.raises(errors.InvalidArgumentError) as info:
    layer_class(*args, **{argument: value})
  assert isinstance(info.value, ValueError)
  assert isinstance(info.value, errors.LilNetXError)
  assert argument in str(info.value)


@pytest.mark.parametrize("argument, value", [
    ("boundary", 0.0), ("boundary", -2.0), ("boundary", math.nan),
    ("density_learning_rate", 0.0), ("density_learning_rate", math.inf),
])
def test_bad_positive_arguments_rejected(argument, value):
  with pytest.raises(errors.InvalidArgumentError, match=argument):
    lnx.DepthwiseConv2D(3, **{argument: value})


def test_zero_and_numpy_lambdas_accepted():
  layer = lnx.Dense(2, rate_weight=0, slice_weight=np.float64(0.001), l2_weight=np.float32(1e-5))
  assert layer.rate_weight == 0.0 and layer.slice_weight == 0.001
  assert isinstance(layer.l2_weight, float)


class _ScaleRecorder(tf.keras.callbacks.Callback):
  """Records the model's penalty scale at each batch (after `PenaltyWarmup` has set it)."""

  def __init__(self, registry):
    super().__init__()
    self.registry = registry
    self.scales = []

  def on_train_batch_begin(self, batch, logs=None):
    self.scales.append(float(self.registry.penalty_scale.numpy()))


def test_penalty_scale_multiplies_every_term_only_while_set():
  x, _ = _data(2)
  model = _model(rate_weight=0.3, slice_weight=1e-3, l2_weight=1e-2)
  model(x, training=False)
  full = [float(loss) for loss in model.losses]
  registry = lnx.layers.registry.registry_of(_lnx_layers(model)[0])
  registry.start_penalty_scale().assign(0.25)
  model(x, training=False)
  assert [float(loss) for loss in model.losses] == pytest.approx([0.25 * f for f in full],
                                                                 rel=1e-6)
  registry.stop_penalty_scale()
  model(x, training=False)
  assert [float(loss) for loss in model.losses] == pytest.approx(full, rel=1e-6)
  assert min(full) > 0


def _scales_per_fit(make_callback, epochs_per_fit) -> list:
  """The penalty scale at each batch (3 per epoch) of consecutive fits of one model, each fit
  with a fresh callback (as after resuming from a checkpoint)."""
  x, y = _data(24)
  model = _model(rate_weight=0.3)
  model.compile("adam", LOSS)
  registry = lnx.layers.registry.registry_of(_lnx_layers(model)[0])
  recorder = _ScaleRecorder(registry)
  scales = []
  for epochs in epochs_per_fit:
    recorder.scales.clear()
    model.fit(x, y, batch_size=8, epochs=epochs, verbose=0,
              callbacks=[make_callback(), recorder])
    scales.append(list(recorder.scales))
    assert registry.penalty_scale is None                 # fixed weights again after fit
  return scales


def test_penalty_warmup_ramps_with_optimizer_steps_and_resumes():
  first, resumed = _scales_per_fit(lambda: lnx.callbacks.PenaltyWarmup(5), [1, 1])
  assert first == pytest.approx([0.2, 0.4, 0.6])
  assert resumed == pytest.approx([0.8, 1.0, 1.0])       # continues from the optimizer's step


def test_penalty_warmup_at_zero_trains_on_the_task_loss_alone():
  x, y = _data(8)
  model = _model(rate_weight=1.0, slice_weight=1e-2)
  model.compile("sgd", LOSS)
  task_loss = float(LOSS(y, model(x, training=False)))
  history = model.fit(x, y, batch_size=8, epochs=1, verbose=0,
                      callbacks=[lnx.callbacks.PenaltyWarmup(10**6)])
  # One step, scale 1e-6: the reported training loss is the task loss (to float precision).
  assert history.history["loss"][0] == pytest.approx(task_loss, rel=1e-3)


def test_penalty_schedule_follows_the_callable_and_resumes():
  seen = []

  def schedule(step):
    seen.append(step)
    return 1.0 if step < 2 else 0.5 / (step - 1)

  first, resumed = _scales_per_fit(lambda: lnx.callbacks.PenaltySchedule(schedule), [2, 1])
  assert first == pytest.approx([1.0, 1.0, 0.5, 0.25, 1 / 6, 0.125])
  assert resumed == pytest.approx([0.1, 1 / 12, 1 / 14])
  assert seen[-3:] == [6, 7, 8]


@pytest.mark.parametrize("factor", [-0.5, float("nan"), float("inf"), "1", None])
def test_penalty_schedule_rejects_bad_factors(factor):
  x, y = _data(8)
  model = _model(rate_weight=0.3)
  model.compile("adam", LOSS)
  with pytest.raises(errors.InvalidArgumentError, match="penalty factor at step 0"):
    model.fit(x, y, epochs=1, verbose=0,
              callbacks=[lnx.callbacks.PenaltySchedule(lambda step: factor)])


def test_warmup_cooldown_factors():
  factor = lnx.callbacks.warmup_cooldown(warmup_steps=20, cooldown_steps=40, total_steps=100,
                                         final_factor=0.25)
  # Ramp in over steps 0-19, full weight to step 59, down to 0.25 at the last step (99).
  assert [factor(s) for s in (0, 9, 19, 59)] == pytest.approx([0.05, 0.5, 1.0, 1.0])
  assert [factor(s) for s in (60, 79, 99, 150)] == pytest.approx(
      [1 - 0.75 / 40, 0.625, 0.25, 0.25])
  assert lnx.callbacks.warmup_cooldown(warmup_steps=4)(10**6) == 1.0
  assert lnx.callbacks.warmup_cooldown()(0) == 1.0


@pytest.mark.parametrize("arguments, message", [
    (dict(cooldown_steps=5), "total_steps"),
    (dict(warmup_steps=6, cooldown_steps=5, total_steps=10), "exceed"),
    (dict(warmup_steps=-1), "warmup_steps"),
    (dict(cooldown_steps=2.5, total_steps=10), "cooldown_steps"),
    (dict(cooldown_steps=2, total_steps=10, final_factor=-1), "final_factor")])
def test_warmup_cooldown_rejects_bad_arguments(arguments, message):
  with pytest.raises(errors.InvalidArgumentError, match=message):
    lnx.callbacks.warmup_cooldown(**arguments)


def test_penalty_schedule_needs_a_callable():
  with pytest.raises(errors.InvalidArgumentError, match="schedule"):
    lnx.callbacks.PenaltySchedule(0.5)


@pytest.mark.parametrize("steps", [0, -3, 2.5, True, "10"])
def test_penalty_warmup_rejects_bad_steps(steps):
  with pytest.raises(errors.InvalidArgumentError, match="warmup_steps"):
    lnx.callbacks.PenaltyWarmup(steps)


def test_penalty_warmup_needs_lilnetx_layers():
  x, y = _data(8)
  model = tf.keras.Sequential([tf.keras.Input((8, 8, 3)), tf.keras.layers.Flatten(),
                               tf.keras.layers.Dense(2)])
  model.compile("sgd", LOSS)
  with pytest.raises(errors.InvalidArgumentError, match="LilNetX layers"):
    model.fit(x, y, epochs=1, verbose=0, callbacks=[lnx.callbacks.PenaltyWarmup(10)])


def test_model_trained_with_penalty_warmup_saves_as_saved_model(tmp_path):
  x, y = _data(16)
  model = _model(rate_weight=0.3)
  model.compile("adam", LOSS)
  checkpoint = tf.keras.callbacks.ModelCheckpoint(str(tmp_path / "during"))  # mid-warm-up
  model.fit(x, y, batch_size=8, epochs=1, verbose=0,
            callbacks=[lnx.callbacks.PenaltyWarmup(4), checkpoint])
  assert (tmp_path / "during" / "saved_model.pb").exists()
  model.save(str(tmp_path / "saved"), save_format="tf")
  loaded = tf.keras.models.load_model(str(tmp_path / "saved"), compile=False)
  np.testing.assert_array_equal(loaded(x, training=False), model(x, training=False))


def test_rate_noise_is_uniform_fresh_per_step_and_reproducible():
  """The counter-hash noise: U(−½, ½) moments and histogram, the same for the same key, and
  uncorrelated across steps (each step draws anew) and across neighbouring elements."""
  def draw(step):
    return noise_lib.uniform((200_000,), noise_lib.key(1234, tf.constant(step))).numpy()

  first, again, second = draw(7), draw(7), draw(8)
  np.testing.assert_array_equal(first, again)
  assert -0.5 < first.min() and first.max() < 0.5
  assert abs(first.mean()) < 0.005 and abs(first.var() - 1 / 12) < 0.002
  counts, _ = np.histogram(first, bins=20, range=(-0.5, 0.5))
  assert counts.min() > 0.95 * len(first) / 20 and counts.max() < 1.05 * len(first) / 20
  assert abs(np.corrcoef(first, second)[0, 1]) < 0.01
  assert abs(np.corrcoef(first[:-1], first[1:])[0, 1]) < 0.01


def test_noisy_grid_index_is_the_nearest_point():
  """Each value's index is its nearest grid point (to float32 round-off at octave edges), the
  grid is increasing, and values past its ends or not finite take the last point."""
  grid = bits_table.noisy_grid(1)[:, 0].numpy()
  assert np.all(np.diff(grid) > 0) and grid[bits_table.POINTS // 2] == 0
  rng = np.random.default_rng(0)
  values = (rng.standard_t(1.5, 20_000) * 3).astype(np.float32)
  index = bits_table.noisy_indices(tf.constant(values[:, None])).numpy()
  nearest = np.abs(grid[None, :] - values[:, None]).argmin(axis=1)
  error = np.abs(grid[index] - values)
  assert np.all(error <= np.abs(grid[nearest] - values) + 1e-3 * (1 + np.abs(values)))
  extremes = tf.constant([[1e9], [-1e9], [np.inf], [-np.inf], [np.nan]], tf.float32)
  np.testing.assert_array_equal(bits_table.noisy_indices(extremes).numpy(),
                                [len(grid) - 1, 0, len(grid) - 1, 0, len(grid) - 1])


@pytest.mark.parametrize("num_blocks", [2, bits_table.LOOPS + 3])
def test_noisy_lookup_of_many_blocks_matches_each_block_on_its_own(num_blocks):
  """The XLA lookup groups more than `LOOPS` blocks (a group's members) into runs of one
  histogram each: every block's counts, total and slopes are still its own, each priced at
  its noisy value's grid point, with the noise of one draw over all blocks in order."""
  channels, rng = 3, np.random.default_rng(0)
  sizes = [int(n) for n in rng.integers(1, 400, num_blocks)]
  rows = [tf.constant(rng.normal(0, 20, (n, channels)).astype(np.float32)) for n in sizes]
  step, key = tf.constant(0.5), noise_lib.key(5, tf.constant(2))
  counts, all_counts, indices = bits_table.noisy_histograms(rows, step, key)
  stacked = tf.concat(rows, 0) / step
  expected = np.split(bits_table.noisy_indices(
      stacked + noise_lib.uniform(tf.shape(stacked), key)).numpy(), np.cumsum(sizes)[:-1] * channels)
  block_counts = np.concatenate([c.numpy() for c in counts])
  width = bits_table.POINTS * channels
  assert block_counts.shape == (num_blocks, width) and len(counts) <= bits_table.LOOPS
  for got, index in zip(block_counts, expected):
    np.testing.assert_array_equal(got, np.bincount(index, minlength=width))
  np.testing.assert_array_equal(all_counts.numpy().reshape(-1), block_counts.sum(0))
  table = tf.constant(rng.uniform(0, 9, (bits_table.POINTS, channels)).astype(np.float32))
  slope_table = tf.constant(rng.normal(size=(bits_table.POINTS, channels)).astype(np.float32))
  totals, slopes = bits_table.totals_and_slopes(table, slope_table, counts, indices)
  slopes = bits_table.by_block(slopes, [n * channels for n in sizes])
  for total, slope, index in zip(totals.numpy(), slopes, expected):
    assert total == pytest.approx(table.numpy().reshape(-1)[index].sum(), rel=1e-5)
    np.testing.assert_array_equal(slope.numpy(), slope_table.numpy().reshape(-1)[index])


def test_runs_are_consecutive_balanced_and_at_most_loops():
  assert bits_table.runs([5, 1, 7]) == [[0], [1], [2]]
  sizes = [100, 1, 1, 1, 50, 50, 1, 1, 400, 3]
  runs = bits_table.runs(sizes, 4)
  assert len(runs) <= 4 and sum(runs, []) == list(range(len(sizes)))
  assert all(run for run in runs)
  assert max(sum(sizes[i] for i in run) for run in runs) == 400   # the largest block alone
