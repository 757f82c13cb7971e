"""The one place lilnetx_tf reaches into private Keras and TensorFlow API, and picks Keras 2.

lilnetx_tf is written against `tf.keras` as Keras 2. Up to TensorFlow 2.15 that is the `keras`
package; from 2.16 on, `tf.keras` is Keras 3 unless `TF_USE_LEGACY_KERAS` is set, and Keras 2
ships as the `tf_keras` package. TensorFlow reads that variable when `tf.keras` is first touched
(and, for `from tensorflow.keras import ...`, at `import tensorflow`), so importing this module
first sets `TF_USE_LEGACY_KERAS=1` when it is unset, `tf_keras` is installed and the installed
`keras` is Keras 3: a user's `tf.keras` code then runs unchanged. A value the user set is
never overridden. If `tf.keras` still resolves to Keras 3 (the variable set to 0, `tf_keras`
missing, or `tf.keras` touched before this import), importing lilnetx_tf raises a
`KerasVersionError` saying what to do.

The private modules used (`base_layer_utils`, `generic_utils`, `legacy_saved_model_utils`,
`legacy_serialization`, `saving_lib`, `serialization_lib`)
live under `keras.src` in Keras 2.14 and under `tf_keras.src` in tf_keras; `KERAS_PACKAGE` names
the one in use. Native log lines and the TFLite interpreter are handled here too.
"""

import contextlib
import importlib
import importlib.metadata
import importlib.util
import logging
import os
import re
import sys
import tempfile
import warnings
from typing import Any, Callable, Iterator, Optional

from lilnetx_tf import errors

__all__ = ["KERAS_PACKAGE", "base_layer_utils", "check_keras2_model", "generic_utils",
           "keras_tuner", "legacy_saved_model_utils", "legacy_serialization",
           "native_logs_filtered", "require", "save_context", "saving_lib", "serialization_lib",
           "tf_export", "tflite_interpreter", "traced_per_call", "uncompiled_save_quiet"]

_LEGACY_KERAS = "TF_USE_LEGACY_KERAS"
_WHAT_TO_DO = ("lilnetx_tf needs Keras 2 (`tf.keras` of TensorFlow ≤ 2.15, or the `tf_keras` "
               "package): `pip install tf_keras` and set TF_USE_LEGACY_KERAS=1 before "
               "TensorFlow is imported, then build models with `tf.keras` (or `tf_keras`).")


def _keras_3_is_default() -> bool:
  try:
    return importlib.metadata.version("keras").startswith("3.")
  except importlib.metadata.PackageNotFoundError:
    return False


def _prefer_legacy_keras() -> None:
  """Sets TF_USE_LEGACY_KERAS=1 when unset, tf_keras is installed and Keras 3 is the default."""
  if (_LEGACY_KERAS not in os.environ and importlib.util.find_spec("tf_keras") is not None
      and _keras_3_is_default()):
    os.environ[_LEGACY_KERAS] = "1"


_prefer_legacy_keras()

# An absl C++ log line: severity letter, MMDD, time, thread, file:line]. TF >= 2.16 writes some
# (oneDNN, CUDA probing) before its log level is read, whatever TF_CPP_MIN_LOG_LEVEL says.
_NATIVE_LOG_LINE = re.compile(r"([IWEF])\d{4} \d\d:\d\d:\d+\.\d+ +\d+ \S+:\d+\] ")
_LITE_INFO = "INFO: "   # TFLite's own log lines ("INFO: Created TensorFlow Lite XNNPACK ...")
_NATIVE_LOG_NOTE = "WARNING: All log messages before absl::InitializeLog() is called"
_SEVERITIES = "IWEF"


def _min_log_level() -> int:
  try:
    return int(os.environ.get("TF_CPP_MIN_LOG_LEVEL", "0"))
  except ValueError:
    return 0


def _keep(line: str, level: int) -> bool:
  if line.startswith(_NATIVE_LOG_NOTE) or line.startswith(_LITE_INFO):
    return False
  match = _NATIVE_LOG_LINE.match(line)
  return match is None or _SEVERITIES.index(match.group(1)) >= level


@contextlib.contextmanager
def native_logs_filtered() -> Iterator[None]:
  """Drops native absl log lines below TF_CPP_MIN_LOG_LEVEL written to stderr (file
  descriptor 2) inside the block; everything else written there is passed on after it."""
  level = _min_log_level()
  try:
    saved = os.dup(2) if level > 0 else None
  except OSError:  # no stderr descriptor (a daemon): nothing to filter
    saved = None
  if saved is None:
    yield
    return
  sys.stderr.flush()
  with tempfile.TemporaryFile() as capture:
    os.dup2(capture.fileno(), 2)
    try:
      yield
    finally:
      sys.stderr.flush()
      os.dup2(saved, 2)
      os.close(saved)
      capture.seek(0)
      text = capture.read().decode("utf-8", "replace")
      sys.stderr.write("".join(l for l in text.splitlines(True) if _keep(l, level)))
      sys.stderr.flush()


with native_logs_filtered():
  import tensorflow as tf  # pylint: disable=g-import-not-at-top,wrong-import-position
from tensorflow.python.saved_model import save_context  # pylint: disable=g-import-not-at-top
from tensorflow.python.util import tf_export  # pylint: disable=g-import-not-at-top

KERAS_PACKAGE = tf.keras.Model.__module__.split(".")[0]   # "keras" (TF 2.14) or "tf_keras"
_VERSION = importlib.import_module(KERAS_PACKAGE).__version__
if not _VERSION.startswith("2."):
  raise errors.KerasVersionError(
      f"tf.keras is Keras {_VERSION} ({_LEGACY_KERAS}={os.environ.get(_LEGACY_KERAS, 'unset')})."
      f" {_WHAT_TO_DO}")
base_layer_utils = importlib.import_module(f"{KERAS_PACKAGE}.src.engine.base_layer_utils")
serialization_lib = importlib.import_module(f"{KERAS_PACKAGE}.src.saving.serialization_lib")
saving_lib = importlib.import_module(f"{KERAS_PACKAGE}.src.saving.saving_lib")
generic_utils = importlib.import_module(f"{KERAS_PACKAGE}.src.utils.generic_utils")
legacy_serialization = importlib.import_module(f"{KERAS_PACKAGE}.src.saving.legacy.serialization")
legacy_saved_model_utils = importlib.import_module(
    f"{KERAS_PACKAGE}.src.saving.legacy.saved_model.utils")


class _UncompiledSaveFilter(logging.Filter):
  def filter(self, record: logging.LogRecord) -> bool:
    return "compiled metrics have yet to be built" not in record.getMessage()


@contextlib.contextmanager
def uncompiled_save_quiet() -> Iterator[None]:
  """Drops Keras 2's warning "Compiled the loaded model, but the compiled metrics have yet to
  be built", which its saver logs for every uncompiled model (it reads the `compiled_loss` of a
  model that has none): the exporter's slim model is uncompiled on purpose."""
  logger = tf.get_logger()
  quiet = _UncompiledSaveFilter()
  logger.addFilter(quiet)
  try:
    yield
  finally:
    logger.removeFilter(quiet)


def traced_per_call(function: Callable, **kwargs) -> Callable:
  """`tf.function(function, **kwargs)` for a function made anew by each call of its maker (one
  conversion or one model, one trace), without TensorFlow's warning about frequent retracing:
  that warning counts the traces of every function with the same code, so a process converting
  or fitting a few models (a tuner's search) would see it for work done once per call."""
  traced = tf.function(function, **kwargs)
  traced._omit_frequent_tracing_warning = True  # pylint: disable=protected-access
  return traced


def check_keras2_model(model: Any, function: str) -> None:
  """Raises `KerasVersionError` if `model` is a Keras 3 object rather than a `tf.keras` one."""
  if isinstance(model, tf.keras.layers.Layer):
    return
  module = type(model).__module__ or ""
  if module.split(".")[0] == "keras" and KERAS_PACKAGE != "keras":
    raise errors.KerasVersionError(
        f"{function} got a Keras 3 {type(model).__name__} (from `import keras`). {_WHAT_TO_DO}")


def require(module: str, extra: str) -> Any:
  """Imports `module`, or raises `MissingDependencyError` naming the extra that installs it."""
  try:
    return importlib.import_module(module)
  except ImportError as e:
    raise errors.MissingDependencyError(
        f"{module} is not installed: `pip install lilnetx_tf[{extra}]` ({e}).") from e


@contextlib.contextmanager
def _keras_2_modules() -> Iterator[None]:
  """While importing keras-tuner: `keras` and `tensorflow.keras` are the Keras 2 in use.

  keras-tuner ≥ 1.4 picks its backend once, at import, from `import keras`: Keras 3 makes it
  build and check Keras 3 models and reject ours. It has no setting for this (its
  `backend/config.py` only asks `keras.version()`), so the Keras 2 package stands in for
  `keras` during that import; keras-tuner then does `from tensorflow.keras import *`, which
  resolves to Keras 3 if TensorFlow was imported before TF_USE_LEGACY_KERAS was set, so that
  name is pointed at Keras 2's API too.
  """
  if KERAS_PACKAGE == "keras":
    yield
    return
  stand_ins = {"keras": importlib.import_module(KERAS_PACKAGE),
               "tensorflow.keras": importlib.import_module(f"{KERAS_PACKAGE}.api._v2.keras")}
  saved = {name: sys.modules.get(name) for name in stand_ins}
  sys.modules.update(stand_ins)
  try:
    yield
  finally:
    for name, module in saved.items():
      if module is None:
        del sys.modules[name]
      else:
        sys.modules[name] = module


def keras_tuner() -> Any:
  """The `keras_tuner` module, on the Keras 2 backend (extra `tuning`)."""
  kt = sys.modules.get("keras_tuner")
  if kt is None:
    with _keras_2_modules():
      kt = require("keras_tuner", "tuning")
  if importlib.import_module("keras_tuner.src.backend.config").multi_backend():
    raise errors.KerasVersionError(
        "keras_tuner was imported before lilnetx_tf.tuning and uses Keras 3; import "
        f"lilnetx_tf.tuning first. {_WHAT_TO_DO}")
  return kt


def tflite_interpreter(content: bytes, num_threads: int,
                       input_shapes: Optional[Callable[[list], list]] = None) -> Any:
  """An interpreter of a .tflite model, tensors allocated: LiteRT's (`ai-edge-litert`) where it is installed,
  else `tf.lite.Interpreter`, which TF ≥ 2.18 deprecates in LiteRT's favour (warning hidden).

  `input_shapes(input details)` gives the shape of each input to allocate for, in the order of
  the details: without it a dynamic dimension (−1 in the signature) is allocated at 1, which a
  model whose layers need more (a length-7 convolution over a sequence) cannot prepare.
  """
  try:
    from ai_edge_litert.interpreter import Interpreter  # pylint: disable=g-import-not-at-top
  except ImportError:
    Interpreter = None
  with native_logs_filtered(), warnings.catch_warnings():
    warnings.filterwarnings("ignore", message=".*tf.lite.Interpreter is deprecated.*")
    interpreter = (Interpreter or tf.lite.Interpreter)(model_content=content,
                                                       num_threads=num_threads)
    if input_shapes is not None:
      details = interpreter.get_input_details()
      for detail, shape in zip(details, input_shapes(details)):
        if tuple(detail["shape"]) != tuple(shape):
          interpreter.resize_tensor_input(detail["index"], list(shape))
    interpreter.allocate_tensors()
  return interpreter
