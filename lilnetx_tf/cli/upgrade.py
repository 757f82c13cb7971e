"""Rewrite a .lnx file of an older format version in the current one.

Usage: lilnetx upgrade [flags] OLD.lnx NEW.lnx

Decompresses OLD and compresses it again with the options it was written with; the decoded
model is bit-identical. Files of format 5 were range-coded with tensorflow-compression: run
this on the TF 2.14 configuration (Python 3.11, tensorflow 2.14.1, tensorflow-compression
2.14.1); NEW then reads on every stack.
"""

import os
import sys

from absl import flags

from lilnetx_tf.cli import _common

__all__ = ["main"]

_INPUT = flags.DEFINE_string("input", None, "The .lnx file to upgrade.")
_OUTPUT = flags.DEFINE_string("output", None, "The upgraded .lnx file.")
_OVERWRITE = flags.DEFINE_bool("overwrite", False, "Replace OUTPUT if it exists.")
_SAFE_MODE = _common.define_safe_mode_flag()


@_common.handles_errors
def main(argv):
  source = _common.positional(argv, 0, _INPUT.value, "input")
  output = _common.positional(argv, 1, _OUTPUT.value, "output")
  if os.path.exists(output) and not _OVERWRITE.value:
    print(f"error: {output} exists (use --overwrite)", file=sys.stderr)
    return 1
  from lilnetx_tf.coding import model_file
  report = model_file.upgrade(source, output, safe_mode=_SAFE_MODE.value)
  print(f"{source} -> {report.path}: {report.total_bytes:,} bytes")
  return 0
