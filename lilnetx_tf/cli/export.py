"""Slim a Keras model (dead channels removed, BN folded) and write SavedModel / TFLite.

Usage: lilnetx export --model=MODEL.keras --output_dir=DIR [--quantization=float16|int8]

Writes DIR/saved_model, DIR/model.tflite (and DIR/model.keras with --formats=...,keras),
DIR/report.json and DIR/lilnetx_export.json atomically, checks the TFLite model against
Keras and prints a table of parameters, MACs and file sizes before and after.
"""

import json

from absl import flags

from lilnetx_tf.cli import _common

__all__ = ["main"]

_MODEL = flags.DEFINE_string("model", None, "A .keras / .h5 file or SavedModel directory.")
_OUTPUT_DIR = flags.DEFINE_string("output_dir", None, "Directory to create.")
_QUANTIZATION = flags.DEFINE_enum("quantization", "none", ["none", "float16", "int8"],
                                  "TFLite quantization (int8 calibrates on random inputs).")
_FORMATS = flags.DEFINE_list("formats", ["saved_model", "tflite"],
                             "Any of saved_model, tflite, keras.")
_OVERWRITE = flags.DEFINE_bool(
    "overwrite", False, "Replace an earlier export in the output directory (never a directory "
    "lilnetx_tf did not write, nor one holding other files).")
_JSON = flags.DEFINE_bool("json", False, "Print the report as JSON.")


@_common.handles_errors
def main(argv):
  source = _common.positional(argv, 0, _MODEL.value, "model")
  output_dir = _common.positional(argv, 1, _OUTPUT_DIR.value, "output_dir")
  from lilnetx_tf.export import export
  model = _common.load_keras_model(source)
  quantization = None if _QUANTIZATION.value == "none" else _QUANTIZATION.value
  report = export(model, output_dir, formats=_FORMATS.value, quantization=quantization,
                  overwrite=_OVERWRITE.value)
  print(json.dumps(report.to_dict(), indent=1) if _JSON.value else report)
  return 0
