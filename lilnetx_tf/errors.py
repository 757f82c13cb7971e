"""Exceptions raised by lilnetx_tf.

Every error the library raises on bad input is a `LilNetXError`; the ones about a bad argument
or model are also `ValueError`s so that ordinary `except ValueError` handling keeps working.
"""

__all__ = ["LilNetXError", "InvalidArgumentError", "UnsupportedLayerError", "ModelFileError",
           "ModelFileNotFoundError", "ModelMismatchError", "SlimCheckError", "ExportCheckError",
           "NoMatchingTrialError", "ModelFileReadError", "OutputPathError", "os_error",
           "KerasVersionError", "MissingDependencyError"]


class LilNetXError(Exception):
  """Base class of every lilnetx_tf error."""


class InvalidArgumentError(LilNetXError, ValueError):
  """A hyperparameter or argument has a value the library cannot use."""


class UnsupportedLayerError(LilNetXError, ValueError):
  """A layer, layer option or model type that lilnetx_tf cannot handle."""


class ModelFileError(LilNetXError, ValueError):
  """A compressed model file is corrupt, truncated, of an unknown version or not ours."""


class ModelFileNotFoundError(ModelFileError, FileNotFoundError):
  """There is no model file at the given path (also a `FileNotFoundError`)."""


class ModelMismatchError(LilNetXError, ValueError):
  """Data meant for one model was given to another (e.g. weights of a different architecture)."""


class SlimCheckError(LilNetXError):
  """The slim model's outputs differ from the original's by more than the tolerance."""


class ExportCheckError(LilNetXError):
  """The exported float32 TFLite model does not match the slim Keras model, or TFLite cannot
  convert or run it."""


class NoMatchingTrialError(LilNetXError, LookupError):
  """No trial of a search satisfies the constraints of a pick rule."""


class ModelFileReadError(ModelFileError, OSError):
  """The model file exists but cannot be opened or read: no permission, a loop of links, an
  I/O error (also an `OSError`, with the failing call's `errno`)."""


class OutputPathError(InvalidArgumentError, OSError):
  """Nothing can be written at an output path: it names a directory where a file goes, a file
  or a directory lilnetx_tf did not write where an export goes, runs through a file, or the
  file system refuses (missing or read-only directory, no permission, no space). Also an
  `OSError`, with the failing call's `errno` when there is one."""


def os_error(cls: type, message: str, cause: OSError) -> OSError:
  """A `cls` (an `OSError` subclass above) saying `message`, carrying `cause`'s errno (only:
  `OSError.__str__` would show its strerror and filename instead of `message`)."""
  error = cls(message)
  error.errno = cause.errno
  return error


class KerasVersionError(LilNetXError, TypeError):
  """Keras 3 where lilnetx_tf needs Keras 2 (`tf.keras` with TF_USE_LEGACY_KERAS=1, tf_keras)."""


class MissingDependencyError(LilNetXError, ImportError):
  """An optional dependency is not installed; the message names the extra that installs it."""
