"""Conformance with tensorflow-compression, the reference of the density and the range coder.

tensorflow-compression installs only on the TF 2.14 configuration (Python 3.11, TF 2.14.1);
elsewhere this module is skipped, since the reference does not exist there. Checked: our
`DeepFactorized` has tfc's `NoisyDeepFactorized` variables (names, shapes, initial values,
order); `ParameterGroup.bits` is its log-likelihood (1e-6 relative); models saved while the
groups used tfc's density load with the same weights and bits; and our range coder's strings
are within 0.1 % of tfc's for the same tables.
"""

import numpy as np
import pytest
import tensorflow as tf

tfc = pytest.importorskip(
    "tensorflow_compression",
    reason="the reference, tensorflow-compression, installs only on the TF 2.14 configuration")

import lilnetx_tf as lnx
from lilnetx_tf.layers import density as density_lib


@pytest.mark.parametrize("channels, filters", [(1, (3, 3)), (9, (3, 3)), (4, (2, 5, 3))])
def test_variables_match_tfc(channels, filters):
  tf.random.set_seed(3)
  ours = density_lib.DeepFactorized(channels, filters)
  tf.random.set_seed(3)
  reference = tfc.NoisyDeepFactorized(batch_shape=(channels,), num_filters=filters)
  assert [v.name for v in ours.variables] == [v.name for v in reference.variables]
  assert len(ours.variables) == 3 * len(filters) + 2
  for a, b in zip(ours.variables, reference.variables):
    assert a.shape == b.shape
    np.testing.assert_array_equal(a.numpy(), b.numpy())


def _perturbed_group(slice_size):
  group = lnx.ParameterGroup(slice_size)
  group.build(None)
  rng = np.random.default_rng(0)
  for v in group.density_variables:
    v.assign(v + rng.normal(0, 0.3, v.shape).astype(np.float32))
  return group


def _reference_density(group):
  """tfc's NoisyDeepFactorized holding `group`'s density parameters."""
  reference = tfc.NoisyDeepFactorized(batch_shape=(group.slice_size,),
                                      num_filters=group.density_filters)
  for a, b in zip(reference.variables, group.density_variables):
    a.assign(b)
  return reference


@pytest.mark.parametrize("slice_size", [1, 9])
def test_likelihoods_match_tfc(slice_size):
  group = _perturbed_group(slice_size)
  rng = np.random.default_rng(1)
  x = np.round(rng.laplace(scale=4, size=(2, 300, slice_size))).astype(np.float32)
  x[0, :3], x[1, :3] = 1e4, -1e4                                  # far tails on both sides
  x[:, 3:] += rng.uniform(-0.5, 0.5, x[:, 3:].shape).astype(np.float32)   # noisy latents
  expected = -_reference_density(group).log_prob(x).numpy() / np.log(2.0)
  assert np.all(np.isfinite(expected))
  np.testing.assert_allclose(group.bits(x).numpy(), expected, rtol=1e-6, atol=1e-6)


def _tfc_density(channels, num_filters):
  """What `ParameterGroup.build` made before the density was ours."""
  return tfc.NoisyDeepFactorized(batch_shape=(channels,), num_filters=tuple(num_filters))


def _tfc_cumulative_logits(group, values):
  return group.density.base._logits_cumulative(values)


def _model():
  inputs = tf.keras.Input((8, 8, 3))
  x = lnx.Conv2D(4, 3, padding="same", activation="relu")(inputs)
  x = lnx.Conv2D(6, 3, strides=2, use_bias=False)(x)
  x = tf.keras.layers.GlobalAveragePooling2D()(x)
  model = tf.keras.Model(inputs, lnx.Dense(2)(x))
  model.compile(tf.keras.optimizers.Adam(0.01),
                tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True))
  return model


def _groups(model):
  return {l.group_key: l.group for l in model.layers if lnx.is_lilnetx_layer(l)}


@pytest.mark.parametrize("file_name, save", [
    ("model.keras", lambda m, p: m.save(p)),
    ("saved_model", lambda m, p: m.save(p, save_format="tf")),
    ("weights.h5", lambda m, p: m.save_weights(p)),
    ("ckpt/weights", lambda m, p: m.save_weights(p)),
])
def test_files_saved_with_the_tfc_density_load(tmp_path, monkeypatch, file_name, save):
  monkeypatch.setattr(density_lib, "DeepFactorized", _tfc_density)
  monkeypatch.setattr(lnx.ParameterGroup, "_cumulative_logits", _tfc_cumulative_logits)
  rng = np.random.default_rng(0)
  x = rng.random((32, 8, 8, 3), dtype=np.float32)
  y = (x[..., 0].mean((1, 2)) > x[..., 1].mean((1, 2))).astype("int32")
  old = _model()
  old.fit(x, y, batch_size=8, epochs=1, verbose=0)          # moves the densities
  probe = rng.normal(0, 3, (50, 9)).astype(np.float32)
  old_bits = {k: g.bits(probe[:, :g.slice_size]).numpy() for k, g in _groups(old).items()}
  old_state = {k: [v.numpy() for v in g.weights] for k, g in _groups(old).items()}
  path = str(tmp_path / file_name)
  save(old, path)
  monkeypatch.undo()
  tf.keras.backend.clear_session()

  if file_name.endswith((".keras", "saved_model")):
    new = tf.keras.models.load_model(path)
  else:
    new = _model()
    status = new.load_weights(path)
    if status is not None:
      status.expect_partial()          # the optimizer's slots, which `new` has not made yet
  groups = _groups(new)
  assert groups.keys() == old_state.keys() == {"conv3x3", "dense"}
  for key, group in groups.items():
    assert isinstance(group.density, density_lib.DeepFactorized)
    assert len(group.weights) == len(old_state[key])
    for a, b in zip(group.weights, old_state[key]):
      np.testing.assert_array_equal(a.numpy(), b)
    np.testing.assert_array_equal(group.bits(probe[:, :group.slice_size]).numpy(), old_bits[key])


def test_coded_sizes_match_tfc():
  """The same group, tables and calls coded by our coder and by tfc's: within 0.1 %, and each
  decodes back."""
  from lilnetx_tf.coding import entropy, latent_code, tfc_range
  rng = np.random.default_rng(4)
  latents = []
  for shape in ((96, 64, 9), (64, 32, 9)):
    q = np.round(rng.laplace(scale=1.5, size=shape))
    q[rng.random(shape[:2]) < 0.4] = 0                      # zero slices
    q[: shape[0] // 4] = 0                                  # dead input channels
    latents.append(q.astype(np.float32))
  latents[0][5, 5, 4] = 1e5                                 # an escape
  shapes = [q.shape for q in latents]
  ours = latent_code.encode_group(latents, 9)
  reference = latent_code.encode_group(latents, 9, encoder_class=tfc_range.Encoder)
  assert ours[0] == reference[0]                            # the same tables
  for (tables, string), decoder_class in ((ours, entropy.Decoder),
                                          (reference, tfc_range.Decoder)):
    decoded = latent_code.decode_group(tables, string, shapes, "test", decoder_class)
    for q, d in zip(latents, decoded):
      np.testing.assert_array_equal(q, d)
  assert len(reference[1]) > 10_000
  assert abs(len(ours[1]) - len(reference[1])) <= 1e-3 * len(reference[1])
