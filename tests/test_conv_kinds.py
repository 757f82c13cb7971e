"""Every convolution kind as a LilNetX layer: Conv1D/3D, DepthwiseConv1D, SeparableConv1D/2D
and Conv1D/2D/3DTranspose (Conv2D / DepthwiseConv2D as the reference). For each: the stock
layer's output shape, the decoded kernels are the forward's, `.keras` save/load, convert's warm
start, bit-exact compress/decompress, and exact slimming with fewer channels."""

import warnings

import numpy as np
import pytest
import tensorflow as tf

import lilnetx_tf as lnx
from lilnetx_tf import errors
from lilnetx_tf.layers import kernel_latents, lilnetx_layers

L = tf.keras.layers

# name -> (LilNetX class, stock class, arguments, input shape (no batch), group keys)
KINDS = {
    "conv1d": (lnx.Conv1D, L.Conv1D, dict(kernel_size=3, padding="causal"), (9, 3), ["conv3"]),
    "conv2d": (lnx.Conv2D, L.Conv2D, dict(kernel_size=3, padding="same"), (6, 6, 3),
               ["conv3x3"]),
    "conv3d": (lnx.Conv3D, L.Conv3D, dict(kernel_size=(3, 3, 2), padding="same"), (4, 4, 4, 3),
               ["conv3x3x2"]),
    "depthwise1d": (lnx.DepthwiseConv1D, L.DepthwiseConv1D,
                    dict(kernel_size=3, depth_multiplier=2, padding="same"), (9, 3), ["conv3"]),
    "separable1d": (lnx.SeparableConv1D, L.SeparableConv1D,
                    dict(kernel_size=3, depth_multiplier=2, padding="same"), (9, 3),
                    ["conv3", "conv1"]),
    "separable2d": (lnx.SeparableConv2D, L.SeparableConv2D,
                    dict(kernel_size=3, strides=2, padding="same"), (7, 7, 3),
                    ["conv3x3", "conv1x1"]),
    "transpose1d": (lnx.Conv1DTranspose, L.Conv1DTranspose, dict(kernel_size=3, strides=2),
                    (5, 3), ["conv3"]),
    "transpose2d": (lnx.Conv2DTranspose, L.Conv2DTranspose,
                    dict(kernel_size=3, strides=2, padding="same"), (4, 4, 3), ["conv3x3"]),
    "transpose3d": (lnx.Conv3DTranspose, L.Conv3DTranspose,
                    dict(kernel_size=(2, 3, 1), strides=(2, 1, 1)), (3, 3, 3, 3), ["conv2x3x1"]),
}
FILTERS = 4


def _arguments(name: str, **extra) -> dict:
  _, stock, arguments, _, _ = KINDS[name]
  if not issubclass(stock, (L.DepthwiseConv1D, L.DepthwiseConv2D)):
    arguments = dict(arguments, filters=FILTERS)
  return {**arguments, **extra}


def _inputs(name: str, batch: int = 2) -> np.ndarray:
  shape = KINDS[name][3]
  return np.random.default_rng(1).normal(size=(batch,) + shape).astype(np.float32)


def _model(name: str, lilnetx: bool = True, stacked: bool = False) -> tf.keras.Model:
  """Input → layer (→ a second one of the same kind) → global pooling → Dense."""
  lnx_class, stock, _, shape, _ = KINDS[name]
  cls = lnx_class if lilnetx else stock
  inputs = tf.keras.Input(shape)
  x = cls(**_arguments(name, activation="relu"), name="first")(inputs)
  if stacked:
    x = cls(**_arguments(name), name="second")(x)
  x = L.Flatten()(x)
  return tf.keras.Model(inputs, (lnx.Dense if lilnetx else L.Dense)(3, name="head")(x))


def _forward_kernels(layer) -> list:
  """The decoded kernels (and bias) as the stock layer's `set_weights` takes them."""
  names = [n for _, n in kernel_latents(layer)]
  weights = [np.asarray(getattr(layer, n)) for n in names]
  return weights + ([layer.bias.numpy()] if layer.use_bias else [])


@pytest.mark.parametrize("name", sorted(KINDS))
def test_shape_groups_and_forward_match_the_stock_layer(name):
  lnx_class, stock_class, _, _, keys = KINDS[name]
  x = _inputs(name)
  layer, stock = lnx_class(**_arguments(name)), stock_class(**_arguments(name))
  y = layer(x)
  assert y.shape == stock(x).shape
  assert [l.group_key for l, _ in kernel_latents(layer)] == keys
  assert len(layer.losses) == 3 * len(keys)   # rate (leader), slices and L2 of every latent
  # The forward pass uses exactly the decoded kernels.
  stock.set_weights(_forward_kernels(layer))
  np.testing.assert_array_equal(stock(x).numpy(), y.numpy())
  # Zero latents decode to zero kernels: every slice of a LilNetX layer is one (in, out) pair.
  for latent, _ in kernel_latents(layer):
    latent.latent_variable.assign(tf.zeros_like(latent.latent_variable))
  assert all(not np.any(w) for w in _forward_kernels(layer)[:len(keys)])


@pytest.mark.parametrize("name", sorted(KINDS))
def test_get_config_round_trip(name):
  lnx_class = KINDS[name][0]
  layer = lnx_class(**_arguments(name), rate_weight=0.5, slice_weight=0.25, boundary=1.0)
  config = layer.get_config()
  again = lnx_class.from_config(config)
  assert again.get_config() == config
  assert config["rate_weight"] == 0.5 and config["boundary"] == 1.0


@pytest.mark.parametrize("name", ["conv1d", "separable2d", "transpose2d"])
def test_bad_arguments_are_typed_errors(name):
  lnx_class = KINDS[name][0]
  with pytest.raises(errors.InvalidArgumentError):
    lnx_class(**_arguments(name), rate_weight=-1.0)
  regularizer = "pointwise_regularizer" if name.startswith("separable") else "kernel_regularizer"
  with pytest.raises(errors.UnsupportedLayerError):
    lnx_class(**_arguments(name), **{regularizer: "l2"})


def test_grouped_convolutions_are_refused():
  with pytest.raises(errors.UnsupportedLayerError, match="grouped"):
    lnx.Conv1D(4, 3, groups=2)


@pytest.mark.parametrize("file_name", ["model.keras", "model.h5"])
@pytest.mark.parametrize("name", sorted(KINDS))
def test_keras_save_and_load(name, file_name, tmp_path):
  model = _model(name)
  x = _inputs(name)
  expected = model(x).numpy()
  path = str(tmp_path / file_name)   # HDF5 needs unique weight names within a layer
  model.save(path)
  restored = tf.keras.models.load_model(path)
  assert type(restored.get_layer("first")) is KINDS[name][0]
  np.testing.assert_array_equal(restored(x).numpy(), expected)
  keys = {l.group_key for l in lilnetx_layers(restored)}
  assert set(KINDS[name][4]) <= keys
  # One registry: every latent shares the model's groups.
  from lilnetx_tf.layers import registry as registry_lib
  assert len({id(registry_lib.registry_of(l)) for l in lilnetx_layers(restored)}) == 1


@pytest.mark.filterwarnings("ignore:Epoch 1. the LilNetX penalties")  # a task loss of ~0
@pytest.mark.parametrize("name", sorted(KINDS))
def test_convert_warm_starts_from_the_stock_layer(name):
  model = _model(name, lilnetx=False, stacked=True)
  x = _inputs(name)
  expected = model(x).numpy()
  with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    converted = lnx.convert(model, warm_start_resolution=0.01)
  assert not [w for w in caught if "kept as plain" in str(w.message)]
  for layer_name in ("first", "second", "head"):
    assert kernel_latents(converted.get_layer(layer_name))
  assert type(converted.get_layer("first")) is KINDS[name][0]
  got = converted(x).numpy()
  np.testing.assert_allclose(got, expected, atol=0.02 * np.abs(expected).max())
  # Trains: the latents move under fit.
  before = [l.latent_variable.numpy().copy() for l in lilnetx_layers(converted)]
  converted.compile(tf.keras.optimizers.Adam(1e-2), "mse")
  converted.fit(x, expected, epochs=1, verbose=0)
  after = [l.latent_variable.numpy() for l in lilnetx_layers(converted)]
  assert all(not np.array_equal(b, a) for b, a in zip(before, after))


@pytest.mark.parametrize("name", sorted(KINDS))
def test_compress_decompress_is_bit_exact(name, tmp_path):
  model = _model(name, stacked=True)
  x = _inputs(name, batch=4)
  path = str(tmp_path / "model.lnx")
  report = lnx.compress(model, path, estimate=False)
  restored = lnx.decompress(path)
  np.testing.assert_array_equal(restored(x).numpy(), model(x).numpy())
  for a, b in zip(lilnetx_layers(model), lilnetx_layers(restored)):
    np.testing.assert_array_equal(a.integer_latent.numpy(), b.integer_latent.numpy())
  assert set(KINDS[name][4]) <= {g.key for g in report.groups}


def _kill_outputs(layer, dead: list) -> None:
  """Zeroes the weights of `layer`'s output channels `dead` (the last kernel's columns)."""
  latents = kernel_latents(layer)
  if latents:
    latent = latents[-1][0]
    values = latent.latent_variable.numpy()
    values[:, dead, :] = 0
    latent.latent_variable.assign(values)
    return
  kernels = layer.get_weights()
  index = len(kernels) - 2 if layer.use_bias else len(kernels) - 1
  if isinstance(layer, (L.Conv1DTranspose, L.Conv2DTranspose, L.Conv3DTranspose)):
    kernels[index][..., dead, :] = 0
  else:
    kernels[index][..., dead] = 0
  layer.set_weights(kernels)


def _slim_model(name: str, lilnetx: bool) -> tf.keras.Model:
  """`_model(stacked=True)`; a depthwise conv's outputs are tied to its inputs, so for one it
  is Input → Conv1D "first" → depthwise "second" → Flatten → Dense."""
  if "depthwise" not in name:
    return _model(name, lilnetx=lilnetx, stacked=True)
  lnx_class, stock, _, shape, _ = KINDS[name]
  inputs = tf.keras.Input(shape)
  x = (lnx.Conv1D if lilnetx else L.Conv1D)(FILTERS, 1, activation="relu", name="first")(inputs)
  x = (lnx_class if lilnetx else stock)(**_arguments(name), name="second")(x)
  x = L.Flatten()(x)
  return tf.keras.Model(inputs, (lnx.Dense if lilnetx else L.Dense)(3, name="head")(x))


@pytest.mark.parametrize("lilnetx", [True, False], ids=["lilnetx", "stock"])
@pytest.mark.parametrize("name", sorted(KINDS))
def test_slim_removes_dead_channels_exactly(name, lilnetx, tmp_path):
  model = _slim_model(name, lilnetx)
  _kill_outputs(model.get_layer("first"), [0, 2])
  x = _inputs(name, batch=3)
  slim = lnx.slim(model, inputs=[x])      # checks max |slim − model| itself
  np.testing.assert_allclose(slim(x).numpy(), model(x).numpy(), rtol=1e-5, atol=1e-5)
  removed = slim.slim_info.removed_channels
  assert removed["first"] == (FILTERS, FILTERS - 2)
  if "depthwise" in name:   # multiplier 2: each removed input takes two outputs along
    assert removed["second"] == (2 * FILTERS, 2 * FILTERS - 4)
  else:                     # the second layer reads two channels fewer
    assert slim.get_layer("second").get_weights()[0].size < \
        model.get_layer("second").count_params()
  assert not any(lilnetx_layers(slim))
  assert type(slim.get_layer("second")) is KINDS[name][1]
  if lilnetx:   # the model file's inference-only path zeroes the same channels' parameters
    path = str(tmp_path / "model.lnx")
    lnx.compress(model, path, inference_only=True, estimate=False)
    np.testing.assert_allclose(lnx.decompress(path)(x).numpy(), model(x).numpy(),
                               rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name", sorted(KINDS))
def test_slim_folds_batchnorm_into_every_kind(name):
  lnx_class, _, _, shape, _ = KINDS[name]
  rng = np.random.default_rng(2)
  inputs = tf.keras.Input(shape)
  x = lnx_class(**_arguments(name), name="first")(inputs)
  bn = L.BatchNormalization(name="bn")
  x = L.ReLU()(bn(x))
  x = L.Flatten()(x)
  model = tf.keras.Model(inputs, lnx.Dense(3, name="head")(x))
  width = bn.gamma.shape[0]
  bn.set_weights([rng.uniform(0.5, 2, width), rng.normal(size=width),
                  rng.normal(size=width), rng.uniform(0.5, 2, width)])
  x = _inputs(name, batch=3)
  slim = lnx.slim(model, inputs=[x])
  assert slim.slim_info.folded_batchnorms == 1
  assert not [l for l in slim.layers if isinstance(l, L.BatchNormalization)]
  np.testing.assert_allclose(slim(x).numpy(), model(x).numpy(), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("name", ["separable2d", "transpose1d", "conv3d"])
def test_convert_keeps_lilnetx_layers_of_these_kinds(name):
  model = _model(name, stacked=True)
  x = _inputs(name)
  expected = model(x).numpy()
  copied = lnx.convert(model, layers=[])       # unselected LilNetX layers keep their latents
  np.testing.assert_array_equal(copied(x).numpy(), expected)
  assert type(copied.get_layer("first")) is KINDS[name][0]
  again = lnx.convert(model, warm_start_resolution=0.01)   # warm start from decoded kernels
  np.testing.assert_allclose(again(x).numpy(), expected, atol=0.02 * np.abs(expected).max())


def test_separable_kernels_share_the_groups_of_other_layers():
  inputs = tf.keras.Input((8, 8, 3))
  x = lnx.Conv2D(4, 3, padding="same")(inputs)
  x = lnx.SeparableConv2D(4, 3, padding="same")(x)
  x = lnx.Conv2D(4, 1)(x)
  model = tf.keras.Model(inputs, x)
  groups = {}
  for latent in lilnetx_layers(model):
    groups.setdefault(latent.group_key, set()).add(id(latent.group))
  assert sorted(groups) == ["conv1x1", "conv3x3"]
  assert all(len(ids) == 1 for ids in groups.values())
  assert sum(1 for l in lilnetx_layers(model) if l.group_key == "conv3x3") == 2


@pytest.mark.parametrize("name", ["conv3d", "separable1d", "transpose2d"])
def test_export_checks_tflite_of_the_slim_model(name, tmp_path):
  model = _slim_model(name, lilnetx=True)
  _kill_outputs(model.get_layer("first"), [0, 2])
  report = lnx.export(model, str(tmp_path / "out"), formats=("tflite",))
  assert report.macs_after < report.macs_before
  assert report.tflite_max_difference <= 1e-5 * report.output_scale
  assert list(report.removed_channels["first"]) == [FILTERS, FILTERS - 2]
