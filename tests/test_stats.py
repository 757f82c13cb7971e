"""`lnx.stats` and `CompressionMetrics`: exact counts on hand-set latents, History figures, and
end-to-end trade-offs on small synthetic data."""

import numpy as np
import pytest
import tensorflow as tf

import lilnetx_tf as lnx

LOSS = tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True)


def _set_integer_latent(layer, q):
  """Makes `layer.integer_latent` equal `q` exactly."""
  layer.latent_variable.assign(np.asarray(q, np.float32) * layer.group.latent_step.numpy())
  np.testing.assert_array_equal(layer.integer_latent.numpy(), q)


def _hand_set_model():
  inputs = tf.keras.Input((8, 8, 3))
  conv = lnx.Conv2D(4, 3, name="conv")                            # 6x6 output, latent (3, 4, 9)
  depthwise = lnx.DepthwiseConv2D(3, name="depthwise")            # 4x4 output, latent (4, 1, 9)
  dense = lnx.Dense(2, name="dense")                              # latent (64, 2, 1)
  plain = tf.keras.layers.Dense(3, name="plain")                  # 2·3 MACs, not LilNetX
  x = tf.keras.layers.Flatten()(depthwise(conv(inputs)))
  model = tf.keras.Model(inputs, plain(dense(x)))

  q_conv = np.ones((3, 4, 9), np.int64) * 2
  q_conv[1, :, :] = 0              # dead input channel 1 (4 slices)
  q_conv[:, 3, :] = 0              # dead output channel 3 (3 slices, one shared with the above)
  q_conv[0, 0, :] = 0              # one more zero slice: 4 + 3 - 1 + 1 = 7 zero slices of 12
  q_conv[2, 2, 4] = 0              # a zero weight inside a live slice
  q_conv[2, 1, 0] = -3
  _set_integer_latent(conv, q_conv)

  q_dw = np.ones((4, 1, 9), np.int64)
  q_dw[2, 0, :] = 0                # depthwise channel 2 dead (in and out)
  _set_integer_latent(depthwise, q_dw)

  q_dense = np.ones((64, 2, 1), np.int64) * -1
  q_dense[:10] = 0                 # 10 dead inputs (20 zero slices)
  q_dense[20:, 1] = 0              # output 1 keeps only inputs 10..19
  _set_integer_latent(dense, q_dense)
  return model, (conv, depthwise, dense)


def test_stats_counts_on_hand_set_latents():
  model, (conv, depthwise, dense) = _hand_set_model()
  figures = lnx.stats(model)
  layers = figures["layers"]
  assert set(layers) == {"conv", "depthwise", "dense"}

  c = layers["conv"]
  assert (c["slices"], c["zero_slices"]) == (12, 7)
  assert (c["in_channels"], c["dead_in_channels"]) == (3, 1)
  assert (c["out_channels"], c["dead_out_channels"]) == (4, 1)
  assert (c["parameters"], c["nonzero_parameters"]) == (108, 5 * 9 - 1)
  assert c["macs_dense"] == 36 * 12 * 9
  assert c["macs_effective"] == 36 * 5 * 9
  assert c["macs_channel_pruned"] == 36 * 2 * 3 * 9
  assert c["group"] == "conv3x3"

  d = layers["depthwise"]
  assert (d["slices"], d["zero_slices"]) == (4, 1)
  assert (d["in_channels"], d["dead_in_channels"]) == (4, 1)
  assert (d["out_channels"], d["dead_out_channels"]) == (4, 1)
  assert (d["macs_dense"], d["macs_effective"], d["macs_channel_pruned"]) == (
      16 * 4 * 9, 16 * 3 * 9, 16 * 3 * 9)

  e = layers["dense"]
  assert (e["slices"], e["zero_slices"]) == (128, 20 + 44)
  assert (e["in_channels"], e["dead_in_channels"]) == (64, 10)
  assert (e["out_channels"], e["dead_out_channels"]) == (2, 0)
  assert (e["parameters"], e["nonzero_parameters"]) == (128, 64)
  assert (e["macs_dense"], e["macs_effective"], e["macs_channel_pruned"]) == (128, 64, 54 * 2)
  assert e["group"] == "dense"

  # Model totals.
  assert figures["slice_sparsity"] == pytest.approx((7 + 1 + 64) / (12 + 4 + 128))
  assert figures["in_channel_sparsity"] == pytest.approx((1 + 1 + 10) / (3 + 4 + 64))
  assert figures["out_channel_sparsity"] == pytest.approx((1 + 1 + 0) / (4 + 4 + 2))
  assert figures["latent_parameters"] == 108 + 36 + 128
  assert figures["nonzero_latent_parameters"] == 44 + 27 + 64
  assert figures["weight_sparsity"] == pytest.approx(1 - (44 + 27 + 64) / (108 + 36 + 128))
  plain_macs = 2 * 3
  assert figures["macs_dense"] == 36 * 12 * 9 + 16 * 4 * 9 + 128 + plain_macs
  assert figures["macs_effective"] == 36 * 5 * 9 + 16 * 3 * 9 + 64 + plain_macs
  assert figures["macs_channel_pruned"] == 36 * 6 * 9 + 16 * 3 * 9 + 108 + plain_macs
  assert figures["macs_ratio"] == pytest.approx(figures["macs_dense"] / figures["macs_effective"])
  assert figures["parameters"] == model.count_params()

  # Bits: the self-information of the rounded latents under each group's density.
  expected_bits = {
      layer.name: float(tf.reduce_sum(layer.group.bits(layer.integer_latent)))
      for layer in (conv, depthwise, dense)}
  for name, bits in expected_bits.items():
    assert layers[name]["bits"] == pytest.approx(bits, rel=1e-6)
    assert layers[name]["bytes"] == pytest.approx(bits / 8, rel=1e-6)
  assert figures["bits"] == pytest.approx(sum(expected_bits.values()), rel=1e-6)
  assert figures["bytes"] == pytest.approx(figures["bits"] / 8)


def test_stats_all_zero_and_all_live():
  model, (conv, depthwise, dense) = _hand_set_model()
  for layer in (conv, depthwise, dense):
    _set_integer_latent(layer, np.zeros(layer.latent_variable.shape, np.int64))
  figures = lnx.stats(model)
  assert figures["slice_sparsity"] == 1.0 and figures["weight_sparsity"] == 1.0
  assert figures["in_channel_sparsity"] == 1.0 and figures["out_channel_sparsity"] == 1.0
  assert figures["macs_effective"] == figures["macs_channel_pruned"] == 6
  for layer in (conv, depthwise, dense):
    _set_integer_latent(layer, np.ones(layer.latent_variable.shape, np.int64))
  figures = lnx.stats(model)
  assert figures["slice_sparsity"] == 0.0 and figures["weight_sparsity"] == 0.0
  assert figures["macs_ratio"] == 1.0
  assert figures["macs_dense"] == figures["macs_effective"] == figures["macs_channel_pruned"]


def _data(n=256, seed=0):
  rng = np.random.default_rng(seed)
  y = rng.integers(0, 2, n).astype("int32")
  x = rng.random((n, 8, 8, 3), dtype=np.float32)
  x[..., 0] += 0.3 * y[:, None, None]    # the class shows as a brighter first channel
  return x, y


def _small_model(**lnx_kwargs):
  return tf.keras.Sequential([
      tf.keras.Input((8, 8, 3)),
      lnx.Conv2D(8, 3, activation="relu", **lnx_kwargs),
      lnx.Conv2D(8, 3, activation="relu", **lnx_kwargs),
      tf.keras.layers.GlobalAveragePooling2D(),
      lnx.Dense(2, **lnx_kwargs),
  ])


def test_compression_metrics_in_history():
  x, y = _data(64)
  model = _small_model()
  model.compile(tf.keras.optimizers.Adam(0.01), LOSS)
  history = model.fit(x, y, batch_size=32, epochs=2, verbose=0,
                      callbacks=[lnx.callbacks.CompressionMetrics()])
  keys = ("lnx_kbytes", "lnx_slice_sparsity", "lnx_in_sparsity", "lnx_out_sparsity",
          "lnx_macs_ratio")
  for key in keys:
    assert len(history.history[key]) == 2 and np.all(np.isfinite(history.history[key]))
  figures = lnx.stats(model)
  assert history.history["lnx_kbytes"][-1] == pytest.approx(figures["bytes"] / 1024)
  assert history.history["lnx_slice_sparsity"][-1] == pytest.approx(figures["slice_sparsity"])
  assert history.history["lnx_macs_ratio"][-1] == pytest.approx(figures["macs_ratio"])
  assert history.history["lnx_kbytes"][-1] > 0


def _train(rate_weight, slice_weight, epochs=6):
  tf.keras.utils.set_random_seed(0)
  x, y = _data()
  model = _small_model(rate_weight=rate_weight, slice_weight=slice_weight)
  model.compile(tf.keras.optimizers.Adam(0.01), LOSS, metrics=["accuracy"])
  model.fit(x, y, batch_size=32, epochs=epochs, verbose=0, shuffle=False)
  xv, yv = _data(256, seed=1)
  accuracy = model.evaluate(xv, yv, verbose=0, return_dict=True)["accuracy"]
  return lnx.stats(model), accuracy


def test_end_to_end_trade_offs():
  """Raising λ_I shrinks the estimated file, raising λ_G raises slice sparsity, and the model
  still learns the task (validation accuracy well above chance)."""
  base, base_accuracy = _train(rate_weight=0.01, slice_weight=1e-4)
  small, small_accuracy = _train(rate_weight=5.0, slice_weight=1e-4)
  sparse, sparse_accuracy = _train(rate_weight=0.01, slice_weight=0.05)
  assert small["bytes"] < 0.9 * base["bytes"], (small["bytes"], base["bytes"])
  assert sparse["slice_sparsity"] > base["slice_sparsity"] + 0.1, (
      sparse["slice_sparsity"], base["slice_sparsity"])
  assert base_accuracy > 0.7
  assert max(small_accuracy, sparse_accuracy) > 0.6


def test_stats_of_a_model_without_lilnetx_layers_are_zero():
  model = tf.keras.Sequential([tf.keras.Input((4,)), tf.keras.layers.Dense(3)])
  figures = lnx.stats(model)
  assert figures["latent_parameters"] == 0 and figures["bytes"] == 0
  assert figures["weight_sparsity"] == figures["slice_sparsity"] == 0.0
  assert figures["parameters"] == 15 and figures["macs_dense"] == 12
