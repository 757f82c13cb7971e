"""lilnetx_tf._compat: Keras 2 on every stack, lazy extras, quiet native logs, LiteRT."""

import importlib.util
import os
import subprocess
import sys
import warnings

import numpy as np
import pytest
import tensorflow as tf

import lilnetx_tf as lnx
from lilnetx_tf import _compat
from lilnetx_tf import errors
from lilnetx_tf.export import tflite

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
KERAS_3_INSTALLED = _compat._keras_3_is_default()


def _python(code: str, **env) -> subprocess.CompletedProcess:
  env = {k: v for k, v in dict(os.environ, **env).items() if v is not None}
  env["PYTHONPATH"] = ROOT + os.pathsep + env.get("PYTHONPATH", "")
  return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                        timeout=300)


@pytest.mark.parametrize("first", ["lilnetx_tf", "tensorflow"])
def test_import_selects_keras_2_and_loads_tuning_on_first_use(first):
  run = _python(
      f"import sys, {first}, tensorflow as tf, lilnetx_tf as lnx\n"
      "assert 'keras_tuner' not in sys.modules\n"
      "print(tf.keras.Model.__module__.split('.')[0], lnx._compat._VERSION[0])\n"
      "lnx.tuning.search\n"
      "print(sys.modules['keras_tuner'].HyperModel.__module__)\n",
      TF_USE_LEGACY_KERAS=None, TF_CPP_MIN_LOG_LEVEL="3")
  assert run.returncode == 0, run.stderr[-4000:]
  package, major, tuner = run.stdout.split()
  assert package == _compat.KERAS_PACKAGE and major == "2" and tuner.startswith("keras_tuner")
  if first == "lilnetx_tf":   # TensorFlow's start-up lines pass through lilnetx_tf's filter
    assert run.stderr == ""


@pytest.mark.skipif(not KERAS_3_INSTALLED, reason="only where the installed keras is Keras 3")
def test_keras_3_chosen_by_the_user_is_a_typed_error_at_import():
  run = _python("import lilnetx_tf", TF_USE_LEGACY_KERAS="0", TF_CPP_MIN_LOG_LEVEL="3")
  assert run.returncode != 0
  assert "KerasVersionError" in run.stderr and "TF_USE_LEGACY_KERAS=1" in run.stderr


@pytest.mark.skipif(not KERAS_3_INSTALLED, reason="only where the installed keras is Keras 3")
def test_keras_3_model_is_a_typed_error(tmp_path):
  import keras  # Keras 3 beside tf_keras
  model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
  with pytest.raises(errors.KerasVersionError, match="TF_USE_LEGACY_KERAS=1"):
    lnx.convert(model)
  with pytest.raises(errors.KerasVersionError, match="tf.keras"):
    lnx.compress(model, str(tmp_path / "m.lnx"))


def test_missing_extra_names_it(monkeypatch):
  with pytest.raises(errors.MissingDependencyError, match=r"lilnetx_tf\[examples\]"):
    _compat.require("lilnetx_tf_no_such_module", "examples")
  monkeypatch.setitem(sys.modules, "keras_tuner", None)   # as if not installed
  with pytest.raises(errors.MissingDependencyError, match=r"lilnetx_tf\[tuning\]"):
    _compat.keras_tuner()
  assert issubclass(errors.MissingDependencyError, ImportError)


def test_native_log_lines_below_the_level_are_dropped(capfd, monkeypatch):
  monkeypatch.setenv("TF_CPP_MIN_LOG_LEVEL", "2")
  lines = ["WARNING: All log messages before absl::InitializeLog() is called are written\n",
           "I0000 00:00:1796485375.453872   15230 port.cc:153] oneDNN custom operations\n",
           "W0000 00:00:1796485375.453872   15230 cuda.cc:31] no GPU\n",
           "E0000 00:00:1796485393.999525   15230 cuda_platform.cc:52] failed call to cuInit\n",
           "INFO: Created TensorFlow Lite XNNPACK delegate for CPU.\n",
           "a line of the user's\n"]
  with _compat.native_logs_filtered():
    for line in lines:
      os.write(2, line.encode())
  assert capfd.readouterr().err == lines[3] + lines[5]
  monkeypatch.setenv("TF_CPP_MIN_LOG_LEVEL", "0")
  with _compat.native_logs_filtered():
    os.write(2, lines[1].encode())
  assert capfd.readouterr().err == lines[1]


def test_tflite_runs_on_litert_where_installed_without_deprecation_warnings():
  model = tf.keras.Sequential([tf.keras.Input((4,)), tf.keras.layers.Dense(3)])
  content = tflite.convert(model)
  with warnings.catch_warnings():
    warnings.simplefilter("error")
    interpreter = tflite.interpreter(content)
  litert = importlib.util.find_spec("ai_edge_litert") is not None
  assert type(interpreter).__module__.startswith("ai_edge_litert" if litert else "tensorflow")
  x = np.random.default_rng(0).normal(size=(2, 4)).astype(np.float32)
  np.testing.assert_allclose(tflite.run(content, model, [x])[0], model(x).numpy(), rtol=1e-5,
                             atol=1e-6)
