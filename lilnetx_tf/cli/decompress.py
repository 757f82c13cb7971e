"""Decompress a .lnx file back into a saved Keras model.

Usage: lilnetx decompress [flags] FILE.lnx [OUTPUT]

OUTPUT ending in .keras or .h5 is written in that format; anything else is a SavedModel
directory. The decoded weights are bit-identical to those of the compressed model. OUTPUT is
written atomically; --overwrite replaces a file, or a directory holding only a SavedModel.
"""

import os
import sys

from absl import flags

from lilnetx_tf.cli import _common

__all__ = ["main"]

_INPUT = flags.DEFINE_string("input", None, "The .lnx file.")
_OUTPUT = flags.DEFINE_string("output", None,
                              "Output model: .keras, .h5, or a SavedModel directory "
                              "(default: FILE with .keras).")
_OVERWRITE = flags.DEFINE_bool("overwrite", False, "Replace OUTPUT if it exists.")
_SUMMARY = flags.DEFINE_bool("summary", False, "Print the Keras model summary.")
_SAFE_MODE = _common.define_safe_mode_flag()
_MAX_PARAMETERS = flags.DEFINE_integer(
    "max_parameters", 1 << 28, "Refuse files of models with more parameters (all variables' "
    "elements) than this.", lower_bound=1)


# What `model.save` writes into a SavedModel directory: all --overwrite may replace.
_SAVED_MODEL_ENTRIES = {"saved_model.pb", "keras_metadata.pb", "fingerprint.pb", "variables",
                        "assets"}


def _replaceable_saved_model(target: str) -> None:
  """Refuses to replace anything but an empty directory or a SavedModel (whose entries
  --overwrite replaces as a whole)."""
  from lilnetx_tf import errors
  if not os.path.lexists(target):
    return
  if not os.path.isdir(target):
    raise errors.OutputPathError(f"{target} is not a directory; a SavedModel is one (give "
                                 "OUTPUT a .keras or .h5 suffix for a file).")
  entries = set(os.listdir(target))
  if entries and ("saved_model.pb" not in entries or entries - _SAVED_MODEL_ENTRIES):
    raise errors.OutputPathError(
        f"{target} is a directory but not a SavedModel: --overwrite replaces only those.")


@_common.handles_errors
def main(argv):
  source = _common.positional(argv, 0, _INPUT.value, "input")
  output = _OUTPUT.value or (argv[2] if len(argv) > 2 else None)
  if not output:
    output = (source[:-4] if source.endswith(".lnx") else source) + ".keras"
  if os.path.exists(output) and not _OVERWRITE.value:
    print(f"error: {output} exists (use --overwrite)", file=sys.stderr)
    return 1
  import lilnetx_tf as lnx
  from lilnetx_tf import atomic
  model = lnx.decompress(source, safe_mode=_SAFE_MODE.value,
                         max_parameters=_MAX_PARAMETERS.value)
  if _SUMMARY.value:
    model.summary()
  if output.endswith((".keras", ".h5")):
    atomic.save_file(output, model.save)
  else:
    with atomic.new_directory(output, _replaceable_saved_model) as directory:
      model.save(directory, save_format="tf")
  print(f"{source} -> {output}: {model.count_params():,} parameters, "
        f"{len(model.layers)} layers")
  return 0
