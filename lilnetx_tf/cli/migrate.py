"""Rewrite a .keras file saved by Keras 2.14 so that today's tf_keras loads its weights.

Usage: lilnetx migrate [flags] OLD.keras NEW.keras

Keras 2.14 and tf_keras (TF >= 2.16) store a model's weights under different paths inside the
file; this copies each object's weights to the path the installed Keras reads
(`lilnetx_tf.keras_files.migrate`). SavedModel directories need no migration.
"""

from absl import flags

from lilnetx_tf.cli import _common

__all__ = ["main"]

_INPUT = flags.DEFINE_string("input", None, "The .keras file written by Keras 2.14.")
_OUTPUT = flags.DEFINE_string("output", None, "The .keras file to write (must not exist).")
_SAFE_MODE = _common.define_safe_mode_flag()


@_common.handles_errors
def main(argv):
  source = _common.positional(argv, 0, _INPUT.value, "input")
  output = _common.positional(argv, 1, _OUTPUT.value, "output")
  from lilnetx_tf import keras_files
  keras_files.migrate(source, output, safe_mode=_SAFE_MODE.value)
  print(f"{source} -> {output}")
  return 0
