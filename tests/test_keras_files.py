"""keras_files.migrate: a .keras file written by Keras 2.14 loads on the running Keras."""

import os
import subprocess
import sys
import zipfile

import numpy as np
import pytest
import tensorflow as tf

from lilnetx_tf import _compat
from lilnetx_tf import errors
from lilnetx_tf import keras_files

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DATA = os.path.join(ROOT, "tests", "fixtures")
OLD = os.path.join(DATA, "keras214.keras")   # written by tests/fixtures/make_keras214.py on TF 2.14


@pytest.fixture(scope="module")
def expected():
  with np.load(os.path.join(DATA, "keras214.npz")) as data:
    return data["x"], data["y"]


def test_migrated_file_predicts_as_saved(tmp_path, expected):
  x, y = expected
  new = keras_files.migrate(OLD, str(tmp_path / "new.keras"))
  model = tf.keras.models.load_model(new)
  np.testing.assert_allclose(model(x, training=False).numpy(), y, rtol=1e-6, atol=1e-6)
  assert model.optimizer.iterations.numpy() == 1   # the optimizer state came along
  group = model.layers[0].group
  assert group is model.layers[-1].group and group.density is not None


def test_the_2_14_layout_is_what_needs_migrating(expected):
  x, y = expected
  if _compat.KERAS_PACKAGE == "keras":   # Keras 2.14 reads its own layout
    model = tf.keras.models.load_model(OLD)
    np.testing.assert_allclose(model(x, training=False).numpy(), y, rtol=1e-6, atol=1e-6)
  else:
    with pytest.raises(ValueError, match="received 0 variables"):
      tf.keras.models.load_model(OLD)


def _extract_weights(tmp_path) -> str:
  """The weights of the Keras 2.14 file as a `.weights.h5` file (the same layout)."""
  path = str(tmp_path / "old.weights.h5")
  with zipfile.ZipFile(OLD) as archive, open(path, "wb") as out:
    out.write(archive.read("model.weights.h5"))
  return path


def test_weights_file_migrates_with_its_model(tmp_path, expected):
  x, y = expected
  model = tf.keras.models.load_model(keras_files.migrate(OLD, str(tmp_path / "m.keras")),
                                     compile=False)
  for weight in model.weights:
    weight.assign(tf.zeros_like(weight))
  new = keras_files.migrate(_extract_weights(tmp_path), str(tmp_path / "new.weights.h5"),
                            model=model)
  model.load_weights(new)
  np.testing.assert_allclose(model(x, training=False).numpy(), y, rtol=1e-6, atol=1e-6)


def test_bad_inputs_are_typed_errors(tmp_path):
  with pytest.raises(errors.ModelFileNotFoundError):
    keras_files.migrate(str(tmp_path / "missing.keras"), str(tmp_path / "x.keras"))
  with pytest.raises(errors.InvalidArgumentError, match="exists"):
    keras_files.migrate(OLD, OLD)
  junk = tmp_path / "junk.keras"
  junk.write_bytes(b"not a zip")
  with pytest.raises(errors.InvalidArgumentError, match="neither"):
    keras_files.migrate(str(junk), str(tmp_path / "y.keras"))
  with pytest.raises(errors.InvalidArgumentError, match="needs `model`"):
    keras_files.migrate(_extract_weights(tmp_path), str(tmp_path / "z.weights.h5"))


def test_cli_migrate(tmp_path, expected):
  x, y = expected
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
  new = str(tmp_path / "cli.keras")
  run = subprocess.run([sys.executable, "-m", "lilnetx_tf", "migrate", OLD, new],
                       capture_output=True, text=True, env=env, timeout=300)
  assert run.returncode == 0, run.stderr[-4000:]
  assert run.stderr == "" and new in run.stdout
  model = tf.keras.models.load_model(new)
  np.testing.assert_allclose(model(x, training=False).numpy(), y, rtol=1e-6, atol=1e-6)
