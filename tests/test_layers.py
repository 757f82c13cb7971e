"""LilNetX layers as drop-in Keras layers: training with fit, Keras arguments, decoding,
straight-through gradients, group sharing, initialization and bad arguments."""

import numpy as np
import pytest
import tensorflow as tf

import lilnetx_tf as lnx
from lilnetx_tf import errors

LOSS = tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True)


def _latents(model):
  return [l.latent_variable.numpy().copy() for l in model.layers if lnx.is_lilnetx_layer(l)]


def _lnx_layers(model):
  return [l for l in model._flatten_layers(include_self=False) if lnx.is_lilnetx_layer(l)]


def _fit_and_check(model, data, epochs=2):
  x, y = data
  model.compile(tf.keras.optimizers.Adam(0.01), LOSS, metrics=["accuracy"])
  model(x[:2])
  before = [l.latent_variable.numpy().copy() for l in _lnx_layers(model)]
  history = model.fit(x, y, batch_size=32, epochs=epochs, verbose=0, shuffle=False)
  losses = history.history["loss"]
  assert len(losses) == epochs and np.all(np.isfinite(losses))
  after = [l.latent_variable.numpy() for l in _lnx_layers(model)]
  assert before and all(not np.array_equal(b, a) for b, a in zip(before, after))
  return history


# -------------------------------------------------------------------------------------------------
# Training with compile / fit in the three Keras model styles.


def test_sequential_trains(image_data):
  model = tf.keras.Sequential([
      tf.keras.Input((12, 12, 3)),
      lnx.Conv2D(8, 3, activation="relu"),
      lnx.DepthwiseConv2D(3, padding="same", activation="relu"),
      lnx.Conv2D(8, 1),
      tf.keras.layers.GlobalAveragePooling2D(),
      lnx.Dense(2),
  ])
  history = _fit_and_check(model, image_data, epochs=3)
  assert history.history["loss"][-1] < history.history["loss"][0]


def test_functional_trains(image_data):
  inputs = tf.keras.Input((12, 12, 3))
  a = lnx.Conv2D(8, 3, padding="same", activation="relu")(inputs)
  b = lnx.Conv2D(8, 1, padding="same", activation="relu")(inputs)
  x = tf.keras.layers.Concatenate()([a, b])
  x = lnx.Conv2D(8, 3, strides=2)(x)
  x = tf.keras.layers.GlobalAveragePooling2D()(x)
  model = tf.keras.Model(inputs, lnx.Dense(2)(x))
  _fit_and_check(model, image_data)
  # Where the two branches meet, their registries merged: one 3x3 group for the model.
  convs = [l for l in model.layers if isinstance(l, lnx.Conv2D) and l.kernel_size == (3, 3)]
  assert convs[0].group is convs[1].group


class _Block(tf.keras.layers.Layer):

  def __init__(self, filters, **kwargs):
    super().__init__(**kwargs)
    self.conv_a = lnx.Conv2D(filters, 3, padding="same", activation="relu")
    self.conv_b = lnx.Conv2D(filters, 3, padding="same")

  def call(self, inputs, training=None):
    return tf.nn.relu(inputs + self.conv_b(self.conv_a(inputs, training=training),
                                           training=training))


class _Subclassed(tf.keras.Model):

  def __init__(self):
    super().__init__()
    self.stem = lnx.Conv2D(8, 3, padding="same", activation="relu")
    self.block1 = _Block(8)
    self.block2 = _Block(8)
    self.pool = tf.keras.layers.GlobalAveragePooling2D()
    self.head = lnx.Dense(2)

  def call(self, inputs, training=None):
    x = self.stem(inputs, training=training)
    x = self.block2(self.block1(x, training=training), training=training)
    return self.head(self.pool(x), training=training)


def test_subclassed_trains_and_group_scope_shares(image_data):
  with lnx.group_scope() as registry:
    model = _Subclassed()
  _fit_and_check(model, image_data)
  convs = [model.stem, model.block1.conv_a, model.block1.conv_b, model.block2.conv_a,
           model.block2.conv_b]
  assert all(c.group is convs[0].group for c in convs)
  assert registry.groups["conv3x3"] is convs[0].group
  assert registry.groups["dense"] is model.head.group
  # The rate normalizer counts every slice of the model.
  assert registry.num_slices == sum(l.num_slices for l in convs + [model.head])


def test_subclassed_model_with_direct_layers_shares_without_scope(image_data):
  """Layers called directly in a subclassed model's `call` share through the enclosing model."""

  class Direct(tf.keras.Model):

    def __init__(self):
      super().__init__()
      self.c1 = lnx.Conv2D(4, 3, padding="same")
      self.c2 = lnx.Conv2D(4, 3, padding="same")
      self.head = lnx.Dense(2)

    def call(self, inputs, training=None):
      x = self.c2(self.c1(inputs, training=training), training=training)
      return self.head(tf.reduce_mean(x, axis=(1, 2)), training=training)

  model = Direct()
  _fit_and_check(model, image_data, epochs=1)
  assert model.c1.group is model.c2.group


# -------------------------------------------------------------------------------------------------
# Drop-in Keras arguments: the lnx layer computes exactly what its Keras namesake computes with the
# decoded kernel.


@pytest.mark.parametrize("kwargs", [
    dict(filters=6, kernel_size=3),
    dict(filters=6, kernel_size=3, strides=2, padding="same"),
    dict(filters=6, kernel_size=(3, 5), padding="valid", activation="relu"),
    dict(filters=6, kernel_size=3, dilation_rate=2, padding="same", use_bias=False),
    dict(filters=6, kernel_size=1, strides=(2, 1), activation="tanh"),
])
def test_conv2d_matches_keras(kwargs):
  x = tf.random.normal((2, 11, 11, 5))
  layer = lnx.Conv2D(**kwargs)
  y = layer(x)
  twin = tf.keras.layers.Conv2D(**kwargs)
  twin(x)
  twin.kernel.assign(layer.kernel)
  if layer.use_bias:
    layer.bias.assign(tf.random.normal(layer.bias.shape))
    twin.bias.assign(layer.bias)
  else:
    assert layer.bias is None and len(twin.weights) == 1
  y = layer(x)
  np.testing.assert_allclose(y.numpy(), twin(x).numpy(), rtol=1e-5, atol=1e-5)
  assert y.shape == twin.compute_output_shape(x.shape)


def test_conv2d_channels_first_shapes():
  # TF's CPU kernels only run NHWC convolutions; check the layer builds its latent from the
  # channel axis and computes the same output shape as Keras.
  layer = lnx.Conv2D(6, 3, data_format="channels_first")
  layer.build((None, 5, 11, 11))
  assert layer.latent_variable.shape == (5, 6, 9)
  assert layer.kernel.shape == (3, 3, 5, 6)
  twin = tf.keras.layers.Conv2D(6, 3, data_format="channels_first")
  assert layer.compute_output_shape((2, 5, 11, 11)) == twin.compute_output_shape((2, 5, 11, 11))
  assert layer.output_positions == 81


@pytest.mark.parametrize("kwargs", [
    dict(kernel_size=3),
    dict(kernel_size=3, strides=2, padding="same", depth_multiplier=2, activation="relu"),
    dict(kernel_size=3, dilation_rate=2, padding="same", use_bias=False),
])
def test_depthwise_matches_keras(kwargs):
  x = tf.random.normal((2, 9, 9, 4))
  layer = lnx.DepthwiseConv2D(**kwargs)
  layer(x)
  twin = tf.keras.layers.DepthwiseConv2D(**kwargs)
  twin(x)
  twin.depthwise_kernel.assign(layer.depthwise_kernel)
  if layer.use_bias:
    twin.bias.assign(layer.bias)
  assert layer.kernel.shape == twin.depthwise_kernel.shape
  np.testing.assert_allclose(layer(x).numpy(), twin(x).numpy(), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("kwargs", [
    dict(units=7), dict(units=3, activation="relu", use_bias=False)])
def test_dense_matches_keras(kwargs):
  x = tf.random.normal((4, 10))
  layer = lnx.Dense(**kwargs)
  layer(x)
  twin = tf.keras.layers.Dense(**kwargs)
  twin(x)
  twin.kernel.assign(layer.kernel)
  if layer.use_bias:
    layer.bias.assign(tf.random.normal(layer.bias.shape))
    twin.bias.assign(layer.bias)
  np.testing.assert_allclose(layer(x).numpy(), twin(x).numpy(), rtol=1e-5, atol=1e-5)


def test_dense_on_3d_inputs():
  layer = lnx.Dense(4)
  assert layer(tf.zeros((2, 5, 6))).shape == (2, 5, 4)
  assert layer.output_positions == 5


# -------------------------------------------------------------------------------------------------
# Decoding.


def test_kernel_is_decoded_latent():
  layer = lnx.Conv2D(4, 3)
  layer(tf.zeros((1, 6, 6, 2)))
  group = layer.group
  group.decoder.assign(tf.random.normal((9, 9)))
  q = np.round(layer.latent_variable.numpy() / group.latent_step.numpy())     # (in, out, 9)
  decoded = q @ group.decoder_matrix().numpy()                                # (in, out, 9)
  expected = decoded.reshape(2, 4, 3, 3).transpose(2, 3, 0, 1)                # (kh, kw, in, out)
  np.testing.assert_allclose(layer.kernel.numpy(), expected, rtol=1e-5, atol=1e-6)
  # The latent is not already on the integer grid, so rounding matters.
  assert not np.allclose(layer.latent.numpy(), q)


def test_dense_kernel_is_decoded_latent():
  layer = lnx.Dense(3)
  layer(tf.zeros((1, 5)))
  layer.group.decoder.assign(np.log(0.37 / layer.group.latent_step.numpy()))  # Ψ = s·exp(ρ)
  q = np.round(layer.latent.numpy())[..., 0]
  np.testing.assert_allclose(layer.kernel.numpy(), 0.37 * q, rtol=1e-5)


@pytest.mark.parametrize("make, shape", [
    (lambda: lnx.Conv2D(4, 3), (1, 6, 6, 3)),
    (lambda: lnx.DepthwiseConv2D(3, depth_multiplier=2), (1, 6, 6, 3)),
    (lambda: lnx.Dense(4), (1, 3)),
])
def test_zero_latent_slice_decodes_to_zero_weights(make, shape):
  layer = make()
  layer(tf.zeros(shape))
  if layer.group.slice_size > 1:
    layer.group.decoder.assign(tf.random.normal(layer.group.decoder.shape) + 1.0)
  step = float(layer.group.latent_step.numpy())
  latent = np.random.default_rng(0).integers(1, 3, layer.latent_variable.shape) * step
  latent[1, 0, :] = 0.0
  layer.latent_variable.assign(latent)
  kernel = layer.kernel.numpy()
  assert np.all(kernel[..., 1, 0] == 0.0)
  # ... and only that slice.
  live = np.ones(latent.shape[:2], bool)
  live[1, 0] = False
  assert np.all(np.any(kernel.reshape(-1, *latent.shape[:2]) != 0, axis=0) == live)


def test_straight_through_gradient_reaches_latent():
  x = tf.random.normal((3, 5))
  layer = lnx.Dense(4, rate_weight=0.0, slice_weight=0.0, l2_weight=0.0)
  layer(x)
  layer.group.decoder.assign(np.log(0.5 / layer.group.latent_step.numpy()))  # Ψ = 0.5
  with tf.GradientTape() as tape:
    y = layer(x, training=True)
    loss = tf.reduce_sum(tf.sin(y))
  grad = tape.gradient(loss, layer.latent_variable)
  assert grad is not None and np.count_nonzero(grad.numpy()) == grad.numpy().size
  # d loss / d latent_variable = d loss / d kernel · decoder / latent_step (rounding passes the
  # gradient through unchanged).
  kernel = tf.Variable(layer.kernel)
  with tf.GradientTape() as tape:
    loss = tf.reduce_sum(tf.sin(x @ kernel + layer.bias))
  kernel_grad = tape.gradient(loss, kernel).numpy()
  expected = kernel_grad[..., None] * 0.5 / layer.group.latent_step.numpy()
  np.testing.assert_allclose(grad.numpy(), expected, rtol=1e-4, atol=1e-6)


def test_gradient_reaches_decoder():
  x = tf.random.normal((2, 6, 6, 3))
  layer = lnx.Conv2D(4, 3)
  layer(x)
  with tf.GradientTape() as tape:
    loss = tf.reduce_sum(tf.square(layer(x, training=True)))
  grad = tape.gradient(loss, layer.group.decoder)
  assert grad is not None and np.any(grad.numpy() != 0)
  assert any(w is layer.group.decoder for w in layer.trainable_weights)


# -------------------------------------------------------------------------------------------------
# Group sharing.


def _two_kernel_shape_model():
  return tf.keras.Sequential([
      tf.keras.Input((8, 8, 3)),
      lnx.Conv2D(4, 3, padding="same"),
      lnx.Conv2D(6, 3, padding="same"),
      lnx.Conv2D(6, 1),
      lnx.DepthwiseConv2D(3, padding="same"),
      lnx.Conv2D(5, 1),
      tf.keras.layers.Flatten(),
      lnx.Dense(8),
      lnx.Dense(2),
  ])


def test_decoder_shared_by_same_shape_layers():
  model = _two_kernel_shape_model()
  c3a, c3b, c1a, dw, c1b, _, d1, d2 = model.layers
  assert c3a.group is c3b.group is dw.group
  assert c3a.group.decoder is c3b.group.decoder
  assert c1a.group is c1b.group and c1a.group is not c3a.group
  assert d1.group is d2.group and d1.group is not c1a.group
  assert {m.name for m in c3a.group.members()} == {c3a.name, c3b.name, dw.name}
  # The group's variables appear once in the model's weights.
  names = [id(w) for w in model.weights]
  assert len(names) == len(set(names))
  assert sum(w is c3a.group.decoder for w in model.trainable_weights) == 1


def test_groups_not_shared_across_models():
  m1, m2 = _two_kernel_shape_model(), _two_kernel_shape_model()
  for l1, l2 in zip(m1.layers, m2.layers):
    if lnx.is_lilnetx_layer(l1):
      assert l1.group is not l2.group
      assert l1.group.decoder is not l2.group.decoder
  # Training one leaves the other's groups untouched.
  before = m2.layers[0].group.decoder.numpy().copy()
  m1.compile("sgd", "mse")
  m1.fit(np.ones((4, 8, 8, 3), np.float32), np.zeros((4, 2), np.float32), verbose=0)
  assert int(m2.layers[0].group.step.numpy()) == 0
  np.testing.assert_array_equal(m2.layers[0].group.decoder.numpy(), before)
  assert int(m1.layers[0].group.step.numpy()) == 1


# -------------------------------------------------------------------------------------------------
# Initialization.


def test_kaiming_variance_at_init():
  inputs = tf.keras.Input((16, 16, 8))
  x = lnx.Conv2D(64, 3, padding="same")(inputs)             # fan 72
  x = lnx.Conv2D(64, 3, padding="same")(x)                  # fan 576
  x = lnx.Conv2D(128, 3, padding="same")(x)                 # fan 576
  x = lnx.Conv2D(96, 1)(x)                                  # fan 128
  x = tf.keras.layers.GlobalAveragePooling2D()(x)
  x = lnx.Dense(256)(x)                                     # fan 96
  outputs = lnx.Dense(128)(x)                               # fan 256
  model = tf.keras.Model(inputs, outputs)
  checked = 0
  for layer in _lnx_layers(model):
    kernel = layer.kernel.numpy()
    variance = float(np.mean(kernel ** 2))                  # zero-mean by construction
    assert variance == pytest.approx(2.0 / layer.fan, rel=0.2), (layer.name, layer.fan)
    assert abs(float(np.mean(kernel))) < 0.1 * np.sqrt(2.0 / layer.fan)
    checked += 1
  assert checked == 6


def test_first_epoch_comparable_to_keras_twin(image_data):
  x, y = image_data

  def build(conv, dense):
    return tf.keras.Sequential([
        tf.keras.Input((12, 12, 3)),
        conv(16, 3, padding="same", activation="relu"),
        conv(16, 3, strides=2, padding="same", activation="relu"),
        tf.keras.layers.GlobalAveragePooling2D(),
        dense(2),
    ])

  results = {}
  for name, conv, dense in [
      ("lnx", lnx.Conv2D, lnx.Dense),
      ("keras", lambda *a, **k: tf.keras.layers.Conv2D(*a, kernel_initializer="he_uniform", **k),
       lambda *a, **k: tf.keras.layers.Dense(*a, kernel_initializer="he_uniform", **k))]:
    tf.keras.utils.set_random_seed(1)
    model = build(conv, dense)
    model.compile(tf.keras.optimizers.Adam(0.01), LOSS,
                  metrics=[tf.keras.metrics.SparseCategoricalCrossentropy(from_logits=True,
                                                                          name="task"),
                           "accuracy"])
    initial = model.evaluate(x, y, verbose=0, return_dict=True)
    history = model.fit(x, y, batch_size=32, epochs=1, verbose=0, shuffle=False).history
    results[name] = initial, {k: v[0] for k, v in history.items()}
  (lnx_init, lnx_epoch), (keras_init, keras_epoch) = results["lnx"], results["keras"]
  assert lnx_init["task"] == pytest.approx(keras_init["task"], rel=0.3, abs=0.2)
  assert lnx_epoch["task"] == pytest.approx(keras_epoch["task"], rel=0.25, abs=0.1)
  assert abs(lnx_epoch["accuracy"] - keras_epoch["accuracy"]) < 0.2
  # The full loss adds the LilNetX terms on top of the task loss.
  assert lnx_epoch["loss"] > lnx_epoch["task"]


# -------------------------------------------------------------------------------------------------
# Unsupported Keras arguments.


@pytest.mark.parametrize("make, argument", [
    (lambda: lnx.Conv2D(4, 3, groups=2), "groups"),
    (lambda: lnx.Conv2D(4, 3, kernel_regularizer="l2"), "kernel_regularizer"),
    (lambda: lnx.Conv2D(4, 3, kernel_constraint="max_norm"), "kernel_constraint"),
    (lambda: lnx.Dense(4, kernel_regularizer="l1"), "kernel_regularizer"),
    (lambda: lnx.Dense(4, kernel_constraint="non_neg"), "kernel_constraint"),
    (lambda: lnx.DepthwiseConv2D(3, depthwise_regularizer="l2"), "depthwise_regularizer"),
    (lambda: lnx.DepthwiseConv2D(3, depthwise_constraint="max_norm"), "depthwise_constraint"),
])
def test_unsupported_keras_arguments(make, argument):
  with pytest.raises(errors.UnsupportedLayerError) as info:
    make()
  assert isinstance(info.value, ValueError)
  assert isinstance(info.value, errors.LilNetXError)
  assert argument in str(info.value)


# -------------------------------------------------------------------------------------------------
# Decoder parametrization: stored relative to the latent step, the scalar as a log-gain.


@pytest.mark.parametrize("make, shape", [
    (lambda: lnx.Dense(8, rate_weight=0.0, slice_weight=0.0, l2_weight=0.0), (16, 12)),
    (lambda: lnx.Conv2D(8, 3, rate_weight=0.0, slice_weight=0.0, l2_weight=0.0), (4, 6, 6, 3)),
])
def test_adam_cannot_drive_the_decoder_through_zero(make, shape):
  """A loss that only wants smaller outputs pushes the decoder down at every step. Stored as Ψ,
  Adam's absolute steps of ~lr crossed zero after Ψ/lr steps (s ≈ 0.01 here: one step at
  lr 0.01); stored relative to s, Ψ moves by at most a factor e^{±lr} per step."""
  x = tf.random.stateless_normal(shape, (1, 2))
  layer = make()
  layer(x)
  group = layer.group
  step = float(group.latent_step.numpy())
  lr, steps = 0.01, 30
  assert step / lr < steps        # the old parametrization would have crossed zero
  optimizer = tf.keras.optimizers.Adam(lr)
  start = group.decoder_matrix().numpy()
  for _ in range(steps):
    with tf.GradientTape() as tape:
      loss = tf.reduce_mean(tf.square(layer(x, training=True)))
    grads = tape.gradient(loss, layer.trainable_weights)
    optimizer.apply_gradients(zip(grads, layer.trainable_weights))
  end = group.decoder_matrix().numpy()
  if group.slice_size == 1:
    assert end < start                                        # it was pushed down ...
    assert end >= start * np.exp(-1.01 * lr * steps)          # ... by e^{-lr} per step at most
  else:
    diagonal = np.diag(end) / np.diag(start)
    assert np.all(diagonal < 1) and np.all(diagonal >= 1 - 1.01 * lr * steps)


def test_scalar_decoder_is_positive_and_starts_at_the_step():
  layer = lnx.Dense(3)
  layer(tf.zeros((1, 5)))
  group = layer.group
  assert float(group.decoder.numpy()) == 0.0          # ρ = 0: Ψ = s
  assert float(group.decoder_matrix()) == pytest.approx(float(group.latent_step.numpy()))
  group.decoder.assign(-50.0)
  assert float(group.decoder_matrix()) > 0


@pytest.mark.parametrize("psi, expected", [(0.02, None), (-0.01, errors.ModelMismatchError)])
def test_absolute_decoder_of_old_files_is_converted(psi, expected):
  layer = lnx.Dense(3)
  layer(tf.zeros((1, 5)))
  group = layer.group
  kernel = layer.kernel.numpy()   # at Ψ = s, which is not 0.02
  if expected is not None:
    with pytest.raises(expected, match="collapsed"):
      group.from_absolute_decoder(np.float32(psi))
    return
  group.from_absolute_decoder(np.float32(psi))
  assert float(group.decoder_matrix()) == pytest.approx(psi, rel=1e-6)
  np.testing.assert_allclose(layer.kernel.numpy(), psi * np.round(layer.latent.numpy())[..., 0],
                             rtol=1e-5)
  assert not np.allclose(layer.kernel.numpy(), kernel)
