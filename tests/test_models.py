"""The reference model builders: architecture, parameter counts and the plain Keras twin."""

import numpy as np
import pytest
import tensorflow as tf

import lilnetx_tf as lnx
from lilnetx_tf import errors
from lilnetx_tf import models


def _count(model, cls):
  return sum(isinstance(l, cls) for l in model.layers)


def test_resnet20_architecture():
  model = models.resnet20(layers="plain")
  convs = [l for l in model.layers if isinstance(l, tf.keras.layers.Conv2D)]
  # 1 stem + 18 block convs + 2 projection shortcuts; 20 weight layers with the dense layer.
  assert len(convs) == 21
  assert sum(l.kernel_size == (1, 1) for l in convs) == 2
  assert _count(model, tf.keras.layers.Add) == 9
  assert _count(model, tf.keras.layers.BatchNormalization) == 21
  assert model.output_shape == (None, 10)
  # The well-known ~0.27M parameters of CIFAR ResNet-20 (with projection shortcuts + BN).
  assert 0.26e6 < model.count_params() < 0.29e6
  assert [l.filters for l in convs if l.name.endswith("block1_2_conv")] == [16, 32, 64]



def test_resnet20_zero_pad_shortcuts():
  plain = models.resnet20(layers="plain", shortcut="zero_pad")
  assert not any(l.kernel_size == (1, 1) for l in plain.layers
                 if isinstance(l, tf.keras.layers.Conv2D))
  assert _count(plain, lnx.layers.ChannelPadding) == 2
  # He et al.'s option A: 2 × (1×1 kernel + BN) fewer than with projections.
  projection = models.resnet20(layers="plain")
  assert projection.count_params() - plain.count_params() == (16 * 32 + 32 * 64) + 4 * (32 + 64)
  model = models.resnet20(shortcut="zero_pad")
  x = np.random.default_rng(0).standard_normal((2, 32, 32, 3)).astype(np.float32)
  restored = tf.keras.models.model_from_json(model.to_json())
  restored.set_weights(model.get_weights())
  np.testing.assert_allclose(restored(x), model(x), atol=1e-5)

def test_resnet56_architecture():
  model = models.build("resnet56", layers="plain")
  convs = [l for l in model.layers if isinstance(l, tf.keras.layers.Conv2D)]
  assert len(convs) == 1 + 54 + 2
  assert _count(model, tf.keras.layers.Add) == 27
  # The well-known ~0.85M parameters of CIFAR ResNet-56.
  assert 0.84e6 < model.count_params() < 0.87e6


def test_lnx_and_plain_twins_match():
  for name, shape in (("resnet20", (32, 32, 3)), ("lenet5", (28, 28, 1)),
                      ("lenet300_100", (28, 28, 1))):
    lnx_model = models.build(name)
    plain = models.build(name, layers="plain")
    assert [type(l).__name__ for l in lnx_model.layers] == [
        type(l).__name__ for l in plain.layers]
    assert any(lnx.is_lilnetx_layer(l) for l in lnx_model.layers)
    assert not any(lnx.is_lilnetx_layer(l) for l in plain.layers)
    assert lnx_model.output_shape == plain.output_shape
    x = np.zeros((1,) + shape, np.float32)
    assert lnx_model(x).shape == (1, 10)


def test_width_factory_and_vgg():
  model = models.resnet20(width=2, num_classes=100, layers="plain")
  assert model.output_shape == (None, 100)
  assert max(l.filters for l in model.layers if isinstance(l, tf.keras.layers.Conv2D)) == 128
  seen = []
  def conv(*args, **kwargs):
    seen.append(args)
    return tf.keras.layers.Conv2D(*args, **kwargs)
  vgg = models.vgg16_cifar(layers="plain", conv_layer=conv, width=0.25)
  assert len(seen) == 13 and vgg.output_shape == (None, 10)
  assert models.lenet5(layers="plain").count_params() == 431080
  assert models.lenet300_100(layers="plain").count_params() == 266610


def test_bad_arguments():
  with pytest.raises(errors.InvalidArgumentError):
    models.resnet20(layers="torch")
  with pytest.raises(errors.InvalidArgumentError):
    models.build("alexnet")
  with pytest.raises(ValueError):
    models.resnet20(num_classes=0)
  with pytest.raises(errors.InvalidArgumentError):
    models.resnet20(shortcut="option_c")
  with pytest.raises(errors.InvalidArgumentError):
    lnx.layers.ChannelPadding((1, -1))
