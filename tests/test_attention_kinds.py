"""LilNetX Embedding, EinsumDense and MultiHeadAttention: shapes, saving, convert, coding, slim."""

import warnings

import numpy as np
import pytest
import tensorflow as tf

import lilnetx_tf as lnx
from lilnetx_tf import errors
from lilnetx_tf import macs
from lilnetx_tf.layers import registry as registry_lib

L = tf.keras.layers
VOCAB, WIDTH, LENGTH, HEADS, HEAD_DIM = 40, 16, 10, 4, 4


def _ids(batch=3, length=LENGTH, seed=0):
  return np.random.default_rng(seed).integers(0, VOCAB, (batch, length)).astype("int64")


def _transformer(layers=L, length=LENGTH, name="t"):
  """A tiny text classifier: embedding, one encoder block (attention + FFN), pooling, head."""
  ids = tf.keras.Input((length,), dtype="int64")
  x = layers.Embedding(VOCAB, WIDTH, name="embed")(ids)
  a = layers.MultiHeadAttention(HEADS, HEAD_DIM, name="mha")(x, x)
  x = L.LayerNormalization(name="ln1")(L.Add()([x, a]))
  f = layers.Dense(2 * WIDTH, activation="relu", name="ffn1")(x)
  x = L.LayerNormalization(name="ln2")(L.Add()([x, layers.Dense(WIDTH, name="ffn2")(f)]))
  x = L.GlobalAveragePooling1D()(x)
  return tf.keras.Model(ids, layers.Dense(3, name="head")(x), name=name)


def _roundtrip_config(layer):
  config = layer.get_config()
  assert type(layer).from_config(dict(config)).get_config() == config   # Keras pops keys


# -------------------------------------------------------------------------------------------------
# Embedding.


def test_embedding_matches_stock_shapes_and_mask():
  ids = _ids()
  ours, stock = lnx.Embedding(VOCAB, 8, mask_zero=True), L.Embedding(VOCAB, 8, mask_zero=True)
  assert ours(ids).shape == stock(ids).shape
  assert ours.latent_variable.shape == (VOCAB, 8, 1)
  np.testing.assert_array_equal(ours.compute_mask(ids), stock.compute_mask(ids))
  _roundtrip_config(ours)


def test_embedding_group_lasso_is_over_token_rows():
  layer = lnx.Embedding(VOCAB, 8, rate_weight=0.0, l2_weight=0.0, slice_weight=1.0)
  layer(_ids())
  rows = np.linalg.norm(layer.latent.numpy()[..., 0], axis=1)
  num_slices = registry_lib.registry_of(layer).num_slices
  np.testing.assert_allclose(float(tf.add_n(layer.losses)), rows.sum() / num_slices, rtol=1e-5)


@pytest.mark.parametrize("kwargs, error", [
    (dict(input_dim=0, output_dim=4), errors.InvalidArgumentError),
    (dict(input_dim=5, output_dim=2.5), errors.InvalidArgumentError),
    (dict(input_dim=5, output_dim=4, sparse=True), errors.UnsupportedLayerError),
    (dict(input_dim=5, output_dim=4, embeddings_regularizer="l2"), errors.UnsupportedLayerError),
])
def test_embedding_rejects_bad_arguments(kwargs, error):
  with pytest.raises(error):
    lnx.Embedding(**kwargs)


# -------------------------------------------------------------------------------------------------
# EinsumDense.

EQUATIONS = [  # equation, output shape, bias axes, input shape (no batch), (inputs, outputs)
    ("ab,bc->ac", 6, "c", (5,), (5, 6)),
    ("abc,cde->abde", (LENGTH, 3, 4), "de", (LENGTH, 5), (5, 12)),       # query / key / value
    ("abcd,cde->abe", (LENGTH, 7), "e", (LENGTH, 3, 4), (12, 7)),         # attention output
    ("...b,bc->...c", 6, None, (LENGTH, 5), (5, 6)),
    ("abc,bcd->abd", (LENGTH, 6), "d", (LENGTH, 5), (5, LENGTH * 6)),    # one kernel per position
]


@pytest.mark.parametrize("equation, output_shape, bias_axes, input_shape, latent", EQUATIONS)
def test_einsum_dense_matches_stock_and_decodes_its_layout(equation, output_shape, bias_axes,
                                                           input_shape, latent):
  x = np.random.default_rng(1).standard_normal((2,) + input_shape).astype("float32")
  ours = lnx.EinsumDense(equation, output_shape, bias_axes=bias_axes)
  stock = L.EinsumDense(equation, output_shape, bias_axes=bias_axes)
  assert ours(x).shape == stock(x).shape
  assert ours.kernel.shape == stock.kernel.shape
  assert (ours.bias is None) == (stock.bias is None)
  assert tuple(ours.latent_variable.shape) == latent + (1,)
  model = tf.keras.Model(*(lambda i: (i, stock(i)))(tf.keras.Input(input_shape)))
  expected = np.prod(model.output_shape[1:]) * latent[0]   # each output sums `inputs` products
  assert macs.layer_macs(stock) == expected
  # The latent layout is a permutation of the kernel: integers in, the same integers out.
  integers = np.random.default_rng(2).integers(-5, 6, stock.kernel.shape).astype("float32")
  step = float(ours.group.latent_step.numpy())
  ours.latent_variable.assign(ours.kernel_to_latent(integers) * step)
  stock.kernel.assign(integers * step)
  if stock.bias is not None:
    stock.bias.assign(ours.bias)
  np.testing.assert_allclose(ours(x), stock(x), rtol=1e-5, atol=1e-6)
  _roundtrip_config(ours)


@pytest.mark.parametrize("equation, error", [
    ("ab,bc", errors.InvalidArgumentError), (3, errors.InvalidArgumentError),
    ("ab,bb->ab", errors.UnsupportedLayerError)])
def test_einsum_dense_rejects_bad_equations(equation, error):
  with pytest.raises(error):
    lnx.EinsumDense(equation, 4)


# -------------------------------------------------------------------------------------------------
# MultiHeadAttention.


def test_attention_matches_stock_shapes_and_shares_the_dense_group():
  model = _transformer(lnx)
  stock = _transformer()
  ids = _ids()
  assert model(ids).shape == stock(ids).shape
  mha = model.get_layer("mha")
  projections = mha.latent_kernels()
  assert all(isinstance(p, lnx.EinsumDense) for p in projections)
  assert [p.kernel.shape for p in projections] == [
      p.kernel.shape for p in (stock.get_layer("mha")._query_dense,
                               stock.get_layer("mha")._key_dense,
                               stock.get_layer("mha")._value_dense,
                               stock.get_layer("mha")._output_dense)]
  groups = registry_lib.registry_of(model.get_layer("embed")).groups
  assert list(groups) == ["dense"] and len(groups["dense"].members()) == 8
  _roundtrip_config(mha)


def test_attention_rejects_kernel_regularizer_and_bad_heads():
  with pytest.raises(errors.UnsupportedLayerError):
    lnx.MultiHeadAttention(2, 4, kernel_regularizer="l2")
  with pytest.raises(errors.InvalidArgumentError):
    lnx.MultiHeadAttention(0, 4)
  with pytest.raises(errors.InvalidArgumentError):
    lnx.MultiHeadAttention(2, 4, rate_weight=-1.0)


def test_saved_and_loaded_transformer_predicts_the_same(tmp_path):
  model = _transformer(lnx)
  model.compile("adam", tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True))
  model.fit(_ids(8), np.arange(8) % 3, epochs=1, verbose=0)
  path = str(tmp_path / "m.keras")
  model.save(path)
  loaded = tf.keras.models.load_model(path)
  np.testing.assert_array_equal(loaded(_ids()), model(_ids()))
  assert isinstance(loaded.get_layer("mha")._query_dense, lnx.EinsumDense)


# -------------------------------------------------------------------------------------------------
# convert, compress.


def _converted(resolution=0.1, length=LENGTH):
  original = _transformer(length=length)
  with warnings.catch_warnings():
    warnings.simplefilter("error")   # no layer with weights is left plain
    return original, lnx.convert(original, warm_start_resolution=resolution)


def test_convert_maps_every_kernel_keeps_names_and_warm_starts():
  original, model = _converted(0.01)
  assert [l.name for l in model.layers] == [l.name for l in original.layers]
  assert isinstance(model.get_layer("embed"), lnx.Embedding)
  assert isinstance(model.get_layer("mha"), lnx.MultiHeadAttention)
  assert len(lnx.layers.lilnetx_layers(model)) == 8
  assert macs.model_parameters(model) == macs.model_parameters(original) == \
      original.count_params()
  ids = _ids()
  reference = original(ids).numpy()
  difference = np.abs(model(ids).numpy() - reference).max()
  assert difference <= 0.01 * np.abs(reference).max()
  for name in ("_query_dense", "_output_dense"):   # each projection on the grid of its kernel
    old, new = (getattr(m.get_layer("mha"), name) for m in (original, model))
    np.testing.assert_allclose(new.kernel, old.kernel, atol=float(new.group.latent_step.numpy()))


def test_stats_of_two_blocks_count_every_projection_and_the_attention_products():
  ids = tf.keras.Input((LENGTH,), dtype="int64")
  x = L.Embedding(VOCAB, WIDTH)(ids)
  for _ in range(2):
    x = L.Add()([x, L.MultiHeadAttention(HEADS, HEAD_DIM)(x, x)])
  original = tf.keras.Model(ids, L.Dense(3)(L.GlobalAveragePooling1D()(x)))
  model = lnx.convert(original)
  latents = lnx.layers.lilnetx_layers(model)
  assert len({l.name for l in latents}) == len(latents) == 10   # blocks told apart
  mha = model.layers[2]
  assert [l for l, _ in lnx.layers.kernel_latents(mha)] == mha.latent_kernels()
  kernels = sum(w.shape.num_elements() for w in original.weights if "bias" not in w.name)
  summary = lnx.stats(model)
  assert summary["latent_parameters"] == kernels
  assert summary["macs_dense"] == macs.model_macs(original) > 0


def test_converting_a_lilnetx_transformer_again_starts_from_its_decoded_kernels():
  _, model = _converted()
  again = lnx.convert(model, warm_start_resolution=0.01)
  assert isinstance(again.get_layer("mha"), lnx.MultiHeadAttention)
  assert again.get_layer("mha")._query_dense is not model.get_layer("mha")._query_dense
  reference = model(_ids()).numpy()
  assert np.abs(again(_ids()).numpy() - reference).max() <= 0.01 * np.abs(reference).max()


def test_compress_decompress_is_bit_exact(tmp_path):
  _, model = _converted()
  model.compile("adam", tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True))
  model.fit(_ids(8), np.arange(8) % 3, epochs=1, verbose=0)
  lnx.compress(model, str(tmp_path / "m.lnx"))
  restored = lnx.decompress(str(tmp_path / "m.lnx"))
  np.testing.assert_array_equal(restored(_ids()), model(_ids()))
  for a, b in zip(lnx.layers.lilnetx_layers(model), lnx.layers.lilnetx_layers(restored)):
    np.testing.assert_array_equal(a.integer_latent, b.integer_latent)


# -------------------------------------------------------------------------------------------------
# slim: dead heads.


def _kill_head(mha, head, projection):
  """Zeroes one head's latents in the value (its output columns) or output (its input rows)."""
  layer = getattr(mha, projection)
  latent = layer.latent_variable.numpy()
  block = slice(head * HEAD_DIM, (head + 1) * HEAD_DIM)
  if projection == "_output_dense":
    latent[block] = 0
  else:
    latent[:, block] = 0
  layer.latent_variable.assign(latent)


@pytest.mark.parametrize("projection", ["_value_dense", "_output_dense"])
def test_slim_removes_a_dead_head_exactly(projection):
  _, model = _converted()
  mha = model.get_layer("mha")
  for layer in mha.latent_kernels():   # nonzero biases: a dead value head leaves a constant
    layer.bias.assign(np.random.default_rng(3).standard_normal(layer.bias.shape))
  _kill_head(mha, 1, projection)
  small = lnx.slim(model, rtol=1e-5)
  assert not any(lnx.is_lilnetx_layer(l) for l in small._flatten_layers())
  slim_mha = small.get_layer("mha")
  assert type(slim_mha) is L.MultiHeadAttention and slim_mha._num_heads == HEADS - 1
  assert small.slim_info.removed_channels["mha"] == (HEADS, HEADS - 1)
  projection_macs = 4 * LENGTH * WIDTH * HEADS * HEAD_DIM
  attention_macs = projection_macs + LENGTH * LENGTH * HEADS * 2 * HEAD_DIM
  assert macs.layer_macs(mha) == attention_macs
  assert macs.layer_macs(slim_mha) * HEADS == attention_macs * (HEADS - 1)
  for batch in (_ids(seed=5), _ids(seed=6, length=LENGTH)):
    np.testing.assert_allclose(small(batch), model(batch), rtol=1e-5, atol=1e-5)


def test_live_heads_stay_and_stock_attention_slims_too():
  original, model = _converted()
  for m in (original, model):
    small = lnx.slim(m)
    assert small.get_layer("mha")._num_heads == HEADS
  stock = original.get_layer("mha")._output_dense
  kernel = stock.kernel.numpy()
  kernel[2] = 0
  stock.kernel.assign(kernel)
  assert lnx.slim(original).get_layer("mha")._num_heads == HEADS - 1


def test_attention_returning_scores_slims_at_full_width():
  ids = tf.keras.Input((LENGTH,), dtype="int64")
  x = lnx.Embedding(VOCAB, WIDTH)(ids)
  y, scores = lnx.MultiHeadAttention(HEADS, HEAD_DIM, name="mha")(
      x, x, return_attention_scores=True)
  model = tf.keras.Model(ids, [L.GlobalAveragePooling1D()(y), L.Flatten()(scores)])
  _kill_head(model.get_layer("mha"), 0, "_output_dense")
  small = lnx.slim(model)
  assert type(small.get_layer("mha")) is L.MultiHeadAttention
  assert small.get_layer("mha")._num_heads == HEADS   # the scores show every head


def test_export_transformer_with_dynamic_length(tmp_path):
  _, model = _converted(length=None)
  _kill_head(model.get_layer("mha"), 0, "_value_dense")
  sample = [_ids(2, length=23)]
  report = lnx.export(model, str(tmp_path / "e"), formats=("tflite",), inputs=sample,
                      compare_dense=False)
  assert report.removed_channels == {"mha": [HEADS, HEADS - 1]}
  assert report.tflite_max_difference <= 1e-4 * max(1.0, report.output_scale)


@pytest.mark.parametrize("layers", [L, lnx])
def test_slim_removes_dead_embedding_dims_and_keeps_the_vocabulary(layers):
  ids = tf.keras.Input((None,), dtype="int64")
  x = L.GlobalAveragePooling1D()(layers.Embedding(VOCAB, 8, name="embed")(ids))
  model = tf.keras.Model(ids, lnx.Dense(3, name="out")(x))
  table = model.get_layer("embed")
  if layers is lnx:
    latent = table.latent_variable.numpy()
    latent[:, [2, 5]] = 0
    table.latent_variable.assign(latent)
  else:
    values = table.embeddings.numpy()
    values[:, [2, 5]] = 0
    table.embeddings.assign(values)
  small = lnx.slim(model)
  assert type(small.get_layer("embed")) is L.Embedding
  assert small.get_layer("embed").get_weights()[0].shape == (VOCAB, 6)
  assert small.slim_info.removed_channels == {"embed": (8, 6)}
  np.testing.assert_allclose(small(_ids()), model(_ids()), rtol=1e-5, atol=1e-6)
