"""Saving and loading LilNetX models: .keras and SavedModel files loaded without custom_objects,
weights in h5 and TF checkpoint format, and resuming from a ModelCheckpoint."""

import numpy as np
import pytest
import tensorflow as tf

import lilnetx_tf as lnx

LOSS = tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True)


def _data(n=32):
  rng = np.random.default_rng(0)
  x = rng.random((n, 8, 8, 3), dtype=np.float32)
  y = (x[..., 0].mean((1, 2)) > x[..., 1].mean((1, 2))).astype("int32")
  return x, y


def _model():
  inputs = tf.keras.Input((8, 8, 3))
  x = lnx.Conv2D(4, 3, padding="same", activation="relu")(inputs)
  x = lnx.DepthwiseConv2D(3, padding="same")(x)
  x = lnx.Conv2D(6, 3, strides=2, use_bias=False)(x)
  x = tf.keras.layers.GlobalAveragePooling2D()(x)
  x = lnx.Dense(5, activation="relu")(x)
  model = tf.keras.Model(inputs, lnx.Dense(2)(x))
  model.compile(tf.keras.optimizers.Adam(0.01), LOSS)
  return model


def _trained_model():
  x, y = _data()
  model = _model()
  model.fit(x, y, batch_size=8, epochs=1, verbose=0, shuffle=False)
  return model


def _lnx_layers(model):
  return [l for l in model.layers if lnx.is_lilnetx_layer(l)]


def _group_state(model):
  groups = {}
  for layer in _lnx_layers(model):
    groups.setdefault(layer.group_key, layer.group)
  return {key: [w.numpy() for w in g.weights] for key, g in groups.items()}


def _assert_same_state(original, loaded, x, y):
  np.testing.assert_array_equal(original.predict(x, verbose=0), loaded.predict(x, verbose=0))
  # The evaluation loss includes the rate terms, which depend on the densities.
  assert loaded.evaluate(x, y, verbose=0) == pytest.approx(original.evaluate(x, y, verbose=0),
                                                           rel=1e-6)
  a, b = _group_state(original), _group_state(loaded)
  assert a.keys() == b.keys() == {"conv3x3", "dense"}
  for key in a:
    assert len(a[key]) == len(b[key]) > 10       # decoder, step, latent step, density, moments
    for u, v in zip(a[key], b[key]):
      np.testing.assert_array_equal(u, v)


def _assert_groups_shared(model):
  layers = _lnx_layers(model)
  conv3 = [l for l in layers if l.group_key == "conv3x3"]
  dense = [l for l in layers if l.group_key == "dense"]
  assert len(conv3) == 3 and len(dense) == 2
  assert all(l.group is conv3[0].group for l in conv3)
  assert all(l.group is dense[0].group for l in dense)
  assert conv3[0].group is not dense[0].group
  assert {m.name for m in conv3[0].group.members()} == {l.name for l in conv3}
  # Each group's decoder is one trainable variable of the model.
  trainable = [w for w in model.trainable_weights if w is conv3[0].group.decoder]
  assert len(trainable) == 1


def _assert_training_continues(model, x, y):
  layers = _lnx_layers(model)
  step = int(layers[0].group.step.numpy())
  latent = layers[0].latent_variable.numpy().copy()
  density = [v.numpy().copy() for v in layers[0].group.density_variables]
  history = model.fit(x, y, batch_size=8, epochs=1, verbose=0, shuffle=False)
  assert np.all(np.isfinite(history.history["loss"]))
  assert int(layers[0].group.step.numpy()) == step + len(x) // 8
  assert not np.array_equal(latent, layers[0].latent_variable.numpy())
  assert any(not np.array_equal(d, v.numpy())
             for d, v in zip(density, layers[0].group.density_variables))


@pytest.mark.parametrize("file_name, save_format", [
    ("model.keras", None),
    ("saved_model", "tf"),
])
def test_save_and_load_model(tmp_path, file_name, save_format):
  x, y = _data()
  model = _trained_model()
  assert int(_lnx_layers(model)[0].group.step.numpy()) == 4
  path = str(tmp_path / file_name)
  model.save(path, save_format=save_format)
  tf.keras.backend.clear_session()
  loaded = tf.keras.models.load_model(path)              # no custom_objects
  assert all(type(a) is type(b) for a, b in zip(model.layers, loaded.layers))
  assert isinstance(loaded.layers[1], lnx.Conv2D)
  _assert_groups_shared(loaded)
  assert int(_lnx_layers(loaded)[0].group.step.numpy()) == 4
  _assert_same_state(model, loaded, x, y)
  _assert_training_continues(loaded, x, y)
  # The original and the loaded model do not share groups.
  assert _lnx_layers(model)[0].group is not _lnx_layers(loaded)[0].group


@pytest.mark.parametrize("file_name", ["weights.h5", "ckpt/weights"])
def test_save_and_load_weights(tmp_path, file_name):
  x, y = _data()
  model = _trained_model()
  path = str(tmp_path / file_name)
  model.save_weights(path)
  tf.keras.utils.set_random_seed(7)
  fresh = _model()
  assert not np.array_equal(fresh.predict(x, verbose=0), model.predict(x, verbose=0))
  fresh.load_weights(path)
  _assert_groups_shared(fresh)
  _assert_same_state(model, fresh, x, y)
  _assert_training_continues(fresh, x, y)


@pytest.mark.parametrize("file_name, weights_only", [
    ("ckpt.weights.h5", True),
    ("ckpt.keras", False),
])
def test_model_checkpoint_resume(tmp_path, file_name, weights_only):
  x, y = _data()
  path = str(tmp_path / file_name)
  model = _model()
  model.fit(x, y, batch_size=8, epochs=1, verbose=0, shuffle=False, callbacks=[
      tf.keras.callbacks.ModelCheckpoint(path, save_weights_only=weights_only)])
  if weights_only:
    tf.keras.utils.set_random_seed(11)
    resumed = _model()
    resumed.load_weights(path)
  else:
    resumed = tf.keras.models.load_model(path)
  _assert_groups_shared(resumed)
  _assert_same_state(model, resumed, x, y)
  _assert_training_continues(resumed, x, y)
  if weights_only:
    return
  # With the optimizer state saved too, resumed training follows the original run.
  _assert_training_continues(model, x, y)
  np.testing.assert_allclose(model.predict(x, verbose=0), resumed.predict(x, verbose=0),
                             rtol=1e-4, atol=1e-5)


def _as_version_1(path, old_path, num_slices):
  """Rewrites a `.keras` file as lilnetx_tf before config version 2 wrote it: layer configs
  without `config_version`, slice and L2 weights as plain sums, each group's decoder as Ψ."""
  import io
  import json
  import zipfile

  import h5py

  with zipfile.ZipFile(path) as source:
    files = {name: source.read(name) for name in source.namelist()}
  config = json.loads(files["config.json"])
  for layer in config["config"]["layers"]:
    if layer["config"].pop("config_version", None) is not None:
      layer["config"]["slice_weight"] /= num_slices
      layer["config"]["l2_weight"] /= num_slices
  files["config.json"] = json.dumps(config).encode()
  buffer = io.BytesIO(files["model.weights.h5"])
  with h5py.File(buffer, "r+") as weights:
    def to_absolute(name, item):
      if name.endswith("group/vars"):
        decoder, step = item["0"], float(item["1"][()])
        relative = decoder[()]
        decoder[()] = step * (np.exp(relative) if relative.ndim == 0 else relative)
        groups.append(item)
    groups = []
    weights.visititems(to_absolute)
    for item in groups:
      del item["relative_decoder"]      # the marker of relative decoders came with version 2
  files["model.weights.h5"] = buffer.getvalue()
  with zipfile.ZipFile(old_path, "w") as target:
    for name, data in files.items():
      target.writestr(name, data)


def test_keras_file_of_config_version_1_loads_and_is_migrated(tmp_path):
  """Old files stored the decoder Ψ and summed penalty weights: both are converted on loading,
  and the model predicts and prices its latents as before."""
  x, y = _data()
  model = _trained_model()
  slices = sum(l.num_slices for l in _lnx_layers(model))
  model.save(tmp_path / "new.keras")
  _as_version_1(tmp_path / "new.keras", tmp_path / "old.keras", slices)
  loaded = tf.keras.models.load_model(tmp_path / "old.keras")
  np.testing.assert_allclose(loaded.predict(x, verbose=0), model.predict(x, verbose=0),
                             rtol=1e-5, atol=1e-6)
  for old, new in zip(_lnx_layers(model), _lnx_layers(loaded)):
    np.testing.assert_allclose(new.group.decoder.numpy(), old.group.decoder.numpy(),
                               rtol=1e-5, atol=1e-6)
    assert new.config_version == 2
    assert new.slice_weight == pytest.approx(old.slice_weight)
    assert new.l2_weight == pytest.approx(old.l2_weight)
  loaded_losses = float(tf.add_n(loaded.losses)) if loaded(x) is not None else None
  model(x)
  assert loaded_losses == pytest.approx(float(tf.add_n(model.losses)), rel=1e-4)


# Models whose branches meet only after their last LilNetX layers: the graph cannot tell that
# the branches share groups, the saved config does (`registry.saved_id`).

def _nested_base_beside_a_branch():
  """A nested base (Conv2D) and a SeparableConv2D outside it, added at the output."""
  base_in = tf.keras.Input((8, 8, 3))
  base = tf.keras.Model(base_in, tf.keras.layers.Conv2D(4, 3, padding="same")(base_in),
                        name="base")
  inputs = tf.keras.Input((8, 8, 3))
  branch = tf.keras.layers.SeparableConv2D(4, 3, padding="same")(inputs)
  pool = tf.keras.layers.GlobalAveragePooling2D()
  return tf.keras.Model(inputs, tf.keras.layers.Add()([pool(base(inputs)), pool(branch)]))


def _two_attention_towers():
  """Two towers (MultiHeadAttention, Dense) added at the output."""
  inputs = tf.keras.Input((5, 8))
  towers = [tf.keras.layers.Dense(2)(tf.keras.layers.GlobalAveragePooling1D()(
      tf.keras.layers.MultiHeadAttention(2, 4)(inputs, inputs))) for _ in range(2)]
  return tf.keras.Model(inputs, tf.keras.layers.Add()(towers))


def _groups(model):
  """{(group key, member names): group} of the model's groups."""
  groups = {}
  for layer in lnx.layers.lilnetx_layers(model):
    groups[layer.group_key, frozenset(m.name for m in layer.group.members())] = layer.group
  return groups


def _save_and_load(model, path):
  model.save(path, save_format="tf" if path.endswith("saved_model") else None)
  return tf.keras.models.load_model(path)


@pytest.mark.parametrize("make", [_nested_base_beside_a_branch, _two_attention_towers])
@pytest.mark.parametrize("file_name", ["model.keras", "model.h5", "saved_model"])
def test_keras_files_keep_groups_of_branches_that_meet_after_lilnetx_layers(
    tmp_path, make, file_name):
  model = lnx.convert(make())
  x = np.random.default_rng(0).random((8,) + tuple(model.input_shape[1:]), dtype=np.float32)
  y = np.zeros((8,) + tuple(model.output_shape[1:]), np.float32)
  model.compile(tf.keras.optimizers.Adam(0.01), "mse")
  model.fit(x, y, batch_size=4, verbose=0)
  saved = _groups(model)
  assert len(saved) == len({key for key, _ in saved})   # one group per kernel shape
  loaded = _save_and_load(model, str(tmp_path / file_name))
  again = tf.keras.models.load_model(str(tmp_path / file_name))
  groups = _groups(loaded)
  assert groups.keys() == saved.keys() == _groups(again).keys()
  for key, group in groups.items():
    assert group is not saved[key] and group is not _groups(again)[key]
    for a, b in zip(saved[key].weights, group.weights, strict=True):
      np.testing.assert_array_equal(a.numpy(), b.numpy())
  np.testing.assert_array_equal(loaded.predict(x, verbose=0), model.predict(x, verbose=0))
  latent = lnx.layers.lilnetx_layers(loaded)[-1].latent_variable
  before = latent.numpy().copy()
  loaded.compile(tf.keras.optimizers.Adam(0.01), "mse")
  assert np.all(np.isfinite(loaded.fit(x, y, batch_size=4, verbose=0).history["loss"]))
  assert not np.array_equal(before, latent.numpy())
  assert all(int(g.step.numpy()) == 4 for g in groups.values())


@pytest.mark.parametrize("file_name", ["model.keras", "model.h5", "saved_model"])
def test_keras_files_keep_separate_registries_separate(tmp_path, file_name):
  """Two towers built apart (a registry each) load apart, with each group's own values, and
  apart from a model loaded before."""
  inputs = tf.keras.Input((8, 8, 3))
  towers = [lnx.Dense(2)(tf.keras.layers.GlobalAveragePooling2D()(
      lnx.Conv2D(4, 3, padding="same")(inputs))) for _ in range(2)]
  model = tf.keras.Model(inputs, tf.keras.layers.Add()(towers))
  x = np.random.default_rng(0).random((8, 8, 8, 3), dtype=np.float32)
  model.compile(tf.keras.optimizers.Adam(0.01), "mse")
  model.fit(x, np.zeros((8, 2)), batch_size=4, verbose=0)
  saved = _groups(model)
  assert len(saved) == 4
  # Loaded right after another model's file: the loads number their registries apart.
  other = _save_and_load(lnx.convert(_nested_base_beside_a_branch()),
                         str(tmp_path / f"other_{file_name}"))
  loaded = _save_and_load(model, str(tmp_path / file_name))
  groups = _groups(loaded)
  assert groups.keys() == saved.keys()
  assert not {id(g) for g in groups.values()} & {id(g) for g in _groups(other).values()}
  for key, group in groups.items():
    np.testing.assert_array_equal(group.decoder.numpy(), saved[key].decoder.numpy())
  np.testing.assert_array_equal(loaded.predict(x, verbose=0), model.predict(x, verbose=0))


def test_registry_id_is_written_only_into_model_configs():
  model = lnx.convert(_nested_base_beside_a_branch())
  layers = model.get_config()["layers"]    # input, base, separable, pooling, add
  numbers = [entry["config"].get("registry_id") for entry in layers]
  assert numbers == [None, None, 0, None, None]
  assert [entry["config"].get("registry_id") for entry in layers[1]["config"]["layers"]] == [
      None, 0]                                # the base's input and Conv2D
  assert "registry_id" not in model.layers[2].get_config()
  from lilnetx_tf.coding import architecture
  assert b"registry_id" not in architecture.encode(model)
  for bad in (-1, 1.5, "0"):
    with pytest.raises(lnx.errors.InvalidArgumentError, match="registry_id"):
      lnx.Conv2D(2, 3, registry_id=bad)
