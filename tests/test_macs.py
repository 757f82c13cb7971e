"""`lilnetx_tf.macs`: MAC counts of every Keras kernel-layer kind, in both data formats, and
their use by `stats` and the export report."""

import pytest
import tensorflow as tf

import lilnetx_tf as lnx
from lilnetx_tf import macs

L = tf.keras.layers

CASES = [  # (layer factory, input shape without batch, MACs per example worked out by hand)
    (lambda: L.Conv2D(4, 3, padding="same"), (8, 8, 3), 8 * 8 * 3 * 4 * 9),
    (lambda: L.Conv2D(4, 3, padding="same", data_format="channels_first"), (3, 8, 8),
     8 * 8 * 3 * 4 * 9),
    (lambda: lnx.Conv2D(4, 3, padding="same", data_format="channels_first"), (3, 8, 8),
     8 * 8 * 3 * 4 * 9),
    (lambda: L.Conv2D(4, 3, groups=2), (5, 5, 4), 3 * 3 * 9 * 2 * 4),
    (lambda: L.Conv1D(4, 3), (10, 3), 8 * 3 * 3 * 4),
    (lambda: L.Conv3D(2, 3), (5, 5, 5, 1), 27 * 27 * 2),
    (lambda: L.Conv2DTranspose(4, 3, strides=2), (4, 4, 2), 16 * 9 * 2 * 4),   # per input pixel
    (lambda: L.SeparableConv2D(4, 3), (5, 5, 2), 9 * (9 * 2 + 2 * 4)),
    (lambda: L.DepthwiseConv2D(3, depth_multiplier=2), (5, 5, 2), 9 * 9 * 2 * 2),
    (lambda: lnx.DepthwiseConv2D(3, depth_multiplier=2), (5, 5, 2), 9 * 9 * 2 * 2),
    (lambda: L.LocallyConnected2D(3, 2), (4, 4, 2), 9 * 4 * 2 * 3),
    (lambda: L.Dense(5), (7, 3), 7 * 3 * 5),
    (lambda: lnx.Dense(5), (3,), 3 * 5),
    (lambda: L.MaxPooling2D(), (4, 4, 2), 0),
]


@pytest.mark.parametrize("factory, shape, expected", CASES)
def test_layer_macs(factory, shape, expected):
  inputs = tf.keras.Input(shape)
  model = tf.keras.Model(inputs, factory()(inputs))
  assert macs.model_macs(model) == expected
  assert macs.model_macs(model) == expected


def test_a_layer_called_twice_counts_both_calls():
  conv = L.Conv2D(2, 3, padding="same")
  a, b = tf.keras.Input((4, 4, 1)), tf.keras.Input((6, 6, 1))
  model = tf.keras.Model([a, b], [conv(a), conv(b)])
  assert macs.model_macs(model) == (16 + 36) * 9 * 2


def test_unknown_sizes_count_zero():
  inputs = tf.keras.Input((None, None, 3))
  model = tf.keras.Model(inputs, L.Conv2D(2, 3)(inputs))
  assert macs.model_macs(model) == 0


def test_stats_adds_plain_layers_in_any_data_format():
  model = tf.keras.Sequential([
      tf.keras.Input((3, 8, 8)),
      lnx.Conv2D(4, 3, padding="same", data_format="channels_first"),
      L.Conv2D(2, 3, data_format="channels_first")])
  figures = lnx.stats(model)
  plain = 6 * 6 * 4 * 2 * 9
  assert figures["macs_dense"] == 8 * 8 * 3 * 4 * 9 + plain
  assert figures["macs_effective"] <= figures["macs_dense"]
  assert figures["macs_effective"] >= plain
