"""Reference networks as Keras Functional models, in LilNetX or plain Keras layers.

    import lilnetx_tf as lnx
    from lilnetx_tf import models
    net = models.resnet20()                     # LilNetX layers (lnx.Conv2D / lnx.Dense)
    twin = models.resnet20(layers="plain")      # the same architecture in stock Keras layers

Every builder takes `layers` ("lnx" or "plain") and, for finer control, `conv_layer` /
`dense_layer` factories that override it. A factory is called like the Keras constructor it
replaces, `conv_layer(filters, kernel_size, **kwargs)` / `dense_layer(units, **kwargs)`, and
must return a layer, e.g. `functools.partial(lnx.Conv2D, slice_weight=1e-3)`.

Builders:
  resnet20      CIFAR ResNet-20 (He et al. 2016): 3×3 conv stem, 3 stages × 3 basic blocks of
                16/32/64 (× width) channels, conv-BN-ReLU, shortcuts where the shape changes
                either 1×1-conv + BN projections (option B) or parameter-free subsampling and
                zero channel padding (option A, as in the paper and the LilNetX reference),
                global average pooling, dense classifier.
  resnet56      the same with 9 blocks per stage.
  vgg16_cifar   VGG-16 for 32×32 inputs: 13 3×3 conv-BN-ReLU layers in 5 blocks with max
                pooling, then a dense classifier (the usual CIFAR variant: 512 → classes).
  lenet5        LeNet-5 (Caffe variant used by LilNetX): conv 20@5×5, pool, conv 50@5×5, pool,
                flatten, dense 500, dense classes.
  lenet300_100  MLP 784-300-100-classes.

Classifier outputs are logits (no softmax).
"""

from typing import Callable, Optional, Sequence

import tensorflow as tf

from lilnetx_tf import errors
from lilnetx_tf import validation
from lilnetx_tf.layers import channel_padding
from lilnetx_tf.layers import conv as lnx_conv
from lilnetx_tf.layers import dense as lnx_dense

__all__ = ["resnet20", "resnet56", "vgg16_cifar", "lenet5", "lenet300_100", "BUILDERS", "build"]

LayerFactory = Callable[..., tf.keras.layers.Layer]


def _factories(layers: str, conv_layer: Optional[LayerFactory],
               dense_layer: Optional[LayerFactory]) -> tuple[LayerFactory, LayerFactory]:
  if layers == "lnx":
    conv, dense = lnx_conv.Conv2D, lnx_dense.Dense
  elif layers == "plain":
    conv, dense = tf.keras.layers.Conv2D, tf.keras.layers.Dense
  else:
    raise errors.InvalidArgumentError(f"`layers` must be 'lnx' or 'plain', got {layers!r}.")
  return conv_layer or conv, dense_layer or dense


def _conv_bn(x, conv, filters: int, kernel_size: int, strides: int, name: str, relu: bool):
  x = conv(filters, kernel_size, strides=strides, padding="same", use_bias=False,
           kernel_initializer="he_normal", name=f"{name}_conv")(x)
  x = tf.keras.layers.BatchNormalization(name=f"{name}_bn")(x)
  return tf.keras.layers.ReLU(name=f"{name}_relu")(x) if relu else x


def _projection(x, conv, filters: int, strides: int, name: str):
  return _conv_bn(x, conv, filters, 1, strides, name, relu=False)


def _zero_pad(x, conv, filters: int, strides: int, name: str):
  del conv  # parameter-free
  if strides != 1:
    x = tf.keras.layers.MaxPooling2D(1, strides=strides, name=f"{name}_subsample")(x)
  extra = filters - int(x.shape[-1])
  if extra < 0:
    raise errors.InvalidArgumentError(
        f"A zero-padding shortcut cannot narrow {x.shape[-1]} channels to {filters}.")
  return channel_padding.ChannelPadding((extra // 2, extra - extra // 2), name=f"{name}_pad")(x)


def resnet20(width: float = 1, num_classes: int = 10, input_shape: Sequence[int] = (32, 32, 3),
             layers: str = "lnx", conv_layer: Optional[LayerFactory] = None,
             dense_layer: Optional[LayerFactory] = None, blocks_per_stage: int = 3,
             shortcut: str = "projection", name: str = "resnet20") -> tf.keras.Model:
  """CIFAR ResNet-20 (3 stages × `blocks_per_stage` basic blocks, 16/32/64 × `width` channels).

  Stage s > 0 starts with stride 2. Its first block's shortcut is, for `shortcut`="projection",
  a 1×1 conv (stride 2) + BN; for "zero_pad", the input subsampled by 2 and zero-padded to the
  new width (no parameters). `blocks_per_stage`=n gives ResNet-(6n+2) (n=3: ResNet-20, ...).
  """
  if shortcut not in ("projection", "zero_pad"):
    raise errors.InvalidArgumentError(
        f"`shortcut` must be 'projection' or 'zero_pad', got {shortcut!r}.")
  conv, dense = _factories(layers, conv_layer, dense_layer)
  num_classes = validation.positive_int("num_classes", num_classes)
  blocks_per_stage = validation.positive_int("blocks_per_stage", blocks_per_stage)
  if width <= 0:
    raise errors.InvalidArgumentError(f"`width` must be positive, got {width!r}.")
  widths = [max(1, int(round(c * width))) for c in (16, 32, 64)]
  inputs = tf.keras.Input(tuple(input_shape), name="image")
  x = _conv_bn(inputs, conv, widths[0], 3, 1, "stem", relu=True)
  for stage, filters in enumerate(widths):
    for block in range(blocks_per_stage):
      prefix = f"stage{stage + 1}_block{block + 1}"
      strides = 2 if stage > 0 and block == 0 else 1
      y = _conv_bn(x, conv, filters, 3, strides, f"{prefix}_1", relu=True)
      y = _conv_bn(y, conv, filters, 3, 1, f"{prefix}_2", relu=False)
      if strides != 1 or x.shape[-1] != filters:
        skip = _projection if shortcut == "projection" else _zero_pad
        skip_input = skip(x, conv, filters, strides, f"{prefix}_shortcut")
      else:
        skip_input = x
      x = tf.keras.layers.Add(name=f"{prefix}_add")([skip_input, y])
      x = tf.keras.layers.ReLU(name=f"{prefix}_out")(x)
  x = tf.keras.layers.GlobalAveragePooling2D(name="pool")(x)
  outputs = dense(num_classes, name="logits")(x)
  return tf.keras.Model(inputs, outputs, name=name)


def resnet56(width: float = 1, num_classes: int = 10, input_shape: Sequence[int] = (32, 32, 3),
             layers: str = "lnx", conv_layer: Optional[LayerFactory] = None,
             dense_layer: Optional[LayerFactory] = None, shortcut: str = "projection",
             name: str = "resnet56") -> tf.keras.Model:
  """CIFAR ResNet-56: `resnet20` with 9 basic blocks per stage."""
  return resnet20(width=width, num_classes=num_classes, input_shape=input_shape, layers=layers,
                  conv_layer=conv_layer, dense_layer=dense_layer, blocks_per_stage=9,
                  shortcut=shortcut, name=name)


def vgg16_cifar(num_classes: int = 10, input_shape: Sequence[int] = (32, 32, 3),
                layers: str = "lnx", conv_layer: Optional[LayerFactory] = None,
                dense_layer: Optional[LayerFactory] = None, width: float = 1,
                name: str = "vgg16_cifar") -> tf.keras.Model:
  """VGG-16 with BN for 32×32 inputs: 64,64,M,128,128,M,256×3,M,512×3,M,512×3,M → dense."""
  conv, dense = _factories(layers, conv_layer, dense_layer)
  num_classes = validation.positive_int("num_classes", num_classes)
  plan = [[64, 64], [128, 128], [256, 256, 256], [512, 512, 512], [512, 512, 512]]
  inputs = tf.keras.Input(tuple(input_shape), name="image")
  x = inputs
  for b, block in enumerate(plan):
    for i, filters in enumerate(block):
      x = _conv_bn(x, conv, max(1, int(round(filters * width))), 3, 1,
                   f"block{b + 1}_{i + 1}", relu=True)
    x = tf.keras.layers.MaxPooling2D(2, name=f"block{b + 1}_pool")(x)
  x = tf.keras.layers.Flatten(name="flatten")(x)
  outputs = dense(num_classes, name="logits")(x)
  return tf.keras.Model(inputs, outputs, name=name)


def lenet5(num_classes: int = 10, input_shape: Sequence[int] = (28, 28, 1), layers: str = "lnx",
           conv_layer: Optional[LayerFactory] = None,
           dense_layer: Optional[LayerFactory] = None, name: str = "lenet5") -> tf.keras.Model:
  """LeNet-5 (Caffe): conv 20@5×5 → maxpool → conv 50@5×5 → maxpool → 500 → classes."""
  conv, dense = _factories(layers, conv_layer, dense_layer)
  num_classes = validation.positive_int("num_classes", num_classes)
  inputs = tf.keras.Input(tuple(input_shape), name="image")
  x = conv(20, 5, activation="relu", name="conv1")(inputs)
  x = tf.keras.layers.MaxPooling2D(2, name="pool1")(x)
  x = conv(50, 5, activation="relu", name="conv2")(x)
  x = tf.keras.layers.MaxPooling2D(2, name="pool2")(x)
  x = tf.keras.layers.Flatten(name="flatten")(x)
  x = dense(500, activation="relu", name="fc1")(x)
  outputs = dense(num_classes, name="logits")(x)
  return tf.keras.Model(inputs, outputs, name=name)


def lenet300_100(num_classes: int = 10, input_shape: Sequence[int] = (28, 28, 1),
                 layers: str = "lnx", conv_layer: Optional[LayerFactory] = None,
                 dense_layer: Optional[LayerFactory] = None,
                 name: str = "lenet300_100") -> tf.keras.Model:
  """LeNet-300-100: flatten → 300 → 100 → classes, ReLU. `conv_layer` is accepted and unused."""
  del conv_layer
  _, dense = _factories(layers, None, dense_layer)
  num_classes = validation.positive_int("num_classes", num_classes)
  inputs = tf.keras.Input(tuple(input_shape), name="image")
  x = tf.keras.layers.Flatten(name="flatten")(inputs)
  x = dense(300, activation="relu", name="fc1")(x)
  x = dense(100, activation="relu", name="fc2")(x)
  outputs = dense(num_classes, name="logits")(x)
  return tf.keras.Model(inputs, outputs, name=name)


BUILDERS = dict(resnet20=resnet20, resnet56=resnet56, vgg16_cifar=vgg16_cifar, lenet5=lenet5,
                lenet300_100=lenet300_100)


def build(name: str, **kwargs) -> tf.keras.Model:
  """Builds a model by name (one of `BUILDERS`)."""
  if name not in BUILDERS:
    raise errors.InvalidArgumentError(
        f"Unknown model {name!r}; choose from {sorted(BUILDERS)}.")
  return BUILDERS[name](**kwargs)


