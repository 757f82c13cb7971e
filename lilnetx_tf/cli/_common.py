"""Helpers shared by the command modules: error handling and model loading."""

import functools
import os
import sys

__all__ = ["define_safe_mode_flag", "handles_errors", "load_keras_model", "positional",
           "start_runtime_quietly"]

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def handles_errors(main):
  """Turns lilnetx_tf errors and file-system errors (a missing file, a path through a file,
  no permission, ...) into a one-line message and exit status 1."""
  @functools.wraps(main)
  def wrapper(argv):
    from lilnetx_tf import errors
    try:
      return main(argv)
    except (errors.LilNetXError, OSError) as e:
      print(f"error: {e}", file=sys.stderr)
      return 1
  return wrapper


def start_runtime_quietly() -> None:
  """Starts TensorFlow's runtime with its native start-up log lines (device probing, e.g. a
  failed cuInit without a GPU) filtered by TF_CPP_MIN_LOG_LEVEL, which TF >= 2.16 ignores."""
  import tensorflow as tf
  from lilnetx_tf import _compat
  with _compat.native_logs_filtered():
    tf.config.list_logical_devices()


def define_safe_mode_flag():
  """The commands' `--safe_mode` flag (`--nosafe_mode` for files you trust)."""
  from absl import flags
  return flags.DEFINE_bool(
      "safe_mode", True, "--nosafe_mode lets the file's architecture name any module, function "
      "or Lambda layer, whose code then runs: only for files you trust.")


def positional(argv: list, index: int, flag_value, name: str):
  """The flag's value, else the `index`-th positional argument, else a usage error."""
  from absl import app
  args = argv[1:]
  if flag_value:
    return flag_value
  if len(args) > index:
    return args[index]
  raise app.UsageError(f"missing {name} (give --{name} or a positional argument)")


def load_keras_model(path: str):
  """Loads a .keras / .h5 file or a SavedModel directory as a Keras model (not compiled)."""
  import tensorflow as tf
  import lilnetx_tf  # noqa: F401  (registers the LilNetX layers)
  from lilnetx_tf import errors
  if not os.path.exists(path):
    raise FileNotFoundError(f"{path} does not exist")
  try:
    model = tf.keras.models.load_model(path, compile=False)
  except (OSError, ValueError, TypeError) as e:
    hint = (f" (saved by Keras 2.14? `lilnetx migrate {path} NEW.keras` rewrites it for this "
            "Keras)" if "but received 0 variables" in str(e) else "")
    raise errors.InvalidArgumentError(
        f"cannot load a Keras model from {path}: {e}{hint}") from None
  if not isinstance(model, tf.keras.Model):
    raise errors.UnsupportedLayerError(
        f"{path} loaded as {type(model).__name__}, not a Keras model; save it with "
        "model.save('model.keras').")
  return model
